/* disk.c — the files of a log directory beyond its checkpoint, and rebuilding the tree from
 * the entry bundles on disk. See disk.h. */
#include "tlog/disk.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/fileio.h"
#include "tlog/tlog.h"

#define BUNDLE_MAX ((size_t)TILE_WIDTH * (2 + TLOG_MAX_ENTRY))

/* Which files tile k of a level has: the full one, and the widths of the partial ones
 * (DIR/tile/L/<k>.p/<W>). Returns how many there are. */
static int tile_files(const char *dir, int level, uint64_t k, int *full, unsigned char widths[TILE_WIDTH]) {
    char rel[TILE_PATH_MAX];
    int n = 0;
    memset(widths, 0, TILE_WIDTH);
    char *path = pt_path_join(dir, tile_path(rel, level, k, 0));
    *full = path && pt_exists(path);
    n += *full;
    free(path);
    tile_path(rel, level, k, 1);
    *strrchr(rel, '/') = 0;
    path = pt_path_join(dir, rel);
    DIR *d = path ? opendir(path) : NULL;
    free(path);
    for (struct dirent *e; d && (e = readdir(d));) {
        char *end;
        unsigned long w = strtoul(e->d_name, &end, 10);
        if (*end || w == 0 || w >= TILE_WIDTH) continue;
        widths[w] = 1;
        n++;
    }
    if (d) closedir(d);
    return n;
}

int disk_extent(const char *dir, uint64_t from, uint64_t *extent, pt_err *err) {
    (void)err;
    *extent = from;
    int full;
    unsigned char widths[TILE_WIDTH];
    for (uint64_t k = from >> TILE_HEIGHT; tile_files(dir, TILE_ENTRIES, k, &full, widths) > 0; k++) {
        uint64_t end = k * TILE_WIDTH;
        if (full) end += TILE_WIDTH;
        else
            for (unsigned w = TILE_WIDTH - 1; w > 0; w--)
                if (widths[w]) {
                    end += w;
                    break;
                }
        if (end > *extent) *extent = end;
    }
    return PT_OK;
}

static int unlink_tile(const char *dir, int level, uint64_t k, unsigned w, pt_err *err) {
    char rel[TILE_PATH_MAX];
    char *path = pt_path_join(dir, tile_path(rel, level, k, w));
    if (!path) return pt_errf(err, PT_ENOMEM, "out of memory");
    int rc = unlink(path) < 0 && errno != ENOENT ? pt_errf(err, PT_EIO, "unlink %s: %s", path, strerror(errno)) : PT_OK;
    free(path);
    return rc;
}

int disk_remove_beyond(const char *dir, uint64_t size, pt_err *err) {
    int rc = PT_OK;
    for (int level = TILE_ENTRIES; level < TILE_LEVELS && !rc; level++) {
        uint64_t n = level == TILE_ENTRIES ? size : size >> (TILE_HEIGHT * level); /* hashes at this level */
        int full;
        unsigned char widths[TILE_WIDTH];
        for (uint64_t k = n >> TILE_HEIGHT; !rc && tile_files(dir, level, k, &full, widths) > 0; k++) {
            if (full && (k + 1) * TILE_WIDTH > n) rc = unlink_tile(dir, level, k, 0, err);
            for (unsigned w = 1; w < TILE_WIDTH && !rc; w++)
                if (widths[w] && k * TILE_WIDTH + w > n) rc = unlink_tile(dir, level, k, w, err);
        }
    }
    return rc;
}

int disk_put(const char *dir, const char *rel, const void *data, size_t len, pt_err *err) {
    char *path = pt_path_join(dir, rel);
    if (!path) return pt_errf(err, PT_ENOMEM, "out of memory");
    int rc = PT_OK;
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0 && errno == ENOENT) {
        char *parent = strdup(path);
        if (!parent) {
            rc = pt_errf(err, PT_ENOMEM, "out of memory");
            goto out;
        }
        *strrchr(parent, '/') = 0;
        rc = pt_mkdirs(parent, 0, err);
        free(parent);
        if (rc) goto out;
        fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    }
    if (fd < 0) {
        rc = pt_errf(err, PT_EIO, "open %s: %s", path, strerror(errno));
        goto out;
    }
    const char *p = data;
    while (len > 0) {
        ssize_t k = write(fd, p, len);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) {
            rc = pt_errf(err, PT_EIO, "write %s: %s", path, k < 0 ? strerror(errno) : "short write");
            break;
        }
        p += k;
        len -= (size_t)k;
    }
    if (close(fd) < 0 && !rc) rc = pt_errf(err, PT_EIO, "close %s: %s", path, strerror(errno));
out:
    free(path);
    return rc;
}

int disk_pending_write(const char *dir, uint64_t from, uint64_t to, pt_err *err) {
    char line[64];
    int n = snprintf(line, sizeof line, "%llu %llu\n", (unsigned long long)from, (unsigned long long)to);
    return disk_put(dir, "pending", line, (size_t)n, err);
}

