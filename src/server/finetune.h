/* finetune.h — files and fine-tuning jobs: the state and the worker that trains adapters, the
 * fine-tuned models it makes and the adapter cache completions use (server_finetune.c); the
 * OpenAI endpoints of files and jobs are api_files.c. */
#ifndef PARITY_SERVER_FINETUNE_H
#define PARITY_SERVER_FINETUNE_H

#include "server/pipeline.h"

struct pt_lora;

/* Files and fine-tuning jobs (server_finetune.c): start reads the jobs from the store (a job
 * that was running is failed, queued ones are queued again) and starts the worker; stop
 * interrupts the running job and joins the worker (before srv_models_stop); free frees the
 * adapter cache (after srv_models_stop). All NULL-state safe. */
int srv_ft_start(pt_server *s, pt_err *err);
/* The caller organisation's fine-tuned models whose base it may sample now, as OpenAI model
 * objects (with "parent": the base). From memory: no store query. */
json_t *srv_ft_models(pt_server *s, const pt_policy *p, const char *org, int64_t now, uint64_t *version);
/* Changes with every change to what srv_ft_models can list (a job's model added). The version
 * srv_ft_models returned its list at goes in *version (NULL: not wanted). */
uint64_t srv_ft_models_version(pt_server *s);
void srv_ft_stop(pt_server *s);
void srv_ft_free(pt_server *s);
/* Resolves a fine-tuned model id "ft:BASE:ORG:SUFFIX:JOBID" for the caller's organisation:
 * 1 with base (the model the policy decides on) and *lora (cached, valid until srv_ft_stop)
 * filled; 0 with a 404 in resp when there is no such model for this organisation. */
int srv_ft_resolve(pt_server *s, call *c, const char *name, char *base, size_t base_cap, const struct pt_lora **lora,
                   http_resp *resp);


/* Shared by server_finetune.c (the state, the worker) and api_files.c (the endpoints) -------- */

#include <pthread.h>
#include <string.h>

#include "engine/lora.h"
#include "engine/tokenizer.h"

#define C_FILES "files"
#define C_JOBS "ft_jobs"
#define C_EVENTS "ft_events"
#define C_CKPTS "ft_checkpoints"
#define ID_CAP 48
#define MAX_LEN 256           /* parity finetune's default max_len */
#define DEFAULT_EPOCHS 3      /* "auto" */
#define DEFAULT_BATCH 4
#define BASE_LR 1e-3          /* parity finetune's --lr; learning_rate_multiplier scales it */
#define MAX_STEPS 100000
#define MAX_JOBS_SCAN 100000

typedef char job_id[ID_CAP];

typedef struct ft_lora {
    job_id job;
    pt_lora *l;
} ft_lora;

typedef struct ft_state {
    pthread_mutex_t mu;   /* job documents, the queues, running/cancel */
    pthread_cond_t cv;
    pthread_t thread;
    int started, stopping;
    job_id *valq, *trainq;
    size_t nval, ntrain, capval, captrain;
    job_id running;
    int cancel;
    pthread_mutex_t cache_mu;
    ft_lora *cache;
    size_t ncache;
    char *files_dir, *jobs_dir;
    json_t *models;       /* [{id, base, org, created}] of succeeded jobs, guarded by cache_mu: what
                           * GET /v1/models lists without a store query per request */
    _Atomic uint64_t models_version; /* bumped with every change to models (under cache_mu) */
} ft_state;

static inline const char *jstr(json_t *o, const char *k) { return json_string_value(json_object_get(o, k)); }

static inline int terminal(const char *status) {
    return status && (!strcmp(status, "succeeded") || !strcmp(status, "failed") || !strcmp(status, "cancelled"));
}

/* A new random id "PREFIX-<24 hex>" into out (ID_CAP bytes). */
void ft_new_id(const char *prefix, char *out);
/* Job queues (arrays of ids): push (PT_ENOMEM), remove by id (1 if it was there). */
int ft_q_push(job_id **q, size_t *n, size_t *cap, const char *id);
int ft_q_remove(job_id *q, size_t *n, const char *id);
/* A document of the caller's organisation, or NULL (absent, or another organisation's: the
 * same answer, so ids of other organisations cannot be probed). */
json_t *ft_doc_get_own(pt_server *s, call *c, const char *coll, const char *id);
/* Stores a document (the failure is said on stderr and returned). */
int ft_doc_put(pt_server *s, const char *coll, const char *id, const char *org, const char *parent, json_t *j);
/* The public object: the document without its private member. New reference. */
json_t *ft_public_obj(json_t *doc);
/* Adds an event to a job's list. */
void ft_add_event(pt_server *s, const char *job, const char *org, const char *level, const char *type, json_t *data,
                  const char *fmt, ...) __attribute__((format(printf, 7, 8)));
/* Validates JSONL training data line by line with the trainer's own parser: the first bad line
 * is an error "WHAT:LINE: message". Counts usable examples (with a loss token) and tokens. */
int ft_validate_jsonl(const char *s, size_t len, const char *what, const pt_tokenizer *tok, int max_len,
                      size_t *examples, size_t *tokens, pt_err *err);

#endif
