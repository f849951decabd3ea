/* Fuzz target: entry-bundle parsing and the tile stack. The first byte picks the number of
 * entries the bundle must hold; the rest is the bundle. Parsed entries are hashed into a tile
 * stack, whose root must agree with the recursive RFC 6962 root. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tlog/merkle.h"
#include "tlog/tile.h"

static merkle_hash *leaves;

static int get(void *ctx, unsigned level, uint64_t index, uint8_t out[32], pt_err *err) {
    size_t n = (size_t)1 << level;
    merkle_hash *tmp = malloc(n / 2 * sizeof *tmp + 32);
    merkle_perfect_root((const merkle_hash *)&leaves[index << level], n, tmp, out);
    free(tmp);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    unsigned count = data[0] ? data[0] : 256;
    size_t offs[256], lens[256];
    pt_err err;
    if (tile_parse_bundle(data + 1, size - 1, count, offs, lens, "fuzz", &err) != 0) return 0;
    tile_stack *st = calloc(1, sizeof *st);
    leaves = malloc(count * sizeof *leaves);
    for (unsigned i = 0; i < count; i++) {
        if (offs[i] + lens[i] > size - 1) abort(); /* the parser promised in-bounds entries */
        merkle_leaf_hash(data + 1 + offs[i], lens[i], leaves[i]);
        tile_stack_push(st, leaves[i], NULL, NULL, &err);
    }
    uint8_t a[32], b[32];
    tile_stack_root(st, a);
    merkle_root(get, NULL, count, b, &err);
    if (memcmp(a, b, 32) != 0) abort();
    free(st);
    free(leaves);
    return 0;
}
