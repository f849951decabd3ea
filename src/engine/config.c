/* see config.h */
#include <math.h>
#include <string.h>

#include "common/json.h"
#include "engine/config.h"
#include "engine/tensor.h"

#define PT_CONFIG_MAX_BYTES (4u << 20)
#define PT_PI 3.14159265358979323846

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

const char *pt_family_name(pt_family f) {
    static const char *const names[] = {"llama", "gpt2", "qwen2", "qwen3", "mistral", "gemma2", "gemma3_text", "phi3"};
    return (unsigned)f < PT_FAM_COUNT ? names[f] : "?";
}

int pt_config_gemma(const pt_config *c) { return c->family == PT_FAM_GEMMA2 || c->family == PT_FAM_GEMMA3; }
int pt_config_fused(const pt_config *c) { return c->family == PT_FAM_PHI3; }

int pt_config_layer_windowed(const pt_config *c, int layer) {
    return c->sliding_window > 0 && (c->swa_pattern <= 0 || (layer + 1) % c->swa_pattern != 0);
}

#define TRY(x)                     \
    do {                           \
        int rc_ = (x);             \
        if (rc_) return rc_;       \
    } while (0)

/* longrope's short_factor or long_factor: head_dim/2 positive numbers. */
static int rope_factors(const json_t *rs, const char *key, int n, float *out, const char *what, pt_err *err) {
    json_t *a = json_object_get(rs, key);
    if (!json_is_array(a) || json_array_size(a) != (size_t)n || n > PT_MAX_ROPE_FACTORS)
        return pt_errf(err, PT_EFORMAT, "%s: rope_scaling \"%s\" must list head_dim/2 (%d) numbers%s", what, key, n,
                       n > PT_MAX_ROPE_FACTORS ? " (head_dim up to 512 supported)" : "");
    for (int i = 0; i < n; i++) {
        json_t *v = json_array_get(a, (size_t)i);
        if (!json_is_number(v) || !(json_number_value(v) > 0 && json_number_value(v) < 1e9))
            return pt_errf(err, PT_EFORMAT, "%s: rope_scaling \"%s\"[%d] must be a positive number", what, key, i);
        out[i] = (float)json_number_value(v);
    }
    return PT_OK;
}

/* longrope as transformers derives it: with original_max_position_embeddings at the top of the
 * config (Phi-3's), the factor is max_position_embeddings over it; attention_factor defaults
 * to √(1 + ln(factor) / ln(original)) (1 when factor ≤ 1). */
static int longrope(const json_t *j, const json_t *rs, pt_config *c, const char *what, pt_err *err) {
    pt_rope_scaling *r = &c->rope;
    int top = json_object_get(j, "original_max_position_embeddings") != NULL;
    TRY(get_int(top ? j : rs, "original_max_position_embeddings", 0, c->max_pos, 1, PT_MAX_POS, &r->orig_max_pos, what,
                err));
    if (top) r->factor = (float)((double)c->max_pos / r->orig_max_pos);
    else TRY(get_float(rs, "factor", 1, 1e-6, 1e6, &r->factor, what, err));
    double def = r->factor <= 1 ? 1.0 : sqrt(1 + log(r->factor) / log((double)r->orig_max_pos));
    TRY(get_float(rs, "attention_factor", def, 1e-6, 1e6, &r->attn_factor, what, err));
    TRY(rope_factors(rs, "short_factor", c->head_dim / 2, r->short_factor, what, err));
    return rope_factors(rs, "long_factor", c->head_dim / 2, r->long_factor, what, err);
}

