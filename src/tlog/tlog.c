/* tlog.c — the writable log: open/recover, group-commit appends, reads and proofs.
 * See tlog.h for the contract. */
#include "tlog/tlog.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/crc32c.h"
#include "common/fileio.h"
#include "common/util.h"
#include "tlog/disk.h"
#include "tlog/merkle.h"
#include "tlog/note.h"
#include "tlog/tile.h"

/* The proof cache holds expanded tiles (16 KiB each), allocated as they are touched; 4096 of
 * them (64 MiB at most) hold every tile of a 1M-entry log. */
#define CACHE_SLOTS 4096

typedef struct cache_slot {
    int level;              /* -1: empty */
    uint64_t index;
    tile_expanded *x;
} cache_slot;

typedef struct req {
    const void *const *data;
    const size_t *lens;
    size_t n;
    uint64_t first;
    int status, done;
    pt_err err;
    struct req *next;
} req;

struct tlog {
    char *dir;                 /* DATA/log/NAME */
    char *origin, *vkey;
    note_signer signer;
    note_verifier verifier;
    int lock_fd;

    pthread_mutex_t mu;        /* guards everything below up to the cache */
    pthread_cond_t cv;
    uint64_t size;             /* published */
    uint8_t root[32];
    char *cp;
    size_t cp_len;
    req *head, *tail;
    int leader, broken;
    int recovering;            /* opened by tlog_recover */
    uint64_t cosigned_size;    /* the latest checkpoint published with witness cosignatures */
    char stop_msg[512];        /* why tlog_stop stopped the writer ("" if it did not) */

    /* Owned by the leader while it integrates (leader == 1), so no lock is needed. */
    tile_stack *st;
    pt_buf bundle;             /* the partial entries bundle: st->size % 256 entries */

    pthread_mutex_t cache_mu;
    cache_slot cache[CACHE_SLOTS];

    /* The journal (tlog_journal_append / tlog_integrate), guarded by jmu. */
    pthread_mutex_t jmu;
    int jfd;                   /* DATA/log/NAME/journal; -1 until first used */
    uint64_t jnext;            /* the index the next journaled entry gets */
    pt_buf jpend;              /* journaled, not yet integrated: u16 BE length ‖ bytes each */
    size_t jn;                 /* how many entries jpend holds */
    uint64_t jtickets, jacked; /* calls written so far; calls acknowledged (in order) */
    int jfailed;               /* a journal write or sync failed: no more acknowledgements */
    pthread_cond_t jcv;        /* jacked moved */
    pt_buf jrec;               /* scratch: the records of one journal write */
};

/* ---- proof cache ---------------------------------------------------------------------- */

static size_t slot_of(int level, uint64_t index) {
    return (size_t)((index + (uint64_t)level * 7919u) % CACHE_SLOTS);
}

static void cache_put(tlog *t, int level, uint64_t index, const tile_expanded *x) {
    cache_slot *s = &t->cache[slot_of(level, index)];
    if (!s->x && !(s->x = malloc(sizeof *s->x))) return; /* a cache: failure only costs time */
    memcpy(s->x, x, sizeof *x);
    s->level = level;
    s->index = index;
}

static int read_tile_file(const char *dir, int level, uint64_t index, unsigned width, uint8_t **data,
                          size_t *len, pt_err *err) {
    char rel[TILE_PATH_MAX];
    tile_path(rel, level, index, width);
    char *path = pt_path_join(dir, rel);
    if (!path) return pt_errf(err, PT_ENOMEM, "out of memory");
    char *buf;
    int rc = pt_read_file(path, (size_t)TILE_WIDTH * (2 + TLOG_MAX_ENTRY), &buf, len, err);
    free(path);
    if (rc) return rc;
    *data = (uint8_t *)buf;
    return PT_OK;
}

static int load_hash_tile(const char *dir, unsigned level, uint64_t index, unsigned width, merkle_hash *out,
                          pt_err *err) {
    uint8_t *data;
    size_t len;
    int rc = read_tile_file(dir, (int)level, index, width, &data, &len, err);
    if (rc) return rc;
    if (len != (size_t)width * MERKLE_HASH) {
        char rel[TILE_PATH_MAX];
        rc = pt_errf(err, PT_EFORMAT, "%s/%s: %zu bytes, expected %u hashes (%u bytes)", dir,
                     tile_path(rel, (int)level, index, width), len, width, width * MERKLE_HASH);
    } else {
        memcpy(out, data, len);
    }
    free(data);
    return rc;
}

typedef struct getctx {
    tlog *t;
    uint64_t size;      /* the tree the proof is about */
    uint64_t published; /* the published size: which tile files exist (a smaller tree's
                           partial tiles need not exist, the wider tiles hold the same hashes) */
} getctx;

/* merkle_get_fn over the stored tiles of the tree of g->size, through the cache. */
static int tiles_get(void *ctx, unsigned level, uint64_t index, uint8_t out[MERKLE_HASH], pt_err *err) {
    getctx *g = ctx;
    tlog *t = g->t;
    unsigned tl = level / TILE_HEIGHT, r = level % TILE_HEIGHT;
    if (tl >= TILE_LEVELS) return pt_errf(err, PT_EINTERNAL, "hash level %u out of range", level);
    uint64_t pos = index << r;            /* first covered hash at level 8·tl */
    uint64_t k = pos >> TILE_HEIGHT;
    unsigned j = (unsigned)(pos & (TILE_WIDTH - 1)) >> r;
    unsigned need = (j + 1) << r;
    if (tile_width((int)tl, k, g->size) < need) return pt_errf(err, PT_EINTERNAL, "hash (%u, %llu) is not in the tree of size %llu", level,
                                 (unsigned long long)index, (unsigned long long)g->size);
    pthread_mutex_lock(&t->cache_mu);
    cache_slot *s = &t->cache[slot_of((int)tl, k)];
    if (s->x && s->level == (int)tl && s->index == k && s->x->width >= need) {
        memcpy(out, tile_node(s->x, r, j), MERKLE_HASH);
        pthread_mutex_unlock(&t->cache_mu);
        return PT_OK;
    }
    pthread_mutex_unlock(&t->cache_mu);
    unsigned w = tile_width((int)tl, k, g->published);
    if (w < need) return pt_errf(err, PT_EINTERNAL, "tile %u/%llu is not published", tl, (unsigned long long)k);
    tile_expanded *x = malloc(sizeof *x);
    if (!x) return pt_errf(err, PT_ENOMEM, "out of memory");
    merkle_hash *hashes = malloc((size_t)w * MERKLE_HASH);
    int rc = hashes ? load_hash_tile(t->dir, tl, k, w, hashes, err) : pt_errf(err, PT_ENOMEM, "out of memory");
    if (!rc) {
        tile_expand((const merkle_hash *)hashes, w, x);
        memcpy(out, tile_node(x, r, j), MERKLE_HASH);
        pthread_mutex_lock(&t->cache_mu);
        cache_put(t, (int)tl, k, x);
        pthread_mutex_unlock(&t->cache_mu);
    }
    free(hashes);
    free(x);
    return rc;
}

/* ---- writing a batch -------------------------------------------------------------------- */

/* Files of a batch are written without fsync; one syncfs() on the log's filesystem then makes
 * all of them (and the directories created for them) durable at once, before the checkpoint
 * that covers them is renamed into place. One sync for the whole batch instead of one per
 * file and per directory: on a disk where a sync costs milliseconds, that sets the rate. */
