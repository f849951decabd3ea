/* crc32c.c — CRC-32C. See crc32c.h. */
#include "common/crc32c.h"

#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#include "common/cpu.h"

#if PT_CPU_X86 && defined(__x86_64__) /* _mm_crc32_u64 */
#include <immintrin.h>
#define PT_CRC_X86 1
#define PT_CRC_FEATURES "sse4.2"
#else
#define PT_CRC_X86 0
#endif

#define POLY 0x82F63B78u /* the Castagnoli polynomial, reflected */

static uint32_t table[256];
static pthread_once_t table_once = PTHREAD_ONCE_INIT;

static void build_table(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = c & 1 ? (c >> 1) ^ POLY : c >> 1;
        table[i] = c;
    }
}

uint32_t pt_crc32c_portable(uint32_t crc, const void *data, size_t len) {
    pthread_once(&table_once, build_table);
    const uint8_t *p = data;
    crc = ~crc;
    while (len--) crc = table[(crc ^ *p++) & 0xff] ^ (crc >> 8);
    return ~crc;
}

#if PT_CRC_X86
__attribute__((target(PT_CRC_FEATURES))) static uint32_t crc_hw(uint32_t crc, const void *data, size_t len) {
    const uint8_t *p = data;
    uint64_t c = ~crc;
    for (; len >= 8; p += 8, len -= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        c = _mm_crc32_u64(c, w);
    }
    uint32_t c32 = (uint32_t)c;
    while (len--) c32 = _mm_crc32_u8(c32, *p++);
    return ~c32;
}
#endif

uint32_t pt_crc32c(uint32_t crc, const void *data, size_t len) {
#if PT_CRC_X86
    static atomic_int hw = -1; /* racing first calls store the same value */
    int h = atomic_load_explicit(&hw, memory_order_relaxed);
    if (h < 0) {
        h = pt_cpu_has(PT_CRC_FEATURES);
        atomic_store_explicit(&hw, h, memory_order_relaxed);
    }
    if (h) return crc_hw(crc, data, len);
#endif
    return pt_crc32c_portable(crc, data, len);
}
