/* see receipts.h */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/crc32c.h"
#include "common/fileio.h"
#include "common/sha256.h"
#include "common/util.h"
#include "server/receipts.h"

/* Journaled receipts are published (integrated into the tiles under a new signed checkpoint)
 * once this many are pending or the oldest has waited this long, whichever comes first; and
 * on demand (tlog_integrate from GET /v1/receipts/{i}) before a receipt's proof is served. */
#define PUBLISH_PENDING 8192
#define PUBLISH_AFTER_MS 1000
/* Durable mode: two writers, so that while one waits on its fdatasync the other writes the
 * next batch (the journal overlaps them and acknowledges in order). Async mode: one writer,
 * because indices are assigned before the write and batches must reach the journal in order;
 * its batches simply grow while an fdatasync runs. */
#define WRITERS 2
/* Async mode: indices are reserved this many at a time (one small atomic file write), and a
 * new range is reserved when fewer than half remain. A crash turns at most this many into
 * "lost" entries. */
#define RESERVE_CHUNK 4096
/* Async mode: the writer starts a batch at most this often, so that batches (and fdatasyncs)
 * stay few at high request rates; a receipt reaches the disk within about twice this plus one
 * fdatasync. Submitters never wake a writer that is busy or pausing. */
#define ASYNC_INTERVAL_MS 10.0
/* A private record: "PRV1", the org's, key id's and grant's lengths (1 byte each), 1 zero byte,
 * the index (8, little-endian), the time in ms (8), salt, request and response digests (32
 * each), the key id, org and grant (their lengths, zero-padded to 32, 128 and 63), zeros, and
 * CRC-32C of all before it (4) at the end. Record i lives at offset i * PRIV_REC; a hole reads
 * as zeros (no record). */
#define PRIV_REC 384
#define PRIV_KEY_AT 120
#define PRIV_ORG_AT (PRIV_KEY_AT + PT_RECEIPT_KEY_MAX)
#define PRIV_GRANT_AT (PRIV_ORG_AT + PT_RECEIPT_ORG_MAX)
#define PRIV_CRC_AT (PRIV_REC - 4)
#define SECRET_LEN 32
_Static_assert(PRIV_GRANT_AT + PT_RECEIPT_GRANT_MAX <= PRIV_CRC_AT, "a private record's fields fit");

/* Queued entries: their bytes back to back in one buffer, and per entry its length and the
 * callback still due (NULL in async mode: already called). Submitters append to the current
 * queue under mu; a writer takes it whole and puts a spare in its place, so in steady state a
 * receipt costs no allocation on either side (the buffers keep their capacity). */
typedef struct slot {
    pt_receipt_done done;
    void *ctx;
} slot;

typedef struct queue {
    pt_buf bytes;
    slot *slots;
    pt_receipt_private *priv; /* per entry */
    uint8_t *recs;            /* write_batch's encoded private records */
    size_t *lens;
    const void **data; /* write_batch's pointers into bytes */
    size_t n, cap;
} queue;

struct pt_receipts {
    tlog *log;
    pt_receipts_mode mode;
    char *reserve_path;
    char *priv_path;
    int priv_fd;
    pt_sha256_ctx hmac_in, hmac_out; /* the pseudonym secret's HMAC states after one block */
    uint64_t generation;             /* tells this writer's pseudonyms from another's in caches */
    pthread_t thread[WRITERS];
    int n_threads;
    pthread_mutex_t mu;
    pthread_cond_t cv;  /* to the writers: work queued, stop, or a reservation wanted */
    pthread_cond_t wcv; /* from the writer: entries journaled, reservation moved, or failure */
    queue *cur;                   /* where submitters append */
    queue *spare[WRITERS + 1];    /* empty queues for the writers to swap in */
    int n_spare;
    int stopping;
    double oldest; /* when the oldest unpublished receipt was journaled (ms; guarded by mu) */
    /* async mode, guarded by mu */
    uint64_t next;     /* the index the next submitted entry gets */
    uint64_t written;  /* entries with index < written are journaled */
    uint64_t reserved; /* indices < reserved are durably reserved */
    int reserving;     /* the writer is extending the reservation */
    int failed;        /* a journal or reservation write failed: submits are refused */
    /* durable mode: the private records' fdatasync runs on its own thread, beside the
     * journal's (see write_batch); tickets count batches written / covered by a finished sync */
    pthread_t syncer;
    int syncer_running;
    pthread_mutex_t pmu;
    pthread_cond_t pcv;  /* to the syncer: a batch written, or stop */
    pthread_cond_t pdcv; /* from the syncer: p_done moved */
    uint64_t p_written, p_done;
    int p_failed, p_stop;
};

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static queue *queue_new(void) {
    queue *q = calloc(1, sizeof *q);
    if (q) pt_buf_init(&q->bytes, (size_t)1 << 40);
    return q;
}

