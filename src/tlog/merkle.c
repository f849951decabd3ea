/* merkle.c — RFC 6962 hashing and proofs. See merkle.h. */
#include "tlog/merkle.h"

#include <sodium.h>
#include <string.h>

#include "common/sha256.h"

void merkle_leaf_hash(const void *data, size_t len, uint8_t out[MERKLE_HASH]) {
    pt_sha256_ctx st;
    static const uint8_t zero = 0x00;
    pt_sha256_init(&st);
    pt_sha256_update(&st, &zero, 1);
    pt_sha256_update(&st, data, len);
    pt_sha256_final(&st, out);
}

void merkle_leaf_hash2(const void *d0, size_t n0, const void *d1, size_t n1, uint8_t out0[MERKLE_HASH],
                       uint8_t out1[MERKLE_HASH]) {
    pt_sha256_prefixed2(0x00, d0, n0, d1, n1, out0, out1);
}

void merkle_node_hash(const uint8_t left[MERKLE_HASH], const uint8_t right[MERKLE_HASH],
                      uint8_t out[MERKLE_HASH]) {
    uint8_t buf[1 + 2 * MERKLE_HASH];
    buf[0] = 0x01;
    memcpy(buf + 1, left, MERKLE_HASH);
    memcpy(buf + 1 + MERKLE_HASH, right, MERKLE_HASH);
    pt_sha256(buf, sizeof buf, out);
}

void merkle_empty_root(uint8_t out[MERKLE_HASH]) { pt_sha256("", 0, out); }

void merkle_perfect_root(const merkle_hash *hashes, size_t n, merkle_hash *tmp, uint8_t out[MERKLE_HASH]) {
    if (n == 1) {
        memcpy(out, hashes[0], MERKLE_HASH);
        return;
    }
    const merkle_hash *src = hashes;
    for (; n > 1; n /= 2) {
        /* node i hashes 0x01 || src[2i] || src[2i+1], adjacent in memory: two nodes at a time */
        size_t i = 0;
        for (; i + 1 < n / 2; i += 2)
            pt_sha256_prefixed2(0x01, src[2 * i], 2 * MERKLE_HASH, src[2 * i + 2], 2 * MERKLE_HASH, tmp[i], tmp[i + 1]);
        if (i < n / 2) merkle_node_hash(src[2 * i], src[2 * i + 1], tmp[i]);
        src = tmp;
    }
    memcpy(out, tmp[0], MERKLE_HASH);
}

/* Largest power of two strictly less than n (n ≥ 2). */
static uint64_t split_point(uint64_t n) {
    uint64_t k = 1;
    while (k << 1 < n) k <<= 1;
    return k;
}

static int is_pow2(uint64_t n) { return n && !(n & (n - 1)); }

static unsigned log2u(uint64_t n) { return (unsigned)(63 - __builtin_clzll(n)); }

/* MTH(D[lo:hi]). In every range the RFC recursion reaches, lo is a multiple of the largest
 * power of two ≤ hi-lo, so a power-of-two range is a stored, aligned subtree. A range that
 * is not a power of two lies on the right edge; it costs one lookup per level below. */
static int mth(merkle_get_fn get, void *ctx, uint64_t lo, uint64_t hi, uint8_t out[MERKLE_HASH], pt_err *err) {
    uint64_t n = hi - lo;
    if (is_pow2(n)) {
        unsigned level = log2u(n);
        return get(ctx, level, lo >> level, out, err);
    }
    uint64_t k = split_point(n);
    uint8_t l[MERKLE_HASH], r[MERKLE_HASH];
    int rc = get(ctx, log2u(k), lo >> log2u(k), l, err);
    if (rc) return rc;
    if ((rc = mth(get, ctx, lo + k, hi, r, err))) return rc;
    merkle_node_hash(l, r, out);
    return PT_OK;
}

int merkle_root(merkle_get_fn get, void *ctx, uint64_t size, uint8_t out[MERKLE_HASH], pt_err *err) {
    if (size == 0) {
        merkle_empty_root(out);
        return PT_OK;
    }
    return mth(get, ctx, 0, size, out, err);
}

static int path(merkle_get_fn get, void *ctx, uint64_t m, uint64_t lo, uint64_t hi, merkle_hash *proof,
                size_t *n, pt_err *err) {
    if (hi - lo == 1) return PT_OK;
    uint64_t k = split_point(hi - lo);
    int rc;
    if (m < lo + k) {
        if ((rc = path(get, ctx, m, lo, lo + k, proof, n, err))) return rc;
        rc = mth(get, ctx, lo + k, hi, proof[*n], err);
    } else {
        if ((rc = path(get, ctx, m, lo + k, hi, proof, n, err))) return rc;
        rc = mth(get, ctx, lo, lo + k, proof[*n], err);
    }
    if (rc) return rc;
    (*n)++;
    return PT_OK;
}

int merkle_prove_inclusion(merkle_get_fn get, void *ctx, uint64_t index, uint64_t size,
                           merkle_hash *proof, size_t *n, pt_err *err) {
    *n = 0;
    if (index >= size)
        return pt_errf(err, PT_EINVAL, "inclusion proof: index %llu is not in a tree of size %llu",
                       (unsigned long long)index, (unsigned long long)size);
    return path(get, ctx, index, 0, size, proof, n, err);
}

