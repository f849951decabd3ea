/* see job.h — a model job's endpoint side: made from a request, submitted to its backend,
 * answered through its sink. The answer is OpenAI's shape: a completion or chat body, or a
 * stream of server-sent events whose receipt covers every byte streamed. */
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/json.h"
#include "common/util.h"
#include "server/job.h"

/* Jobs ---------------------------------------------------------------------------------------- */

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
    j->be->ops->cancel(j->be, j);
    job_release(j);
}

/* Text ----------------------------------------------------------------------------------------- */

static json_t *token_string(const pt_tokenizer *tok, int32_t id, json_t **bytes) {
    char buf[256];
    size_t len = 0;
    if (pt_tokenizer_token_bytes(tok, id, buf, sizeof buf, &len)) len = 0;
    if (bytes) {
        *bytes = json_array();
        for (size_t i = 0; i < len; i++) json_array_append_new(*bytes, json_integer((unsigned char)buf[i]));
    }
    return srv_json_text(buf, len);
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
    const pt_tokenizer *tok = j->info.tok;
    if (j->echo && from == 0) {
        const int32_t *pr = j->prompts[ch->input];
        for (int i = 0; i < j->prompt_len[ch->input]; i++) {
            json_t *t = token_string(tok, pr[i], NULL);
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
                top_add(top, token_string(tok, ch->prompt_top_tok[i][k], NULL), ch->prompt_top_lp[i][k]);
            }
            json_array_append_new(tops, top);
        }
    }
    for (int i = from; i < to; i++) {
        const pt_sample_result *r = &ch->lp[i];
        json_t *t = token_string(tok, r->token, NULL);
        json_array_append_new(offs, json_integer((json_int_t)*offset));
        *offset += json_string_length(t);
        json_array_append_new(toks, t);
        json_array_append_new(lps, json_real(r->logprob));
        json_t *top = json_object();
        for (size_t k = 0; k < r->n_top; k++) {
            top_add(top, token_string(tok, r->top[k].token, NULL), r->top[k].logprob);
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
        json_t *t = token_string(j->info.tok, r->token, &bytes);
        for (size_t k = 0; k < r->n_top && (int)k < j->n_logprobs; k++) {
            json_t *tb;
            json_t *ts = token_string(j->info.tok, r->top[k].token, &tb);
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
            if (!pt_tokenizer_decode(j->info.tok, j->prompts[ch->input], (size_t)j->prompt_len[ch->input], 0, &pt, &pl,
                                     NULL))
                pt_buf_append(&text, pt, pl);
            free(pt);
        }
        pt_buf_append(&text, ch->text.data ? ch->text.data : "", ch->text.len);
        json_t *s = srv_json_text(text.data ? text.data : "", text.len);
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
    return json_pack("{s:s, s:s, s:I, s:s, s:o, s:o, s:s}", "id", j->base.id, "object",
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
    return json_pack("{s:s, s:s, s:I, s:s, s:s}", "id", j->base.id, "object",
                     j->api == API_COMPLETIONS ? "text_completion" : "chat.completion.chunk", "created",
                     (json_int_t)j->created, "model", model_label(j), "system_fingerprint", "parity");
}

/* Streams what a choice has that is safe to show (held back while a stop string may be
 * forming), with the log-probs of the tokens it came from; and its finish reason once done. */
static int stream_choice(gen_job *j, choice *ch, size_t safe, int from_tok, int to_tok) {
    if (safe <= ch->emitted && !ch->done) return PT_OK;
    json_t *text = srv_json_text(ch->text.data ? ch->text.data + ch->emitted : "", safe - ch->emitted);
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

/* The sink: what the backend calls ------------------------------------------------------------- */

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
    pthread_mutex_lock(&j->mu);
    int gone = j->cancelled;
    if (!gone) {
        call *c = j->c;
        c->prompt_tokens = j->prompt_tokens;
        c->completion_tokens = j->completion_tokens;
        pt_ratelimit_add_tokens(s->rl, c->key.org, c->model, j->prompt_tokens + j->completion_tokens, pt_unix_time());
    }
    pt_metrics_tokens(s->metrics, (uint64_t)j->prompt_tokens, (uint64_t)j->completion_tokens);
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

/* After a token was sampled for ch: text, stop strings, limits, streaming. */
static void advance(gen_job *j, choice *ch, const pt_sample_result *r, int eos) {
    const pt_tokenizer *tok = j->info.tok;
    int from = ch->n_toks;
    if (eos) {
        ch->done = 1;
        ch->finish = "stop";
    } else {
        ch->toks[ch->n_toks] = r->token;
        ch->lp[ch->n_toks] = *r;
        ch->n_toks++;
        j->completion_tokens++;
        char buf[256];
        size_t len = 0;
        if (!pt_tokenizer_token_bytes(tok, r->token, buf, sizeof buf, &len)) pt_buf_append(&ch->text, buf, len);
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

static void job_done(gen_job *j) { job_finish(j->s, j); }

static const job_sink openai_sink = {advance, job_fail, job_done};

/* Making and submitting ------------------------------------------------------------------------- */

/* Appends the encoding of text (special-token strings inside it are plain text unless
 * special) to a growing token array. */
static int encode_into(gen_job *j, const char *text, size_t len, int add_bos, int special, int32_t **toks, int *n,
                       int *cap, pt_err *err) {
    int32_t *ids;
    size_t k;
    int rc = j->be->ops->tokenize(j->be, j, text, len, add_bos, special, &ids, &k, err);
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

int job_bad_request(http_resp *resp, const char *param, const char *fmt, const char *detail) {
    http_error(resp, 400, "invalid_request_error", "invalid_value", param, fmt, detail ? detail : "");
    return HTTP_DONE;
}

/* Splits "model@variant"; the body's "variant" wins. */
void model_and_variant(json_t *b, char *model, size_t mcap, char *variant, size_t vcap) {
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
int completion_prompts(gen_job *j, json_t *prompt, int max_batch, const char **bad, pt_err *err) {
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
            rc = encode_into(j, json_string_value(p), json_string_length(p), 1, 0, &j->prompts[i], &j->prompt_len[i],
                             &cap, err);
        } else if (json_is_array(p) && json_array_size(p) > 0 && json_array_size(p) <= MAX_PROMPT_TOKENS) {
            j->prompts[i] = malloc(json_array_size(p) * sizeof(int32_t));
            size_t k;
            json_t *t;
            json_array_foreach(p, k, t) {
                if (!json_is_integer(t) || json_integer_value(t) < 0 || json_integer_value(t) >= j->info.vocab) {
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

gen_job *job_new(call *c, srv_backend *be, const srv_model_info *info, int kind, int api) {
    gen_job *j = calloc(1, sizeof *j);
    if (!j) return NULL;
    pthread_mutex_init(&j->mu, NULL);
    j->s = c->s;
    j->sink = &openai_sink;
    j->be = be;
    j->info = *info;
    j->refs = 1; /* the request's; the backend's is added on submit */
    j->c = c;
    snprintf(j->model, sizeof j->model, "%s", c->model);
    snprintf(j->base.owner, sizeof j->base.owner, "%s", c->key.id);
    j->kind = kind;
    j->api = api;
    j->created = pt_unix_time();
    j->base.queue_ms = -1;
    uint8_t r[12];
    char hx[25];
    randombytes_buf(r, sizeof r);
    snprintf(j->base.id, sizeof j->base.id, "%s-%s", api == API_CHAT ? "chatcmpl" : "cmpl", pt_hex(r, sizeof r, hx));
    pt_sample_params_default(&j->sp);
    j->n_per_input = 1;
    j->n_logprobs = -1;
    pt_sha256_init(&j->hash);
    c->job = j;
    c->job_free = job_detach;
    c->queue_ms = &j->base.queue_ms;
    return j;
}

/* Enqueues j (taking the scheduler's reference) or answers 503. A streamed job's response is
 * opened first, so the scheduler never writes to a stream that does not exist yet. */
int job_submit(pt_server *s, call *c, gen_job *j, http_resp *resp) {
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
    j->refs++; /* the backend's, dropped by the sink's done */
    pthread_mutex_unlock(&j->mu);
    int rc = j->be->ops->submit(j->be, j);
    if (rc == PT_OK && j->stream) srv_rl_headers(resp, c);
    if (rc) {
        job_release(j);
        if (j->out) {
            http_stream_discard(resp);
            j->out = NULL;
        }
        http_set_header(resp, "Retry-After", "1");
        if (rc == PT_ELIMIT)
            http_error(resp, 503, "server_error", "queue_full", NULL,
                       "The model's queue is full (%d waiting); retry shortly.", j->info.queue_limit);
        else
            http_error(resp, 503, "server_error", "shutting_down", NULL, "The server is shutting down.");
        return HTTP_DONE;
    }
    return j->stream ? HTTP_STREAM : HTTP_DEFER;
}