static void queue_free(queue *q) {
    if (!q) return;
    pt_buf_free(&q->bytes);
    free(q->slots);
    free(q->priv);
    free(q->recs);
    free(q->lens);
    free(q->data);
    free(q);
}

/* Appends one entry; PT_ENOMEM leaves q as it was. */
static int queue_push(queue *q, const char *entry, size_t len, const pt_receipt_private *priv, pt_receipt_done done,
                      void *ctx) {
    if (q->n == q->cap) {
        size_t cap = q->cap ? 2 * q->cap : 256;
        slot *s = realloc(q->slots, cap * sizeof *s);
        if (!s) return PT_ENOMEM;
        q->slots = s;
        pt_receipt_private *pv = realloc(q->priv, cap * sizeof *pv);
        if (!pv) return PT_ENOMEM;
        q->priv = pv;
        uint8_t *rc = realloc(q->recs, cap * PRIV_REC);
        if (!rc) return PT_ENOMEM;
        q->recs = rc;
        size_t *l = realloc(q->lens, cap * sizeof *l);
        if (!l) return PT_ENOMEM;
        q->lens = l;
        const void **d = realloc(q->data, cap * sizeof *d);
        if (!d) return PT_ENOMEM;
        q->data = d;
        q->cap = cap;
    }
    if (pt_buf_append(&q->bytes, entry, len)) return PT_ENOMEM;
    q->lens[q->n] = len;
    q->priv[q->n] = *priv;
    q->slots[q->n++] = (slot){done, ctx};
    return PT_OK;
}

static int write_reservation(pt_receipts *r, uint64_t upto, pt_err *err) {
    char line[32];
    int n = snprintf(line, sizeof line, "%" PRIu64 "\n", upto);
    return pt_write_atomic_swap(r->reserve_path, line, (size_t)n, 0644, err); /* up to ~30 times a second */
}

static int want_reservation(const pt_receipts *r) {
    return r->mode == PT_RECEIPTS_ASYNC && !r->failed && !r->reserving && !r->stopping && r->reserved - r->next < RESERVE_CHUNK / 2;
}

/* Writer thread, async mode, with mu held: extends the reservation (mu released meanwhile). */
static void extend_reservation(pt_receipts *r) {
    r->reserving = 1;
    uint64_t upto = r->next + RESERVE_CHUNK;
    pthread_mutex_unlock(&r->mu);
    pt_err err;
    int rc = write_reservation(r, upto, &err);
    if (rc) fprintf(stderr, "parity serve: audit receipts: %s\n", err.msg);
    pthread_mutex_lock(&r->mu);
    r->reserving = 0;
    if (rc) r->failed = 1;
    else r->reserved = upto;
    pthread_cond_broadcast(&r->wcv);
}

/* Private records ------------------------------------------------------------------------ */

static void put_u64le(uint8_t *p, uint64_t v) {
    for (int k = 0; k < 8; k++) p[k] = (uint8_t)(v >> (8 * k));
}

static uint64_t get_u64le(const uint8_t *p) {
    uint64_t v = 0;
    for (int k = 0; k < 8; k++) v |= (uint64_t)p[k] << (8 * k);
    return v;
}

static void priv_encode(uint8_t *out, uint64_t index, const pt_receipt_private *p) {
    size_t kn = strnlen(p->key_id, PT_RECEIPT_KEY_MAX), on = strnlen(p->org, PT_RECEIPT_ORG_MAX),
           gn = strnlen(p->grant, PT_RECEIPT_GRANT_MAX);
    memset(out, 0, PRIV_REC);
    memcpy(out, "PRV1", 4);
    out[4] = (uint8_t)on;
    out[5] = (uint8_t)kn;
    out[6] = (uint8_t)gn;
    put_u64le(out + 8, index);
    put_u64le(out + 16, (uint64_t)p->time_ms);
    memcpy(out + 24, p->salt, 32);
    memcpy(out + 56, p->request_sha256, 32);
    memcpy(out + 88, p->response_sha256, 32);
    memcpy(out + PRIV_KEY_AT, p->key_id, kn);
    memcpy(out + PRIV_ORG_AT, p->org, on);
    memcpy(out + PRIV_GRANT_AT, p->grant, gn);
    uint32_t crc = pt_crc32c(0, out, PRIV_CRC_AT);
    for (int k = 0; k < 4; k++) out[PRIV_CRC_AT + k] = (uint8_t)(crc >> (8 * k));
}

