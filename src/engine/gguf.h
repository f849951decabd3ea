/* gguf.h — the GGUF container (ggml's docs/gguf.md, version 3; version 2 has the same
 * layout and is read too): typed key/value metadata, tensor infos, an aligned data section.
 *
 * This file is the container only: parse, look up, write. What the names and keys mean for a
 * model (llama.cpp's tensor names, Q/K permutation, hyper-parameter keys) is in convert.h.
 *
 * Reading: pt_gguf_open() maps the file; everything a pt_gguf hands out (key strings, string
 * values, tensor data) points into that mapping and lives until pt_gguf_close(). Every length
 * and count in the file is checked against the bytes left before anything is allocated, so a
 * hostile file gets an error naming the file and the byte offset, never a huge allocation.
 *
 * Writing: a pt_gguf_writer collects key/values (in order) and tensor infos, then streams the
 * file in one pass (tensor data is produced one tensor at a time by a callback, so converting
 * a large model needs memory for one tensor, not the model), atomically (temp, fsync, rename).
 */
#ifndef PARITY_ENGINE_GGUF_H
#define PARITY_ENGINE_GGUF_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "common/fileio.h"
#include "engine/tensor.h"
#include "engine/tokenizer.h"

#define PT_GGUF_MAGIC 0x46554747u /* "GGUF" little-endian */
#define PT_GGUF_VERSION 3
#define PT_GGUF_DEFAULT_ALIGNMENT 32
#define PT_GGUF_MAX_NAME 64   /* tensor name bytes (ggml's GGML_MAX_NAME) */
#define PT_GGUF_MAX_DIMS 4
#define PT_GGUF_MAX_KEY 65535

/* Value types (gguf_type). */
enum {
    PT_GGUF_UINT8 = 0, PT_GGUF_INT8 = 1, PT_GGUF_UINT16 = 2, PT_GGUF_INT16 = 3, PT_GGUF_UINT32 = 4,
    PT_GGUF_INT32 = 5, PT_GGUF_FLOAT32 = 6, PT_GGUF_BOOL = 7, PT_GGUF_STRING = 8, PT_GGUF_ARRAY = 9,
    PT_GGUF_UINT64 = 10, PT_GGUF_INT64 = 11, PT_GGUF_FLOAT64 = 12, PT_GGUF_TYPE_COUNT
};

/* ggml tensor types parity reads and writes (others are refused with PT_EUNSUPPORTED). */
enum {
    PT_GGML_F32 = 0, PT_GGML_F16 = 1, PT_GGML_Q4_0 = 2, PT_GGML_Q8_0 = 8, PT_GGML_Q4_K = 12,
    PT_GGML_Q5_K = 13, PT_GGML_Q6_K = 14, PT_GGML_I8 = 24, PT_GGML_I16 = 25,
    PT_GGML_I32 = 26, PT_GGML_I64 = 27, PT_GGML_F64 = 28, PT_GGML_BF16 = 30
};

/* "UINT32", "STRING", ... ("?" if unknown). */
const char *pt_gguf_type_name(uint32_t type);
/* ggml type id for a dtype, -1 if GGUF cannot hold it (BOOL, U8). */
int pt_gguf_ggml_type(pt_dtype t);
/* dtype for a ggml type id, -1 if parity does not handle it. */
int pt_gguf_dtype(uint32_t ggml_type);

typedef struct pt_gguf_kv {
    const char *key;       /* NUL-terminated copy (owned by the pt_gguf) */
    uint32_t type;         /* PT_GGUF_* */
    uint32_t elem_type;    /* arrays: element type; else == type */
    uint64_t count;        /* arrays: element count; else 1 */
    const uint8_t *raw;    /* the value's bytes as stored after the type field (borrowed) */
    size_t raw_len;
    const uint8_t *elems;  /* arrays: first element; else == raw */
    size_t *str_off;       /* string arrays: offset of element i's u64 length from elems (owned) */
    size_t offset;         /* byte offset of the key/value in the file (for messages) */
} pt_gguf_kv;

typedef struct pt_gguf_tensor {
    char name[PT_GGUF_MAX_NAME + 1];
    uint32_t ggml_type;
    pt_dtype dtype;
    uint32_t n_dims;
    uint64_t ne[PT_GGUF_MAX_DIMS]; /* GGUF order: ne[0] is contiguous (reverse of PyTorch) */
    uint64_t offset;               /* from the start of the data section */
    size_t nbytes;
    const uint8_t *data;           /* borrowed */
    size_t info_offset;            /* where its info is in the file (for messages) */
} pt_gguf_tensor;

typedef struct pt_gguf {
    char *what;                    /* file name for messages (owned) */
    uint32_t version;
    pt_gguf_kv *kv;
    size_t n_kv;
    pt_gguf_tensor *tensors;
    size_t n_tensors;
    size_t alignment;
    size_t data_offset;            /* byte offset of the data section in the file */
    const uint8_t *base;           /* the whole file (borrowed, or the mapping) */
    size_t len;
    pt_map map;                    /* set when opened from a file */
} pt_gguf;

/* Parses a GGUF file held in memory (borrowed: data must outlive g). `what` names it in
 * errors. On failure g is left empty (pt_gguf_close is safe). */
