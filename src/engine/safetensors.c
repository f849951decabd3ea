/* see tensor.h — tensor sets and the safetensors format. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/json.h"
#include "engine/tensor.h"

size_t pt_tensor_numel(const pt_tensor *t) {
    size_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= (size_t)t->shape[i];
    return n;
}

void pt_tensors_init(pt_tensors *ts) { memset(ts, 0, sizeof *ts); }

void pt_tensors_free(pt_tensors *ts) {
    if (!ts) return;
    for (size_t i = 0; i < ts->n; i++) {
        free(ts->t[i].name);
        free(ts->t[i].owned);
    }
    free(ts->t);
    for (size_t i = 0; i < ts->n_maps; i++) pt_map_close(&ts->maps[i]);
    free(ts->maps);
    json_decref(ts->metadata);
    memset(ts, 0, sizeof *ts);
}

pt_tensor *pt_tensors_find(const pt_tensors *ts, const char *name) {
    for (size_t i = 0; i < ts->n; i++)
        if (!strcmp(ts->t[i].name, name)) return &ts->t[i];
    return NULL;
}

static int tensors_push(pt_tensors *ts, const char *name, pt_dtype dtype, int ndim, const int64_t *shape,
                        const void *data, size_t nbytes, void *owned, pt_err *err) {
    if (pt_tensors_find(ts, name)) return pt_errf(err, PT_EEXIST, "tensor '%s' appears twice", name);
    if (ndim < 0 || ndim > PT_MAX_DIMS) return pt_errf(err, PT_EFORMAT, "tensor '%s': %d dims", name, ndim);
    if (ts->n == ts->cap) {
        size_t cap = ts->cap ? ts->cap * 2 : 64;
        pt_tensor *t = realloc(ts->t, cap * sizeof *t);
        if (!t) return pt_errf(err, PT_ENOMEM, "out of memory");
        ts->t = t;
        ts->cap = cap;
    }
    pt_tensor *t = &ts->t[ts->n];
    memset(t, 0, sizeof *t);
    if (!(t->name = strdup(name))) return pt_errf(err, PT_ENOMEM, "out of memory");
    t->dtype = dtype;
    t->ndim = ndim;
    for (int i = 0; i < ndim; i++) t->shape[i] = shape[i];
    t->data = data;
    t->nbytes = nbytes;
    t->owned = owned;
    ts->n++;
    return PT_OK;
}

int pt_tensors_add(pt_tensors *ts, const char *name, pt_dtype dtype, int ndim, const int64_t *shape,
                   const void *data, size_t nbytes, int copy, pt_err *err) {
    if (!copy) return tensors_push(ts, name, dtype, ndim, shape, data, nbytes, NULL, err);
    void *p = malloc(nbytes ? nbytes : 1);
    if (!p) return pt_errf(err, PT_ENOMEM, "tensor '%s': out of memory for %zu bytes", name, nbytes);
    if (nbytes) memcpy(p, data, nbytes);
    int rc = tensors_push(ts, name, dtype, ndim, shape, p, nbytes, p, err);
    if (rc) free(p);
    return rc;
}

int pt_tensors_add_owned(pt_tensors *ts, const char *name, pt_dtype dtype, int ndim, const int64_t *shape,
                         void *data, size_t nbytes, pt_err *err) {
    int rc = tensors_push(ts, name, dtype, ndim, shape, data, nbytes, data, err);
    if (rc) free(data);
    return rc;
}

int pt_tensors_keep_map(pt_tensors *ts, pt_map *m, pt_err *err) {
    pt_map *maps = realloc(ts->maps, (ts->n_maps + 1) * sizeof *maps);
    if (!maps) return pt_errf(err, PT_ENOMEM, "out of memory");
    ts->maps = maps;
    ts->maps[ts->n_maps++] = *m;
    m->data = NULL;
    m->len = 0;
    return PT_OK;
}

/* safetensors ---------------------------------------------------------------------------- */

