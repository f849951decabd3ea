/* The internals endpoints: POST /v1/internals/trace (read activations, intervene, generate
 * with the interventions in place) and GET /v1/internals/hooks. Charged per kind of read and
 * write (policy.h's table), limited like completions, run as a trace job on the model's
 * backend (which must know the model's config: backend.h). */
#include <math.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/json.h"
#include "common/util.h"
#include "engine/hooks.h"
#include "server/api.h"
#include "server/job.h"

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

/* The "reads" (hook names, or {"hook", "positions"}) into t->reads. 1, or 0 with a 400. */
static int parse_reads(const pt_config *cfg, json_t *reads, trace_spec *t, http_resp *resp) {
    size_t i;
    json_t *e;
    pt_err err;
    json_array_foreach(reads, i, e) {
        trace_read *r = &t->reads[t->n_reads];
        const char *name = json_is_string(e) ? json_string_value(e) : json_string_value(json_object_get(e, "hook"));
        int site;
        if (!name || strlen(name) >= sizeof r->hook) {
            job_bad_request(resp, "reads", "each read is a hook name or {\"hook\": NAME, \"positions\": [..]}.%s", NULL);
            return 0;
        }
        if (pt_hook_parse(cfg, name, &site, &err)) {
            http_error(resp, 400, "invalid_request_error", "unknown_hook", "reads", "%s", err.msg);
            return 0;
        }
        snprintf(r->hook, sizeof r->hook, "%s", name);
        if (json_is_object(e) && parse_positions(json_object_get(e, "positions"), &r->positions, &r->n_positions)) {
            job_bad_request(resp, "reads", "'positions' must be a non-empty array of positions.%s", NULL);
            return 0;
        }
        t->n_reads++;
    }
    return 1;
}