static int priv_decode(const uint8_t *in, uint64_t index, pt_receipt_private *p) {
    uint32_t crc = 0;
    for (int k = 0; k < 4; k++) crc |= (uint32_t)in[PRIV_CRC_AT + k] << (8 * k);
    if (memcmp(in, "PRV1", 4) || crc != pt_crc32c(0, in, PRIV_CRC_AT) || get_u64le(in + 8) != index ||
        in[4] > PT_RECEIPT_ORG_MAX || in[5] > PT_RECEIPT_KEY_MAX || in[6] > PT_RECEIPT_GRANT_MAX)
        return PT_ENOTFOUND;
    memset(p, 0, sizeof *p);
    p->time_ms = (int64_t)get_u64le(in + 16);
    memcpy(p->salt, in + 24, 32);
    memcpy(p->request_sha256, in + 56, 32);
    memcpy(p->response_sha256, in + 88, 32);
    memcpy(p->key_id, in + PRIV_KEY_AT, in[5]);
    memcpy(p->org, in + PRIV_ORG_AT, in[4]);
    memcpy(p->grant, in + PRIV_GRANT_AT, in[6]);
    return PT_OK;
}

/* Writes a batch's private records at their indices (one pwrite; not synced). */
static int priv_put(pt_receipts *r, queue *q, uint64_t first, pt_err *err) {
    for (size_t i = 0; i < q->n; i++) priv_encode(q->recs + i * PRIV_REC, first + i, &q->priv[i]);
    const uint8_t *p = q->recs;
    size_t left = q->n * PRIV_REC;
    off_t at = (off_t)(first * PRIV_REC);
    while (left > 0) {
        ssize_t k = pwrite(r->priv_fd, p, left, at);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) return pt_errf(err, PT_EIO, "%s: write: %s", r->priv_path, k < 0 ? strerror(errno) : "short write");
        p += k, left -= (size_t)k, at += k;
    }
    return PT_OK;
}

/* Async mode: a batch's private records, written and synced before its journal write. */
static int priv_write(pt_receipts *r, queue *q, uint64_t first, pt_err *err) {
    int rc = priv_put(r, q, first, err);
    if (!rc && fdatasync(r->priv_fd)) rc = pt_errf(err, PT_EIO, "%s: fdatasync: %s", r->priv_path, strerror(errno));
    return rc;
}

/* Durable mode: the syncer thread fdatasyncs the private records while the writers wait on the
 * journal's fdatasync; one sync covers every batch written before it started. */
static void *syncer(void *arg) {
    pt_receipts *r = arg;
    pthread_mutex_lock(&r->pmu);
    for (;;) {
        if (r->p_done == r->p_written) {
            if (r->p_stop) break;
            pthread_cond_wait(&r->pcv, &r->pmu);
            continue;
        }
        uint64_t upto = r->p_written;
        pthread_mutex_unlock(&r->pmu);
        int ok = fdatasync(r->priv_fd) == 0;
        int e = errno;
        pthread_mutex_lock(&r->pmu);
        if (!ok && !r->p_failed) {
            fprintf(stderr, "parity serve: audit receipts: %s: fdatasync: %s\n", r->priv_path, strerror(e));
            r->p_failed = 1;
        }
        r->p_done = upto;
        pthread_cond_broadcast(&r->pdcv);
    }
    pthread_mutex_unlock(&r->pmu);
    return NULL;
}

/* tlog_journal_append_then's hook, durable mode: the journal has just assigned the batch's
 * indices; its private records are written and handed to the syncer. */
typedef struct durable_batch {
    pt_receipts *r;
    queue *q;
    int rc;
    uint64_t ticket;
    pt_err err;
} durable_batch;

