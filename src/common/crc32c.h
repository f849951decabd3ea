/* crc32c.h — CRC-32C (Castagnoli, as in iSCSI and ext4), with the SSE4.2 instruction where the
 * CPU has it. For detecting torn or corrupted records, not for adversaries. */
#ifndef PT_CRC32C_H
#define PT_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* The CRC of data continuing from crc (0 to start): pt_crc32c(pt_crc32c(0, a), b) is the CRC
 * of a followed by b. */
uint32_t pt_crc32c(uint32_t crc, const void *data, size_t len);
/* The same by table lookups only (the fallback; tests compare the two). */
uint32_t pt_crc32c_portable(uint32_t crc, const void *data, size_t len);

#endif
