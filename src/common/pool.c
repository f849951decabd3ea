/* pool.c — the thread pool. See pool.h. */
#include "common/pool.h"

#include <sched.h>
#include <stdlib.h>
#include <string.h>

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define pool_pause() _mm_pause()
#else
#define pool_pause() ((void)0)
#endif

typedef struct worker_arg {
    pt_pool *p;
    int tid;
} worker_arg;

#define PT_RANGE(lo, hi) ((uint64_t)(uint32_t)(lo) | (uint64_t)(uint32_t)(hi) << 32)

/* Takes a task of slot s, from the front (own slot) or from the back (another's): its
 * index, or -1 when the slot is empty. acquire: pairs with pt_pool_run's release store of the
 * range, so fn/ctx are this run's. */
static int pool_take(pt_pool_slot *s, int front) {
    uint64_t r = atomic_load_explicit(&s->range, memory_order_acquire);
    for (;;) {
        uint32_t lo = (uint32_t)r, hi = (uint32_t)(r >> 32);
        if (lo >= hi) return -1;
        uint64_t nr = front ? PT_RANGE(lo + 1, hi) : PT_RANGE(lo, hi - 1);
        if (atomic_compare_exchange_weak_explicit(&s->range, &r, nr, memory_order_acquire, memory_order_acquire))
            return (int)(front ? lo : hi - 1);
    }
}

static void pool_work(pt_pool *p, int tid) {
    /* Each thread runs its own contiguous share of the tasks first: in decode a task is a
     * block of weight rows and consecutive tasks are consecutive rows, so a thread streams
     * its share as one run of memory (the hardware prefetcher does not restart at every
     * task) and claims tasks on a cache line no other thread writes (a shared counter went
     * between the cores at every claim: ~50 claims per dispatch, ~40 dispatches per token).
     * Then it takes the remaining tasks of the others from the back, which balances a
     * thread that was descheduled or slower, without breaking its owner's stream.
     * Tasks done are counted here and published once. pt_pool_run cannot see the run complete
     * before this thread's add, so all the tasks it counts are of one run. */
    int n = 0, t;
    for (int i = 0; i < p->n; i++) {
        pt_pool_slot *s = &p->slot[(tid + i) % p->n];
        while ((t = pool_take(s, i == 0)) >= 0) {
            p->fn(p->ctx, t, tid);
            n++;
        }
    }
    if (n) atomic_fetch_add_explicit(&p->done, n, memory_order_release);
}

static void *pool_main(void *arg) {
    worker_arg *wa = arg;
    pt_pool *p = wa->p;
    int tid = wa->tid;
    free(wa);
    unsigned seen = atomic_load(&p->gen);
    for (;;) {
        /* Spin briefly (decode issues a matmul every few microseconds), then sleep so that
         * OpenBLAS's threads have the cores to themselves during prefill. */
        int spins = 0;
        while (atomic_load_explicit(&p->gen, memory_order_acquire) == seen && spins < 20000) {
            pool_pause();
            spins++;
        }
        if (atomic_load_explicit(&p->gen, memory_order_acquire) == seen) {
            pthread_mutex_lock(&p->mu);
            while (atomic_load(&p->gen) == seen && !atomic_load(&p->stop)) pthread_cond_wait(&p->cv, &p->mu);
            pthread_mutex_unlock(&p->mu);
        }
        if (atomic_load(&p->stop)) return NULL;
        seen = atomic_load(&p->gen);
        pool_work(p, tid);
    }
}

void pt_pool_run(pt_pool *p, pt_pool_fn fn, void *ctx, int n_tasks) {
    if (n_tasks <= 0) return;
    if (p->n <= 1 || n_tasks == 1) {
        for (int t = 0; t < n_tasks; t++) fn(ctx, t, 0);
        return;
    }
    /* A worker may still be inside pool_work() of the previous run (one that ran none of its
     * tasks: it looks at the slots after the run completed). Empty every slot first so it
     * claims nothing until this run is set up, and reset done before refilling them: a task
     * claimed after the refill is then always counted in this run. (Resetting done after the
     * refill let a task finish in between and lose its count: this thread then waited
     * forever; seen under a 64-connection load on the server.) */
    for (int i = 0; i < p->n; i++) atomic_store_explicit(&p->slot[i].range, 0, memory_order_relaxed);
    atomic_store(&p->done, 0);
    p->fn = fn;
    p->ctx = ctx;
    for (int i = 0; i < p->n; i++)
        atomic_store_explicit(&p->slot[i].range,
                              PT_RANGE((int64_t)n_tasks * i / p->n, (int64_t)n_tasks * (i + 1) / p->n),
                              memory_order_release);
    pthread_mutex_lock(&p->mu);
    atomic_fetch_add_explicit(&p->gen, 1, memory_order_release);
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    pool_work(p, 0);
    /* Wait for tasks other threads hold; yield after a while, since on a loaded machine the
     * thread we wait for may need this core. */
    for (int spins = 0; atomic_load_explicit(&p->done, memory_order_acquire) < n_tasks; spins++) {
        if (spins > 2000) sched_yield();
        else pool_pause();
    }
}

pt_pool *pt_pool_new(int n) {
    if (n < 1) n = 1;
    pt_pool *p = aligned_alloc(64, sizeof *p); /* its counters are on cache lines of their own */
    if (!p) return NULL;
    memset(p, 0, sizeof *p);
    p->n = n;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    p->th = calloc((size_t)n, sizeof *p->th);
    p->slot = aligned_alloc(64, (size_t)n * sizeof *p->slot);
    if (!p->th || !p->slot) {
        free(p->th);
        free(p->slot);
        free(p);
        return NULL;
    }
    for (int i = 0; i < n; i++) atomic_init(&p->slot[i].range, 0);
    for (int i = 1; i < n; i++) {
        worker_arg *wa = malloc(sizeof *wa);
        if (wa) wa->p = p, wa->tid = i;
        if (!wa || pthread_create(&p->th[i], NULL, pool_main, wa)) {
            free(wa);
            p->n = i; /* run with the threads we got */
            break;
        }
    }
    return p;
}

void pt_pool_free(pt_pool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    atomic_store(&p->stop, 1);
    atomic_fetch_add(&p->gen, 1);
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    for (int i = 1; i < p->n; i++) pthread_join(p->th[i], NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    free(p->th);
    free(p->slot);
    free(p);
}
