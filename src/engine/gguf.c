/* see gguf.h — the GGUF container: parser, accessors, streaming writer. */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/util.h"
#include "engine/gguf.h"

static const char *const type_names[PT_GGUF_TYPE_COUNT] = {
    "UINT8", "INT8", "UINT16", "INT16", "UINT32", "INT32", "FLOAT32",
    "BOOL",  "STRING", "ARRAY", "UINT64", "INT64", "FLOAT64",
};
/* Fixed sizes of scalar types (0: STRING, ARRAY). */
static const size_t type_size[PT_GGUF_TYPE_COUNT] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};

const char *pt_gguf_type_name(uint32_t type) { return type < PT_GGUF_TYPE_COUNT ? type_names[type] : "?"; }

int pt_gguf_ggml_type(pt_dtype t) {
    switch (t) {
    case PT_F32: return PT_GGML_F32;
    case PT_F16: return PT_GGML_F16;
    case PT_BF16: return PT_GGML_BF16;
    case PT_Q8_0: return PT_GGML_Q8_0;
    case PT_Q4_0: return PT_GGML_Q4_0;
    case PT_Q4_K: return PT_GGML_Q4_K;
    case PT_Q5_K: return PT_GGML_Q5_K;
    case PT_Q6_K: return PT_GGML_Q6_K;
    case PT_F64: return PT_GGML_F64;
    case PT_I8: return PT_GGML_I8;
    case PT_I16: return PT_GGML_I16;
    case PT_I32: return PT_GGML_I32;
    case PT_I64: return PT_GGML_I64;
    default: return -1;
    }
}

int pt_gguf_dtype(uint32_t ggml_type) {
    switch (ggml_type) {
    case PT_GGML_F32: return PT_F32;
    case PT_GGML_F16: return PT_F16;
    case PT_GGML_BF16: return PT_BF16;
    case PT_GGML_Q8_0: return PT_Q8_0;
    case PT_GGML_Q4_0: return PT_Q4_0;
    case PT_GGML_Q4_K: return PT_Q4_K;
    case PT_GGML_Q5_K: return PT_Q5_K;
    case PT_GGML_Q6_K: return PT_Q6_K;
    case PT_GGML_F64: return PT_F64;
    case PT_GGML_I8: return PT_I8;
    case PT_GGML_I16: return PT_I16;
    case PT_GGML_I32: return PT_I32;
    case PT_GGML_I64: return PT_I64;
    default: return -1;
    }
}

static const char *ggml_type_name(uint32_t t) {
    static const char *const names[] = {
        [0] = "F32",   [1] = "F16",   [2] = "Q4_0",  [3] = "Q4_1",   [6] = "Q5_0",    [7] = "Q5_1",
        [8] = "Q8_0",  [9] = "Q8_1",  [10] = "Q2_K", [11] = "Q3_K",  [12] = "Q4_K",   [13] = "Q5_K",
        [14] = "Q6_K", [15] = "Q8_K", [16] = "IQ2_XXS", [17] = "IQ2_XS", [18] = "IQ3_XXS",
        [19] = "IQ1_S", [20] = "IQ4_NL", [21] = "IQ3_S", [22] = "IQ2_S", [23] = "IQ4_XS",
        [24] = "I8",   [25] = "I16",  [26] = "I32",  [27] = "I64",   [28] = "F64",    [29] = "IQ1_M",
        [30] = "BF16",
    };
    return t < sizeof names / sizeof names[0] && names[t] ? names[t] : "unknown";
}

/* Reading ------------------------------------------------------------------------------ */

typedef struct {
    const uint8_t *p;
    size_t len, pos;
    const char *what;
    pt_err *err;
} rd;

static int need(rd *r, size_t n, const char *field) {
    if (n > r->len - r->pos)
        return pt_errf(r->err, PT_EFORMAT, "%s: byte %zu: %s needs %zu bytes but only %zu are left", r->what, r->pos,
                       field, n, r->len - r->pos);
    return PT_OK;
}

static uint64_t le(const uint8_t *p, int n) {
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--) v = v << 8 | p[i];
    return v;
}

static int rd_u32(rd *r, uint32_t *out, const char *field) {
    if (need(r, 4, field)) return PT_EFORMAT;
    *out = (uint32_t)le(r->p + r->pos, 4);
    r->pos += 4;
    return PT_OK;
}

static int rd_u64(rd *r, uint64_t *out, const char *field) {
    if (need(r, 8, field)) return PT_EFORMAT;
    *out = le(r->p + r->pos, 8);
    r->pos += 8;
    return PT_OK;
}

/* A string: u64 length bounded by the bytes left, then the bytes. */
static int rd_str(rd *r, const uint8_t **s, size_t *n, const char *field) {
    size_t at = r->pos;
    uint64_t l;
    if (rd_u64(r, &l, field)) return PT_EFORMAT;
    if (l > r->len - r->pos)
        return pt_errf(r->err, PT_EFORMAT, "%s: byte %zu: %s length %llu runs past the end of the file (%zu bytes left)",
                       r->what, at, field, (unsigned long long)l, r->len - r->pos);
    *s = r->p + r->pos;
    *n = (size_t)l;
    r->pos += (size_t)l;
    return PT_OK;
}

void pt_gguf_close(pt_gguf *g) {
    if (!g) return;
    for (size_t i = 0; i < g->n_kv; i++) {
        free((char *)g->kv[i].key);
        free(g->kv[i].str_off);
    }
    free(g->kv);
    free(g->tensors);
    free(g->what);
    pt_map_close(&g->map);
    memset(g, 0, sizeof *g);
}

