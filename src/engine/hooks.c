/* see hooks.h */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/fileio.h"
#include "common/util.h"
#include "engine/hooks.h"
#include "engine/tensor.h"

#define PT_HOOK_MAX_CACHE_FLOATS ((size_t)1 << 32) /* 16 GiB of cached activations per set */

enum { OP_ADD, OP_SET, OP_ZERO, OP_MEAN };

typedef struct hook_op {
    int kind;
    float *v;         /* owned: [rows, width] or one row when rows == 0 */
    size_t rows;
    float scale;
    int32_t *pos;     /* owned, NULL = all */
    size_t npos;
    double *sum;      /* OP_MEAN: running sum [width] */
    size_t count;
} hook_op;

typedef struct hook_read {
    char *name;       /* owned */
    int site;
    int32_t *pos;     /* owned, NULL = all */
    size_t npos;
    float *data;      /* owned: rows back to back (pattern rows vary in length) */
    size_t nf, fcap;
    int32_t *row_pos; /* absolute position of each row */
    size_t *row_off;  /* float offset of each row */
    size_t rows, rcap;
    float *assembled; /* pattern: [heads, rows, k_len] built by get() */
} hook_read;

typedef struct hook_site {
    hook_op *ops;
    int n_ops;
    int read;         /* index into reads, or -1 */
} hook_site;

struct pt_hooks {
    const pt_config *c;
    int n_sites;
    hook_site **sites; /* [n_sites], NULL when nothing is registered */
    hook_read *reads;
    size_t n_reads;
};

static const char *const kind_names[PT_HOOK_KIND_COUNT] = {
    "hook_embed", "hook_pos_embed", "ln_final.hook_normalized", "logits",
    "hook_resid_pre", "attn.hook_q", "attn.hook_k", "attn.hook_v", "attn.q_norm.hook_normalized",
    "attn.k_norm.hook_normalized", "attn.hook_z", "attn.hook_pattern", "ln1_post.hook_normalized",
    "hook_attn_out", "hook_resid_mid", "mlp.hook_pre", "mlp.hook_post", "ln2_post.hook_normalized",
    "hook_mlp_out", "hook_resid_post"};

int pt_hook_n_sites(const pt_config *c) { return PT_HOOK_N_GLOBAL + c->n_layers * PT_HOOK_N_LAYER; }

static int valid_names_error(const pt_config *c, const char *name, pt_err *err) {
    char list[600];
    size_t o = 0;
    o += (size_t)snprintf(list + o, sizeof list - o, "hook_embed, %s",
                          pt_hook_site_exists(c, PT_HOOK_POS_EMBED) ? "hook_pos_embed, " : "");
    o += (size_t)snprintf(list + o, sizeof list - o, "blocks.{0..%d}.{", c->n_layers - 1);
    for (int k = PT_HOOK_N_GLOBAL; k < PT_HOOK_KIND_COUNT && o < sizeof list; k++)
        if (pt_hook_site_exists(c, pt_hook_site((pt_hook_kind)k, 0)))
            o += (size_t)snprintf(list + o, sizeof list - o, "%s%s", k > PT_HOOK_N_GLOBAL ? "," : "", kind_names[k]);
    if (o < sizeof list) snprintf(list + o, sizeof list - o, "}, ln_final.hook_normalized, logits");
    return pt_errf(err, PT_ENOTFOUND, "unknown hook '%s'; valid hooks: %s", name, list);
}

static pt_hook_kind site_kind(int site, int *layer);

int pt_hook_site_exists(const pt_config *c, int site) {
    int layer;
    if (site < 0 || site >= pt_hook_n_sites(c)) return 0;
    pt_hook_kind k = site_kind(site, &layer);
    if (k == PT_HOOK_POS_EMBED) return c->arch == PT_ARCH_GPT2;
    if (k == PT_HOOK_Q_NORM || k == PT_HOOK_K_NORM) return c->qk_norm;
    if (k == PT_HOOK_LN1_POST || k == PT_HOOK_LN2_POST) return pt_config_gemma(c);
    return 1;
}

