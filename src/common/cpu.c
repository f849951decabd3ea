/* cpu.c — CPU feature detection (see cpu.h). */
#include "common/cpu.h"

#include <stdint.h>
#include <string.h>

#if PT_CPU_X86
#include <cpuid.h>

/* Where CPUID reports each feature (Intel SDM vol. 2A, CPUID; AMD APM vol. 3, appendix E) and
 * which register state the OS must save for it (XCR0 bits: 1 SSE, 2 AVX, 5-7 AVX-512). */
enum { R_1ECX, R_1EDX, R_7EBX, R_7ECX, R_N };
typedef struct feature {
    const char *name;
    uint8_t reg, bit;
    uint8_t xcr0; /* XCR0 bits that must all be set; 0: SSE state, always saved */
} feature;

#define XCR0_AVX 0x06u
#define XCR0_AVX512 0xE6u
static const feature features[] = {
    {"sse2", R_1EDX, 26, 0},          {"sse3", R_1ECX, 0, 0},         {"ssse3", R_1ECX, 9, 0},
    {"sse4.1", R_1ECX, 19, 0},        {"sse4.2", R_1ECX, 20, 0},      {"popcnt", R_1ECX, 23, 0},
    {"avx", R_1ECX, 28, XCR0_AVX},    {"fma", R_1ECX, 12, XCR0_AVX},  {"f16c", R_1ECX, 29, XCR0_AVX},
    {"avx2", R_7EBX, 5, XCR0_AVX},    {"bmi", R_7EBX, 3, 0},          {"bmi2", R_7EBX, 8, 0},
    {"sha", R_7EBX, 29, 0},           {"avx512f", R_7EBX, 16, XCR0_AVX512},
    {"avx512dq", R_7EBX, 17, XCR0_AVX512}, {"avx512bw", R_7EBX, 30, XCR0_AVX512},
    {"avx512vl", R_7EBX, 31, XCR0_AVX512}, {"avx512vnni", R_7ECX, 11, XCR0_AVX512},
};

static void read_cpu(uint32_t reg[R_N], uint32_t *xcr0) {
    unsigned a, b, c, d;
    memset(reg, 0, R_N * sizeof *reg);
    *xcr0 = 0;
    if (__get_cpuid(1, &a, &b, &c, &d)) {
        reg[R_1ECX] = c;
        reg[R_1EDX] = d;
    }
    if (__get_cpuid_count(7, 0, &a, &b, &c, &d)) {
        reg[R_7EBX] = b;
        reg[R_7ECX] = c;
    }
    if ((reg[R_1ECX] >> 27) & 1) { /* OSXSAVE: XGETBV is usable */
        uint32_t lo, hi;
        __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
        *xcr0 = lo;
    }
}

int pt_cpu_has(const char *list) {
    uint32_t reg[R_N], xcr0;
    read_cpu(reg, &xcr0);
    const char *p = list;
    while (*p) {
        size_t n = strcspn(p, ",");
        const feature *f = NULL;
        for (size_t i = 0; i < sizeof features / sizeof *features && !f; i++)
            if (strlen(features[i].name) == n && !memcmp(features[i].name, p, n)) f = &features[i];
        if (!f || !((reg[f->reg] >> f->bit) & 1) || (xcr0 & f->xcr0) != f->xcr0) return 0;
        p += n;
        if (*p == ',') p++;
    }
    return 1;
}

#else

int pt_cpu_has(const char *list) {
    return *list == 0; /* no x86 feature is present; an empty list holds */
}

#endif
