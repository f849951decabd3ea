/* quant_k.h — ggml's 4-bit and K-quant block formats: Q4_0, Q4_K, Q5_K, Q6_K.
 *
 * Block layouts, scales and mins exactly as ggml defines them (ggml-common.h), so that GGUF
 * files written by llama.cpp load as they are and files parity writes load in llama.cpp.
 * Dequantisation gives the same floats, bit for bit, as ggml's dequantize_row_*; the
 * quantisers follow ggml's reference quantize_row_*_ref (what llama-quantize does without
 * an importance matrix). tests/test_quant_ggml.py checks both against ggml's own library.
 *
 * K-quants: super-blocks of PT_QK_K = 256 values.
 *   Q4_K, Q5_K: 8 sub-blocks of 32, each with a 6-bit scale and a 6-bit min (packed into 12
 *   bytes: see pt_qk_scale_min), value = d·sc·q − dmin·m with q 4 bits (Q5_K: a fifth bit in
 *   qh).
 *   Q6_K: 16 sub-blocks of 16 with int8 scales, value = d·sc·(q − 32), q 6 bits (4 in ql, 2 in
 *   qh).
 * Q4_0: blocks of 32, value = d·(q − 8), q 4 bits (low nibbles: the first 16 values). */
#ifndef PARITY_ENGINE_QUANT_K_H
#define PARITY_ENGINE_QUANT_K_H

#include <stddef.h>
#include <stdint.h>

#include "engine/tensor.h"

#define PT_Q4_0_BLOCK 32
#define PT_QK_K 256

typedef struct pt_block_q4_0 {
    uint16_t d;          /* F16 scale */
    uint8_t qs[PT_Q4_0_BLOCK / 2];
} pt_block_q4_0;

typedef struct pt_block_q4_k {
    uint16_t d;          /* F16 scale of the sub-block scales */
    uint16_t dmin;       /* F16 scale of the sub-block mins */
    uint8_t scales[12];  /* 8 scales and 8 mins, 6 bits each */
    uint8_t qs[PT_QK_K / 2];
} pt_block_q4_k;

typedef struct pt_block_q5_k {
    uint16_t d, dmin;
    uint8_t scales[12];
    uint8_t qh[PT_QK_K / 8]; /* the fifth bit of each value */
    uint8_t qs[PT_QK_K / 2];
} pt_block_q5_k;

typedef struct pt_block_q6_k {
    uint8_t ql[PT_QK_K / 2]; /* low 4 bits */
    uint8_t qh[PT_QK_K / 4]; /* high 2 bits */
    int8_t scales[PT_QK_K / 16];
    uint16_t d;
} pt_block_q6_k;

/* Sub-block j (0..7) of a Q4_K/Q5_K block's packed scales: its 6-bit scale and min. */
void pt_qk_scale_min(const uint8_t *scales, int j, uint8_t *sc, uint8_t *m);

/* n values (a multiple of the block) from blocks to F32. */
void pt_dequant_q4_0(const void *src, float *dst, size_t n);
void pt_dequant_q4_k(const void *src, float *dst, size_t n);
void pt_dequant_q5_k(const void *src, float *dst, size_t n);
void pt_dequant_q6_k(const void *src, float *dst, size_t n);

/* n values (a multiple of the block) from F32 to blocks. */
void pt_quant_q4_0(const float *src, void *dst, size_t n);
void pt_quant_q4_k(const float *src, void *dst, size_t n);
void pt_quant_q5_k(const float *src, void *dst, size_t n);
void pt_quant_q6_k(const float *src, void *dst, size_t n);

/* Σ row·x over k values (a multiple of 256) of one weight row of blocks. */
typedef float (*pt_qk_dot_fn)(const void *row, const float *x, size_t k);
/* The AVX2+FMA kernel for t (Q4_K, Q6_K), NULL for another type or on another architecture;
 * call it only where the CPU has AVX2 and FMA (the backend's choice of instruction set). */
pt_qk_dot_fn pt_qk_dot_avx2(pt_dtype t);

#endif
