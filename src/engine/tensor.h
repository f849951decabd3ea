/* tensor.h — dtypes, named tensors and tensor sets: what model files are read into and
 * written from, before the engine builds a model out of them.
 *
 * Shapes are in PyTorch order (shape[ndim-1] is contiguous), whatever the file format; the
 * GGUF reader reverses GGUF's dims. Tensor data is either borrowed (a pointer into an mmapped
 * file that the set keeps open) or owned by the set.
 */
#ifndef PARITY_ENGINE_TENSOR_H
#define PARITY_ENGINE_TENSOR_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"
#include "common/err.h"
#include "common/fileio.h"

typedef enum pt_dtype {
    PT_F32 = 0,
    PT_F16,
    PT_BF16,
    PT_Q8_0,   /* GGUF/ggml Q8_0: blocks of 32 values, an F16 scale then 32 int8 */
    PT_F64,
    PT_I8,
    PT_U8,
    PT_I16,
    PT_I32,
    PT_I64,
    PT_BOOL,
    PT_Q4_0,   /* ggml Q4_0, Q4_K, Q5_K, Q6_K: see engine/quant_k.h */
    PT_Q4_K,
    PT_Q5_K,
    PT_Q6_K,
    PT_DTYPE_COUNT
} pt_dtype;

#define PT_MAX_DIMS 8
#define PT_Q8_0_BLOCK 32

typedef struct pt_block_q8_0 {
    uint16_t d;        /* F16 scale */
    int8_t q[PT_Q8_0_BLOCK];
} pt_block_q8_0;

/* Name as written in safetensors ("F32", "BF16", ...; "Q8_0", "Q4_K", ... for ggml's types). */
const char *pt_dtype_name(pt_dtype t);
/* Looks up a safetensors dtype name; -1 if unknown. */
int pt_dtype_from_name(const char *name);
/* Bytes for n elements of type t (block types: n must be a multiple of the block). 0 and -1
 * on overflow or a count that is not a whole number of blocks. */
int pt_dtype_bytes(pt_dtype t, size_t n, size_t *out);
/* Values per block: 32 for Q8_0 and Q4_0, 256 for the K-quants, 1 for the other types. */
size_t pt_dtype_block(pt_dtype t);
/* 1 for ggml's block types (Q8_0, Q4_0, Q4_K, Q5_K, Q6_K). */
int pt_dtype_is_quant(pt_dtype t);
/* Address of element e (a multiple of the block) of data of type t. */
const void *pt_dtype_at(pt_dtype t, const void *data, size_t e);

/* Scalar conversions (round to nearest even). */
float pt_f16_to_f32(uint16_t h);
uint16_t pt_f32_to_f16(float f);
float pt_bf16_to_f32(uint16_t h);
uint16_t pt_f32_to_bf16(float f);

/* Row conversions into F32: n elements (a multiple of the block for block types). */
void pt_to_f32(pt_dtype t, const void *src, float *dst, size_t n);
/* F32 into F32/F16/BF16 or a block type (n a multiple of its block; the quantisers are
 * ggml's reference ones). 0, or -1 for another dtype. */
int pt_from_f32(pt_dtype t, const float *src, void *dst, size_t n);

typedef struct pt_tensor {
    char *name;               /* owned */
    pt_dtype dtype;
    int ndim;
    int64_t shape[PT_MAX_DIMS];
    const void *data;         /* borrowed from a mapping, or == owned */
    size_t nbytes;
    void *owned;              /* NULL when borrowed */
} pt_tensor;

/* Number of elements (product of the shape). */
size_t pt_tensor_numel(const pt_tensor *t);

typedef struct pt_tensors {
    pt_tensor *t;             /* t[0..n) */
    size_t n, cap;
    pt_map *maps;             /* files whose memory the borrowed tensors point into */
    size_t n_maps;
    json_t *metadata;         /* string→string metadata (safetensors __metadata__), may be NULL */
} pt_tensors;

void pt_tensors_init(pt_tensors *ts);
void pt_tensors_free(pt_tensors *ts);           /* frees tensors, owned data, unmaps files */
pt_tensor *pt_tensors_find(const pt_tensors *ts, const char *name); /* NULL if absent */
/* Adds a tensor. With copy=1 the data is copied into an allocation the set owns; with
 * copy=0 the pointer is borrowed (its memory must outlive the set, or be one of ts->maps).
 * Fails with PT_EEXIST on a duplicate name. */
int pt_tensors_add(pt_tensors *ts, const char *name, pt_dtype dtype, int ndim, const int64_t *shape,
                   const void *data, size_t nbytes, int copy, pt_err *err);
/* Adds a tensor whose data the set takes over (data must come from malloc). */
int pt_tensors_add_owned(pt_tensors *ts, const char *name, pt_dtype dtype, int ndim, const int64_t *shape,
                         void *data, size_t nbytes, pt_err *err);
/* Keeps a mapping alive for the set's lifetime (takes it over; *m is cleared). */
int pt_tensors_keep_map(pt_tensors *ts, pt_map *m, pt_err *err);

/* safetensors --------------------------------------------------------------------------- */

#define PT_SAFETENSORS_MAX_HEADER (100u << 20)

/* Reads a .safetensors file into ts (adding to what is there). The file is mmapped and the
 * tensors borrow from the mapping. Every header field is validated: a clear error names the
 * file, the tensor and the byte offset. Metadata goes into ts->metadata. */
int pt_safetensors_read(const char *path, pt_tensors *ts, pt_err *err);
/* The same from a buffer in memory (the tensors borrow from data, which must outlive ts). */
int pt_safetensors_parse(const uint8_t *data, size_t len, const char *what, pt_tensors *ts, pt_err *err);
/* The header bytes (length prefix + padded JSON) for tensors in this order; *out malloc'd. */
int pt_safetensors_header(const pt_tensor *tensors, size_t n, const json_t *metadata, char **out, size_t *len,
                          pt_err *err);
/* The whole file into a buffer (for small outputs, e.g. an HTTP response). */
int pt_safetensors_serialize(const pt_tensor *tensors, size_t n, const json_t *metadata, pt_buf *out, pt_err *err);
/* Writes tensors (in the given order) and optional string metadata to path, atomically. */
int pt_safetensors_write(const char *path, const pt_tensor *tensors, size_t n, const json_t *metadata,
                         pt_err *err);

#endif
