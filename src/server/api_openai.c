/* The OpenAI endpoints that run a model or list them: POST /v1/completions, POST
 * /v1/chat/completions, GET /v1/models, GET /v1/models/{id}. (Files and fine-tuning:
 * api_files.c.) Each request goes through the pipeline (pipeline.h: decision, limits,
 * receipt), becomes a job (job.h) and runs on its model's backend (backend.h). */
#include <math.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/json.h"
#include "common/util.h"
#include "engine/chat.h"
#include "server/api.h"
#include "server/finetune.h"
#include "server/job.h"

/* Completions and chat -------------------------------------------------------------------------- */

/* The chat prompt: engine/chat.h's rendering (the model's template, or the plain one), the
 * same tokens `parity finetune` trains on, with the template's end-of-turn token and stop. */
static int chat_prompt(gen_job *j, json_t *messages, int32_t **toks, int *n, const char **bad, pt_err *err) {
    pt_chat_tokens ct = {.max = MAX_PROMPT_TOKENS};
    size_t at;
    int rc = pt_chat_render(j->info.tok, messages, 1, &ct, bad, &at, err);
    *toks = ct.ids, *n = (int)ct.n;
    free(ct.reply);
    if (rc) return rc;
    pt_chat_kind kind = pt_chat_kind_of(j->info.tok);
    if (pt_chat_end_token(j->info.tok, kind) >= 0) j->extra_eos[j->n_extra_eos++] = pt_chat_end_token(j->info.tok, kind);
    if (pt_chat_stop(kind) && j->n_stops < MAX_STOPS) j->stops[j->n_stops++] = strdup(pt_chat_stop(kind));
    return PT_OK;
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

/* What the request asks of log-probs: completions' "logprobs" N, chat's "logprobs" true with
 * "top_logprobs" N; *n_logprobs -1 when none. 1, or 0 with a 400 in resp. */
static int logprobs_asked(json_t *b, int api, int *n_logprobs, http_resp *resp) {
    json_t *jlp = json_object_get(b, "logprobs");
    *n_logprobs = -1;
    if (api == API_COMPLETIONS && jlp && !json_is_null(jlp)) {
        if (!json_is_integer(jlp) || json_integer_value(jlp) < 0 || json_integer_value(jlp) > PT_SAMPLE_MAX_TOP) {
            job_bad_request(resp, "logprobs", "'logprobs' must be an integer from 0 to 20.%s", NULL);
            return 0;
        }
        *n_logprobs = (int)json_integer_value(jlp);
    } else if (api == API_CHAT && json_is_true(jlp)) {
        json_t *tl = json_object_get(b, "top_logprobs");
        *n_logprobs = 0;
        if (tl && !json_is_null(tl)) {
            if (!json_is_integer(tl) || json_integer_value(tl) < 0 || json_integer_value(tl) > PT_SAMPLE_MAX_TOP) {
                job_bad_request(resp, "top_logprobs", "'top_logprobs' must be an integer from 0 to 20.%s", NULL);
                return 0;
            }
            *n_logprobs = (int)json_integer_value(tl);
        }
    } else if (api == API_CHAT && jlp && !json_is_boolean(jlp) && !json_is_null(jlp)) {
        job_bad_request(resp, "logprobs", "'logprobs' must be true or false.%s", NULL);
        return 0;
    }
    return 1;
}

/* Sampling parameters (OpenAI's, plus top_k, min_p, repetition_penalty), n, max_tokens, echo,
 * streaming and stop strings into j. 1, or 0 with a 400 in resp. */
static int sampling_asked(pt_server *s, json_t *b, int api, gen_job *j, http_resp *resp) {
    int failed = 0;
    pt_err err;
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
    if (failed || !parse_logit_bias(json_object_get(b, "logit_bias"), j->info.vocab, &j->sp, resp)) return 0;
    j->n_per_input = (int)n_choices;
    j->max_tokens = (int)max_tokens;
    j->echo = api == API_COMPLETIONS && json_is_true(json_object_get(b, "echo"));
    if (j->max_tokens == 0 && !j->echo && api == API_COMPLETIONS) {
        job_bad_request(resp, "max_tokens", "'max_tokens' 0 is only meaningful with 'echo'.%s", NULL);
        return 0;
    }
    if (api == API_CHAT && j->max_tokens == 0) j->max_tokens = 1;
    j->stream = json_is_true(json_object_get(b, "stream"));
    j->include_usage = json_is_true(json_object_get(json_object_get(b, "stream_options"), "include_usage"));
    json_t *stop = json_object_get(b, "stop");
    if (json_is_string(stop)) stop = json_pack("[O]", stop);
    else if (json_is_array(stop)) json_incref(stop);
    else if (stop && !json_is_null(stop)) {
        job_bad_request(resp, "stop", "'stop' must be a string or an array of up to 4 strings.%s", NULL);
        return 0;
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
            job_bad_request(resp, "stop", "'stop' must be a string or an array of up to 4 strings.%s", NULL);
            return 0;
        }
    }
    if (pt_sample_params_check(&j->sp, &err)) {
        job_bad_request(resp, NULL, "%s", err.msg);
        return 0;
    }
    return 1;
}

