/* tokfile.h — the token dataset file `parity data` writes and `parity train` memory-maps.
 *
 * Layout (all little-endian), 32-byte header then the tokens:
 *   0  8  magic "PTTOKENS"
 *   8  4  u32 version = 1
 *  12  4  u32 header size = 32
 *  16  8  u64 n_tokens
 *  24  4  u32 vocab_size (every token id is < vocab_size)
 *  28  4  u32 flags = 0 (reserved)
 *  32     n_tokens × u32 token ids
 * Documents are concatenated; the tokenizer's EOS (when it has one) ends each document.
 */
#ifndef PARITY_TRAIN_TOKFILE_H
#define PARITY_TRAIN_TOKFILE_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "common/fileio.h"

#define PT_TOKFILE_MAGIC "PTTOKENS"
#define PT_TOKFILE_HEADER 32

typedef struct pt_tokfile {
    pt_map map;              /* owned when opened from a file */
    const uint32_t *tokens;  /* borrowed from the mapping / buffer; n_tokens ids */
    uint64_t n_tokens;
    uint32_t vocab_size;
} pt_tokfile;

/* Checks a whole file image: magic, version, header size, flags, length == 32 + 4·n,
 * every id < vocab_size. Errors name `what` and the byte offset. tokens borrow from data. */
int pt_tokfile_parse(const uint8_t *data, size_t len, const char *what, pt_tokfile *tf, pt_err *err);
/* Maps and parses path. pt_tokfile_close(NULL-initialised) is a no-op. */
int pt_tokfile_open(const char *path, pt_tokfile *tf, pt_err *err);
void pt_tokfile_close(pt_tokfile *tf);
/* Writes n ids atomically (temp, fsync, rename). */
int pt_tokfile_write(const char *path, const uint32_t *ids, size_t n, uint32_t vocab_size, pt_err *err);

#endif
