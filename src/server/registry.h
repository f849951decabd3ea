/* registry.h — the models this server runs in-process (the registry) and the scheduler that
 * runs work on them (registry.c). Knows no endpoint, no HTTP, no request: work arrives as jobs
 * through the small interface below, and the backend (backend_local.c) is what makes jobs.
 *
 * One scheduler thread per loaded model owns its engine. Jobs wait in a bounded FIFO; the
 * scheduler admits jobs while it has room for their sequences (a job bigger than the batch
 * runs alone), and each iteration runs ONE forward step over the steps every admitted job
 * asks for — new sequences prefilling their prompts, the others decoding one token — so jobs
 * join and leave between steps and concurrent jobs share each pass over the weights.
 *
 * A model is only ever added (at start, and when an applied policy revision names new local
 * weights), never removed before srv_models_stop: a srv_model pointer stays valid until then,
 * and its public fields below never change once it is served. */
#ifndef PARITY_SERVER_REGISTRY_H
#define PARITY_SERVER_REGISTRY_H

#include <jansson.h>

#include "engine/engine.h"
#include "engine/tokenizer.h"
#include "server/server_internal.h"

#define SRV_MAX_SEQS 16 /* sequences decoded together in one step */

typedef struct srv_job srv_job;

/* What the scheduler asks of a job; every call is on the model's scheduler thread. */
typedef struct srv_job_ops {
    /* Once per iteration while admitted, before the steps are gathered: set the job up the
     * first time (or run it whole: a job that never steps); nothing once it is set up. */
    void (*prepare)(srv_job *j);
    /* Adds up to `room` forward steps (one per unfinished sequence; the job allocates each
     * step's logits) to steps[]; tags[i] comes back with step i. Returns how many. */
    int (*add_steps)(srv_job *j, pt_step *steps, void **tags, int room);
    /* After the forward pass over every job's steps: rc and msg are the pass's result. The job
     * samples, advances, and frees the step's logits. */
    void (*stepped)(srv_job *j, pt_step *step, void *tag, int rc, const char *msg);
    /* 1 when the job is done, failed or abandoned: it leaves the batch. */
    int (*over)(srv_job *j);
    /* Fails the job with an HTTP-style status (the shutdown grace period is over). */
    void (*fail)(srv_job *j, int status, const char *msg);
    /* The job has left the scheduler, which never touches it again (drops its reference). */
    void (*finish)(srv_job *j);
} srv_job_ops;

/* The scheduler's part of a job: embedded as the first member of the job's own struct. */
struct srv_job {
    const srv_job_ops *ops;
    srv_job *next;                   /* queue link (the registry's) */
    int n_seqs;                      /* sequences it runs at once: admission counts these */
    char id[40];                     /* shown by srv_model_jobs */
    char owner[PT_KEY_ID_LEN + 1];   /* the key it runs for */
    double queued_at;                /* pt_now() when submitted (the registry's) */
    int64_t queue_ms;                /* ms from submission to admission, -1 before (atomic: the
                                      * scheduler writes it, the request's thread reads it) */
};

struct srv_sched;

/* A served model. The fields are fixed once it is served; the queue is the registry's. */
typedef struct srv_model {
    char id[128];
    char *path;                /* the weights (resolved) */
    pt_engine *eng;
    pt_tokenizer *tok;
    int vocab;
    int qlimit;                /* bounded queue: waiting jobs */
    struct srv_sched *q;       /* registry.c */
} srv_model;

/* Start loads the policy's models that have local weights (one that fails is not served; the
 * reason on stderr); drain stops taking new jobs and waits for the queued ones, at most
 * grace_s, then fails what is left; stop joins the schedulers and frees. */
int srv_models_start(pt_server *s, pt_err *err);
void srv_models_drain(pt_server *s, unsigned grace_s);
void srv_models_stop(pt_server *s);
/* Loads the models of policy p that have local weights and are not served yet (after a policy
 * revision is applied): returns {"loaded": [ids], "not_served": [{"id", "reason"}]}. */
json_t *srv_models_sync(pt_server *s, const pt_policy *p);
/* The ids of the models this server runs now, in load order (a new array). */
json_t *srv_models_served(pt_server *s);

/* The served model id (NULL: none), the number served, the i-th. Lock-free. */
srv_model *srv_model_find(pt_server *s, const char *id);
size_t srv_models_n(pt_server *s);
srv_model *srv_model_at(pt_server *s, size_t i);

/* Queues j (the scheduler then owns a reference: ops->finish drops it). PT_ELIMIT when the
 * queue is full, PT_ECANCELLED when the server is draining. */
int srv_model_submit(srv_model *m, srv_job *j);

/* The model's queue, under its lock: *queued and *running, and fn for each job, with its
 * position in the queue (-1: running). */
void srv_model_jobs(srv_model *m, int *queued, int *running, void (*fn)(void *ctx, const srv_job *j, int pos),
                    void *ctx);

/* What fine-tuning needs of a served model (NULL when id is not served here; the tokenizer's
 * id may be NULL: any served model's). Valid until srv_models_stop. */
struct pt_config;
const pt_tokenizer *srv_model_tokenizer(pt_server *s, const char *id);
const struct pt_config *srv_model_config(pt_server *s, const char *id);
const char *srv_model_path(pt_server *s, const char *id);

#endif
