/* see registry.h — the models served in-process and their schedulers (continuous batching).
 *
 * The scheduler only moves jobs: admission by sequence count, one forward pass per iteration
 * over the steps the admitted jobs ask for, and their removal when over. What a step means
 * (sampling, text, a trace) is the job's (srv_job_ops), so this file knows no endpoint. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/fileio.h"
#include "common/util.h"
#include "server/registry.h"

/* A model's scheduler state, under mu. */
typedef struct srv_sched {
    pthread_t thread;
    int started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    srv_job *qhead, *qtail;  /* waiting */
    int qlen;
    srv_job *active[SRV_MAX_SEQS];
    int n_active_jobs;
    int active_seqs;
    int draining, stopping;
    int abort_all;           /* shutdown grace period over: fail what is left */
} srv_sched;

/* Models are only ever added, into an array of fixed capacity: readers walk m[0 .. n) without
 * a lock, the one loader (under load_mu) fills m[n] completely before it publishes n + 1. */
#define MAX_SERVED_MODELS 256

typedef struct models {
    srv_model *m;
    srv_sched *q;            /* q[i] is m[i]'s */
    size_t n;                /* atomic: published with release, read with acquire */
    pthread_mutex_t load_mu; /* serialises loading */
} models;

static size_t n_served(const models *ms) {
    return ms ? __atomic_load_n(&ms->n, __ATOMIC_ACQUIRE) : 0;
}

size_t srv_models_n(pt_server *s) { return n_served(s->engine); }

srv_model *srv_model_at(pt_server *s, size_t i) {
    models *ms = s->engine;
    return i < n_served(ms) ? &ms->m[i] : NULL;
}

srv_model *srv_model_find(pt_server *s, const char *id) {
    models *ms = s->engine;
    size_t n = n_served(ms);
    for (size_t i = 0; i < n; i++)
        if (!strcmp(ms->m[i].id, id)) return &ms->m[i];
    return NULL;
}

json_t *srv_models_served(pt_server *s) {
    models *ms = s->engine;
    json_t *a = json_array();
    size_t n = ms ? n_served(ms) : 0;
    for (size_t i = 0; a && i < n; i++) json_array_append_new(a, json_string(ms->m[i].id));
    return a;
}

/* The scheduler ---------------------------------------------------------------------------------- */

/* Admits waiting jobs while their sequences fit (a job bigger than the batch runs alone). */
static void admit(srv_sched *q) {
    while (q->qhead && q->n_active_jobs < SRV_MAX_SEQS &&
           (q->active_seqs == 0 || q->active_seqs + q->qhead->n_seqs <= SRV_MAX_SEQS)) {
        srv_job *j = q->qhead;
        q->qhead = j->next;
        if (!q->qhead) q->qtail = NULL;
        q->qlen--;
        j->next = NULL;
        q->active[q->n_active_jobs++] = j;
        q->active_seqs += j->n_seqs;
        __atomic_store_n(&j->queue_ms, (int64_t)((pt_now() - j->queued_at) * 1000), __ATOMIC_RELAXED);
    }
}

static void *scheduler(void *arg) {
    srv_model *m = arg;
    srv_sched *q = m->q;
    pt_step steps[SRV_MAX_SEQS];
    srv_job *owner[SRV_MAX_SEQS];
    void *tags[SRV_MAX_SEQS];
    for (;;) {
        pthread_mutex_lock(&q->mu);
        while (!q->stopping && q->n_active_jobs == 0 && !q->qhead) pthread_cond_wait(&q->cv, &q->mu);
        if (q->stopping && q->n_active_jobs == 0 && !q->qhead) {
            pthread_mutex_unlock(&q->mu);
            break;
        }
        admit(q);
        int abort_now = q->abort_all;
        pthread_mutex_unlock(&q->mu);

        if (abort_now) /* shutting down past the grace period: everything admitted fails now */
            for (int a = 0; a < q->n_active_jobs; a++) q->active[a]->ops->fail(q->active[a], 503, "the server is shutting down");
        for (int a = 0; a < q->n_active_jobs; a++) q->active[a]->ops->prepare(q->active[a]);
        /* One forward step over what every job asks for: prompts prefill, others decode. */
        int n = 0;
        for (int a = 0; a < q->n_active_jobs && n < SRV_MAX_SEQS; a++) {
            srv_job *j = q->active[a];
            int k = j->ops->add_steps(j, steps + n, tags + n, SRV_MAX_SEQS - n);
            for (int i = 0; i < k; i++) owner[n + i] = j;
            n += k;
        }
        pt_err err;
        int rc = n ? pt_engine_forward(m->eng, steps, n, &err) : PT_OK;
        for (int k = 0; k < n; k++) owner[k]->ops->stepped(owner[k], &steps[k], tags[k], rc, rc ? err.msg : NULL);
        /* Jobs that are done, failed or abandoned leave the batch and are finished. */
        for (int a = 0; a < q->n_active_jobs; a++) {
            srv_job *j = q->active[a];
            if (!j->ops->over(j)) continue;
            pthread_mutex_lock(&q->mu);
            q->active_seqs -= j->n_seqs;
            q->active[a] = q->active[--q->n_active_jobs];
            pthread_mutex_unlock(&q->mu);
            a--;
            j->ops->finish(j); /* drops the scheduler's reference */
        }
    }
    return NULL;
}