int pt_gguf_parse(const uint8_t *data, size_t len, const char *what, pt_gguf *g, pt_err *err);
/* Maps path and parses it. */
int pt_gguf_open(const char *path, pt_gguf *g, pt_err *err);
void pt_gguf_close(pt_gguf *g); /* NULL-safe, idempotent */

/* Key lookup: NULL if absent. */
const pt_gguf_kv *pt_gguf_get(const pt_gguf *g, const char *key);
const pt_gguf_tensor *pt_gguf_find_tensor(const pt_gguf *g, const char *name);

/* Scalar values. Integers of any width (and BOOL) read as int64 (a UINT64 above INT64_MAX
 * fails); FLOAT32/FLOAT64 (and integers) read as double; strings as pointer+length into the
 * file (not NUL-terminated). Return PT_OK, or PT_EFORMAT naming the key when the type does
 * not fit. */
int pt_gguf_kv_int(const pt_gguf *g, const pt_gguf_kv *kv, int64_t *out, pt_err *err);
int pt_gguf_kv_float(const pt_gguf *g, const pt_gguf_kv *kv, double *out, pt_err *err);
int pt_gguf_kv_str(const pt_gguf *g, const pt_gguf_kv *kv, const char **s, size_t *len, pt_err *err);
/* Element i of an array (i < kv->count; the caller checks the element type). */
void pt_gguf_arr_str(const pt_gguf_kv *kv, size_t i, const char **s, size_t *len);
int64_t pt_gguf_arr_int(const pt_gguf_kv *kv, size_t i);   /* integer element types, BOOL */
double pt_gguf_arr_float(const pt_gguf_kv *kv, size_t i);  /* FLOAT32/FLOAT64 elements */

/* The tensors as a tensor set: GGUF names, shapes in PyTorch order, data borrowed from g
 * (g must outlive ts). */
int pt_gguf_to_tensors(const pt_gguf *g, pt_tensors *ts, pt_err *err);

/* A tokenizer vocabulary from tokenizer.ggml.* keys (model, pre, tokens, scores, token_type,
 * merges, bos/eos/unknown ids, add_bos_token), ready for pt_tokenizer_from_vocab(). The
 * strings are NUL-terminated copies owned by v (strings with an embedded NUL are an error);
 * v->spec points into v. */
typedef struct pt_gguf_vocab {
    pt_vocab_spec spec;
    char *model, *pre;
    char **tokens, **merges;
    float *scores;
    int32_t *types;
    char *chat_template;   /* tokenizer.chat_template, or NULL */
} pt_gguf_vocab;
int pt_gguf_vocab_load(const pt_gguf *g, pt_gguf_vocab *v, pt_err *err);
void pt_gguf_vocab_free(pt_gguf_vocab *v); /* NULL-safe */

/* Writing ------------------------------------------------------------------------------- */

typedef struct pt_gguf_writer pt_gguf_writer;

pt_gguf_writer *pt_gguf_writer_new(void); /* NULL on allocation failure */
void pt_gguf_writer_free(pt_gguf_writer *w); /* NULL-safe */

/* Key/values, written in the order they are added; a key added twice is PT_EEXIST.
 * Setting general.alignment (UINT32, a power of two) changes the data alignment. */
int pt_gguf_set_u32(pt_gguf_writer *w, const char *key, uint32_t v, pt_err *err);
int pt_gguf_set_i32(pt_gguf_writer *w, const char *key, int32_t v, pt_err *err);
int pt_gguf_set_u64(pt_gguf_writer *w, const char *key, uint64_t v, pt_err *err);
int pt_gguf_set_f32(pt_gguf_writer *w, const char *key, float v, pt_err *err);
int pt_gguf_set_bool(pt_gguf_writer *w, const char *key, int v, pt_err *err);
int pt_gguf_set_str(pt_gguf_writer *w, const char *key, const char *v, pt_err *err);
int pt_gguf_set_arr_str(pt_gguf_writer *w, const char *key, const char *const *v, size_t n, pt_err *err);
int pt_gguf_set_arr_f32(pt_gguf_writer *w, const char *key, const float *v, size_t n, pt_err *err);
int pt_gguf_set_arr_i32(pt_gguf_writer *w, const char *key, const int32_t *v, size_t n, pt_err *err);
/* Copies a key/value read from another file, byte for byte. */
int pt_gguf_copy_kv(pt_gguf_writer *w, const pt_gguf_kv *kv, pt_err *err);

/* Adds a tensor info; shape in PyTorch order (reversed on disk). data may be NULL when a
 * fill callback produces it at write time; otherwise it is borrowed until the write. */
int pt_gguf_add_tensor(pt_gguf_writer *w, const char *name, pt_dtype dtype, int ndim, const int64_t *shape,
                       const void *data, pt_err *err);

/* Produces tensor i's bytes (exactly the size its dtype and shape need) into dst. */
typedef int (*pt_gguf_fill_fn)(void *ctx, size_t i, void *dst, size_t nbytes, pt_err *err);

/* Writes the file atomically. fill may be NULL when every tensor was added with data.
 * progress (may be NULL) is advanced by each tensor's byte count. */
struct pt_progress;
int pt_gguf_write(pt_gguf_writer *w, const char *path, pt_gguf_fill_fn fill, void *ctx,
                  struct pt_progress *progress, pt_err *err);

#endif