/* Reads one value of type t (not an array) and checks it. */
static int rd_scalar(rd *r, uint32_t t, const char *key) {
    if (t == PT_GGUF_STRING) {
        const uint8_t *s;
        size_t n;
        return rd_str(r, &s, &n, "string value");
    }
    if (need(r, type_size[t], "value")) {
        pt_err_prefix(r->err, "key '%s'", key);
        return PT_EFORMAT;
    }
    if (t == PT_GGUF_BOOL && r->p[r->pos] > 1)
        return pt_errf(r->err, PT_EFORMAT, "%s: byte %zu: key '%s': BOOL value %u is not 0 or 1", r->what, r->pos, key,
                       r->p[r->pos]);
    r->pos += type_size[t];
    return PT_OK;
}

static int parse_kv(rd *r, pt_gguf_kv *kv, json_t *seen) {
    kv->offset = r->pos;
    const uint8_t *k;
    size_t kl;
    if (rd_str(r, &k, &kl, "key")) return PT_EFORMAT;
    if (kl == 0 || kl > PT_GGUF_MAX_KEY || memchr(k, 0, kl))
        return pt_errf(r->err, PT_EFORMAT, "%s: byte %zu: a key must be 1 to %d bytes without NUL", r->what,
                       kv->offset, PT_GGUF_MAX_KEY);
    char *key = malloc(kl + 1);
    if (!key) return pt_errf(r->err, PT_ENOMEM, "out of memory");
    memcpy(key, k, kl);
    key[kl] = 0;
    kv->key = key;
    if (json_object_get(seen, key))
        return pt_errf(r->err, PT_EFORMAT, "%s: byte %zu: key '%s' appears twice", r->what, kv->offset, key);
    json_object_set_new(seen, key, json_true());
    size_t at = r->pos;
    if (rd_u32(r, &kv->type, "value type")) return PT_EFORMAT;
    if (kv->type >= PT_GGUF_TYPE_COUNT)
        return pt_errf(r->err, PT_EFORMAT, "%s: byte %zu: key '%s': unknown value type %u", r->what, at, key, kv->type);
    kv->raw = r->p + r->pos;
    kv->elem_type = kv->type;
    kv->count = 1;
    if (kv->type != PT_GGUF_ARRAY) {
        if (rd_scalar(r, kv->type, key)) return PT_EFORMAT;
        kv->elems = kv->raw;
        kv->raw_len = (size_t)(r->p + r->pos - kv->raw);
        return PT_OK;
    }
    at = r->pos;
    if (rd_u32(r, &kv->elem_type, "array element type") || rd_u64(r, &kv->count, "array length")) return PT_EFORMAT;
    if (kv->elem_type >= PT_GGUF_TYPE_COUNT || kv->elem_type == PT_GGUF_ARRAY)
        return pt_errf(r->err, PT_EFORMAT, "%s: byte %zu: key '%s': array element type %u is %s", r->what, at, key,
                       kv->elem_type, kv->elem_type == PT_GGUF_ARRAY ? "a nested array (not supported)" : "unknown");
    kv->elems = r->p + r->pos;
    size_t left = r->len - r->pos;
    if (kv->elem_type == PT_GGUF_STRING) {
        /* Every string takes at least its 8-byte length: bound the count before allocating. */
        if (kv->count > left / 8)
            return pt_errf(r->err, PT_EFORMAT, "%s: byte %zu: key '%s': %llu strings cannot fit in the %zu bytes left",
                           r->what, at, key, (unsigned long long)kv->count, left);
        kv->str_off = malloc((size_t)(kv->count ? kv->count : 1) * sizeof(size_t));
        if (!kv->str_off) return pt_errf(r->err, PT_ENOMEM, "out of memory");
        for (uint64_t i = 0; i < kv->count; i++) {
            kv->str_off[i] = (size_t)(r->p + r->pos - kv->elems);
            const uint8_t *s;
            size_t n;
            if (rd_str(r, &s, &n, "array string")) {
                pt_err_prefix(r->err, "key '%s'[%llu]", key, (unsigned long long)i);
                return PT_EFORMAT;
            }
        }
    } else {
        size_t bytes;
        if (pt_mul_size((size_t)kv->count, type_size[kv->elem_type], &bytes) || kv->count > SIZE_MAX ||
            bytes > left)
            return pt_errf(r->err, PT_EFORMAT,
                           "%s: byte %zu: key '%s': %llu %s elements run past the end of the file (%zu bytes left)",
                           r->what, at, key, (unsigned long long)kv->count, pt_gguf_type_name(kv->elem_type), left);
        if (kv->elem_type == PT_GGUF_BOOL)
            for (size_t i = 0; i < bytes; i++)
                if (kv->elems[i] > 1)
                    return pt_errf(r->err, PT_EFORMAT, "%s: byte %zu: key '%s'[%zu]: BOOL value is not 0 or 1",
                                   r->what, r->pos + i, key, i);
        r->pos += bytes;
    }
    kv->raw_len = (size_t)(r->p + r->pos - kv->raw);
    return PT_OK;
}

typedef struct {
    uint64_t begin, end;
    size_t index;
} span;

static int span_cmp(const void *a, const void *b) {
    const span *x = a, *y = b;
    return x->begin < y->begin ? -1 : x->begin > y->begin;
}