/* The prompt (completions' "prompt", chat's "messages") into j's tokens, within the batch cap
 * and the model's context. 1, or 0 with a 400 in resp. */
static int prompt_asked(pt_server *s, json_t *b, int api, gen_job *j, http_resp *resp) {
    const char *bad = NULL;
    pt_err err;
    int rc;
    if (api == API_COMPLETIONS) {
        rc = completion_prompts(j, json_object_get(b, "prompt"), s->o.max_batch, &bad, &err);
    } else {
        json_t *msgs = json_object_get(b, "messages");
        if (!json_is_array(msgs) || json_array_size(msgs) == 0) {
            job_bad_request(resp, "messages", "'messages' must be a non-empty array.%s", NULL);
            return 0;
        }
        j->n_inputs = 1;
        j->prompts = calloc(1, sizeof *j->prompts);
        j->prompt_len = calloc(1, sizeof *j->prompt_len);
        rc = j->prompts && j->prompt_len ? chat_prompt(j, msgs, &j->prompts[0], &j->prompt_len[0], &bad, &err)
                                         : pt_errf(&err, PT_ENOMEM, "out of memory");
    }
    if (rc) {
        job_bad_request(resp, api == API_CHAT ? "messages" : "prompt", "%s", bad ? bad : err.msg);
        return 0;
    }
    if (j->n_inputs * j->n_per_input > s->o.max_batch) {
        job_bad_request(resp, "n", "prompts × n must not exceed %s.", "the server's batch cap");
        return 0;
    }
    for (int i = 0; i < j->n_inputs; i++) {
        j->prompt_tokens += j->prompt_len[i] * j->n_per_input;
        if (j->prompt_len[i] + (j->max_tokens > 0 ? 1 : 0) > j->info.max_pos) {
            char msg[200];
            snprintf(msg, sizeof msg, "This model's maximum context length is %d tokens; the prompt has %d.",
                     j->info.max_pos, j->prompt_len[i]);
            http_error(resp, 400, "invalid_request_error", "context_length_exceeded", "messages", "%s", msg);
            return 0;
        }
    }
    return 1;
}

