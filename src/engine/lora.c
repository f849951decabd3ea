/* see lora.h */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/fileio.h"
#include "common/json.h"
#include "common/rng.h"
#include "common/util.h"
#include "engine/convert.h"
#include "engine/gguf.h"
#include "engine/lora.h"
#include "engine/modelfile.h"

static const char *const short_names[PT_PROJ_COUNT] = {"q", "k", "v", "o", "gate", "up", "down"};
static const char *const module_names[PT_PROJ_COUNT] = {"q_proj", "k_proj", "v_proj", "o_proj",
                                                        "gate_proj", "up_proj", "down_proj"};
static const char *const gguf_names[PT_PROJ_COUNT] = {"attn_q", "attn_k", "attn_v", "attn_output",
                                                      "ffn_gate", "ffn_up", "ffn_down"};

const char *pt_lora_target_name(pt_proj p) { return p < PT_PROJ_COUNT ? short_names[p] : "?"; }
const char *pt_lora_module_name(pt_proj p) { return p < PT_PROJ_COUNT ? module_names[p] : "?"; }

/* "self_attn" or "mlp": the HF sub-module a projection lives in. */
static const char *parent_of(int p) { return p <= PT_PROJ_O ? "self_attn" : "mlp"; }

static void proj_shape(const pt_config *c, int p, int *out, int *in) {
    int d = c->d_model, qd = c->n_heads * c->head_dim, kvd = c->n_kv_heads * c->head_dim, F = c->d_ff;
    switch (p) {
    case PT_PROJ_Q: *out = qd, *in = d; break;
    case PT_PROJ_K:
    case PT_PROJ_V: *out = kvd, *in = d; break;
    case PT_PROJ_O: *out = d, *in = qd; break;
    case PT_PROJ_GATE:
    case PT_PROJ_UP: *out = F, *in = d; break;
    default: *out = d, *in = F; break;
    }
}

static int need_llama(const pt_config *c, pt_err *err) {
    if (c->arch != PT_ARCH_LLAMA)
        return pt_errf(err, PT_EUNSUPPORTED,
                       "LoRA needs a Llama-architecture model (GPT-2's fused c_attn has no separate q, k, v targets)");
    return PT_OK;
}

int pt_lora_parse_targets(const char *list, const pt_config *c, unsigned *mask, pt_err *err) {
    *mask = 0;
    int rc = need_llama(c, err);
    if (rc) return rc;
    if (!list || !*list) return pt_errf(err, PT_EINVAL, "no LoRA targets (choose among q,k,v,o,gate,up,down or all)");
    const char *s = list;
    while (*s) {
        const char *e = strchr(s, ',');
        size_t n = e ? (size_t)(e - s) : strlen(s);
        while (n && *s == ' ') s++, n--;
        while (n && s[n - 1] == ' ') n--;
        int found = -1;
        if (n == 3 && !strncmp(s, "all", 3)) {
            *mask |= (1u << PT_PROJ_COUNT) - 1;
            found = 0;
        }
        for (int p = 0; p < PT_PROJ_COUNT && found < 0; p++)
            if ((strlen(short_names[p]) == n && !strncmp(s, short_names[p], n)) ||
                (strlen(module_names[p]) == n && !strncmp(s, module_names[p], n)))
                found = p, *mask |= 1u << p;
        if (found < 0)
            return pt_errf(err, PT_EINVAL, "unknown LoRA target '%.*s' (a Llama model has q,k,v,o,gate,up,down)",
                           (int)(n > 64 ? 64 : n), s);
        if (!e) break;
        s = e + 1;
    }
    if (!*mask) return pt_errf(err, PT_EINVAL, "no LoRA targets");
    return PT_OK;
}

