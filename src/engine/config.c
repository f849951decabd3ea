/* see config.h */
#include <math.h>
#include <string.h>

#include "common/json.h"
#include "engine/config.h"

#define PT_CONFIG_MAX_BYTES (4u << 20)

/* Reads an integer key; def < INT_MIN-ish sentinel means required. */
static int get_int(const json_t *j, const char *key, int required, long long def, long long lo, long long hi,
                   int *out, const char *what, pt_err *err) {
    json_t *v = json_object_get(j, key);
    if (!v || json_is_null(v)) {
        if (required) return pt_errf(err, PT_EFORMAT, "%s: missing \"%s\"", what, key);
        *out = (int)def;
        return PT_OK;
    }
    if (!json_is_integer(v)) return pt_errf(err, PT_EFORMAT, "%s: \"%s\" must be an integer", what, key);
    long long x = json_integer_value(v);
    if (x < lo || x > hi)
        return pt_errf(err, PT_EFORMAT, "%s: \"%s\" = %lld is out of range [%lld, %lld]", what, key, x, lo, hi);
    *out = (int)x;
    return PT_OK;
}

static int get_float(const json_t *j, const char *key, double def, double lo, double hi, float *out,
                     const char *what, pt_err *err) {
    json_t *v = json_object_get(j, key);
    if (!v || json_is_null(v)) {
        *out = (float)def;
        return PT_OK;
    }
    if (!json_is_number(v)) return pt_errf(err, PT_EFORMAT, "%s: \"%s\" must be a number", what, key);
    double x = json_number_value(v);
    if (!(x >= lo && x <= hi)) return pt_errf(err, PT_EFORMAT, "%s: \"%s\" = %g is out of range", what, key, x);
    *out = (float)x;
    return PT_OK;
}

static int get_bool(const json_t *j, const char *key, int def, int *out, const char *what, pt_err *err) {
    json_t *v = json_object_get(j, key);
    if (!v || json_is_null(v)) {
        *out = def;
        return PT_OK;
    }
    if (!json_is_boolean(v)) return pt_errf(err, PT_EFORMAT, "%s: \"%s\" must be true or false", what, key);
    *out = json_is_true(v);
    return PT_OK;
}

static int get_eos(const json_t *j, pt_config *c, const char *what, pt_err *err) {
    json_t *v = json_object_get(j, "eos_token_id");
    c->n_eos = 0;
    if (!v || json_is_null(v)) return PT_OK;
    if (json_is_integer(v)) v = json_pack("[O]", v);
    else json_incref(v);
    int rc = PT_OK;
    if (!json_is_array(v) || json_array_size(v) > PT_MAX_EOS) {
        rc = pt_errf(err, PT_EFORMAT, "%s: \"eos_token_id\" must be an integer or a list of at most %d", what,
                     PT_MAX_EOS);
    } else {
        size_t i;
        json_t *e;
        json_array_foreach(v, i, e) {
            if (!json_is_integer(e) || json_integer_value(e) < 0 || json_integer_value(e) >= c->vocab_size) {
                rc = pt_errf(err, PT_EFORMAT, "%s: \"eos_token_id\"[%zu] is not a token id below vocab_size", what,
                             i);
                break;
            }
            c->eos_token_ids[c->n_eos++] = (int)json_integer_value(e);
        }
    }
    json_decref(v);
    return rc;
}

int pt_config_validate(const pt_config *c, const char *what, pt_err *err) {
    if (c->vocab_size < 1 || c->vocab_size > PT_MAX_VOCAB) return pt_errf(err, PT_EFORMAT, "%s: vocab_size %d out of range", what, c->vocab_size);
    if (c->d_model < 1 || c->d_model > PT_MAX_DMODEL) return pt_errf(err, PT_EFORMAT, "%s: hidden size %d out of range", what, c->d_model);
    if (c->n_layers < 1 || c->n_layers > PT_MAX_LAYERS) return pt_errf(err, PT_EFORMAT, "%s: layer count %d out of range", what, c->n_layers);
    if (c->n_heads < 1 || c->n_heads > PT_MAX_HEADS) return pt_errf(err, PT_EFORMAT, "%s: head count %d out of range", what, c->n_heads);
    if (c->n_kv_heads < 1 || c->n_kv_heads > c->n_heads || c->n_heads % c->n_kv_heads)
        return pt_errf(err, PT_EFORMAT, "%s: %d attention heads are not a multiple of %d key/value heads", what,
                       c->n_heads, c->n_kv_heads);
    if (c->head_dim < 1 || c->head_dim > 4096 || (long long)c->head_dim * c->n_heads > PT_MAX_DMODEL * 4LL)
        return pt_errf(err, PT_EFORMAT, "%s: head_dim %d out of range", what, c->head_dim);
    if (c->arch == PT_ARCH_LLAMA && c->head_dim % 2)
        return pt_errf(err, PT_EFORMAT, "%s: head_dim %d must be even for RoPE", what, c->head_dim);
    if (c->arch == PT_ARCH_GPT2 && c->head_dim * c->n_heads != c->d_model)
        return pt_errf(err, PT_EFORMAT, "%s: GPT-2 needs n_embd (%d) divisible by n_head (%d)", what, c->d_model,
                       c->n_heads);
    if (c->d_ff < 1 || c->d_ff > PT_MAX_DFF) return pt_errf(err, PT_EFORMAT, "%s: feed-forward size %d out of range", what, c->d_ff);
    if (c->max_pos < 1 || c->max_pos > PT_MAX_POS) return pt_errf(err, PT_EFORMAT, "%s: context length %d out of range", what, c->max_pos);
    if (!(c->norm_eps > 0 && c->norm_eps < 1)) return pt_errf(err, PT_EFORMAT, "%s: norm epsilon %g out of range", what, c->norm_eps);
    if (c->arch == PT_ARCH_LLAMA && !(c->rope_theta > 0 && isfinite(c->rope_theta)))
        return pt_errf(err, PT_EFORMAT, "%s: rope_theta %g out of range", what, c->rope_theta);
    if (c->bos_token_id >= c->vocab_size) return pt_errf(err, PT_EFORMAT, "%s: bos_token_id %d >= vocab_size", what, c->bos_token_id);
    return PT_OK;
}