/* Registry -------------------------------------------------------------------------------------- */

/* 1 if the policy gives the model weights a server could load (not a URL: served elsewhere). */
static int has_local_weights(const pt_pmodel *pm) {
    return pm->weights && !strstr(pm->weights, "://");
}

/* Loads a policy model's local weights (has_local_weights) and starts its scheduler (caller
 * holds load_mu). PT_ENOTFOUND when they do not exist here. */
static int load_model(pt_server *s, models *ms, const pt_pmodel *pm, pt_err *err) {
    if (ms->n >= MAX_SERVED_MODELS)
        return pt_errf(err, PT_ELIMIT, "model %s: this server already serves %d models", pm->id, MAX_SERVED_MODELS);
    char *path = pm->weights[0] == '/' ? strdup(pm->weights)
                                       : pt_path_join(s->o.models_dir ? s->o.models_dir : s->data_dir, pm->weights);
    if (!path) return pt_errf(err, PT_ENOMEM, "out of memory");
    if (!pt_exists(path)) { /* the policy may name weights this server does not hold */
        int rc = pt_errf(err, PT_ENOTFOUND, "model %s: %s does not exist", pm->id, path);
        free(path);
        return rc;
    }
    srv_model *m = &ms->m[ms->n];
    srv_sched *q = &ms->q[ms->n];
    memset(m, 0, sizeof *m);
    memset(q, 0, sizeof *q);
    m->q = q;
    snprintf(m->id, sizeof m->id, "%s", pm->id);
    int rc = pt_engine_open(path, 0, &m->eng, err);
    if (!rc) {
        char *tp = pt_path_join(path, "tokenizer.json");
        rc = tp ? pt_tokenizer_load(tp, &m->tok, err) : pt_errf(err, PT_ENOMEM, "out of memory");
        free(tp);
    }
    m->path = path;
    if (!rc) {
        m->vocab = pt_engine_config(m->eng)->vocab_size;
        m->qlimit = s->o.queue_limit;
        pthread_mutex_init(&q->mu, NULL);
        pthread_cond_init(&q->cv, NULL);
        if (pthread_create(&q->thread, NULL, scheduler, m)) {
            rc = pt_errf(err, PT_EINTERNAL, "cannot start its scheduler thread");
            pthread_cond_destroy(&q->cv);
            pthread_mutex_destroy(&q->mu);
        }
    }
    if (rc) {
        pt_err_prefix(err, "model %s", pm->id);
        pt_tokenizer_free(m->tok);
        pt_engine_free(m->eng);
        free(m->path);
        memset(m, 0, sizeof *m);
        return rc;
    }
    q->started = 1;
    __atomic_store_n(&ms->n, ms->n + 1, __ATOMIC_RELEASE);
    fprintf(stderr, "parity: serving %s (%s, %zu parameters)\n", m->id,
            pt_engine_config(m->eng)->arch == PT_ARCH_LLAMA ? "llama" : "gpt2", pt_engine_model(m->eng)->n_params);
    return PT_OK;
}

int srv_models_start(pt_server *s, pt_err *err) {
    models *ms = calloc(1, sizeof *ms);
    if (!ms) return pt_errf(err, PT_ENOMEM, "out of memory");
    pthread_mutex_init(&ms->load_mu, NULL);
    s->engine = ms;
    if (!(ms->m = calloc(MAX_SERVED_MODELS, sizeof *ms->m)) || !(ms->q = calloc(MAX_SERVED_MODELS, sizeof *ms->q)))
        return pt_errf(err, PT_ENOMEM, "out of memory");
    const pt_policy *p = s->policy->p;
    /* A model that cannot be loaded is not served (503 model_not_served, and the reason on
     * stderr); the others are: one bad directory must not take the whole server down. */
    for (size_t i = 0; i < p->n_models; i++) {
        if (!has_local_weights(&p->models[i])) continue;
        pt_err e;
        int rc = load_model(s, ms, &p->models[i], &e);
        if (rc == PT_ENOMEM) {
            if (err) *err = e;
            return rc;
        }
        if (rc) fprintf(stderr, "parity: not serving %s\n", e.msg);
    }
    return PT_OK;
}