typedef struct writer {
    tlog *t;
} writer;

/* Writes a tile or bundle file. Files beyond the published checkpoint that a crashed batch left
 * are removed at open (disk_remove_beyond); a file is rewritten whole here (O_TRUNC), never
 * one the checkpoint covers. */
static int writer_put(writer *w, int level, uint64_t index, unsigned width, const void *data, size_t len,
                      pt_err *err) {
    char rel[TILE_PATH_MAX];
    return disk_put(w->t->dir, tile_path(rel, level, index, width), data, len, err);
}

/* tile_full_fn: a tile (and at level 0 its entry bundle) is complete: write it whole. */
static int on_full(void *ctx, unsigned level, uint64_t n, const merkle_hash *hashes, pt_err *err) {
    writer *w = ctx;
    tlog *t = w->t;
    int rc;
    if (level == 0) {
        if ((rc = writer_put(w, TILE_ENTRIES, n, TILE_WIDTH, t->bundle.data, t->bundle.len, err))) return rc;
        pt_buf_reset(&t->bundle);
    }
    if ((rc = writer_put(w, (int)level, n, TILE_WIDTH, hashes, (size_t)TILE_WIDTH * MERKLE_HASH, err))) return rc;
    /* Warm the proof cache with a new full tile above level 0 (one per 65,536 entries).
     * Level-0 tiles, one per 256 entries, are cached when a proof first reads them: warming
     * them here filled the whole cache (4,096 slots × 16 KiB) within the first million
     * appends, which a server's audit log reaches in minutes, whether or not anyone asks for
     * a proof. */
    tile_expanded *x = level > 0 ? malloc(sizeof *x) : NULL;
    if (x) {
        tile_expand(hashes, TILE_WIDTH, x);
        pthread_mutex_lock(&t->cache_mu);
        cache_put(t, (int)level, n, x);
        pthread_mutex_unlock(&t->cache_mu);
        free(x);
    }
    return PT_OK;
}

/* Signs a checkpoint for (size, root) and writes it to checkpoint.tmp; then one syncfs makes
 * the batch's tiles and the new checkpoint durable; then the rename publishes it atomically
 * and the directory fsync makes the rename durable. (pt_write_atomic's sequence, with the
 * batch's sync folded into its first fsync.) */
static int publish(tlog *t, uint64_t size, const uint8_t root[32], char **cp, size_t *cp_len, pt_err *err) {
    char *body = checkpoint_format(t->origin, size, root);
    if (!body) return pt_errf(err, PT_ENOMEM, "out of memory");
    int rc = note_sign(body, strlen(body), &t->signer, cp, cp_len, err);
    free(body);
    if (rc) return rc;
    char *path = pt_path_join(t->dir, "checkpoint"), *tmp = pt_path_join(t->dir, "checkpoint.tmp");
    if (!path || !tmp) {
        rc = pt_errf(err, PT_ENOMEM, "out of memory");
        goto out;
    }
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        rc = pt_errf(err, PT_EIO, "open %s: %s", tmp, strerror(errno));
        goto out;
    }
    if (write(fd, *cp, *cp_len) != (ssize_t)*cp_len) rc = pt_errf(err, PT_EIO, "write %s: %s", tmp, strerror(errno));
    else if (syncfs(fd) < 0) rc = pt_errf(err, PT_EIO, "syncfs %s: %s", t->dir, strerror(errno));
    if (close(fd) < 0 && !rc) rc = pt_errf(err, PT_EIO, "close %s: %s", tmp, strerror(errno));
    /* checkpoint.tmp then holds the previous checkpoint (an exchange, not a rename: a file
     * system without a journal makes every later create scan past recently freed inodes). */
    if (!rc && pt_rename_swap(tmp, path) < 0) rc = pt_errf(err, PT_EIO, "rename %s: %s", tmp, strerror(errno));
    if (!rc) rc = pt_fsync_dir_of(path, err);
out:
    free(path);
    free(tmp);
    if (rc) {
        free(*cp);
        *cp = NULL;
    }
    return rc;
}

/* Integrates the requests in list (the caller is the leader): bundles and tiles written and
 * fsynced, then one checkpoint published. On success the new state is in *cp etc. */
static int integrate(tlog *t, req *list, uint8_t root[32], char **cp, size_t *cp_len, pt_err *err) {
    writer w = {.t = t};
    tile_stack *st = t->st;
    uint64_t old = st->size, total = 0;
    for (req *r = list; r; r = r->next) total += r->n;
    /* Marks the files this batch writes beyond the checkpoint as a batch in flight, not a
     * checkpoint gone back in time (see disk.h); the publish's syncfs makes it durable. */
    int rc = disk_pending_write(t->dir, old, old + total, err);
    for (req *r = list; r && !rc; r = r->next) {
        r->first = st->size;
        uint8_t leaf[2][MERKLE_HASH];
        for (size_t i = 0; i < r->n && !rc; i++) {
            uint8_t hdr[2] = {(uint8_t)(r->lens[i] >> 8), (uint8_t)r->lens[i]};
            if (i % 2 == 0 && i + 1 < r->n) /* leaf hashes two at a time */
                merkle_leaf_hash2(r->data[i], r->lens[i], r->data[i + 1], r->lens[i + 1], leaf[0], leaf[1]);
            else if (i % 2 == 0)
                merkle_leaf_hash(r->data[i], r->lens[i], leaf[0]);
            if (pt_buf_append(&t->bundle, hdr, 2) || pt_buf_append(&t->bundle, r->data[i], r->lens[i]))
                rc = pt_errf(err, PT_ENOMEM, "out of memory");
            else
                rc = tile_stack_push(st, leaf[i % 2], on_full, &w, err);
        }
    }
    uint64_t now = st->size;
    unsigned we = (unsigned)(now & (TILE_WIDTH - 1));
    if (!rc && we && now != old)
        rc = writer_put(&w, TILE_ENTRIES, now >> TILE_HEIGHT, we, t->bundle.data, t->bundle.len, err);
    for (unsigned l = 0; l < TILE_LEVELS && !rc; l++) {
        unsigned wl = tile_stack_width(st, l), shift = TILE_HEIGHT * l;
        if (wl && (now >> shift) != (old >> shift))
            rc = writer_put(&w, (int)l, (now >> shift) >> TILE_HEIGHT, wl, st->h[l], (size_t)wl * MERKLE_HASH, err);
    }
    if (rc) return rc;
    tile_stack_root(st, root);
    if ((rc = publish(t, now, root, cp, cp_len, err))) return rc;
    disk_pending_remove(t->dir);
    return PT_OK;
}