/* Allocates the adapter's block for c (zeroed). */
static int lora_alloc(const pt_config *c, int rank, float alpha, unsigned targets, pt_lora **out, pt_err *err) {
    *out = NULL;
    int rc = need_llama(c, err);
    if (rc) return rc;
    if (rank < 1 || rank > 65536) return pt_errf(err, PT_EINVAL, "LoRA rank %d is out of range (1..65536)", rank);
    if (!(alpha > 0) || !isfinite(alpha)) return pt_errf(err, PT_EINVAL, "LoRA alpha must be positive");
    if (!targets || targets >= (1u << PT_PROJ_COUNT)) return pt_errf(err, PT_EINVAL, "no LoRA targets");
    pt_lora *l = calloc(1, sizeof *l);
    if (!l) return pt_errf(err, PT_ENOMEM, "out of memory");
    l->rank = rank, l->alpha = alpha, l->targets = targets, l->n_layers = c->n_layers;
    l->m = calloc((size_t)c->n_layers * PT_PROJ_COUNT, sizeof *l->m);
    size_t total = 0;
    for (int p = 0; p < PT_PROJ_COUNT; p++) {
        if (!(targets >> p & 1)) continue;
        int o, i;
        proj_shape(c, p, &o, &i);
        total += (size_t)rank * ((size_t)o + (size_t)i);
    }
    total *= (size_t)c->n_layers;
    l->block = l->m ? calloc(total ? total : 1, sizeof(float)) : NULL;
    if (!l->block) {
        pt_lora_free(l);
        return pt_errf(err, PT_ENOMEM, "out of memory for a LoRA adapter of %zu parameters", total);
    }
    l->n_params = total;
    size_t off = 0;
    for (int L = 0; L < c->n_layers; L++)
        for (int p = 0; p < PT_PROJ_COUNT; p++) {
            if (!(targets >> p & 1)) continue;
            pt_lora_mat *m = &l->m[L * PT_PROJ_COUNT + p];
            proj_shape(c, p, &m->out, &m->in);
            m->A = l->block + off, off += (size_t)rank * m->in;
            m->B = l->block + off, off += (size_t)rank * m->out;
        }
    *out = l;
    return PT_OK;
}

int pt_lora_new(const pt_config *c, int rank, float alpha, unsigned targets, uint64_t seed, pt_lora **out,
                pt_err *err) {
    int rc = lora_alloc(c, rank, alpha, targets, out, err);
    if (rc) return rc;
    pt_lora *l = *out;
    pt_rng r;
    pt_rng_seed(&r, seed);
    for (int i = 0; i < l->n_layers * PT_PROJ_COUNT; i++) {
        pt_lora_mat *m = &l->m[i];
        if (!m->A) continue;
        /* kaiming_uniform_(a=√5) on (r, in): bound = √(6 / ((1 + 5)·in)) = 1/√in */
        double bound = 1.0 / sqrt((double)m->in);
        for (size_t j = 0; j < (size_t)l->rank * m->in; j++)
            m->A[j] = (float)((2.0 * pt_rng_uniform(&r) - 1.0) * bound);
    }
    return PT_OK;
}

void pt_lora_free(pt_lora *l) {
    if (!l) return;
    free(l->m);
    free(l->block);
    free(l->base_model);
    free(l);
}

float pt_lora_scaling(const pt_lora *l) { return l->alpha / (float)l->rank; }

/* ---- PEFT -------------------------------------------------------------------------------- */

static void peft_name(char *out, size_t cap, int layer, int p, char ab) {
    snprintf(out, cap, "base_model.model.model.layers.%d.%s.%s.lora_%c.weight", layer, parent_of(p), module_names[p],
             ab);
}

