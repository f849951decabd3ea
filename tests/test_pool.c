/* The thread pool (common/pool.h) that the engine and the trainer share: every task of a run
 * runs exactly once, on a thread id below the pool's size, and the run returns only after all
 * of them, over many back-to-back runs of varied sizes (the case where a worker still leaving
 * one run meets the next); a pool of one thread runs everything on the caller. */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "common/pool.h"
#include "test.h"

#define MAX_TASKS 257

typedef struct run_ctx {
    _Atomic int count[MAX_TASKS];
    atomic_int bad_tid;
    int n_threads;
} run_ctx;

static void count_task(void *ctx, int task, int tid) {
    run_ctx *c = ctx;
    if (tid < 0 || tid >= c->n_threads) atomic_fetch_add(&c->bad_tid, 1);
    atomic_fetch_add(&c->count[task], 1);
}

static void check_runs(int threads, int runs) {
    pt_pool *p = pt_pool_new(threads);
    CHECK(p != NULL);
    if (!p) return;
    CHECK(p->n >= 1 && p->n <= (threads < 1 ? 1 : threads));
    static run_ctx c;
    int exact = 1;
    for (int r = 0; r < runs; r++) {
        int n = (int)((r * 37u + 11u) % MAX_TASKS); /* 0 .. 256, including 0 and 1 */
        memset(&c, 0, sizeof c);
        c.n_threads = p->n;
        pt_pool_run(p, count_task, &c, n);
        for (int t = 0; t < MAX_TASKS; t++)
            if (atomic_load(&c.count[t]) != (t < n)) exact = 0;
        if (atomic_load(&c.bad_tid)) exact = 0;
    }
    CHECK(exact);
    pt_pool_free(p);
}

int main(void) {
    check_runs(1, 50);
    check_runs(0, 5); /* fewer than one thread: one */
    check_runs(2, 2000);
    check_runs(4, 2000);
    pt_pool_free(NULL);
    return test_summary("pool");
}
