/* tile.c — tile paths, bundles and the tile stack. See tile.h. */
#include "tlog/tile.h"

#include <stdio.h>
#include <string.h>

char *tile_path(char out[TILE_PATH_MAX], int level, uint64_t n, unsigned width) {
    char num[64], tmp[64];
    snprintf(num, sizeof num, "%03u", (unsigned)(n % 1000));
    while (n >= 1000) {
        n /= 1000;
        snprintf(tmp, sizeof tmp, "x%03u/%s", (unsigned)(n % 1000), num);
        memcpy(num, tmp, sizeof num);
    }
    char lv[16];
    if (level == TILE_ENTRIES) snprintf(lv, sizeof lv, "entries");
    else snprintf(lv, sizeof lv, "%d", level);
    if (width > 0 && width < TILE_WIDTH) snprintf(out, TILE_PATH_MAX, "tile/%s/%s.p/%u", lv, num, width);
    else snprintf(out, TILE_PATH_MAX, "tile/%s/%s", lv, num);
    return out;
}

unsigned tile_width(int level, uint64_t n, uint64_t size) {
    unsigned shift = level == TILE_ENTRIES ? 0 : (unsigned)level * TILE_HEIGHT;
    if (shift >= 64) return 0;
    uint64_t count = size >> shift; /* hashes (or entries) at this level */
    if (n > (UINT64_MAX >> 8) || count < n * TILE_WIDTH) return 0;
    uint64_t w = count - n * TILE_WIDTH;
    return w >= TILE_WIDTH ? TILE_WIDTH : (unsigned)w;
}

int tile_parse_bundle(const uint8_t *data, size_t len, unsigned count, size_t *offs, size_t *lens,
                      const char *what, pt_err *err) {
    size_t p = 0;
    for (unsigned i = 0; i < count; i++) {
        if (len - p < 2)
            return pt_errf(err, PT_EFORMAT, "%s: truncated at offset %zu (entry %u of %u: no length)", what, p, i, count);
        size_t n = (size_t)data[p] << 8 | data[p + 1];
        if (len - p - 2 < n)
            return pt_errf(err, PT_EFORMAT, "%s: truncated at offset %zu (entry %u of %u needs %zu bytes, %zu left)",
                           what, p, i, count, n, len - p - 2);
        offs[i] = p + 2;
        lens[i] = n;
        p += 2 + n;
    }
    if (p != len) return pt_errf(err, PT_EFORMAT, "%s: %zu trailing bytes at offset %zu after %u entries", what, len - p, p, count);
    return PT_OK;
}

int tile_stack_push(tile_stack *s, const uint8_t leaf[MERKLE_HASH], tile_full_fn full, void *ctx, pt_err *err) {
    memcpy(s->h[0][s->size & (TILE_WIDTH - 1)], leaf, MERKLE_HASH);
    s->size++;
    merkle_hash tmp[TILE_WIDTH / 2];
    for (unsigned t = 0; t < TILE_LEVELS; t++) {
        unsigned shift = TILE_HEIGHT * t;
        if ((s->size >> shift) & (TILE_WIDTH - 1)) break; /* level t's tile is not full yet */
        uint64_t n = (s->size >> shift) / TILE_WIDTH - 1;  /* the tile just completed */
        if (full) {
            int rc = full(ctx, t, n, (const merkle_hash *)s->h[t], err);
            if (rc) return rc;
        }
        if (t + 1 < TILE_LEVELS) {
            unsigned pos = (unsigned)(((s->size >> (shift + TILE_HEIGHT)) - 1) & (TILE_WIDTH - 1));
            merkle_perfect_root((const merkle_hash *)s->h[t], TILE_WIDTH, tmp, s->h[t + 1][pos]);
        }
    }
    return PT_OK;
}

void tile_stack_root(const tile_stack *s, uint8_t out[MERKLE_HASH]) {
    if (s->size == 0) {
        merkle_empty_root(out);
        return;
    }
    /* The tree is a sequence of perfect subtrees, largest (leftmost) first: for each tile
     * level from the top, the power-of-two runs of the width's binary digits. */
    merkle_hash subs[64], tmp[TILE_WIDTH / 2];
    size_t ns = 0;
    for (int t = TILE_LEVELS - 1; t >= 0; t--) {
        unsigned w = tile_stack_width(s, (unsigned)t), start = 0;
        for (int b = TILE_HEIGHT - 1; b >= 0; b--) {
            unsigned run = 1u << b;
            if (!(w & run)) continue;
            merkle_perfect_root((const merkle_hash *)&s->h[t][start], run, tmp, subs[ns++]);
            start += run;
        }
    }
    uint8_t acc[MERKLE_HASH];
    memcpy(acc, subs[ns - 1], MERKLE_HASH);
    for (size_t i = ns - 1; i-- > 0;) merkle_node_hash(subs[i], acc, acc);
    memcpy(out, acc, MERKLE_HASH);
}

void tile_expand(const merkle_hash *hashes, unsigned width, tile_expanded *out) {
    out->width = width;
    memcpy(out->node[0], hashes, (size_t)width * MERKLE_HASH);
    for (unsigned r = 1; r <= TILE_HEIGHT; r++) {
        unsigned have = width >> r; /* complete nodes at level r */
        for (unsigned j = 0; j < have; j++)
            merkle_node_hash(tile_node(out, r - 1, 2 * j), tile_node(out, r - 1, 2 * j + 1),
                             out->node[512 - (512u >> r) + j]);
    }
}