int pt_lora_save_peft(const pt_lora *l, const pt_config *c, const char *dir, pt_err *err) {
    (void)c;
    int rc = pt_mkdirs(dir, 0, err);
    if (rc) return rc;
    size_t n = 0, cap = (size_t)l->n_layers * PT_PROJ_COUNT * 2;
    pt_tensor *ts = calloc(cap ? cap : 1, sizeof *ts);
    char (*names)[128] = calloc(cap ? cap : 1, sizeof *names);
    json_t *cfg = json_object(), *mods = json_array();
    char *cfgp = pt_path_join(dir, "adapter_config.json"), *stp = pt_path_join(dir, "adapter_model.safetensors");
    char *js = NULL;
    if (!ts || !names || !cfg || !mods || !cfgp || !stp) {
        rc = pt_errf(err, PT_ENOMEM, "out of memory");
        goto out;
    }
    for (int L = 0; L < l->n_layers; L++)
        for (int p = 0; p < PT_PROJ_COUNT; p++) {
            const pt_lora_mat *m = &l->m[L * PT_PROJ_COUNT + p];
            if (!m->A) continue;
            for (int k = 0; k < 2; k++, n++) {
                peft_name(names[n], sizeof names[n], L, p, k ? 'B' : 'A');
                ts[n].name = names[n];
                ts[n].dtype = PT_F32;
                ts[n].ndim = 2;
                ts[n].shape[0] = k ? m->out : l->rank;
                ts[n].shape[1] = k ? l->rank : m->in;
                ts[n].data = k ? m->B : m->A;
                ts[n].nbytes = (size_t)l->rank * (size_t)(k ? m->out : m->in) * sizeof(float);
            }
        }
    json_t *meta = json_pack("{ss}", "format", "pt");
    rc = pt_safetensors_write(stp, ts, n, meta, err);
    json_decref(meta);
    if (rc) goto out;
    for (int p = 0; p < PT_PROJ_COUNT; p++)
        if (l->targets >> p & 1) json_array_append_new(mods, json_string(module_names[p]));
    json_object_set_new(cfg, "peft_type", json_string("LORA"));
    json_object_set_new(cfg, "task_type", json_string("CAUSAL_LM"));
    json_object_set_new(cfg, "base_model_name_or_path", l->base_model ? json_string(l->base_model) : json_null());
    json_object_set_new(cfg, "r", json_integer(l->rank));
    json_object_set_new(cfg, "lora_alpha", json_real(l->alpha));
    json_object_set_new(cfg, "lora_dropout", json_real(l->dropout));
    json_object_set(cfg, "target_modules", mods);
    json_object_set_new(cfg, "bias", json_string("none"));
    json_object_set_new(cfg, "fan_in_fan_out", json_false());
    json_object_set_new(cfg, "inference_mode", json_true());
    json_object_set_new(cfg, "init_lora_weights", json_true());
    json_object_set_new(cfg, "modules_to_save", json_null());
    json_object_set_new(cfg, "layers_to_transform", json_null());
    json_object_set_new(cfg, "layers_pattern", json_null());
    json_object_set_new(cfg, "rank_pattern", json_object());
    json_object_set_new(cfg, "alpha_pattern", json_object());
    json_object_set_new(cfg, "use_rslora", json_false());
    json_object_set_new(cfg, "use_dora", json_false());
    json_object_set_new(cfg, "revision", json_null());
    if (!(js = json_dumps(cfg, JSON_INDENT(2)))) {
        rc = pt_errf(err, PT_ENOMEM, "out of memory");
        goto out;
    }
    rc = pt_write_atomic(cfgp, js, strlen(js), 0644, err);
out:
    free(ts);
    free(names);
    json_decref(cfg);
    json_decref(mods);
    free(cfgp);
    free(stp);
    free(js);
    return rc;
}