static void durable_written(void *ctx, uint64_t first) {
    durable_batch *b = ctx;
    if ((b->rc = priv_put(b->r, b->q, first, &b->err))) return;
    pthread_mutex_lock(&b->r->pmu);
    b->ticket = ++b->r->p_written;
    pthread_cond_signal(&b->r->pcv);
    pthread_mutex_unlock(&b->r->pmu);
}

/* Durable mode: waits until a sync that started after the batch's records were written ends. */
static int durable_wait(pt_receipts *r, durable_batch *b, pt_err *err) {
    if (b->rc) return pt_errf(err, b->rc, "%s", b->err.msg);
    pthread_mutex_lock(&r->pmu);
    while (r->p_done < b->ticket && !r->p_failed) pthread_cond_wait(&r->pdcv, &r->pmu);
    int failed = r->p_failed;
    pthread_mutex_unlock(&r->pmu);
    return failed ? pt_errf(err, PT_EIO, "%s: fdatasync failed", r->priv_path) : PT_OK;
}

int pt_receipts_private_get(pt_receipts *r, uint64_t index, pt_receipt_private *out) {
    uint8_t rec[PRIV_REC];
    if (index > (uint64_t)INT64_MAX / PRIV_REC) return PT_ENOTFOUND;
    ssize_t k = pread(r->priv_fd, rec, PRIV_REC, (off_t)(index * PRIV_REC));
    return k == PRIV_REC ? priv_decode(rec, index, out) : PT_ENOTFOUND;
}

static const char PSEUDONYM_TAG[] = "parity-receipt-v1 ";

void pt_receipts_pseudonym(const pt_receipts *r, const char *what, const char *id, char out[33]) {
    pt_sha256_ctx c = r->hmac_in;
    uint8_t h[32];
    pt_sha256_update(&c, PSEUDONYM_TAG, sizeof PSEUDONYM_TAG - 1);
    pt_sha256_update(&c, what, strlen(what));
    pt_sha256_update(&c, " ", 1);
    pt_sha256_update(&c, id, strlen(id));
    pt_sha256_final(&c, h);
    c = r->hmac_out;
    pt_sha256_update(&c, h, 32);
    pt_sha256_final(&c, h);
    pt_hex(h, 16, out);
}

/* Each thread remembers the last caller's pseudonyms (a client's requests tend to come one after
 * another on one connection, so on one thread): 4 SHA-256 compressions and 2 hex encodings
 * saved per request. Tagged with the writer's generation, so a cache never outlives its secret. */
static atomic_uint_fast64_t generations;

void pt_receipts_pseudonyms(const pt_receipts *r, const char *org, const char *key_id, char org_out[33],
                            char key_out[33]) {
    static _Thread_local struct {
        uint64_t generation;
        char org[PT_RECEIPT_ORG_MAX + 1], key_id[PT_RECEIPT_KEY_MAX + 1], op[33], kp[33];
    } last;
    if (last.generation != r->generation || strcmp(last.key_id, key_id) || strcmp(last.org, org)) {
        pt_receipts_pseudonym(r, "org", org, last.op);
        pt_receipts_pseudonym(r, "key", key_id, last.kp);
        pt_strlcpy(last.org, org, sizeof last.org);
        pt_strlcpy(last.key_id, key_id, sizeof last.key_id);
        last.generation = strlen(org) < sizeof last.org && strlen(key_id) < sizeof last.key_id ? r->generation : 0;
    }
    memcpy(org_out, last.op, 33);
    memcpy(key_out, last.kp, 33);
}

void pt_receipt_commitments(const uint8_t salt[32], const uint8_t request_sha256[32],
                            const uint8_t response_sha256[32], uint8_t request_out[32], uint8_t response_out[32]) {
    /* Both hashed together, their SHA-NI rounds interleaved (half the time of two calls):
     * pt_sha256_prefixed2 takes the tags' common first byte apart. */
    static const char rq[] = "parity-receipt-v1 request", rs[] = "parity-receipt-v1 response";
    uint8_t a[sizeof rq - 2 + 64], b[sizeof rs - 2 + 64];
    memcpy(a, rq + 1, sizeof rq - 2);
    memcpy(a + sizeof rq - 2, salt, 32);
    memcpy(a + sizeof rq - 2 + 32, request_sha256, 32);
    memcpy(b, rs + 1, sizeof rs - 2);
    memcpy(b + sizeof rs - 2, salt, 32);
    memcpy(b + sizeof rs - 2 + 32, response_sha256, 32);
    pt_sha256_prefixed2((uint8_t)rq[0], a, sizeof a, b, sizeof b, request_out, response_out);
}

