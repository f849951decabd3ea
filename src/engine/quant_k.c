/* see quant_k.h — Q4_0 and K-quant blocks to and from F32.
 *
 * Bit-exactness with ggml: every product and sum below is evaluated in the order ggml's
 * reference code evaluates it, in float, and this file is compiled with -ffp-contract=off
 * (CMakeLists.txt) so that -march=native cannot fuse a multiply and an add into one FMA
 * (which rounds once instead of twice). */
#include <math.h>
#include <string.h>

#include "engine/quant_k.h"
#include "engine/tensor.h"

_Static_assert(sizeof(pt_block_q4_0) == 18, "Q4_0 block is 18 bytes");
_Static_assert(sizeof(pt_block_q4_k) == 144, "Q4_K block is 144 bytes");
_Static_assert(sizeof(pt_block_q5_k) == 176, "Q5_K block is 176 bytes");
_Static_assert(sizeof(pt_block_q6_k) == 210, "Q6_K block is 210 bytes");

/* Round to nearest, ties to even, as ggml's nearest_int: adding 1.5·2^23 leaves the integer
 * in the low mantissa bits (|v| < 2^22). */
static inline int nearest(float v) {
    float t = v + 12582912.f;
    int32_t i;
    memcpy(&i, &t, sizeof i);
    return (i & 0x007fffff) - 0x00400000;
}

static inline int clampi(int v, int lo, int hi) { return v < lo ? lo : v > hi ? hi : v; }

void pt_qk_scale_min(const uint8_t *s, int j, uint8_t *sc, uint8_t *m) {
    /* Bytes 0-3: scales 0-3 (low 6 bits), bytes 4-7: mins 0-3; sub-blocks 4-7 keep their
     * low 4 bits in bytes 8-11 (scale low nibble, min high nibble) and their top 2 bits in
     * the top 2 bits of bytes 0-3 (scales) and 4-7 (mins). */
    if (j < 4) {
        *sc = s[j] & 63;
        *m = s[j + 4] & 63;
    } else {
        *sc = (uint8_t)((s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4));
        *m = (uint8_t)((s[j + 4] >> 4) | ((s[j] >> 6) << 4));
    }
}

static void put_scale_min(uint8_t *s, int j, uint8_t sc, uint8_t m) {
    if (j < 4) {
        s[j] = sc;
        s[j + 4] = m;
    } else {
        s[j + 4] = (uint8_t)((sc & 0xF) | ((m & 0xF) << 4));
        s[j - 4] |= (uint8_t)((sc >> 4) << 6);
        s[j] |= (uint8_t)((m >> 4) << 6);
    }
}

/* ---- dequantisation ------------------------------------------------------------------- */

void pt_dequant_q4_0(const void *src, float *dst, size_t n) {
    const pt_block_q4_0 *b = src;
    for (size_t i = 0; i < n / PT_Q4_0_BLOCK; i++, dst += PT_Q4_0_BLOCK) {
        const float d = pt_f16_to_f32(b[i].d);
        for (int j = 0; j < PT_Q4_0_BLOCK / 2; j++) {
            dst[j] = (float)((b[i].qs[j] & 0xF) - 8) * d;
            dst[j + PT_Q4_0_BLOCK / 2] = (float)((b[i].qs[j] >> 4) - 8) * d;
        }
    }
}

/* Q4_K and Q5_K: 4 groups of 64 values; group g's 32 low nibbles are sub-block 2g, its high
 * nibbles sub-block 2g+1; Q5_K's fifth bits are bits 2g and 2g+1 of qh[0..32). */
static void dequant_k45(const uint16_t *dd, const uint8_t *scales, const uint8_t *qh, const uint8_t *qs, float *y) {
    const float d = pt_f16_to_f32(dd[0]), min = pt_f16_to_f32(dd[1]);
    for (int g = 0; g < 4; g++, qs += 32) {
        uint8_t sc, m;
        pt_qk_scale_min(scales, 2 * g, &sc, &m);
        const float d1 = d * sc, m1 = min * m;
        pt_qk_scale_min(scales, 2 * g + 1, &sc, &m);
        const float d2 = d * sc, m2 = min * m;
        const uint8_t u1 = (uint8_t)(1u << (2 * g)), u2 = (uint8_t)(2u << (2 * g));
        for (int l = 0; l < 32; l++) *y++ = d1 * (float)((qs[l] & 0xF) + (qh && (qh[l] & u1) ? 16 : 0)) - m1;
        for (int l = 0; l < 32; l++) *y++ = d2 * (float)((qs[l] >> 4) + (qh && (qh[l] & u2) ? 16 : 0)) - m2;
    }
}