/* Reads the adapter_config.json keys that matter; rejects options that change the math. */
static int peft_config(const char *path, int *rank, float *alpha, float *dropout, unsigned *targets, char **base,
                       pt_err *err) {
    json_t *j = pt_json_load_file(path, 1u << 20, err);
    if (!j) return err->code ? err->code : PT_EFORMAT;
    int rc = PT_OK;
    if (!json_is_object(j)) {
        rc = pt_errf(err, PT_EFORMAT, "%s: not a JSON object", path);
        goto out;
    }
    const char *pt = json_string_value(json_object_get(j, "peft_type"));
    if (pt && strcmp(pt, "LORA")) {
        rc = pt_errf(err, PT_EUNSUPPORTED, "%s: peft_type is '%s' (only LORA)", path, pt);
        goto out;
    }
    json_t *r = json_object_get(j, "r"), *a = json_object_get(j, "lora_alpha"), *dr = json_object_get(j, "lora_dropout");
    if (!json_is_integer(r) || json_integer_value(r) < 1 || json_integer_value(r) > 65536) {
        rc = pt_errf(err, PT_EFORMAT, "%s: $.r must be an integer in 1..65536", path);
        goto out;
    }
    *rank = (int)json_integer_value(r);
    *alpha = a ? (float)json_number_value(a) : 8.f; /* PEFT's default lora_alpha */
    if ((a && !json_is_number(a)) || !(*alpha > 0) || !isfinite(*alpha)) {
        rc = pt_errf(err, PT_EFORMAT, "%s: $.lora_alpha must be a positive number", path);
        goto out;
    }
    *dropout = json_is_number(dr) ? (float)json_number_value(dr) : 0.f;
    static const char *const bad_true[] = {"use_dora", "use_rslora", "fan_in_fan_out"};
    for (size_t i = 0; i < 3; i++)
        if (json_is_true(json_object_get(j, bad_true[i]))) {
            rc = pt_errf(err, PT_EUNSUPPORTED, "%s: $.%s is not supported", path, bad_true[i]);
            goto out;
        }
    const char *bias = json_string_value(json_object_get(j, "bias"));
    if (bias && strcmp(bias, "none")) {
        rc = pt_errf(err, PT_EUNSUPPORTED, "%s: $.bias '%s' is not supported (only none)", path, bias);
        goto out;
    }
    static const char *const bad_obj[] = {"rank_pattern", "alpha_pattern"};
    for (size_t i = 0; i < 2; i++) {
        json_t *o = json_object_get(j, bad_obj[i]);
        if (o && !json_is_null(o) && !(json_is_object(o) && json_object_size(o) == 0)) {
            rc = pt_errf(err, PT_EUNSUPPORTED, "%s: $.%s is not supported", path, bad_obj[i]);
            goto out;
        }
    }
    json_t *ltt = json_object_get(j, "layers_to_transform");
    if (ltt && !json_is_null(ltt)) {
        rc = pt_errf(err, PT_EUNSUPPORTED, "%s: $.layers_to_transform is not supported", path);
        goto out;
    }
    json_t *mods = json_object_get(j, "target_modules");
    *targets = 0;
    size_t i;
    json_t *v;
    if (json_is_string(mods)) mods = NULL; /* a regex: the tensors decide */
    json_array_foreach(mods, i, v) {
        const char *s = json_string_value(v);
        int f = -1;
        for (int p = 0; s && p < PT_PROJ_COUNT; p++)
            if (!strcmp(s, module_names[p])) f = p;
        if (f < 0) {
            rc = pt_errf(err, PT_EUNSUPPORTED, "%s: $.target_modules[%zu] '%s' is not a Llama projection", path, i,
                         s ? s : "(not a string)");
            goto out;
        }
        *targets |= 1u << f;
    }
    const char *b = json_string_value(json_object_get(j, "base_model_name_or_path"));
    *base = b ? strdup(b) : NULL;
out:
    json_decref(j);
    return rc;
}

/* Parses "blk.N.NAME.weight.lora_X" or the PEFT name into (layer, proj, is_b). 0 or -1. */
static int parse_name(const char *s, int gguf, int *layer, int *p, int *is_b) {
    char mod[32], ab[8], parent[16];
    int n = -1, L;
    if (gguf) {
        if (sscanf(s, "blk.%d.%31[a-z_].weight.lora_%1[ab]%n", &L, mod, ab, &n) != 3 || s[n]) return -1;
        for (int q = 0; q < PT_PROJ_COUNT; q++)
            if (!strcmp(mod, gguf_names[q])) *p = q, *layer = L, *is_b = ab[0] == 'b';
    } else {
        if (sscanf(s, "base_model.model.model.layers.%d.%15[a-z_].%31[a-z_].lora_%1[AB].weight%n", &L, parent, mod, ab,
                   &n) != 4 || s[n])
            return -1;
        *p = -1;
        for (int q = 0; q < PT_PROJ_COUNT; q++)
            if (!strcmp(mod, module_names[q]) && !strcmp(parent, parent_of(q))) *p = q;
        if (*p < 0) return -1;
        *layer = L, *is_b = ab[0] == 'B';
        return 0;
    }
    return *layer == L ? 0 : -1;
}