/* rope_scaling (or a newer config's rope_parameters carrying a rope_type). */
static int rope_scaling(const json_t *j, pt_config *c, const char *what, pt_err *err) {
    json_t *rs = json_object_get(j, "rope_scaling");
    json_t *rp = json_object_get(j, "rope_parameters");
    if ((!rs || json_is_null(rs)) && json_is_object(rp) && json_object_get(rp, "rope_type")) rs = rp;
    pt_rope_scaling *r = &c->rope;
    memset(r, 0, sizeof *r);
    if (!rs || json_is_null(rs)) return PT_OK;
    if (!json_is_object(rs)) return pt_errf(err, PT_EFORMAT, "%s: \"rope_scaling\" must be an object", what);
    json_t *t = json_object_get(rs, "rope_type");
    if (!t) t = json_object_get(rs, "type");
    if (!json_is_string(t)) return pt_errf(err, PT_EFORMAT, "%s: \"rope_scaling\" has no \"rope_type\"", what);
    static const char *const types[] = {"default", "linear", "dynamic", "yarn", "llama3", "longrope", "su"};
    r->type = (pt_rope_type)-1;
    for (int i = 0; i < 7; i++)
        if (!strcmp(json_string_value(t), types[i])) r->type = (pt_rope_type)(i < 6 ? i : PT_ROPE_LONGROPE);
    if ((int)r->type < 0)
        return pt_errf(err, PT_EUNSUPPORTED,
                       "%s: \"rope_scaling\" type \"%s\" is not supported (default, linear, dynamic, yarn, llama3, "
                       "longrope)",
                       what, json_string_value(t));
    if (r->type == PT_ROPE_DEFAULT) return PT_OK;
    if (r->type == PT_ROPE_LONGROPE) return longrope(j, rs, c, what, err);
    json_t *f = json_object_get(rs, "factor");
    if (!json_is_number(f) || !(json_number_value(f) >= 1 && json_number_value(f) <= 1e6))
        return pt_errf(err, PT_EFORMAT, "%s: \"rope_scaling\" \"factor\" must be a number >= 1", what);
    r->factor = (float)json_number_value(f);
    TRY(get_int(rs, "original_max_position_embeddings", r->type == PT_ROPE_LLAMA3, c->max_pos, 1, PT_MAX_POS,
                &r->orig_max_pos, what, err));
    TRY(get_float(rs, "low_freq_factor", 1, 1e-6, 1e6, &r->low_freq_factor, what, err));
    TRY(get_float(rs, "high_freq_factor", 4, 1e-6, 1e6, &r->high_freq_factor, what, err));
    if (r->type == PT_ROPE_LLAMA3 && !(r->high_freq_factor > r->low_freq_factor))
        return pt_errf(err, PT_EFORMAT, "%s: rope_scaling \"high_freq_factor\" must exceed \"low_freq_factor\"", what);
    TRY(get_float(rs, "beta_fast", 32, 1e-6, 1e6, &r->beta_fast, what, err));
    TRY(get_float(rs, "beta_slow", 1, 1e-6, 1e6, &r->beta_slow, what, err));
    TRY(get_bool(rs, "truncate", 1, &r->truncate, what, err));
    if (r->type == PT_ROPE_YARN) {
        /* As transformers: with original_max_position_embeddings given, the factor is the
         * ratio of the two context lengths; attention_factor defaults to 0.1·ln(factor) + 1
         * (mscale and mscale_all_dim, DeepSeek's variant, are refused). */
        if (json_object_get(rs, "mscale") || json_object_get(rs, "mscale_all_dim"))
            return pt_errf(err, PT_EUNSUPPORTED, "%s: rope_scaling \"mscale\" is not supported", what);
        if (json_object_get(rs, "original_max_position_embeddings"))
            r->factor = (float)((double)c->max_pos / r->orig_max_pos);
        double def = r->factor <= 1 ? 1.0 : 0.1 * log(r->factor) + 1.0;
        TRY(get_float(rs, "attention_factor", def, 1e-6, 1e6, &r->attn_factor, what, err));
    }
    return PT_OK;
}

/* A soft-capping value: the key absent gives def, null or 0 none, else a positive number. */
static int get_softcap(const json_t *j, const char *key, double def, float *out, const char *what, pt_err *err) {
    json_t *v = json_object_get(j, key);
    if (!v) {
        *out = (float)def;
        return PT_OK;
    }
    return get_float(j, key, 0, 0, 1e6, out, what, err);
}