static int parse_tensor(rd *r, pt_gguf_tensor *t, json_t *seen) {
    t->info_offset = r->pos;
    const uint8_t *s;
    size_t n;
    if (rd_str(r, &s, &n, "tensor name")) return PT_EFORMAT;
    if (n == 0 || n > PT_GGUF_MAX_NAME || memchr(s, 0, n))
        return pt_errf(r->err, PT_EFORMAT, "%s: byte %zu: a tensor name must be 1 to %d bytes without NUL", r->what,
                       t->info_offset, PT_GGUF_MAX_NAME);
    memcpy(t->name, s, n);
    t->name[n] = 0;
    if (json_object_get(seen, t->name))
        return pt_errf(r->err, PT_EFORMAT, "%s: byte %zu: tensor '%s' appears twice", r->what, t->info_offset, t->name);
    json_object_set_new(seen, t->name, json_true());
    size_t at = r->pos;
    if (rd_u32(r, &t->n_dims, "n_dims")) return PT_EFORMAT;
    if (t->n_dims < 1 || t->n_dims > PT_GGUF_MAX_DIMS)
        return pt_errf(r->err, PT_EFORMAT, "%s: byte %zu: tensor '%s': %u dimensions (1 to %d)", r->what, at, t->name,
                       t->n_dims, PT_GGUF_MAX_DIMS);
    size_t numel = 1;
    for (uint32_t d = 0; d < t->n_dims; d++) {
        at = r->pos;
        if (rd_u64(r, &t->ne[d], "dimension")) return PT_EFORMAT;
        if (t->ne[d] > (uint64_t)INT64_MAX || pt_mul_size(numel, (size_t)t->ne[d], &numel))
            return pt_errf(r->err, PT_EFORMAT, "%s: byte %zu: tensor '%s': dimension %u (%llu) overflows", r->what, at,
                           t->name, d, (unsigned long long)t->ne[d]);
    }
    at = r->pos;
    if (rd_u32(r, &t->ggml_type, "tensor type")) return PT_EFORMAT;
    int dt = pt_gguf_dtype(t->ggml_type);
    if (dt < 0)
        return pt_errf(r->err, PT_EUNSUPPORTED, "%s: byte %zu: tensor '%s': ggml type %u (%s) is not supported", r->what,
                       at, t->name, t->ggml_type, ggml_type_name(t->ggml_type));
    t->dtype = (pt_dtype)dt;
    if (t->ne[0] % pt_dtype_block(t->dtype))
        return pt_errf(r->err, PT_EFORMAT, "%s: byte %zu: tensor '%s': %s row length %llu is not a multiple of %zu",
                       r->what, at, t->name, pt_dtype_name(t->dtype), (unsigned long long)t->ne[0],
                       pt_dtype_block(t->dtype));
    if (pt_dtype_bytes(t->dtype, numel, &t->nbytes))
        return pt_errf(r->err, PT_EFORMAT, "%s: byte %zu: tensor '%s': size overflows", r->what, at, t->name);
    at = r->pos;
    if (rd_u64(r, &t->offset, "tensor offset")) return PT_EFORMAT;
    return PT_OK;
}

int pt_gguf_parse(const uint8_t *data, size_t len, const char *what, pt_gguf *g, pt_err *err) {
    memset(g, 0, sizeof *g);
    rd r = {data, len, 0, what, err};
    json_t *seen = json_object(), *seen_t = json_object();
    span *spans = NULL;
    int rc = PT_EFORMAT;
    uint32_t magic;
    uint64_t n_tensors, n_kv;
    if (!(g->what = strdup(what)) || !seen || !seen_t) {
        rc = pt_errf(err, PT_ENOMEM, "out of memory");
        goto fail;
    }
    if (rd_u32(&r, &magic, "magic")) goto fail;
    if (magic != PT_GGUF_MAGIC) {
        pt_errf(err, PT_EFORMAT, "%s: byte 0: not a GGUF file (bad magic)", what);
        goto fail;
    }
    if (rd_u32(&r, &g->version, "version")) goto fail;
    if (g->version != 2 && g->version != 3) {
        rc = pt_errf(err, PT_EUNSUPPORTED, "%s: byte 4: GGUF version %u is not supported (2 or 3)", what, g->version);
        goto fail;
    }
    if (rd_u64(&r, &n_tensors, "tensor count") || rd_u64(&r, &n_kv, "key/value count")) goto fail;
    /* A tensor info takes at least 8+1+4+8+4+8 bytes, a key/value at least 8+1+4+1: bound the
     * counts by the file length before allocating for them. */
    if (n_tensors > (len - r.pos) / 33 || n_kv > (len - r.pos) / 14) {
        pt_errf(err, PT_EFORMAT, "%s: byte 8: %llu tensors and %llu key/values cannot fit in a %zu-byte file", what,
                (unsigned long long)n_tensors, (unsigned long long)n_kv, len);
        goto fail;
    }
    g->kv = calloc(n_kv ? (size_t)n_kv : 1, sizeof *g->kv);
    g->tensors = calloc(n_tensors ? (size_t)n_tensors : 1, sizeof *g->tensors);
    spans = calloc(n_tensors ? (size_t)n_tensors : 1, sizeof *spans);
    if (!g->kv || !g->tensors || !spans) {
        rc = pt_errf(err, PT_ENOMEM, "out of memory");
        goto fail;
    }
    for (uint64_t i = 0; i < n_kv; i++) {
        g->n_kv++;
        if ((rc = parse_kv(&r, &g->kv[i], seen))) goto fail;
    }
    g->alignment = PT_GGUF_DEFAULT_ALIGNMENT;
    const pt_gguf_kv *al = pt_gguf_get(g, "general.alignment");
    if (al) {
        uint32_t a = al->type == PT_GGUF_UINT32 ? (uint32_t)le(al->raw, 4) : 0;
        if (!a || (a & (a - 1))) {
            rc = pt_errf(err, PT_EFORMAT, "%s: byte %zu: general.alignment must be a UINT32 power of two", what,
                         al->offset);
            goto fail;
        }
        g->alignment = a;
    }
    for (uint64_t i = 0; i < n_tensors; i++) {
        g->n_tensors++;
        if ((rc = parse_tensor(&r, &g->tensors[i], seen_t))) goto fail;
    }
    size_t pad = (g->alignment - r.pos % g->alignment) % g->alignment;
    if (pad > len - r.pos && n_tensors) {
        rc = pt_errf(err, PT_EFORMAT, "%s: byte %zu: the file ends before the data section", what, r.pos);
        goto fail;
    }
    g->data_offset = pad > len - r.pos ? len : r.pos + pad;
    size_t dlen = len - g->data_offset, ns = 0;
    for (size_t i = 0; i < g->n_tensors; i++) {
        pt_gguf_tensor *t = &g->tensors[i];
        if (t->offset % g->alignment || t->offset > dlen || t->nbytes > dlen - t->offset) {
            rc = pt_errf(err, PT_EFORMAT,
                         "%s: byte %zu: tensor '%s': data at offset %llu (+%zu bytes) is %s the %zu-byte data section "
                         "(which starts at byte %zu)",
                         what, t->info_offset, t->name, (unsigned long long)t->offset, t->nbytes,
                         t->offset % g->alignment ? "misaligned in" : "outside", dlen, g->data_offset);
            goto fail;
        }
        t->data = data + g->data_offset + t->offset;
        if (t->nbytes) spans[ns++] = (span){t->offset, t->offset + t->nbytes, i};
    }
    /* Tensors must not overlap (two names aliasing one buffer would be a confusing file). */
    qsort(spans, ns, sizeof *spans, span_cmp);
    for (size_t i = 1; i < ns; i++)
        if (spans[i].begin < spans[i - 1].end) {
            rc = pt_errf(err, PT_EFORMAT, "%s: tensor '%s' overlaps tensor '%s' in the data section", what,
                         g->tensors[spans[i].index].name, g->tensors[spans[i - 1].index].name);
            goto fail;
        }
    g->base = data;
    g->len = len;
    free(spans);
    json_decref(seen);
    json_decref(seen_t);
    return PT_OK;
fail:
    free(spans);
    json_decref(seen);
    json_decref(seen_t);
    pt_gguf_close(g);
    return rc ? rc : PT_EFORMAT;
}