void pt_dequant_q4_k(const void *src, float *dst, size_t n) {
    const pt_block_q4_k *b = src;
    for (size_t i = 0; i < n / PT_QK_K; i++) dequant_k45(&b[i].d, b[i].scales, NULL, b[i].qs, dst + i * PT_QK_K);
}

void pt_dequant_q5_k(const void *src, float *dst, size_t n) {
    const pt_block_q5_k *b = src;
    for (size_t i = 0; i < n / PT_QK_K; i++) dequant_k45(&b[i].d, b[i].scales, b[i].qh, b[i].qs, dst + i * PT_QK_K);
}

/* Q6_K: 2 halves of 128; in half h, value l + 32c (c = 0..3) has its low nibble in
 * ql[64h + l + 32(c&1)] (low nibble for c < 2, high for c >= 2) and its top 2 bits at bit 2c
 * of qh[32h + l]; its scale is scales[8h + l/16 + 2c]. */
void pt_dequant_q6_k(const void *src, float *dst, size_t n) {
    const pt_block_q6_k *b = src;
    for (size_t i = 0; i < n / PT_QK_K; i++) {
        const float d = pt_f16_to_f32(b[i].d);
        for (int h = 0; h < 2; h++) {
            const uint8_t *ql = b[i].ql + 64 * h, *qh = b[i].qh + 32 * h;
            const int8_t *sc = b[i].scales + 8 * h;
            float *y = dst + i * PT_QK_K + 128 * h;
            for (int l = 0; l < 32; l++) {
                for (int c = 0; c < 4; c++) {
                    int lo = c < 2 ? ql[l + 32 * c] & 0xF : ql[l + 32 * (c - 2)] >> 4;
                    int q = (lo | (((qh[l] >> (2 * c)) & 3) << 4)) - 32;
                    y[l + 32 * c] = d * (float)sc[l / 16 + 2 * c] * (float)q;
                }
            }
        }
    }
}

/* ---- quantisation (ggml's reference algorithms) ---------------------------------------- */

void pt_quant_q4_0(const float *src, void *dst, size_t n) {
    pt_block_q4_0 *b = dst;
    for (size_t i = 0; i < n / PT_Q4_0_BLOCK; i++) {
        const float *x = src + i * PT_Q4_0_BLOCK;
        float amax = 0, max = 0; /* the value of largest magnitude, with its sign */
        for (int j = 0; j < PT_Q4_0_BLOCK; j++)
            if (amax < fabsf(x[j])) amax = fabsf(x[j]), max = x[j];
        const float d = max / -8, id = d ? 1.0f / d : 0.0f;
        b[i].d = pt_f32_to_f16(d);
        for (int j = 0; j < PT_Q4_0_BLOCK / 2; j++) {
            /* x·id lies in [-8, 8]: +8.5 and truncation round it to 0..16, capped at 15 */
            int q0 = (int)(x[j] * id + 8.5f), q1 = (int)(x[j + PT_Q4_0_BLOCK / 2] * id + 8.5f);
            b[i].qs[j] = (uint8_t)((q0 > 15 ? 15 : q0) | (q1 > 15 ? 15 : q1) << 4);
        }
    }
}

/* One sub-block of 32 as scale·L + min with L in 0..nmax and min <= 0, weighted least squares
 * over a search of nstep+1 candidate scales (ggml's make_qkx2_quants, squared error).
 * Returns the scale, *neg_min = -min. */