/* The sliding-window layout of Gemma: "layer_types" when the config has it (it must repeat
 * one period: local layers then one global, or all local / all global), else Gemma 2's
 * alternation (period 2) or Gemma 3's "sliding_window_pattern" (default 6). */
static int gemma_layers(const json_t *j, pt_family fam, const char *what, pt_config *c, pt_err *err) {
    json_t *lt = json_object_get(j, "layer_types");
    if (!lt || json_is_null(lt)) {
        if (fam == PT_FAM_GEMMA2) c->swa_pattern = 2;
        else TRY(get_int(j, "sliding_window_pattern", 0, 6, 1, PT_MAX_LAYERS, &c->swa_pattern, what, err));
        if (c->swa_pattern == 1) c->sliding_window = 0; /* every layer global */
        return PT_OK;
    }
    if (!json_is_array(lt) || json_array_size(lt) != (size_t)c->n_layers)
        return pt_errf(err, PT_EFORMAT, "%s: \"layer_types\" must list num_hidden_layers (%d) entries", what,
                       c->n_layers);
    int first_full = 0, n_full = 0;
    for (int i = 0; i < c->n_layers; i++) {
        const char *t = json_string_value(json_array_get(lt, (size_t)i));
        int full = t && !strcmp(t, "full_attention");
        if (!full && (!t || strcmp(t, "sliding_attention")))
            return pt_errf(err, PT_EFORMAT, "%s: \"layer_types\"[%d] must be \"sliding_attention\" or \"full_attention\"",
                           what, i);
        if (full && !n_full++) first_full = i + 1;
    }
    c->swa_pattern = n_full ? first_full : 0;
    if (n_full == c->n_layers) c->sliding_window = 0, c->swa_pattern = 0;
    for (int i = 0; i < c->n_layers && c->sliding_window; i++) {
        const char *t = json_string_value(json_array_get(lt, (size_t)i));
        if (pt_config_layer_windowed(c, i) != !strcmp(t, "sliding_attention"))
            return pt_errf(err, PT_EUNSUPPORTED,
                           "%s: \"layer_types\" does not repeat one period of local layers then a global one "
                           "(layer %d); not supported",
                           what, i);
    }
    return PT_OK;
}

/* √d_model as HF's Gemma multiplies the embeddings by it: a tensor of the model's dtype. */
static float embed_scale_of(int d, const json_t *j) {
    float s = sqrtf((float)d);
    const char *dt = json_string_value(json_object_get(j, "torch_dtype"));
    if (!dt) dt = json_string_value(json_object_get(j, "dtype"));
    pt_dtype t = !dt ? PT_F32 : !strcmp(dt, "bfloat16") ? PT_BF16 : !strcmp(dt, "float16") ? PT_F16 : PT_F32;
    uint16_t h;
    if (t == PT_F32) return s;
    pt_from_f32(t, &s, &h, 1);
    pt_to_f32(t, &h, &s, 1);
    return s;
}

/* Gemma 2 and Gemma 3's text model (defaults as transformers' Gemma2Config and
 * Gemma3TextConfig). */