/* POST /v1/completions and /v1/chat/completions. */
static int r_generate(pt_server *s, call *c, http_resp *resp, int api) {
    if (c->phase == 1) { /* the scheduler is done */
        gen_job *j = c->job;
        http_json(resp, j->status ? j->status : 200, json_incref(j->result));
        srv_rl_headers(resp, c);
        return HTTP_DONE;
    }
    json_t *b = srv_body_json(c, resp);
    if (!b) return HTTP_DONE;
    int ret = HTTP_DONE;
    char model[128], variant[64], ft_name[128] = "";
    const struct pt_lora *lora = NULL;
    if (!check_fields(b, api, resp)) goto out;
    if (!json_is_string(json_object_get(b, "model"))) {
        ret = job_bad_request(resp, "model", "'model' is required.%s", NULL);
        goto out;
    }
    model_and_variant(b, model, sizeof model, variant, sizeof variant);
    if (!strncmp(model, "ft:", 3)) { /* a fine-tuned model: decided against its base, run with its adapter */
        snprintf(ft_name, sizeof ft_name, "%s", model);
        if (!srv_ft_resolve(s, c, ft_name, model, sizeof model, &lora, resp)) goto out;
    }
    int n_logprobs;
    if (!logprobs_asked(b, api, &n_logprobs, resp)) goto out;
    const char *v = variant[0] ? variant : NULL;
    /* Charged as policy.h's table says (echo, streaming and n return nothing the use does not). */
    if (!srv_decide_use(s, c, model, v, api == API_COMPLETIONS ? PT_USE_COMPLETION : PT_USE_CHAT, -1, resp)) goto out;
    if (n_logprobs >= 0 && !srv_decide_use(s, c, model, v, PT_USE_TOP_LOGPROBS, n_logprobs, resp)) goto out;
    if (!srv_limit_request(s, c, model, resp)) goto out;
    srv_model_info info;
    srv_backend *be = srv_backend_for(s, model, &info);
    if (!be) {
        http_error(resp, 503, "server_error", "model_not_served", "model",
                   "The model '%s' is in the policy but this server does not run it.", model);
        goto out;
    }
    gen_job *j = job_new(c, be, &info, JOB_GENERATE, api);
    if (!j) {
        http_error(resp, 503, "server_error", NULL, NULL, "out of memory");
        goto out;
    }
    j->n_logprobs = n_logprobs;
    if (lora) {
        j->lora = lora;
        snprintf(j->model, sizeof j->model, "%s", ft_name);
    }
    if (!sampling_asked(s, b, api, j, resp) || !prompt_asked(s, b, api, j, resp)) goto out;
    int64_t want = j->prompt_tokens + (int64_t)j->max_tokens * j->n_inputs * j->n_per_input;
    if (!srv_limit_tokens(s, c, model, want, resp)) goto out;
    ret = job_submit(s, c, j, resp);
out:
    json_decref(b);
    if (ret == HTTP_DONE) srv_rl_headers(resp, c);
    return ret;
}

static int r_completions(pt_server *s, call *c, http_resp *resp) { return r_generate(s, c, resp, API_COMPLETIONS); }

static int r_chat(pt_server *s, call *c, http_resp *resp) { return r_generate(s, c, resp, API_CHAT); }

/* Models ---------------------------------------------------------------------------------------- */

/* OpenAI's model object (id, object, created, owned_by) with what the published policy says of
 * the model (variants, analog_of); with the `model_info` capability also the served model's
 * metadata: its name and its config (architecture, sizes, context length, special tokens). */
static json_t *model_object(pt_server *s, const pt_policy *p, const pt_pmodel *m, pt_capset caps) {
    json_t *vars = json_array();
    for (size_t v = 0; v < m->n_variants; v++) json_array_append_new(vars, json_string(m->variants[v].id));
    json_t *o = json_pack("{s:s, s:s, s:I, s:s, s:o}", "id", m->id, "object", "model", "created",
                          (json_int_t)(m->insider_since == PT_TIME_MIN ? 0 : m->insider_since), "owned_by", p->lab_id,
                          "variants", vars);
    if (m->analog_of) json_object_set_new(o, "analog_of", json_string(m->analog_of));
    if (!(caps & (1u << PT_CAP_MODEL_INFO))) return o;
    if (m->name) json_object_set_new(o, "name", json_string(m->name));
    srv_model_info info;
    if (srv_backend_for(s, m->id, &info) && info.config) json_object_set_new(o, "config", pt_config_to_json(info.config));
    return o;
}

/* GET /v1/models: only the models the caller may use now, and its organisation's fine-tuned
 * models (on a base it may sample). */