typedef struct {
    size_t begin, end, index;
} span;

static int span_cmp(const void *a, const void *b) {
    const span *x = a, *y = b;
    return x->begin < y->begin ? -1 : x->begin > y->begin;
}

static int json_size(json_t *v, size_t *out) {
    if (!json_is_integer(v) || json_integer_value(v) < 0) return -1;
    *out = (size_t)json_integer_value(v);
    return 0;
}

int pt_safetensors_parse(const uint8_t *data, size_t len, const char *what, pt_tensors *ts, pt_err *err) {
    if (len < 8) return pt_errf(err, PT_EFORMAT, "%s: %zu bytes, too short for a safetensors header", what, len);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | data[i];
    if (hlen > PT_SAFETENSORS_MAX_HEADER)
        return pt_errf(err, PT_EFORMAT, "%s: byte 0: header length %llu is over the 100 MB limit", what,
                       (unsigned long long)hlen);
    if (hlen > len - 8)
        return pt_errf(err, PT_EFORMAT, "%s: byte 0: header length %llu runs past the end of the file (%zu bytes)",
                       what, (unsigned long long)hlen, len);
    if (hlen < 2 || data[8] != '{')
        return pt_errf(err, PT_EFORMAT, "%s: byte 8: the header is not a JSON object", what);
    const uint8_t *buf = data + 8 + hlen;
    size_t buflen = len - 8 - (size_t)hlen;

    pt_err jerr;
    char where[512];
    snprintf(where, sizeof where, "%s: header", what);
    json_t *h = pt_json_parse((const char *)data + 8, (size_t)hlen, 8, where, &jerr);
    if (!h) return pt_errf(err, PT_EFORMAT, "%s", jerr.msg);
    int rc = PT_OK;
    size_t n = json_object_size(h);
    span *spans = calloc(n ? n : 1, sizeof *spans);
    size_t ns = 0, first = ts->n;
    if (!spans) {
        json_decref(h);
        return pt_errf(err, PT_ENOMEM, "out of memory");
    }
    const char *name;
    json_t *v;
    json_object_foreach(h, name, v) {
        if (!strcmp(name, "__metadata__")) {
            if (!json_is_object(v)) {
                rc = pt_errf(err, PT_EFORMAT, "%s: __metadata__ is not an object", what);
                goto out;
            }
            const char *k;
            json_t *mv;
            json_object_foreach(v, k, mv) {
                if (!json_is_string(mv)) {
                    rc = pt_errf(err, PT_EFORMAT, "%s: __metadata__.%s is not a string", what, k);
                    goto out;
                }
            }
            json_decref(ts->metadata);
            ts->metadata = json_deep_copy(v);
            continue;
        }
        if (!json_is_object(v)) {
            rc = pt_errf(err, PT_EFORMAT, "%s: tensor '%s': entry is not an object", what, name);
            goto out;
        }
        json_t *jd = json_object_get(v, "dtype"), *js = json_object_get(v, "shape"),
               *jo = json_object_get(v, "data_offsets");
        if (json_object_size(v) != 3 || !json_is_string(jd) || !json_is_array(js) || !json_is_array(jo) ||
            json_array_size(jo) != 2) {
            rc = pt_errf(err, PT_EFORMAT,
                         "%s: tensor '%s': needs exactly \"dtype\" (string), \"shape\" (array) and "
                         "\"data_offsets\" ([begin, end])",
                         what, name);
            goto out;
        }
        int dt = pt_dtype_from_name(json_string_value(jd));
        if (dt < 0 || pt_dtype_is_quant((pt_dtype)dt)) {
            rc = pt_errf(err, PT_EUNSUPPORTED, "%s: tensor '%s': unknown dtype '%s'", what, name,
                         json_string_value(jd));
            goto out;
        }
        int ndim = (int)json_array_size(js);
        if (ndim > PT_MAX_DIMS) {
            rc = pt_errf(err, PT_EFORMAT, "%s: tensor '%s': %d dimensions (at most %d)", what, name, ndim,
                         PT_MAX_DIMS);
            goto out;
        }
        int64_t shape[PT_MAX_DIMS];
        size_t numel = 1;
        for (int i = 0; i < ndim; i++) {
            size_t d;
            if (json_size(json_array_get(js, (size_t)i), &d) || pt_mul_size(numel, d, &numel) ||
                d > (size_t)INT64_MAX) {
                rc = pt_errf(err, PT_EFORMAT, "%s: tensor '%s': shape[%d] is not a size or overflows", what,
                             name, i);
                goto out;
            }
            shape[i] = (int64_t)d;
        }
        size_t nbytes, b, e;
        if (pt_dtype_bytes((pt_dtype)dt, numel, &nbytes) || json_size(json_array_get(jo, 0), &b) ||
            json_size(json_array_get(jo, 1), &e)) {
            rc = pt_errf(err, PT_EFORMAT, "%s: tensor '%s': bad data_offsets or size overflow", what, name);
            goto out;
        }
        if (b > e || e > buflen) {
            rc = pt_errf(err, PT_EFORMAT,
                         "%s: tensor '%s': data_offsets [%zu, %zu] are outside the %zu-byte buffer "
                         "(which starts at byte %llu)",
                         what, name, b, e, buflen, (unsigned long long)(8 + hlen));
            goto out;
        }
        if (e - b != nbytes) {
            rc = pt_errf(err, PT_EFORMAT,
                         "%s: tensor '%s': %s shape needs %zu bytes but data_offsets [%zu, %zu] hold %zu", what,
                         name, pt_dtype_name((pt_dtype)dt), nbytes, b, e, e - b);
            goto out;
        }
        if ((rc = pt_tensors_add(ts, name, (pt_dtype)dt, ndim, shape, buf + b, nbytes, 0, err))) {
            pt_err_prefix(err, "%s", what);
            goto out;
        }
        spans[ns++] = (span){b, e, ts->n - 1};
    }
    /* The buffer must be covered exactly: no holes, no overlaps (a hole could hide data, an
     * overlap makes two tensors alias). */
    qsort(spans, ns, sizeof *spans, span_cmp);
    size_t at = 0;
    for (size_t i = 0; i < ns; i++) {
        if (spans[i].begin != at) {
            rc = pt_errf(err, PT_EFORMAT, "%s: tensor '%s': data starts at buffer offset %zu, expected %zu (%s)",
                         what, ts->t[spans[i].index].name, spans[i].begin, at,
                         spans[i].begin > at ? "a hole" : "overlaps another tensor");
            goto out;
        }
        at = spans[i].end;
    }
    if (at != buflen) {
        rc = pt_errf(err, PT_EFORMAT, "%s: %zu trailing bytes after the last tensor (buffer ends at %zu)", what,
                     buflen - at, at);
        goto out;
    }
out:
    if (rc) { /* leave the set as it was */
        for (size_t i = first; i < ts->n; i++) {
            free(ts->t[i].name);
            free(ts->t[i].owned);
        }
        ts->n = first;
    }
    free(spans);
    json_decref(h);
    return rc;
}