static int gemma_fields(const json_t *j, pt_family fam, const char *what, pt_config *c, pt_err *err) {
    int g2 = fam == PT_FAM_GEMMA2;
    c->qk_norm = !g2;
    TRY(get_int(j, "head_dim", 0, 256, 1, 4096, &c->head_dim, what, err));
    TRY(get_bool(j, "tie_word_embeddings", 1, &c->tie_embeddings, what, err));
    if (!json_object_get(j, "rope_theta") && !g2) c->rope_theta = 1000000.f;
    json_t *rp = json_object_get(j, "rope_parameters");
    if (json_is_object(rp) && json_object_get(rp, "full_attention"))
        return pt_errf(err, PT_EUNSUPPORTED, "%s: \"rope_parameters\" per layer type is not supported yet (use "
                       "rope_theta, rope_local_base_freq, rope_scaling)", what);
    if (c->attn_bias || c->mlp_bias)
        return pt_errf(err, PT_EUNSUPPORTED, "%s: \"%s\" is not supported for %s", what,
                       c->attn_bias ? "attention_bias" : "mlp_bias", pt_family_name(fam));
    TRY(get_int(j, "query_pre_attn_scalar", 0, 256, 1, 1 << 20, &c->query_pre_attn_scalar, what, err));
    c->attn_scale = 1.f / sqrtf((float)c->query_pre_attn_scalar);
    TRY(get_softcap(j, "attn_logit_softcapping", g2 ? 50.0 : 0, &c->attn_softcap, what, err));
    TRY(get_softcap(j, "final_logit_softcapping", g2 ? 30.0 : 0, &c->final_softcap, what, err));
    json_t *sw = json_object_get(j, "sliding_window");
    TRY(get_int(j, "sliding_window", 0, sw ? 0 : 4096, 1, PT_MAX_POS * 4LL, &c->sliding_window, what, err));
    TRY(gemma_layers(j, fam, what, c, err));
    if (!g2) TRY(get_float(j, "rope_local_base_freq", 10000, 1e-3, 1e12, &c->rope_local_theta, what, err));
    if (g2 && c->rope.type != PT_ROPE_DEFAULT)
        return pt_errf(err, PT_EUNSUPPORTED, "%s: \"rope_scaling\" is not supported for gemma2", what);
    if (!g2 && c->rope.type != PT_ROPE_DEFAULT && c->rope.type != PT_ROPE_LINEAR)
        return pt_errf(err, PT_EUNSUPPORTED, "%s: \"rope_scaling\" of Gemma 3 must be linear", what);
    c->embed_scale = embed_scale_of(c->d_model, j);
    json_t *act = json_object_get(j, "hidden_activation");
    if (!act || json_is_null(act)) act = json_object_get(j, "hidden_act");
    if (act && (!json_is_string(act) || strcmp(json_string_value(act), "gelu_pytorch_tanh")))
        return pt_errf(err, PT_EUNSUPPORTED, "%s: \"hidden_activation\" must be \"gelu_pytorch_tanh\" for %s", what,
                       pt_family_name(fam));
    return PT_OK;
}

/* Phi-3 (transformers' Phi3Config). Its long-context variants' rope_scaling (longrope, su)
 * is refused by rope_scaling() with the type named. */
static int phi3_fields(const json_t *j, const char *what, pt_config *c, pt_err *err) {
    float prf;
    TRY(get_float(j, "partial_rotary_factor", 1, 0, 1, &prf, what, err));
    if (prf != 1.f)
        return pt_errf(err, PT_EUNSUPPORTED, "%s: \"partial_rotary_factor\" %g (partial RoPE) is not supported", what,
                       prf);
    if (c->attn_bias || c->mlp_bias)
        return pt_errf(err, PT_EUNSUPPORTED, "%s: \"%s\" is not supported for phi3", what,
                       c->attn_bias ? "attention_bias" : "mlp_bias");
    TRY(get_int(j, "sliding_window", 0, 0, 1, PT_MAX_POS * 4LL, &c->sliding_window, what, err));
    if (c->sliding_window >= c->max_pos) c->sliding_window = 0;
    json_t *act = json_object_get(j, "hidden_act");
    if (act && (!json_is_string(act) || strcmp(json_string_value(act), "silu")))
        return pt_errf(err, PT_EUNSUPPORTED, "%s: \"hidden_act\" must be \"silu\" for phi3", what);
    return PT_OK;
}

