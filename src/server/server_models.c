/* server_models.c — the models the server runs, the engine scheduler (continuous batching),
 * and the endpoints that use a model: completions, chat completions, the queue, internals.
 *
 * One scheduler thread per loaded model owns its engine. Requests become jobs in a bounded
 * FIFO; the scheduler admits jobs while it has room for their sequences, and each iteration
 * runs ONE forward step over every active sequence — new ones prefilling their prompts, the
 * others decoding one token — so requests join and leave between steps and concurrent
 * requests share each pass over the weights (decode is bandwidth-bound: a batch of 8 costs
 * little more than 1).
 *
 * A job is shared by the request (which may vanish: the client disconnects) and the scheduler;
 * a mutex and a reference count decide who frees it. A suspended connection cannot close under
 * us (libmicrohttpd does not poll it), so resuming under the job's lock is safe.
 */
#include <ctype.h>
#include <math.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/fileio.h"
#include "engine/chat.h"
#include "common/json.h"
#include "common/sha256.h"
#include "common/util.h"
#include "engine/engine.h"
#include "engine/sample.h"
#include "engine/tokenizer.h"
#include "server/server_internal.h"

#define MAX_ACTIVE_SEQS 16   /* sequences decoded together in one step */
#define MAX_STOPS 5 /* OpenAI allows 4; one more for the chat template */
#define MAX_PROMPT_TOKENS 32768

typedef struct srv_model srv_model;

enum { JOB_GENERATE = 0, JOB_TRACE = 1 };
enum { API_COMPLETIONS = 0, API_CHAT = 1 };

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

typedef struct gen_job {
    pthread_mutex_t mu;
    int refs;
    int cancelled;          /* the request is gone */
    int finished;           /* the scheduler is done with it */
    call *c;                /* valid only while !cancelled */
    srv_model *m;
    char model[128];        /* as the caller named it (copied: the call may go away) */
    char key_id[PT_KEY_ID_LEN + 1];
    int kind, api;
    char id[40];
    int64_t created;
    double queued_at;       /* pt_now() at enqueue */
    int64_t queue_ms;       /* ms from enqueue to admission, -1 before (atomic: the scheduler writes it) */
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
    struct gen_job *next;   /* queue link */
    int queue_pos_snapshot;
} gen_job;

struct srv_model {
    char id[128];
    char *path;              /* the weights (resolved) */
    pt_engine *eng;
    pt_tokenizer *tok;
    int vocab;
    pthread_t thread;
    int started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    gen_job *qhead, *qtail;  /* waiting */
    int qlen, qlimit;
    gen_job *active[MAX_ACTIVE_SEQS];
    int n_active_jobs;
    int active_seqs;
    int draining, stopping;
    int abort_all;           /* shutdown grace period over: fail what is left */
    uint64_t tokens_out;
};

/* Models are only ever added (at start, and when an applied policy revision names new local
 * weights), into an array of fixed capacity: readers walk m[0 .. n) without a lock, the one
 * loader (under load_mu) fills m[n] completely before it publishes n + 1. */
#define MAX_SERVED_MODELS 256

typedef struct models {
    srv_model *m;
    size_t n;                /* atomic: published with release, read with acquire */
    pthread_mutex_t load_mu; /* serialises loading */
} models;

static size_t n_served(const models *ms) {
    return ms ? __atomic_load_n(&ms->n, __ATOMIC_ACQUIRE) : 0;
}

static srv_model *find_model(pt_server *s, const char *id) {
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
    for (size_t i = 0; i < n; i++) json_array_append_new(a, json_string(ms->m[i].id));
    return a;
}

/* Jobs ---------------------------------------------------------------------------------------- */

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

static void trace_spec_free(struct trace_spec *t) {
    if (!t) return;
    for (size_t i = 0; i < t->n_reads; i++) free(t->reads[i].positions);
    for (size_t i = 0; i < t->n_ops; i++) {
        free(t->ops[i].values);
        free(t->ops[i].positions);
        free(t->ops[i].inputs);
    }
    free(t->reads);
    free(t->ops);
    free(t);
}

static void choice_free(choice *ch) {
    pt_seq_free(ch->seq);
    pt_sampler_free(ch->sampler);
    free(ch->toks);
    pt_buf_free(&ch->text);
    free(ch->lp);
    free(ch->prompt_lp);
    free(ch->prompt_top_tok);
    free(ch->prompt_top_lp);
}

static void job_destroy(gen_job *j) {
    for (int i = 0; i < j->n_ch; i++) choice_free(&j->ch[i]);
    free(j->ch);
    for (int i = 0; i < j->n_inputs; i++) free(j->prompts[i]);
    free(j->prompts);
    free(j->prompt_len);
    for (int i = 0; i < j->n_stops; i++) free(j->stops[i]);
    json_decref(j->result);
    trace_spec_free(j->trace);
    pt_buf_free(&j->raw);
    if (j->out) http_stream_close(j->out);
    pthread_mutex_destroy(&j->mu);
    free(j);
}

static void job_release(gen_job *j) {
    pthread_mutex_lock(&j->mu);
    int last = --j->refs == 0;
    pthread_mutex_unlock(&j->mu);
    if (last) job_destroy(j);
}

/* The request side lets go (request finished or client gone). */
static void job_detach(void *p) {
    gen_job *j = p;
    pthread_mutex_lock(&j->mu);
    j->cancelled = 1;
    pthread_mutex_unlock(&j->mu);
    job_release(j);
}

int64_t srv_job_queue_ms(const call *c) {
    if (c->job_free != job_detach) return -1;
    return __atomic_load_n(&((const gen_job *)c->job)->queue_ms, __ATOMIC_RELAXED);
}

/* Text ----------------------------------------------------------------------------------------- */

static json_t *clean_string(const char *s, size_t n) {
    pt_buf b;
    pt_buf_init(&b, n * 3 + 16);
    pt_utf8_clean(s, n, &b);
    json_t *j = json_stringn(b.data ? b.data : "", b.len);
    pt_buf_free(&b);
    return j;
}

static json_t *token_string(srv_model *m, int32_t id, json_t **bytes) {
    char buf[256];
    size_t len = 0;
    if (pt_tokenizer_token_bytes(m->tok, id, buf, sizeof buf, &len)) len = 0;
    if (bytes) {
        *bytes = json_array();
        for (size_t i = 0; i < len; i++) json_array_append_new(*bytes, json_integer((unsigned char)buf[i]));
    }
    return clean_string(buf, len);
}

/* Results --------------------------------------------------------------------------------------- */

static json_t *usage_json(const gen_job *j) {
    return json_pack("{s:I, s:I, s:I}", "prompt_tokens", (json_int_t)j->prompt_tokens, "completion_tokens",
                     (json_int_t)j->completion_tokens, "total_tokens",
                     (json_int_t)(j->prompt_tokens + j->completion_tokens));
}

/* Adds one alternative to a completions-style top_logprobs object. Different tokens can have the
 * same text (e.g. two partial UTF-8 bytes both shown as U+FFFD); the object can hold one of them,
 * and alternatives arrive most likely first, so the first one stays. Steals ts. */
static void top_add(json_t *top, json_t *ts, double logprob) {
    const char *k = json_string_value(ts);
    if (k && !json_object_get(top, k)) json_object_set_new(top, k, json_real(logprob));
    json_decref(ts);
}

/* Completions-style logprobs of tokens [from, to) of a choice (echo adds the prompt first). */
static json_t *completion_logprobs(gen_job *j, choice *ch, int from, int to, size_t *offset) {
    json_t *toks = json_array(), *lps = json_array(), *tops = json_array(), *offs = json_array();
    srv_model *m = j->m;
    if (j->echo && from == 0) {
        const int32_t *pr = j->prompts[ch->input];
        for (int i = 0; i < j->prompt_len[ch->input]; i++) {
            json_t *t = token_string(m, pr[i], NULL);
            json_array_append_new(offs, json_integer((json_int_t)*offset));
            *offset += json_string_length(t);
            json_array_append_new(toks, t);
            json_array_append_new(lps, i == 0 ? json_null() : json_real(ch->prompt_lp[i]));
            if (i == 0) {
                json_array_append_new(tops, json_null());
                continue;
            }
            json_t *top = json_object();
            for (int k = 0; k < j->n_logprobs; k++) {
                top_add(top, token_string(m, ch->prompt_top_tok[i][k], NULL), ch->prompt_top_lp[i][k]);
            }
            json_array_append_new(tops, top);
        }
    }
    for (int i = from; i < to; i++) {
        const pt_sample_result *r = &ch->lp[i];
        json_t *t = token_string(m, r->token, NULL);
        json_array_append_new(offs, json_integer((json_int_t)*offset));
        *offset += json_string_length(t);
        json_array_append_new(toks, t);
        json_array_append_new(lps, json_real(r->logprob));
        json_t *top = json_object();
        for (size_t k = 0; k < r->n_top; k++) {
            top_add(top, token_string(m, r->top[k].token, NULL), r->top[k].logprob);
        }
        json_array_append_new(tops, top);
    }
    return json_pack("{s:o, s:o, s:o, s:o}", "tokens", toks, "token_logprobs", lps, "top_logprobs", tops,
                     "text_offset", offs);
}

/* Chat-style logprobs {content: [{token, logprob, bytes, top_logprobs}], refusal: null}. */
static json_t *chat_logprobs(gen_job *j, choice *ch, int from, int to) {
    json_t *content = json_array();
    for (int i = from; i < to; i++) {
        const pt_sample_result *r = &ch->lp[i];
        json_t *bytes, *top = json_array();
        json_t *t = token_string(j->m, r->token, &bytes);
        for (size_t k = 0; k < r->n_top && (int)k < j->n_logprobs; k++) {
            json_t *tb;
            json_t *ts = token_string(j->m, r->top[k].token, &tb);
            json_array_append_new(top, json_pack("{s:o, s:f, s:o}", "token", ts, "logprob", (double)r->top[k].logprob,
                                                 "bytes", tb));
        }
        json_array_append_new(content, json_pack("{s:o, s:f, s:o, s:o}", "token", t, "logprob", (double)r->logprob,
                                                 "bytes", bytes, "top_logprobs", top));
    }
    return json_pack("{s:o, s:n}", "content", content, "refusal");
}

static const char *model_label(gen_job *j) { return j->model; }

/* The whole non-streaming response body. */
static json_t *final_body(gen_job *j) {
    json_t *choices = json_array();
    for (int i = 0; i < j->n_ch; i++) {
        choice *ch = &j->ch[i];
        pt_buf text;
        pt_buf_init(&text, (size_t)-1 / 2);
        if (j->api == API_COMPLETIONS && j->echo) {
            char *pt = NULL;
            size_t pl = 0;
            if (!pt_tokenizer_decode(j->m->tok, j->prompts[ch->input], (size_t)j->prompt_len[ch->input], 0, &pt, &pl,
                                     NULL))
                pt_buf_append(&text, pt, pl);
            free(pt);
        }
        pt_buf_append(&text, ch->text.data ? ch->text.data : "", ch->text.len);
        json_t *s = clean_string(text.data ? text.data : "", text.len);
        pt_buf_free(&text);
        json_t *c;
        if (j->api == API_COMPLETIONS) {
            size_t off = 0;
            c = json_pack("{s:o, s:i, s:o, s:s}", "text", s, "index", ch->index, "logprobs",
                          j->n_logprobs >= 0 ? completion_logprobs(j, ch, 0, ch->n_toks, &off) : json_null(),
                          "finish_reason", ch->finish ? ch->finish : "length");
        } else {
            c = json_pack("{s:i, s:{s:s, s:o, s:n}, s:o, s:s}", "index", ch->index, "message", "role", "assistant",
                          "content", s, "refusal", "logprobs",
                          j->n_logprobs >= 0 ? chat_logprobs(j, ch, 0, ch->n_toks) : json_null(), "finish_reason",
                          ch->finish ? ch->finish : "length");
        }
        json_array_append_new(choices, c);
    }
    return json_pack("{s:s, s:s, s:I, s:s, s:o, s:o, s:s}", "id", j->id, "object",
                     j->api == API_COMPLETIONS ? "text_completion" : "chat.completion", "created",
                     (json_int_t)j->created, "model", model_label(j), "choices", choices, "usage", usage_json(j),
                     "system_fingerprint", "parity");
}