static int r_models(pt_server *s, call *c, http_resp *resp) {
    policy_ref *pol = c->pol;
    const pt_policy *p = pol->p;
    int64_t now = pt_unix_time();
    long o = pt_policy_org_ix(p, c->key.org);
    c->decision_allow = 1;
    uint64_t ftv = srv_ft_models_version(s);
    if (o >= 0) { /* the organisation's body from the cache while it is valid */
        const models_body *mb = atomic_load_explicit(&pol->models[o], memory_order_acquire);
        if (mb && now < mb->until && mb->ft_version == ftv) {
            http_json_text(resp, 200, mb->json, mb->len);
            memcpy(c->resp_sha256, mb->sha256, 32);
            c->resp_hashed = 1;
            return HTTP_DONE;
        }
    }
    json_t *data = json_array();
    for (size_t i = 0; i < p->n_models; i++) {
        pt_capset caps;
        if (pt_policy_effective(p, c->key.org, p->models[i].id, now, &caps, NULL) && caps)
            json_array_append_new(data, model_object(s, p, &p->models[i], caps));
    }
    json_t *ft = srv_ft_models(s, p, c->key.org, now, &ftv);
    json_array_extend(data, ft);
    json_decref(ft);
    http_json(resp, 200, json_pack("{s:s, s:o}", "object", "list", "data", data));
    if (o >= 0 && resp->status == 200) {
        models_body *mb = malloc(sizeof *mb + resp->body.len);
        if (mb) {
            *mb = (models_body){NULL, pt_policy_next_change(p, now), ftv, {0}, resp->body.len};
            memcpy(mb->json, resp->body.data, resp->body.len);
            pt_sha256(mb->json, mb->len, mb->sha256);
            pthread_mutex_lock(&pol->cache_mu);
            models_body *cur = atomic_load_explicit(&pol->models[o], memory_order_relaxed);
            if (cur && now < cur->until && cur->ft_version == ftv) { /* another request refreshed it */
                free(mb);
            } else {
                mb->older = cur;
                atomic_store_explicit(&pol->models[o], mb, memory_order_release);
            }
            pthread_mutex_unlock(&pol->cache_mu);
        }
    }
    return HTTP_DONE;
}

/* GET /v1/models/{id}: 404 for a model the caller may not use (as OpenAI does: no oracle). */
static int r_model(pt_server *s, call *c, http_resp *resp) {
    const pt_policy *p = c->pol->p;
    const pt_pmodel *m = pt_policy_model(p, c->params[0]);
    pt_capset caps = 0;
    snprintf(c->model, sizeof c->model, "%s", c->params[0]);
    if (!m && !strncmp(c->params[0], "ft:", 3)) { /* one of the organisation's fine-tuned models? */
        json_t *ft = srv_ft_models(s, p, c->key.org, pt_unix_time(), NULL), *x;
        size_t i;
        json_array_foreach(ft, i, x) {
            if (strcmp(json_string_value(json_object_get(x, "id")), c->params[0])) continue;
            c->decision_allow = 1;
            http_json(resp, 200, json_incref(x));
            json_decref(ft);
            return HTTP_DONE;
        }
        json_decref(ft);
    }
    if (!m || !pt_policy_effective(p, c->key.org, m->id, pt_unix_time(), &caps, NULL) || !caps) {
        snprintf(c->reason, sizeof c->reason, "%s", m ? "no_grant" : "unknown_model");
        http_error(resp, 404, "invalid_request_error", "model_not_found", "model",
                   "The model '%s' does not exist or you do not have access to it.", c->params[0]);
        return HTTP_DONE;
    }
    c->decision_allow = 1;
    c->caps_used |= caps & (1u << PT_CAP_MODEL_INFO);
    http_json(resp, 200, model_object(s, p, m, caps));
    return HTTP_DONE;
}

const route pt_openai_routes[] = {
    {"GET", "/v1/models", AUTH_KEY, r_models, "models", 1, 0},
    {"GET", "/v1/models/{}", AUTH_KEY, r_model, "model", 1, 0},
    {"POST", "/v1/completions", AUTH_KEY, r_completions, "completions", 1, 0},
    {"POST", "/v1/chat/completions", AUTH_KEY, r_chat, "chat_completions", 1, 0},
};
const size_t pt_n_openai_routes = sizeof pt_openai_routes / sizeof pt_openai_routes[0];
