/* bench_witness — what witnessing adds to a checkpoint publication (issue 14, figure 1).
 *
 *   bench_witness [DIR] [ROUNDS]     (DIR defaults to /tmp; ROUNDS to 200)
 *
 * A log under DIR and two witnesses (each its own key and state directory, each behind its own
 * HTTP server on loopback, the handler `parity witness serve` uses) configured for it. Per
 * round: one entry appended (bundle and tiles fsynced, checkpoint signed and published: what a
 * writer pays anyway), then tlog_cosign: the checkpoint with its consistency proof POSTed to
 * both witnesses (each verifies the log's signature and the proof, stores its new state with
 * fsync, and signs), the cosignatures checked, and the checkpoint republished with them.
 * Prints the median and p99 of each and the ratio (publication + witnessing) / publication.
 * Witnesses on the same host: the network round trip of a real deployment comes on top (and
 * the server does this off the request path, in its witnessing thread).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/util.h"
#include "server/http.h"
#include "tlog/tlog.h"
#include "tlog/witness.h"

static int handle(void *ctx, http_req *req, http_resp *resp) {
    witness_answer a;
    witness_add_checkpoint(ctx, req->body, req->body_len, (uint64_t)time(NULL), &a);
    resp->status = a.status;
    resp->content_type = a.content_type;
    if (a.body) pt_buf_append(&resp->body, a.body, a.len);
    witness_answer_free(&a);
    return HTTP_DONE;
}

static size_t cap(void *ctx, const char *m, const char *p) {
    (void)ctx, (void)m, (void)p;
    return WITNESS_MAX_REQUEST;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void stats(const char *what, double *v, int n, double *median) {
    qsort(v, (size_t)n, sizeof *v, cmp);
    *median = v[n / 2];
    printf("%-44s median %8.3f ms   p99 %8.3f ms\n", what, v[n / 2] * 1e3, v[(n * 99) / 100] * 1e3);
}

int main(int argc, char **argv) {
    const char *base = argc > 1 ? argv[1] : "/tmp";
    int rounds = argc > 2 ? atoi(argv[2]) : 200;
    if (rounds < 10) rounds = 10;
    char dir[512], wdir[2][600], cmd[1200];
    snprintf(dir, sizeof dir, "%s/parity-bench-witness-%d", base, (int)getpid());
    pt_err err;
    tlog *t;
    if (tlog_open(dir, "bench", NULL, &t, &err)) {
        fprintf(stderr, "bench_witness: %s\n", err.msg);
        return 1;
    }
    http_server *hs[2];
    witness *w[2];
    char url[2][64], *wv[2];
    tlog_witness ws[2];
    for (int i = 0; i < 2; i++) {
        char name[32];
        snprintf(wdir[i], sizeof wdir[i], "%s/w%d", dir, i);
        snprintf(name, sizeof name, "bench-w%d", i);
        http_options o = {.host = "127.0.0.1", .port = 0, .threads = 2, .handler = handle, .body_cap = cap};
        if (witness_init(wdir[i], name, &wv[i], &err) || witness_add_log(wdir[i], tlog_origin(t), tlog_vkey(t), &err) ||
            witness_open(wdir[i], NULL, &w[i], &err) || (o.ctx = w[i], http_start(&hs[i], &o, &err))) {
            fprintf(stderr, "bench_witness: %s\n", err.msg);
            return 1;
        }
        snprintf(url[i], sizeof url[i], "http://127.0.0.1:%d", http_port(hs[i]));
        ws[i] = (tlog_witness){wv[i], url[i]};
    }
    double *pub = calloc((size_t)rounds, sizeof *pub), *wit = calloc((size_t)rounds, sizeof *wit);
    char entry[200];
    memset(entry, 'x', sizeof entry);
    for (int r = 0; r < rounds; r++) {
        double t0 = pt_now();
        tlog_cosigning c;
        if (tlog_append(t, entry, sizeof entry, NULL, &err)) break;
        double t1 = pt_now();
        if (tlog_cosign(t, ws, 2, 2, 5.0, &c, &err) || !c.published) {
            fprintf(stderr, "bench_witness: round %d: %s %s\n", r, err.msg, c.problems);
            return 1;
        }
        pub[r] = t1 - t0;
        wit[r] = pt_now() - t1;
    }
    double mp, mw;
    printf("bench_witness: %d rounds, a 200-byte entry each, 2 witnesses on loopback, quorum 2\n", rounds);
    stats("publication (append, fsync, sign, publish)", pub, rounds, &mp);
    stats("witnessing (2 add-checkpoint, republish)", wit, rounds, &mw);
    printf("publication + witnessing / publication: %.2fx (median)\n", (mp + mw) / mp);
    for (int i = 0; i < 2; i++) {
        http_stop(hs[i], 1.0);
        witness_close(w[i]);
        free(wv[i]);
    }
    tlog_close(t);
    free(pub);
    free(wit);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : 1;
}