int pt_hook_parse(const pt_config *c, const char *name, int *site, pt_err *err) {
    for (int k = 0; k < PT_HOOK_N_GLOBAL; k++)
        if (!strcmp(name, kind_names[k])) {
            if (!pt_hook_site_exists(c, k)) break;
            *site = k;
            return PT_OK;
        }
    if (!strncmp(name, "blocks.", 7)) {
        const char *p = name + 7;
        long layer = 0;
        int digits = 0;
        while (*p >= '0' && *p <= '9' && digits < 6) layer = layer * 10 + (*p++ - '0'), digits++;
        if (digits && *p == '.' && !(digits > 1 && name[7] == '0') && layer < c->n_layers) {
            p++;
            for (int k = PT_HOOK_N_GLOBAL; k < PT_HOOK_KIND_COUNT; k++)
                if (!strcmp(p, kind_names[k]) && pt_hook_site_exists(c, pt_hook_site((pt_hook_kind)k, (int)layer))) {
                    *site = pt_hook_site((pt_hook_kind)k, (int)layer);
                    return PT_OK;
                }
        }
    }
    return valid_names_error(c, name, err);
}

static pt_hook_kind site_kind(int site, int *layer) {
    if (site < PT_HOOK_N_GLOBAL) {
        *layer = -1;
        return (pt_hook_kind)site;
    }
    *layer = (site - PT_HOOK_N_GLOBAL) / PT_HOOK_N_LAYER;
    return (pt_hook_kind)(PT_HOOK_N_GLOBAL + (site - PT_HOOK_N_GLOBAL) % PT_HOOK_N_LAYER);
}

char *pt_hook_name(const pt_config *c, int site, char *buf, size_t cap) {
    int layer;
    pt_hook_kind k = site_kind(site, &layer);
    if (layer < 0) snprintf(buf, cap, "%s", kind_names[k]);
    else snprintf(buf, cap, "blocks.%d.%s", layer, kind_names[k]);
    return buf;
}

int pt_hook_row_shape(const pt_config *c, int site, int64_t *dims) {
    int layer;
    if (!pt_hook_site_exists(c, site)) return -1;
    switch (site_kind(site, &layer)) {
    case PT_HOOK_Q:
    case PT_HOOK_Q_NORM:
    case PT_HOOK_Z: dims[0] = c->n_heads, dims[1] = c->head_dim; return 2;
    case PT_HOOK_K:
    case PT_HOOK_K_NORM:
    case PT_HOOK_V: dims[0] = c->n_kv_heads, dims[1] = c->head_dim; return 2;
    case PT_HOOK_PATTERN: dims[0] = c->n_heads; return 1;
    case PT_HOOK_MLP_PRE:
    case PT_HOOK_MLP_POST: dims[0] = c->d_ff; return 1;
    case PT_HOOK_LOGITS: dims[0] = c->vocab_size; return 1;
    default: dims[0] = c->d_model; return 1;
    }
}

int pt_hook_width(const pt_config *c, int site) {
    int64_t d[2];
    int n = pt_hook_row_shape(c, site, d);
    return (int)(n == 2 ? d[0] * d[1] : d[0]);
}

int pt_hooks_new(const pt_config *c, pt_hooks **out, pt_err *err) {
    pt_hooks *h = calloc(1, sizeof *h);
    if (h) {
        h->c = c;
        h->n_sites = pt_hook_n_sites(c);
        h->sites = calloc((size_t)h->n_sites, sizeof *h->sites);
    }
    if (!h || !h->sites) {
        free(h);
        return pt_errf(err, PT_ENOMEM, "out of memory");
    }
    *out = h;
    return PT_OK;
}

void pt_hooks_free(pt_hooks *h) {
    if (!h) return;
    for (int s = 0; s < h->n_sites; s++) {
        hook_site *hs = h->sites[s];
        if (!hs) continue;
        for (int i = 0; i < hs->n_ops; i++) {
            free(hs->ops[i].v);
            free(hs->ops[i].pos);
            free(hs->ops[i].sum);
        }
        free(hs->ops);
        free(hs);
    }
    for (size_t i = 0; i < h->n_reads; i++) {
        hook_read *r = &h->reads[i];
        free(r->name), free(r->pos), free(r->data), free(r->row_pos), free(r->row_off), free(r->assembled);
    }
    free(h->reads);
    free(h->sites);
    free(h);
}

