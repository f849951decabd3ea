/* test_cpu.c — pt_cpu_has (common/cpu.h): every feature the kernels' target attributes name
 * agrees with the compiler's own __builtin_cpu_supports where that knows the feature; a list
 * needs all of its features; an unknown name is never assumed present; nothing x86 is
 * reported on another CPU. */
#include <string.h>

#include "common/cpu.h"
#include "test.h"

static void test_lists(void) {
    CHECK(pt_cpu_has("") == 1);
    CHECK(pt_cpu_has("avx513") == 0);
    CHECK(pt_cpu_has("sse2,avx513") == 0);
    CHECK(pt_cpu_has("avx2,") == pt_cpu_has("avx2"));
#if PT_CPU_X86 && defined(__x86_64__)
    CHECK(pt_cpu_has("sse2") == 1); /* in every x86-64 */
#endif
#if !PT_CPU_X86
    CHECK(pt_cpu_has("sse2") == 0);
    CHECK(pt_cpu_has("avx2,fma,f16c") == 0);
#endif
}

#if PT_CPU_X86
/* Every name both know. (clang 14's __builtin_cpu_supports knows neither "f16c" nor "sha".) */
#define SAME(name)                                                                                  \
    do {                                                                                            \
        int ours = pt_cpu_has(name), theirs = __builtin_cpu_supports(name) ? 1 : 0;                 \
        if (ours != theirs) fprintf(stderr, "  %s: pt_cpu_has %d, __builtin_cpu_supports %d\n", name, ours, theirs); \
        CHECK(ours == theirs);                                                                      \
    } while (0)

static void test_against_compiler(void) {
    __builtin_cpu_init();
    SAME("sse3");
    SAME("ssse3");
    SAME("sse4.1");
    SAME("sse4.2");
    SAME("popcnt");
    SAME("avx");
    SAME("fma");
    SAME("avx2");
    SAME("bmi");
    SAME("bmi2");
    SAME("avx512f");
    SAME("avx512dq");
    SAME("avx512bw");
    SAME("avx512vl");
    SAME("avx512vnni");
    /* a list is the conjunction of its members */
    CHECK(pt_cpu_has("avx2,fma,avx512dq") ==
          (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("avx512dq")));
    /* F16C and AVX2 come together on every CPU we know of; AVX-512 implies both. */
    if (pt_cpu_has("avx512f")) CHECK(pt_cpu_has("avx2,fma,f16c"));
    printf("this CPU: avx2,fma,f16c %d; avx512 f,bw,dq,vl,vnni %d; sha %d; sse4.2 %d\n", pt_cpu_has("avx2,fma,f16c"),
           pt_cpu_has("avx512f,avx512bw,avx512dq,avx512vl,avx512vnni"), pt_cpu_has("sha"), pt_cpu_has("sse4.2"));
}
#endif

int main(void) {
    test_lists();
#if PT_CPU_X86
    test_against_compiler();
#endif
    return test_summary("cpu");
}