int pt_config_from_json(const json_t *j, const char *what, pt_config *c, pt_err *err) {
    memset(c, 0, sizeof *c);
    if (!json_is_object(j)) return pt_errf(err, PT_EFORMAT, "%s: not a JSON object", what);
    json_t *mt = json_object_get(j, "model_type");
    if (!json_is_string(mt)) return pt_errf(err, PT_EFORMAT, "%s: missing \"model_type\"", what);
    const char *type = json_string_value(mt);
    int rc;
#define TRY(x)                \
    do {                      \
        if ((rc = (x))) return rc; \
    } while (0)
    if (!strcmp(type, "llama")) {
        c->arch = PT_ARCH_LLAMA;
        TRY(get_int(j, "vocab_size", 1, 0, 1, PT_MAX_VOCAB, &c->vocab_size, what, err));
        TRY(get_int(j, "hidden_size", 1, 0, 1, PT_MAX_DMODEL, &c->d_model, what, err));
        TRY(get_int(j, "intermediate_size", 1, 0, 1, PT_MAX_DFF, &c->d_ff, what, err));
        TRY(get_int(j, "num_hidden_layers", 1, 0, 1, PT_MAX_LAYERS, &c->n_layers, what, err));
        TRY(get_int(j, "num_attention_heads", 1, 0, 1, PT_MAX_HEADS, &c->n_heads, what, err));
        TRY(get_int(j, "num_key_value_heads", 0, c->n_heads, 1, PT_MAX_HEADS, &c->n_kv_heads, what, err));
        TRY(get_int(j, "head_dim", 0, c->d_model / c->n_heads, 1, 4096, &c->head_dim, what, err));
        TRY(get_int(j, "max_position_embeddings", 0, 2048, 1, PT_MAX_POS, &c->max_pos, what, err));
        TRY(get_float(j, "rms_norm_eps", 1e-6, 0, 1, &c->norm_eps, what, err));
        /* rope_theta (older configs) or rope_parameters.rope_theta (newer). */
        json_t *rp = json_object_get(j, "rope_parameters");
        const json_t *rope = json_is_object(rp) && json_object_get(rp, "rope_theta") ? rp : j;
        TRY(get_float(rope, "rope_theta", 10000, 1e-3, 1e12, &c->rope_theta, what, err));
        json_t *rs = json_object_get(j, "rope_scaling");
        if (rs && !json_is_null(rs))
            return pt_errf(err, PT_EUNSUPPORTED, "%s: \"rope_scaling\" is not supported yet", what);
        TRY(get_bool(j, "tie_word_embeddings", 0, &c->tie_embeddings, what, err));
        TRY(get_bool(j, "attention_bias", 0, &c->attn_bias, what, err));
        TRY(get_bool(j, "mlp_bias", 0, &c->mlp_bias, what, err));
        json_t *act = json_object_get(j, "hidden_act");
        if (act && (!json_is_string(act) || strcmp(json_string_value(act), "silu")))
            return pt_errf(err, PT_EUNSUPPORTED, "%s: \"hidden_act\" must be \"silu\" for llama", what);
    } else if (!strcmp(type, "gpt2")) {
        c->arch = PT_ARCH_GPT2;
        TRY(get_int(j, "vocab_size", 1, 0, 1, PT_MAX_VOCAB, &c->vocab_size, what, err));
        TRY(get_int(j, "n_embd", 1, 0, 1, PT_MAX_DMODEL, &c->d_model, what, err));
        TRY(get_int(j, "n_layer", 1, 0, 1, PT_MAX_LAYERS, &c->n_layers, what, err));
        TRY(get_int(j, "n_head", 1, 0, 1, PT_MAX_HEADS, &c->n_heads, what, err));
        if (c->d_model > PT_MAX_DFF / 4) return pt_errf(err, PT_EFORMAT, "%s: n_embd too large", what);
        TRY(get_int(j, "n_inner", 0, 4LL * c->d_model, 1, PT_MAX_DFF, &c->d_ff, what, err));
        TRY(get_int(j, "n_positions", 0, 1024, 1, PT_MAX_POS, &c->max_pos, what, err));
        TRY(get_float(j, "layer_norm_epsilon", 1e-5, 0, 1, &c->norm_eps, what, err));
        json_t *act = json_object_get(j, "activation_function");
        if (act && (!json_is_string(act) || (strcmp(json_string_value(act), "gelu_new") &&
                                             strcmp(json_string_value(act), "gelu_pytorch_tanh"))))
            return pt_errf(err, PT_EUNSUPPORTED,
                           "%s: \"activation_function\" must be \"gelu_new\" (GELU, tanh approximation)", what);
        c->n_kv_heads = c->n_heads;
        c->head_dim = c->d_model / c->n_heads;
        c->tie_embeddings = 1;
        c->attn_bias = c->mlp_bias = 1;
    } else {
        return pt_errf(err, PT_EUNSUPPORTED, "%s: model_type \"%s\" is not supported (llama, gpt2)", what, type);
    }
    TRY(get_int(j, "bos_token_id", 0, -1, 0, PT_MAX_VOCAB, &c->bos_token_id, what, err));
    TRY(get_eos(j, c, what, err));
#undef TRY
    return pt_config_validate(c, what, err);
}