static hook_site *site_get(pt_hooks *h, int site) {
    if (!h->sites[site]) {
        h->sites[site] = calloc(1, sizeof(hook_site));
        if (h->sites[site]) h->sites[site]->read = -1;
    }
    return h->sites[site];
}

static int copy_positions(const int32_t *p, size_t n, int32_t **out, pt_err *err) {
    *out = NULL;
    if (!p || !n) return PT_OK;
    for (size_t i = 0; i < n; i++)
        if (p[i] < 0) return pt_errf(err, PT_EINVAL, "position %d is negative", p[i]);
    if (!(*out = malloc(n * sizeof **out))) return pt_errf(err, PT_ENOMEM, "out of memory");
    memcpy(*out, p, n * sizeof **out);
    return PT_OK;
}

int pt_hooks_read(pt_hooks *h, const char *name, const int32_t *positions, size_t n_positions, pt_err *err) {
    int site, rc;
    if ((rc = pt_hook_parse(h->c, name, &site, err))) return rc;
    hook_site *hs = site_get(h, site);
    if (!hs) return pt_errf(err, PT_ENOMEM, "out of memory");
    if (hs->read >= 0) return pt_errf(err, PT_EEXIST, "hook '%s' is read twice", name);
    hook_read *nr = realloc(h->reads, (h->n_reads + 1) * sizeof *nr);
    if (!nr) return pt_errf(err, PT_ENOMEM, "out of memory");
    h->reads = nr;
    hook_read *r = &h->reads[h->n_reads];
    memset(r, 0, sizeof *r);
    r->site = site;
    if (!(r->name = strdup(name))) return pt_errf(err, PT_ENOMEM, "out of memory");
    if ((rc = copy_positions(positions, n_positions, &r->pos, err))) {
        free(r->name);
        return rc;
    }
    r->npos = r->pos ? n_positions : 0;
    hs->read = (int)h->n_reads++;
    return PT_OK;
}

static int add_op(pt_hooks *h, const char *name, int kind, const float *v, size_t numel, float scale,
                  const int32_t *positions, size_t n_positions, pt_err *err) {
    int site, rc;
    if ((rc = pt_hook_parse(h->c, name, &site, err))) return rc;
    int layer;
    if (site_kind(site, &layer) == PT_HOOK_PATTERN)
        return pt_errf(err, PT_EUNSUPPORTED, "hook '%s': attention patterns can be read, not written", name);
    size_t w = (size_t)pt_hook_width(h->c, site);
    hook_op op = {.kind = kind, .scale = scale};
    if (kind == OP_ADD || kind == OP_SET) {
        if (!v || !numel || numel % w)
            return pt_errf(err, PT_EINVAL, "hook '%s': the tensor has %zu values, expected %zu (one row) or a multiple",
                           name, numel, w);
        for (size_t k = 0; k < numel; k++)
            if (!isfinite(v[k] * scale))
                return pt_errf(err, PT_EINVAL, "hook '%s': value %zu%s is not a finite float32", name, k,
                               scale != 1.f ? " times the scale" : "");
        op.rows = numel == w ? 0 : numel / w;
        if (!(op.v = malloc(numel * sizeof *op.v))) return pt_errf(err, PT_ENOMEM, "out of memory");
        memcpy(op.v, v, numel * sizeof *op.v);
    }
    if (kind == OP_MEAN && !(op.sum = calloc(w, sizeof *op.sum))) {
        return pt_errf(err, PT_ENOMEM, "out of memory");
    }
    if ((rc = copy_positions(positions, n_positions, &op.pos, err))) goto fail;
    op.npos = op.pos ? n_positions : 0;
    hook_site *hs = site_get(h, site);
    hook_op *no = hs ? realloc(hs->ops, (size_t)(hs->n_ops + 1) * sizeof *no) : NULL;
    if (!no) {
        rc = pt_errf(err, PT_ENOMEM, "out of memory");
        goto fail;
    }
    hs->ops = no;
    hs->ops[hs->n_ops++] = op;
    return PT_OK;
fail:
    free(op.v), free(op.pos), free(op.sum);
    return rc;
}