static int append_req(tlog *t, req *r, pt_err *err) {
    for (size_t i = 0; i < r->n; i++)
        if (r->lens[i] > TLOG_MAX_ENTRY)
            return pt_errf(err, PT_EINVAL, "entry %zu is %zu bytes; the limit is %u", i, r->lens[i], TLOG_MAX_ENTRY);
    pthread_mutex_lock(&t->mu);
    if (t->broken) {
        pthread_mutex_unlock(&t->mu);
        if (t->stop_msg[0]) return pt_errf(err, PT_EVERIFY, "%s", t->stop_msg);
        return pt_errf(err, PT_EIO, "%s: an earlier batch failed; reopen the log", t->dir);
    }
    r->next = NULL;
    if (t->tail) t->tail->next = r;
    else t->head = r;
    t->tail = r;
    while (!r->done) {
        if (t->leader || t->broken) {
            if (t->broken && !t->leader) { /* queued behind a failed batch */
                req **pp = &t->head, *prev = NULL;
                while (*pp && *pp != r) prev = *pp, pp = &(*pp)->next;
                if (*pp) {
                    *pp = r->next;
                    if (t->tail == r) t->tail = prev;
                }
                r->done = 1;
                r->status = pt_errf(&r->err, PT_EIO, "%s: an earlier batch failed; reopen the log", t->dir);
                break;
            }
            pthread_cond_wait(&t->cv, &t->mu);
            continue;
        }
        /* Become the leader: take everything queued and integrate it as one batch. */
        t->leader = 1;
        req *list = t->head;
        t->head = t->tail = NULL;
        pthread_mutex_unlock(&t->mu);
        uint8_t root[32];
        char *cp = NULL;
        size_t cp_len = 0;
        pt_err e;
        pt_err_clear(&e);
        int rc = integrate(t, list, root, &cp, &cp_len, &e);
        pthread_mutex_lock(&t->mu);
        if (rc == PT_OK) {
            free(t->cp);
            t->cp = cp;
            t->cp_len = cp_len;
            t->size = t->st->size;
            memcpy(t->root, root, 32);
        } else {
            t->broken = 1; /* memory and disk may disagree now: only a reopen recovers */
        }
        for (req *q = list; q; q = q->next) {
            q->status = rc;
            if (rc) q->err = e;
            q->done = 1;
        }
        t->leader = 0;
        pthread_cond_broadcast(&t->cv);
    }
    pthread_mutex_unlock(&t->mu);
    if (r->status && err) *err = r->err;
    return r->status;
}

int tlog_append(tlog *t, const void *data, size_t len, uint64_t *index, pt_err *err) {
    const void *d[1] = {data ? data : ""};
    req r = {.data = d, .lens = &len, .n = 1};
    int rc = append_req(t, &r, err);
    if (!rc && index) *index = r.first;
    return rc;
}

int tlog_append_batch(tlog *t, const void *const *data, const size_t *lens, size_t n, uint64_t *first_index,
                      pt_err *err) {
    if (n == 0) {
        if (first_index) *first_index = tlog_size(t);
        return PT_OK;
    }
    req r = {.data = data, .lens = lens, .n = n};
    int rc = append_req(t, &r, err);
    if (!rc && first_index) *first_index = r.first;
    return rc;
}

/* ---- open, recover, close ----------------------------------------------------------- */

/* ---- the journal ------------------------------------------------------------------------
 *
 * DATA/log/NAME/journal holds entries acknowledged by tlog_journal_append and not yet in a
 * published checkpoint, as records
 *     u64 BE index ‖ u16 BE length ‖ bytes ‖ 16-byte check of (index ‖ length ‖ bytes)
 * appended with one write and one fdatasync per call. Replay (at open) takes the records whose
 * index continues the published tree, stops at the first torn or out-of-sequence record, and
 * integrates them; tlog_integrate then empties the file.
 *
 * The check only tells a torn or half-written record from a whole one (whoever can write the
 * journal can write the log): CRC-32C, big-endian, then 12 zero bytes. Until 2026-12 it was
 * a BLAKE2b-128, 4% of the server's CPU at 50,000 receipts/s; replay still accepts those, so
 * a journal left by the older version is not lost. */

#define JREC_HEAD 10
#define JREC_SUM 16

static void jrec_sum(const uint8_t *rec, size_t len, uint8_t out[JREC_SUM]) {
    uint32_t c = pt_crc32c(0, rec, len);
    memset(out, 0, JREC_SUM);
    for (int i = 0; i < 4; i++) out[i] = (uint8_t)(c >> (24 - 8 * i));
}

/* Is sum the check of rec: today's, or the BLAKE2b of journals written before it? */
static int jrec_sum_ok(const uint8_t *rec, size_t len, const uint8_t *sum) {
    uint8_t want[JREC_SUM];
    jrec_sum(rec, len, want);
    if (!memcmp(want, sum, JREC_SUM)) return 1;
    crypto_generichash(want, JREC_SUM, rec, len, NULL, 0);
    return !memcmp(want, sum, JREC_SUM);
}

static int journal_path(tlog *t, char **path, pt_err *err) {
    if (!(*path = pt_path_join(t->dir, "journal"))) return pt_errf(err, PT_ENOMEM, "out of memory");
    return PT_OK;
}

/* Integrates what jpend holds (caller holds jmu) through the ordinary group-commit path, then
 * empties the journal. */
static int journal_integrate_locked(tlog *t, pt_err *err) {
    if (!t->jn) return PT_OK;
    const void **data = malloc(t->jn * sizeof *data);
    size_t *lens = malloc(t->jn * sizeof *lens);
    int rc = PT_OK;
    if (!data || !lens) {
        rc = pt_errf(err, PT_ENOMEM, "out of memory");
        goto out;
    }
    const uint8_t *p = (const uint8_t *)t->jpend.data;
    for (size_t i = 0, off = 0; i < t->jn; i++) {
        lens[i] = (size_t)p[off] << 8 | p[off + 1];
        data[i] = p + off + 2;
        off += 2 + lens[i];
    }
    req r = {.data = data, .lens = lens, .n = t->jn};
    uint64_t expect = t->jnext - t->jn;
    if ((rc = append_req(t, &r, err))) goto out;
    if (r.first != expect) { /* someone appended around the journal: indices already handed out differ */
        pthread_mutex_lock(&t->mu);
        t->broken = 1;
        pthread_mutex_unlock(&t->mu);
        rc = pt_errf(err, PT_EINTERNAL, "%s: journaled entries landed at %llu, not %llu (tlog_append was used on a "
                     "journaled log)", t->dir, (unsigned long long)r.first, (unsigned long long)expect);
        goto out;
    }
    pt_buf_reset(&t->jpend);
    t->jn = 0;
    /* Every record is now below the published size, so replay would skip them all anyway; the
     * truncation only keeps the file small. */
    if (t->jfd >= 0 && (ftruncate(t->jfd, 0) < 0 || fdatasync(t->jfd) < 0))
        rc = pt_errf(err, PT_EIO, "%s/journal: truncate: %s", t->dir, strerror(errno));
out:
    free(data);
    free(lens);
    return rc;
}

static int journal_open_fd(tlog *t, pt_err *err) {
    if (t->jfd >= 0) return PT_OK;
    char *path;
    int rc = journal_path(t, &path, err);
    if (rc) return rc;
    int existed = pt_exists(path);
    t->jfd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (t->jfd < 0) rc = pt_errf(err, PT_EIO, "open %s: %s", path, strerror(errno));
    else if (!existed) rc = pt_fsync_dir_of(path, err); /* the file itself must survive a crash */
    free(path);
    return rc;
}