/* The pseudonym secret: read, or made at first start; HMAC's inner and outer states. */
static int load_secret(pt_receipts *r, const char *private_dir, pt_err *err) {
    char *path = pt_path_join(private_dir, "audit-pseudonym.key");
    if (!path) return pt_errf(err, PT_ENOMEM, "out of memory");
    char *text = NULL;
    size_t len = 0;
    uint8_t key[SECRET_LEN], pad[64];
    int rc = pt_read_file(path, 4096, &text, &len, err);
    if (rc == PT_ENOTFOUND) {
        randombytes_buf(key, sizeof key);
        rc = pt_write_atomic(path, key, sizeof key, 0600, err);
    } else if (!rc && len != SECRET_LEN) {
        rc = pt_errf(err, PT_EFORMAT, "%s: %zu bytes, expected %d (the lab's audit pseudonym secret)", path, len,
                     SECRET_LEN);
    } else if (!rc) {
        memcpy(key, text, SECRET_LEN);
    }
    if (text) sodium_memzero(text, len);
    free(text);
    free(path);
    if (rc) return rc;
    for (int ipad = 1; ipad >= 0; ipad--) {
        memset(pad, ipad ? 0x36 : 0x5c, sizeof pad);
        for (int i = 0; i < SECRET_LEN; i++) pad[i] ^= key[i];
        pt_sha256_ctx *c = ipad ? &r->hmac_in : &r->hmac_out;
        pt_sha256_init(c);
        pt_sha256_update(c, pad, sizeof pad);
    }
    sodium_memzero(key, sizeof key);
    sodium_memzero(pad, sizeof pad);
    return PT_OK;
}

/* Opens the private records; drops those above the journal (a crash after a batch's private
 * records and before its public entries: those indices become "lost" entries). */