int pt_hooks_add(pt_hooks *h, const char *name, const float *v, size_t numel, float scale, const int32_t *positions,
                 size_t n_positions, pt_err *err) {
    return add_op(h, name, OP_ADD, v, numel, scale, positions, n_positions, err);
}

int pt_hooks_set(pt_hooks *h, const char *name, const float *v, size_t numel, const int32_t *positions,
                 size_t n_positions, pt_err *err) {
    return add_op(h, name, OP_SET, v, numel, 1.f, positions, n_positions, err);
}

int pt_hooks_ablate(pt_hooks *h, const char *name, int mean, const int32_t *positions, size_t n_positions,
                    pt_err *err) {
    return add_op(h, name, mean ? OP_MEAN : OP_ZERO, NULL, 0, 1.f, positions, n_positions, err);
}

int pt_hooks_active(const pt_hooks *h, int site) { return h && site < h->n_sites && h->sites[site] != NULL; }

int pt_hooks_wants_logits(const pt_hooks *h) { return pt_hooks_active(h, PT_HOOK_LOGITS); }

static int pos_selected(const int32_t *pos, size_t npos, int p) {
    if (!pos) return 1;
    for (size_t i = 0; i < npos; i++)
        if (pos[i] == p) return 1;
    return 0;
}

static void run_op(hook_op *op, float *x, int n, int p0, size_t w) {
    if (op->kind == OP_MEAN) {
        for (int i = 0; i < n; i++) {
            if (!pos_selected(op->pos, op->npos, p0 + i)) continue;
            const float *r = x + (size_t)i * w;
            for (size_t j = 0; j < w; j++) op->sum[j] += r[j];
            op->count++;
        }
    }
    for (int i = 0; i < n; i++) {
        int p = p0 + i;
        if (!pos_selected(op->pos, op->npos, p)) continue;
        float *r = x + (size_t)i * w;
        const float *v = op->v;
        if ((op->kind == OP_ADD || op->kind == OP_SET) && op->rows) {
            if ((size_t)p >= op->rows) continue;
            v = op->v + (size_t)p * w;
        }
        switch (op->kind) {
        case OP_ADD:
            for (size_t j = 0; j < w; j++) r[j] += op->scale * v[j];
            break;
        case OP_SET: memcpy(r, v, w * sizeof *r); break;
        case OP_ZERO: memset(r, 0, w * sizeof *r); break;
        case OP_MEAN:
            for (size_t j = 0; j < w; j++) r[j] = (float)(op->sum[j] / (double)op->count);
            break;
        }
    }
}

/* Appends one row of nf floats at absolute position p. */
static int read_append(hook_read *r, const float *row, size_t nf, int p, pt_err *err) {
    if (r->nf + nf > PT_HOOK_MAX_CACHE_FLOATS)
        return pt_errf(err, PT_ENOMEM, "hook '%s': cache limit reached", r->name);
    if (r->nf + nf > r->fcap) {
        size_t nc = (r->nf + nf) * 2;
        float *d = realloc(r->data, nc * sizeof *d);
        if (!d) return pt_errf(err, PT_ENOMEM, "hook '%s': out of memory", r->name);
        pt_populate(d, r->nf * sizeof *d, nc * sizeof *d); /* the new half in one call */
        r->data = d, r->fcap = nc;
    }
    if (r->rows == r->rcap) {
        size_t nc = r->rcap ? r->rcap * 2 : 64;
        int32_t *rp = realloc(r->row_pos, nc * sizeof *rp);
        if (rp) r->row_pos = rp;
        size_t *ro = rp ? realloc(r->row_off, nc * sizeof *ro) : NULL;
        if (!ro) return pt_errf(err, PT_ENOMEM, "hook '%s': out of memory", r->name);
        r->row_off = ro, r->rcap = nc;
    }
    memcpy(r->data + r->nf, row, nf * sizeof *row);
    r->row_pos[r->rows] = p;
    r->row_off[r->rows++] = r->nf;
    r->nf += nf;
    return PT_OK;
}

