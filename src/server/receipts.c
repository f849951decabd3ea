/* see receipts.h */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "server/receipts.h"

/* Journaled receipts are published (integrated into the tiles under a new signed checkpoint)
 * once this many are pending or the oldest has waited this long, whichever comes first; and
 * on demand (tlog_integrate from GET /v1/receipts/{i}) before a receipt's proof is served. */
#define PUBLISH_PENDING 8192
/* Two writers: while one waits on its fdatasync, the other writes the next batch (the journal
 * overlaps them and acknowledges in order), so a batch's sync does not stall the next. */
#define WRITERS 2

#define PUBLISH_AFTER_MS 1000

typedef struct item {
    char *data;
    size_t len;
    pt_receipt_done done;
    void *ctx;
    struct item *next;
} item;

struct pt_receipts {
    tlog *log;
    pthread_t thread[WRITERS];
    int n_threads;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    item *head, *tail;
    size_t pending;
    int stopping;
    double oldest; /* when the oldest unpublished receipt was journaled (ms; guarded by mu) */
};

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void *writer(void *arg) {
    pt_receipts *r = arg;
    for (;;) {
        pthread_mutex_lock(&r->mu);
        while (!r->head && !r->stopping) {
            if (!tlog_journal_pending(r->log)) {
                pthread_cond_wait(&r->cv, &r->mu);
                continue;
            }
            double wait = r->oldest + PUBLISH_AFTER_MS - now_ms();
            if (wait <= 0) break;
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            long long ns = ts.tv_nsec + (long long)(wait * 1e6);
            ts.tv_sec += (time_t)(ns / 1000000000);
            ts.tv_nsec = (long)(ns % 1000000000);
            pthread_cond_timedwait(&r->cv, &r->mu, &ts);
        }
        item *batch = r->head;
        size_t n = r->pending;
        r->head = r->tail = NULL;
        r->pending = 0;
        int stop = r->stopping && !batch;
        pthread_mutex_unlock(&r->mu);
        if (!batch) { /* stopping, or the oldest pending receipt is due */
            if (tlog_journal_pending(r->log)) tlog_integrate(r->log, NULL);
            if (stop) break;
            continue;
        }
        const void **data = malloc(n * sizeof *data);
        size_t *lens = malloc(n * sizeof *lens);
        uint64_t first = 0;
        int rc;
        if (!data || !lens) {
            rc = PT_ENOMEM;
        } else {
            size_t i = 0;
            for (item *it = batch; it; it = it->next, i++) {
                data[i] = it->data;
                lens[i] = it->len;
            }
            pthread_mutex_lock(&r->mu);
            if (!tlog_journal_pending(r->log)) r->oldest = now_ms();
            pthread_mutex_unlock(&r->mu);
            rc = tlog_journal_append(r->log, data, lens, n, &first, NULL);
        }
        free(data);
        free(lens);
        uint64_t idx = first;
        for (item *it = batch, *nx; it; it = nx, idx++) {
            nx = it->next;
            it->done(it->ctx, rc, rc ? 0 : idx);
            free(it->data);
            free(it);
        }
        /* A failure breaks the log handle: later receipts then fail (503), nothing is lost. */
        size_t pending = tlog_journal_pending(r->log);
        pthread_mutex_lock(&r->mu);
        double oldest = r->oldest;
        pthread_mutex_unlock(&r->mu);
        if (pending >= PUBLISH_PENDING || (pending && now_ms() - oldest >= PUBLISH_AFTER_MS))
            tlog_integrate(r->log, NULL);
    }
    return NULL;
}

int pt_receipts_start(pt_receipts **out, tlog *log, pt_err *err) {
    pt_receipts *r = calloc(1, sizeof *r);
    if (!r) return pt_errf(err, PT_ENOMEM, "out of memory");
    r->log = log;
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->cv, NULL);
    for (int i = 0; i < WRITERS; i++) {
        if (pthread_create(&r->thread[i], NULL, writer, r)) {
            pt_receipts_stop(r);
            return pt_errf(err, PT_EINTERNAL, "cannot start the receipt writer thread");
        }
        r->n_threads++;
    }
    *out = r;
    return PT_OK;
}

int pt_receipts_submit(pt_receipts *r, const char *entry, size_t len, pt_receipt_done done, void *ctx) {
    if (len > TLOG_MAX_ENTRY) return PT_EINVAL;
    item *it = malloc(sizeof *it);
    if (!it || !(it->data = malloc(len ? len : 1))) {
        free(it);
        return PT_ENOMEM;
    }
    memcpy(it->data, entry, len);
    it->len = len;
    it->done = done;
    it->ctx = ctx;
    it->next = NULL;
    pthread_mutex_lock(&r->mu);
    if (r->stopping) {
        pthread_mutex_unlock(&r->mu);
        free(it->data);
        free(it);
        return PT_ECANCELLED;
    }
    if (r->tail) r->tail->next = it;
    else r->head = it;
    r->tail = it;
    r->pending++;
    pthread_cond_signal(&r->cv);
    pthread_mutex_unlock(&r->mu);
    return PT_OK;
}

size_t pt_receipts_pending(pt_receipts *r) {
    pthread_mutex_lock(&r->mu);
    size_t n = r->pending;
    pthread_mutex_unlock(&r->mu);
    return n;
}

void pt_receipts_stop(pt_receipts *r) {
    if (!r) return;
    pthread_mutex_lock(&r->mu);
    r->stopping = 1;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
    for (int i = 0; i < r->n_threads; i++) pthread_join(r->thread[i], NULL);
    pthread_cond_destroy(&r->cv);
    pthread_mutex_destroy(&r->mu);
    free(r);
}