static float fit_scale_min(const float *x, const float *w, int nmax, float rmin, float rdelta, int nstep, uint8_t *L,
                           float *neg_min) {
    enum { N = 32 };
    float min = x[0], max = x[0], sum_w = w[0], sum_x = sum_w * x[0];
    for (int i = 1; i < N; i++) {
        if (x[i] < min) min = x[i];
        if (x[i] > max) max = x[i];
        sum_w += w[i];
        sum_x += w[i] * x[i];
    }
    if (min > 0) min = 0;
    if (max == min) {
        memset(L, 0, N);
        *neg_min = -min;
        return 0.f;
    }
    float iscale = (float)nmax / (max - min), scale = 1 / iscale, best = 0;
    for (int i = 0; i < N; i++) {
        L[i] = (uint8_t)clampi(nearest(iscale * (x[i] - min)), 0, nmax);
        float diff = scale * (float)L[i] + min - x[i];
        best += w[i] * (diff * diff);
    }
    uint8_t Lt[N];
    for (int is = 0; is <= nstep; is++) {
        iscale = (rmin + rdelta * (float)is + (float)nmax) / (max - min);
        float sum_l = 0, sum_l2 = 0, sum_xl = 0;
        for (int i = 0; i < N; i++) {
            int l = clampi(nearest(iscale * (x[i] - min)), 0, nmax);
            Lt[i] = (uint8_t)l;
            sum_l += w[i] * (float)l;
            sum_l2 += w[i] * (float)l * (float)l;
            sum_xl += w[i] * (float)l * x[i];
        }
        float D = sum_w * sum_l2 - sum_l * sum_l;
        if (!(D > 0)) continue;
        float s = (sum_w * sum_xl - sum_x * sum_l) / D, mn = (sum_l2 * sum_x - sum_l * sum_xl) / D;
        if (mn > 0) {
            mn = 0;
            s = sum_xl / sum_l2;
        }
        float err = 0;
        for (int i = 0; i < N; i++) {
            float diff = s * (float)Lt[i] + mn - x[i];
            err += w[i] * (diff * diff);
        }
        if (err < best) {
            memcpy(L, Lt, N);
            best = err, scale = s, min = mn;
        }
    }
    *neg_min = -min;
    return scale;
}

/* Q4_K/Q5_K: one super-block's d, dmin, packed scales and values L[256] in 0..nmax. */
static void quant_k45(const float *x, int nmax, float rmin, int nstep, uint16_t *dd, uint8_t *packed, uint8_t *L) {
    float scales[8], mins[8], w[32], max_scale = 0, max_min = 0;
    for (int j = 0; j < 8; j++) {
        const float *xj = x + 32 * j;
        float sum_x2 = 0;
        for (int l = 0; l < 32; l++) sum_x2 += xj[l] * xj[l];
        float av_x = sqrtf(sum_x2 / 32);
        for (int l = 0; l < 32; l++) w[l] = av_x + fabsf(xj[l]);
        scales[j] = fit_scale_min(xj, w, nmax, rmin, 0.1f, nstep, L + 32 * j, &mins[j]);
        if (scales[j] > max_scale) max_scale = scales[j];
        if (mins[j] > max_min) max_min = mins[j];
    }
    float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f, inv_min = max_min > 0 ? 63.f / max_min : 0.f;
    memset(packed, 0, 12);
    for (int j = 0; j < 8; j++) {
        /* (ggml stores nearest() into a uint8_t before capping it at 63) */
        uint8_t ls = (uint8_t)nearest(inv_scale * scales[j]), lm = (uint8_t)nearest(inv_min * mins[j]);
        put_scale_min(packed, j, ls > 63 ? 63 : ls, lm > 63 ? 63 : lm);
    }
    dd[0] = pt_f32_to_f16(max_scale / 63.f);
    dd[1] = pt_f32_to_f16(max_min / 63.f);
    for (int j = 0; j < 8; j++) {
        uint8_t sc, m;
        pt_qk_scale_min(packed, j, &sc, &m);
        const float d = pt_f16_to_f32(dd[0]) * (float)sc;
        if (!d) continue;
        const float dm = pt_f16_to_f32(dd[1]) * (float)m;
        for (int i = 0; i < 32; i++) L[32 * j + i] = (uint8_t)clampi(nearest((x[32 * j + i] + dm) / d), 0, nmax);
    }
}

void pt_quant_q4_k(const float *src, void *dst, size_t n) {
    pt_block_q4_k *b = dst;
    uint8_t L[PT_QK_K];
    for (size_t i = 0; i < n / PT_QK_K; i++) {
        quant_k45(src + i * PT_QK_K, 15, -1.f, 20, &b[i].d, b[i].scales, L);
        for (int g = 0; g < 4; g++)
            for (int l = 0; l < 32; l++) b[i].qs[32 * g + l] = (uint8_t)(L[64 * g + l] | L[64 * g + 32 + l] << 4);
    }
}

void pt_quant_q5_k(const float *src, void *dst, size_t n) {
    pt_block_q5_k *b = dst;
    uint8_t L[PT_QK_K];
    for (size_t i = 0; i < n / PT_QK_K; i++) {
        quant_k45(src + i * PT_QK_K, 31, -0.5f, 15, &b[i].d, b[i].scales, L);
        memset(b[i].qh, 0, sizeof b[i].qh);
        for (int g = 0; g < 4; g++)
            for (int l = 0; l < 32; l++) {
                int lo = L[64 * g + l], hi = L[64 * g + 32 + l];
                b[i].qh[l] |= (uint8_t)((lo >> 4) << (2 * g) | (hi >> 4) << (2 * g + 1));
                b[i].qs[32 * g + l] = (uint8_t)((lo & 0xF) | (hi & 0xF) << 4);
            }
    }
}