int pt_hooks_apply(pt_hooks *h, int site, float *x, int n, int p0, pt_err *err) {
    hook_site *hs = h->sites[site];
    size_t w = (size_t)pt_hook_width(h->c, site);
    for (int i = 0; i < hs->n_ops; i++) run_op(&hs->ops[i], x, n, p0, w);
    if (hs->read >= 0) {
        hook_read *r = &h->reads[hs->read];
        for (int i = 0; i < n; i++) {
            if (!pos_selected(r->pos, r->npos, p0 + i)) continue;
            int rc = read_append(r, x + (size_t)i * w, w, p0 + i, err);
            if (rc) return rc;
        }
    }
    return PT_OK;
}

int pt_hooks_record_pattern(pt_hooks *h, int site, const float *pattern, int n, int p0, pt_err *err) {
    hook_site *hs = h->sites[site];
    if (hs->read < 0) return PT_OK;
    hook_read *r = &h->reads[hs->read];
    int heads = h->c->n_heads, tk = p0 + n;
    /* One row per query: [heads, p+1] (the causal prefix; the rest is zero). */
    for (int i = 0; i < n; i++) {
        int p = p0 + i;
        if (!pos_selected(r->pos, r->npos, p)) continue;
        size_t need = (size_t)heads * (size_t)(p + 1);
        if (r->nf + need > r->fcap) { /* grow through read_append's path with a dummy row */
            size_t nc = (r->nf + need) * 2;
            if (r->nf + need > PT_HOOK_MAX_CACHE_FLOATS)
                return pt_errf(err, PT_ENOMEM, "hook '%s': cache limit reached", r->name);
            float *d = realloc(r->data, nc * sizeof *d);
            if (!d) return pt_errf(err, PT_ENOMEM, "hook '%s': out of memory", r->name);
            r->data = d, r->fcap = nc;
        }
        float *row = r->data + r->nf;
        for (int hh = 0; hh < heads; hh++)
            memcpy(row + (size_t)hh * (p + 1), pattern + ((size_t)hh * n + i) * tk, (size_t)(p + 1) * sizeof(float));
        /* Register the row (data already in place). */
        int rc = read_append(r, row, 0, p, err);
        if (rc) return rc;
        r->row_off[r->rows - 1] = r->nf;
        r->nf += need;
    }
    return PT_OK;
}

int pt_hooks_get(pt_hooks *h, const char *name, pt_hook_tensor *out, pt_err *err) {
    int site, rc;
    if ((rc = pt_hook_parse(h->c, name, &site, err))) return rc;
    hook_site *hs = h->sites[site];
    if (!hs || hs->read < 0) return pt_errf(err, PT_ENOTFOUND, "hook '%s' was not asked to be read", name);
    hook_read *r = &h->reads[hs->read];
    int layer;
    memset(out, 0, sizeof *out);
    if (site_kind(site, &layer) != PT_HOOK_PATTERN) {
        int64_t dims[2];
        int nd = pt_hook_row_shape(h->c, site, dims);
        out->data = r->data;
        out->ndim = 1 + nd;
        out->shape[0] = (int64_t)r->rows;
        for (int i = 0; i < nd; i++) out->shape[1 + i] = dims[i];
        return PT_OK;
    }
    int heads = h->c->n_heads, klen = 0;
    for (size_t i = 0; i < r->rows; i++)
        if (r->row_pos[i] + 1 > klen) klen = r->row_pos[i] + 1;
    size_t total = (size_t)heads * r->rows * (size_t)klen;
    free(r->assembled);
    r->assembled = calloc(total ? total : 1, sizeof(float));
    if (!r->assembled) return pt_errf(err, PT_ENOMEM, "out of memory");
    for (size_t i = 0; i < r->rows; i++) {
        int p = r->row_pos[i];
        for (int hh = 0; hh < heads; hh++)
            memcpy(r->assembled + ((size_t)hh * r->rows + i) * klen, r->data + r->row_off[i] + (size_t)hh * (p + 1),
                   (size_t)(p + 1) * sizeof(float));
    }
    out->data = r->assembled;
    out->ndim = 3;
    out->shape[0] = heads, out->shape[1] = (int64_t)r->rows, out->shape[2] = klen;
    return PT_OK;
}

