/* sha256.c — SHA-256 (FIPS 180-4). See sha256.h. */
#include "common/sha256.h"

#include <stdatomic.h>
#include <string.h>

#include "common/cpu.h"

#if PT_CPU_X86
#include <immintrin.h>
#define PT_SHA_X86 1
#else
#define PT_SHA_X86 0
#endif

/* The round constants: the first 32 bits of the fractional parts of the cube roots of the
 * first 64 primes. */
static const uint32_t K[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

static inline uint32_t ror(uint32_t x, int n) { return (x >> n) | (x << (32 - n)); }
static inline uint32_t be32(const uint8_t *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

static void compress_c(uint32_t h[8], const uint8_t *p, size_t blocks) {
    for (; blocks--; p += 64) {
        uint32_t w[64];
        for (int i = 0; i < 16; i++) w[i] = be32(p + 4 * i);
#pragma GCC unroll 48
        for (int i = 16; i < 64; i++) {
            uint32_t s0 = ror(w[i - 15], 7) ^ ror(w[i - 15], 18) ^ (w[i - 15] >> 3);
            uint32_t s1 = ror(w[i - 2], 17) ^ ror(w[i - 2], 19) ^ (w[i - 2] >> 10);
            w[i] = w[i - 16] + s0 + w[i - 7] + s1;
        }
        uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], hh = h[7];
#pragma GCC unroll 64
        for (int i = 0; i < 64; i++) {
            uint32_t t1 = hh + (ror(e, 6) ^ ror(e, 11) ^ ror(e, 25)) + ((e & f) ^ (~e & g)) + K[i] + w[i];
            uint32_t t2 = (ror(a, 2) ^ ror(a, 13) ^ ror(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
            hh = g, g = f, f = e, e = d + t1, d = c, c = b, b = a, a = t1 + t2;
        }
        h[0] += a, h[1] += b, h[2] += c, h[3] += d, h[4] += e, h[5] += f, h[6] += g, h[7] += hh;
    }
}

#if PT_SHA_X86
/* The SHA extensions keep the state as two registers, ABEF and CDGH (A in the top lane);
 * sha256rnds2 runs two rounds from the low two words of message + constant, sha256msg1/2
 * compute the message schedule four words at a time:
 *   W[g] = msg2(msg1(W[g-4], W[g-3]) + (words 4g-7 .. 4g-4), W[g-1]). */
#define PT_SHANI_FEATURES "sha,sse4.1,ssse3" /* sha256*; _mm_blend_epi16; _mm_alignr_epi8, _mm_shuffle_epi8 */
#define PT_SHANI __attribute__((target(PT_SHANI_FEATURES)))

/* h (a..h) into ABEF (lanes f e b a) and CDGH (lanes h g d c), and back. */
PT_SHANI static inline void shani_load(const uint32_t h[8], __m128i *abef, __m128i *cdgh) {
    __m128i abcd = _mm_loadu_si128((const __m128i *)&h[0]), efgh = _mm_loadu_si128((const __m128i *)&h[4]);
    __m128i badc = _mm_shuffle_epi32(abcd, 0xB1), hgfe = _mm_shuffle_epi32(efgh, 0x1B);
    *abef = _mm_alignr_epi8(badc, hgfe, 8);
    *cdgh = _mm_blend_epi16(hgfe, badc, 0xF0);
}
PT_SHANI static inline void shani_store(uint32_t h[8], __m128i abef, __m128i cdgh) {
    __m128i abef_r = _mm_shuffle_epi32(abef, 0x1B); /* a b e f */
    __m128i cdgh_r = _mm_shuffle_epi32(cdgh, 0xB1); /* g h c d */
    _mm_storeu_si128((__m128i *)&h[0], _mm_blend_epi16(abef_r, cdgh_r, 0xF0));
    _mm_storeu_si128((__m128i *)&h[4], _mm_alignr_epi8(cdgh_r, abef_r, 8));
}

/* Rounds 4g .. 4g+3 of the block at p (w: the schedule's last four words). */
PT_SHANI static inline __attribute__((always_inline)) void shani_rounds4(int g, const uint8_t *p, __m128i w[4],
                                                                        __m128i *abef, __m128i *cdgh) {
    const __m128i bswap = _mm_set_epi64x(0x0c0d0e0f08090a0bLL, 0x0405060700010203LL);
    if (g < 4) {
        w[g] = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(p + 16 * g)), bswap);
    } else {
        __m128i m = _mm_sha256msg1_epu32(w[g & 3], w[(g + 1) & 3]);
        m = _mm_add_epi32(m, _mm_alignr_epi8(w[(g + 3) & 3], w[(g + 2) & 3], 4));
        w[g & 3] = _mm_sha256msg2_epu32(m, w[(g + 3) & 3]);
    }
    __m128i wk = _mm_add_epi32(w[g & 3], _mm_loadu_si128((const __m128i *)&K[4 * g]));
    /* Two rounds give a new ABEF, and the old ABEF is the new CDGH: so the two registers
     * trade roles twice per four rounds and end where they began. */
    *cdgh = _mm_sha256rnds2_epu32(*cdgh, *abef, wk);
    *abef = _mm_sha256rnds2_epu32(*abef, *cdgh, _mm_shuffle_epi32(wk, 0x0E));
}

PT_SHANI static void compress_shani(uint32_t h[8], const uint8_t *p, size_t blocks) {
    __m128i abef, cdgh;
    shani_load(h, &abef, &cdgh);
    for (; blocks--; p += 64) {
        __m128i abef0 = abef, cdgh0 = cdgh, w[4];
#pragma GCC unroll 16
        for (int g = 0; g < 16; g++) shani_rounds4(g, p, w, &abef, &cdgh);
        abef = _mm_add_epi32(abef, abef0);
        cdgh = _mm_add_epi32(cdgh, cdgh0);
    }
    shani_store(h, abef, cdgh);
}

/* One block of each of two messages, their rounds interleaved: a round's sha256rnds2 waits on
 * the previous one, so a single message leaves the unit idle part of the time; two
 * independent ones fill it (about 1.3x the rate of hashing them one after the other). */
PT_SHANI static void compress_shani_x2(uint32_t h0[8], const uint8_t *p0, uint32_t h1[8], const uint8_t *p1) {
    __m128i abef0, cdgh0, abef1, cdgh1, w0[4], w1[4];
    shani_load(h0, &abef0, &cdgh0);
    shani_load(h1, &abef1, &cdgh1);
    const __m128i a0 = abef0, c0 = cdgh0, a1 = abef1, c1 = cdgh1;
#pragma GCC unroll 16
    for (int g = 0; g < 16; g++) {
        shani_rounds4(g, p0, w0, &abef0, &cdgh0);
        shani_rounds4(g, p1, w1, &abef1, &cdgh1);
    }
    shani_store(h0, _mm_add_epi32(abef0, a0), _mm_add_epi32(cdgh0, c0));
    shani_store(h1, _mm_add_epi32(abef1, a1), _mm_add_epi32(cdgh1, c1));
}
#endif

typedef void (*compress_fn)(uint32_t h[8], const uint8_t *p, size_t blocks);
static _Atomic(compress_fn) compress_impl;

int pt_sha256_select(const char *impl) {
    compress_fn f = compress_c;
#if PT_SHA_X86
    if (!impl || !strcmp(impl, "sha-ni")) {
        if (pt_cpu_has(PT_SHANI_FEATURES)) f = compress_shani;
        else if (impl) return -1;
    } else if (strcmp(impl, "c")) {
        return -1;
    }
#else
    if (impl && strcmp(impl, "c")) return -1;
#endif
    atomic_store_explicit(&compress_impl, f, memory_order_relaxed);
    return 0;
}

static compress_fn compressor(void) {
    compress_fn f = atomic_load_explicit(&compress_impl, memory_order_relaxed);
    if (!f) { /* first use; racing threads store the same function */
        pt_sha256_select(NULL);
        f = atomic_load_explicit(&compress_impl, memory_order_relaxed);
    }
    return f;
}

const char *pt_sha256_impl(void) {
#if PT_SHA_X86
    if (compressor() == compress_shani) return "sha-ni";
#endif
    return "c";
}

/* The initial state: the first 32 bits of the fractional parts of the square roots of the
 * first 8 primes. */
static const uint32_t iv[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                               0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};

static void digest_out(const uint32_t h[8], uint8_t out[32]) {
    for (int i = 0; i < 8; i++) {
        out[4 * i] = (uint8_t)(h[i] >> 24);
        out[4 * i + 1] = (uint8_t)(h[i] >> 16);
        out[4 * i + 2] = (uint8_t)(h[i] >> 8);
        out[4 * i + 3] = (uint8_t)h[i];
    }
}

void pt_sha256_init(pt_sha256_ctx *c) {
    memcpy(c->h, iv, sizeof iv);
    c->bytes = 0;
}

void pt_sha256_update(pt_sha256_ctx *c, const void *data, size_t len) {
    const uint8_t *p = data;
    compress_fn f = compressor();
    size_t have = (size_t)(c->bytes & 63);
    c->bytes += len;
    if (have) {
        size_t take = 64 - have < len ? 64 - have : len;
        memcpy(c->buf + have, p, take);
        p += take, len -= take;
        if (have + take < 64) return;
        f(c->h, c->buf, 1);
    }
    if (len >= 64) {
        f(c->h, p, len / 64);
        p += len & ~(size_t)63;
        len &= 63;
    }
    if (len) memcpy(c->buf, p, len);
}

void pt_sha256_final(pt_sha256_ctx *c, uint8_t out[32]) {
    uint64_t bits = c->bytes * 8;
    size_t have = (size_t)(c->bytes & 63);
    uint8_t pad[72] = {0x80};
    size_t n = (have < 56 ? 56 : 120) - have; /* to 56 mod 64, then the 8-byte length */
    for (int i = 0; i < 8; i++) pad[n + (size_t)i] = (uint8_t)(bits >> (56 - 8 * i));
    pt_sha256_update(c, pad, n + 8);
    digest_out(c->h, out);
}

void pt_sha256(const void *data, size_t len, uint8_t out[32]) {
    pt_sha256_ctx c;
    pt_sha256_init(&c);
    pt_sha256_update(&c, data, len);
    pt_sha256_final(&c, out);
}

/* Block k of the padded message prefix || d (n bytes of d, nblocks blocks in all): a pointer
 * into d where the block lies inside it (blocks after the first are d shifted by the prefix
 * byte), else the block assembled in buf. */
static const uint8_t *prefixed_block(uint8_t prefix, const uint8_t *d, size_t n, size_t k, size_t nblocks,
                                     uint8_t buf[64]) {
    size_t total = n + 1, off = 64 * k; /* off: the block's first byte in the message */
    if (k > 0 && off + 64 <= total) return d + off - 1;
    memset(buf, 0, 64);
    if (k == 0) buf[0] = prefix;
    size_t from = k == 0 ? 1 : off, to = off + 64 < total ? off + 64 : total;
    if (from < to) memcpy(buf + (from - off), d + from - 1, to - from);
    if (total >= off && total < off + 64) buf[total - off] = 0x80;
    if (k == nblocks - 1) {
        uint64_t bits = (uint64_t)total * 8;
        for (int i = 0; i < 8; i++) buf[56 + i] = (uint8_t)(bits >> (56 - 8 * i));
    }
    return buf;
}

void pt_sha256_prefixed2(uint8_t prefix, const void *d0, size_t n0, const void *d1, size_t n1, uint8_t out0[32],
                         uint8_t out1[32]) {
    const uint8_t *d[2] = {d0, d1};
    size_t n[2] = {n0, n1}, nb[2] = {(n0 + 9) / 64 + 1, (n1 + 9) / 64 + 1};
    uint32_t h[2][8];
    uint8_t buf[2][64];
    memcpy(h[0], iv, sizeof iv);
    memcpy(h[1], iv, sizeof iv);
    compress_fn f = compressor();
    size_t k = 0;
#if PT_SHA_X86
    if (f == compress_shani)
        for (; k < nb[0] && k < nb[1]; k++)
            compress_shani_x2(h[0], prefixed_block(prefix, d[0], n[0], k, nb[0], buf[0]), h[1],
                              prefixed_block(prefix, d[1], n[1], k, nb[1], buf[1]));
#endif
    for (int s = 0; s < 2; s++)
        for (size_t j = k; j < nb[s]; j++) f(h[s], prefixed_block(prefix, d[s], n[s], j, nb[s], buf[s]), 1);
    digest_out(h[0], out0);
    digest_out(h[1], out1);
}