/* Q6_K's sub-block of 16: symmetric, L in -32..31, scale fitted to weights x² over 19
 * candidate scales (ggml's make_qx_quants with rmse_type 1). Returns the scale, L biased +32. */
static float fit_scale_sym(const float *x, int8_t *L) {
    enum { N = 16, NMAX = 32 };
    float amax = 0, max = 0;
    for (int i = 0; i < N; i++)
        if (fabsf(x[i]) > amax) amax = fabsf(x[i]), max = x[i];
    if (amax < 1e-15f) {
        memset(L, 0, N);
        return 0.f;
    }
    float iscale = -NMAX / max, sumlx = 0, suml2 = 0;
    for (int i = 0; i < N; i++) {
        int l = clampi(nearest(iscale * x[i]), -NMAX, NMAX - 1);
        L[i] = (int8_t)(l + NMAX);
        float w = x[i] * x[i];
        sumlx += w * x[i] * (float)l;
        suml2 += w * (float)l * (float)l;
    }
    float scale = suml2 ? sumlx / suml2 : 0.0f, best = scale * sumlx;
    for (int is = -9; is <= 9; is++) {
        if (!is) continue;
        iscale = -((float)NMAX + 0.1f * (float)is) / max;
        sumlx = suml2 = 0;
        for (int i = 0; i < N; i++) {
            int l = clampi(nearest(iscale * x[i]), -NMAX, NMAX - 1);
            float w = x[i] * x[i];
            sumlx += w * x[i] * (float)l;
            suml2 += w * (float)l * (float)l;
        }
        if (suml2 > 0 && sumlx * sumlx > best * suml2) {
            for (int i = 0; i < N; i++) L[i] = (int8_t)(NMAX + clampi(nearest(iscale * x[i]), -NMAX, NMAX - 1));
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    return scale;
}

void pt_quant_q6_k(const float *src, void *dst, size_t n) {
    pt_block_q6_k *b = dst;
    int8_t L[PT_QK_K];
    for (size_t i = 0; i < n / PT_QK_K; i++) {
        const float *x = src + i * PT_QK_K;
        float scales[16], max_scale = 0, max_abs = 0;
        for (int s = 0; s < 16; s++) {
            scales[s] = fit_scale_sym(x + 16 * s, L + 16 * s);
            if (fabsf(scales[s]) > max_abs) max_abs = fabsf(scales[s]), max_scale = scales[s];
        }
        memset(&b[i], 0, sizeof b[i]);
        if (max_abs < 1e-15f) continue; /* all zero (d = +0) */
        float iscale = -128.f / max_scale;
        b[i].d = pt_f32_to_f16(1 / iscale);
        for (int s = 0; s < 16; s++) {
            int v = nearest(iscale * scales[s]);
            b[i].scales[s] = (int8_t)(v > 127 ? 127 : v);
        }
        for (int s = 0; s < 16; s++) {
            float d = pt_f16_to_f32(b[i].d) * (float)b[i].scales[s];
            if (!d) continue;
            for (int l = 0; l < 16; l++) L[16 * s + l] = (int8_t)(clampi(nearest(x[16 * s + l] / d), -32, 31) + 32);
        }
        for (int h = 0; h < 2; h++) {
            const int8_t *Lh = L + 128 * h;
            uint8_t *ql = b[i].ql + 64 * h, *qh = b[i].qh + 32 * h;
            for (int l = 0; l < 32; l++) {
                ql[l] = (uint8_t)((Lh[l] & 0xF) | (Lh[l + 64] & 0xF) << 4);
                ql[l + 32] = (uint8_t)((Lh[l + 32] & 0xF) | (Lh[l + 96] & 0xF) << 4);
                qh[l] = (uint8_t)((Lh[l] >> 4) | (Lh[l + 32] >> 4) << 2 | (Lh[l + 64] >> 4) << 4 | (Lh[l + 96] >> 4) << 6);
            }
        }
    }
}

/* ---- decode dot products (AVX2 + FMA) -------------------------------------------------
 *
 * One weight row against one F32 activation row, the values decoded in registers: each
 * sub-block's Σ q·x and Σ x are summed in F32 lanes, then scaled by its d·sc (and for Q4_K
 * less dmin·m·Σ x). The summation order differs from dequantise-then-dot, so results agree
 * with it to rounding, not bit for bit (tests/test_quant_kernels.c). */
#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define QK_AVX2_FN __attribute__((target("avx2,fma,f16c")))

QK_AVX2_FN static inline float qk_hsum(__m256 v) {
    __m128 lo = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
    lo = _mm_add_ss(lo, _mm_movehdup_ps(lo));
    return _mm_cvtss_f32(lo);
}

/* 8 bytes at p widened to int32 lanes */
QK_AVX2_FN static inline __m256i qk_u8x8(const uint8_t *p) { return _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)p)); }