/* Streaming ------------------------------------------------------------------------------------ */

static int sse(gen_job *j, json_t *chunk) {
    char *s = json_dumps(chunk, JSON_COMPACT);
    json_decref(chunk);
    if (!s) return PT_ENOMEM;
    pt_buf b;
    pt_buf_init(&b, strlen(s) + 16);
    pt_buf_printf(&b, "data: %s\n\n", s);
    free(s);
    pt_sha256_update(&j->hash, b.data, b.len);
    int rc = http_stream_write(j->out, b.data, b.len);
    pt_buf_free(&b);
    return rc;
}

static json_t *chunk_head(gen_job *j) {
    return json_pack("{s:s, s:s, s:I, s:s, s:s}", "id", j->id, "object",
                     j->api == API_COMPLETIONS ? "text_completion" : "chat.completion.chunk", "created",
                     (json_int_t)j->created, "model", model_label(j), "system_fingerprint", "parity");
}

/* Streams what a choice has that is safe to show (held back while a stop string may be
 * forming), with the log-probs of the tokens it came from; and its finish reason once done. */
static int stream_choice(gen_job *j, choice *ch, size_t safe, int from_tok, int to_tok) {
    if (safe <= ch->emitted && !ch->done) return PT_OK;
    json_t *text = clean_string(ch->text.data ? ch->text.data + ch->emitted : "", safe - ch->emitted);
    ch->emitted = safe;
    json_t *c = chunk_head(j), *choice_o;
    json_t *lp = json_null();
    if (j->n_logprobs >= 0 && to_tok > from_tok) {
        size_t off = 0;
        json_decref(lp);
        lp = j->api == API_COMPLETIONS ? completion_logprobs(j, ch, from_tok, to_tok, &off)
                                       : chat_logprobs(j, ch, from_tok, to_tok);
    }
    json_t *fin = ch->done ? json_string(ch->finish) : json_null();
    if (j->api == API_COMPLETIONS)
        choice_o = json_pack("{s:o, s:i, s:o, s:o}", "text", text, "index", ch->index, "logprobs", lp, "finish_reason", fin);
    else
        choice_o = json_pack("{s:i, s:{s:o}, s:o, s:o}", "index", ch->index, "delta", "content", text, "logprobs", lp,
                             "finish_reason", fin);
    json_object_set_new(c, "choices", json_pack("[o]", choice_o));
    return sse(j, c);
}

/* Finishing ------------------------------------------------------------------------------------ */

static void stream_receipt_done(void *ctx, int rc, uint64_t index) {
    gen_job *j = ctx;
    pthread_mutex_lock(&j->mu);
    if (!j->cancelled && j->out) {
        char line[64];
        int n = rc ? snprintf(line, sizeof line, ": parity-receipt unavailable\n\n")
                   : snprintf(line, sizeof line, ": parity-receipt %llu\n\n", (unsigned long long)index);
        http_stream_write(j->out, line, (size_t)n);
        http_stream_write(j->out, "data: [DONE]\n\n", 14);
    }
    if (j->out) {
        http_stream_close(j->out);
        j->out = NULL;
    }
    pthread_mutex_unlock(&j->mu);
    job_release(j); /* the scheduler's reference */
}

/* Called on the scheduler thread when every choice is done (or the job failed: status set). */
static void job_finish(pt_server *s, gen_job *j) {
    srv_model *m = j->m;
    pthread_mutex_lock(&j->mu);
    int gone = j->cancelled;
    if (!gone) {
        call *c = j->c;
        c->prompt_tokens = j->prompt_tokens;
        c->completion_tokens = j->completion_tokens;
        pt_ratelimit_add_tokens(s->rl, c->key.org, c->model, j->prompt_tokens + j->completion_tokens, pt_unix_time());
    }
    pt_metrics_tokens(s->metrics, (uint64_t)j->prompt_tokens, (uint64_t)j->completion_tokens);
    m->tokens_out += (uint64_t)j->completion_tokens;
    if (gone) {
        pthread_mutex_unlock(&j->mu);
        job_release(j);
        return;
    }
    if (!j->stream) {
        if (!j->result) {
            j->status = 200;
            j->result = final_body(j);
        }
        http_resume(j->c->req);
        pthread_mutex_unlock(&j->mu);
        job_release(j);
        return;
    }
    /* Streaming: the usage chunk, then the receipt (its hash covers every byte streamed), then
     * [DONE] from the receipt callback. */
    if (j->status == 0 && j->include_usage) {
        json_t *c = chunk_head(j);
        json_object_set_new(c, "choices", json_array());
        json_object_set_new(c, "usage", usage_json(j));
        sse(j, c);
    }
    uint8_t h[32];
    pt_sha256_final(&j->hash, h);
    pt_receipt_private priv;
    char *text = srv_audit_text(j->c, j->status ? j->status : 200, h, &priv);
    pthread_mutex_unlock(&j->mu);
    if (!text || pt_receipts_submit(s->receipts, text, strlen(text), &priv, stream_receipt_done, j))
        stream_receipt_done(j, PT_EIO, 0);
    free(text);
}

/* A failure after the request was accepted: an error body (or a mid-stream error event). The
 * scheduler then finishes the job like any other. */
static void job_fail(gen_job *j, int status, const char *msg) {
    if (j->status) return;
    j->status = status;
    json_t *e = json_pack("{s:{s:s, s:s, s:n, s:n}}", "error", "message", msg, "type",
                          status >= 500 ? "server_error" : "invalid_request_error", "param", "code");
    if (j->stream && j->out) {
        sse(j, e);
    } else {
        json_decref(j->result);
        j->result = e;
    }
    for (int i = 0; i < j->n_ch; i++) j->ch[i].done = 1;
    j->n_done = j->n_ch;
}

/* The scheduler ---------------------------------------------------------------------------------- */

static int is_eos(gen_job *j, int32_t t) {
    srv_model *m = j->m;
    for (int i = 0; i < j->n_extra_eos; i++)
        if (j->extra_eos[i] == t) return 1;
    const pt_config *c = pt_engine_config(m->eng);
    for (int i = 0; i < c->n_eos; i++)
        if (c->eos_token_ids[i] == t) return 1;
    return t == pt_tokenizer_eos(m->tok);
}

/* Makes the job's sequences and samplers. 0 or an error message in err. */
static int job_setup(gen_job *j, pt_err *err) {
    srv_model *m = j->m;
    j->n_ch = j->n_inputs * j->n_per_input;
    if (!(j->ch = calloc((size_t)j->n_ch, sizeof *j->ch))) return pt_errf(err, PT_ENOMEM, "out of memory");
    for (int i = 0; i < j->n_ch; i++) {
        choice *ch = &j->ch[i];
        ch->index = i;
        ch->input = i / j->n_per_input;
        pt_buf_init(&ch->text, 64u << 20);
        pt_sample_params sp = j->sp;
        sp.seed = j->sp.seed + (uint64_t)i * PT_SPLITMIX64_GAMMA; /* distinct draws per choice */
        if (!(ch->seq = pt_seq_new(m->eng, 0))) return pt_errf(err, PT_ENOMEM, "out of memory for a KV cache");
        if (j->lora) pt_seq_set_lora(ch->seq, j->lora, 1.0f);
        int rc = pt_sampler_new(&sp, (size_t)m->vocab, &ch->sampler, err);
        if (rc) return rc;
        for (int t = 0; t < j->prompt_len[ch->input]; t++) pt_sampler_accept(ch->sampler, j->prompts[ch->input][t]);
        ch->cap_toks = j->max_tokens > 0 ? j->max_tokens : 1;
        if (!(ch->toks = malloc((size_t)ch->cap_toks * sizeof *ch->toks)) ||
            !(ch->lp = calloc((size_t)ch->cap_toks, sizeof *ch->lp)))
            return pt_errf(err, PT_ENOMEM, "out of memory");
        if (j->echo && j->n_logprobs >= 0) {
            int n = j->prompt_len[ch->input];
            ch->prompt_lp = calloc((size_t)n, sizeof *ch->prompt_lp);
            ch->prompt_top_tok = calloc((size_t)n, sizeof *ch->prompt_top_tok);
            ch->prompt_top_lp = calloc((size_t)n, sizeof *ch->prompt_top_lp);
            if (!ch->prompt_lp || !ch->prompt_top_tok || !ch->prompt_top_lp)
                return pt_errf(err, PT_ENOMEM, "out of memory");
        }
    }
    return PT_OK;
}

/* Log-probs of the prompt's tokens from the prefill's rows (row i predicts token i+1). */
static void prompt_logprobs(gen_job *j, choice *ch, float *rows, int n, int vocab) {
    const int32_t *pr = j->prompts[ch->input];
    for (int i = 0; i + 1 < n; i++) {
        float *row = rows + (size_t)i * (size_t)vocab;
        pt_log_softmax(row, (size_t)vocab, row);
        ch->prompt_lp[i + 1] = row[pr[i + 1]];
        for (int k = 0; k < j->n_logprobs && k < PT_SAMPLE_MAX_TOP; k++) {
            int best = -1;
            for (int v = 0; v < vocab; v++) {
                int taken = 0;
                for (int q = 0; q < k; q++) taken |= ch->prompt_top_tok[i + 1][q] == v;
                if (!taken && (best < 0 || row[v] > row[best])) best = v;
            }
            ch->prompt_top_tok[i + 1][k] = best;
            ch->prompt_top_lp[i + 1][k] = row[best];
        }
    }
}

/* After a token was sampled for ch: text, stop strings, limits, streaming. */
static void advance(pt_server *s, gen_job *j, choice *ch, const pt_sample_result *r) {
    (void)s;
    srv_model *m = j->m;
    int from = ch->n_toks;
    if (is_eos(j, r->token)) {
        ch->done = 1;
        ch->finish = "stop";
    } else {
        ch->toks[ch->n_toks] = r->token;
        ch->lp[ch->n_toks] = *r;
        ch->n_toks++;
        j->completion_tokens++;
        char buf[256];
        size_t len = 0;
        if (!pt_tokenizer_token_bytes(m->tok, r->token, buf, sizeof buf, &len)) pt_buf_append(&ch->text, buf, len);
    }
    pt_stop_result st = {0};
    pt_stop_check(ch->text.data ? ch->text.data : "", ch->text.len, (const char *const *)j->stops, (size_t)j->n_stops, &st);
    size_t safe = st.safe_len;
    if (st.stopped) {
        ch->text.len = st.stop_pos;
        if (ch->text.data) ch->text.data[st.stop_pos] = 0;
        safe = st.stop_pos;
        ch->done = 1;
        ch->finish = "stop";
    } else if (!ch->done && (ch->n_toks >= j->max_tokens || ch->seq->pos >= ch->seq->max_ctx)) {
        ch->done = 1;
        ch->finish = "length";
    }
    if (ch->done) safe = ch->text.len;
    if (j->stream && j->out) {
        if (stream_choice(j, ch, safe, from, ch->n_toks) == PT_ECANCELLED) {
            pthread_mutex_lock(&j->mu);
            j->cancelled = 1;
            pthread_mutex_unlock(&j->mu);
        }
    }
    if (ch->done) j->n_done++;
}