static int open_private(pt_receipts *r, const char *private_dir, pt_err *err) {
    int rc = pt_mkdirs(private_dir, 1, err);
    if (rc) return rc;
    if (!(r->priv_path = pt_path_join(private_dir, "audit-receipts"))) return pt_errf(err, PT_ENOMEM, "out of memory");
    r->priv_fd = open(r->priv_path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (r->priv_fd < 0) return pt_errf(err, PT_EIO, "%s: %s", r->priv_path, strerror(errno));
    struct stat st;
    uint64_t keep = tlog_journaled_size(r->log) * PRIV_REC;
    if (fstat(r->priv_fd, &st)) return pt_errf(err, PT_EIO, "%s: %s", r->priv_path, strerror(errno));
    if ((uint64_t)st.st_size > keep && (ftruncate(r->priv_fd, (off_t)keep) || fdatasync(r->priv_fd)))
        return pt_errf(err, PT_EIO, "%s: truncate: %s", r->priv_path, strerror(errno));
    return load_secret(r, private_dir, err);
}

static void maybe_publish(pt_receipts *r) {
    size_t pending = tlog_journal_pending(r->log);
    pthread_mutex_lock(&r->mu);
    double oldest = r->oldest;
    pthread_mutex_unlock(&r->mu);
    if (pending >= PUBLISH_PENDING || (pending && now_ms() - oldest >= PUBLISH_AFTER_MS)) tlog_integrate(r->log, NULL);
}

/* Journals one batch (a queue taken whole); calls `done` where still due; empties q. */
static void write_batch(pt_receipts *r, queue *q, uint64_t expect_first) {
    uint64_t first = 0;
    pt_err err = {0};
    for (size_t i = 0, off = 0; i < q->n; off += q->lens[i++]) q->data[i] = q->bytes.data + off;
    pthread_mutex_lock(&r->mu);
    if (!tlog_journal_pending(r->log)) r->oldest = now_ms();
    pthread_mutex_unlock(&r->mu);
    int rc;
    if (r->mode == PT_RECEIPTS_ASYNC) { /* the private records first: indices are known */
        rc = priv_write(r, q, expect_first, &err);
        if (!rc) rc = tlog_journal_append(r->log, q->data, q->lens, q->n, &first, &err);
        if (!rc && first != expect_first)
            rc = pt_errf(&err, PT_EINTERNAL, "journaled at index %" PRIu64 ", expected %" PRIu64, first, expect_first);
    } else {
        /* durable: the journal assigns the indices; the private records are written as soon as
         * they are known (right after the journal's write) and synced by the syncer while the
         * journal's fdatasync runs; acknowledged only once both are durable. (A crash in
         * between leaves at most what the sequential order left: entries that were never
         * acknowledged, or private records above the journal, dropped at the next start.) */
        durable_batch b = {.r = r, .q = q};
        rc = tlog_journal_append_then(r->log, q->data, q->lens, q->n, &first, durable_written, &b, &err);
        if (!rc && (rc = durable_wait(r, &b, &err))) {
            pthread_mutex_lock(&r->mu);
            if (!r->failed) fprintf(stderr, "parity serve: audit receipts: %s\n", err.msg);
            r->failed = 1;
            pthread_mutex_unlock(&r->mu);
        }
    }
    for (size_t i = 0; i < q->n; i++)
        if (q->slots[i].done) q->slots[i].done(q->slots[i].ctx, rc, rc ? 0 : first + i);
    size_t n = q->n;
    q->n = 0;
    pt_buf_reset(&q->bytes);
    if (r->mode == PT_RECEIPTS_ASYNC) {
        pthread_mutex_lock(&r->mu);
        /* A failure breaks the log handle; answered receipts of this batch and the queue
         * become "lost" entries at the next start (their indices are reserved). */
        if (rc) {
            if (!r->failed) fprintf(stderr, "parity serve: audit receipts: %s\n", err.msg);
            r->failed = 1;
        } else {
            r->written = expect_first + n;
        }
        pthread_cond_broadcast(&r->wcv);
        pthread_mutex_unlock(&r->mu);
    }
    /* Durable mode: a failure breaks the log handle, later receipts then fail (503) and
     * nothing unacknowledged is lost. */
}

static void *writer(void *arg) {
    pt_receipts *r = arg;
    pthread_mutex_lock(&r->mu);
    for (;;) {
        if (want_reservation(r)) {
            extend_reservation(r);
            continue;
        }
        if (!r->cur->n && !r->stopping) {
            if (!tlog_journal_pending(r->log)) {
                pthread_cond_wait(&r->cv, &r->mu);
                continue;
            }
            double wait = r->oldest + PUBLISH_AFTER_MS - now_ms();
            if (wait > 0) {
                struct timespec ts;
                clock_gettime(CLOCK_REALTIME, &ts);
                long long ns = ts.tv_nsec + (long long)(wait * 1e6);
                ts.tv_sec += (time_t)(ns / 1000000000);
                ts.tv_nsec = (long)(ns % 1000000000);
                pthread_cond_timedwait(&r->cv, &r->mu, &ts);
                continue;
            }
        }
        queue *batch = NULL;
        uint64_t expect_first = r->written; /* async: the queue holds written .. next-1 */
        if (r->cur->n) { /* take it; a spare takes its place (one per writer, plus one) */
            batch = r->cur;
            r->cur = r->spare[--r->n_spare];
        }
        int stop = r->stopping && !batch;
        pthread_mutex_unlock(&r->mu);
        if (batch) {
            double t0 = now_ms();
            write_batch(r, batch, expect_first);
            pthread_mutex_lock(&r->mu);
            r->spare[r->n_spare++] = batch;
            pthread_mutex_unlock(&r->mu);
            maybe_publish(r);
            double rest = t0 + ASYNC_INTERVAL_MS - now_ms();
            if (r->mode == PT_RECEIPTS_ASYNC && rest > 0) {
                struct timespec ts = {0, (long)(rest * 1e6)};
                nanosleep(&ts, NULL);
            }
        } else { /* stopping, or the oldest pending receipt is due */
            if (tlog_journal_pending(r->log)) tlog_integrate(r->log, NULL);
            if (stop) return NULL;
        }
        pthread_mutex_lock(&r->mu);
    }
}

/* At start: a crashed async run may have handed out indices it never wrote (below its
 * reservation): each becomes an explicit "lost" entry. Then async mode reserves a fresh range;
 * durable mode releases the old one. */
static int recover_reservation(pt_receipts *r, pt_err *err) {
    char *text = NULL;
    size_t len;
    uint64_t reserved = 0;
    int rc = pt_read_file(r->reserve_path, 64, &text, &len, err);
    if (rc == PT_ENOTFOUND) {
        rc = PT_OK;
    } else if (rc) {
        return rc;
    } else {
        char *nl = strchr(text, '\n');
        if (nl) *nl = 0;
        if (pt_parse_u64(text, &reserved)) rc = pt_errf(err, PT_EFORMAT, "%s: not an index", r->reserve_path);
        free(text);
        if (rc) return rc;
    }
    uint64_t size = tlog_journaled_size(r->log);
    /* A run hands out at most one reservation ahead of what it has written, and extends it by
     * RESERVE_CHUNK only between batches: a gap above a few chunks is not from a crash. */
    if (reserved > size && reserved - size > 4 * (uint64_t)RESERVE_CHUNK)
        return pt_errf(err, PT_EFORMAT,
                       "%s: reserves up to index %" PRIu64 ", %" PRIu64 " beyond the audit log's %" PRIu64
                       " entries, where a crashed run leaves at most %d: the file is damaged or belongs to "
                       "another log",
                       r->reserve_path, reserved, reserved - size, size, 4 * RESERVE_CHUNK);
    if (reserved > size) {
        uint64_t lost = reserved - size;
        fprintf(stderr,
                "parity serve: the previous run stopped without writing %" PRIu64
                " reserved audit receipt(s); publishing them as 'lost' entries %" PRIu64 "..%" PRIu64 "\n",
                lost, size, reserved - 1);
        /* in batches of up to 1024, one write + fdatasync each */
        enum { B = 1024, W = 256 };
        char *texts = malloc((size_t)B * W);
        const void **data = malloc(B * sizeof *data);
        size_t *lens = malloc(B * sizeof *lens);
        if (!texts || !data || !lens) rc = pt_errf(err, PT_ENOMEM, "out of memory");
        char t[21];
        pt_format_time(pt_unix_time(), t);
        for (uint64_t i = size; i < reserved && !rc;) {
            size_t k = 0;
            for (; k < B && i < reserved; k++, i++) {
                char *e = texts + k * W;
                int m = snprintf(e, W,
                                 "{\"type\":\"lost\",\"index\":%" PRIu64 ",\"time\":\"%s\",\"reason\":\"the server "
                                 "stopped before writing this receipt (its index may have been handed out)\"}",
                                 i, t);
                data[k] = e;
                lens[k] = (size_t)m;
            }
            uint64_t first;
            rc = tlog_journal_append(r->log, data, lens, k, &first, err);
        }
        free(texts);
        free(data);
        free(lens);
        if (!rc) rc = tlog_integrate(r->log, err);
        if (rc) return rc;
    }
    r->next = r->written = tlog_journaled_size(r->log);
    if (r->mode != PT_RECEIPTS_ASYNC) /* durable: hands out no index ahead; release the range */
        return reserved > r->next ? write_reservation(r, r->next, err) : PT_OK;
    r->reserved = r->next + RESERVE_CHUNK;
    return write_reservation(r, r->reserved, err);
}

int pt_receipts_start(pt_receipts **out, tlog *log, const char *log_dir, const char *private_dir,
                      pt_receipts_mode mode, pt_err *err) {
    pt_receipts *r = calloc(1, sizeof *r);
    if (!r) return pt_errf(err, PT_ENOMEM, "out of memory");
    r->priv_fd = -1;
    r->generation = atomic_fetch_add(&generations, 1) + 1;
    r->log = log;
    r->mode = mode;
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->cv, NULL);
    pthread_cond_init(&r->wcv, NULL);
    pthread_mutex_init(&r->pmu, NULL);
    pthread_cond_init(&r->pcv, NULL);
    pthread_cond_init(&r->pdcv, NULL);
    int rc = PT_OK;
    if (!(r->cur = queue_new())) rc = pt_errf(err, PT_ENOMEM, "out of memory");
    for (int i = 0; i < WRITERS && !rc; i++)
        if (!(r->spare[r->n_spare++] = queue_new())) rc = pt_errf(err, PT_ENOMEM, "out of memory");
    /* Both modes: a crashed async run's unwritten indices become "lost" entries first (a
     * durable run after it must not hand them out again). */
    if (!rc) rc = open_private(r, private_dir, err);
    if (!(r->reserve_path = pt_path_join(log_dir, "reserved"))) rc = pt_errf(err, PT_ENOMEM, "out of memory");
    else if (!rc) rc = recover_reservation(r, err);
    if (!rc && mode != PT_RECEIPTS_ASYNC) {
        if (pthread_create(&r->syncer, NULL, syncer, r))
            rc = pt_errf(err, PT_EINTERNAL, "cannot start the receipt syncer thread");
        else
            r->syncer_running = 1;
    }
    int writers = mode == PT_RECEIPTS_ASYNC ? 1 : WRITERS;
    for (int i = 0; i < writers && !rc; i++) {
        if (pthread_create(&r->thread[i], NULL, writer, r))
            rc = pt_errf(err, PT_EINTERNAL, "cannot start the receipt writer thread");
        else
            r->n_threads++;
    }
    if (rc) {
        pt_receipts_stop(r);
        return rc;
    }
    *out = r;
    return PT_OK;
}

