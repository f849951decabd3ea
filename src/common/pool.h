/* pool.h — the one thread pool: the engine's matmuls and attention (engine/backend_cpu.c) and
 * every parallel part of a training step (train/train.c) run on it.
 *
 * A run is n_tasks calls fn(ctx, task, tid) spread over the pool's threads, the caller
 * included (tid 0). Each thread first runs its own contiguous share of the tasks (a decode
 * matmul's consecutive tasks are consecutive weight rows: one stream of memory per thread),
 * then takes what is left of the others' shares from the back. Workers spin briefly between
 * runs (decode issues one every few microseconds), then sleep. Runs on one pool must not
 * overlap (one caller at a time, and fn does not start a run on the same pool).
 */
#ifndef PARITY_COMMON_POOL_H
#define PARITY_COMMON_POOL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

typedef void (*pt_pool_fn)(void *ctx, int task, int tid);

/* A thread's share of a run's tasks: [lo, hi) packed in one word (lo in the low half), on a
 * cache line of its own. */
typedef struct pt_pool_slot {
    _Alignas(64) _Atomic uint64_t range;
} pt_pool_slot;

typedef struct pt_pool {
    int n;                    /* threads including the caller (read-only) */
    pthread_t *th;
    pt_pool_slot *slot;       /* [n] */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    atomic_uint gen;
    _Alignas(64) atomic_int done;
    pt_pool_fn fn;
    void *ctx;
    atomic_int stop; /* read by spinning workers outside mu */
} pt_pool;

/* A pool of n threads, the caller counted (n - 1 workers are started; if starting one
 * fails, the pool runs with those it got: see ->n). NULL when out of memory. */
pt_pool *pt_pool_new(int n);
/* Stops and joins the workers. NULL is a no-op. */
void pt_pool_free(pt_pool *p);
/* Runs fn over tasks [0, n_tasks) and returns when all are done. One task, or a pool of one
 * thread: every task on the caller. */
void pt_pool_run(pt_pool *p, pt_pool_fn fn, void *ctx, int n_tasks);

#endif