int pt_safetensors_read(const char *path, pt_tensors *ts, pt_err *err) {
    pt_map m;
    int rc = pt_map_open(&m, path, err);
    if (rc) return rc;
    if ((rc = pt_safetensors_parse(m.data, m.len, path, ts, err))) {
        pt_map_close(&m);
        return rc;
    }
    return pt_tensors_keep_map(ts, &m, err);
}

static int write_all(FILE *f, const void *p, size_t n) { return n == 0 || fwrite(p, 1, n, f) == n ? 0 : -1; }

int pt_safetensors_header(const pt_tensor *tensors, size_t n, const json_t *metadata, char **out, size_t *len,
                          pt_err *err) {
    json_t *h = json_object();
    size_t off = 0;
    if (metadata && json_object_size(metadata)) json_object_set_new(h, "__metadata__", json_deep_copy(metadata));
    for (size_t i = 0; i < n; i++) {
        const pt_tensor *t = &tensors[i];
        if (pt_dtype_is_quant(t->dtype)) {
            json_decref(h);
            return pt_errf(err, PT_EUNSUPPORTED, "tensor '%s': safetensors has no %s dtype", t->name,
                           pt_dtype_name(t->dtype));
        }
        json_t *shape = json_array();
        for (int d = 0; d < t->ndim; d++) json_array_append_new(shape, json_integer(t->shape[d]));
        json_t *e = json_pack("{s:s, s:o, s:[I,I]}", "dtype", pt_dtype_name(t->dtype), "shape", shape,
                              "data_offsets", (json_int_t)off, (json_int_t)(off + t->nbytes));
        json_object_set_new(h, t->name, e);
        off += t->nbytes;
    }
    char *hs = json_dumps(h, JSON_COMPACT);
    json_decref(h);
    if (!hs) return pt_errf(err, PT_ENOMEM, "out of memory");
    /* 8-byte length, the header padded with spaces to a multiple of 8 (a writer habit). */
    size_t hl = strlen(hs), padded = (hl + 7) & ~(size_t)7;
    char *p = malloc(8 + padded);
    if (!p) {
        free(hs);
        return pt_errf(err, PT_ENOMEM, "out of memory");
    }
    for (int i = 0; i < 8; i++) p[i] = (char)(uint8_t)((uint64_t)padded >> (8 * i));
    memcpy(p + 8, hs, hl);
    memset(p + 8 + hl, ' ', padded - hl);
    free(hs);
    *out = p;
    *len = 8 + padded;
    return PT_OK;
}