static int journal_replay(tlog *t, pt_err *err) {
    t->jnext = t->size;
    char *path, *text = NULL;
    size_t len;
    int rc = journal_path(t, &path, err);
    if (rc) return rc;
    rc = pt_read_file(path, (size_t)1 << 34, &text, &len, err);
    free(path);
    if (rc == PT_ENOTFOUND) return PT_OK;
    if (rc) return rc;
    const uint8_t *p = (const uint8_t *)text;
    size_t off = 0;
    while (len - off >= JREC_HEAD + JREC_SUM) {
        uint64_t index = 0;
        for (int i = 0; i < 8; i++) index = index << 8 | p[off + i];
        size_t n = (size_t)p[off + 8] << 8 | p[off + 9];
        if (len - off - JREC_HEAD - JREC_SUM < n) break; /* torn */
        if (!jrec_sum_ok(p + off, JREC_HEAD + n, p + off + JREC_HEAD + n)) break; /* torn */
        if (index == t->jnext) {
            if (pt_buf_append(&t->jpend, p + off + 8, 2 + n)) {
                rc = pt_errf(err, PT_ENOMEM, "out of memory");
                break;
            }
            t->jn++;
            t->jnext++;
        } else if (index > t->jnext) {
            /* Records are written in index order from the published size on, so a gap means
             * the checkpoint is older than what was journaled: its indices were handed out. */
            if (!t->recovering)
                rc = pt_errf(err, PT_EVERIFY, "%s/journal: holds entry %llu, beyond the checkpoint's size %llu: the "
                             "checkpoint is older than the journal; the writer stops (parity log recover re-derives "
                             "the checkpoint)", t->dir, (unsigned long long)index, (unsigned long long)t->jnext);
            break; /* recovery: entries before it are gone, so nothing from here on can be placed */
        }
        off += JREC_HEAD + n + JREC_SUM;
    }
    free(text);
    if (rc) return rc;
    if ((rc = journal_open_fd(t, err))) return rc;
    pthread_mutex_lock(&t->jmu);
    if (t->jn) rc = journal_integrate_locked(t, err);
    else if (ftruncate(t->jfd, 0) < 0 || fdatasync(t->jfd) < 0)
        rc = pt_errf(err, PT_EIO, "%s/journal: truncate: %s", t->dir, strerror(errno));
    pthread_mutex_unlock(&t->jmu);
    return rc;
}

/* Records are written under jmu (so the file's order is the index order) and fdatasynced
 * outside it, so one call's sync overlaps the next call's write. Calls are acknowledged in
 * ticket order: a call returns only after every earlier call's sync succeeded, since replay
 * stops at the first record missing from the file. */
int tlog_journal_append(tlog *t, const void *const *data, const size_t *lens, size_t n, uint64_t *first_index,
                        pt_err *err) {
    return tlog_journal_append_then(t, data, lens, n, first_index, NULL, NULL, err);
}

int tlog_journal_append_then(tlog *t, const void *const *data, const size_t *lens, size_t n, uint64_t *first_index,
                             void (*written)(void *ctx, uint64_t first), void *ctx, pt_err *err) {
    for (size_t i = 0; i < n; i++)
        if (lens[i] > TLOG_MAX_ENTRY)
            return pt_errf(err, PT_EINVAL, "entry %zu is %zu bytes; the limit is %u", i, lens[i], TLOG_MAX_ENTRY);
    pthread_mutex_lock(&t->jmu);
    int rc = PT_OK;
    pthread_mutex_lock(&t->mu);
    int broken = t->broken;
    pthread_mutex_unlock(&t->mu);
    if (broken || t->jfailed) {
        rc = pt_errf(err, PT_EIO, "%s: an earlier batch failed; reopen the log", t->dir);
        pthread_mutex_unlock(&t->jmu);
        return rc;
    }
    if ((rc = journal_open_fd(t, err))) {
        pthread_mutex_unlock(&t->jmu);
        return rc;
    }
    pt_buf_reset(&t->jrec);
    size_t pend0 = t->jpend.len;
    for (size_t i = 0; i < n && !rc; i++) {
        uint8_t head[JREC_HEAD], sum[JREC_SUM];
        uint64_t index = t->jnext + i;
        for (int k = 0; k < 8; k++) head[k] = (uint8_t)(index >> (56 - 8 * k));
        head[8] = (uint8_t)(lens[i] >> 8);
        head[9] = (uint8_t)lens[i];
        size_t at = t->jrec.len;
        if (pt_buf_append(&t->jrec, head, JREC_HEAD) || pt_buf_append(&t->jrec, data[i], lens[i]) ||
            pt_buf_append(&t->jpend, head + 8, 2) || pt_buf_append(&t->jpend, data[i], lens[i])) {
            rc = pt_errf(err, PT_ENOMEM, "out of memory");
            break;
        }
        jrec_sum((const uint8_t *)t->jrec.data + at, JREC_HEAD + lens[i], sum);
        if (pt_buf_append(&t->jrec, sum, JREC_SUM)) rc = pt_errf(err, PT_ENOMEM, "out of memory");
    }
    const char *p = t->jrec.data;
    size_t left = t->jrec.len;
    while (!rc && left > 0) {
        ssize_t k = write(t->jfd, p, left);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) rc = pt_errf(err, PT_EIO, "%s/journal: write: %s", t->dir, k < 0 ? strerror(errno) : "short write");
        else p += k, left -= (size_t)k;
    }
    if (t->jrec.cap > ((size_t)1 << 22)) { /* don't keep a huge scratch buffer */
        pt_buf_free(&t->jrec);
        pt_buf_init(&t->jrec, (size_t)1 << 34);
    }
    if (rc) {
        t->jpend.len = pend0;     /* nothing of this call is acknowledged */
        if (rc == PT_EIO) t->jfailed = 1; /* the file may hold part of it: only a reopen knows */
        pthread_mutex_unlock(&t->jmu);
        return rc;
    }
    uint64_t first = t->jnext, ticket = ++t->jtickets;
    t->jnext += n;
    t->jn += n;
    int fd = t->jfd;
    if (written) written(ctx, first);
    pthread_mutex_unlock(&t->jmu);

    int synced = fdatasync(fd) == 0;
    int sync_errno = errno;

    pthread_mutex_lock(&t->jmu);
    while (t->jacked != ticket - 1) pthread_cond_wait(&t->jcv, &t->jmu);
    if (!synced) {
        t->jfailed = 1;
        rc = pt_errf(err, PT_EIO, "%s/journal: fdatasync: %s", t->dir, strerror(sync_errno));
    } else if (t->jfailed) {
        rc = pt_errf(err, PT_EIO, "%s: an earlier journal write failed; reopen the log", t->dir);
    }
    t->jacked = ticket;
    pthread_cond_broadcast(&t->jcv);
    pthread_mutex_unlock(&t->jmu);
    if (!rc && first_index) *first_index = first;
    return rc;
}

int tlog_integrate(tlog *t, pt_err *err) {
    pthread_mutex_lock(&t->jmu);
    int rc = journal_integrate_locked(t, err);
    pthread_mutex_unlock(&t->jmu);
    return rc;
}

uint64_t tlog_journaled_size(tlog *t) {
    pthread_mutex_lock(&t->jmu);
    uint64_t n = t->jnext;
    pthread_mutex_unlock(&t->jmu);
    return n;
}

size_t tlog_journal_pending(tlog *t) {
    pthread_mutex_lock(&t->jmu);
    size_t n = t->jn;
    pthread_mutex_unlock(&t->jmu);
    return n;
}

static int name_ok(const char *s) {
    if (!*s || strlen(s) > 64) return 0;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') || *s == '_' || *s == '-'))
            return 0;
    return 1;
}