/* Llama and the families that run its code path. */
static int llama_like(const json_t *j, pt_family fam, const char *what, pt_config *c, pt_err *err) {
    c->arch = PT_ARCH_LLAMA;
    c->family = fam;
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
    TRY(rope_scaling(j, c, what, err));
    TRY(get_bool(j, "tie_word_embeddings", 0, &c->tie_embeddings, what, err));
    if (fam == PT_FAM_QWEN2) { /* q, k, v always carry biases, o never */
        c->attn_bias = 1;
    } else {
        TRY(get_bool(j, "attention_bias", 0, &c->attn_bias, what, err));
        c->o_bias = c->attn_bias;
    }
    TRY(get_bool(j, "mlp_bias", 0, &c->mlp_bias, what, err));
    c->qk_norm = fam == PT_FAM_QWEN3;
    /* Mistral: every layer attends to the last sliding_window positions (transformers'
     * default 4096 when the key is absent; null: no window). Qwen's per-layer windows
     * (use_sliding_window, max_window_layers) are not implemented yet. */
    if (fam == PT_FAM_MISTRAL) {
        json_t *sw = json_object_get(j, "sliding_window");
        TRY(get_int(j, "sliding_window", 0, sw ? 0 : 4096, 1, PT_MAX_POS * 4LL, &c->sliding_window, what, err));
        if (c->sliding_window >= c->max_pos) c->sliding_window = 0; /* wider than the context: no window */
    }
    if (fam == PT_FAM_GEMMA2 || fam == PT_FAM_GEMMA3) return gemma_fields(j, fam, what, c, err);
    if (fam == PT_FAM_PHI3) return phi3_fields(j, what, c, err);
    int use_sw = 0;
    if (fam == PT_FAM_QWEN2 || fam == PT_FAM_QWEN3) TRY(get_bool(j, "use_sliding_window", 0, &use_sw, what, err));
    if (use_sw)
        return pt_errf(err, PT_EUNSUPPORTED, "%s: \"use_sliding_window\" (Qwen's sliding-window layers) is not supported yet",
                       what);
    json_t *act = json_object_get(j, "hidden_act");
    if (act && (!json_is_string(act) || strcmp(json_string_value(act), "silu")))
        return pt_errf(err, PT_EUNSUPPORTED, "%s: \"hidden_act\" must be \"silu\" for %s", what, pt_family_name(fam));
    return PT_OK;
}
#undef TRY

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
    if (c->arch == PT_ARCH_LLAMA && c->rope.type == PT_ROPE_DYNAMIC && c->head_dim < 4)
        return pt_errf(err, PT_EFORMAT, "%s: dynamic rope_scaling needs head_dim >= 4", what);
    if (c->sliding_window < 0 || (c->sliding_window && c->arch != PT_ARCH_LLAMA))
        return pt_errf(err, PT_EFORMAT, "%s: sliding_window %d out of range", what, c->sliding_window);
    if (c->bos_token_id >= c->vocab_size) return pt_errf(err, PT_EFORMAT, "%s: bos_token_id %d >= vocab_size", what, c->bos_token_id);
    const struct {
        float v, hi;
        const char *name;
    } ranges[] = {{c->embed_scale, 1e6f, "embedding scale"},
                  {c->attn_scale, 1e6f, "query_pre_attn_scalar"},
                  {c->attn_softcap, 1e6f, "attn_logit_softcapping"},
                  {c->final_softcap, 1e6f, "final_logit_softcapping"},
                  {c->rope_local_theta, 1e12f, "rope_local_base_freq"}};
    for (size_t i = 0; i < sizeof ranges / sizeof ranges[0]; i++)
        if (!(ranges[i].v >= 0 && ranges[i].v < ranges[i].hi))
            return pt_errf(err, PT_EFORMAT, "%s: %s %g out of range", what, ranges[i].name, ranges[i].v);
    if (c->swa_pattern < 0 || c->swa_pattern > PT_MAX_LAYERS)
        return pt_errf(err, PT_EFORMAT, "%s: sliding-window pattern %d out of range", what, c->swa_pattern);
    if ((pt_config_gemma(c) || pt_config_fused(c)) && c->arch != PT_ARCH_LLAMA)
        return pt_errf(err, PT_EFORMAT, "%s: %s must run the Llama code path", what, pt_family_name(c->family));
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
    pt_family fam = PT_FAM_GPT2;
    for (int f = 0; f < PT_FAM_COUNT; f++)
        if (f != PT_FAM_GPT2 && !strcmp(type, pt_family_name((pt_family)f))) fam = (pt_family)f;
    if (fam != PT_FAM_GPT2) {
        TRY(llama_like(j, fam, what, c, err));
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
        c->attn_bias = c->o_bias = c->mlp_bias = 1;
        c->family = PT_FAM_GPT2;
    } else {
        return pt_errf(err, PT_EUNSUPPORTED,
                       "%s: model_type \"%s\" is not supported (llama, qwen2, qwen3, mistral, gemma2, gemma3_text, phi3, "
                       "gpt2)%s",
                       what, type, !strcmp(type, "gemma3") ? "; for Gemma 3 use its text model (gemma3_text)" : "");
    }
    TRY(get_int(j, "bos_token_id", 0, -1, 0, PT_MAX_VOCAB, &c->bos_token_id, what, err));
    TRY(get_eos(j, c, what, err));
