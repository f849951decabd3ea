/* sha256.h — SHA-256 (FIPS 180-4), with the x86 SHA extensions where the CPU has them.
 *
 * Every request the server answers hashes its request and response and adds an audit entry
 * to a Merkle tree (a leaf hash and, amortised, one node hash): SHA-256 is on the hot path.
 * libsodium's portable implementation runs at ~0.25 GB/s; the SHA-NI compression function
 * (Intel since Goldmont/Ice Lake, AMD since Zen) several times faster. The implementation is
 * chosen once, at first use; tests compare both against libsodium. */
#ifndef PT_SHA256_H
#define PT_SHA256_H

#include <stddef.h>
#include <stdint.h>

typedef struct pt_sha256_ctx {
    uint32_t h[8];
    uint64_t bytes;  /* message bytes so far */
    uint8_t buf[64]; /* bytes % 64 of them wait here for a full block */
} pt_sha256_ctx;

void pt_sha256_init(pt_sha256_ctx *c);
void pt_sha256_update(pt_sha256_ctx *c, const void *data, size_t len);
void pt_sha256_final(pt_sha256_ctx *c, uint8_t out[32]);
void pt_sha256(const void *data, size_t len, uint8_t out[32]);
/* SHA-256 of two messages that each start with the same byte: out0 = H(prefix || d0[0..n0)),
 * out1 = H(prefix || d1[0..n1)). The two are hashed together, their SHA-NI rounds interleaved
 * (RFC 6962 leaf and node hashes, in pairs). */
void pt_sha256_prefixed2(uint8_t prefix, const void *d0, size_t n0, const void *d1, size_t n1, uint8_t out0[32],
                         uint8_t out1[32]);

/* The compression function in use: "sha-ni" or "c". pt_sha256_select("c" | "sha-ni" | NULL
 * for the best available) switches it (tests, benchmarks); -1 if this CPU lacks it. Not
 * meant to be called while other threads hash. */
const char *pt_sha256_impl(void);
int pt_sha256_select(const char *impl);

#endif