static int load_or_create_key(tlog *t, const char *data_dir, const char *name, const char *origin, pt_err *err) {
    pt_buf p;
    pt_buf_init(&p, 4096);
    if (pt_buf_printf(&p, "%s/keys", data_dir) != 0) return pt_errf(err, PT_ENOMEM, "out of memory");
    int rc = pt_mkdirs(p.data, 1, err);
    if (!rc && pt_buf_printf(&p, "/%s.key", name) != 0) rc = pt_errf(err, PT_ENOMEM, "out of memory");
    if (rc) goto out;
    char *text = NULL;
    size_t len;
    rc = pt_read_file(p.data, 4096, &text, &len, err);
    if (rc == PT_ENOTFOUND) {
        char *skey, *vkey;
        const char *keyname = origin;
        char def[128];
        if (!keyname) snprintf(def, sizeof def, "parity/%s", name), keyname = def;
        if ((rc = note_generate(keyname, &skey, &vkey, err))) goto out;
        size_t n = strlen(skey);
        skey[n] = '\n'; /* written with a final newline; the NUL is restored below */
        rc = pt_write_atomic(p.data, skey, n + 1, 0600, err);
        skey[n] = 0;
        if (!rc) rc = note_signer_parse(skey, &t->signer, err);
        sodium_memzero(skey, n);
        free(skey);
        free(vkey);
        if (rc) goto out;
    } else if (rc) {
        goto out;
    } else {
        while (len > 0 && (text[len - 1] == '\n' || text[len - 1] == '\r' || text[len - 1] == ' ')) text[--len] = 0;
        rc = note_signer_parse(text, &t->signer, err);
        sodium_memzero(text, len);
        free(text);
        if (rc) {
            pt_err_prefix(err, "%s", p.data);
            goto out;
        }
        if (origin && strcmp(origin, t->signer.name) != 0) {
            rc = pt_errf(err, PT_EINVAL, "%s: the key is named '%s', not the requested origin '%s'", p.data,
                         t->signer.name, origin);
            goto out;
        }
    }
    memcpy(t->verifier.name, t->signer.name, sizeof t->verifier.name);
    t->verifier.key_id = t->signer.key_id;
    memcpy(t->verifier.pub, t->signer.pub, 32);
    t->vkey = note_signer_vkey(&t->signer);
    t->origin = strdup(t->signer.name);
    if (!t->vkey || !t->origin) rc = pt_errf(err, PT_ENOMEM, "out of memory");
out:
    pt_buf_free(&p);
    return rc;
}

/* see tlog.h */
int tlog_read_vkey(const char *data_dir, const char *name, char **vkey, pt_err *err) {
    *vkey = NULL;
    if (sodium_init() < 0) return pt_errf(err, PT_EINTERNAL, "libsodium failed to initialise");
    if (!name_ok(name)) return pt_errf(err, PT_EINVAL, "log name '%s' must be 1-64 of [A-Za-z0-9_-]", name);
    pt_buf p;
    pt_buf_init(&p, 4096);
    if (pt_buf_printf(&p, "%s/keys/%s.key", data_dir, name) != 0) return pt_errf(err, PT_ENOMEM, "out of memory");
    char *text = NULL;
    size_t len;
    int rc = pt_read_file(p.data, 4096, &text, &len, err);
    if (rc == PT_ENOMEM) rc = pt_errf(err, PT_EFORMAT, "%s: larger than 4096 bytes: not a key", p.data);
    if (!rc) {
        note_signer sg;
        while (len > 0 && (text[len - 1] == '\n' || text[len - 1] == '\r' || text[len - 1] == ' ')) text[--len] = 0;
        rc = note_signer_parse(text, &sg, err);
        if (rc) pt_err_prefix(err, "%s", p.data);
        else if (!(*vkey = note_signer_vkey(&sg))) rc = pt_errf(err, PT_ENOMEM, "out of memory");
        sodium_memzero(&sg, sizeof sg);
        sodium_memzero(text, len);
    }
    free(text);
    pt_buf_free(&p);
    return rc;
}

/* Rebuilds the right edge (partial tiles and bundle) of the published tree, and checks that
 * it hashes to the checkpoint's root. Anything beyond the checkpoint is ignored. */
static int recover(tlog *t, const checkpoint *c, pt_err *err) {
    tile_stack *st = t->st;
    st->size = c->size;
    int rc;
    for (unsigned l = 0; l < TILE_LEVELS; l++) {
        unsigned w = tile_stack_width(st, l);
        if (w && (rc = load_hash_tile(t->dir, l, (c->size >> (TILE_HEIGHT * l)) >> TILE_HEIGHT, w, st->h[l], err)))
            return rc;
    }
    unsigned we = (unsigned)(c->size & (TILE_WIDTH - 1));
    if (we) {
        uint8_t *data;
        size_t len, offs[TILE_WIDTH], lens[TILE_WIDTH];
        char rel[TILE_PATH_MAX];
        tile_path(rel, TILE_ENTRIES, c->size >> TILE_HEIGHT, we);
        if ((rc = read_tile_file(t->dir, TILE_ENTRIES, c->size >> TILE_HEIGHT, we, &data, &len, err))) return rc;
        char what[512];
        snprintf(what, sizeof what, "%s/%s", t->dir, rel);
        rc = tile_parse_bundle(data, len, we, offs, lens, what, err);
        for (unsigned i = 0; !rc && i < we; i++) {
            uint8_t leaf[32];
            merkle_leaf_hash(data + offs[i], lens[i], leaf);
            if (memcmp(leaf, st->h[0][i], 32) != 0)
                rc = pt_errf(err, PT_EVERIFY, "%s: entry %u does not match its hash in tile/0", what, i);
        }
        if (!rc && pt_buf_append(&t->bundle, data, len)) rc = pt_errf(err, PT_ENOMEM, "out of memory");
        free(data);
        if (rc) return rc;
    }
    uint8_t root[32];
    tile_stack_root(st, root);
    if (memcmp(root, c->root, 32) != 0)
        return pt_errf(err, PT_EVERIFY, "%s: the tiles do not hash to the checkpoint's root (size %llu)", t->dir,
                       (unsigned long long)c->size);
    return PT_OK;
}

/* A missing checkpoint is a new log only if nothing was ever written: entries, tiles or a
 * journal on disk mean the checkpoint was lost, and starting over would hand out their
 * indices again with other content. */
static int check_new_log(tlog *t, const char *cp_path, pt_err *err) {
    char *tiles = pt_path_join(t->dir, "tile"), *journal = pt_path_join(t->dir, "journal");
    uint64_t ext = 0;
    struct stat sb;
    int rc = tiles && journal ? disk_extent(t->dir, 0, &ext, err) : pt_errf(err, PT_ENOMEM, "out of memory");
    long long jbytes = journal && stat(journal, &sb) == 0 ? (long long)sb.st_size : 0;
    if (!rc && (ext > 0 || jbytes > 0 || pt_exists(tiles)))
        rc = pt_errf(err, PT_EVERIFY, "%s: missing (size 0), but %s holds %llu entries and its journal %lld bytes: "
                     "the writer will not start the log over them; parity log recover --log %s re-derives the "
                     "checkpoint from the entries on disk", cp_path, tiles, (unsigned long long)ext, jbytes,
                     strrchr(t->dir, '/') + 1);
    free(tiles);
    free(journal);
    return rc;
}