int pt_receipts_submit(pt_receipts *r, const char *entry, size_t len, const pt_receipt_private *priv,
                       pt_receipt_done done, void *ctx) {
    if (len > TLOG_MAX_ENTRY) return PT_EINVAL;
    pthread_mutex_lock(&r->mu);
    int async = r->mode == PT_RECEIPTS_ASYNC;
    /* Async: only indices inside the durable reservation may be handed out. */
    while (async && !r->stopping && !r->failed && r->next >= r->reserved) {
        pthread_cond_signal(&r->cv);
        pthread_cond_wait(&r->wcv, &r->mu);
    }
    int rc = r->failed ? PT_EIO : r->stopping ? PT_ECANCELLED : queue_push(r->cur, entry, len, priv, async ? NULL : done, ctx);
    if (rc) {
        pthread_mutex_unlock(&r->mu);
        return rc;
    }
    uint64_t index = r->next;
    if (async) r->next++;
    pthread_cond_signal(&r->cv);
    pthread_mutex_unlock(&r->mu);
    if (async) done(ctx, PT_OK, index);
    return PT_OK;
}

int pt_receipts_async(const pt_receipts *r) {
    return r->mode == PT_RECEIPTS_ASYNC;
}

int pt_receipts_flush(pt_receipts *r, uint64_t upto) {
    if (r->mode != PT_RECEIPTS_ASYNC) return PT_OK;
    pthread_mutex_lock(&r->mu);
    if (upto > r->next) upto = r->next;
    while (!r->failed && r->written < upto) pthread_cond_wait(&r->wcv, &r->mu);
    int rc = r->written >= upto ? PT_OK : PT_EIO;
    pthread_mutex_unlock(&r->mu);
    return rc;
}