#undef TRY
    return pt_config_validate(c, what, err);
}

/* yarn: the dimension index at which a frequency turns num_rot times over the original context. */
static double yarn_dim(double num_rot, int hd, double base, int max_pos) {
    return hd * log(max_pos / (num_rot * 2 * PT_PI)) / (2 * log(base));
}

float pt_rope_inv_freq(const pt_config *c, int seq_len, float *inv, int hd) {
    const pt_rope_scaling *r = &c->rope;
    const int half = hd / 2;
    double base = c->rope_theta, lo = 0, hi = 0;
    if (r->type == PT_ROPE_DYNAMIC && seq_len > r->orig_max_pos)
        base *= pow(r->factor * seq_len / r->orig_max_pos - (r->factor - 1), (double)hd / (hd - 2));
    if (r->type == PT_ROPE_YARN) {
        lo = yarn_dim(r->beta_fast, hd, base, r->orig_max_pos);
        hi = yarn_dim(r->beta_slow, hd, base, r->orig_max_pos);
        if (r->truncate) lo = floor(lo), hi = ceil(hi);
        if (lo < 0) lo = 0;
        if (hi > hd - 1) hi = hd - 1;
        if (lo == hi) hi += 0.001;
    }
    for (int i = 0; i < half; i++) {
        /* as transformers: base^(2i/hd) in float32, its inverse in float32 */
        float pf = (float)pow(base, (double)(2 * i) / hd), f = 1.f / pf;
        switch (r->type) {
        case PT_ROPE_LINEAR: f /= r->factor; break;
        case PT_ROPE_LONGROPE: f = 1.f / ((seq_len > r->orig_max_pos ? r->long_factor : r->short_factor)[i] * pf); break;
        case PT_ROPE_YARN: {
            float ramp = (float)(((double)i - lo) / (hi - lo));
            ramp = ramp < 0 ? 0 : ramp > 1 ? 1 : ramp;
            float extra = 1.f - ramp; /* share of the original (extrapolated) frequency */
            f = 1.f / (r->factor * pf) * (1.f - extra) + f * extra;
            break;
        }
        case PT_ROPE_LLAMA3: {
            double wavelen = 2 * PT_PI / f, lo_wl = r->orig_max_pos / r->low_freq_factor,
                   hi_wl = r->orig_max_pos / r->high_freq_factor;
            if (wavelen > lo_wl) f /= r->factor;
            else if (wavelen >= hi_wl) {
                float sm = (float)((r->orig_max_pos / wavelen - r->low_freq_factor) /
                                   (r->high_freq_factor - r->low_freq_factor));
                f = (1.f - sm) * f / r->factor + sm * f;
            }
            break;
        }
        default: break;
        }
        inv[i] = f;
    }
    return r->type == PT_ROPE_YARN || r->type == PT_ROPE_LONGROPE ? r->attn_factor : 1.f;
}

int pt_config_load(const char *path, pt_config *c, pt_err *err) {
    json_t *j = pt_json_load_file(path, PT_CONFIG_MAX_BYTES, err);
    if (!j) return err ? err->code : PT_EFORMAT;
    int rc = pt_config_from_json(j, path, c, err);
    json_decref(j);
    return rc;
}

static json_t *factors_json(const float *f, int n) {
    json_t *a = json_array();
    for (int i = 0; i < n; i++) json_array_append_new(a, json_real(f[i]));
    return a;
}

