/* see modelfile.h */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/json.h"
#include "engine/convert.h"
#include "engine/gguf.h"
#include "engine/modelfile.h"
#include "engine/tokenizer.h"

#define PT_INDEX_MAX_BYTES (64u << 20)

/* A shard name from the index must be a plain file name in the same directory. */
static int shard_name_ok(const char *s) {
    return *s && !strchr(s, '/') && strcmp(s, ".") && strcmp(s, "..") && strlen(s) < 256;
}

int pt_hf_read_weights(const char *dir, pt_tensors *ts, pt_err *err) {
    char *single = pt_path_join(dir, "model.safetensors");
    char *index = pt_path_join(dir, "model.safetensors.index.json");
    int rc = PT_OK;
    if (!single || !index) {
        rc = pt_errf(err, PT_ENOMEM, "out of memory");
        goto out;
    }
    if (pt_exists(single)) {
        rc = pt_safetensors_read(single, ts, err);
        goto out;
    }
    if (!pt_exists(index)) {
        rc = pt_errf(err, PT_ENOTFOUND, "%s: no model.safetensors or model.safetensors.index.json", dir);
        goto out;
    }
    json_t *j = pt_json_load_file(index, PT_INDEX_MAX_BYTES, err);
    if (!j) {
        rc = err ? err->code : PT_EFORMAT;
        goto out;
    }
    json_t *wm = json_object_get(j, "weight_map");
    if (!json_is_object(wm)) {
        rc = pt_errf(err, PT_EFORMAT, "%s: no \"weight_map\" object", index);
        json_decref(j);
        goto out;
    }
    /* Read each distinct shard once, then check the map and the shards agree exactly. */
    json_t *seen = json_object();
    const char *name;
    json_t *v;
    json_object_foreach(wm, name, v) {
        if (!json_is_string(v) || !shard_name_ok(json_string_value(v))) {
            rc = pt_errf(err, PT_EFORMAT, "%s: weight_map[\"%s\"] is not a file name in this directory", index, name);
            break;
        }
        const char *shard = json_string_value(v);
        if (json_object_get(seen, shard)) continue;
        json_object_set_new(seen, shard, json_true());
        char *p = pt_path_join(dir, shard);
        rc = pt_safetensors_read(p, ts, err);
        free(p);
        if (rc) break;
    }
    if (!rc) {
        json_object_foreach(wm, name, v) {
            if (!pt_tensors_find(ts, name)) {
                rc = pt_errf(err, PT_EFORMAT, "%s: tensor '%s' is not in shard %s", index, name, json_string_value(v));
                break;
            }
        }
        if (!rc && json_object_size(wm) != ts->n)
            rc = pt_errf(err, PT_EFORMAT, "%s: the shards hold %zu tensors but weight_map lists %zu", index, ts->n,
                         json_object_size(wm));
    }
    json_decref(seen);
    json_decref(j);
out:
    free(single);
    free(index);
    return rc;
}

static int ends_with(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcmp(s + a - b, suf);
}

/* Removes tensor i from the set (its data stays in the mapping). */
static void drop_tensor(pt_tensors *ts, size_t i) {
    free(ts->t[i].name);
    free(ts->t[i].owned);
    memmove(&ts->t[i], &ts->t[i + 1], (ts->n - i - 1) * sizeof ts->t[0]);
    ts->n--;
}

/* HF checkpoints differ in small ways; bring them to the one internal naming (convert.h). */
static int normalise_hf(pt_model_files *mf, pt_err *err) {
    pt_tensors *ts = &mf->tensors;
    for (size_t i = 0; i < ts->n;) {
        char *nm = ts->t[i].name;
        if (mf->config.arch == PT_ARCH_GPT2) {
            if (!strncmp(nm, "transformer.", 12)) {
                const char *rest = nm + 12;
                if (pt_tensors_find(ts, rest))
                    return pt_errf(err, PT_EFORMAT, "%s: tensor '%s' appears with and without the transformer. prefix",
                                   mf->path, rest);
                memmove(nm, rest, strlen(rest) + 1);
            }
            if (ends_with(nm, ".attn.bias") || ends_with(nm, ".attn.masked_bias") || !strcmp(nm, "lm_head.weight")) {
                drop_tensor(ts, i);
                continue;
            }
        } else if (ends_with(nm, ".self_attn.rotary_emb.inv_freq")) {
            drop_tensor(ts, i);
            continue;
        } else if (!strcmp(nm, "lm_head.weight") && mf->config.tie_embeddings) {
            drop_tensor(ts, i); /* some tied checkpoints still save the copy */
            continue;
        }
        i++;
    }
    return PT_OK;
}