json_t *srv_models_sync(pt_server *s, const pt_policy *p) {
    models *ms = s->engine;
    json_t *out = json_object(), *loaded = json_array(), *failed = json_array();
    json_object_set_new(out, "loaded", loaded);
    json_object_set_new(out, "not_served", failed);
    if (!ms) return out;
    pthread_mutex_lock(&ms->load_mu);
    for (size_t i = 0; i < p->n_models; i++) {
        const pt_pmodel *pm = &p->models[i];
        if (!has_local_weights(pm) || srv_model_find(s, pm->id)) continue;
        pt_err e;
        if (load_model(s, ms, pm, &e)) {
            fprintf(stderr, "parity: not serving %s\n", e.msg);
            json_array_append_new(failed, json_pack("{s:s, s:s}", "id", pm->id, "reason", e.msg));
        } else {
            json_array_append_new(loaded, json_string(pm->id));
        }
    }
    pthread_mutex_unlock(&ms->load_mu);
    return out;
}

void srv_models_drain(pt_server *s, unsigned grace_s) {
    models *ms = s->engine;
    if (ms) pthread_mutex_lock(&ms->load_mu); /* no model is added from here on */
    for (size_t i = 0; ms && i < ms->n; i++) {
        srv_sched *q = &ms->q[i];
        pthread_mutex_lock(&q->mu);
        q->draining = 1;
        pthread_mutex_unlock(&q->mu);
    }
    /* Wait until queued and active work is done, at most the grace period. */
    double until = pt_now() + grace_s;
    for (size_t i = 0; ms && i < ms->n; i++) {
        srv_sched *q = &ms->q[i];
        for (;;) {
            pthread_mutex_lock(&q->mu);
            int busy = q->qhead || q->n_active_jobs;
            pthread_mutex_unlock(&q->mu);
            if (!busy) break;
            if (pt_now() > until) {
                /* Past the grace period: fail what is left with 503, so that no connection stays
                 * suspended when the HTTP layer stops (libmicrohttpd aborts on one). */
                pthread_mutex_lock(&q->mu);
                q->abort_all = 1;
                pthread_cond_signal(&q->cv);
                pthread_mutex_unlock(&q->mu);
                until = pt_now() + 30; /* aborting takes one step per model */
            }
            usleep(10000);
        }
    }
    if (ms) pthread_mutex_unlock(&ms->load_mu);
}

void srv_models_stop(pt_server *s) {
    models *ms = s->engine;
    if (!ms) return;
    for (size_t i = 0; i < ms->n; i++) {
        srv_model *m = &ms->m[i];
        srv_sched *q = &ms->q[i];
        if (q->started) {
            pthread_mutex_lock(&q->mu);
            q->stopping = 1;
            pthread_cond_signal(&q->cv);
            pthread_mutex_unlock(&q->mu);
            pthread_join(q->thread, NULL);
            pthread_cond_destroy(&q->cv);
            pthread_mutex_destroy(&q->mu);
        }
        pt_tokenizer_free(m->tok);
        pt_engine_free(m->eng);
        free(m->path);
    }
    pthread_mutex_destroy(&ms->load_mu);
    free(ms->m);
    free(ms->q);
    free(ms);
    s->engine = NULL;
}

int srv_model_submit(srv_model *m, srv_job *j) {
    srv_sched *q = m->q;
    pthread_mutex_lock(&q->mu);
    if (q->draining || q->stopping) {
        pthread_mutex_unlock(&q->mu);
        return PT_ECANCELLED;
    }
    if (q->qlen >= m->qlimit) {
        pthread_mutex_unlock(&q->mu);
        return PT_ELIMIT;
    }
    j->queued_at = pt_now();
    j->queue_ms = -1;
    if (q->qtail) q->qtail->next = j;
    else q->qhead = j;
    q->qtail = j;
    q->qlen++;
    pthread_cond_signal(&q->cv);
    pthread_mutex_unlock(&q->mu);
    return PT_OK;
}

void srv_model_jobs(srv_model *m, int *queued, int *running, void (*fn)(void *ctx, const srv_job *j, int pos),
                    void *ctx) {
    srv_sched *q = m->q;
    pthread_mutex_lock(&q->mu);
    *queued = q->qlen;
    *running = q->n_active_jobs;
    int pos = 0;
    for (srv_job *j = q->qhead; j; j = j->next, pos++) fn(ctx, j, pos);
    for (int k = 0; k < q->n_active_jobs; k++) fn(ctx, q->active[k], -1);
    pthread_mutex_unlock(&q->mu);
}

/* For fine-tuning ------------------------------------------------------------------------------- */

const pt_tokenizer *srv_model_tokenizer(pt_server *s, const char *id) {
    models *ms = s->engine;
    if (!id) return n_served(ms) ? ms->m[0].tok : NULL;
    srv_model *m = srv_model_find(s, id);
    return m ? m->tok : NULL;
}

const pt_config *srv_model_config(pt_server *s, const char *id) {
    srv_model *m = srv_model_find(s, id);
    return m ? pt_engine_config(m->eng) : NULL;
}

const char *srv_model_path(pt_server *s, const char *id) {
    srv_model *m = srv_model_find(s, id);
    return m ? m->path : NULL;
}