static void permute_b(float *dst, const float *src, int rows, int r, int n_head, int to_gguf) {
    int hd = rows / n_head, half = hd / 2;
    for (int h = 0; h < n_head; h++)
        for (int s = 0; s < 2; s++)
            for (int j = 0; j < half; j++) {
                int hf = h * hd + s * half + j, gg = h * hd + 2 * j + s;
                int from = to_gguf ? hf : gg, to = to_gguf ? gg : hf;
                memcpy(dst + (size_t)to * r, src + (size_t)from * r, (size_t)r * sizeof(float));
            }
}

static int ends_with(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcmp(s + a - b, suf);
}

/* Fills l from the tensors ts (names PEFT or GGUF). */
static int fill_from(pt_lora *l, const pt_config *c, const pt_tensors *ts, int gguf, const char *what, pt_err *err) {
    unsigned char *seen = calloc((size_t)l->n_layers * PT_PROJ_COUNT * 2, 1);
    float *tmp = NULL;
    if (!seen) return pt_errf(err, PT_ENOMEM, "out of memory");
    int rc = PT_OK;
    for (size_t i = 0; i < ts->n && !rc; i++) {
        const pt_tensor *t = &ts->t[i];
        int L = -1, p = -1, b = 0;
        if (parse_name(t->name, gguf, &L, &p, &b) || p < 0) {
            rc = pt_errf(err, PT_EFORMAT, "%s: tensor '%s' is not a LoRA tensor of a Llama model", what, t->name);
            break;
        }
        if (L < 0 || L >= l->n_layers || !(l->targets >> p & 1)) {
            rc = pt_errf(err, PT_EFORMAT, "%s: tensor '%s' is for a layer or target the adapter does not have", what,
                         t->name);
            break;
        }
        pt_lora_mat *m = &l->m[L * PT_PROJ_COUNT + p];
        int64_t e0 = b ? m->out : l->rank, e1 = b ? l->rank : m->in;
        if (t->ndim != 2 || t->shape[0] != e0 || t->shape[1] != e1) {
            rc = pt_errf(err, PT_EFORMAT, "%s: tensor '%s' has the wrong shape (expected [%lld, %lld])", what, t->name,
                         (long long)e0, (long long)e1);
            break;
        }
        if (t->dtype != PT_F32 && t->dtype != PT_F16 && t->dtype != PT_BF16) {
            rc = pt_errf(err, PT_EUNSUPPORTED, "%s: tensor '%s' has dtype %s (F32, F16, BF16)", what, t->name,
                         pt_dtype_name(t->dtype));
            break;
        }
        size_t k = ((size_t)L * PT_PROJ_COUNT + p) * 2 + b;
        if (seen[k]++) {
            rc = pt_errf(err, PT_EFORMAT, "%s: tensor '%s' appears twice", what, t->name);
            break;
        }
        float *dst = b ? m->B : m->A;
        size_t numel = (size_t)e0 * (size_t)e1;
        if (gguf && b && (p == PT_PROJ_Q || p == PT_PROJ_K)) {
            free(tmp);
            if (!(tmp = malloc(numel * sizeof(float)))) {
                rc = pt_errf(err, PT_ENOMEM, "out of memory");
                break;
            }
            pt_to_f32(t->dtype, t->data, tmp, numel);
            permute_b(dst, tmp, m->out, l->rank, p == PT_PROJ_Q ? c->n_heads : c->n_kv_heads, 0);
        } else {
            pt_to_f32(t->dtype, t->data, dst, numel);
        }
    }
    for (int L = 0; !rc && L < l->n_layers; L++)
        for (int p = 0; !rc && p < PT_PROJ_COUNT; p++)
            for (int b = 0; !rc && b < 2; b++)
                if ((l->targets >> p & 1) && !seen[((size_t)L * PT_PROJ_COUNT + p) * 2 + b]) {
                    char n[128];
                    if (gguf) snprintf(n, sizeof n, "blk.%d.%s.weight.lora_%c", L, gguf_names[p], b ? 'b' : 'a');
                    else peft_name(n, sizeof n, L, p, b ? 'B' : 'A');
                    rc = pt_errf(err, PT_ENOTFOUND, "%s: missing tensor '%s'", what, n);
                }
    free(seen);
    free(tmp);
    return rc;
}