static int check_one(const pt_model_files *mf, const char *name, int ndim, int64_t d0, int64_t d1, pt_err *err) {
    const pt_tensor *t = pt_tensors_find(&mf->tensors, name);
    if (!t) return pt_errf(err, PT_ENOTFOUND, "%s: missing tensor '%s'", mf->path, name);
    int ok = t->ndim == ndim && t->shape[0] == d0 && (ndim < 2 || t->shape[1] == d1);
    if (!ok) {
        char got[128] = "";
        size_t at = 0;
        for (int i = 0; i < t->ndim && at < sizeof got - 24; i++)
            at += (size_t)snprintf(got + at, sizeof got - at, "%s%lld", i ? ", " : "", (long long)t->shape[i]);
        if (ndim == 1)
            return pt_errf(err, PT_EFORMAT, "%s: tensor '%s' has shape [%s], the config needs [%lld]", mf->path, name,
                           got, (long long)d0);
        return pt_errf(err, PT_EFORMAT, "%s: tensor '%s' has shape [%s], the config needs [%lld, %lld]", mf->path,
                       name, got, (long long)d0, (long long)d1);
    }
    if (t->dtype != PT_F32 && t->dtype != PT_F16 && t->dtype != PT_BF16 && !pt_dtype_is_quant(t->dtype))
        return pt_errf(err, PT_EUNSUPPORTED, "%s: tensor '%s' is %s (F32, F16, BF16, Q8_0, Q4_0 or Q4_K-Q6_K needed)",
                       mf->path, name, pt_dtype_name(t->dtype));
    if (pt_dtype_is_quant(t->dtype) && ndim == 1)
        return pt_errf(err, PT_EUNSUPPORTED, "%s: tensor '%s': 1-D tensors cannot be %s", mf->path, name,
                       pt_dtype_name(t->dtype));
    return PT_OK;
}

int pt_model_files_check(const pt_model_files *mf, pt_err *err) {
    const pt_config *c = &mf->config;
    int64_t V = c->vocab_size, d = c->d_model, ff = c->d_ff, q = (int64_t)c->n_heads * c->head_dim,
            kv = (int64_t)c->n_kv_heads * c->head_dim;
    char nm[160];
    int rc = PT_OK;
    json_t *expected = json_object(); /* the set of names the config implies */
    if (!expected) return pt_errf(err, PT_ENOMEM, "out of memory");
#define CHK(ndim, a, b, ...)                                                 \
    do {                                                                     \
        snprintf(nm, sizeof nm, __VA_ARGS__);                                \
        if ((rc = check_one(mf, nm, ndim, a, b, err))) goto out;             \
        json_object_set_new(expected, nm, json_true());                      \
    } while (0)
    if (c->arch == PT_ARCH_LLAMA) {
        CHK(2, V, d, "model.embed_tokens.weight");
        CHK(1, d, 0, "model.norm.weight");
        if (!c->tie_embeddings) CHK(2, V, d, "lm_head.weight");
        for (int l = 0; l < c->n_layers; l++) {
            CHK(1, d, 0, "model.layers.%d.input_layernorm.weight", l);
            CHK(1, d, 0, "model.layers.%d.post_attention_layernorm.weight", l);
            if (pt_config_gemma(c)) {
                CHK(1, d, 0, "model.layers.%d.pre_feedforward_layernorm.weight", l);
                CHK(1, d, 0, "model.layers.%d.post_feedforward_layernorm.weight", l);
            }
            if (pt_config_fused(c)) {
                CHK(2, q + 2 * kv, d, "model.layers.%d.self_attn.qkv_proj.weight", l);
                CHK(2, 2 * ff, d, "model.layers.%d.mlp.gate_up_proj.weight", l);
            } else {
                CHK(2, q, d, "model.layers.%d.self_attn.q_proj.weight", l);
                CHK(2, kv, d, "model.layers.%d.self_attn.k_proj.weight", l);
                CHK(2, kv, d, "model.layers.%d.self_attn.v_proj.weight", l);
                CHK(2, ff, d, "model.layers.%d.mlp.gate_proj.weight", l);
                CHK(2, ff, d, "model.layers.%d.mlp.up_proj.weight", l);
            }
            CHK(2, d, q, "model.layers.%d.self_attn.o_proj.weight", l);
            CHK(2, d, ff, "model.layers.%d.mlp.down_proj.weight", l);
            if (c->attn_bias) {
                CHK(1, q, 0, "model.layers.%d.self_attn.q_proj.bias", l);
                CHK(1, kv, 0, "model.layers.%d.self_attn.k_proj.bias", l);
                CHK(1, kv, 0, "model.layers.%d.self_attn.v_proj.bias", l);
            }
            if (c->o_bias) CHK(1, d, 0, "model.layers.%d.self_attn.o_proj.bias", l);
            if (c->qk_norm) {
                CHK(1, c->head_dim, 0, "model.layers.%d.self_attn.q_norm.weight", l);
                CHK(1, c->head_dim, 0, "model.layers.%d.self_attn.k_norm.weight", l);
            }
            if (c->mlp_bias) {
                CHK(1, ff, 0, "model.layers.%d.mlp.gate_proj.bias", l);
                CHK(1, ff, 0, "model.layers.%d.mlp.up_proj.bias", l);
                CHK(1, d, 0, "model.layers.%d.mlp.down_proj.bias", l);
            }
        }
    } else {
        CHK(2, V, d, "wte.weight");
        CHK(2, c->max_pos, d, "wpe.weight");
        CHK(1, d, 0, "ln_f.weight");
        CHK(1, d, 0, "ln_f.bias");
        for (int l = 0; l < c->n_layers; l++) {
            CHK(1, d, 0, "h.%d.ln_1.weight", l);
            CHK(1, d, 0, "h.%d.ln_1.bias", l);
            CHK(2, d, 3 * d, "h.%d.attn.c_attn.weight", l);
            CHK(1, 3 * d, 0, "h.%d.attn.c_attn.bias", l);
            CHK(2, d, d, "h.%d.attn.c_proj.weight", l);
            CHK(1, d, 0, "h.%d.attn.c_proj.bias", l);
            CHK(1, d, 0, "h.%d.ln_2.weight", l);
            CHK(1, d, 0, "h.%d.ln_2.bias", l);
            CHK(2, d, ff, "h.%d.mlp.c_fc.weight", l);
            CHK(1, ff, 0, "h.%d.mlp.c_fc.bias", l);
            CHK(2, ff, d, "h.%d.mlp.c_proj.weight", l);
            CHK(1, d, 0, "h.%d.mlp.c_proj.bias", l);
        }
    }
#undef CHK
    for (size_t i = 0; i < mf->tensors.n && !rc; i++)
        if (!json_object_get(expected, mf->tensors.t[i].name))
            rc = pt_errf(err, PT_EFORMAT, "%s: unexpected tensor '%s' for this %s config", mf->path,
                         mf->tensors.t[i].name, pt_family_name(c->family));
out:
    json_decref(expected);
    return rc;
}