int pt_gguf_open(const char *path, pt_gguf *g, pt_err *err) {
    pt_map m;
    memset(g, 0, sizeof *g);
    int rc = pt_map_open(&m, path, err);
    if (rc) return rc;
    if ((rc = pt_gguf_parse(m.data, m.len, path, g, err))) {
        pt_map_close(&m);
        return rc;
    }
    g->map = m;
    return PT_OK;
}

const pt_gguf_kv *pt_gguf_get(const pt_gguf *g, const char *key) {
    for (size_t i = 0; i < g->n_kv; i++)
        if (!strcmp(g->kv[i].key, key)) return &g->kv[i];
    return NULL;
}

const pt_gguf_tensor *pt_gguf_find_tensor(const pt_gguf *g, const char *name) {
    for (size_t i = 0; i < g->n_tensors; i++)
        if (!strcmp(g->tensors[i].name, name)) return &g->tensors[i];
    return NULL;
}

static int is_int_type(uint32_t t) { return t <= PT_GGUF_INT32 || t == PT_GGUF_BOOL || t == PT_GGUF_UINT64 || t == PT_GGUF_INT64; }

static int64_t int_at(uint32_t t, const uint8_t *p) {
    switch (t) {
    case PT_GGUF_UINT8: case PT_GGUF_BOOL: return p[0];
    case PT_GGUF_INT8: return (int8_t)p[0];
    case PT_GGUF_UINT16: return (uint16_t)le(p, 2);
    case PT_GGUF_INT16: return (int16_t)(uint16_t)le(p, 2);
    case PT_GGUF_UINT32: return (uint32_t)le(p, 4);
    case PT_GGUF_INT32: return (int32_t)(uint32_t)le(p, 4);
    default: return (int64_t)le(p, 8);
    }
}

static double float_at(uint32_t t, const uint8_t *p) {
    if (t == PT_GGUF_FLOAT32) {
        uint32_t b = (uint32_t)le(p, 4);
        float f;
        memcpy(&f, &b, 4);
        return f;
    }
    uint64_t b = le(p, 8);
    double d;
    memcpy(&d, &b, 8);
    return d;
}

int pt_gguf_kv_int(const pt_gguf *g, const pt_gguf_kv *kv, int64_t *out, pt_err *err) {
    if (!is_int_type(kv->type) || (kv->type == PT_GGUF_UINT64 && le(kv->raw, 8) > (uint64_t)INT64_MAX))
        return pt_errf(err, PT_EFORMAT, "%s: byte %zu: key '%s' is %s, expected an integer in range", g->what,
                       kv->offset, kv->key, pt_gguf_type_name(kv->type));
    *out = int_at(kv->type, kv->raw);
    return PT_OK;
}

int pt_gguf_kv_float(const pt_gguf *g, const pt_gguf_kv *kv, double *out, pt_err *err) {
    if (kv->type == PT_GGUF_FLOAT32 || kv->type == PT_GGUF_FLOAT64) {
        *out = float_at(kv->type, kv->raw);
        return PT_OK;
    }
    int64_t i;
    if (pt_gguf_kv_int(g, kv, &i, NULL))
        return pt_errf(err, PT_EFORMAT, "%s: byte %zu: key '%s' is %s, expected a number", g->what, kv->offset, kv->key,
                       pt_gguf_type_name(kv->type));
    *out = (double)i;
    return PT_OK;
}

int pt_gguf_kv_str(const pt_gguf *g, const pt_gguf_kv *kv, const char **s, size_t *len, pt_err *err) {
    if (kv->type != PT_GGUF_STRING)
        return pt_errf(err, PT_EFORMAT, "%s: byte %zu: key '%s' is %s, expected STRING", g->what, kv->offset, kv->key,
                       pt_gguf_type_name(kv->type));
    *len = (size_t)le(kv->raw, 8);
    *s = (const char *)kv->raw + 8;
    return PT_OK;
}