/* Files beyond the checkpoint are the remains of a batch that crashed before its checkpoint
 * was published (removed here: they were never acknowledged), or the checkpoint is older than
 * the log on disk (restored from a backup, swapped): then appending would overwrite entries
 * that a newer checkpoint may have published, so the writer stops. */
static int check_nothing_beyond(tlog *t, const char *cp_path, uint64_t size, pt_err *err) {
    uint64_t ext, from, to;
    int rc = disk_extent(t->dir, size, &ext, err);
    if (rc) return rc;
    disk_pending_read(t->dir, &from, &to);
    if (ext > size && !(from == size && to >= ext))
        return pt_errf(err, PT_EVERIFY, "%s: size %llu, but %s/tile/entries holds %llu entries: the checkpoint is "
                       "older than the log on disk; the writer will not append over existing entries; parity log "
                       "recover --log %s re-derives the checkpoint from the entries on disk", cp_path,
                       (unsigned long long)size, t->dir, (unsigned long long)ext, strrchr(t->dir, '/') + 1);
    if (ext > size && (rc = disk_remove_beyond(t->dir, size, err))) return rc;
    disk_pending_remove(t->dir);
    return PT_OK;
}

/* Loads and checks the published checkpoint (a new log publishes the empty tree). */
static int load_checkpoint(tlog *t, const char *cp_path, pt_err *err) {
    size_t len, tlen;
    char *text = NULL;
    int rc = pt_read_file(cp_path, TLOG_MAX_CHECKPOINT, &text, &len, err);
    if (rc == PT_ENOTFOUND) {
        if ((rc = check_new_log(t, cp_path, err))) return rc;
        merkle_empty_root(t->root);
        return publish(t, 0, t->root, &t->cp, &t->cp_len, err);
    }
    if (rc) return rc;
    checkpoint c;
    if ((rc = note_open(text, len, &t->verifier, 1, &tlen, NULL, err)) ||
        (rc = checkpoint_parse(text, tlen, &c, err))) {
        pt_err_prefix(err, "%s", cp_path);
    } else if (strcmp(c.origin, t->origin) != 0) {
        rc = pt_errf(err, PT_EFORMAT, "%s: origin '%s' is not the key's name '%s'", cp_path, c.origin, t->origin);
    } else if (!(rc = recover(t, &c, err)) && !(rc = check_nothing_beyond(t, cp_path, c.size, err))) {
        t->size = c.size;
        memcpy(t->root, c.root, 32);
        t->cp = text;
        t->cp_len = len;
        text = NULL;
    }
    free(text);
    return rc;
}

/* The size of the latest cosigned checkpoint recorded in dir/cosigned/index (0 if none). */
static uint64_t read_cosigned_size(const char *dir) {
    char *path = pt_path_join(dir, "cosigned/index"), *text = NULL;
    size_t len;
    uint64_t last = 0;
    if (path && pt_read_file(path, (size_t)1 << 30, &text, &len, NULL) == PT_OK) {
        for (char *p = text, *nl; (nl = memchr(p, '\n', len - (size_t)(p - text))); p = nl + 1) {
            *nl = 0;
            uint64_t v;
            if (pt_parse_u64(p, &v) == 0 && v > last) last = v;
        }
    }
    free(text);
    free(path);
    return last;
}

/* A checkpoint older than one that witnesses cosigned is a rollback (a restored backup, a
 * swapped file): the writer would hand out indices the witnesses have already seen. */
static int check_cosigned(tlog *t, const char *cp_path, pt_err *err) {
    t->cosigned_size = read_cosigned_size(t->dir);
    if (t->cosigned_size <= t->size || t->recovering) return PT_OK;
    return pt_errf(err, PT_EVERIFY, "%s: size %llu, but witnesses have cosigned size %llu (%s/cosigned/index): the "
                   "checkpoint is older than what witnesses cosigned; the writer stops", cp_path,
                   (unsigned long long)t->size, (unsigned long long)t->cosigned_size, t->dir);
}

/* tlog_recover: the checkpoint re-derived from the entry bundles on disk. A checkpoint still
 * there and signed by the log's key must be a prefix of what is on disk (same root at its
 * size): recovery never shortens or rewrites a published tree. */
static int rebuild_checkpoint(tlog *t, const char *cp_path, tlog_recovery *rec, pt_err *err) {
    size_t len, tlen;
    char *text = NULL;
    checkpoint c;
    memset(&c, 0, sizeof c);
    int rc = pt_read_file(cp_path, TLOG_MAX_CHECKPOINT, &text, &len, err);
    rec->previous = rc == PT_ENOTFOUND ? TLOG_CP_MISSING : TLOG_CP_UNREADABLE;
    if (!rc && !note_open(text, len, &t->verifier, 1, &tlen, NULL, NULL) && !checkpoint_parse(text, tlen, &c, NULL) &&
        !strcmp(c.origin, t->origin)) {
        rec->previous = TLOG_CP_VALID;
        rec->previous_size = c.size;
    }
    free(text);
    uint8_t root[32];
    if ((rc = disk_rebuild(t->dir, t->st, &t->bundle, root, err))) return rc;
    t->size = rec->size = t->st->size;
    if (rec->previous == TLOG_CP_VALID) {
        uint8_t old[32];
        if (c.size > t->size)
            return pt_errf(err, PT_EVERIFY, "%s: size %llu, but the entry bundles on disk hold only %llu entries: "
                           "entries are missing, recovery would shorten the log", cp_path, (unsigned long long)c.size,
                           (unsigned long long)t->size);
        if (c.size > 0 && ((rc = tlog_root(t, c.size, old, err)) || memcmp(old, c.root, 32) != 0))
            return rc ? rc : pt_errf(err, PT_EVERIFY, "%s: the entries on disk do not hash to its root at size %llu: "
                                     "the log on disk was rewritten", cp_path, (unsigned long long)c.size);
    }
    if ((rc = disk_remove_beyond(t->dir, t->size, err))) return rc;
    memcpy(t->root, root, 32);
    if ((rc = publish(t, t->size, root, &t->cp, &t->cp_len, err))) return rc;
    disk_pending_remove(t->dir);
    return PT_OK;
}

