/* tile.h — the C2SP tlog-tiles layout: tile paths, entry bundles, and the "tile stack" that
 * integrates leaves into hash tiles (used by the writer to produce tiles, and by the verifier
 * to recompute and compare them). Module-internal API of src/tlog.
 */
#ifndef PARITY_TLOG_TILE_H
#define PARITY_TLOG_TILE_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "tlog/merkle.h"

#define TILE_HEIGHT 8
#define TILE_WIDTH 256
#define TILE_LEVELS 8       /* tile levels 0..7 cover trees up to 2^64 leaves */
#define TILE_ENTRIES (-1)   /* the "level" of entry bundles */

/* Writes "tile/<L>/<N>" or "tile/entries/<N>", with "/.p/<W>" for 0 < width < 256 (width 0
 * or 256 means the full tile) into out. N is in 3-digit groups, all but the last prefixed
 * with 'x': 1234067 → x001/x234/067. Returns out. */
#define TILE_PATH_MAX 96
char *tile_path(char out[TILE_PATH_MAX], int level, uint64_t n, unsigned width);

/* The width of tile n at a level (or TILE_ENTRIES) for a tree of size: 256 for a full tile,
 * 1..255 for the partial one on the right edge, 0 if the tree has no such tile. */
unsigned tile_width(int level, uint64_t n, uint64_t size);

/* Parses an entry bundle holding exactly `count` entries (u16 BE length ‖ bytes each).
 * offs/lens (each `count` long) get where each entry is. `what` names the bundle for errors:
 * PT_EFORMAT "WHAT: truncated at offset N" / "trailing bytes at offset N". */
int tile_parse_bundle(const uint8_t *data, size_t len, unsigned count, size_t *offs, size_t *lens,
                      const char *what, pt_err *err);

/* The right edge of a tree being built: for each tile level t, the hashes (at tree level 8t)
 * of the tile that is not yet full. That is all that is needed to go on appending, and to
 * compute the root. */
typedef struct tile_stack {
    uint64_t size;                                  /* leaves pushed */
    merkle_hash h[TILE_LEVELS][TILE_WIDTH];         /* h[t][0 .. width(t)) */
} tile_stack;

/* Called when a tile becomes full (all 256 hashes known), before the hashes are moved up. */
typedef int (*tile_full_fn)(void *ctx, unsigned level, uint64_t n, const merkle_hash *hashes, pt_err *err);

/* Adds one leaf hash. Calls full (may be NULL) for every tile that this completes, lowest
 * level first. */
int tile_stack_push(tile_stack *s, const uint8_t leaf[MERKLE_HASH], tile_full_fn full, void *ctx, pt_err *err);

/* The root of the tree of s->size leaves. */
void tile_stack_root(const tile_stack *s, uint8_t out[MERKLE_HASH]);

/* Number of hashes in the not-yet-full tile at level t. */
static inline unsigned tile_stack_width(const tile_stack *s, unsigned t) {
    return t >= TILE_LEVELS ? 0 : (unsigned)((s->size >> (TILE_HEIGHT * t)) & (TILE_WIDTH - 1));
}

/* A tile with all its internal nodes: node(r, j) for r = 0..8, j < 256 >> r (valid only if
 * (j+1) << r ≤ width). Expanded once, so that proofs need no hashing inside a tile. */
typedef struct tile_expanded {
    unsigned width;
    merkle_hash node[511];
} tile_expanded;
void tile_expand(const merkle_hash *hashes, unsigned width, tile_expanded *out);
static inline const uint8_t *tile_node(const tile_expanded *x, unsigned r, unsigned j) {
    return x->node[512 - (512u >> r) + j];
}

#endif
