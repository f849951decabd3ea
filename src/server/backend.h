/* backend.h — where a model's work runs: ONE interface (an ops table) between the endpoints
 * and whatever runs the model, and the job the two share. docs/server.md, "Backends".
 *
 * Implementations: the in-process engine (backend_local.c: the registry's models and their
 * schedulers). The interface is shaped for two more — a remote parity engine worker and an
 * OpenAI-compatible upstream — which would implement the same ops over HTTP: a backend says
 * which models it runs and their facts (srv_model_info: a NULL tokenizer or config says what
 * it cannot do, e.g. internals), takes jobs and answers them only through the job's sink (the
 * streaming callback), and reports its queue for health.
 *
 * A job (gen_job) is made by an endpoint (job.c: job_new, the request's fields below "inputs"),
 * run by a backend (the fields below "state"), and answered through its sink: token after
 * each sampled token, fail on an error, done when the backend is finished with it. Who frees
 * it: a reference count (the request's and the backend's) under the job's mutex. */
#ifndef PARITY_SERVER_BACKEND_H
#define PARITY_SERVER_BACKEND_H

#include "common/sha256.h"
#include "engine/config.h"
#include "engine/engine.h"
#include "engine/sample.h"
#include "engine/tokenizer.h"
#include "server/pipeline.h"
#include "server/registry.h"

#define MAX_STOPS 5 /* OpenAI allows 4; one more for the chat template */
#define MAX_PROMPT_TOKENS 32768

enum { JOB_GENERATE = 0, JOB_TRACE = 1 };
enum { API_COMPLETIONS = 0, API_CHAT = 1 };

typedef struct srv_backend srv_backend;

/* A served model's facts, as its backend knows them (valid while the server runs). */
typedef struct srv_model_info {
    const char *id;
    int vocab;                   /* vocabulary size */
    int max_pos;                 /* context length */
    const pt_config *config;     /* NULL: unknown to the backend (no internals) */
    const pt_tokenizer *tok;     /* what prompts are encoded with; NULL: the backend takes text */
    int queue_limit;             /* jobs that may wait */
} srv_model_info;

/* One generated sequence (a "choice"). */
typedef struct choice {
    int index;              /* choices[].index */
    int input;              /* which prompt */
    pt_seq *seq;
    pt_sampler *sampler;
    int32_t *toks;          /* generated ids */
    int n_toks, cap_toks;
    pt_buf text;            /* decoded completion text */
    size_t emitted;         /* bytes of text already streamed */
    /* log-probs of generated tokens: [n_toks][1 + n_top] */
    pt_sample_result *lp;
    /* echo: log-probs of the prompt tokens (first has none) */
    float *prompt_lp;
    int32_t (*prompt_top_tok)[PT_SAMPLE_MAX_TOP];
    float (*prompt_top_lp)[PT_SAMPLE_MAX_TOP];
    int prefilled;
    int done;
    const char *finish;     /* "stop" | "length" */
} choice;

/* An intervention of POST /v1/internals/trace. */
typedef struct trace_op {
    char hook[96];
    int op;                 /* 0 add, 1 set, 2 ablate, 3 patch */
    float *values;          /* add/set: decoded from base64 */
    size_t numel;
    float scale;
    int mean;               /* ablate */
    int32_t *positions;
    size_t n_positions;
    int source;             /* patch: the input whose activation is copied */
    int *inputs;            /* the inputs it applies to (NULL: all; patch: all but the source) */
    size_t n_inputs;
} trace_op;

typedef struct trace_read {
    char hook[96];
    int32_t *positions;
    size_t n_positions;
} trace_read;

typedef struct trace_spec {
    trace_read *reads;
    size_t n_reads;
    trace_op *ops;
    size_t n_ops;
    int safetensors;        /* answer as application/x-safetensors */
    size_t max_bytes;
} trace_spec;

