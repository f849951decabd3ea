/* see tensor.h — dtype names, sizes and conversions. */
#include <math.h>
#include <string.h>

#include "engine/quant_k.h"
#include "engine/tensor.h"

static const struct {
    const char *name;
    size_t size;  /* bytes per block */
    size_t block; /* values per block (1: not a block type) */
} dtypes[PT_DTYPE_COUNT] = {
    [PT_F32] = {"F32", 4, 1},
    [PT_F16] = {"F16", 2, 1},
    [PT_BF16] = {"BF16", 2, 1},
    [PT_Q8_0] = {"Q8_0", sizeof(pt_block_q8_0), PT_Q8_0_BLOCK},
    [PT_F64] = {"F64", 8, 1},
    [PT_I8] = {"I8", 1, 1},
    [PT_U8] = {"U8", 1, 1},
    [PT_I16] = {"I16", 2, 1},
    [PT_I32] = {"I32", 4, 1},
    [PT_I64] = {"I64", 8, 1},
    [PT_BOOL] = {"BOOL", 1, 1},
    [PT_Q4_0] = {"Q4_0", sizeof(pt_block_q4_0), PT_Q4_0_BLOCK},
    [PT_Q4_K] = {"Q4_K", sizeof(pt_block_q4_k), PT_QK_K},
    [PT_Q5_K] = {"Q5_K", sizeof(pt_block_q5_k), PT_QK_K},
    [PT_Q6_K] = {"Q6_K", sizeof(pt_block_q6_k), PT_QK_K},
};

const char *pt_dtype_name(pt_dtype t) { return (unsigned)t < PT_DTYPE_COUNT ? dtypes[t].name : "?"; }

int pt_dtype_from_name(const char *name) {
    for (int i = 0; i < PT_DTYPE_COUNT; i++)
        if (!strcmp(dtypes[i].name, name)) return i;
    return -1;
}

int pt_dtype_bytes(pt_dtype t, size_t n, size_t *out) {
    if ((unsigned)t >= PT_DTYPE_COUNT || n % dtypes[t].block) return -1;
    return pt_mul_size(n / dtypes[t].block, dtypes[t].size, out);
}

size_t pt_dtype_block(pt_dtype t) { return (unsigned)t < PT_DTYPE_COUNT ? dtypes[t].block : 1; }

int pt_dtype_is_quant(pt_dtype t) { return pt_dtype_block(t) > 1; }

const void *pt_dtype_at(pt_dtype t, const void *data, size_t e) {
    return (const uint8_t *)data + e / dtypes[t].block * dtypes[t].size;
}

float pt_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ff, bits;
    if (exp == 0) {
        if (man == 0) {
            bits = sign;
        } else { /* subnormal: normalise */
            exp = 127 - 15 + 1;
            while (!(man & 0x400)) {
                man <<= 1;
                exp--;
            }
            man &= 0x3ff;
            bits = sign | exp << 23 | man << 13;
        }
    } else if (exp == 31) {
        bits = sign | 0x7f800000u | man << 13;
    } else {
        bits = sign | (exp + 127 - 15) << 23 | man << 13;
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

uint16_t pt_f32_to_f16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000;
    uint32_t ax = x & 0x7fffffffu;
    if (ax >= 0x7f800000u) /* inf or nan */
        return (uint16_t)(sign | 0x7c00 | (ax > 0x7f800000u ? 0x200 : 0));
    if (ax >= 0x477ff000u) /* rounds to >= 65520: overflow to inf */
        return (uint16_t)(sign | 0x7c00);
    if (ax < 0x38800000u) { /* below the smallest normal half: subnormal or zero */
        if (ax < 0x33000000u) return (uint16_t)sign; /* < 2^-25 rounds to zero */
        uint32_t e = ax >> 23, m = (ax & 0x7fffff) | 0x800000;
        int shift = 126 - (int)e; /* 14..24 */
        uint32_t half = m >> shift, rem = m & ((1u << shift) - 1), mid = 1u << (shift - 1);
        if (rem > mid || (rem == mid && (half & 1))) half++;
        return (uint16_t)(sign | half);
    }
    uint32_t h = ((ax >> 13) - ((127 - 15) << 10)), rem = ax & 0x1fff;
    if (rem > 0x1000 || (rem == 0x1000 && (h & 1))) h++;
    return (uint16_t)(sign | h);
}

float pt_bf16_to_f32(uint16_t h) {
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

uint16_t pt_f32_to_bf16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x40); /* quiet nan */
    x += 0x7fff + ((x >> 16) & 1);
    return (uint16_t)(x >> 16);
}

void pt_to_f32(pt_dtype t, const void *src, float *dst, size_t n) {
    switch (t) {
    case PT_F32: memcpy(dst, src, n * 4); break;
    case PT_F16: {
        const uint16_t *s = src;
        for (size_t i = 0; i < n; i++) dst[i] = pt_f16_to_f32(s[i]);
        break;
    }
    case PT_BF16: {
        const uint16_t *s = src;
        for (size_t i = 0; i < n; i++) dst[i] = pt_bf16_to_f32(s[i]);
        break;
    }
    case PT_Q8_0: {
        const pt_block_q8_0 *b = src;
        for (size_t i = 0; i < n / PT_Q8_0_BLOCK; i++) {
            float d = pt_f16_to_f32(b[i].d);
            for (int j = 0; j < PT_Q8_0_BLOCK; j++) dst[i * PT_Q8_0_BLOCK + j] = d * b[i].q[j];
        }
        break;
    }
    case PT_Q4_0: pt_dequant_q4_0(src, dst, n); break;
    case PT_Q4_K: pt_dequant_q4_k(src, dst, n); break;
    case PT_Q5_K: pt_dequant_q5_k(src, dst, n); break;
    case PT_Q6_K: pt_dequant_q6_k(src, dst, n); break;
    default: memset(dst, 0, n * 4); break;
    }
}

int pt_from_f32(pt_dtype t, const float *src, void *dst, size_t n) {
    switch (t) {
    case PT_F32: memcpy(dst, src, n * 4); return 0;
    case PT_F16: {
        uint16_t *d = dst;
        for (size_t i = 0; i < n; i++) d[i] = pt_f32_to_f16(src[i]);
        return 0;
    }
    case PT_BF16: {
        uint16_t *d = dst;
        for (size_t i = 0; i < n; i++) d[i] = pt_f32_to_bf16(src[i]);
        return 0;
    }
    case PT_Q8_0: {
        /* As ggml's reference quantiser: d = max|x| / 127, q = round(x / d). */
        pt_block_q8_0 *b = dst;
        for (size_t i = 0; i < n / PT_Q8_0_BLOCK; i++) {
            const float *x = src + i * PT_Q8_0_BLOCK;
            float amax = 0;
            for (int j = 0; j < PT_Q8_0_BLOCK; j++) amax = fmaxf(amax, fabsf(x[j]));
            float d = amax / 127.0f, id = d ? 1.0f / d : 0.0f;
            b[i].d = pt_f32_to_f16(d);
            for (int j = 0; j < PT_Q8_0_BLOCK; j++) b[i].q[j] = (int8_t)roundf(x[j] * id);
        }
        return 0;
    }
    case PT_Q4_0: pt_quant_q4_0(src, dst, n); return 0;
    case PT_Q4_K: pt_quant_q4_k(src, dst, n); return 0;
    case PT_Q5_K: pt_quant_q5_k(src, dst, n); return 0;
    case PT_Q6_K: pt_quant_q6_k(src, dst, n); return 0;
    default: return -1;
    }
}