void disk_pending_read(const char *dir, uint64_t *from, uint64_t *to) {
    *from = *to = UINT64_MAX;
    char *path = pt_path_join(dir, "pending"), *text = NULL;
    size_t len;
    unsigned long long a, b;
    char nl;
    if (path && pt_read_file(path, 64, &text, &len, NULL) == PT_OK && sscanf(text, "%llu %llu%c", &a, &b, &nl) == 3 &&
        nl == '\n' && a <= b) {
        *from = a;
        *to = b;
    }
    free(text);
    free(path);
}

void disk_pending_remove(const char *dir) {
    char *path = pt_path_join(dir, "pending");
    /* Emptied, not unlinked: the next batch rewrites the same inode (on ext4 without a journal
     * every create scans past the inodes freed in the last seconds). If this is lost in a
     * crash, the marker names a published batch: harmless. */
    int rc = path ? truncate(path, 0) : 0;
    (void)rc;
    free(path);
}

/* A tile the rebuilt tree has: the file must hold exactly these hashes, or is written. */
static int check_or_put(const char *dir, int level, uint64_t k, unsigned w, const void *hashes, pt_err *err) {
    char rel[TILE_PATH_MAX];
    tile_path(rel, level, k, w);
    char *path = pt_path_join(dir, rel), *have = NULL;
    if (!path) return pt_errf(err, PT_ENOMEM, "out of memory");
    size_t len, want = (size_t)(w ? w : TILE_WIDTH) * MERKLE_HASH;
    int rc = pt_read_file(path, BUNDLE_MAX, &have, &len, err);
    if (rc == PT_ENOTFOUND) rc = disk_put(dir, rel, hashes, want, err);
    else if (!rc && (len != want || memcmp(have, hashes, want) != 0))
        rc = pt_errf(err, PT_EVERIFY, "%s: does not hold the hashes of the entries on disk (%zu bytes)", path, len);
    free(have);
    free(path);
    return rc;
}

static int on_full_check(void *ctx, unsigned level, uint64_t n, const merkle_hash *hashes, pt_err *err) {
    return check_or_put(ctx, (int)level, n, 0, hashes, err);
}

/* Reads tile k's bundle: the full one, else the widest partial one that parses. *w = 0: none. */
static int read_bundle(const char *dir, uint64_t k, uint8_t **data, size_t *len, size_t *offs, size_t *lens,
                       unsigned *w) {
    int full;
    unsigned char widths[TILE_WIDTH];
    *w = 0;
    if (!tile_files(dir, TILE_ENTRIES, k, &full, widths)) return PT_OK;
    widths[0] = (unsigned char)full; /* width 0 stands for the full tile, tried first */
    for (unsigned i = 0; i < TILE_WIDTH; i++) {
        unsigned cw = i == 0 ? 0 : TILE_WIDTH - i;
        if (!widths[cw]) continue;
        char rel[TILE_PATH_MAX];
        char *path = pt_path_join(dir, tile_path(rel, TILE_ENTRIES, k, cw)), *text = NULL;
        if (!path) return PT_ENOMEM;
        int rc = pt_read_file(path, BUNDLE_MAX, &text, len, NULL);
        unsigned count = cw ? cw : TILE_WIDTH;
        if (!rc && tile_parse_bundle((uint8_t *)text, *len, count, offs, lens, path, NULL) == PT_OK) {
            free(path);
            *data = (uint8_t *)text;
            *w = count;
            return PT_OK;
        }
        free(text);
        free(path);
        if (rc == PT_ENOMEM) return rc;
    }
    return PT_OK;
}

int disk_rebuild(const char *dir, tile_stack *st, pt_buf *bundle, uint8_t root[32], pt_err *err) {
    memset(st, 0, sizeof *st);
    pt_buf_reset(bundle);
    size_t *offs = malloc(TILE_WIDTH * sizeof *offs), *lens = malloc(TILE_WIDTH * sizeof *lens);
    int rc = offs && lens ? PT_OK : pt_errf(err, PT_ENOMEM, "out of memory");
    for (uint64_t k = 0; !rc; k++) {
        uint8_t *data = NULL;
        size_t len;
        unsigned w;
        if ((rc = read_bundle(dir, k, &data, &len, offs, lens, &w))) {
            rc = pt_errf(err, rc, "reading the entry bundles of %s", dir);
            break;
        }
        for (unsigned i = 0; i < w && !rc; i++) {
            uint8_t leaf[MERKLE_HASH];
            merkle_leaf_hash(data + offs[i], lens[i], leaf);
            rc = tile_stack_push(st, leaf, on_full_check, (void *)dir, err);
        }
        if (!rc && w > 0 && w < TILE_WIDTH && pt_buf_append(bundle, data, len))
            rc = pt_errf(err, PT_ENOMEM, "out of memory");
        free(data);
        if (w < TILE_WIDTH) break; /* a partial bundle (or none) ends the log */
    }
    for (unsigned l = 0; l < TILE_LEVELS && !rc; l++) {
        unsigned wl = tile_stack_width(st, l);
        if (wl) rc = check_or_put(dir, (int)l, (st->size >> (TILE_HEIGHT * l)) >> TILE_HEIGHT, wl, st->h[l], err);
    }
    if (!rc) tile_stack_root(st, root);
    free(offs);
    free(lens);
    return rc;
}