void pt_gguf_arr_str(const pt_gguf_kv *kv, size_t i, const char **s, size_t *len) {
    const uint8_t *p = kv->elems + kv->str_off[i];
    *len = (size_t)le(p, 8);
    *s = (const char *)p + 8;
}

int64_t pt_gguf_arr_int(const pt_gguf_kv *kv, size_t i) {
    return int_at(kv->elem_type, kv->elems + i * type_size[kv->elem_type]);
}

double pt_gguf_arr_float(const pt_gguf_kv *kv, size_t i) {
    if (kv->elem_type == PT_GGUF_FLOAT32 || kv->elem_type == PT_GGUF_FLOAT64)
        return float_at(kv->elem_type, kv->elems + i * type_size[kv->elem_type]);
    return (double)pt_gguf_arr_int(kv, i);
}

int pt_gguf_to_tensors(const pt_gguf *g, pt_tensors *ts, pt_err *err) {
    for (size_t i = 0; i < g->n_tensors; i++) {
        const pt_gguf_tensor *t = &g->tensors[i];
        int64_t shape[PT_GGUF_MAX_DIMS];
        for (uint32_t d = 0; d < t->n_dims; d++) shape[d] = (int64_t)t->ne[t->n_dims - 1 - d];
        int rc = pt_tensors_add(ts, t->name, t->dtype, (int)t->n_dims, shape, t->data, t->nbytes, 0, err);
        if (rc) return rc;
    }
    return PT_OK;
}

/* Vocabulary ------------------------------------------------------------------------------ */

void pt_gguf_vocab_free(pt_gguf_vocab *v) {
    if (!v) return;
    if (v->tokens)
        for (size_t i = 0; i < v->spec.n_tokens; i++) free(v->tokens[i]);
    if (v->merges)
        for (size_t i = 0; i < v->spec.n_merges; i++) free(v->merges[i]);
    free(v->tokens);
    free(v->merges);
    free(v->scores);
    free(v->types);
    free(v->model);
    free(v->pre);
    free(v->chat_template);
    memset(v, 0, sizeof *v);
}

static char *dup_str(const pt_gguf *g, const char *s, size_t n, const char *key, size_t i, pt_err *err) {
    if (memchr(s, 0, n)) {
        pt_errf(err, PT_EFORMAT, "%s: key '%s'[%zu]: string holds a NUL byte", g->what, key, i);
        return NULL;
    }
    char *p = malloc(n + 1);
    if (!p) {
        pt_errf(err, PT_ENOMEM, "out of memory");
        return NULL;
    }
    memcpy(p, s, n);
    p[n] = 0;
    return p;
}

static int str_key(const pt_gguf *g, const char *key, int required, char **out, pt_err *err) {
    const pt_gguf_kv *kv = pt_gguf_get(g, key);
    *out = NULL;
    if (!kv) return required ? pt_errf(err, PT_ENOTFOUND, "%s: no '%s' key", g->what, key) : PT_OK;
    const char *s;
    size_t n;
    int rc = pt_gguf_kv_str(g, kv, &s, &n, err);
    if (rc) return rc;
    return (*out = dup_str(g, s, n, key, 0, err)) ? PT_OK : (err ? err->code : PT_EFORMAT);
}

static int str_array(const pt_gguf *g, const pt_gguf_kv *kv, char ***out, pt_err *err) {
    if (kv->type != PT_GGUF_ARRAY || kv->elem_type != PT_GGUF_STRING)
        return pt_errf(err, PT_EFORMAT, "%s: byte %zu: key '%s' must be an array of strings", g->what, kv->offset,
                       kv->key);
    char **a = calloc(kv->count ? (size_t)kv->count : 1, sizeof *a);
    if (!a) return pt_errf(err, PT_ENOMEM, "out of memory");
    *out = a;
    for (size_t i = 0; i < kv->count; i++) {
        const char *s;
        size_t n;
        pt_gguf_arr_str(kv, i, &s, &n);
        if (!(a[i] = dup_str(g, s, n, kv->key, i, err))) return err ? err->code : PT_EFORMAT;
    }
    return PT_OK;
}

static int opt_id(const pt_gguf *g, const char *key, size_t n_tokens, int32_t *out, pt_err *err) {
    const pt_gguf_kv *kv = pt_gguf_get(g, key);
    *out = -1;
    if (!kv) return PT_OK;
    int64_t v;
    int rc = pt_gguf_kv_int(g, kv, &v, err);
    if (rc) return rc;
    if (v < 0 || (uint64_t)v >= n_tokens)
        return pt_errf(err, PT_EFORMAT, "%s: key '%s' = %lld is not a token id (vocabulary of %zu)", g->what, key,
                       (long long)v, n_tokens);
    *out = (int32_t)v;
    return PT_OK;
}

