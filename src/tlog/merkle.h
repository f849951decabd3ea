/* merkle.h — RFC 6962 / RFC 9162 Merkle tree hashing and proofs (module-internal API of
 * src/tlog, also used by tests and by anyone who needs to check a proof by hand).
 *
 * leaf = SHA-256(0x00 ‖ data), node = SHA-256(0x01 ‖ left ‖ right), empty tree = SHA-256("").
 * Proofs are generated from a "hash getter" that returns the hash of a complete, aligned
 * subtree (level L, index i) = MTH(D[i·2^L : (i+1)·2^L]) — what the hash tiles store — so a
 * proof costs O(log n) lookups and at most O(log n) hash operations, never a rehash of leaves.
 */
#ifndef PARITY_TLOG_MERKLE_H
#define PARITY_TLOG_MERKLE_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

#define MERKLE_HASH 32
typedef uint8_t merkle_hash[MERKLE_HASH];

void merkle_leaf_hash(const void *data, size_t len, uint8_t out[MERKLE_HASH]);
/* Two leaf hashes at once (faster than two calls where the CPU has SHA-NI). */
void merkle_leaf_hash2(const void *d0, size_t n0, const void *d1, size_t n1, uint8_t out0[MERKLE_HASH],
                       uint8_t out1[MERKLE_HASH]);
void merkle_node_hash(const uint8_t left[MERKLE_HASH], const uint8_t right[MERKLE_HASH],
                      uint8_t out[MERKLE_HASH]);
void merkle_empty_root(uint8_t out[MERKLE_HASH]);

/* Root of a perfect subtree whose n (a power of two, ≥ 1) bottom hashes are given
 * contiguously; tmp must hold n/2 hashes (may be NULL when n == 1). */
void merkle_perfect_root(const merkle_hash *hashes, size_t n, merkle_hash *tmp, uint8_t out[MERKLE_HASH]);

/* Returns into out the hash of the complete subtree at (level, index). PT_OK or an error
 * (which aborts the proof and is passed up unchanged). */
typedef int (*merkle_get_fn)(void *ctx, unsigned level, uint64_t index, uint8_t out[MERKLE_HASH],
                             pt_err *err);

/* Root of the tree of `size` leaves. */
int merkle_root(merkle_get_fn get, void *ctx, uint64_t size, uint8_t out[MERKLE_HASH], pt_err *err);

/* Inclusion proof of leaf `index` in the tree of `size` (index < size); writes at most
 * MERKLE_MAX_PROOF hashes, count in *n. PT_EINVAL for a bad index/size. */
#define MERKLE_MAX_PROOF 64
int merkle_prove_inclusion(merkle_get_fn get, void *ctx, uint64_t index, uint64_t size,
                           merkle_hash *proof, size_t *n, pt_err *err);

/* Consistency proof from old_size to size (0 < old_size ≤ size). */
int merkle_prove_consistency(merkle_get_fn get, void *ctx, uint64_t old_size, uint64_t size,
                             merkle_hash *proof, size_t *n, pt_err *err);

/* RFC 9162 §2.1.3.2: PT_OK if the proof shows leaf_hash at index in the tree (size, root),
 * PT_EVERIFY otherwise (with the reason in err). */
int merkle_verify_inclusion(uint64_t index, uint64_t size, const uint8_t leaf_hash[MERKLE_HASH],
                            const merkle_hash *proof, size_t n, const uint8_t root[MERKLE_HASH],
                            pt_err *err);

/* RFC 9162 §2.1.4.2: PT_OK if the proof shows (size1, root1) is a prefix of (size2, root2).
 * size1 = 0 is an error (even 0 → 0); size1 = size2 needs an empty proof and equal roots. */
int merkle_verify_consistency(uint64_t size1, uint64_t size2, const uint8_t root1[MERKLE_HASH],
                              const uint8_t root2[MERKLE_HASH], const merkle_hash *proof, size_t n,
                              pt_err *err);

#endif