/* The targets the tensor names mention. */
static unsigned targets_of(const pt_tensors *ts, int gguf) {
    unsigned t = 0;
    for (size_t i = 0; i < ts->n; i++) {
        int L, p = -1, b;
        if (!parse_name(ts->t[i].name, gguf, &L, &p, &b) && p >= 0) t |= 1u << p;
    }
    return t;
}

static int load_gguf(const char *path, const pt_config *c, pt_lora **out, pt_err *err) {
    pt_gguf g;
    int rc = pt_gguf_open(path, &g, err);
    if (rc) return rc;
    pt_tensors ts;
    pt_tensors_init(&ts);
    const char *s;
    size_t n;
    double alpha = 0;
    const pt_gguf_kv *kv;
    int rank = 0;
    if (!(kv = pt_gguf_get(&g, "general.type")) || pt_gguf_kv_str(&g, kv, &s, &n, err) || n != 7 ||
        memcmp(s, "adapter", 7)) {
        rc = pt_errf(err, PT_EFORMAT, "%s: general.type is not \"adapter\"", path);
        goto out;
    }
    if (!(kv = pt_gguf_get(&g, "adapter.type")) || pt_gguf_kv_str(&g, kv, &s, &n, err) || n != 4 ||
        memcmp(s, "lora", 4)) {
        rc = pt_errf(err, PT_EFORMAT, "%s: adapter.type is not \"lora\"", path);
        goto out;
    }
    if ((kv = pt_gguf_get(&g, "general.architecture")) && !pt_gguf_kv_str(&g, kv, &s, &n, err) &&
        !(n == 5 && !memcmp(s, "llama", 5))) {
        rc = pt_errf(err, PT_EUNSUPPORTED, "%s: general.architecture is '%.*s' (llama)", path, (int)(n > 32 ? 32 : n), s);
        goto out;
    }
    if (!(kv = pt_gguf_get(&g, "adapter.lora.alpha")) || pt_gguf_kv_float(&g, kv, &alpha, err) || !(alpha > 0)) {
        rc = pt_errf(err, PT_EFORMAT, "%s: adapter.lora.alpha is missing or not positive", path);
        goto out;
    }
    if ((rc = pt_gguf_to_tensors(&g, &ts, err))) goto out;
    for (size_t i = 0; i < ts.n; i++)
        if (ends_with(ts.t[i].name, ".lora_a") && ts.t[i].ndim == 2) {
            rank = (int)ts.t[i].shape[0];
            break;
        }
    if (rank < 1) {
        rc = pt_errf(err, PT_EFORMAT, "%s: no lora_a tensor", path);
        goto out;
    }
    if ((rc = lora_alloc(c, rank, (float)alpha, targets_of(&ts, 1), out, err))) goto out;
    if ((rc = fill_from(*out, c, &ts, 1, path, err))) {
        pt_lora_free(*out);
        *out = NULL;
    }
out:
    pt_tensors_free(&ts);
    pt_gguf_close(&g);
    return rc;
}