int pt_gguf_vocab_load(const pt_gguf *g, pt_gguf_vocab *v, pt_err *err) {
    memset(v, 0, sizeof *v);
    int rc;
    const pt_gguf_kv *kt = pt_gguf_get(g, "tokenizer.ggml.tokens");
    if ((rc = str_key(g, "tokenizer.ggml.model", 1, &v->model, err))) goto fail;
    if ((rc = str_key(g, "tokenizer.ggml.pre", 0, &v->pre, err))) goto fail;
    if ((rc = str_key(g, "tokenizer.chat_template", 0, &v->chat_template, err))) goto fail;
    if (!kt) {
        rc = pt_errf(err, PT_ENOTFOUND, "%s: no 'tokenizer.ggml.tokens' key", g->what);
        goto fail;
    }
    v->spec.n_tokens = (size_t)kt->count;
    if ((rc = str_array(g, kt, &v->tokens, err))) goto fail;
    const pt_gguf_kv *ks = pt_gguf_get(g, "tokenizer.ggml.scores");
    if (ks) {
        if (ks->type != PT_GGUF_ARRAY || (ks->elem_type != PT_GGUF_FLOAT32 && ks->elem_type != PT_GGUF_FLOAT64) ||
            ks->count != kt->count) {
            rc = pt_errf(err, PT_EFORMAT, "%s: byte %zu: 'tokenizer.ggml.scores' must be %zu floats", g->what,
                         ks->offset, v->spec.n_tokens);
            goto fail;
        }
        if (!(v->scores = malloc(v->spec.n_tokens * sizeof *v->scores + 1))) goto oom;
        for (size_t i = 0; i < v->spec.n_tokens; i++) v->scores[i] = (float)pt_gguf_arr_float(ks, i);
    }
    const pt_gguf_kv *ty = pt_gguf_get(g, "tokenizer.ggml.token_type");
    if (ty) {
        if (ty->type != PT_GGUF_ARRAY || !is_int_type(ty->elem_type) || ty->count != kt->count) {
            rc = pt_errf(err, PT_EFORMAT, "%s: byte %zu: 'tokenizer.ggml.token_type' must be %zu integers", g->what,
                         ty->offset, v->spec.n_tokens);
            goto fail;
        }
        if (!(v->types = malloc(v->spec.n_tokens * sizeof *v->types + 1))) goto oom;
        for (size_t i = 0; i < v->spec.n_tokens; i++) {
            int64_t x = pt_gguf_arr_int(ty, i);
            if (x < PT_TOKTYPE_NORMAL || x > PT_TOKTYPE_BYTE) {
                rc = pt_errf(err, PT_EFORMAT, "%s: 'tokenizer.ggml.token_type'[%zu] = %lld is not a token type (1-6)",
                             g->what, i, (long long)x);
                goto fail;
            }
            v->types[i] = (int32_t)x;
        }
    }
    const pt_gguf_kv *km = pt_gguf_get(g, "tokenizer.ggml.merges");
    if (km) {
        v->spec.n_merges = (size_t)km->count;
        if ((rc = str_array(g, km, &v->merges, err))) {
            if (km->type != PT_GGUF_ARRAY || km->elem_type != PT_GGUF_STRING) v->spec.n_merges = 0;
            goto fail;
        }
    }
    if ((rc = opt_id(g, "tokenizer.ggml.bos_token_id", v->spec.n_tokens, &v->spec.bos_id, err)) ||
        (rc = opt_id(g, "tokenizer.ggml.eos_token_id", v->spec.n_tokens, &v->spec.eos_id, err)) ||
        (rc = opt_id(g, "tokenizer.ggml.unknown_token_id", v->spec.n_tokens, &v->spec.unk_id, err)))
        goto fail;
    const pt_gguf_kv *ab = pt_gguf_get(g, "tokenizer.ggml.add_bos_token");
    if (ab) {
        int64_t x;
        if ((rc = pt_gguf_kv_int(g, ab, &x, err))) goto fail;
        v->spec.add_bos = x != 0;
    } else {
        v->spec.add_bos = !strcmp(v->model, "llama") && v->spec.bos_id >= 0; /* llama.cpp's default for SPM */
    }
    v->spec.model = v->model;
    v->spec.pre = v->pre ? v->pre : "default";
    v->spec.tokens = (const char *const *)v->tokens;
    v->spec.scores = v->scores;
    v->spec.types = v->types;
    v->spec.merges = (const char *const *)v->merges;
    return PT_OK;
oom:
    rc = pt_errf(err, PT_ENOMEM, "out of memory");
fail:
    pt_gguf_vocab_free(v);
    return rc;
}

/* Writing ------------------------------------------------------------------------------ */

#define PT_GGUF_MAX_KV_BYTES ((size_t)1 << 31)

typedef struct {
    char *name;
    pt_dtype dtype;
    int ndim;
    int64_t shape[PT_GGUF_MAX_DIMS];
    const void *data;
    size_t nbytes;
    uint64_t offset;
} wtensor;

struct pt_gguf_writer {
    pt_buf kv;       /* the serialised key/values */
    uint64_t n_kv;
    json_t *keys;    /* set of keys added */
    wtensor *t;
    size_t n_t, cap_t;
    size_t alignment;
    uint64_t data_size;
};

pt_gguf_writer *pt_gguf_writer_new(void) {
    pt_gguf_writer *w = calloc(1, sizeof *w);
    if (!w) return NULL;
    pt_buf_init(&w->kv, PT_GGUF_MAX_KV_BYTES);
    w->alignment = PT_GGUF_DEFAULT_ALIGNMENT;
    if (!(w->keys = json_object())) {
        free(w);
        return NULL;
    }
    return w;
}

void pt_gguf_writer_free(pt_gguf_writer *w) {
    if (!w) return;
    pt_buf_free(&w->kv);
    json_decref(w->keys);
    for (size_t i = 0; i < w->n_t; i++) free(w->t[i].name);
    free(w->t);
    free(w);
}

static int put_le(pt_buf *b, uint64_t v, int n) {
    uint8_t x[8];
    for (int i = 0; i < n; i++) x[i] = (uint8_t)(v >> (8 * i));
    return pt_buf_append(b, x, (size_t)n);
}

static int put_str(pt_buf *b, const char *s, size_t n) { return put_le(b, n, 8) || pt_buf_append(b, s, n); }

/* Appends key + type; on any failure later the caller rolls back to `mark`. */
static int begin_kv(pt_gguf_writer *w, const char *key, uint32_t type, size_t *mark, pt_err *err) {
    size_t kl = strlen(key);
    if (!kl || kl > PT_GGUF_MAX_KEY) return pt_errf(err, PT_EINVAL, "GGUF key '%s': 1 to 65535 bytes", key);
    if (json_object_get(w->keys, key)) return pt_errf(err, PT_EEXIST, "GGUF key '%s' set twice", key);
    *mark = w->kv.len;
    if (put_str(&w->kv, key, kl) || put_le(&w->kv, type, 4)) return pt_errf(err, PT_ENOMEM, "GGUF metadata too large");
    return PT_OK;
}