size_t pt_hooks_n_reads(const pt_hooks *h) { return h->n_reads; }
const char *pt_hooks_read_name(const pt_hooks *h, size_t i) { return i < h->n_reads ? h->reads[i].name : NULL; }

void pt_hooks_clear_cache(pt_hooks *h) {
    for (size_t i = 0; i < h->n_reads; i++) h->reads[i].nf = h->reads[i].rows = 0;
    for (int s = 0; s < h->n_sites; s++) {
        hook_site *hs = h->sites[s];
        if (!hs) continue;
        for (int i = 0; i < hs->n_ops; i++)
            if (hs->ops[i].kind == OP_MEAN) {
                memset(hs->ops[i].sum, 0, (size_t)pt_hook_width(h->c, s) * sizeof(double));
                hs->ops[i].count = 0;
            }
    }
}

/* ---- tensors from files, interventions documents ------------------------------------- */

#define PT_SPEC_MAX_ITEMS 4096
#define PT_SPEC_MAX_VALUES ((size_t)1 << 26)

int pt_hooks_tensor_from_file(const char *path, const char *tensor, const char *hook, float **out, size_t *numel,
                              pt_err *err) {
    pt_tensors ts;
    pt_tensors_init(&ts);
    *out = NULL;
    int rc = pt_safetensors_read(path, &ts, err);
    if (rc) return rc;
    const pt_tensor *t = NULL;
    if (tensor) {
        if (!(t = pt_tensors_find(&ts, tensor)))
            rc = pt_errf(err, PT_ENOTFOUND, "%s: no tensor '%s'", path, tensor);
    } else if (!(t = pt_tensors_find(&ts, hook))) {
        if (ts.n == 1) t = &ts.t[0];
        else
            rc = pt_errf(err, PT_ENOTFOUND, "%s: no tensor named '%s' and %zu tensors to choose from (name one)", path,
                         hook, ts.n);
    }
    if (!rc && t->dtype != PT_F32 && t->dtype != PT_F16 && t->dtype != PT_BF16)
        rc = pt_errf(err, PT_EUNSUPPORTED, "%s: tensor '%s' is %s (F32, F16 or BF16 expected)", path, t->name,
                     pt_dtype_name(t->dtype));
    if (!rc) {
        size_t n = pt_tensor_numel(t);
        if (!(*out = malloc((n ? n : 1) * sizeof(float)))) rc = pt_errf(err, PT_ENOMEM, "out of memory");
        else {
            pt_to_f32(t->dtype, t->data, *out, n);
            *numel = n;
        }
    }
    pt_tensors_free(&ts);
    return rc;
}

static int spec_positions(const json_t *j, const char *what, const char *path, int32_t **out, size_t *n,
                          pt_err *err) {
    *out = NULL;
    *n = 0;
    if (!j) return PT_OK;
    if (!json_is_array(j) || json_array_size(j) > (1u << 24))
        return pt_errf(err, PT_EFORMAT, "%s: %s.positions: expected an array of positions", what, path);
    size_t k = json_array_size(j);
    if (!k) return pt_errf(err, PT_EFORMAT, "%s: %s.positions: empty (leave it out for all positions)", what, path);
    if (!(*out = malloc(k * sizeof **out))) return pt_errf(err, PT_ENOMEM, "out of memory");
    for (size_t i = 0; i < k; i++) {
        json_t *v = json_array_get(j, i);
        if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) >= PT_MAX_POS) {
            free(*out);
            *out = NULL;
            return pt_errf(err, PT_EFORMAT, "%s: %s.positions[%zu]: expected an integer in [0, %d)", what, path, i,
                           PT_MAX_POS);
        }
        (*out)[i] = (int32_t)json_integer_value(v);
    }
    *n = k;
    return PT_OK;
}