QK_AVX2_FN static float dot_q4_k_avx2(const void *row, const float *x, size_t k) {
    const pt_block_q4_k *b = row;
    const __m256i m4 = _mm256_set1_epi32(0xF);
    __m256 total = _mm256_setzero_ps();
    for (size_t i = 0; i < k / PT_QK_K; i++, x += PT_QK_K) {
        const float d = pt_f16_to_f32(b[i].d), dmin = pt_f16_to_f32(b[i].dmin);
        for (int g = 0; g < 4; g++) {
            const uint8_t *qs = b[i].qs + 32 * g;
            const float *x1 = x + 64 * g, *x2 = x1 + 32;
            __m256 a1 = _mm256_setzero_ps(), a2 = a1, s1 = a1, s2 = a1;
            for (int l = 0; l < 32; l += 8) {
                __m256i q = qk_u8x8(qs + l);
                __m256 v1 = _mm256_loadu_ps(x1 + l), v2 = _mm256_loadu_ps(x2 + l);
                a1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_and_si256(q, m4)), v1, a1);
                a2 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_srli_epi32(q, 4)), v2, a2);
                s1 = _mm256_add_ps(s1, v1);
                s2 = _mm256_add_ps(s2, v2);
            }
            uint8_t sc, m;
            pt_qk_scale_min(b[i].scales, 2 * g, &sc, &m);
            total = _mm256_fmadd_ps(_mm256_set1_ps(d * sc), a1, total);
            total = _mm256_fnmadd_ps(_mm256_set1_ps(dmin * m), s1, total);
            pt_qk_scale_min(b[i].scales, 2 * g + 1, &sc, &m);
            total = _mm256_fmadd_ps(_mm256_set1_ps(d * sc), a2, total);
            total = _mm256_fnmadd_ps(_mm256_set1_ps(dmin * m), s2, total);
        }
    }
    return qk_hsum(total);
}

QK_AVX2_FN static float dot_q6_k_avx2(const void *row, const float *x, size_t k) {
    const pt_block_q6_k *b = row;
    const __m256i m4 = _mm256_set1_epi32(0xF), m2 = _mm256_set1_epi32(3), off = _mm256_set1_epi32(32);
    __m256 total = _mm256_setzero_ps();
    for (size_t i = 0; i < k / PT_QK_K; i++, x += PT_QK_K) {
        const float d = pt_f16_to_f32(b[i].d);
        for (int h = 0; h < 2; h++) {
            const uint8_t *ql = b[i].ql + 64 * h, *qh = b[i].qh + 32 * h;
            const int8_t *sc = b[i].scales + 8 * h;
            const float *xh = x + 128 * h;
            for (int c = 0; c < 4; c++)
                for (int half = 0; half < 2; half++) { /* 16 values: one sub-block, one scale */
                    __m256 a = _mm256_setzero_ps();
                    for (int l = 16 * half; l < 16 * half + 16; l += 8) {
                        __m256i lo = qk_u8x8(ql + l + 32 * (c & 1));
                        lo = c < 2 ? _mm256_and_si256(lo, m4) : _mm256_srli_epi32(lo, 4);
                        __m256i hi = _mm256_and_si256(_mm256_srli_epi32(qk_u8x8(qh + l), 2 * c), m2);
                        __m256i q = _mm256_sub_epi32(_mm256_or_si256(lo, _mm256_slli_epi32(hi, 4)), off);
                        a = _mm256_fmadd_ps(_mm256_cvtepi32_ps(q), _mm256_loadu_ps(xh + 32 * c + l), a);
                    }
                    total = _mm256_fmadd_ps(_mm256_set1_ps(d * (float)sc[half + 2 * c]), a, total);
                }
        }
    }
    return qk_hsum(total);
}
#endif

pt_qk_dot_fn pt_qk_dot_avx2(pt_dtype t) {
#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
    if (t == PT_Q4_K) return dot_q4_k_avx2;
    if (t == PT_Q6_K) return dot_q6_k_avx2;
#endif
    (void)t;
    return NULL;
}