int pt_lora_load(const char *path, const pt_config *c, pt_lora **out, pt_err *err) {
    *out = NULL;
    int rc = need_llama(c, err);
    if (rc) return rc;
    /* A GGUF file? */
    FILE *f = fopen(path, "rb");
    char magic[4] = {0};
    if (f) {
        size_t got = fread(magic, 1, 4, f);
        fclose(f);
        if (got == 4 && !memcmp(magic, "GGUF", 4)) return load_gguf(path, c, out, err);
    }
    char *dir = NULL;
    if (ends_with(path, ".safetensors")) {
        dir = strdup(path);
        char *slash = dir ? strrchr(dir, '/') : NULL;
        if (slash) *slash = 0;
        else if (dir) strcpy(dir, ".");
    } else {
        dir = strdup(path);
    }
    char *cfgp = dir ? pt_path_join(dir, "adapter_config.json") : NULL;
    char *stp = !dir ? NULL : ends_with(path, ".safetensors") ? strdup(path) : pt_path_join(dir, "adapter_model.safetensors");
    char *base = NULL;
    pt_tensors ts;
    pt_tensors_init(&ts);
    if (!cfgp || !stp) {
        rc = pt_errf(err, PT_ENOMEM, "out of memory");
        goto out;
    }
    if (!pt_exists(cfgp)) {
        rc = pt_errf(err, PT_ENOTFOUND, "%s: no adapter_config.json (a PEFT adapter directory or a LoRA GGUF)", path);
        goto out;
    }
    int rank = 0;
    float alpha = 0, dropout = 0;
    unsigned targets = 0;
    if ((rc = peft_config(cfgp, &rank, &alpha, &dropout, &targets, &base, err))) goto out;
    if ((rc = pt_safetensors_read(stp, &ts, err))) goto out;
    unsigned named = targets_of(&ts, 0);
    if (!targets) targets = named;
    if ((rc = lora_alloc(c, rank, alpha, targets, out, err))) goto out;
    (*out)->dropout = dropout;
    (*out)->base_model = base, base = NULL;
    if ((rc = fill_from(*out, c, &ts, 0, stp, err))) {
        pt_lora_free(*out);
        *out = NULL;
    }
out:
    pt_tensors_free(&ts);
    free(base);
    free(dir);
    free(cfgp);
    free(stp);
    return rc;
}

/* ---- GGUF -------------------------------------------------------------------------------- */

int pt_lora_save_gguf(const pt_lora *l, const pt_config *c, const char *path, pt_err *err) {
    pt_gguf_writer *w = pt_gguf_writer_new();
    if (!w) return pt_errf(err, PT_ENOMEM, "out of memory");
    float *perm = malloc(l->n_params * sizeof(float) + 1);
    int rc = perm ? PT_OK : pt_errf(err, PT_ENOMEM, "out of memory");
    if (!rc) rc = pt_gguf_set_str(w, "general.architecture", "llama", err);
    if (!rc) rc = pt_gguf_set_str(w, "general.type", "adapter", err);
    if (!rc) rc = pt_gguf_set_str(w, "adapter.type", "lora", err);
    if (!rc) rc = pt_gguf_set_f32(w, "adapter.lora.alpha", l->alpha, err);
    size_t off = 0;
    for (int L = 0; !rc && L < l->n_layers; L++)
        for (int p = 0; !rc && p < PT_PROJ_COUNT; p++) {
            const pt_lora_mat *m = &l->m[L * PT_PROJ_COUNT + p];
            if (!m->A) continue;
            char n[96];
            int64_t sa[2] = {l->rank, m->in}, sb[2] = {m->out, l->rank};
            snprintf(n, sizeof n, "blk.%d.%s.weight.lora_a", L, gguf_names[p]);
            if ((rc = pt_gguf_add_tensor(w, n, PT_F32, 2, sa, m->A, err))) break;
            const float *B = m->B;
            if (p == PT_PROJ_Q || p == PT_PROJ_K) {
                float *dst = perm + off;
                off += (size_t)m->out * l->rank;
                permute_b(dst, m->B, m->out, l->rank, p == PT_PROJ_Q ? c->n_heads : c->n_kv_heads, 1);
                B = dst;
            }
            snprintf(n, sizeof n, "blk.%d.%s.weight.lora_b", L, gguf_names[p]);
            rc = pt_gguf_add_tensor(w, n, PT_F32, 2, sb, B, err);
        }
    if (!rc) rc = pt_gguf_write(w, path, NULL, NULL, NULL, err);
    pt_gguf_writer_free(w);
    free(perm);
    return rc;
}