/* SUBPROOF(m, D[lo:hi], b) of RFC 6962 §2.1.2; m counts from lo. */
static int subproof(merkle_get_fn get, void *ctx, uint64_t m, uint64_t lo, uint64_t hi, int b,
                    merkle_hash *proof, size_t *n, pt_err *err) {
    uint64_t size = hi - lo;
    int rc;
    if (m == size) {
        if (b) return PT_OK;
        if ((rc = mth(get, ctx, lo, hi, proof[*n], err))) return rc;
        (*n)++;
        return PT_OK;
    }
    uint64_t k = split_point(size);
    if (m <= k) {
        if ((rc = subproof(get, ctx, m, lo, lo + k, b, proof, n, err))) return rc;
        rc = mth(get, ctx, lo + k, hi, proof[*n], err);
    } else {
        if ((rc = subproof(get, ctx, m - k, lo + k, hi, 0, proof, n, err))) return rc;
        rc = mth(get, ctx, lo, lo + k, proof[*n], err);
    }
    if (rc) return rc;
    (*n)++;
    return PT_OK;
}

int merkle_prove_consistency(merkle_get_fn get, void *ctx, uint64_t old_size, uint64_t size,
                             merkle_hash *proof, size_t *n, pt_err *err) {
    *n = 0;
    if (old_size == 0 || old_size > size)
        return pt_errf(err, PT_EINVAL, "consistency proof: bad sizes %llu -> %llu",
                       (unsigned long long)old_size, (unsigned long long)size);
    if (old_size == size) return PT_OK;
    return subproof(get, ctx, old_size, 0, size, 1, proof, n, err);
}

int merkle_verify_inclusion(uint64_t index, uint64_t size, const uint8_t leaf_hash[MERKLE_HASH],
                            const merkle_hash *proof, size_t n, const uint8_t root[MERKLE_HASH],
                            pt_err *err) {
    if (index >= size)
        return pt_errf(err, PT_EVERIFY, "inclusion proof: index %llu beyond tree size %llu",
                       (unsigned long long)index, (unsigned long long)size);
    uint64_t fn = index, sn = size - 1;
    uint8_t r[MERKLE_HASH];
    memcpy(r, leaf_hash, MERKLE_HASH);
    for (size_t i = 0; i < n; i++) {
        if (sn == 0) return pt_errf(err, PT_EVERIFY, "inclusion proof: too long (%zu hashes)", n);
        if ((fn & 1) || fn == sn) {
            merkle_node_hash(proof[i], r, r);
            if (!(fn & 1))
                while (!(fn & 1) && fn != 0) {
                    fn >>= 1;
                    sn >>= 1;
                }
        } else {
            merkle_node_hash(r, proof[i], r);
        }
        fn >>= 1;
        sn >>= 1;
    }
    if (sn != 0) return pt_errf(err, PT_EVERIFY, "inclusion proof: too short (%zu hashes)", n);
    if (sodium_memcmp(r, root, MERKLE_HASH) != 0)
        return pt_errf(err, PT_EVERIFY, "inclusion proof: computed root does not match");
    return PT_OK;
}

int merkle_verify_consistency(uint64_t size1, uint64_t size2, const uint8_t root1[MERKLE_HASH],
                              const uint8_t root2[MERKLE_HASH], const merkle_hash *proof, size_t n,
                              pt_err *err) {
    if (size1 == 0) return pt_errf(err, PT_EVERIFY, "consistency proof: old size 0 is not provable");
    if (size1 > size2)
        return pt_errf(err, PT_EVERIFY, "consistency proof: old size %llu > new size %llu",
                       (unsigned long long)size1, (unsigned long long)size2);
    if (size1 == size2) {
        if (n != 0) return pt_errf(err, PT_EVERIFY, "consistency proof: must be empty for equal sizes");
        if (sodium_memcmp(root1, root2, MERKLE_HASH) != 0)
            return pt_errf(err, PT_EVERIFY, "consistency proof: equal sizes but different roots");
        return PT_OK;
    }
    if (n == 0) return pt_errf(err, PT_EVERIFY, "consistency proof: empty");
    /* When size1 is a power of two, the old root is the first node of the path. */
    const uint8_t *first;
    size_t start;
    if (is_pow2(size1)) {
        first = root1;
        start = 0;
    } else {
        first = proof[0];
        start = 1;
    }
    uint64_t fn = size1 - 1, sn = size2 - 1;
    while (fn & 1) {
        fn >>= 1;
        sn >>= 1;
    }
    uint8_t fr[MERKLE_HASH], sr[MERKLE_HASH];
    memcpy(fr, first, MERKLE_HASH);
    memcpy(sr, first, MERKLE_HASH);
    for (size_t i = start; i < n; i++) {
        if (sn == 0) return pt_errf(err, PT_EVERIFY, "consistency proof: too long (%zu hashes)", n);
        if ((fn & 1) || fn == sn) {
            merkle_node_hash(proof[i], fr, fr);
            merkle_node_hash(proof[i], sr, sr);
            if (!(fn & 1))
                while (!(fn & 1) && fn != 0) {
                    fn >>= 1;
                    sn >>= 1;
                }
        } else {
            merkle_node_hash(sr, proof[i], sr);
        }
        fn >>= 1;
        sn >>= 1;
    }
    if (sn != 0) return pt_errf(err, PT_EVERIFY, "consistency proof: too short (%zu hashes)", n);
    if (sodium_memcmp(fr, root1, MERKLE_HASH) != 0)
        return pt_errf(err, PT_EVERIFY, "consistency proof: old root does not match");
    if (sodium_memcmp(sr, root2, MERKLE_HASH) != 0)
        return pt_errf(err, PT_EVERIFY, "consistency proof: new root does not match");
    return PT_OK;
}
