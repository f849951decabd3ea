/* blas.h — the engine's and the trainer's one way into BLAS: row-major sgemm, and OpenBLAS
 * held single-threaded around a dispatch of our own pool (common/pool.h) whose tasks call it.
 * Inline: the wrapper costs nothing over calling cblas_sgemm.
 */
#ifndef PARITY_ENGINE_BLAS_H
#define PARITY_ENGINE_BLAS_H

#include <cblas.h>

/* OpenBLAS's own (not in cblas.h). */
extern void openblas_set_num_threads(int);
extern int openblas_get_num_threads(void);

/* C (M, N) [ldc] = alpha·op(A) op(B) + beta·C, all row-major; op(X) is Xᵀ when trans_X. */
static inline void pt_sgemm(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A, int lda,
                            const float *B, int ldb, float beta, float *C, int ldc) {
    cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans, M, N, K,
                alpha, A, lda, B, ldb, beta, C, ldc);
}

/* OpenBLAS single-threaded until pt_blas_single_end (the setting is the process's: a trainer
 * and an engine in one process share it). Returns what to restore. */
static inline int pt_blas_single_begin(void) {
    int saved = openblas_get_num_threads();
    if (saved != 1) openblas_set_num_threads(1);
    return saved;
}
static inline void pt_blas_single_end(int saved) {
    if (saved != 1) openblas_set_num_threads(saved);
}

#endif
