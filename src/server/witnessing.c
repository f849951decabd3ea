/* witnessing.c — the server's witnessing thread. See witnessing.h. */
#include "server/witnessing.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/util.h"
#include "policy/history.h"

#define ROUND_US 50000
#define WITNESS_TIMEOUT_S 5.0
#define RETRY_S 2.0

struct pt_witnessing {
    tlog *logs[2];               /* policy, audit */
    uint64_t done[2];            /* the size last published with a quorum of cosignatures */
    double retry_at[2];          /* without a quorum: when to try the same size again */
    char *data_dir;
    pt_policy *policy;           /* the current policy, for its witnesses */
    uint64_t policy_size;        /* the policy log's size when it was read */
    pthread_t thread;
    atomic_int stop;
    int started;
};

/* Re-reads the current policy when the policy log grew. */
static int refresh_policy(pt_witnessing *w, pt_err *err) {
    uint64_t size = tlog_size(w->logs[0]);
    if (w->policy && size == w->policy_size) return PT_OK;
    pt_policy *p;
    int rc = pt_policy_current(w->logs[0], w->data_dir, &p, NULL, NULL, err);
    if (rc) return rc;
    pt_policy_free(w->policy);
    w->policy = p;
    w->policy_size = size;
    return PT_OK;
}

/* One round: each log that grew since its last submission is submitted. PT_EVERIFY when a
 * witness is ahead of a log (that log's writer is stopped). */
static int round_once(pt_witnessing *w, int force, pt_err *err) {
    int rc = refresh_policy(w, err);
    if (rc || !w->policy->n_witnesses) return rc;
    tlog_witness ws[TLOG_MAX_WITNESSES];
    size_t n = w->policy->n_witnesses < TLOG_MAX_WITNESSES ? w->policy->n_witnesses : TLOG_MAX_WITNESSES;
    for (size_t i = 0; i < n; i++) ws[i] = (tlog_witness){w->policy->witnesses[i].vkey, w->policy->witnesses[i].url};
    for (int l = 0; l < 2; l++) {
        uint64_t size = tlog_size(w->logs[l]);
        if (!force && (size == w->done[l] || pt_now() < w->retry_at[l])) continue;
        tlog_cosigning r;
        if ((rc = tlog_cosign(w->logs[l], ws, n, (size_t)w->policy->witness_quorum, WITNESS_TIMEOUT_S, &r, err)))
            return rc;
        w->retry_at[l] = 0;
        if (r.published) w->done[l] = r.size;
        else w->retry_at[l] = pt_now() + RETRY_S; /* a witness down: try again, not on every round */
        if (!r.published)
            fprintf(stderr, "parity serve: checkpoint %s size %llu: %zu of %lld cosignatures (%s)\n",
                    tlog_origin(w->logs[l]), (unsigned long long)r.size, r.cosigned, (long long)w->policy->witness_quorum,
                    r.problems);
    }
    return PT_OK;
}

static void *run(void *arg) {
    pt_witnessing *w = arg;
    while (!atomic_load(&w->stop)) {
        usleep(ROUND_US);
        pt_err err;
        int rc = round_once(w, 0, &err);
        if (rc == PT_EVERIFY) {
            fprintf(stderr, "parity serve: %s\n", err.msg);
            break; /* the writer is stopped; nothing more to witness */
        }
        if (rc) fprintf(stderr, "parity serve: witnessing: %s\n", err.msg);
    }
    return NULL;
}

void pt_witnessing_stop(pt_witnessing *w) {
    if (!w) return;
    atomic_store(&w->stop, 1);
    if (w->started) pthread_join(w->thread, NULL);
    pt_policy_free(w->policy);
    free(w->data_dir);
    free(w);
}

int pt_witnessing_start(pt_witnessing **out, tlog *policy_log, tlog *audit_log, const char *data_dir, pt_err *err) {
    *out = NULL;
    pt_witnessing *w = calloc(1, sizeof *w);
    if (!w || !(w->data_dir = strdup(data_dir))) {
        free(w);
        return pt_errf(err, PT_ENOMEM, "out of memory");
    }
    w->logs[0] = policy_log;
    w->logs[1] = audit_log;
    int rc = round_once(w, 1, err);
    if (rc == PT_EVERIFY) {
        pt_witnessing_stop(w);
        return rc;
    }
    if (rc) fprintf(stderr, "parity serve: witnessing: %s\n", err ? err->msg : "");
    if (pthread_create(&w->thread, NULL, run, w) != 0) {
        pt_witnessing_stop(w);
        return pt_errf(err, PT_EINTERNAL, "cannot start the witnessing thread");
    }
    w->started = 1;
    *out = w;
    return PT_OK;
}
