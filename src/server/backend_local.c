/* see backend.h — the in-process backend: the registry's models (registry.c) run jobs on their
 * schedulers. This file is the engine's side of a job: its sequences and samplers, one forward
 * step per choice, sampling (the sink does the rest), and traces run whole with their hooks. */
#include <math.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/json.h"
#include "common/util.h"
#include "engine/tensor.h"
#include "server/backend.h"

/* Generation ------------------------------------------------------------------------------------ */

static int is_eos(gen_job *j, int32_t t) {
    srv_model *m = j->impl;
    for (int i = 0; i < j->n_extra_eos; i++)
        if (j->extra_eos[i] == t) return 1;
    const pt_config *c = pt_engine_config(m->eng);
    for (int i = 0; i < c->n_eos; i++)
        if (c->eos_token_ids[i] == t) return 1;
    return t == pt_tokenizer_eos(m->tok);
}

/* Makes the job's sequences and samplers. 0 or an error message in err. */
static int job_setup(gen_job *j, pt_err *err) {
    srv_model *m = j->impl;
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

static void run_trace_job(pt_server *s, gen_job *j);

static int job_gone(gen_job *j) {
    pthread_mutex_lock(&j->mu);
    int g = j->cancelled;
    pthread_mutex_unlock(&j->mu);
    return g;
}

/* The job interface the scheduler runs (registry.h) ---------------------------------------------- */

/* Newly admitted: set up the sequences and samplers; a trace job runs whole here. */
static void gen_prepare(srv_job *b) {
    gen_job *j = (gen_job *)b;
    if (j->ch || j->status || job_gone(j)) return;
    if (j->kind == JOB_TRACE) {
        run_trace_job(j->s, j);
        return;
    }
    pt_err err;
    if (job_setup(j, &err)) j->sink->fail(j, 503, err.msg);
}

/* One step per unfinished choice: its prompt (prefill) or its last token (decode). */
static int gen_add_steps(srv_job *b, pt_step *steps, void **tags, int room) {
    gen_job *j = (gen_job *)b;
    srv_model *m = j->impl;
    int n = 0;
    if (j->status || !j->ch || job_gone(j)) return 0;
    for (int i = 0; i < j->n_ch && n < room; i++) {
        choice *ch = &j->ch[i];
        if (ch->done) continue;
        int pre = !ch->prefilled;
        int ntok = pre ? j->prompt_len[ch->input] : 1;
        int all = pre && j->echo && j->n_logprobs >= 0;
        float *logits = malloc((size_t)(all ? ntok : 1) * (size_t)m->vocab * sizeof(float));
        if (!logits) {
            j->sink->fail(j, 503, "out of memory for logits");
            break;
        }
        steps[n] = (pt_step){ch->seq, pre ? j->prompts[ch->input] : &ch->toks[ch->n_toks - 1], ntok, all, logits};
        tags[n] = ch;
        n++;
    }
    return n;
}

/* The step's logits: the prompt's log-probs after a prefill (echo), then the next token. */
static void gen_stepped(srv_job *b, pt_step *step, void *tag, int rc, const char *msg) {
    gen_job *j = (gen_job *)b;
    choice *ch = tag;
    srv_model *m = j->impl;
    float *row = step->logits;
    if (rc || j->status) {
        j->sink->fail(j, 500, rc ? msg : "failed");
    } else {
        if (!ch->prefilled) {
            ch->prefilled = 1;
            if (step->all_logits) {
                prompt_logprobs(j, ch, step->logits, step->n_tokens, m->vocab);
                row = step->logits + (size_t)(step->n_tokens - 1) * (size_t)m->vocab;
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
            j->sink->fail(j, 500, serr.msg);
        } else {
            j->sink->token(j, ch, &r, is_eos(j, r.token));
        }
    }
    free(step->logits);
}

static int gen_over(srv_job *b) {
    gen_job *j = (gen_job *)b;
    return j->status || job_gone(j) || (j->ch && j->n_done >= j->n_ch);
}

static void gen_fail(srv_job *b, int status, const char *msg) { ((gen_job *)b)->sink->fail((gen_job *)b, status, msg); }

static void gen_finish(srv_job *b) { ((gen_job *)b)->sink->done((gen_job *)b); }

static const srv_job_ops gen_ops = {gen_prepare, gen_add_steps, gen_stepped, gen_over, gen_fail, gen_finish};

/* Traces ---------------------------------------------------------------------------------------- */

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

/* One trace's working state: per input its sequence, hook set and generated tokens. */
typedef struct trace_run {
    gen_job *j;
    srv_model *m;
    const trace_spec *t;
    int n;                  /* inputs */
    pt_seq **seqs;
    pt_hooks **hs;
    int *is_src;            /* a patch copies from this input */
    int32_t **gen;
    int *n_gen;
    char msg[1100];         /* why it failed */
} trace_run;

/* Input i's hook set: the reads, what patches copy from it (a source), its interventions
 * (a patch's source has run already). */
static int trace_hooks(trace_run *tr, int i, pt_err *err) {
    const trace_spec *t = tr->t;
    pt_hooks **hs = tr->hs;
    int rc = pt_hooks_new(pt_engine_config(tr->m->eng), &hs[i], err);
    for (size_t r = 0; r < t->n_reads && !rc; r++)
        rc = pt_hooks_read(hs[i], t->reads[r].hook, t->reads[r].positions, t->reads[r].n_positions, err);
    if (tr->is_src[i]) { /* what the patches copy: this input's activation at every position */
        for (size_t k = 0; k < t->n_ops && !rc; k++) {
            if (t->ops[k].op != 3 || t->ops[k].source != i) continue;
            int already = 0;
            for (size_t r = 0; r < t->n_reads; r++) already |= !strcmp(t->reads[r].hook, t->ops[k].hook);
            for (size_t q = 0; q < k; q++)
                already |= t->ops[q].op == 3 && t->ops[q].source == i && !strcmp(t->ops[q].hook, t->ops[k].hook);
            if (!already) rc = pt_hooks_read(hs[i], t->ops[k].hook, NULL, 0, err);
        }
    }
    for (size_t k = 0; k < t->n_ops && !rc; k++) {
        const trace_op *op = &t->ops[k];
        if (!op_applies(op, i)) continue;
        if (op->op == 0)
            rc = pt_hooks_add(hs[i], op->hook, op->values, op->numel, op->scale, op->positions, op->n_positions, err);
        else if (op->op == 1)
            rc = pt_hooks_set(hs[i], op->hook, op->values, op->numel, op->positions, op->n_positions, err);
        else if (op->op == 2)
            rc = pt_hooks_ablate(hs[i], op->hook, op->mean, op->positions, op->n_positions, err);
        else {
            pt_hook_tensor src;
            rc = pt_hooks_get(hs[op->source], op->hook, &src, err);
            size_t numel = 1;
            for (int d = 0; d < src.ndim; d++) numel *= (size_t)src.shape[d];
            if (!rc) rc = pt_hooks_set(hs[i], op->hook, src.data, numel, op->positions, op->n_positions, err);
        }
    }
    return rc;
}

/* Runs input i: its prefill with its hooks, then the optional generation. 0, or the status
 * with tr->msg. */
static int trace_input(trace_run *tr, int i) {
    gen_job *j = tr->j;
    srv_model *m = tr->m;
    const trace_spec *t = tr->t;
    char *msg = tr->msg;
    size_t cap = sizeof tr->msg;
    pt_err err;
    int status = 0;
    if (trace_hooks(tr, i, &err)) {
        snprintf(msg, cap, "input %d: %s", i, err.msg);
        return 400;
    }
    pt_seq **seqs = tr->seqs;
    if (!(seqs[i] = pt_seq_new(m->eng, 0))) {
        snprintf(msg, cap, "out of memory for a KV cache");
        return 503;
    }
    pt_seq_set_hooks(seqs[i], tr->hs[i]);
    int len = j->prompt_len[i];
    float *logits = malloc((size_t)m->vocab * sizeof(float));
    pt_step step = {seqs[i], j->prompts[i], len, 0, logits};
    pt_sampler *smp = NULL;
    if (!logits || pt_engine_forward(m->eng, &step, 1, &err)) {
        snprintf(msg, cap, "input %d: %s", i, logits ? err.msg : "out of memory");
        free(logits);
        return logits ? 400 : 503;
    }
    if (!finite_logits(t, i, logits, m->vocab, msg, cap)) {
        free(logits);
        return 400;
    }
    if (j->max_tokens > 0) {
        int32_t *gen = tr->gen[i] = malloc((size_t)j->max_tokens * sizeof(int32_t));
        pt_sample_params sp = j->sp;
        sp.seed += (uint64_t)i;
        if (!gen || pt_sampler_new(&sp, (size_t)m->vocab, &smp, &err)) {
            snprintf(msg, cap, "out of memory");
            free(logits);
            return 503;
        }
        for (int q = 0; q < len; q++) pt_sampler_accept(smp, j->prompts[i][q]);
        int *n_gen = &tr->n_gen[i];
        while (*n_gen < j->max_tokens && seqs[i]->pos < seqs[i]->max_ctx) {
            pt_sample_result r;
            if (pt_sampler_sample(smp, logits, 0, &r, &err) || is_eos(j, r.token)) break;
            gen[(*n_gen)++] = r.token;
            j->completion_tokens++;
            pt_step ds = {seqs[i], &gen[*n_gen - 1], 1, 0, logits};
            if (pt_engine_forward(m->eng, &ds, 1, &err)) break;
            if (!finite_logits(t, i, logits, m->vocab, msg, cap)) {
                status = 400;
                break;
            }
        }
        pt_sampler_free(smp);
    }
    free(logits);
    return status;
}

/* Stacks each read over the batch into st[] (and, as JSON, tensors): [batch, pos, ...]
 * (pattern [batch, heads, q, k]), padded with zeros to the longest input; "lengths" says how
 * many positions are real. 0, or the status with tr->msg (413: over the download quota). */
static int trace_stack(trace_run *tr, json_t *tensors, pt_tensor *st, size_t *n_st) {
    const trace_spec *t = tr->t;
    int n = tr->n;
    char *msg = tr->msg;
    size_t cap = sizeof tr->msg, total = 0;
    pt_err err;
    for (size_t r = 0; r < t->n_reads; r++) {
        int64_t dims[4] = {0};
        int nd = 0;
        for (int i = 0; i < n; i++) {
            pt_hook_tensor ht;
            if (pt_hooks_get(tr->hs[i], t->reads[r].hook, &ht, &err)) {
                snprintf(msg, cap, "%s", err.msg);
                return 400;
            }
            nd = ht.ndim;
            for (int d = 0; d < ht.ndim; d++)
                if (ht.shape[d] > dims[d]) dims[d] = ht.shape[d];
        }
        size_t per = 1;
        for (int d = 0; d < nd; d++) per *= (size_t)dims[d];
        size_t bytes = per * (size_t)n * sizeof(float);
        total += bytes;
        if (total > t->max_bytes) {
            snprintf(msg, cap,
                     "the tensors asked for come to more than this request's download quota of %zu bytes; read "
                     "fewer hooks or slice positions",
                     t->max_bytes);
            return 413;
        }
        float *buf = calloc(per * (size_t)n, sizeof(float));
        if (!buf) {
            snprintf(msg, cap, "out of memory");
            return 503;
        }
        for (int i = 0; i < n; i++) {
            pt_hook_tensor ht;
            pt_hooks_get(tr->hs[i], t->reads[r].hook, &ht, NULL);
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
        st[*n_st] = (pt_tensor){.name = t->reads[r].hook, .dtype = PT_F32, .ndim = nd + 1, .data = buf,
                                .nbytes = per * (size_t)n * sizeof(float), .owned = buf};
        memcpy(st[*n_st].shape, shape, sizeof shape);
        (*n_st)++;
        if (!t->safetensors) {
            json_t *sh = json_array();
            for (int d = 0; d <= nd; d++) json_array_append_new(sh, json_integer(shape[d]));
            json_array_append_new(tensors, json_pack("{s:s, s:o, s:s, s:o}", "name", t->reads[r].hook, "shape", sh,
                                                     "dtype", "F32", "data", b64_json(buf, st[*n_st - 1].nbytes)));
        }
    }
    return 0;
}

/* Each input's tokens, length, generated tokens and their text. */
static json_t *trace_inputs(trace_run *tr) {
    gen_job *j = tr->j;
    json_t *inputs = json_array();
    for (int i = 0; i < tr->n; i++) {
        json_t *tk = json_array(), *gk = json_array();
        for (int q = 0; q < j->prompt_len[i]; q++) json_array_append_new(tk, json_integer(j->prompts[i][q]));
        for (int q = 0; q < tr->n_gen[i]; q++) json_array_append_new(gk, json_integer(tr->gen[i][q]));
        char *text = NULL;
        size_t tl = 0;
        json_t *o =
            json_pack("{s:o, s:i, s:o}", "tokens", tk, "length", j->prompt_len[i] + tr->n_gen[i], "generated", gk);
        if (tr->n_gen[i] && !pt_tokenizer_decode(tr->m->tok, tr->gen[i], (size_t)tr->n_gen[i], 1, &text, &tl, NULL))
            json_object_set_new(o, "text", srv_json_text(text, tl));
        free(text);
        json_array_append_new(inputs, o);
    }
    return inputs;
}

/* Runs a trace job whole: inputs that patches copy from first, then the others; each input is
 * its own sequence with its own hook set; optional generation continues with the hooks on. */
static void run_trace_job(pt_server *s, gen_job *j) {
    (void)s;
    srv_model *m = j->impl;
    trace_spec *t = j->trace;
    int n = j->n_inputs;
    trace_run tr = {.j = j, .m = m, .t = t, .n = n};
    tr.seqs = calloc((size_t)n, sizeof *tr.seqs);
    tr.hs = calloc((size_t)n, sizeof *tr.hs);
    tr.is_src = calloc((size_t)n, sizeof *tr.is_src);
    tr.gen = calloc((size_t)n, sizeof *tr.gen);
    tr.n_gen = calloc((size_t)n, sizeof *tr.n_gen);
    int *order = calloc((size_t)n, sizeof *order);
    char *msg = tr.msg;
    pt_err err;
    int status = 0;
    json_t *tensors = NULL, *inputs = NULL;
    pt_tensor *st = NULL;
    size_t n_st = 0;
    if (!tr.seqs || !tr.hs || !order || !tr.is_src || !tr.gen || !tr.n_gen) {
        status = 503;
        snprintf(msg, sizeof tr.msg, "out of memory");
        goto out;
    }
    for (size_t k = 0; k < t->n_ops; k++)
        if (t->ops[k].op == 3) tr.is_src[t->ops[k].source] = 1;
    int no = 0;
    for (int i = 0; i < n; i++)
        if (tr.is_src[i]) order[no++] = i;
    for (int i = 0; i < n; i++)
        if (!tr.is_src[i]) order[no++] = i;
    for (int oi = 0; oi < n && !status; oi++) status = trace_input(&tr, order[oi]);
    if (status) goto out;
    tensors = json_array();
    st = calloc(t->n_reads + 1, sizeof *st);
    if ((status = trace_stack(&tr, tensors, st, &n_st))) goto out;
    inputs = trace_inputs(&tr);
    if (t->safetensors) {
        json_t *meta = json_pack("{s:s, s:s}", "model", m->id, "inputs", "");
        char *in = json_dumps(inputs, JSON_COMPACT);
        json_object_set_new(meta, "inputs", json_string(in ? in : "[]"));
        free(in);
        pt_buf_init(&j->raw, (size_t)-1 / 2);
        if (pt_safetensors_serialize(st, n_st, meta, &j->raw, &err)) {
            status = 503;
            snprintf(msg, sizeof tr.msg, "%s", err.msg);
        }
        json_decref(meta);
        j->raw_type = "application/x-safetensors";
    } else {
        j->result = json_pack("{s:s, s:s, s:O, s:O}", "object", "trace", "model", m->id, "inputs", inputs, "tensors",
                              tensors);
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
    for (int i = 0; i < n && tr.seqs && tr.hs && tr.gen; i++) {
        pt_seq_free(tr.seqs[i]);
        pt_hooks_free(tr.hs[i]);
        free(tr.gen[i]);
    }
    free(tr.seqs);
    free(tr.hs);
    free(order);
    free(tr.is_src);
    free(tr.gen);
    free(tr.n_gen);
}

/* The backend ops ------------------------------------------------------------------------------- */

static void local_info(const srv_model *m, srv_model_info *out) {
    const pt_config *cfg = pt_engine_config(m->eng);
    *out = (srv_model_info){.id = m->id, .vocab = m->vocab, .max_pos = cfg->max_pos, .config = cfg, .tok = m->tok,
                            .queue_limit = m->qlimit};
}

static int local_model_at(srv_backend *b, size_t i, srv_model_info *out) {
    srv_model *m = srv_model_at(b->s, i);
    if (m) local_info(m, out);
    return m != NULL;
}

static int local_find(srv_backend *b, const char *id, srv_model_info *out) {
    srv_model *m = srv_model_find(b->s, id);
    if (m) local_info(m, out);
    return m != NULL;
}

static int local_tokenize(srv_backend *b, const gen_job *j, const char *text, size_t len, int add_bos, int special,
                          int32_t **ids, size_t *n, pt_err *err) {
    (void)b;
    return pt_tokenizer_encode(j->info.tok, text, len, add_bos, special, ids, n, err);
}

static int local_submit(srv_backend *b, gen_job *j) {
    srv_model *m = srv_model_find(b->s, j->info.id);
    if (!m) return PT_ECANCELLED;
    j->impl = m;
    j->base.ops = &gen_ops;
    j->base.n_seqs = j->n_inputs * j->n_per_input;
    return srv_model_submit(m, &j->base);
}

/* The scheduler sees the flag between steps (job_gone) and drops the job. */
static void local_cancel(srv_backend *b, gen_job *j) {
    (void)b;
    pthread_mutex_lock(&j->mu);
    j->cancelled = 1;
    pthread_mutex_unlock(&j->mu);
}

typedef struct jobs_ctx {
    void (*fn)(void *ctx, const char *job_id, const char *owner, int pos);
    void *ctx;
} jobs_ctx;

static void local_job(void *ctx, const srv_job *j, int pos) {
    jobs_ctx *x = ctx;
    x->fn(x->ctx, j->id, j->owner, pos);
}

static void local_jobs(srv_backend *b, const char *model, int *queued, int *running,
                       void (*fn)(void *ctx, const char *job_id, const char *owner, int pos), void *ctx) {
    srv_model *m = srv_model_find(b->s, model);
    jobs_ctx x = {fn, ctx};
    *queued = *running = 0;
    if (m) srv_model_jobs(m, queued, running, local_job, &x);
}

static const srv_backend_ops local_ops = {"local", local_model_at, local_find, local_tokenize, local_submit,
                                          local_cancel, local_jobs};

int srv_backends_start(pt_server *s, pt_err *err) {
    srv_backend *b = calloc(1, sizeof *b);
    if (!b) return pt_errf(err, PT_ENOMEM, "out of memory");
    b->ops = &local_ops;
    b->s = s;
    s->backend = b;
    return PT_OK;
}

void srv_backends_free(pt_server *s) {
    free(s->backend);
    s->backend = NULL;
}

srv_backend *srv_backend_local(pt_server *s) { return s->backend; }

srv_backend *srv_backend_for(pt_server *s, const char *model, srv_model_info *info) {
    srv_backend *b = s->backend;
    return b && b->ops->find(b, model, info) ? b : NULL;
}