static int spec_check_keys(const json_t *o, const char *const *allowed, const char *what, const char *path,
                           pt_err *err) {
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)o, key, v) {
        int ok = 0;
        for (int i = 0; allowed[i]; i++) ok |= !strcmp(key, allowed[i]);
        if (!ok) return pt_errf(err, PT_EFORMAT, "%s: %s: unknown key \"%s\"", what, path, key);
    }
    return PT_OK;
}

static int spec_one(pt_hooks *h, const json_t *it, const char *base_dir, const char *what, const char *path,
                    pt_err *err) {
    static const char *const keys[] = {"hook", "op", "file", "tensor", "values", "scale", "mode", "positions", NULL};
    int rc;
    if (!json_is_object(it)) return pt_errf(err, PT_EFORMAT, "%s: %s: expected an object", what, path);
    if ((rc = spec_check_keys(it, keys, what, path, err))) return rc;
    const char *hook = json_string_value(json_object_get(it, "hook"));
    const char *op = json_string_value(json_object_get(it, "op"));
    if (!hook) return pt_errf(err, PT_EFORMAT, "%s: %s.hook: expected a hook name", what, path);
    if (!op) return pt_errf(err, PT_EFORMAT, "%s: %s.op: expected \"add\", \"set\" or \"ablate\"", what, path);
    int is_add = !strcmp(op, "add"), is_set = !strcmp(op, "set"), is_abl = !strcmp(op, "ablate");
    if (!is_add && !is_set && !is_abl)
        return pt_errf(err, PT_EFORMAT, "%s: %s.op: \"%s\" is not one of add, set, ablate", what, path, op);
    int32_t *pos = NULL;
    size_t npos = 0;
    float *v = NULL;
    size_t numel = 0;
    if ((rc = spec_positions(json_object_get(it, "positions"), what, path, &pos, &npos, err))) return rc;
    json_t *scale = json_object_get(it, "scale"), *mode = json_object_get(it, "mode");
    json_t *file = json_object_get(it, "file"), *values = json_object_get(it, "values");
    json_t *tensor = json_object_get(it, "tensor");
    if (is_abl) {
        int mean = 0;
        if (mode && (!json_is_string(mode) || (strcmp(json_string_value(mode), "zero") &&
                                               strcmp(json_string_value(mode), "mean"))))
            rc = pt_errf(err, PT_EFORMAT, "%s: %s.mode: expected \"zero\" or \"mean\"", what, path);
        else if (file || values || scale || tensor)
            rc = pt_errf(err, PT_EFORMAT, "%s: %s: ablate takes no file, values, tensor or scale", what, path);
        else {
            mean = mode && !strcmp(json_string_value(mode), "mean");
            rc = pt_hooks_ablate(h, hook, mean, pos, npos, err);
        }
        goto done;
    }
    if (mode) {
        rc = pt_errf(err, PT_EFORMAT, "%s: %s.mode: only for ablate", what, path);
        goto done;
    }
    if (scale && (!is_add || !json_is_number(scale))) {
        rc = pt_errf(err, PT_EFORMAT, "%s: %s.scale: %s", what, path, is_add ? "expected a number" : "only for add");
        goto done;
    }
    if (!!file == !!values) {
        rc = pt_errf(err, PT_EFORMAT, "%s: %s: give exactly one of \"file\" and \"values\"", what, path);
        goto done;
    }
    if (tensor && (!file || !json_is_string(tensor))) {
        rc = pt_errf(err, PT_EFORMAT, "%s: %s.tensor: a tensor name, with \"file\"", what, path);
        goto done;
    }
    if (file) {
        if (!json_is_string(file)) {
            rc = pt_errf(err, PT_EFORMAT, "%s: %s.file: expected a path", what, path);
            goto done;
        }
        const char *f = json_string_value(file);
        char *full = f[0] == '/' || !base_dir ? strdup(f) : pt_path_join(base_dir, f);
        if (!full) {
            rc = pt_errf(err, PT_ENOMEM, "out of memory");
            goto done;
        }
        rc = pt_hooks_tensor_from_file(full, tensor ? json_string_value(tensor) : NULL, hook, &v, &numel, err);
        free(full);
        if (rc) {
            pt_err_prefix(err, "%s: %s.file", what, path);
            goto done;
        }
    } else {
        if (!json_is_array(values) || !json_array_size(values) || json_array_size(values) > PT_SPEC_MAX_VALUES) {
            rc = pt_errf(err, PT_EFORMAT, "%s: %s.values: expected a non-empty array of numbers", what, path);
            goto done;
        }
        numel = json_array_size(values);
        if (!(v = malloc(numel * sizeof *v))) {
            rc = pt_errf(err, PT_ENOMEM, "out of memory");
            goto done;
        }
        for (size_t i = 0; i < numel; i++) {
            json_t *x = json_array_get(values, i);
            if (!json_is_number(x)) {
                rc = pt_errf(err, PT_EFORMAT, "%s: %s.values[%zu]: expected a number", what, path, i);
                goto done;
            }
            v[i] = (float)json_number_value(x);
        }
    }
    rc = is_add ? pt_hooks_add(h, hook, v, numel, scale ? (float)json_number_value(scale) : 1.f, pos, npos, err)
                : pt_hooks_set(h, hook, v, numel, pos, npos, err);
done:
    if (rc && err && strncmp(err->msg, what, strlen(what))) pt_err_prefix(err, "%s: %s", what, path);
    free(pos);
    free(v);
    return rc;
}