size_t pt_receipts_pending(pt_receipts *r) {
    pthread_mutex_lock(&r->mu);
    size_t n = r->cur->n;
    pthread_mutex_unlock(&r->mu);
    return n;
}

void pt_receipts_stop(pt_receipts *r) {
    if (!r) return;
    pthread_mutex_lock(&r->mu);
    r->stopping = 1;
    pthread_cond_broadcast(&r->cv);
    pthread_cond_broadcast(&r->wcv);
    pthread_mutex_unlock(&r->mu);
    for (int i = 0; i < r->n_threads; i++) pthread_join(r->thread[i], NULL);
    if (r->syncer_running) { /* after the writers: they wait on it */
        pthread_mutex_lock(&r->pmu);
        r->p_stop = 1;
        pthread_cond_signal(&r->pcv);
        pthread_mutex_unlock(&r->pmu);
        pthread_join(r->syncer, NULL);
    }
    /* A clean stop: everything handed out is written; release the rest of the reservation so
     * the next start publishes no "lost" entries. */
    if (r->mode == PT_RECEIPTS_ASYNC && r->reserve_path && !r->failed && r->written == r->next && r->n_threads) {
        pt_err err;
        if (write_reservation(r, r->written, &err))
            fprintf(stderr, "parity serve: audit receipts: %s\n", err.msg);
    }
    queue_free(r->cur);
    for (int i = 0; i < r->n_spare; i++) queue_free(r->spare[i]);
    pthread_cond_destroy(&r->pdcv);
    pthread_cond_destroy(&r->pcv);
    pthread_mutex_destroy(&r->pmu);
    pthread_cond_destroy(&r->wcv);
    pthread_cond_destroy(&r->cv);
    pthread_mutex_destroy(&r->mu);
    if (r->priv_fd >= 0) close(r->priv_fd);
    free(r->priv_path);
    free(r->reserve_path);
    sodium_memzero(&r->hmac_in, sizeof r->hmac_in);
    sodium_memzero(&r->hmac_out, sizeof r->hmac_out);
    free(r);
}