static int end_kv(pt_gguf_writer *w, const char *key, int bad, size_t mark, pt_err *err) {
    if (bad) {
        w->kv.len = mark;
        return pt_errf(err, PT_ENOMEM, "GGUF metadata too large at key '%s'", key);
    }
    json_object_set_new(w->keys, key, json_true());
    w->n_kv++;
    return PT_OK;
}

static int set_scalar(pt_gguf_writer *w, const char *key, uint32_t type, uint64_t bits, int n, pt_err *err) {
    size_t mark;
    int rc = begin_kv(w, key, type, &mark, err);
    if (rc) return rc;
    return end_kv(w, key, put_le(&w->kv, bits, n), mark, err);
}

int pt_gguf_set_u32(pt_gguf_writer *w, const char *key, uint32_t v, pt_err *err) {
    if (!strcmp(key, "general.alignment")) {
        if (!v || (v & (v - 1))) return pt_errf(err, PT_EINVAL, "general.alignment %u is not a power of two", v);
        if (w->n_t) return pt_errf(err, PT_EINVAL, "general.alignment must be set before tensors are added");
        w->alignment = v;
    }
    return set_scalar(w, key, PT_GGUF_UINT32, v, 4, err);
}
int pt_gguf_set_i32(pt_gguf_writer *w, const char *key, int32_t v, pt_err *err) {
    return set_scalar(w, key, PT_GGUF_INT32, (uint32_t)v, 4, err);
}
int pt_gguf_set_u64(pt_gguf_writer *w, const char *key, uint64_t v, pt_err *err) {
    return set_scalar(w, key, PT_GGUF_UINT64, v, 8, err);
}
int pt_gguf_set_f32(pt_gguf_writer *w, const char *key, float v, pt_err *err) {
    uint32_t b;
    memcpy(&b, &v, 4);
    return set_scalar(w, key, PT_GGUF_FLOAT32, b, 4, err);
}
int pt_gguf_set_bool(pt_gguf_writer *w, const char *key, int v, pt_err *err) {
    return set_scalar(w, key, PT_GGUF_BOOL, v ? 1 : 0, 1, err);
}

int pt_gguf_set_str(pt_gguf_writer *w, const char *key, const char *v, pt_err *err) {
    size_t mark;
    int rc = begin_kv(w, key, PT_GGUF_STRING, &mark, err);
    if (rc) return rc;
    return end_kv(w, key, put_str(&w->kv, v, strlen(v)), mark, err);
}

int pt_gguf_set_arr_str(pt_gguf_writer *w, const char *key, const char *const *v, size_t n, pt_err *err) {
    size_t mark;
    int rc = begin_kv(w, key, PT_GGUF_ARRAY, &mark, err);
    if (rc) return rc;
    int bad = put_le(&w->kv, PT_GGUF_STRING, 4) || put_le(&w->kv, n, 8);
    for (size_t i = 0; i < n && !bad; i++) bad = put_str(&w->kv, v[i], strlen(v[i]));
    return end_kv(w, key, bad, mark, err);
}

int pt_gguf_set_arr_f32(pt_gguf_writer *w, const char *key, const float *v, size_t n, pt_err *err) {
    size_t mark;
    int rc = begin_kv(w, key, PT_GGUF_ARRAY, &mark, err);
    if (rc) return rc;
    int bad = put_le(&w->kv, PT_GGUF_FLOAT32, 4) || put_le(&w->kv, n, 8);
    for (size_t i = 0; i < n && !bad; i++) {
        uint32_t b;
        memcpy(&b, &v[i], 4);
        bad = put_le(&w->kv, b, 4);
    }
    return end_kv(w, key, bad, mark, err);
}

int pt_gguf_set_arr_i32(pt_gguf_writer *w, const char *key, const int32_t *v, size_t n, pt_err *err) {
    size_t mark;
    int rc = begin_kv(w, key, PT_GGUF_ARRAY, &mark, err);
    if (rc) return rc;
    int bad = put_le(&w->kv, PT_GGUF_INT32, 4) || put_le(&w->kv, n, 8);
    for (size_t i = 0; i < n && !bad; i++) bad = put_le(&w->kv, (uint32_t)v[i], 4);
    return end_kv(w, key, bad, mark, err);
}

int pt_gguf_copy_kv(pt_gguf_writer *w, const pt_gguf_kv *kv, pt_err *err) {
    if (!strcmp(kv->key, "general.alignment") && kv->type == PT_GGUF_UINT32)
        return pt_gguf_set_u32(w, kv->key, (uint32_t)le(kv->raw, 4), err);
    size_t mark;
    int rc = begin_kv(w, kv->key, kv->type, &mark, err);
    if (rc) return rc;
    return end_kv(w, kv->key, pt_buf_append(&w->kv, kv->raw, kv->raw_len), mark, err);
}

