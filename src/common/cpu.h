/* cpu.h — which instruction-set extensions this CPU, and its operating system, support.
 *
 * Code for a newer instruction set is compiled per function with a target attribute and
 * chosen at run time. One string names the features both places: the attribute
 * (__attribute__((target(FEATURES)))) and the run-time check (pt_cpu_has(FEATURES)), so the
 * features a function is compiled with and those tested before calling it cannot drift apart. */
#ifndef PT_CPU_H
#define PT_CPU_H

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#define PT_CPU_X86 1
#else
#define PT_CPU_X86 0
#endif

/* 1 when the CPU has every feature of a comma-separated list (an empty one included) of GCC/clang x86 target names
 * ("avx2,fma,f16c") and the OS saves the registers they use; 0 otherwise, and for a name this
 * file does not know (so a misspelt or new feature is never assumed present) and on every CPU
 * that is not x86. */
int pt_cpu_has(const char *features);

#endif