int pt_hooks_load_spec(pt_hooks *h, const json_t *spec, const char *base_dir, const char *what, pt_err *err) {
    static const char *const keys[] = {"read", "interventions", NULL};
    int rc;
    char path[64];
    if (!json_is_object(spec)) return pt_errf(err, PT_EFORMAT, "%s: expected a JSON object", what);
    if ((rc = spec_check_keys(spec, keys, what, "(top level)", err))) return rc;
    json_t *reads = json_object_get(spec, "read"), *ivs = json_object_get(spec, "interventions");
    if (reads && (!json_is_array(reads) || json_array_size(reads) > PT_SPEC_MAX_ITEMS))
        return pt_errf(err, PT_EFORMAT, "%s: read: expected an array (at most %d)", what, PT_SPEC_MAX_ITEMS);
    if (ivs && (!json_is_array(ivs) || json_array_size(ivs) > PT_SPEC_MAX_ITEMS))
        return pt_errf(err, PT_EFORMAT, "%s: interventions: expected an array (at most %d)", what, PT_SPEC_MAX_ITEMS);
    for (size_t i = 0; reads && i < json_array_size(reads); i++) {
        json_t *r = json_array_get(reads, i);
        snprintf(path, sizeof path, "read[%zu]", i);
        const char *name = json_string_value(r);
        int32_t *pos = NULL;
        size_t npos = 0;
        if (json_is_object(r)) {
            static const char *const rkeys[] = {"hook", "positions", NULL};
            if ((rc = spec_check_keys(r, rkeys, what, path, err))) return rc;
            name = json_string_value(json_object_get(r, "hook"));
            if ((rc = spec_positions(json_object_get(r, "positions"), what, path, &pos, &npos, err))) return rc;
        }
        if (!name) {
            free(pos);
            return pt_errf(err, PT_EFORMAT, "%s: %s: expected a hook name or {\"hook\", \"positions\"}", what, path);
        }
        rc = pt_hooks_read(h, name, pos, npos, err);
        free(pos);
        if (rc) {
            pt_err_prefix(err, "%s: %s", what, path);
            return rc;
        }
    }
    for (size_t i = 0; ivs && i < json_array_size(ivs); i++) {
        snprintf(path, sizeof path, "interventions[%zu]", i);
        if ((rc = spec_one(h, json_array_get(ivs, i), base_dir, what, path, err))) return rc;
    }
    return PT_OK;
}