static json_t *rope_json(const pt_config *c) {
    static const char *const types[] = {"default", "linear", "dynamic", "yarn", "llama3", "longrope"};
    const pt_rope_scaling *r = &c->rope;
    json_t *o = json_pack("{s:s, s:f}", "rope_type", types[r->type], "factor", (double)r->factor);
    if (r->type != PT_ROPE_LINEAR) json_object_set_new(o, "original_max_position_embeddings", json_integer(r->orig_max_pos));
    if (r->type == PT_ROPE_LLAMA3) {
        json_object_set_new(o, "low_freq_factor", json_real(r->low_freq_factor));
        json_object_set_new(o, "high_freq_factor", json_real(r->high_freq_factor));
    }
    if (r->type == PT_ROPE_LONGROPE) {
        json_object_set_new(o, "attention_factor", json_real(r->attn_factor));
        json_object_set_new(o, "short_factor", factors_json(r->short_factor, c->head_dim / 2));
        json_object_set_new(o, "long_factor", factors_json(r->long_factor, c->head_dim / 2));
    }
    if (r->type == PT_ROPE_YARN) {
        json_object_set_new(o, "attention_factor", json_real(r->attn_factor));
        json_object_set_new(o, "beta_fast", json_real(r->beta_fast));
        json_object_set_new(o, "beta_slow", json_real(r->beta_slow));
        json_object_set_new(o, "truncate", json_boolean(r->truncate));
    }
    return o;
}

static json_t *softcap_json(float v) { return v > 0 ? json_real(v) : json_null(); }

/* The keys of Gemma 2/3 and Phi-3 (added to the Llama ones by pt_config_to_json). */
static void gemma_phi3_json(const pt_config *c, json_t *j) {
    json_object_set_new(j, "sliding_window", c->sliding_window ? json_integer(c->sliding_window) : json_null());
    if (c->family == PT_FAM_PHI3) return;
    json_object_set_new(j, "hidden_activation", json_string("gelu_pytorch_tanh"));
    json_object_set_new(j, "query_pre_attn_scalar", json_integer(c->query_pre_attn_scalar));
    json_object_set_new(j, "attn_logit_softcapping", softcap_json(c->attn_softcap));
    json_object_set_new(j, "final_logit_softcapping", softcap_json(c->final_softcap));
    if (c->family == PT_FAM_GEMMA3) {
        json_object_set_new(j, "rope_local_base_freq", json_real(c->rope_local_theta));
        if (c->swa_pattern) json_object_set_new(j, "sliding_window_pattern", json_integer(c->swa_pattern));
    }
    json_t *lt = json_array();
    for (int i = 0; i < c->n_layers; i++)
        json_array_append_new(lt, json_string(pt_config_layer_windowed(c, i) ? "sliding_attention" : "full_attention"));
    json_object_set_new(j, "layer_types", lt);
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
        static const char *const archs[] = {"LlamaForCausalLM",  "",
                                            "Qwen2ForCausalLM",  "Qwen3ForCausalLM",
                                            "MistralForCausalLM", "Gemma2ForCausalLM",
                                            "Gemma3ForCausalLM", "Phi3ForCausalLM"};
        json_object_set_new(j, "architectures", json_pack("[s]", archs[c->family]));
        json_object_set_new(j, "model_type", json_string(pt_family_name(c->family)));
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
        if (c->family != PT_FAM_QWEN2) json_object_set_new(j, "attention_bias", json_boolean(c->attn_bias));
        if (c->rope.type != PT_ROPE_DEFAULT) json_object_set_new(j, "rope_scaling", rope_json(c));
        if (c->family == PT_FAM_MISTRAL)
            json_object_set_new(j, "sliding_window", c->sliding_window ? json_integer(c->sliding_window) : json_null());
        json_object_set_new(j, "mlp_bias", json_boolean(c->mlp_bias));
        json_object_set_new(j, "hidden_act", json_string(pt_config_gemma(c) ? "gelu_pytorch_tanh" : "silu"));
        if (pt_config_gemma(c) || c->family == PT_FAM_PHI3) gemma_phi3_json(c, j);
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
