/* isa_run — runs a test with the CPU backend's kernels of one instruction set:
 *   isa_run SET PROGRAM [ARGS...]
 * sets PARITY_CPU_ISA=SET and executes PROGRAM; exits 77 (ctest's "skipped") when this CPU
 * does not support SET, so the per-set test entries run once per set the machine has and a
 * set it lacks is reported as skipped rather than silently run with another one. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/backend.h"

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: isa_run SET PROGRAM [ARGS...]\n");
        return 2;
    }
    int set = 0;
    for (int i = PT_ISA_SCALAR; i <= PT_ISA_AVX512; i++)
        if (!strcmp(argv[1], pt_cpu_isa_name((pt_cpu_isa)i))) set = i;
    if (!set) {
        fprintf(stderr, "isa_run: unknown instruction set %s\n", argv[1]);
        return 2;
    }
    if (set > (int)pt_cpu_isa_best()) {
        printf("isa_run: this CPU does not support %s (best: %s): skipped\n", argv[1], pt_cpu_isa_name(pt_cpu_isa_best()));
        return 77;
    }
    if (setenv("PARITY_CPU_ISA", argv[1], 1)) return 1;
    execvp(argv[2], argv + 2);
    perror(argv[2]);
    return 1;
}