int pt_config_load(const char *path, pt_config *c, pt_err *err) {
    json_t *j = pt_json_load_file(path, PT_CONFIG_MAX_BYTES, err);
    if (!j) return err ? err->code : PT_EFORMAT;
    int rc = pt_config_from_json(j, path, c, err);
    json_decref(j);
    return rc;
}

json_t *pt_config_to_json(const pt_config *c) {
    json_t *j = json_object();
    json_t *eos = NULL;
    if (c->n_eos == 1) eos = json_integer(c->eos_token_ids[0]);
    else if (c->n_eos > 1) {
        eos = json_array();
        for (int i = 0; i < c->n_eos; i++) json_array_append_new(eos, json_integer(c->eos_token_ids[i]));
    }
    if (c->arch == PT_ARCH_LLAMA) {
        json_object_set_new(j, "architectures", json_pack("[s]", "LlamaForCausalLM"));
        json_object_set_new(j, "model_type", json_string("llama"));
        json_object_set_new(j, "vocab_size", json_integer(c->vocab_size));
        json_object_set_new(j, "hidden_size", json_integer(c->d_model));
        json_object_set_new(j, "intermediate_size", json_integer(c->d_ff));
        json_object_set_new(j, "num_hidden_layers", json_integer(c->n_layers));
        json_object_set_new(j, "num_attention_heads", json_integer(c->n_heads));
        json_object_set_new(j, "num_key_value_heads", json_integer(c->n_kv_heads));
        json_object_set_new(j, "head_dim", json_integer(c->head_dim));
        json_object_set_new(j, "max_position_embeddings", json_integer(c->max_pos));
        json_object_set_new(j, "rms_norm_eps", json_real(c->norm_eps));
        json_object_set_new(j, "rope_theta", json_real(c->rope_theta));
        json_object_set_new(j, "tie_word_embeddings", json_boolean(c->tie_embeddings));
        json_object_set_new(j, "attention_bias", json_boolean(c->attn_bias));
        json_object_set_new(j, "mlp_bias", json_boolean(c->mlp_bias));
        json_object_set_new(j, "hidden_act", json_string("silu"));
    } else {
        json_object_set_new(j, "architectures", json_pack("[s]", "GPT2LMHeadModel"));
        json_object_set_new(j, "model_type", json_string("gpt2"));
        json_object_set_new(j, "vocab_size", json_integer(c->vocab_size));
        json_object_set_new(j, "n_embd", json_integer(c->d_model));
        json_object_set_new(j, "n_layer", json_integer(c->n_layers));
        json_object_set_new(j, "n_head", json_integer(c->n_heads));
        json_object_set_new(j, "n_inner", json_integer(c->d_ff));
        json_object_set_new(j, "n_positions", json_integer(c->max_pos));
        json_object_set_new(j, "layer_norm_epsilon", json_real(c->norm_eps));
        json_object_set_new(j, "activation_function", json_string("gelu_new"));
    }
    if (c->bos_token_id >= 0) json_object_set_new(j, "bos_token_id", json_integer(c->bos_token_id));
    if (eos) json_object_set_new(j, "eos_token_id", eos);
    json_object_set_new(j, "torch_dtype", json_string("float32"));
    return j;
}
