/* see receipts.h */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "server/receipts.h"

typedef struct item {
    char *data;
    size_t len;
    pt_receipt_done done;
    void *ctx;
    struct item *next;
} item;

struct pt_receipts {
    tlog *log;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    item *head, *tail;
    size_t pending;
    int stopping;
};

static void *writer(void *arg) {
    pt_receipts *r = arg;
    for (;;) {
        pthread_mutex_lock(&r->mu);
        while (!r->head && !r->stopping) pthread_cond_wait(&r->cv, &r->mu);
        item *batch = r->head;
        size_t n = r->pending;
        r->head = r->tail = NULL;
        r->pending = 0;
        int stop = r->stopping && !batch;
        pthread_mutex_unlock(&r->mu);
        if (stop) break;
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
            rc = tlog_append_batch(r->log, data, lens, n, &first, NULL);
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
    }
    return NULL;
}

int pt_receipts_start(pt_receipts **out, tlog *log, pt_err *err) {
    pt_receipts *r = calloc(1, sizeof *r);
    if (!r) return pt_errf(err, PT_ENOMEM, "out of memory");
    r->log = log;
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->cv, NULL);
    if (pthread_create(&r->thread, NULL, writer, r)) {
        free(r);
        return pt_errf(err, PT_EINTERNAL, "cannot start the receipt writer thread");
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
    pthread_cond_signal(&r->cv);
    pthread_mutex_unlock(&r->mu);
    pthread_join(r->thread, NULL);
    pthread_cond_destroy(&r->cv);
    pthread_mutex_destroy(&r->mu);
    free(r);
}