typedef struct step_ref {
    gen_job *j;
    choice *ch;
    int prefill;
} step_ref;

static void run_trace_job(pt_server *s, gen_job *j);

static int job_gone(gen_job *j) {
    pthread_mutex_lock(&j->mu);
    int g = j->cancelled;
    pthread_mutex_unlock(&j->mu);
    return g;
}

static void *scheduler(void *arg) {
    pt_server *s = ((void **)arg)[0];
    srv_model *m = ((void **)arg)[1];
    free(arg);
    pt_step steps[MAX_ACTIVE_SEQS];
    step_ref refs[MAX_ACTIVE_SEQS];
    for (;;) {
        pthread_mutex_lock(&m->mu);
        while (!m->stopping && m->n_active_jobs == 0 && !m->qhead) pthread_cond_wait(&m->cv, &m->mu);
        if (m->stopping && m->n_active_jobs == 0 && !m->qhead) {
            pthread_mutex_unlock(&m->mu);
            break;
        }
        /* Admit waiting jobs while their sequences fit (a job bigger than the batch runs alone). */
        while (m->qhead && m->n_active_jobs < MAX_ACTIVE_SEQS &&
               (m->active_seqs == 0 || m->active_seqs + m->qhead->n_inputs * m->qhead->n_per_input <= MAX_ACTIVE_SEQS)) {
            gen_job *j = m->qhead;
            m->qhead = j->next;
            if (!m->qhead) m->qtail = NULL;
            m->qlen--;
            j->next = NULL;
            m->active[m->n_active_jobs++] = j;
            m->active_seqs += j->n_inputs * j->n_per_input;
            __atomic_store_n(&j->queue_ms, (int64_t)((pt_now() - j->queued_at) * 1000), __ATOMIC_RELAXED);
        }
        int abort_now = m->abort_all;
        pthread_mutex_unlock(&m->mu);

        if (abort_now) /* shutting down past the grace period: everything admitted fails now */
            for (int a = 0; a < m->n_active_jobs; a++) job_fail(m->active[a], 503, "the server is shutting down");
        /* Set up newly admitted jobs; trace jobs run whole here. */
        for (int a = 0; a < m->n_active_jobs; a++) {
            gen_job *j = m->active[a];
            if (j->ch || j->status || job_gone(j)) continue;
            if (j->kind == JOB_TRACE) {
                run_trace_job(s, j);
                continue;
            }
            pt_err err;
            if (job_setup(j, &err)) job_fail(j, 503, err.msg);
        }
        /* One forward step over every unfinished sequence: prompts prefill, others decode. */
        int n = 0;
        for (int a = 0; a < m->n_active_jobs; a++) {
            gen_job *j = m->active[a];
            if (j->status || !j->ch || job_gone(j)) continue;
            for (int i = 0; i < j->n_ch && n < MAX_ACTIVE_SEQS; i++) {
                choice *ch = &j->ch[i];
                if (ch->done) continue;
                int pre = !ch->prefilled;
                int ntok = pre ? j->prompt_len[ch->input] : 1;
                int all = pre && j->echo && j->n_logprobs >= 0;
                float *logits = malloc((size_t)(all ? ntok : 1) * (size_t)m->vocab * sizeof(float));
                if (!logits) {
                    job_fail(j, 503, "out of memory for logits");
                    break;
                }
                steps[n] = (pt_step){ch->seq, pre ? j->prompts[ch->input] : &ch->toks[ch->n_toks - 1], ntok, all, logits};
                refs[n] = (step_ref){j, ch, pre};
                n++;
            }
        }
        pt_err err;
        int rc = n ? pt_engine_forward(m->eng, steps, n, &err) : PT_OK;
        for (int k = 0; k < n; k++) {
            gen_job *j = refs[k].j;
            choice *ch = refs[k].ch;
            float *row = steps[k].logits;
            if (rc || j->status) {
                job_fail(j, 500, rc ? err.msg : "failed");
            } else {
                if (refs[k].prefill) {
                    ch->prefilled = 1;
                    if (steps[k].all_logits) {
                        prompt_logprobs(j, ch, steps[k].logits, steps[k].n_tokens, m->vocab);
                        row = steps[k].logits + (size_t)(steps[k].n_tokens - 1) * (size_t)m->vocab;
                    }
                }
                pt_sample_result r;
                pt_err serr;
                int nt = j->n_logprobs > 0 ? j->n_logprobs : 0;
                if (j->max_tokens == 0) { /* echo-only scoring: nothing to generate */
                    ch->done = 1;
                    ch->finish = "length";
                    j->n_done++;
                } else if (pt_sampler_sample(ch->sampler, row, (size_t)nt, &r, &serr)) {
                    job_fail(j, 500, serr.msg);
                } else {
                    advance(s, j, ch, &r);
                }
            }
            free(steps[k].logits);
        }
        /* Jobs that are done, failed or abandoned leave the batch and are finished. */
        for (int a = 0; a < m->n_active_jobs; a++) {
            gen_job *j = m->active[a];
            if (!(j->status || job_gone(j) || (j->ch && j->n_done >= j->n_ch))) continue;
            pthread_mutex_lock(&m->mu);
            m->active_seqs -= j->n_inputs * j->n_per_input;
            m->active[a] = m->active[--m->n_active_jobs];
            pthread_mutex_unlock(&m->mu);
            a--;
            job_finish(s, j); /* releases the scheduler's reference */
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
    memset(m, 0, sizeof *m);
    snprintf(m->id, sizeof m->id, "%s", pm->id);
    int rc = pt_engine_open(path, 0, &m->eng, err);
    if (!rc) {
        char *tp = pt_path_join(path, "tokenizer.json");
        rc = tp ? pt_tokenizer_load(tp, &m->tok, err) : pt_errf(err, PT_ENOMEM, "out of memory");
        free(tp);
    }
    m->path = path;
    void **arg = NULL;
    if (!rc) {
        m->vocab = pt_engine_config(m->eng)->vocab_size;
        m->qlimit = s->o.queue_limit;
        pthread_mutex_init(&m->mu, NULL);
        pthread_cond_init(&m->cv, NULL);
        if (!(arg = malloc(2 * sizeof *arg))) {
            rc = pt_errf(err, PT_ENOMEM, "out of memory");
        } else {
            arg[0] = s;
            arg[1] = m;
            if (pthread_create(&m->thread, NULL, scheduler, arg))
                rc = pt_errf(err, PT_EINTERNAL, "cannot start its scheduler thread");
        }
        if (rc) {
            free(arg);
            pthread_cond_destroy(&m->cv);
            pthread_mutex_destroy(&m->mu);
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
    m->started = 1;
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
    if (!(ms->m = calloc(MAX_SERVED_MODELS, sizeof *ms->m))) return pt_errf(err, PT_ENOMEM, "out of memory");
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
        if (!has_local_weights(pm) || find_model(s, pm->id)) continue;
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
        srv_model *m = &ms->m[i];
        pthread_mutex_lock(&m->mu);
        m->draining = 1;
        pthread_mutex_unlock(&m->mu);
    }
    /* Wait until queued and active work is done, at most the grace period. */
    double until = pt_now() + grace_s;
    for (size_t i = 0; ms && i < ms->n; i++) {
        srv_model *m = &ms->m[i];
        for (;;) {
            pthread_mutex_lock(&m->mu);
            int busy = m->qhead || m->n_active_jobs;
            pthread_mutex_unlock(&m->mu);
            if (!busy) break;
            if (pt_now() > until) {
                /* Past the grace period: fail what is left with 503, so that no connection stays
                 * suspended when the HTTP layer stops (libmicrohttpd aborts on one). */
                pthread_mutex_lock(&m->mu);
                m->abort_all = 1;
                pthread_cond_signal(&m->cv);
                pthread_mutex_unlock(&m->mu);
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
        if (m->started) {
            pthread_mutex_lock(&m->mu);
            m->stopping = 1;
            pthread_cond_signal(&m->cv);
            pthread_mutex_unlock(&m->mu);
            pthread_join(m->thread, NULL);
            pthread_cond_destroy(&m->cv);
            pthread_mutex_destroy(&m->mu);
        }
        pt_tokenizer_free(m->tok);
        pt_engine_free(m->eng);
        free(m->path);
    }
    pthread_mutex_destroy(&ms->load_mu);
    free(ms->m);
    free(ms);
    s->engine = NULL;
}

/* Queues a job (the scheduler takes a reference). PT_ELIMIT when the queue is full. */
static int enqueue(srv_model *m, gen_job *j) {
    pthread_mutex_lock(&m->mu);
    if (m->draining || m->stopping) {
        pthread_mutex_unlock(&m->mu);
        return PT_ECANCELLED;
    }
    if (m->qlen >= m->qlimit) {
        pthread_mutex_unlock(&m->mu);
        return PT_ELIMIT;
    }
    j->queued_at = pt_now();
    if (m->qtail) m->qtail->next = j;
    else m->qhead = j;
    m->qtail = j;
    m->qlen++;
    pthread_cond_signal(&m->cv);
    pthread_mutex_unlock(&m->mu);
    return PT_OK;
}

/* Requests -------------------------------------------------------------------------------------- */

static void set_rl_headers(http_resp *resp, const call *c) {
    if (!c->has_rl) return;
    char d[32];
    if (c->rl_req.limit) {
        http_set_header_i64(resp, "x-ratelimit-limit-requests", c->rl_req.limit);
        http_set_header_i64(resp, "x-ratelimit-remaining-requests", c->rl_req.remaining);
        pt_format_duration(c->rl_req.reset_s, d, sizeof d);
        http_set_header(resp, "x-ratelimit-reset-requests", "%s", d);
    }
    if (c->rl_tok.limit) {
        http_set_header_i64(resp, "x-ratelimit-limit-tokens", c->rl_tok.limit);
        http_set_header_i64(resp, "x-ratelimit-remaining-tokens", c->rl_tok.remaining);
        pt_format_duration(c->rl_tok.reset_s, d, sizeof d);
        http_set_header(resp, "x-ratelimit-reset-tokens", "%s", d);
    }
}

/* Appends the encoding of text (special-token strings inside it are plain text unless
 * special) to a growing token array. */
static int encode_into(srv_model *m, const char *text, size_t len, int add_bos, int special, int32_t **toks, int *n,
                       int *cap, pt_err *err) {
    int32_t *ids;
    size_t k;
    int rc = pt_tokenizer_encode(m->tok, text, len, add_bos, special, &ids, &k, err);
    if (rc) return rc;
    if (*n + (int)k > MAX_PROMPT_TOKENS) {
        free(ids);
        return pt_errf(err, PT_ELIMIT, "the prompt is longer than %d tokens", MAX_PROMPT_TOKENS);
    }
    if (*n + (int)k > *cap) {
        int nc = (*n + (int)k) * 2;
        int32_t *t = realloc(*toks, (size_t)nc * sizeof *t);
        if (!t) {
            free(ids);
            return pt_errf(err, PT_ENOMEM, "out of memory");
        }
        *toks = t;
        *cap = nc;
    }
    if (k) memcpy(*toks + *n, ids, k * sizeof *ids); /* an empty encoding may leave *toks NULL */
    *n += (int)k;
    free(ids);
    return PT_OK;
}

/* The chat prompt: engine/chat.h's rendering (the model's template, or the plain one), the
 * same tokens `parity finetune` trains on, with the template's end-of-turn token and stop. */
static int chat_prompt(gen_job *j, json_t *messages, int32_t **toks, int *n, const char **bad, pt_err *err) {
    pt_chat_tokens ct = {.max = MAX_PROMPT_TOKENS};
    size_t at;
    int rc = pt_chat_render(j->m->tok, messages, 1, &ct, bad, &at, err);
    *toks = ct.ids, *n = (int)ct.n;
    free(ct.reply);
    if (rc) return rc;
    pt_chat_kind kind = pt_chat_kind_of(j->m->tok);
    if (pt_chat_end_token(j->m->tok, kind) >= 0) j->extra_eos[j->n_extra_eos++] = pt_chat_end_token(j->m->tok, kind);
    if (pt_chat_stop(kind) && j->n_stops < MAX_STOPS) j->stops[j->n_stops++] = strdup(pt_chat_stop(kind));
    return PT_OK;
}

static int bad_request(http_resp *resp, const char *param, const char *fmt, const char *detail) {
    http_error(resp, 400, "invalid_request_error", "invalid_value", param, fmt, detail ? detail : "");
    return HTTP_DONE;
}

static int get_num(json_t *b, const char *key, double lo, double hi, double *out, http_resp *resp, int *failed) {
    json_t *v = json_object_get(b, key);
    if (!v || json_is_null(v)) return 0;
    if (!json_is_number(v) || json_number_value(v) < lo || json_number_value(v) > hi || isnan(json_number_value(v))) {
        char msg[160];
        snprintf(msg, sizeof msg, "'%s' must be a number in [%g, %g].", key, lo, hi);
        http_error(resp, 400, "invalid_request_error", "invalid_value", key, "%s", msg);
        *failed = 1;
        return 0;
    }
    *out = json_number_value(v);
    return 1;
}

/* An integer field in [lo, hi] (JSON integers only: 2.5 and 2.0 are refused, as OpenAI does). */
static int get_int(json_t *b, const char *key, int64_t lo, int64_t hi, int64_t *out, http_resp *resp, int *failed) {
    json_t *v = json_object_get(b, key);
    if (!v || json_is_null(v)) return 0;
    if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi) {
        http_error(resp, 400, "invalid_request_error", "invalid_value", key, "'%s' must be an integer in [%lld, %lld].",
                   key, (long long)lo, (long long)hi);
        *failed = 1;
        return 0;
    }
    *out = json_integer_value(v);
    return 1;
}

/* The fields of OpenAI's completions and chat bodies this server takes. Those marked neutral
 * are OpenAI features it does not implement, taken only at the value that asks for nothing
 * (best_of 1, the penalties 0, ...); `user` and `metadata` are labels that change nothing. Any
 * other field, or a neutral one at another value, is refused with a 400 naming it. */
enum { F_BOTH = 3, F_COMPL = 1, F_CHAT = 2 };
static const struct {
    const char *name;
    int apis;
    const char *neutral; /* JSON text of the only value taken, or NULL: implemented */
} body_fields[] = {
    {"model", F_BOTH, NULL}, {"prompt", F_COMPL, NULL}, {"messages", F_CHAT, NULL}, {"variant", F_BOTH, NULL},
    {"echo", F_COMPL, NULL}, {"logprobs", F_BOTH, NULL}, {"top_logprobs", F_CHAT, NULL},
    {"max_tokens", F_BOTH, NULL}, {"max_completion_tokens", F_BOTH, NULL}, {"n", F_BOTH, NULL},
    {"seed", F_BOTH, NULL}, {"stop", F_BOTH, NULL}, {"stream", F_BOTH, NULL}, {"stream_options", F_BOTH, NULL},
    {"temperature", F_BOTH, NULL}, {"top_p", F_BOTH, NULL}, {"top_k", F_BOTH, NULL}, {"min_p", F_BOTH, NULL},
    {"repetition_penalty", F_BOTH, NULL}, {"logit_bias", F_BOTH, NULL}, {"user", F_BOTH, NULL},
    {"metadata", F_BOTH, NULL}, {"best_of", F_COMPL, "1"}, {"suffix", F_COMPL, "null"},
    {"frequency_penalty", F_BOTH, "0"}, {"presence_penalty", F_BOTH, "0"}, {"store", F_CHAT, "false"},
    {"parallel_tool_calls", F_CHAT, "true"}, {"tool_choice", F_CHAT, "\"none\""}, {"tools", F_CHAT, "[]"},
    {"response_format", F_CHAT, "{\"type\":\"text\"}"}, {"modalities", F_CHAT, "[\"text\"]"},
};

/* 1 if every field of b is taken (see body_fields); else 0 with a 400 naming the first that is not. */
static int check_fields(json_t *b, int api, http_resp *resp) {
    const char *key;
    json_t *v;
    int mask = api == API_CHAT ? F_CHAT : F_COMPL;
    json_object_foreach(b, key, v) {
        size_t i = 0, n = sizeof body_fields / sizeof body_fields[0];
        while (i < n && (strcmp(body_fields[i].name, key) || !(body_fields[i].apis & mask))) i++;
        if (i == n) {
            http_error(resp, 400, "invalid_request_error", "unknown_parameter", key, "Unknown parameter: '%s'.", key);
            return 0;
        }
        if (!body_fields[i].neutral || json_is_null(v)) continue;
        json_t *want = json_loads(body_fields[i].neutral, JSON_DECODE_ANY, NULL);
        int same = json_equal(want, v) ||
                   (json_is_number(want) && json_is_number(v) && json_number_value(want) == json_number_value(v));
        json_decref(want);
        if (!same) {
            http_error(resp, 400, "invalid_request_error", "unsupported_parameter", key,
                       "Unsupported parameter: '%s' is not implemented by this server; leave it out or send %s.", key,
                       body_fields[i].neutral);
            return 0;
        }
    }
    return 1;
}

/* OpenAI's logit_bias: {"TOKEN_ID": bias in [-100, 100], ...} into sp. */
static int parse_logit_bias(json_t *lb, int vocab, pt_sample_params *sp, http_resp *resp) {
    if (!lb || json_is_null(lb)) return 1;
    const char *key;
    json_t *v;
    if (!json_is_object(lb) || json_object_size(lb) > PT_SAMPLE_MAX_BIAS) {
        http_error(resp, 400, "invalid_request_error", "invalid_value", "logit_bias",
                   "'logit_bias' must be an object of at most %d token ids to biases.", PT_SAMPLE_MAX_BIAS);
        return 0;
    }
    json_object_foreach(lb, key, v) {
        char *end;
        long id = strtol(key, &end, 10);
        if (!*key || *end || key[0] == '-' || key[0] == '+' || key[0] == ' ' || id >= vocab ||
            !json_is_number(v) || !(json_number_value(v) >= -100 && json_number_value(v) <= 100)) {
            http_error(resp, 400, "invalid_request_error", "invalid_value", "logit_bias",
                       "'logit_bias' maps token ids (decimal strings, below the vocabulary size %d) to numbers in "
                       "[-100, 100]; '%s' is not that.",
                       vocab, key);
            return 0;
        }
        sp->bias_token[sp->n_bias] = (int32_t)id;
        sp->bias[sp->n_bias++] = (float)json_number_value(v);
    }
    return 1;
}

/* Splits "model@variant"; the body's "variant" wins. */
static void model_and_variant(json_t *b, char *model, size_t mcap, char *variant, size_t vcap) {
    snprintf(model, mcap, "%s", json_string_value(json_object_get(b, "model")));
    char *at = strchr(model, '@');
    variant[0] = 0;
    if (at) {
        *at = 0;
        snprintf(variant, vcap, "%s", at + 1);
    }
    const char *v = json_string_value(json_object_get(b, "variant"));
    if (v) snprintf(variant, vcap, "%s", v);
}

/* The tokens of a completions "prompt": a string, an array of strings, an array of token ids,
 * or an array of arrays of ids. */
static int completion_prompts(gen_job *j, json_t *prompt, int max_batch, const char **bad, pt_err *err) {
    json_t *list;
    if (json_is_string(prompt)) list = json_pack("[O]", prompt);
    else if (json_is_array(prompt) && json_array_size(prompt) && json_is_integer(json_array_get(prompt, 0)))
        list = json_pack("[O]", prompt);
    else if (json_is_array(prompt)) list = json_incref(prompt);
    else {
        *bad = "'prompt' must be a string, an array of strings, or token ids";
        return PT_EINVAL;
    }
    size_t n = json_array_size(list);
    if (n == 0 || (int)n > max_batch) {
        json_decref(list);
        *bad = n ? "too many prompts in one request" : "'prompt' is empty";
        return PT_EINVAL;
    }
    j->prompts = calloc(n, sizeof *j->prompts);
    j->prompt_len = calloc(n, sizeof *j->prompt_len);
    if (!j->prompts || !j->prompt_len) {
        json_decref(list);
        return pt_errf(err, PT_ENOMEM, "out of memory");
    }
    j->n_inputs = (int)n;
    int rc = PT_OK;
    for (size_t i = 0; i < n && !rc; i++) {
        json_t *p = json_array_get(list, i);
        int cap = 0;
        if (json_is_string(p)) {
            rc = encode_into(j->m, json_string_value(p), json_string_length(p), 1, 0, &j->prompts[i], &j->prompt_len[i],
                             &cap, err);
        } else if (json_is_array(p) && json_array_size(p) > 0 && json_array_size(p) <= MAX_PROMPT_TOKENS) {
            j->prompts[i] = malloc(json_array_size(p) * sizeof(int32_t));
            size_t k;
            json_t *t;
            json_array_foreach(p, k, t) {
                if (!json_is_integer(t) || json_integer_value(t) < 0 || json_integer_value(t) >= j->m->vocab) {
                    *bad = "token ids must be integers in [0, vocab_size)";
                    rc = PT_EINVAL;
                    break;
                }
                j->prompts[i][k] = (int32_t)json_integer_value(t);
            }
            j->prompt_len[i] = (int)json_array_size(p);
        } else {
            *bad = "each prompt must be a non-empty string or array of token ids";
            rc = PT_EINVAL;
        }
        if (!rc && j->prompt_len[i] == 0) {
            *bad = "a prompt encodes to no tokens";
            rc = PT_EINVAL;
        }
    }
    json_decref(list);
    return rc;
}

static gen_job *job_new(call *c, srv_model *m, int kind, int api) {
    gen_job *j = calloc(1, sizeof *j);
    if (!j) return NULL;
    pthread_mutex_init(&j->mu, NULL);
    j->refs = 1; /* the request's; the scheduler's is added on enqueue */
    j->c = c;
    j->m = m;
    snprintf(j->model, sizeof j->model, "%s", c->model);
    snprintf(j->key_id, sizeof j->key_id, "%s", c->key.id);
    j->kind = kind;
    j->api = api;
    j->created = pt_unix_time();
    j->queue_ms = -1;
    uint8_t r[12];
    char hx[25];
    randombytes_buf(r, sizeof r);
    snprintf(j->id, sizeof j->id, "%s-%s", api == API_CHAT ? "chatcmpl" : "cmpl", pt_hex(r, sizeof r, hx));
    pt_sample_params_default(&j->sp);
    j->n_per_input = 1;
    j->n_logprobs = -1;
    pt_sha256_init(&j->hash);
    c->job = j;
    c->job_free = job_detach;
    return j;
}

/* Enqueues j (taking the scheduler's reference) or answers 503. A streamed job's response is
 * opened first, so the scheduler never writes to a stream that does not exist yet. */
static int submit(pt_server *s, call *c, gen_job *j, http_resp *resp) {
    (void)s;
    if (j->stream) {
        if (!(j->out = http_stream_open(c->req, resp, "text/event-stream"))) {
            http_error(resp, 503, "server_error", NULL, NULL, "out of memory");
            return HTTP_DONE;
        }
        if (j->api == API_CHAT) { /* the first chunk names the role */
            json_t *ch = chunk_head(j);
            json_object_set_new(ch, "choices", json_pack("[{s:i, s:{s:s, s:s}, s:n, s:n}]", "index", 0, "delta", "role",
                                                        "assistant", "content", "", "logprobs", "finish_reason"));
            sse(j, ch);
        }
    }
    pthread_mutex_lock(&j->mu);
    j->refs++;
    pthread_mutex_unlock(&j->mu);
    int rc = enqueue(j->m, j);
    if (rc == PT_OK && j->stream) set_rl_headers(resp, c);
    if (rc) {
        job_release(j);
        if (j->out) {
            http_stream_discard(resp);
            j->out = NULL;
        }
        http_set_header(resp, "Retry-After", "1");
        if (rc == PT_ELIMIT)
            http_error(resp, 503, "server_error", "queue_full", NULL,
                       "The model's queue is full (%d waiting); retry shortly.", j->m->qlimit);
        else
            http_error(resp, 503, "server_error", "shutting_down", NULL, "The server is shutting down.");
        return HTTP_DONE;
    }
    return j->stream ? HTTP_STREAM : HTTP_DEFER;
}

/* POST /v1/completions and /v1/chat/completions. */
static int r_generate(pt_server *s, call *c, http_resp *resp, int api) {
    if (c->phase == 1) { /* the scheduler is done */
        gen_job *j = c->job;
        http_json(resp, j->status ? j->status : 200, json_incref(j->result));
        set_rl_headers(resp, c);
        return HTTP_DONE;
    }
    json_t *b = srv_body_json(c, resp);
    if (!b) return HTTP_DONE;
    int ret = HTTP_DONE, failed = 0;
    const char *bad = NULL;
    pt_err err;
    char model[128], variant[64], ft_name[128] = "";
    const struct pt_lora *lora = NULL;
    if (!check_fields(b, api, resp)) goto out;
    if (!json_is_string(json_object_get(b, "model"))) {
        ret = bad_request(resp, "model", "'model' is required.%s", NULL);
        goto out;
    }
    model_and_variant(b, model, sizeof model, variant, sizeof variant);
    if (!strncmp(model, "ft:", 3)) { /* a fine-tuned model: decided against its base, run with its adapter */
        snprintf(ft_name, sizeof ft_name, "%s", model);
        if (!srv_ft_resolve(s, c, ft_name, model, sizeof model, &lora, resp)) goto out;
    }
    /* What the request uses, each decided by the policy. */
    json_t *jlp = json_object_get(b, "logprobs");
    int n_logprobs = -1;
    if (api == API_COMPLETIONS && jlp && !json_is_null(jlp)) {
        if (!json_is_integer(jlp) || json_integer_value(jlp) < 0 || json_integer_value(jlp) > PT_SAMPLE_MAX_TOP) {
            ret = bad_request(resp, "logprobs", "'logprobs' must be an integer from 0 to 20.%s", NULL);
            goto out;
        }
        n_logprobs = (int)json_integer_value(jlp);
    } else if (api == API_CHAT && json_is_true(jlp)) {
        json_t *tl = json_object_get(b, "top_logprobs");
        n_logprobs = 0;
        if (tl && !json_is_null(tl)) {
            if (!json_is_integer(tl) || json_integer_value(tl) < 0 || json_integer_value(tl) > PT_SAMPLE_MAX_TOP) {
                ret = bad_request(resp, "top_logprobs", "'top_logprobs' must be an integer from 0 to 20.%s", NULL);
                goto out;
            }
            n_logprobs = (int)json_integer_value(tl);
        }
    } else if (api == API_CHAT && jlp && !json_is_boolean(jlp) && !json_is_null(jlp)) {
        ret = bad_request(resp, "logprobs", "'logprobs' must be true or false.%s", NULL);
        goto out;
    }
    const char *v = variant[0] ? variant : NULL;
    int64_t now = pt_unix_time();
    pt_limits lim;
    pt_capset caps;
    /* Charged as policy.h's table says (echo, streaming and n return nothing the use does not). */
    if (!srv_decide_use(s, c, model, v, api == API_COMPLETIONS ? PT_USE_COMPLETION : PT_USE_CHAT, -1, resp)) goto out;
    if (n_logprobs >= 0 && !srv_decide_use(s, c, model, v, PT_USE_TOP_LOGPROBS, n_logprobs, resp)) goto out;
    pt_policy_effective(c->pol->p, c->key.org, model, now, &caps, &lim);
    c->has_rl = 1;
    if (!pt_ratelimit_request(s->rl, c->key.org, model, lim.requests_per_minute > 0 ? lim.requests_per_minute : 0,
                              now, &c->rl_req)) {
        pt_ratelimit_tokens_ok(s->rl, c->key.org, model, lim.tokens_per_day > 0 ? lim.tokens_per_day : 0, 0, now,
                               &c->rl_tok);
        http_set_header_i64(resp, "Retry-After", c->rl_req.reset_s);
        c->decision_allow = 0;
        snprintf(c->reason, sizeof c->reason, "limit_exceeded");
        http_error(resp, 429, "requests", "rate_limit_exceeded", NULL,
                   "Rate limit reached for %s: %lld requests per minute. Retry in %llds.", model,
                   (long long)c->rl_req.limit, (long long)c->rl_req.reset_s);
        goto out;
    }
    srv_model *m = find_model(s, model);
    if (!m) {
        http_error(resp, 503, "server_error", "model_not_served", "model",
                   "The model '%s' is in the policy but this server does not run it.", model);
        goto out;
    }
    gen_job *j = job_new(c, m, JOB_GENERATE, api);
    if (!j) {
        http_error(resp, 503, "server_error", NULL, NULL, "out of memory");
        goto out;
    }
    j->n_logprobs = n_logprobs;
    if (lora) {
        j->lora = lora;
        snprintf(j->model, sizeof j->model, "%s", ft_name);
    }
    /* Sampling parameters (OpenAI's, plus top_k, min_p, repetition_penalty). */
    double x;
    int64_t k;
    if (get_num(b, "temperature", 0, 2, &x, resp, &failed)) j->sp.temperature = (float)x;
    if (get_num(b, "top_p", 0, 1, &x, resp, &failed)) j->sp.top_p = x > 0 ? (float)x : 1e-6f;
    if (get_int(b, "top_k", 0, 1 << 20, &k, resp, &failed)) j->sp.top_k = (int32_t)k;
    if (get_num(b, "min_p", 0, 1, &x, resp, &failed)) j->sp.min_p = (float)x;
    if (get_num(b, "repetition_penalty", 0.01, 100, &x, resp, &failed)) j->sp.repetition_penalty = (float)x;
    if (get_int(b, "seed", INT64_MIN, INT64_MAX, &k, resp, &failed)) j->sp.seed = (uint64_t)k;
    else j->sp.seed = ((uint64_t)randombytes_random() << 32) | randombytes_random();
    int64_t n_choices = 1, max_tokens = api == API_COMPLETIONS ? 16 : s->o.max_tokens;
    get_int(b, "n", 1, s->o.max_batch, &n_choices, resp, &failed);
    if (!get_int(b, "max_completion_tokens", 0, s->o.max_tokens, &max_tokens, resp, &failed) && !failed)
        get_int(b, "max_tokens", 0, s->o.max_tokens, &max_tokens, resp, &failed);
    if (failed || !parse_logit_bias(json_object_get(b, "logit_bias"), m->vocab, &j->sp, resp)) goto out;
    j->n_per_input = (int)n_choices;
    j->max_tokens = (int)max_tokens;
    j->echo = api == API_COMPLETIONS && json_is_true(json_object_get(b, "echo"));
    if (j->max_tokens == 0 && !j->echo && api == API_COMPLETIONS) {
        ret = bad_request(resp, "max_tokens", "'max_tokens' 0 is only meaningful with 'echo'.%s", NULL);
        goto out;
    }
    if (api == API_CHAT && j->max_tokens == 0) j->max_tokens = 1;
    j->stream = json_is_true(json_object_get(b, "stream"));
    j->include_usage = json_is_true(json_object_get(json_object_get(b, "stream_options"), "include_usage"));
    json_t *stop = json_object_get(b, "stop");
    if (json_is_string(stop)) stop = json_pack("[O]", stop);
    else if (json_is_array(stop)) json_incref(stop);
    else if (stop && !json_is_null(stop)) {
        ret = bad_request(resp, "stop", "'stop' must be a string or an array of up to 4 strings.%s", NULL);
        goto out;
    } else stop = NULL;
    if (stop) {
        size_t i;
        json_t *sv;
        int badstop = json_array_size(stop) > 4;
        json_array_foreach(stop, i, sv) {
            if (badstop || !json_is_string(sv)) {
                badstop = 1;
                break;
            }
            j->stops[j->n_stops++] = strdup(json_string_value(sv));
        }
        json_decref(stop);
        if (badstop) {
            ret = bad_request(resp, "stop", "'stop' must be a string or an array of up to 4 strings.%s", NULL);
            goto out;
        }
    }
    if (pt_sample_params_check(&j->sp, &err)) {
        ret = bad_request(resp, NULL, "%s", err.msg);
        goto out;
    }
    /* The prompt. */
    int rc;
    if (api == API_COMPLETIONS) {
        rc = completion_prompts(j, json_object_get(b, "prompt"), s->o.max_batch, &bad, &err);
    } else {
        json_t *msgs = json_object_get(b, "messages");
        if (!json_is_array(msgs) || json_array_size(msgs) == 0) {
            ret = bad_request(resp, "messages", "'messages' must be a non-empty array.%s", NULL);
            goto out;
        }
        j->n_inputs = 1;
        j->prompts = calloc(1, sizeof *j->prompts);
        j->prompt_len = calloc(1, sizeof *j->prompt_len);
        rc = j->prompts && j->prompt_len ? chat_prompt(j, msgs, &j->prompts[0], &j->prompt_len[0], &bad, &err)
                                         : pt_errf(&err, PT_ENOMEM, "out of memory");
    }
    if (rc) {
        ret = bad_request(resp, api == API_CHAT ? "messages" : "prompt", "%s", bad ? bad : err.msg);
        goto out;
    }
    if (j->n_inputs * j->n_per_input > s->o.max_batch) {
        ret = bad_request(resp, "n", "prompts × n must not exceed %s.", "the server's batch cap");
        goto out;
    }
    const pt_config *cfg = pt_engine_config(m->eng);
    for (int i = 0; i < j->n_inputs; i++) {
        j->prompt_tokens += j->prompt_len[i] * j->n_per_input;
        if (j->prompt_len[i] + (j->max_tokens > 0 ? 1 : 0) > cfg->max_pos) {
            char msg[200];
            snprintf(msg, sizeof msg, "This model's maximum context length is %d tokens; the prompt has %d.",
                     cfg->max_pos, j->prompt_len[i]);
            http_error(resp, 400, "invalid_request_error", "context_length_exceeded", "messages", "%s", msg);
            goto out;
        }
    }
    int64_t want = j->prompt_tokens + (int64_t)j->max_tokens * j->n_inputs * j->n_per_input;
    if (!pt_ratelimit_tokens_ok(s->rl, c->key.org, model, lim.tokens_per_day > 0 ? lim.tokens_per_day : 0, want, now,
                                &c->rl_tok)) {
        http_set_header_i64(resp, "Retry-After", c->rl_tok.reset_s);
        c->decision_allow = 0;
        snprintf(c->reason, sizeof c->reason, "limit_exceeded");
        http_error(resp, 429, "tokens", "rate_limit_exceeded", NULL,
                   "Token limit reached for %s: %lld tokens per day, %lld left, this request may use %lld.", model,
                   (long long)c->rl_tok.limit, (long long)c->rl_tok.remaining, (long long)want);
        goto out;
    }
    ret = submit(s, c, j, resp);
out:
    json_decref(b);
    if (ret == HTTP_DONE) set_rl_headers(resp, c);
    return ret;
}

static int r_completions(pt_server *s, call *c, http_resp *resp) { return r_generate(s, c, resp, API_COMPLETIONS); }
static int r_chat(pt_server *s, call *c, http_resp *resp) { return r_generate(s, c, resp, API_CHAT); }

/* For server_finetune.c ---------------------------------------------------------------------- */

const pt_tokenizer *srv_model_tokenizer(pt_server *s, const char *id) {
    models *ms = s->engine;
    if (!id) return n_served(ms) ? ms->m[0].tok : NULL;
    srv_model *m = find_model(s, id);
    return m ? m->tok : NULL;
}

const pt_config *srv_model_config(pt_server *s, const char *id) {
    srv_model *m = find_model(s, id);
    return m ? pt_engine_config(m->eng) : NULL;
}

const char *srv_model_path(pt_server *s, const char *id) {
    srv_model *m = find_model(s, id);
    return m ? m->path : NULL;
}

/* Internals ------------------------------------------------------------------------------------- */

static int op_applies(const trace_op *op, int input) {
    if (!op->inputs) return !(op->op == 3 && input == op->source);
    for (size_t i = 0; i < op->n_inputs; i++)
        if (op->inputs[i] == input) return 1;
    return 0;
}

static json_t *b64_json(const void *p, size_t n) {
    size_t cap = sodium_base64_encoded_len(n, sodium_base64_VARIANT_ORIGINAL);
    char *out = malloc(cap);
    if (!out) return NULL;
    sodium_bin2base64(out, cap, p, n, sodium_base64_VARIANT_ORIGINAL);
    json_t *j = json_string(out);
    free(out);
    return j;
}

/* 1 if input i's logits are all finite; else 0 with a message naming the interventions on
 * that input (index and hook), which made them NaN or infinite. */
static int finite_logits(const trace_spec *t, int input, const float *logits, int vocab, char *msg, size_t cap) {
    int ok = 1;
    for (int v = 0; v < vocab; v++) ok &= isfinite(logits[v]) != 0;
    if (ok) return 1;
    size_t o = (size_t)snprintf(msg, cap, "input %d: the result is NaN or infinite", input);
    for (size_t k = 0, n = 0; k < t->n_ops && o < cap; k++)
        if (op_applies(&t->ops[k], input))
            o += (size_t)snprintf(msg + o, cap - o, "%s interventions[%zu] (hook %s)", n++ ? "," : " with", k,
                                  t->ops[k].hook);
    if (o < cap) snprintf(msg + o, cap - o, " in place; use smaller values or scales");
    return 0;
}

/* Runs a trace job whole: inputs that patches copy from first, then the others; each input is
 * its own sequence with its own hook set; optional generation continues with the hooks on. */
static void run_trace_job(pt_server *s, gen_job *j) {
    (void)s;
    srv_model *m = j->m;
    trace_spec *t = j->trace;
    const pt_config *cfg = pt_engine_config(m->eng);
    int n = j->n_inputs;
    pt_seq **seqs = calloc((size_t)n, sizeof *seqs);
    pt_hooks **hs = calloc((size_t)n, sizeof *hs);
    int *order = calloc((size_t)n, sizeof *order), *is_src = calloc((size_t)n, sizeof *is_src);
    int32_t **gen = calloc((size_t)n, sizeof *gen);
    int *n_gen = calloc((size_t)n, sizeof *n_gen);
    pt_err err;
    char msg[1100];
    int status = 0;
    json_t *tensors = NULL, *inputs = NULL;
    pt_tensor *st = NULL;
    size_t n_st = 0;
    if (!seqs || !hs || !order || !is_src || !gen || !n_gen) {
        status = 503;
        snprintf(msg, sizeof msg, "out of memory");
        goto out;
    }
    for (size_t k = 0; k < t->n_ops; k++)
        if (t->ops[k].op == 3) is_src[t->ops[k].source] = 1;
    int no = 0;
    for (int i = 0; i < n; i++)
        if (is_src[i]) order[no++] = i;
    for (int i = 0; i < n; i++)
        if (!is_src[i]) order[no++] = i;
    for (int oi = 0; oi < n && !status; oi++) {
        int i = order[oi];
        int rc = pt_hooks_new(cfg, &hs[i], &err);
        for (size_t r = 0; r < t->n_reads && !rc; r++)
            rc = pt_hooks_read(hs[i], t->reads[r].hook, t->reads[r].positions, t->reads[r].n_positions, &err);
        if (is_src[i]) { /* what the patches copy: this input's activation at every position */
            for (size_t k = 0; k < t->n_ops && !rc; k++) {
                if (t->ops[k].op != 3 || t->ops[k].source != i) continue;
                int already = 0;
                for (size_t r = 0; r < t->n_reads; r++) already |= !strcmp(t->reads[r].hook, t->ops[k].hook);
                for (size_t q = 0; q < k; q++)
                    already |= t->ops[q].op == 3 && t->ops[q].source == i && !strcmp(t->ops[q].hook, t->ops[k].hook);
                if (!already) rc = pt_hooks_read(hs[i], t->ops[k].hook, NULL, 0, &err);
            }
        }
        for (size_t k = 0; k < t->n_ops && !rc; k++) {
            trace_op *op = &t->ops[k];
            if (!op_applies(op, i)) continue;
            if (op->op == 0)
                rc = pt_hooks_add(hs[i], op->hook, op->values, op->numel, op->scale, op->positions, op->n_positions, &err);
            else if (op->op == 1)
                rc = pt_hooks_set(hs[i], op->hook, op->values, op->numel, op->positions, op->n_positions, &err);
            else if (op->op == 2)
                rc = pt_hooks_ablate(hs[i], op->hook, op->mean, op->positions, op->n_positions, &err);
            else {
                pt_hook_tensor src;
                rc = pt_hooks_get(hs[op->source], op->hook, &src, &err);
                size_t numel = 1;
                for (int d = 0; d < src.ndim; d++) numel *= (size_t)src.shape[d];
                if (!rc) rc = pt_hooks_set(hs[i], op->hook, src.data, numel, op->positions, op->n_positions, &err);
            }
        }
        if (rc) {
            status = 400;
            snprintf(msg, sizeof msg, "input %d: %s", i, err.msg);
            break;
        }
        if (!(seqs[i] = pt_seq_new(m->eng, 0))) {
            status = 503;
            snprintf(msg, sizeof msg, "out of memory for a KV cache");
            break;
        }
        pt_seq_set_hooks(seqs[i], hs[i]);
        int len = j->prompt_len[i];
        float *logits = malloc((size_t)m->vocab * sizeof(float));
        pt_step step = {seqs[i], j->prompts[i], len, 0, logits};
        pt_sampler *smp = NULL;
        if (!logits || pt_engine_forward(m->eng, &step, 1, &err)) {
            status = logits ? 400 : 503;
            snprintf(msg, sizeof msg, "input %d: %s", i, logits ? err.msg : "out of memory");
            free(logits);
            break;
        }
        if (!finite_logits(t, i, logits, m->vocab, msg, sizeof msg)) {
            status = 400;
            free(logits);
            break;
        }
        if (j->max_tokens > 0) {
            gen[i] = malloc((size_t)j->max_tokens * sizeof(int32_t));
            pt_sample_params sp = j->sp;
            sp.seed += (uint64_t)i;
            if (!gen[i] || pt_sampler_new(&sp, (size_t)m->vocab, &smp, &err)) {
                status = 503;
                snprintf(msg, sizeof msg, "out of memory");
                free(logits);
                break;
            }
            for (int q = 0; q < len; q++) pt_sampler_accept(smp, j->prompts[i][q]);
            while (n_gen[i] < j->max_tokens && seqs[i]->pos < seqs[i]->max_ctx) {
                pt_sample_result r;
                if (pt_sampler_sample(smp, logits, 0, &r, &err) || is_eos(j, r.token)) break;
                gen[i][n_gen[i]++] = r.token;
                j->completion_tokens++;
                pt_step ds = {seqs[i], &gen[i][n_gen[i] - 1], 1, 0, logits};
                if (pt_engine_forward(m->eng, &ds, 1, &err)) break;
                if (!finite_logits(t, i, logits, m->vocab, msg, sizeof msg)) {
                    status = 400;
                    break;
                }
            }
            pt_sampler_free(smp);
        }
        free(logits);
    }
    if (status) goto out;

    /* Stack each read over the batch: [batch, pos, ...] (pattern [batch, heads, q, k]), padded
     * with zeros to the longest input; "lengths" says how many positions are real. */
    tensors = json_array();
    inputs = json_array();
    st = calloc(t->n_reads + 1, sizeof *st);
    size_t total = 0;
    for (size_t r = 0; r < t->n_reads && !status; r++) {
        int64_t dims[4] = {0};
        int nd = 0;
        for (int i = 0; i < n; i++) {
            pt_hook_tensor ht;
            if (pt_hooks_get(hs[i], t->reads[r].hook, &ht, &err)) {
                status = 400;
                snprintf(msg, sizeof msg, "%s", err.msg);
                break;
            }
            nd = ht.ndim;
            for (int d = 0; d < ht.ndim; d++)
                if (ht.shape[d] > dims[d]) dims[d] = ht.shape[d];
        }
        if (status) break;
        size_t per = 1;
        for (int d = 0; d < nd; d++) per *= (size_t)dims[d];
        size_t bytes = per * (size_t)n * sizeof(float);
        total += bytes;
        if (total > t->max_bytes) {
            status = 413;
            snprintf(msg, sizeof msg,
                     "the tensors asked for come to more than this request's download quota of %zu bytes; read "
                     "fewer hooks or slice positions",
                     t->max_bytes);
            break;
        }
        float *buf = calloc(per * (size_t)n, sizeof(float));
        if (!buf) {
            status = 503;
            snprintf(msg, sizeof msg, "out of memory");
            break;
        }
        for (int i = 0; i < n; i++) {
            pt_hook_tensor ht;
            pt_hooks_get(hs[i], t->reads[r].hook, &ht, NULL);
            /* copy the [d0, d1, ...] block of input i into the padded [dims] block */
            int64_t inner = 1;
            for (int d = 1; d < nd; d++) inner *= ht.shape[d];
            if (nd >= 3 && ht.shape[nd - 1] != dims[nd - 1]) { /* pattern: pad rows and columns */
                for (int64_t a = 0; a < ht.shape[0]; a++)
                    for (int64_t b = 0; b < ht.shape[1]; b++)
                        memcpy(buf + (size_t)i * per + ((size_t)a * (size_t)dims[1] + (size_t)b) * (size_t)dims[2],
                               ht.data + ((size_t)a * (size_t)ht.shape[1] + (size_t)b) * (size_t)ht.shape[2],
                               (size_t)ht.shape[2] * sizeof(float));
            } else {
                for (int64_t a = 0; a < ht.shape[0]; a++)
                    memcpy(buf + (size_t)i * per + (size_t)a * (size_t)(per / (size_t)dims[0]),
                           ht.data + (size_t)a * (size_t)inner, (size_t)inner * sizeof(float));
            }
        }
        int64_t shape[5] = {n, dims[0], dims[1], dims[2], dims[3]};
        st[n_st] = (pt_tensor){.name = t->reads[r].hook, .dtype = PT_F32, .ndim = nd + 1, .data = buf,
                               .nbytes = per * (size_t)n * sizeof(float), .owned = buf};
        memcpy(st[n_st].shape, shape, sizeof shape);
        n_st++;
        if (!t->safetensors) {
            json_t *sh = json_array();
            for (int d = 0; d <= nd; d++) json_array_append_new(sh, json_integer(shape[d]));
            json_array_append_new(tensors, json_pack("{s:s, s:o, s:s, s:o}", "name", t->reads[r].hook, "shape", sh,
                                                     "dtype", "F32", "data", b64_json(buf, st[n_st - 1].nbytes)));
        }
    }
    for (int i = 0; i < n && !status; i++) {
        json_t *tk = json_array(), *gk = json_array();
        for (int q = 0; q < j->prompt_len[i]; q++) json_array_append_new(tk, json_integer(j->prompts[i][q]));
        for (int q = 0; q < n_gen[i]; q++) json_array_append_new(gk, json_integer(gen[i][q]));
        char *text = NULL;
        size_t tl = 0;
        json_t *o = json_pack("{s:o, s:i, s:o}", "tokens", tk, "length", j->prompt_len[i] + n_gen[i], "generated", gk);
        if (n_gen[i] && !pt_tokenizer_decode(m->tok, gen[i], (size_t)n_gen[i], 1, &text, &tl, NULL))
            json_object_set_new(o, "text", clean_string(text, tl));
        free(text);
        json_array_append_new(inputs, o);
    }
    if (!status) {
        if (t->safetensors) {
            json_t *meta = json_pack("{s:s, s:s}", "model", m->id, "inputs", "");
            char *in = json_dumps(inputs, JSON_COMPACT);
            json_object_set_new(meta, "inputs", json_string(in ? in : "[]"));
            free(in);
            pt_buf_init(&j->raw, (size_t)-1 / 2);
            if (pt_safetensors_serialize(st, n_st, meta, &j->raw, &err)) {
                status = 503;
                snprintf(msg, sizeof msg, "%s", err.msg);
            }
            json_decref(meta);
            j->raw_type = "application/x-safetensors";
        } else {
            j->result = json_pack("{s:s, s:s, s:O, s:O}", "object", "trace", "model", m->id, "inputs", inputs,
                                  "tensors", tensors);
        }
    }
out:
    if (status) {
        json_decref(j->result);
        j->result = json_pack("{s:{s:s, s:s, s:n, s:s}}", "error", "message", msg, "type",
                              status >= 500 ? "server_error" : "invalid_request_error", "param", "code",
                              status == 413 ? "download_quota_exceeded" : "invalid_trace");
        pt_buf_free(&j->raw);
        j->raw_type = NULL;
    }
    j->status = status ? status : 200;
    for (size_t k = 0; k < n_st; k++) free(st[k].owned);
    free(st);
    json_decref(tensors);
    json_decref(inputs);
    for (int i = 0; i < n && seqs; i++) {
        pt_seq_free(seqs[i]);
        pt_hooks_free(hs[i]);
        free(gen[i]);
    }
    free(seqs);
    free(hs);
    free(order);
    free(is_src);
    free(gen);
    free(n_gen);
}

/* Reads "positions": [ints ≥ 0]. */
static int parse_positions(json_t *v, int32_t **out, size_t *n) {
    *out = NULL;
    *n = 0;
    if (!v || json_is_null(v)) return 0;
    if (!json_is_array(v) || json_array_size(v) == 0 || json_array_size(v) > MAX_PROMPT_TOKENS) return -1;
    *out = malloc(json_array_size(v) * sizeof **out);
    size_t i;
    json_t *e;
    json_array_foreach(v, i, e) {
        if (!json_is_integer(e) || json_integer_value(e) < 0 || json_integer_value(e) >= MAX_PROMPT_TOKENS) return -1;
        (*out)[i] = (int32_t)json_integer_value(e);
    }
    *n = json_array_size(v);
    return 0;
}

/* {"data": base64 of little-endian F32, "shape": [..]} → floats. */
static int parse_value(json_t *v, float **out, size_t *numel, const char **bad) {
    const char *d = json_string_value(json_object_get(v, "data"));
    json_t *shape = json_object_get(v, "shape");
    if (!d || !json_is_array(shape) || json_array_size(shape) == 0 || json_array_size(shape) > 4) {
        *bad = "'value' must be {\"data\": base64 little-endian F32, \"shape\": [up to 4 dims]}";
        return -1;
    }
    size_t want = 1, i;
    json_t *e;
    json_array_foreach(shape, i, e) {
        if (!json_is_integer(e) || json_integer_value(e) <= 0 || json_integer_value(e) > (1 << 24) ||
            pt_mul_size(want, (size_t)json_integer_value(e), &want) || want > (64u << 20)) {
            *bad = "'value.shape' must be positive dimensions of at most 64M elements in all";
            return -1;
        }
    }
    size_t len = strlen(d), cap = len / 4 * 3 + 3, got = 0;
    uint8_t *bytes = malloc(cap);
    if (!bytes || sodium_base642bin(bytes, cap, d, len, " \n", &got, NULL, sodium_base64_VARIANT_ORIGINAL) ||
        got != want * 4) {
        free(bytes);
        *bad = "'value.data' is not base64 of exactly shape-many little-endian F32 values";
        return -1;
    }
    *out = (float *)bytes; /* x86-64 and every target parity builds for is little-endian */
    *numel = want;
    for (size_t k = 0; k < want; k++)
        if (!isfinite((*out)[k])) {
            *bad = "'value.data' holds NaN or infinity";
            return -1;
        }
    return 0;
}

/* Decides what a trace is charged (policy.h's table): each kind of read (the "logits" hook is
 * the whole log-probability vector, charged as top-k log-probs with k = the vocabulary), the
 * interventions, and "generate" (sampled text continuing the caller's input, as a completion). */
static int trace_decide(pt_server *s, call *c, const char *model, const char *v, json_t *reads, json_t *ivs,
                        int generate, int64_t vocab, http_resp *resp) {
    int want[PT_USE_COUNT] = {0};
    size_t i;
    json_t *e;
    json_array_foreach(reads, i, e) {
        const char *name = json_is_string(e) ? json_string_value(e) : json_string_value(json_object_get(e, "hook"));
        want[pt_policy_hook_use(name ? name : "", 0)] = 1;
    }
    want[PT_USE_WRITE] = json_array_size(ivs) > 0;
    want[PT_USE_COMPLETION] = generate;
    for (int u = 0; u < PT_USE_COUNT; u++)
        if (want[u] && !srv_decide_use(s, c, model, v, (pt_use)u, u == PT_USE_READ_LOGITS ? vocab : -1, resp)) return 0;
    return 1;
}

/* POST /v1/internals/trace */
static int r_trace(pt_server *s, call *c, http_resp *resp) {
    if (c->phase == 1) {
        gen_job *j = c->job;
        if (j->raw_type) {
            pt_buf_append(&resp->body, j->raw.data, j->raw.len);
            resp->content_type = j->raw_type;
            resp->status = 200;
        } else {
            http_json(resp, j->status, json_incref(j->result));
        }
        set_rl_headers(resp, c);
        return HTTP_DONE;
    }
    json_t *b = srv_body_json(c, resp);
    if (!b) return HTTP_DONE;
    int ret = HTTP_DONE;
    const char *bad = NULL;
    pt_err err;
    char model[128], variant[64];
    trace_spec *t = NULL;
    if (!json_is_string(json_object_get(b, "model"))) {
        ret = bad_request(resp, "model", "'model' is required.%s", NULL);
        goto out;
    }
    model_and_variant(b, model, sizeof model, variant, sizeof variant);
    json_t *reads = json_object_get(b, "reads"), *ivs = json_object_get(b, "interventions");
    if ((reads && !json_is_array(reads)) || (ivs && !json_is_array(ivs)) ||
        json_array_size(reads) + json_array_size(ivs) == 0) {
        ret = bad_request(resp, "reads", "Give 'reads' (hook names) and/or 'interventions' (arrays).%s", NULL);
        goto out;
    }
    const char *v = variant[0] ? variant : NULL;
    json_t *g = json_object_get(b, "generate");
    srv_model *m = find_model(s, model);
    if (!trace_decide(s, c, model, v, reads, ivs, g && !json_is_null(g), m ? m->vocab : INT64_MAX, resp)) goto out;
    int64_t now = pt_unix_time();
    pt_limits lim;
    pt_policy_effective(c->pol->p, c->key.org, model, now, NULL, &lim);
    c->has_rl = 1;
    if (!pt_ratelimit_request(s->rl, c->key.org, model, lim.requests_per_minute > 0 ? lim.requests_per_minute : 0, now,
                              &c->rl_req)) {
        http_set_header_i64(resp, "Retry-After", c->rl_req.reset_s);
        c->decision_allow = 0;
        snprintf(c->reason, sizeof c->reason, "limit_exceeded");
        http_error(resp, 429, "requests", "rate_limit_exceeded", NULL, "Rate limit reached for %s: %lld requests per minute.",
                   model, (long long)c->rl_req.limit);
        goto out;
    }
    if (!m) {
        http_error(resp, 503, "server_error", "model_not_served", "model",
                   "The model '%s' is in the policy but this server does not run it.", model);
        goto out;
    }
    gen_job *j = job_new(c, m, JOB_TRACE, API_COMPLETIONS);
    if (!j || !(t = j->trace = calloc(1, sizeof *t))) {
        http_error(resp, 503, "server_error", NULL, NULL, "out of memory");
        goto out;
    }
    const pt_config *cfg = pt_engine_config(m->eng);
    t->max_bytes = s->o.max_download;
    const char *accept = http_header(c->req, "Accept");
    t->safetensors = accept && strstr(accept, "application/x-safetensors");
    /* inputs: text, token ids, or a batch of either */
    json_t *input = json_object_get(b, "input");
    int rc = input ? completion_prompts(j, input, s->o.max_batch, &bad, &err) : (bad = "'input' is required", PT_EINVAL);
    if (rc) {
        ret = bad_request(resp, "input", "%s", bad ? bad : err.msg);
        goto out;
    }
    for (int i = 0; i < j->n_inputs; i++) {
        j->prompt_tokens += j->prompt_len[i];
        if (j->prompt_len[i] >= cfg->max_pos) {
            ret = bad_request(resp, "input", "an input is longer than the model's context of %s tokens.", "its");
            goto out;
        }
    }
    size_t i;
    json_t *e;
    t->reads = calloc(json_array_size(reads) + 1, sizeof *t->reads);
    t->ops = calloc(json_array_size(ivs) + 1, sizeof *t->ops);
    json_array_foreach(reads, i, e) {
        trace_read *r = &t->reads[t->n_reads];
        const char *name = json_is_string(e) ? json_string_value(e) : json_string_value(json_object_get(e, "hook"));
        int site;
        if (!name || strlen(name) >= sizeof r->hook) {
            ret = bad_request(resp, "reads", "each read is a hook name or {\"hook\": NAME, \"positions\": [..]}.%s", NULL);
            goto out;
        }
        if (pt_hook_parse(cfg, name, &site, &err)) {
            http_error(resp, 400, "invalid_request_error", "unknown_hook", "reads", "%s", err.msg);
            goto out;
        }
        snprintf(r->hook, sizeof r->hook, "%s", name);
        if (json_is_object(e) && parse_positions(json_object_get(e, "positions"), &r->positions, &r->n_positions)) {
            ret = bad_request(resp, "reads", "'positions' must be a non-empty array of positions.%s", NULL);
            goto out;
        }
        t->n_reads++;
    }
    json_array_foreach(ivs, i, e) {
        trace_op *op = &t->ops[t->n_ops++];
        const char *hook = json_string_value(json_object_get(e, "hook")), *ops = json_string_value(json_object_get(e, "op"));
        int site;
        if (!hook || !ops || strlen(hook) >= sizeof op->hook) {
            ret = bad_request(resp, "interventions", "each intervention needs 'hook' and 'op' (add, set, ablate, patch).%s", NULL);
            goto out;
        }
        if (pt_hook_parse(cfg, hook, &site, &err)) {
            http_error(resp, 400, "invalid_request_error", "unknown_hook", "interventions", "%s", err.msg);
            goto out;
        }
        snprintf(op->hook, sizeof op->hook, "%s", hook);
        op->op = !strcmp(ops, "add") ? 0 : !strcmp(ops, "set") ? 1 : !strcmp(ops, "ablate") ? 2 : !strcmp(ops, "patch") ? 3 : -1;
        op->scale = 1;
        json_t *sc = json_object_get(e, "scale");
        if (op->op < 0 || (sc && !json_is_number(sc))) {
            ret = bad_request(resp, "interventions", "'op' must be add, set, ablate or patch, and 'scale' a number.%s", NULL);
            goto out;
        }
        if (sc) op->scale = (float)json_number_value(sc);
        if (!isfinite(op->scale)) {
            http_error(resp, 400, "invalid_request_error", "invalid_value", "interventions",
                       "interventions[%zu] (hook %s): 'scale' %g is not a finite float32.", i, hook,
                       json_number_value(sc));
            goto out;
        }
        if ((op->op == 0 || op->op == 1) && parse_value(json_object_get(e, "value"), &op->values, &op->numel, &bad)) {
            http_error(resp, 400, "invalid_request_error", "invalid_value", "interventions",
                       "interventions[%zu] (hook %s): %s", i, hook, bad);
            goto out;
        }
        for (size_t k = 0; op->op == 0 && k < op->numel; k++)
            if (!isfinite(op->values[k] * op->scale)) {
                http_error(resp, 400, "invalid_request_error", "invalid_value", "interventions",
                           "interventions[%zu] (hook %s): 'scale' × 'value' overflows float32 (element %zu).", i, hook,
                           k);
                goto out;
            }
        const char *mode = json_string_value(json_object_get(e, "mode"));
        op->mean = mode && !strcmp(mode, "mean");
        if (op->op == 3) {
            json_t *src = json_object_get(e, "source");
            if (!json_is_integer(src) || json_integer_value(src) < 0 || json_integer_value(src) >= j->n_inputs) {
                ret = bad_request(resp, "interventions", "'patch' needs 'source': the index of another input.%s", NULL);
                goto out;
            }
            op->source = (int)json_integer_value(src);
        }
        if (parse_positions(json_object_get(e, "positions"), &op->positions, &op->n_positions)) {
            ret = bad_request(resp, "interventions", "'positions' must be a non-empty array of positions.%s", NULL);
            goto out;
        }
        json_t *in = json_object_get(e, "inputs");
        if (in) {
            if (!json_is_array(in) || !json_array_size(in)) {
                ret = bad_request(resp, "interventions", "'inputs' must be a non-empty array of input indices.%s", NULL);
                goto out;
            }
            op->inputs = calloc(json_array_size(in), sizeof *op->inputs);
            size_t k;
            json_t *x;
            json_array_foreach(in, k, x) {
                if (!json_is_integer(x) || json_integer_value(x) < 0 || json_integer_value(x) >= j->n_inputs ||
                    (op->op == 3 && json_integer_value(x) == op->source)) {
                    ret = bad_request(resp, "interventions", "'inputs' must be indices of other inputs of this request.%s", NULL);
                    goto out;
                }
                op->inputs[op->n_inputs++] = (int)json_integer_value(x);
            }
        }
    }
    /* Optional generation with the interventions in place. */
    if (g && !json_is_null(g)) {
        json_t *mt = json_object_get(g, "max_tokens");
        if (!json_is_object(g) || !json_is_integer(mt) || json_integer_value(mt) < 0 ||
            json_integer_value(mt) > s->o.max_tokens) {
            ret = bad_request(resp, "generate", "'generate' must be {\"max_tokens\": N, \"temperature\": T, \"seed\": S} within the server's max_tokens.%s", NULL);
            goto out;
        }
        j->max_tokens = (int)json_integer_value(mt);
        json_t *tt = json_object_get(g, "temperature"), *sd = json_object_get(g, "seed");
        j->sp.temperature = json_is_number(tt) ? (float)json_number_value(tt) : 0.0f;
        if (json_is_integer(sd)) j->sp.seed = (uint64_t)json_integer_value(sd);
        if (pt_sample_params_check(&j->sp, &err)) {
            ret = bad_request(resp, "generate", "%s", err.msg);
            goto out;
        }
    }
    ret = submit(s, c, j, resp);
out:
    json_decref(b);
    if (ret == HTTP_DONE) set_rl_headers(resp, c);
    return ret;
}

/* GET /v1/internals/hooks?model=M: hook names and per-position shapes. */
static int r_hooks(pt_server *s, call *c, http_resp *resp) {
    const char *model = http_query(c->req, "model");
    if (!model) {
        http_error(resp, 400, "invalid_request_error", "missing_model", "model", "Add ?model=MODEL_ID.");
        return HTTP_DONE;
    }
    if (!srv_decide_use(s, c, model, NULL, PT_USE_READ, -1, resp)) return HTTP_DONE;
    srv_model *m = find_model(s, model);
    if (!m) {
        http_error(resp, 503, "server_error", "model_not_served", "model", "This server does not run '%s'.", model);
        return HTTP_DONE;
    }
    const pt_config *cfg = pt_engine_config(m->eng);
    json_t *a = json_array();
    int n = pt_hook_n_sites(cfg);
    for (int site = 0; site < n; site++) {
        char name[96];
        int64_t dims[4];
        int nd = pt_hook_row_shape(cfg, site, dims);
        if (nd < 0) continue; /* a site this architecture does not have (the one rule trace parses by) */
        pt_hook_name(cfg, site, name, sizeof name);
        json_t *shape = json_array();
        int pattern = strstr(name, "hook_pattern") != NULL;
        if (pattern) {
            json_array_append_new(shape, json_string("batch"));
            json_array_append_new(shape, json_integer(dims[0]));
            json_array_append_new(shape, json_string("pos"));
            json_array_append_new(shape, json_string("pos"));
        } else {
            json_array_append_new(shape, json_string("batch"));
            json_array_append_new(shape, json_string("pos"));
            for (int d = 0; d < nd; d++) json_array_append_new(shape, json_integer(dims[d]));
        }
        json_array_append_new(a, json_pack("{s:s, s:o, s:b}", "name", name, "shape", shape, "writable", !pattern));
    }
    c->decision_allow = 1;
    http_json(resp, 200, json_pack("{s:s, s:s, s:o}", "object", "list", "model", model, "data", a));
    return HTTP_DONE;
}

/* GET /v1/queue: depth per model and where the caller's requests are. */
static int r_queue(pt_server *s, call *c, http_resp *resp) {
    models *ms = s->engine;
    json_t *a = json_array();
    size_t n = n_served(ms);
    for (size_t i = 0; i < n; i++) {
        srv_model *m = &ms->m[i];
        json_t *mine = json_array();
        pthread_mutex_lock(&m->mu);
        int pos = 0, depth = m->qlen, active = m->n_active_jobs;
        for (gen_job *j = m->qhead; j; j = j->next, pos++)
            if (!strcmp(j->key_id, c->key.id)) json_array_append_new(mine, json_pack("{s:s, s:i}", "id", j->id, "position", pos));
        for (int k = 0; k < m->n_active_jobs; k++)
            if (!strcmp(m->active[k]->key_id, c->key.id))
                json_array_append_new(mine, json_pack("{s:s, s:s}", "id", m->active[k]->id, "position", "running"));
        pthread_mutex_unlock(&m->mu);
        json_array_append_new(a, json_pack("{s:s, s:i, s:i, s:i, s:o}", "model", m->id, "queued", depth, "running", active,
                                           "limit", m->qlimit, "yours", mine));
    }
    c->decision_allow = 1;
    http_json(resp, 200, json_pack("{s:s, s:o}", "object", "queue", "data", a));
    return HTTP_DONE;
}

const route pt_model_routes[] = {
    {"POST", "/v1/completions", AUTH_KEY, r_completions, "completions", 1, 0},
    {"POST", "/v1/chat/completions", AUTH_KEY, r_chat, "chat_completions", 1, 0},
    {"POST", "/v1/internals/trace", AUTH_KEY, r_trace, "internals_trace", 1, 0},
    {"GET", "/v1/internals/hooks", AUTH_KEY, r_hooks, "internals_hooks", 1, 0},
    {"GET", "/v1/queue", AUTH_KEY, r_queue, "queue", 1, 0},
};
const size_t pt_n_model_routes = sizeof pt_model_routes / sizeof pt_model_routes[0];
