/* backend.h — the compute kernels the forward pass runs on, behind one narrow interface.
 *
 * forward.c never touches a weight's bytes or a BLAS call itself: it calls the function
 * pointers in a pt_backend. backend_cpu.c is the one implementation today (AVX-512, AVX2 or
 * plain C kernels for decode, chosen at run time; with AVX-512 also for prefills up to
 * nk_rows_max rows; OpenBLAS sgemm for larger prefills; a small
 * pthread pool); a CUDA backend would fill the same struct with device kernels.
 *
 * Conventions: activations are F32, row-major, [rows, width]. A weight is a logical
 * matrix W (n outputs, k inputs) stored either as HF Linear ([n, k], PT_W_NK) or as HF
 * Conv1D ([k, n], PT_W_KN, GPT-2), with a row stride `ld` in elements so that a column
 * slice of a fused matrix (GPT-2's c_attn) is a weight of its own. Weights are borrowed
 * (mmapped file memory) and never converted as a whole.
 */
#ifndef PARITY_ENGINE_BACKEND_H
#define PARITY_ENGINE_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "engine/tensor.h"

typedef enum pt_wlayout {
    PT_W_NK = 0, /* element (i_out, i_in) at data[i_out*ld + i_in]  (HF nn.Linear) */
    PT_W_KN = 1, /* element (i_out, i_in) at data[i_in*ld + i_out]  (HF Conv1D)    */
} pt_wlayout;

typedef struct pt_weight {
    pt_dtype dtype;      /* PT_F32, PT_F16, PT_BF16 or PT_Q8_0 */
    const void *data;    /* borrowed: first element (for Q8_0: first block) */
    int n, k;            /* outputs, inputs */
    size_t ld;           /* row stride in elements of the stored layout */
    pt_wlayout layout;
    const char *name;    /* tensor name, for errors (borrowed) */
} pt_weight;

/* Bytes a weight occupies (what one full pass over it reads). */
size_t pt_weight_bytes(const pt_weight *w);

typedef struct pt_backend pt_backend;

/* One product of a matmul_multi: out [rows, w->n] = x · Wᵀ (+ bias [w->n] when not NULL).
 * Two optional epilogues (NULL: none; not both at once) run in the task that computed each
 * block of output columns, while they are in cache, instead of as a serial pass after the
 * call (the decode step's threads would wait for it):
 *   add_to [rows, w->n]: then add_to += out (a residual add; out keeps the product);
 *   up (a weight of the same shape, no bias) and up_out [rows, w->n]: up_out = x · upᵀ, then
 *   out = silu(out) ⊙ up_out (Llama's MLP), as pt_backend.swiglu computes it.
 * Each gives exactly what the product followed by the same loop over all of out gives. */
typedef struct pt_mm {
    float *out;
    const pt_weight *w;
    const float *bias;
    float *add_to;
    const pt_weight *up;
    float *up_out;
} pt_mm;

#define PT_MM_MAX 8

/* Instruction sets of the CPU backend's kernels, in increasing order. */
typedef enum pt_cpu_isa {
    PT_ISA_AUTO = 0,  /* the best the CPU supports */
    PT_ISA_SCALAR,    /* plain C */
    PT_ISA_AVX2,      /* AVX2 + FMA + F16C */
    PT_ISA_AVX512,    /* AVX-512 F, BW, DQ, VL and VNNI (with AVX2, FMA, F16C) */
} pt_cpu_isa;

/* Attention for one sequence and one layer (attention() takes an array of them).
 *   q    [tq, n_heads*head_dim]      queries of positions p0 .. p0+tq-1 (RoPE applied)
 *   k, v [p0+tq, n_kv*head_dim]      the sequence's cache, keys of positions 0 .. p0+tq-1
 *   z    [tq, n_heads*head_dim]      out: softmax(q·kᵀ/√hd + causal mask)·v, per head
 *   pattern [n_heads, tq, p0+tq]     out when not NULL: the softmax probabilities (0 where masked)
 *   window                           0, or the query at position p sees only keys p-window+1 .. p
 *                                    (sliding-window attention, Mistral)
 *   scale                            0, or the factor of q·k in place of 1/√hd (Gemma's
 *                                    query_pre_attn_scalar^-1/2)
 *   softcap                          0, or scores become softcap·tanh(scores/softcap) before the
 *                                    mask and the softmax (Gemma 2)
 * Query head h reads kv head h / (n_heads/n_kv) (grouped-query attention). */
typedef struct pt_attn_args {
    const float *q;
    const float *k, *v;
    float *z;
    float *pattern;
    int tq, p0, n_heads, n_kv, head_dim;
    int window;
    float scale, softcap;
} pt_attn_args;