/* interventions[i] (e) into op, for a request of n_inputs inputs. 1, or 0 with a 400. */
static int parse_intervention(const pt_config *cfg, json_t *e, size_t i, int n_inputs, trace_op *op, http_resp *resp) {
    const char *bad = NULL;
    pt_err err;
    const char *hook = json_string_value(json_object_get(e, "hook")), *ops = json_string_value(json_object_get(e, "op"));
    int site;
    if (!hook || !ops || strlen(hook) >= sizeof op->hook) {
        job_bad_request(resp, "interventions", "each intervention needs 'hook' and 'op' (add, set, ablate, patch).%s", NULL);
        return 0;
    }
    if (pt_hook_parse(cfg, hook, &site, &err)) {
        http_error(resp, 400, "invalid_request_error", "unknown_hook", "interventions", "%s", err.msg);
        return 0;
    }
    snprintf(op->hook, sizeof op->hook, "%s", hook);
    op->op = !strcmp(ops, "add") ? 0 : !strcmp(ops, "set") ? 1 : !strcmp(ops, "ablate") ? 2 : !strcmp(ops, "patch") ? 3 : -1;
    op->scale = 1;
    json_t *sc = json_object_get(e, "scale");
    if (op->op < 0 || (sc && !json_is_number(sc))) {
        job_bad_request(resp, "interventions", "'op' must be add, set, ablate or patch, and 'scale' a number.%s", NULL);
        return 0;
    }
    if (sc) op->scale = (float)json_number_value(sc);
    if (!isfinite(op->scale)) {
        http_error(resp, 400, "invalid_request_error", "invalid_value", "interventions",
                   "interventions[%zu] (hook %s): 'scale' %g is not a finite float32.", i, hook,
                   json_number_value(sc));
        return 0;
    }
    if ((op->op == 0 || op->op == 1) && parse_value(json_object_get(e, "value"), &op->values, &op->numel, &bad)) {
        http_error(resp, 400, "invalid_request_error", "invalid_value", "interventions",
                   "interventions[%zu] (hook %s): %s", i, hook, bad);
        return 0;
    }
    for (size_t k = 0; op->op == 0 && k < op->numel; k++)
        if (!isfinite(op->values[k] * op->scale)) {
            http_error(resp, 400, "invalid_request_error", "invalid_value", "interventions",
                       "interventions[%zu] (hook %s): 'scale' × 'value' overflows float32 (element %zu).", i, hook,
                       k);
            return 0;
        }
    const char *mode = json_string_value(json_object_get(e, "mode"));
    op->mean = mode && !strcmp(mode, "mean");
    if (op->op == 3) {
        json_t *src = json_object_get(e, "source");
        if (!json_is_integer(src) || json_integer_value(src) < 0 || json_integer_value(src) >= n_inputs) {
            job_bad_request(resp, "interventions", "'patch' needs 'source': the index of another input.%s", NULL);
            return 0;
        }
        op->source = (int)json_integer_value(src);
    }
    if (parse_positions(json_object_get(e, "positions"), &op->positions, &op->n_positions)) {
        job_bad_request(resp, "interventions", "'positions' must be a non-empty array of positions.%s", NULL);
        return 0;
    }
    json_t *in = json_object_get(e, "inputs");
    if (in) {
        if (!json_is_array(in) || !json_array_size(in)) {
            job_bad_request(resp, "interventions", "'inputs' must be a non-empty array of input indices.%s", NULL);
            return 0;
        }
        op->inputs = calloc(json_array_size(in), sizeof *op->inputs);
        size_t k;
        json_t *x;
        json_array_foreach(in, k, x) {
            if (!json_is_integer(x) || json_integer_value(x) < 0 || json_integer_value(x) >= n_inputs ||
                (op->op == 3 && json_integer_value(x) == op->source)) {
                job_bad_request(resp, "interventions", "'inputs' must be indices of other inputs of this request.%s", NULL);
                return 0;
            }
            op->inputs[op->n_inputs++] = (int)json_integer_value(x);
        }
    }
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
        srv_rl_headers(resp, c);
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
        ret = job_bad_request(resp, "model", "'model' is required.%s", NULL);
        goto out;
    }
    model_and_variant(b, model, sizeof model, variant, sizeof variant);
    json_t *reads = json_object_get(b, "reads"), *ivs = json_object_get(b, "interventions");
    if ((reads && !json_is_array(reads)) || (ivs && !json_is_array(ivs)) ||
        json_array_size(reads) + json_array_size(ivs) == 0) {
        ret = job_bad_request(resp, "reads", "Give 'reads' (hook names) and/or 'interventions' (arrays).%s", NULL);
        goto out;
    }
    const char *v = variant[0] ? variant : NULL;
    json_t *g = json_object_get(b, "generate");
    srv_model_info info;
    srv_backend *be = srv_backend_for(s, model, &info);
    if (be && !info.config) be = NULL; /* a backend that cannot show internals does not run traces */
    if (!trace_decide(s, c, model, v, reads, ivs, g && !json_is_null(g), be ? info.vocab : INT64_MAX, resp)) goto out;
    if (!srv_limit_request(s, c, model, resp)) goto out;
    if (!be) {
        http_error(resp, 503, "server_error", "model_not_served", "model",
                   "The model '%s' is in the policy but this server does not run it.", model);
        goto out;
    }
    gen_job *j = job_new(c, be, &info, JOB_TRACE, API_COMPLETIONS);
    if (!j || !(t = j->trace = calloc(1, sizeof *t))) {
        http_error(resp, 503, "server_error", NULL, NULL, "out of memory");
        goto out;
    }
    const pt_config *cfg = info.config;
    t->max_bytes = s->o.max_download;
    const char *accept = http_header(c->req, "Accept");
    t->safetensors = accept && strstr(accept, "application/x-safetensors");
    /* inputs: text, token ids, or a batch of either */
    json_t *input = json_object_get(b, "input");
    int rc = input ? completion_prompts(j, input, s->o.max_batch, &bad, &err) : (bad = "'input' is required", PT_EINVAL);
    if (rc) {
        ret = job_bad_request(resp, "input", "%s", bad ? bad : err.msg);
        goto out;
    }
    for (int i = 0; i < j->n_inputs; i++) {
        j->prompt_tokens += j->prompt_len[i];
        if (j->prompt_len[i] >= cfg->max_pos) {
            ret = job_bad_request(resp, "input", "an input is longer than the model's context of %s tokens.", "its");
            goto out;
        }
    }
    size_t i;
    json_t *e;
    t->reads = calloc(json_array_size(reads) + 1, sizeof *t->reads);
    t->ops = calloc(json_array_size(ivs) + 1, sizeof *t->ops);
    if (!parse_reads(cfg, reads, t, resp)) goto out;
    json_array_foreach(ivs, i, e) {
        trace_op *op = &t->ops[t->n_ops++]; /* counted first: freed with the job on failure too */
        if (!parse_intervention(cfg, e, i, j->n_inputs, op, resp)) goto out;
    }
    /* Optional generation with the interventions in place. */
    if (g && !json_is_null(g)) {
        json_t *mt = json_object_get(g, "max_tokens");
        if (!json_is_object(g) || !json_is_integer(mt) || json_integer_value(mt) < 0 ||
            json_integer_value(mt) > s->o.max_tokens) {
            ret = job_bad_request(resp, "generate", "'generate' must be {\"max_tokens\": N, \"temperature\": T, \"seed\": S} within the server's max_tokens.%s", NULL);
            goto out;
        }
        j->max_tokens = (int)json_integer_value(mt);
        json_t *tt = json_object_get(g, "temperature"), *sd = json_object_get(g, "seed");
        j->sp.temperature = json_is_number(tt) ? (float)json_number_value(tt) : 0.0f;
        if (json_is_integer(sd)) j->sp.seed = (uint64_t)json_integer_value(sd);
        if (pt_sample_params_check(&j->sp, &err)) {
            ret = job_bad_request(resp, "generate", "%s", err.msg);
            goto out;
        }
    }
    ret = job_submit(s, c, j, resp);
out:
    json_decref(b);
    if (ret == HTTP_DONE) srv_rl_headers(resp, c);
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
    srv_model_info info;
    if (!srv_backend_for(s, model, &info) || !info.config) {
        http_error(resp, 503, "server_error", "model_not_served", "model", "This server does not run '%s'.", model);
        return HTTP_DONE;
    }
    const pt_config *cfg = info.config;
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

const route pt_internals_routes[] = {
    {"POST", "/v1/internals/trace", AUTH_KEY, r_trace, "internals_trace", 1, 0},
    {"GET", "/v1/internals/hooks", AUTH_KEY, r_hooks, "internals_hooks", 1, 0},
};
const size_t pt_n_internals_routes = sizeof pt_internals_routes / sizeof pt_internals_routes[0];