static int open_log(const char *data_dir, const char *name, const char *origin, tlog_recovery *rec, tlog **out,
                    pt_err *err) {
    *out = NULL;
    if (sodium_init() < 0) return pt_errf(err, PT_EINTERNAL, "libsodium failed to initialise");
    if (!name_ok(name)) return pt_errf(err, PT_EINVAL, "log name '%s' must be 1-64 of [A-Za-z0-9_-]", name);
    if (origin && !note_name_ok(origin, strlen(origin)))
        return pt_errf(err, PT_EINVAL, "origin '%s' is not a valid key name (no spaces or '+')", origin);
    tlog *t = calloc(1, sizeof *t);
    if (!t) return pt_errf(err, PT_ENOMEM, "out of memory");
    t->lock_fd = -1;
    t->recovering = rec != NULL;
    pthread_mutex_init(&t->mu, NULL);
    pthread_cond_init(&t->cv, NULL);
    pthread_mutex_init(&t->cache_mu, NULL);
    pthread_mutex_init(&t->jmu, NULL);
    pthread_cond_init(&t->jcv, NULL);
    t->jfd = -1;
    pt_buf_init(&t->jpend, (size_t)1 << 34);
    pt_buf_init(&t->jrec, (size_t)1 << 34);
    pt_buf_init(&t->bundle, (size_t)TILE_WIDTH * (2 + TLOG_MAX_ENTRY));
    for (size_t i = 0; i < CACHE_SLOTS; i++) t->cache[i].level = -1;
    int rc = PT_OK;
    char *cp_path = NULL;
    pt_buf p;
    pt_buf_init(&p, 8192);
    if (!(t->st = calloc(1, sizeof *t->st)) || pt_buf_printf(&p, "%s/log/%s", data_dir, name) ||
        !(t->dir = strdup(p.data))) {
        rc = pt_errf(err, PT_ENOMEM, "out of memory");
        goto fail;
    }
    if (rec && !pt_exists(t->dir)) {
        rc = pt_errf(err, PT_ENOTFOUND, "%s: no such log to recover", t->dir);
        goto fail;
    }
    if ((rc = pt_mkdirs(t->dir, 0, err))) goto fail;
    pt_buf_puts(&p, "/.lock");
    t->lock_fd = open(p.data, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (t->lock_fd < 0) {
        rc = pt_errf(err, PT_EIO, "open %s: %s", p.data, strerror(errno));
        goto fail;
    }
    if (flock(t->lock_fd, LOCK_EX | LOCK_NB) < 0) {
        rc = pt_errf(err, errno == EWOULDBLOCK ? PT_ECONFLICT : PT_EIO, "%s: %s", p.data,
                     errno == EWOULDBLOCK ? "the log is open in another process" : strerror(errno));
        goto fail;
    }
    pt_buf_reset(&p);
    if (rec && (pt_buf_printf(&p, "%s/keys/%s.key", data_dir, name) || !pt_exists(p.data))) {
        rc = pt_errf(err, PT_ENOTFOUND, "%s: no signing key: a recovered checkpoint must be signed by the log's key",
                     p.data);
        goto fail;
    }
    if ((rc = load_or_create_key(t, data_dir, name, origin, err))) goto fail;
    if (!(cp_path = pt_path_join(t->dir, "checkpoint"))) {
        rc = pt_errf(err, PT_ENOMEM, "out of memory");
        goto fail;
    }
    if ((rc = rec ? rebuild_checkpoint(t, cp_path, rec, err) : load_checkpoint(t, cp_path, err))) goto fail;
    if ((rc = journal_replay(t, err))) goto fail;
    if ((rc = check_cosigned(t, cp_path, err))) goto fail;
    free(cp_path);
    pt_buf_free(&p);
    *out = t;
    return PT_OK;
fail:
    free(cp_path);
    pt_buf_free(&p);
    tlog_close(t);
    return rc;
}

int tlog_open(const char *data_dir, const char *name, const char *origin, tlog **out, pt_err *err) {
    return open_log(data_dir, name, origin, NULL, out, err);
}

int tlog_recover(const char *data_dir, const char *name, tlog_recovery *rec, pt_err *err) {
    memset(rec, 0, sizeof *rec);
    tlog *t;
    int rc = open_log(data_dir, name, NULL, rec, &t, err);
    if (rc) return rc;
    char when[21], entry[512];
    static const char *const prev[] = {"missing", "unreadable", "valid"};
    int n = snprintf(entry, sizeof entry,
                     "{\"type\":\"log_recovery\",\"time\":\"%s\",\"previous_checkpoint\":\"%s\","
                     "\"previous_size\":%llu,\"recovered_size\":%llu}",
                     pt_format_time(pt_unix_time(), when), prev[rec->previous], (unsigned long long)rec->previous_size,
                     (unsigned long long)rec->size);
    rc = tlog_append(t, entry, (size_t)n, &rec->entry_index, err);
    tlog_close(t);
    return rc;
}

void tlog_close(tlog *t) {
    if (!t) return;
    if (t->jn && !t->broken && !t->jfailed) tlog_integrate(t, NULL); /* else the next open replays it */
    if (t->jfd >= 0) close(t->jfd);
    pt_buf_free(&t->jpend);
    pt_buf_free(&t->jrec);
    pthread_mutex_destroy(&t->jmu);
    pthread_cond_destroy(&t->jcv);
    if (t->lock_fd >= 0) close(t->lock_fd); /* releases the flock */
    for (size_t i = 0; i < CACHE_SLOTS; i++) free(t->cache[i].x);
    sodium_memzero(&t->signer, sizeof t->signer);
    pt_buf_free(&t->bundle);
    free(t->st);
    free(t->cp);
    free(t->dir);
    free(t->origin);
    free(t->vkey);
    pthread_mutex_destroy(&t->mu);
    pthread_cond_destroy(&t->cv);
    pthread_mutex_destroy(&t->cache_mu);
    free(t);
}

/* ---- witnesses ------------------------------------------------------------------------ */

void tlog_stop(tlog *t, const char *why) {
    pthread_mutex_lock(&t->mu);
    t->broken = 1;
    snprintf(t->stop_msg, sizeof t->stop_msg, "%s", why);
    pthread_mutex_unlock(&t->mu);
}

uint64_t tlog_cosigned_size(tlog *t) {
    pthread_mutex_lock(&t->mu);
    uint64_t s = t->cosigned_size;
    pthread_mutex_unlock(&t->mu);
    return s;
}

/* Appends "<size>\n" to dir/cosigned/index, durably. */
static int index_append(const char *dir, uint64_t size, pt_err *err) {
    char *path = pt_path_join(dir, "cosigned/index"), line[32];
    if (!path) return pt_errf(err, PT_ENOMEM, "out of memory");
    int n = snprintf(line, sizeof line, "%llu\n", (unsigned long long)size), rc = PT_OK;
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0 || write(fd, line, (size_t)n) != n || fdatasync(fd) < 0)
        rc = pt_errf(err, PT_EIO, "%s: %s", path, strerror(errno));
    if (fd >= 0) close(fd);
    if (!rc) rc = pt_fsync_dir_of(path, err);
    free(path);
    return rc;
}

/* The checkpoint text and the log's own signature (the first line after the blank line) of
 * cp, then the witnesses' lines: cosignatures a previous run added are replaced. */
static int cosigned_note(const char *cp, size_t cp_len, const char *lines, size_t lines_len, pt_buf *note) {
    const char *blank = NULL;
    for (size_t i = 1; i < cp_len && !blank; i++)
        if (cp[i] == '\n' && cp[i - 1] == '\n') blank = cp + i;
    const char *sig_end = blank ? memchr(blank + 1, '\n', cp_len - (size_t)(blank + 1 - cp)) : NULL;
    if (!sig_end) return PT_EINTERNAL;
    if (pt_buf_append(note, cp, (size_t)(sig_end + 1 - cp)) || pt_buf_append(note, lines, lines_len)) return PT_ENOMEM;
    return PT_OK;
}