struct pt_backend {
    const char *name;
    int n_threads;
    pt_cpu_isa isa;      /* the kernels in use (CPU backend) */
    /* Activation rows up to which matmul runs the backend's own kernels on F32/F16/BF16
     * weights in the NK layout (beyond: sgemm). 8 (the decode kernels) unless the kernel set
     * has register-blocked multi-row kernels (AVX-512), then more, chosen for the sgemm that
     * OpenBLAS runs here (see backend_cpu.c). Read on every call: benches change it to
     * compare the two paths. */
    int nk_rows_max;
    /* out[t, 0..n) = x[t, 0..k) · Wᵀ (+ bias[n] when not NULL), t < rows. out and x do not
     * overlap. Small row counts (decode, and up to nk_rows_max) run the backend's own
     * kernels; larger ones go through cblas_sgemm (non-F32 weights converted to F32 in
     * tiles). matmul and attention return PT_OK or PT_ENOMEM (scratch could not grow). */
    int (*matmul)(pt_backend *b, float *out, const float *x, int rows, const pt_weight *w, const float *bias);
    /* The n (1..PT_MM_MAX) products mm[i] of weights that read the same input x [rows, k]
     * (every mm[i].w->k is k), each as matmul computes it. Decode runs them all in one
     * dispatch to the threads (q/k/v, gate/up: a third or a half of the synchronisation of
     * separate calls). Outputs do not overlap each other or x. PT_OK or PT_ENOMEM. */
    int (*matmul_multi)(pt_backend *b, const float *x, int rows, const pt_mm *mm, int n);
    /* out[rows, n] = a[rows, k] · bᵀ where b is [n, k] F32 (used for tests and benches). */
    void (*sgemm_nt)(pt_backend *b, float *out, const float *a, const float *bm, int rows, int n, int k);
    /* The attention of n sequences a[0..n) (one layer each; their outputs and patterns do
     * not overlap). Decode-sized ones (a few query rows) run as the tasks of one dispatch to
     * the threads, so a batched decode step's sequences share it. PT_OK or PT_ENOMEM. */
    int (*attention)(pt_backend *b, const pt_attn_args *a, int n);
    /* Row i of table w (a [rows_in_table, d] NK weight of any dtype) into out[d]. */
    void (*get_row)(pt_backend *b, float *out, const pt_weight *w, int i);
    /* y = x / rms(x) * w over rows of width d */
    void (*rmsnorm)(pt_backend *b, float *y, const float *x, const float *w, int rows, int d, float eps);
    /* y = (x - mean) / std * w + bias over rows of width d */
    void (*layernorm)(pt_backend *b, float *y, const float *x, const float *w, const float *bias, int rows, int d,
                      float eps);
    /* Rotate-half RoPE in place on x [rows, n_heads*head_dim]; row r is at position pos[r]. */
    void (*rope)(pt_backend *b, float *x, const int *pos, int rows, int n_heads, int head_dim, float theta);
    /* g[i] = silu(g[i]) · u[i], i < n: per element, so any split of a row gives the same values
     * (matmul_multi's SwiGLU epilogue runs this on its blocks). */
    void (*swiglu)(pt_backend *b, float *g, const float *u, size_t n);
    void (*free)(pt_backend *b);
    void *impl;
};

/* The CPU backend with n_threads threads (its own pool; its sgemm calls run single-threaded
 * inside the pool's tasks, so OpenBLAS's threads stay idle). n_threads <= 0: the
 * number of online CPUs. Its kernels are the best instruction set the CPU supports, or
 * the one named by the environment variable PARITY_CPU_ISA ("scalar", "avx2", "avx512")
 * when the CPU supports it. NULL on allocation failure. */
pt_backend *pt_backend_cpu_new(int n_threads);
/* The same with the kernels of a given instruction set (tests compare them); NULL also when
 * the CPU does not support it. */
pt_backend *pt_backend_cpu_new_isa(int n_threads, pt_cpu_isa isa);
/* The best instruction set of this CPU, and a set's name. */
pt_cpu_isa pt_cpu_isa_best(void);
const char *pt_cpu_isa_name(pt_cpu_isa isa);
void pt_backend_free(pt_backend *b); /* NULL-safe */

/* Q8_0 helpers (exposed for tests): quantise n floats (multiple of 32) into blocks, and the
 * dot product of two Q8_0 rows of n values. */
void pt_q8_quantize_row(const float *x, pt_block_q8_0 *out, size_t n);
float pt_q8_dot(const pt_block_q8_0 *a, const pt_block_q8_0 *b, size_t n);

#endif