int pt_gguf_add_tensor(pt_gguf_writer *w, const char *name, pt_dtype dtype, int ndim, const int64_t *shape,
                       const void *data, pt_err *err) {
    size_t nl = strlen(name), numel = 1, nbytes;
    if (!nl || nl > PT_GGUF_MAX_NAME) return pt_errf(err, PT_EINVAL, "tensor '%s': GGUF names are 1 to 64 bytes", name);
    if (ndim < 1 || ndim > PT_GGUF_MAX_DIMS)
        return pt_errf(err, PT_EINVAL, "tensor '%s': GGUF holds 1 to 4 dimensions, not %d", name, ndim);
    if (pt_gguf_ggml_type(dtype) < 0)
        return pt_errf(err, PT_EUNSUPPORTED, "tensor '%s': GGUF has no %s type", name, pt_dtype_name(dtype));
    for (int d = 0; d < ndim; d++)
        if (shape[d] < 0 || pt_mul_size(numel, (size_t)shape[d], &numel))
            return pt_errf(err, PT_EINVAL, "tensor '%s': bad shape", name);
    if (shape[ndim - 1] % (int64_t)pt_dtype_block(dtype))
        return pt_errf(err, PT_EINVAL, "tensor '%s': %s needs rows of a multiple of %zu values", name,
                       pt_dtype_name(dtype), pt_dtype_block(dtype));
    if (pt_dtype_bytes(dtype, numel, &nbytes)) return pt_errf(err, PT_EINVAL, "tensor '%s': size overflows", name);
    for (size_t i = 0; i < w->n_t; i++)
        if (!strcmp(w->t[i].name, name)) return pt_errf(err, PT_EEXIST, "tensor '%s' added twice", name);
    if (w->n_t == w->cap_t) {
        size_t cap = w->cap_t ? 2 * w->cap_t : 64;
        wtensor *t = realloc(w->t, cap * sizeof *t);
        if (!t) return pt_errf(err, PT_ENOMEM, "out of memory");
        w->t = t;
        w->cap_t = cap;
    }
    wtensor *t = &w->t[w->n_t];
    memset(t, 0, sizeof *t);
    if (!(t->name = strdup(name))) return pt_errf(err, PT_ENOMEM, "out of memory");
    t->dtype = dtype;
    t->ndim = ndim;
    memcpy(t->shape, shape, (size_t)ndim * sizeof *shape);
    t->data = data;
    t->nbytes = nbytes;
    t->offset = w->data_size;
    w->data_size += (nbytes + w->alignment - 1) / w->alignment * w->alignment;
    w->n_t++;
    return PT_OK;
}

static int fwrite_all(FILE *f, const void *p, size_t n) { return n == 0 || fwrite(p, 1, n, f) == n ? 0 : -1; }

static int fpad(FILE *f, uint64_t pos, size_t align) {
    static const uint8_t zeros[256];
    size_t pad = (size_t)((align - pos % align) % align);
    while (pad) {
        size_t k = pad < sizeof zeros ? pad : sizeof zeros;
        if (fwrite_all(f, zeros, k)) return -1;
        pad -= k;
    }
    return 0;
}

int pt_gguf_write(pt_gguf_writer *w, const char *path, pt_gguf_fill_fn fill, void *ctx, struct pt_progress *progress,
                  pt_err *err) {
    pt_buf head;
    pt_buf_init(&head, PT_GGUF_MAX_KV_BYTES + ((size_t)1 << 30));
    int bad = put_le(&head, PT_GGUF_MAGIC, 4) || put_le(&head, PT_GGUF_VERSION, 4) || put_le(&head, w->n_t, 8) ||
              put_le(&head, w->n_kv, 8) || pt_buf_append(&head, w->kv.data, w->kv.len);
    for (size_t i = 0; i < w->n_t && !bad; i++) {
        wtensor *t = &w->t[i];
        bad = put_str(&head, t->name, strlen(t->name)) || put_le(&head, (uint64_t)t->ndim, 4);
        for (int d = t->ndim - 1; d >= 0 && !bad; d--) bad = put_le(&head, (uint64_t)t->shape[d], 8);
        bad = bad || put_le(&head, (uint32_t)pt_gguf_ggml_type(t->dtype), 4) || put_le(&head, t->offset, 8);
    }
    if (bad) {
        pt_buf_free(&head);
        return pt_errf(err, PT_ENOMEM, "%s: GGUF header too large", path);
    }
    size_t tl = strlen(path) + 32, maxbytes = 0;
    for (size_t i = 0; i < w->n_t; i++) maxbytes = w->t[i].nbytes > maxbytes ? w->t[i].nbytes : maxbytes;
    char *tmp = malloc(tl);
    void *scratch = fill ? malloc(maxbytes ? maxbytes : 1) : NULL;
    FILE *f = NULL;
    int rc = PT_OK;
    if (!tmp || (fill && !scratch)) {
        rc = pt_errf(err, PT_ENOMEM, "%s: out of memory for a %zu-byte tensor", path, maxbytes);
        goto out;
    }
    snprintf(tmp, tl, "%s.tmp.%ld", path, (long)getpid());
    if (!(f = fopen(tmp, "wb"))) {
        rc = pt_errf(err, PT_EIO, "%s: %s", tmp, strerror(errno));
        goto out;
    }
    bad = fwrite_all(f, head.data, head.len) || fpad(f, head.len, w->alignment);
    uint64_t done = 0;
    for (size_t i = 0; i < w->n_t && !bad; i++) {
        wtensor *t = &w->t[i];
        const void *p = t->data;
        if (!p) {
            if (!fill) {
                rc = pt_errf(err, PT_EINVAL, "tensor '%s' has no data and no fill function", t->name);
                goto out;
            }
            if ((rc = fill(ctx, i, scratch, t->nbytes, err))) goto out;
            p = scratch;
        }
        bad = fwrite_all(f, p, t->nbytes) || fpad(f, t->nbytes, w->alignment);
        done += t->nbytes;
        if (progress) pt_progress_update(progress, done, NULL);
    }
    if (bad || fflush(f) || fsync(fileno(f))) {
        rc = pt_errf(err, PT_EIO, "%s: write: %s", tmp, strerror(errno));
        goto out;
    }
    fclose(f);
    f = NULL;
    if (rename(tmp, path)) {
        rc = pt_errf(err, PT_EIO, "rename %s: %s", path, strerror(errno));
        goto out;
    }
    rc = pt_fsync_dir_of(path, err);
out:
    if (f) fclose(f);
    if (rc && tmp) unlink(tmp);
    free(tmp);
    free(scratch);
    pt_buf_free(&head);
    return rc;
}