struct gen_job;
/* The answer's side of a job, called by the backend (on its thread). */
typedef struct job_sink {
    /* A token was sampled for ch (eos: it ends the sequence, as the model or the chat template
     * says): append it, check stops and limits, stream; ch->done when the choice is over. */
    void (*token)(struct gen_job *j, choice *ch, const pt_sample_result *r, int eos);
    /* A failure after the job was accepted (its first call wins). */
    void (*fail)(struct gen_job *j, int status, const char *msg);
    /* The backend is done with j (every choice finished, failed or abandoned): answer, and drop
     * the backend's reference. */
    void (*done)(struct gen_job *j);
} job_sink;

typedef struct gen_job {
    srv_job base;           /* a queueing backend's part (registry.h): id, owner (the caller's key id) */
    pt_server *s;
    const struct job_sink *sink; /* the answer's side (job.c) */
    srv_backend *be;        /* where it runs */
    srv_model_info info;    /* the model's facts, from the backend */
    void *impl;             /* the backend's own (the local one: its srv_model) */
    pthread_mutex_t mu;
    int refs;
    int cancelled;          /* the request is gone */
    call *c;                /* valid only while !cancelled */
    char model[128];        /* as the caller named it (copied: the call may go away) */
    int kind, api;
    int64_t created;
    /* inputs */
    int32_t **prompts;
    int *prompt_len;
    int n_inputs;
    int n_per_input;
    pt_sample_params sp;
    int max_tokens;
    char *stops[MAX_STOPS];
    int n_stops;
    int n_logprobs;         /* top alternatives per token; -1: no logprobs */
    int32_t extra_eos[4];   /* end-of-turn tokens of the chat template */
    int n_extra_eos;
    int echo;
    const struct pt_lora *lora; /* a fine-tuned model's adapter (server_finetune.c's cache), or NULL */
    int stream, include_usage;
    http_stream *out;
    pt_sha256_ctx hash; /* of every byte streamed (for the receipt) */
    /* state */
    choice *ch;
    int n_ch;
    int n_done;
    int64_t prompt_tokens, completion_tokens;
    /* trace jobs */
    struct trace_spec *trace;
    pt_buf raw;             /* a binary answer (safetensors), when raw_type is set */
    const char *raw_type;
    /* result */
    int status;             /* HTTP status of the final answer */
    json_t *result;         /* the JSON body (non-streaming) or the error */
} gen_job;

typedef struct srv_backend_ops {
    const char *name;
    /* The models it runs now: the i-th's facts into *out (0 when i is past the end). */
    int (*model_at)(srv_backend *b, size_t i, srv_model_info *out);
    /* 1 with the model's facts when it runs `id`, else 0. */
    int (*find)(srv_backend *b, const char *id, srv_model_info *out);
    /* Encodes text with the model's tokenizer (special: special-token strings are tokens). */
    int (*tokenize)(srv_backend *b, const gen_job *j, const char *text, size_t len, int add_bos, int special,
                    int32_t **ids, size_t *n, pt_err *err);
    /* Takes the job for the model j->info.id, with the reference the caller added for it (the
     * sink's done drops it): PT_OK; PT_ELIMIT when its queue is full, PT_ECANCELLED when the
     * server is draining (the caller keeps the reference then). */
    int (*submit)(srv_backend *b, gen_job *j);
    /* The request side lets go of j (answered, or the client went away). */
    void (*cancel)(srv_backend *b, gen_job *j);
    /* Health and queue: the model's waiting and running jobs, and fn for each (pos -1: running). */
    void (*jobs)(srv_backend *b, const char *model, int *queued, int *running,
                 void (*fn)(void *ctx, const char *job_id, const char *owner, int pos), void *ctx);
} srv_backend_ops;

struct srv_backend {
    const srv_backend_ops *ops;
    pt_server *s;
};

/* The backend that runs model (its facts into *info), or NULL when none does: today the
 * in-process one, for the models the registry serves. */
srv_backend *srv_backend_for(pt_server *s, const char *model, srv_model_info *info);
/* Every backend of this server (today one): for listing models and queues. */
srv_backend *srv_backend_local(pt_server *s);
/* Makes the server's backends (after srv_models_start) / frees them (after srv_models_stop). */
int srv_backends_start(pt_server *s, pt_err *err);
void srv_backends_free(pt_server *s);

#endif