static int is_gguf_file(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    char m[4] = {0};
    size_t n = fread(m, 1, 4, f);
    fclose(f);
    return n == 4 && !memcmp(m, "GGUF", 4);
}

static char *dir_of(const char *path) {
    char *c = strdup(path);
    if (!c) return NULL;
    char *slash = strrchr(c, '/');
    if (!slash) {
        free(c);
        return strdup(".");
    }
    if (slash == c) slash[1] = 0;
    else *slash = 0;
    return c;
}

int pt_model_files_open(pt_model_files *mf, const char *path, pt_err *err) {
    memset(mf, 0, sizeof *mf);
    pt_tensors_init(&mf->tensors);
    struct stat st;
    if (stat(path, &st) < 0) return pt_errf(err, PT_ENOTFOUND, "%s: no such model file or directory", path);
    if (!(mf->path = strdup(path))) return pt_errf(err, PT_ENOMEM, "out of memory");
    int rc;
    if (S_ISDIR(st.st_mode)) {
        mf->format = PT_FORMAT_HF_DIR;
        mf->dir = strdup(path);
        char *cfg = pt_path_join(path, "config.json");
        rc = pt_config_load(cfg, &mf->config, err);
        free(cfg);
        if (!rc) rc = pt_hf_read_weights(path, &mf->tensors, err);
        if (!rc) rc = normalise_hf(mf, err);
    } else if (is_gguf_file(path)) {
        mf->format = PT_FORMAT_GGUF;
        mf->dir = dir_of(path);
        if (!(mf->gguf = calloc(1, sizeof *mf->gguf))) rc = pt_errf(err, PT_ENOMEM, "out of memory");
        else if (!(rc = pt_gguf_open(path, mf->gguf, err)))
            rc = pt_gguf_load_model(mf->gguf, &mf->config, &mf->tensors, err);
    } else {
        rc = pt_errf(err, PT_EFORMAT, "%s: not a model directory and not a GGUF file (no \"GGUF\" magic)", path);
    }
    if (!rc) rc = pt_model_files_check(mf, err);
    if (rc) pt_model_files_close(mf);
    return rc;
}

void pt_model_files_close(pt_model_files *mf) {
    if (!mf) return;
    pt_tensors_free(&mf->tensors);
    pt_gguf_close(mf->gguf);
    free(mf->gguf);
    free(mf->path);
    free(mf->dir);
    mf->gguf = NULL;
    mf->path = mf->dir = NULL;
}

int pt_model_files_tokenizer(const pt_model_files *mf, pt_tokenizer **out, pt_err *err) {
    *out = NULL;
    char *tj = mf->dir ? pt_path_join(mf->dir, "tokenizer.json") : NULL;
    int rc;
    if (tj && pt_exists(tj) && (mf->format == PT_FORMAT_HF_DIR || !mf->gguf)) {
        rc = pt_tokenizer_load(tj, out, err);
    } else if (mf->gguf) {
        pt_gguf_vocab v;
        rc = pt_gguf_vocab_load(mf->gguf, &v, err);
        if (!rc) {
            rc = pt_tokenizer_from_vocab(&v.spec, out, err);
            pt_gguf_vocab_free(&v);
        }
        if (rc) pt_err_prefix(err, "%s", mf->path);
    } else {
        rc = pt_errf(err, PT_ENOTFOUND, "%s: no tokenizer.json beside the model and no GGUF tokenizer metadata",
                     mf->path);
    }
    free(tj);
    return rc;
}
