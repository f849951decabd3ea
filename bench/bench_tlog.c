/* bench_tlog — transparency log throughput and proof latency.
 *
 *   bench_tlog [DIR] [SECONDS]      (DIR defaults to /tmp; it must be on a real disk for the
 *                                    fsync figures to mean anything)
 *
 * 1. Reference: the same bytes the log writes for an entry (u16 length + entry, plus a
 *    32-byte leaf hash) appended to one file with one fdatasync per batch of B entries —
 *    the raw cost of durable batched writes on this disk.
 * 2. Sustained appends to a tlog, fsynced, with group commit: T threads calling
 *    tlog_append (one entry each call) and T threads calling tlog_append_batch(B).
 *    The ratio to (1) at the same batch size is reported.
 * 3. Proofs at 1M entries: inclusion proof production (from the tile cache) and RFC 9162
 *    verification, per proof, random indices; and cold production after a reopen.
 */
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/util.h"
#include "tlog/merkle.h"
#include "tlog/tlog.h"

#define ENTRY 200 /* about the size of an audit receipt */

static double secs = 3.0;

static double reference(const char *dir, int batch) {
    char path[512];
    snprintf(path, sizeof path, "%s/parity-bench-ref", dir);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) return 0;
    size_t per = 2 + ENTRY + 32;
    char *buf = calloc((size_t)batch, per);
    double t0 = pt_now();
    long n = 0;
    while (pt_now() - t0 < secs) {
        if (write(fd, buf, per * (size_t)batch) < 0 || fdatasync(fd) < 0) break;
        n += batch;
    }
    double rate = n / (pt_now() - t0);
    close(fd);
    unlink(path);
    free(buf);
    return rate;
}

typedef struct arg {
    tlog *t;
    int batch;
    volatile int *stop;
    long done;
} arg;

static void *appender(void *p) {
    arg *a = p;
    char e[ENTRY];
    memset(e, 'x', sizeof e);
    const void *ptrs[4096];
    size_t lens[4096];
    for (int i = 0; i < a->batch; i++) ptrs[i] = e, lens[i] = ENTRY;
    pt_err err;
    while (!*a->stop) {
        int rc = a->batch == 1 ? tlog_append(a->t, e, ENTRY, NULL, &err)
                               : tlog_append_batch(a->t, ptrs, lens, (size_t)a->batch, NULL, &err);
        if (rc) {
            fprintf(stderr, "append: %s\n", err.msg);
            break;
        }
        a->done += a->batch;
    }
    return NULL;
}

static double sustained(tlog *t, int threads, int batch) {
    pthread_t th[256];
    arg a[256];
    volatile int stop = 0;
    uint64_t s0 = tlog_size(t);
    double t0 = pt_now();
    for (int i = 0; i < threads; i++) {
        a[i] = (arg){t, batch, &stop, 0};
        pthread_create(&th[i], NULL, appender, &a[i]);
    }
    while (pt_now() - t0 < secs) usleep(10000);
    stop = 1;
    for (int i = 0; i < threads; i++) pthread_join(th[i], NULL);
    return (double)(tlog_size(t) - s0) / (pt_now() - t0);
}

static uint64_t rnd(uint64_t *s) {
    *s ^= *s << 13, *s ^= *s >> 7, *s ^= *s << 17;
    return *s;
}

static void proofs(tlog *t, const char *label) {
    uint64_t size = tlog_size(t), seed = 88172645463325252ull;
    uint8_t root[32];
    pt_err err;
    tlog_root(t, size, root, &err);
    enum { N = 20000 };
    static uint8_t proof[N % 1 + 1][TLOG_MAX_PROOF][32];
    uint8_t leaf[32];
    size_t n;
    double t0 = pt_now();
    for (int i = 0; i < N; i++) tlog_prove_inclusion(t, rnd(&seed) % size, size, proof[0], &n, leaf, &err);
    double prod = (pt_now() - t0) / N * 1e6;
    int bad = 0;
    double tv = 0;
    for (int i = 0; i < N; i++) {
        uint64_t idx = rnd(&seed) % size;
        tlog_prove_inclusion(t, idx, size, proof[0], &n, leaf, &err);
        double a = pt_now();
        bad += merkle_verify_inclusion(idx, size, leaf, (const merkle_hash *)proof[0], n, root, &err) != 0;
        tv += pt_now() - a;
    }
    printf("  %-34s produce %6.2f us   verify %6.2f us   (%zu hashes, %d failed)\n", label, prod, tv / N * 1e6, n, bad);
}

int main(int argc, char **argv) {
    if (argc > 1 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        printf("usage: bench_tlog [DIR] [SECONDS]   (log data under DIR, default /tmp, on a real disk for the "
               "fsync figures; SECONDS per figure)\n");
        return 0;
    }
    const char *base = argc > 1 ? argv[1] : "/tmp";
    if (argc > 2) secs = atof(argv[2]);
    char data[512], cmd[600];
    snprintf(data, sizeof data, "%s/parity-bench-tlog-%d", base, (int)getpid());
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", data);
    tlog *t;
    pt_err err;
    if (tlog_open(data, "audit", "bench.example/audit", &t, &err) != 0) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    printf("tlog bench: %d-byte entries, %.0f s per figure, data in %s\n\n", ENTRY, secs, base);
    printf("sustained appends, fsynced, group commit:\n");
    struct { int threads, batch; } runs[] = {{64, 1}, {4, 1000}};
    for (size_t i = 0; i < sizeof runs / sizeof runs[0]; i++) {
        double r = sustained(t, runs[i].threads, runs[i].batch);
        /* the reference at the batch size the log actually achieved */
        int eff = runs[i].batch == 1 ? runs[i].threads : runs[i].batch * runs[i].threads;
        double ref = reference(base, eff);
        printf("  %3d threads x append(%4d): %9.0f entries/s   reference write+fdatasync per %d entries: %9.0f/s   ratio %.2f\n",
               runs[i].threads, runs[i].batch, r, eff, ref, r / ref);
    }
    printf("\nbuilding a 1,000,000-entry log ...\n");
    static char e[ENTRY];
    const void *ptrs[50000];
    size_t lens[50000];
    for (int i = 0; i < 50000; i++) ptrs[i] = e, lens[i] = ENTRY;
    uint64_t need = 1000000 - tlog_size(t) % 1000000;
    double t0 = pt_now();
    while (need) {
        size_t k = need > 50000 ? 50000 : need;
        if (tlog_append_batch(t, ptrs, lens, k, NULL, &err)) {
            fprintf(stderr, "%s\n", err.msg);
            return 1;
        }
        need -= k;
    }
    printf("  %llu entries, batches of 50,000: %.0f entries/s\n\ninclusion proofs at size %llu (random indices):\n",
           (unsigned long long)tlog_size(t), 1000000 / (pt_now() - t0), (unsigned long long)tlog_size(t));
    proofs(t, "first pass (cache filled as used)");
    proofs(t, "second pass (warm tile cache)");
    tlog_close(t);
    tlog_open(data, "audit", NULL, &t, &err);
    proofs(t, "after reopen, first pass");
    tlog_close(t);
    if (system(cmd) != 0) return 1;
    return 0;
}