/* ---- merge ------------------------------------------------------------------------------- */

int pt_lora_merge(const char *base, const pt_lora *l, float scale, const char *out_dir, pt_err *err) {
    pt_model_files mf;
    int rc = pt_model_files_open(&mf, base, err);
    if (rc) return rc;
    const pt_config *c = &mf.config;
    if ((rc = need_llama(c, err))) goto out;
    if (c->n_layers != l->n_layers) {
        rc = pt_errf(err, PT_EINVAL, "%s: the adapter has %d layers, the model %d", base, l->n_layers, c->n_layers);
        goto out;
    }
    const float s = pt_lora_scaling(l) * scale;
    for (int L = 0; L < l->n_layers && !rc; L++)
        for (int p = 0; p < PT_PROJ_COUNT && !rc; p++) {
            const pt_lora_mat *m = &l->m[L * PT_PROJ_COUNT + p];
            if (!m->A) continue;
            char n[128];
            snprintf(n, sizeof n, "model.layers.%d.%s.%s.weight", L, parent_of(p), module_names[p]);
            pt_tensor *t = pt_tensors_find(&mf.tensors, n);
            int eo, ei;
            proj_shape(c, p, &eo, &ei);
            if (!t || t->ndim != 2 || t->shape[0] != eo || t->shape[1] != ei || eo != m->out || ei != m->in) {
                rc = pt_errf(err, PT_EFORMAT, "%s: tensor '%s' is missing or does not fit the adapter", base, n);
                break;
            }
            size_t numel = (size_t)eo * (size_t)ei;
            float *w = malloc(numel * sizeof(float));
            if (!w) {
                rc = pt_errf(err, PT_ENOMEM, "out of memory");
                break;
            }
            if (pt_dtype_is_quant(t->dtype) || t->dtype == PT_F32 || t->dtype == PT_F16 || t->dtype == PT_BF16) {
                pt_to_f32(t->dtype, t->data, w, numel);
            } else {
                free(w);
                rc = pt_errf(err, PT_EUNSUPPORTED, "%s: tensor '%s' has dtype %s", base, n, pt_dtype_name(t->dtype));
                break;
            }
            /* W += s · B A, row by row: W[o, :] += s Σ_k B[o, k] A[k, :] */
            for (int o = 0; o < eo; o++) {
                float *wr = w + (size_t)o * ei;
                for (int k = 0; k < l->rank; k++) {
                    float bk = s * m->B[(size_t)o * l->rank + k];
                    const float *ar = m->A + (size_t)k * ei;
                    for (int i = 0; i < ei; i++) wr[i] += bk * ar[i];
                }
            }
            free(t->owned);
            t->owned = w;
            t->data = w;
            t->dtype = PT_F32;
            t->nbytes = numel * sizeof(float);
        }
    if (!rc) {
        pt_convert_opts o = {.to = PT_FORMAT_HF_DIR, .dtype = -1};
        rc = pt_hf_write_model(&mf, out_dir, &o, err);
    }
out:
    pt_model_files_close(&mf);
    return rc;
}

int pt_lora_parse_spec(const char *spec, char **path, float *scale, pt_err *err) {
    *path = NULL;
    *scale = 1.f;
    const char *colon = strrchr(spec, ':');
    double v;
    size_t n = strlen(spec);
    if (colon && colon[1] && !pt_parse_double(colon + 1, &v)) {
        if (!isfinite(v)) return pt_errf(err, PT_EINVAL, "--lora %s: the scale must be finite", spec);
        *scale = (float)v;
        n = (size_t)(colon - spec);
    }
    if (!n) return pt_errf(err, PT_EINVAL, "--lora: no adapter path");
    *path = strndup(spec, n);
    return *path ? PT_OK : pt_errf(err, PT_ENOMEM, "out of memory");
}