int tlog_publish_cosigned(tlog *t, uint64_t size, const char *lines, size_t lines_len, pt_err *err) {
    pt_buf note;
    pt_buf_init(&note, TLOG_MAX_CHECKPOINT);
    pthread_mutex_lock(&t->mu);
    while (t->leader) pthread_cond_wait(&t->cv, &t->mu);
    int rc = PT_OK;
    if (t->broken) rc = pt_errf(err, PT_EIO, "%s: the writer is stopped", t->dir);
    else if (t->size != size) /* a newer checkpoint was published meanwhile: its turn comes next */
        rc = pt_errf(err, PT_ECONFLICT, "%s: the checkpoint moved from size %llu to %llu", t->dir,
                     (unsigned long long)size, (unsigned long long)t->size);
    else if ((rc = cosigned_note(t->cp, t->cp_len, lines, lines_len, &note)))
        rc = pt_errf(err, rc, "%s: the checkpoint has no signature line, or out of memory", t->dir);
    if (rc) {
        pthread_mutex_unlock(&t->mu);
        pt_buf_free(&note);
        return rc;
    }
    t->leader = 1; /* no batch publishes while the files are written; the lock is not held */
    uint64_t cosigned = t->cosigned_size;
    pthread_mutex_unlock(&t->mu);
    /* cosigned/<size> and its index line first: once the checkpoint says it, the history has it. */
    char rel[64];
    snprintf(rel, sizeof rel, "cosigned/%llu", (unsigned long long)size);
    char *cpath = pt_path_join(t->dir, "checkpoint"), *hpath = pt_path_join(t->dir, rel),
         *hdir = pt_path_join(t->dir, "cosigned");
    if (!cpath || !hpath || !hdir) rc = pt_errf(err, PT_ENOMEM, "out of memory");
    if (!rc) rc = pt_mkdirs(hdir, 0, err);
    if (!rc) rc = pt_write_atomic(hpath, note.data, note.len, 0644, err);
    if (!rc && size > cosigned) rc = index_append(t->dir, size, err);
    if (!rc) rc = pt_write_atomic(cpath, note.data, note.len, 0644, err);
    free(cpath);
    free(hpath);
    free(hdir);
    pthread_mutex_lock(&t->mu);
    if (!rc) {
        free(t->cp);
        t->cp = pt_buf_steal(&note, &t->cp_len);
        if (size > t->cosigned_size) t->cosigned_size = size;
    }
    t->leader = 0;
    pthread_cond_broadcast(&t->cv);
    pthread_mutex_unlock(&t->mu);
    pt_buf_free(&note);
    return rc;
}

/* ---- reading -------------------------------------------------------------------------- */

uint64_t tlog_size(tlog *t) {
    pthread_mutex_lock(&t->mu);
    uint64_t s = t->size;
    pthread_mutex_unlock(&t->mu);
    return s;
}

const char *tlog_vkey(tlog *t) { return t->vkey; }
const char *tlog_origin(tlog *t) { return t->origin; }

int tlog_checkpoint(tlog *t, char **text, size_t *len, pt_err *err) {
    pthread_mutex_lock(&t->mu);
    char *c = malloc(t->cp_len + 1);
    if (c) {
        memcpy(c, t->cp, t->cp_len);
        c[t->cp_len] = 0;
        if (len) *len = t->cp_len;
    }
    pthread_mutex_unlock(&t->mu);
    *text = c;
    return c ? PT_OK : pt_errf(err, PT_ENOMEM, "out of memory");
}

static int check_size(tlog *t, uint64_t size, uint64_t *published, pt_err *err) {
    uint64_t s = tlog_size(t);
    *published = s;
    if (size > s)
        return pt_errf(err, PT_EINVAL, "tree size %llu is beyond the log's size %llu", (unsigned long long)size,
                       (unsigned long long)s);
    return PT_OK;
}

int tlog_root(tlog *t, uint64_t size, uint8_t root[TLOG_HASH_SIZE], pt_err *err) {
    uint64_t pub;
    int rc = check_size(t, size, &pub, err);
    if (rc) return rc;
    getctx g = {t, size, pub};
    return merkle_root(tiles_get, &g, size, root, err);
}

typedef struct {
    uint8_t *data;
    size_t len;
} one_entry;

static int copy_entry(void *ctx, uint64_t index, const uint8_t *data, size_t len) {
    (void)index;
    one_entry *o = ctx;
    if (!(o->data = malloc(len + 1))) return 1;
    memcpy(o->data, data, len);
    o->data[len] = 0;
    o->len = len;
    return 0;
}

int tlog_entry(tlog *t, uint64_t i, uint8_t **data, size_t *len, pt_err *err) {
    *data = NULL;
    uint64_t size = tlog_size(t);
    if (i >= size)
        return pt_errf(err, PT_ENOTFOUND, "entry %llu: the log has %llu entries", (unsigned long long)i,
                       (unsigned long long)size);
    one_entry o = {NULL, 0};
    int rc = tlog_entries(t, i, i + 1, copy_entry, &o, err);
    if (rc == PT_ECANCELLED) return pt_errf(err, PT_ENOMEM, "out of memory");
    if (!rc) {
        *data = o.data;
        *len = o.len;
    }
    return rc;
}

int tlog_entries(tlog *t, uint64_t from, uint64_t to, tlog_entry_fn fn, void *ctx, pt_err *err) {
    uint64_t size = tlog_size(t);
    if (from > to || to > size)
        return pt_errf(err, PT_EINVAL, "entries %llu..%llu: the log has %llu entries", (unsigned long long)from,
                       (unsigned long long)to, (unsigned long long)size);
    for (uint64_t k = from >> TILE_HEIGHT; k << TILE_HEIGHT < to; k++) {
        unsigned w = tile_width(TILE_ENTRIES, k, size);
        uint8_t *bundle;
        size_t blen, offs[TILE_WIDTH], lens[TILE_WIDTH];
        int rc = read_tile_file(t->dir, TILE_ENTRIES, k, w, &bundle, &blen, err);
        if (rc) return rc;
        char rel[TILE_PATH_MAX], what[512];
        snprintf(what, sizeof what, "%s/%s", t->dir, tile_path(rel, TILE_ENTRIES, k, w));
        rc = tile_parse_bundle(bundle, blen, w, offs, lens, what, err);
        uint64_t first = k << TILE_HEIGHT;
        for (uint64_t i = from > first ? from : first; !rc && i < to && i < first + w; i++)
            if (fn(ctx, i, bundle + offs[i - first], lens[i - first])) rc = PT_ECANCELLED;
        free(bundle);
        if (rc) return rc;
    }
    return PT_OK;
}

int tlog_prove_inclusion(tlog *t, uint64_t index, uint64_t size, uint8_t proof[][TLOG_HASH_SIZE], size_t *n,
                         uint8_t leaf_hash[TLOG_HASH_SIZE], pt_err *err) {
    *n = 0;
    uint64_t pub;
    int rc = check_size(t, size, &pub, err);
    if (rc) return rc;
    getctx g = {t, size, pub};
    if ((rc = merkle_prove_inclusion(tiles_get, &g, index, size, proof, n, err))) return rc;
    return leaf_hash ? tiles_get(&g, 0, index, leaf_hash, err) : PT_OK;
}

int tlog_prove_consistency(tlog *t, uint64_t old_size, uint64_t size, uint8_t proof[][TLOG_HASH_SIZE], size_t *n,
                           pt_err *err) {
    *n = 0;
    uint64_t pub;
    int rc = check_size(t, size, &pub, err);
    if (rc) return rc;
    getctx g = {t, size, pub};
    return merkle_prove_consistency(tiles_get, &g, old_size, size, proof, n, err);
}