int pt_safetensors_serialize(const pt_tensor *tensors, size_t n, const json_t *metadata, pt_buf *out, pt_err *err) {
    char *h;
    size_t hl;
    int rc = pt_safetensors_header(tensors, n, metadata, &h, &hl, err);
    if (rc) return rc;
    rc = pt_buf_append(out, h, hl);
    free(h);
    for (size_t i = 0; i < n && !rc; i++) rc = pt_buf_append(out, tensors[i].data, tensors[i].nbytes);
    return rc ? pt_errf(err, PT_ENOMEM, "safetensors output over its size limit") : PT_OK;
}

int pt_safetensors_write(const char *path, const pt_tensor *tensors, size_t n, const json_t *metadata,
                         pt_err *err) {
    char *hs;
    size_t hlen;
    int hrc = pt_safetensors_header(tensors, n, metadata, &hs, &hlen, err);
    if (hrc) {
        pt_err_prefix(err, "%s", path);
        return hrc;
    }
    size_t tl = strlen(path) + 32;
    char *tmp = malloc(tl);
    snprintf(tmp, tl, "%s.tmp.%ld", path, (long)getpid());
    FILE *f = fopen(tmp, "wb");
    int rc = PT_OK;
    if (!f) {
        rc = pt_errf(err, PT_EIO, "%s: %s", tmp, strerror(errno));
        goto out;
    }
    int bad = write_all(f, hs, hlen);
    for (size_t i = 0; i < n && !bad; i++) bad = write_all(f, tensors[i].data, tensors[i].nbytes);
    if (bad || fflush(f) || fsync(fileno(f))) {
        rc = pt_errf(err, PT_EIO, "%s: write: %s", tmp, strerror(errno));
        fclose(f);
        unlink(tmp);
        goto out;
    }
    fclose(f);
    if (rename(tmp, path)) {
        rc = pt_errf(err, PT_EIO, "rename %s: %s", path, strerror(errno));
        unlink(tmp);
        goto out;
    }
    rc = pt_fsync_dir_of(path, err);
out:
    free(tmp);
    free(hs);
    return rc;
}
