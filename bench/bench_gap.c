/* bench_gap — the parity report over a large audit log: how long anyone holding the public log
 * needs to recompute its measured section (docs/policy.md, "The measured section").
 *
 *   bench_gap [DIR] [ENTRIES]      (DIR defaults to /tmp, ENTRIES to 1,000,000)
 *
 * Builds DIR/parity-bench-gap: a policy log with one revision and an audit log of ENTRIES
 * request entries shaped like the server's (pseudonyms, commitments, a mix of classes, models,
 * outcomes, latencies; about 600 bytes each). Then, from the tiles on disk:
 *   reference  tlog_verify alone (signature, every hash tile and entry bundle): what checking
 *              the log costs anyway;
 *   report     tlog_verify feeding every entry to a meter, then pt_gap_report_measured;
 * and the same two over HTTP when python3 is on PATH (its http.server serving the tiles on a
 * free loopback port). Prints seconds, entries per second, and report / reference.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/util.h"
#include "gap/gap.h"
#include "gap/measure.h"
#include "policy/history.h"
#include "tlog/tlog.h"

static const char policy[] =
    "version: 1\nlab: {id: l, name: Bench Lab}\n"
    "models:\n  - {id: m, insider_since: 2026-01-05, variants: [{id: mitigated}, {id: unmitigated}]}\n"
    "  - {id: analog, insider_since: 2026-01-05}\n"
    "organisations:\n  - {id: ins, name: Insiders, kind: insider}\n  - {id: ev, name: Evaluator, kind: evaluator}\n"
    "  - {id: rs, name: Researcher, kind: researcher}\n"
    "grants:\n  - {id: ins, organisation: ins, model: '*', tier: AL3}\n"
    "  - {id: ev, organisation: ev, model: '*', tier: AL3, limits: {requests_per_minute: 300, tokens_per_day: 20000000}}\n"
    "  - {id: rs, organisation: rs, model: analog, tier: AL2, limits: {requests_per_minute: 60}}\n";

static int meter_entry(void *ctx, uint64_t index, const uint8_t *data, size_t len) {
    (void)index;
    return pt_gap_meter_add(ctx, data, len) != PT_OK;
}

/* One synthetic request entry, i-th of the log (deterministic). */
static int entry_text(char *out, size_t cap, uint64_t i) {
    static const char *const status[] = {"200", "200", "200", "200", "200", "200", "403", "429", "503", "200"};
    uint64_t x = i * 0x9E3779B97F4A7C15ull;
    int insider = (x >> 7) % 3 == 0, st = (int)((x >> 11) % 10);
    const char *model = (x >> 17) % 4 ? "m" : "analog";
    char t[21];
    pt_format_time(1767600000 + (int64_t)(i / 40) * 60, t); /* 40 requests a minute from 2026-01-05 */
    return snprintf(out, cap,
                    "{\"type\":\"request\",\"time\":\"%s\",\"org_pseudonym\":\"%032llx\",\"key_pseudonym\":\"%032llx\","
                    "\"org_class\":\"%s\",\"method\":\"POST\",\"route\":\"chat\",\"decision\":\"%s\",\"model\":\"%s\","
                    "\"capabilities\":[\"sample\"%s]%s,\"policy_revision\":1,\"policy_digest\":\"sha256:%064d\",\"status\":%s,"
                    "\"request_commitment\":\"%064llx\",\"response_commitment\":\"%064llx\",\"prompt_tokens\":%d,"
                    "\"completion_tokens\":%d,\"latency_ms\":%d,\"queue_ms\":%d}",
                    t, (unsigned long long)(x >> 20) % 3, (unsigned long long)(x >> 22) % 9, insider ? "insider" : "outsider",
                    st == 6 || st == 7 ? "deny" : "allow", model, (x >> 25) % 5 ? "" : ",\"logprobs\"",
                    st == 6 ? ",\"reason\":\"capability_not_in_tier\"" : st == 7 ? ",\"reason\":\"limit_exceeded\"" : "", 0,
                    status[st], (unsigned long long)x, (unsigned long long)~x, (int)(x >> 30) % 200 + 10,
                    (int)(x >> 38) % 100 + 1, (int)(x >> 44) % 900 + (insider ? 40 : 120), (int)(x >> 50) % 50);
}

static int build(const char *dir, uint64_t n) {
    pt_err err;
    tlog *pl, *al;
    pt_apply_result r;
    memset(&r, 0, sizeof r);
    if (tlog_open(dir, "policy", NULL, &pl, &err) ||
        pt_policy_apply(pl, dir, policy, sizeof policy - 1, "bench", 1767571200, &r, &err)) {
        fprintf(stderr, "bench_gap: %s\n", err.msg);
        return 1;
    }
    pt_apply_result_free(&r);
    tlog_close(pl);
    if (tlog_open(dir, "audit", NULL, &al, &err)) {
        fprintf(stderr, "bench_gap: %s\n", err.msg);
        return 1;
    }
    enum { B = 8192, W = 1024 };
    char *texts = malloc((size_t)B * W);
    const void **data = malloc(B * sizeof *data);
    size_t *lens = malloc(B * sizeof *lens);
    int rc = !texts || !data || !lens;
    for (uint64_t i = tlog_size(al); !rc && i < n;) {
        size_t k = 0;
        for (; k < B && i < n; k++, i++) {
            data[k] = texts + k * W;
            lens[k] = (size_t)entry_text(texts + k * W, W, i);
        }
        if ((rc = tlog_append_batch(al, data, lens, k, NULL, &err))) fprintf(stderr, "bench_gap: %s\n", err.msg);
    }
    free(texts);
    free(data);
    free(lens);
    tlog_close(al);
    return rc != 0;
}

static double cpu_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static double last_cpu; /* CPU seconds of this process in the last run() */

/* Seconds for a verify of the audit log at src (with the report when report = 1). */
static double run(const char *src, const char *vkey, const char *policy_src, const char *pvkey, int report) {
    pt_err err;
    double t0 = pt_now(), c0 = cpu_now();
    pt_gap_meter *m = report ? pt_gap_meter_new() : NULL;
    tlog_verified v;
    if (tlog_verify(src, vkey, NULL, report ? meter_entry : NULL, m, &v, &err)) {
        fprintf(stderr, "bench_gap: %s\n", err.msg);
        pt_gap_meter_free(m);
        return -1;
    }
    if (report) {
        pt_policy_history *h;
        json_t *rep = NULL;
        if (pt_policy_history_load(policy_src, pvkey, NULL, &h, &err) == PT_OK) {
            rep = pt_gap_report_measured(h->revs, h->n, 1775000000, m, &err);
            pt_policy_history_free(h);
        }
        if (!rep) fprintf(stderr, "bench_gap: %s\n", err.msg);
        json_decref(rep);
        pt_gap_meter_free(m);
        if (!rep) return -1;
    }
    last_cpu = cpu_now() - c0;
    return pt_now() - t0;
}

static void line(const char *what, double ref, double ref_cpu, double rep, double rep_cpu, uint64_t n) {
    printf("%-22s verify only %6.2f s (CPU %6.2f)   verify + report %6.2f s (CPU %6.2f; %.0f entries/s)   "
           "report / verify %.2fx (CPU %.2fx)\n",
           what, ref, ref_cpu, rep, rep_cpu, (double)n / rep, rep / ref, rep_cpu / ref_cpu);
}

/* python3's http.server on a free loopback port serving dir; its pid, the port in *port. */
static pid_t http_serve(const char *dir, int *port) {
    int fds[2];
    if (pipe(fds)) return -1;
    pid_t pid = fork();
    if (pid == 0) {
        dup2(fds[1], 1);
        close(fds[0]);
        execlp("python3", "python3", "-c",
               "import http.server,functools,sys,os\n"
               "h=functools.partial(http.server.SimpleHTTPRequestHandler,directory=sys.argv[1])\n"
               "h.func.log_message=lambda *a: None\n"
               "s=http.server.ThreadingHTTPServer(('127.0.0.1',0),h)\n"
               "print(s.server_address[1],flush=True)\ns.serve_forever()\n",
               dir, (char *)NULL);
        _exit(127);
    }
    close(fds[1]);
    char buf[16] = {0};
    ssize_t k = read(fds[0], buf, sizeof buf - 1); /* the read end stays open: the child must not get EPIPE */
    *port = k > 0 ? atoi(buf) : 0;
    if (*port <= 0 && pid > 0) {
        kill(pid, SIGTERM);
        waitpid(pid, NULL, 0);
        return -1;
    }
    return pid;
}

int main(int argc, char **argv) {
    const char *base = argc > 1 ? argv[1] : "/tmp";
    uint64_t n = argc > 2 ? strtoull(argv[2], NULL, 10) : 1000000;
    char dir[512], src[600], psrc[600];
    snprintf(dir, sizeof dir, "%s/parity-bench-gap", base);
    snprintf(src, sizeof src, "%s/log/audit", dir);
    snprintf(psrc, sizeof psrc, "%s/log/policy", dir);
    double t0 = pt_now();
    if (build(dir, n)) return 1;
    printf("audit log of %llu entries built in %.1f s (%s)\n", (unsigned long long)n, pt_now() - t0, dir);
    char *vkey = NULL, *pvkey = NULL;
    pt_err err;
    if (tlog_read_vkey(dir, "audit", &vkey, &err) || tlog_read_vkey(dir, "policy", &pvkey, &err)) {
        fprintf(stderr, "bench_gap: %s\n", err.msg);
        return 1;
    }
    double ref = run(src, vkey, psrc, pvkey, 0), ref_cpu = last_cpu, rep = run(src, vkey, psrc, pvkey, 1);
    if (ref < 0 || rep < 0) return 1;
    line("tiles on disk", ref, ref_cpu, rep, last_cpu, n);
    int port;
    pid_t ha = http_serve(src, &port), hp = -1;
    int pport = 0;
    if (ha > 0) hp = http_serve(psrc, &pport);
    if (ha > 0 && hp > 0) {
        char url[64], purl[64];
        snprintf(url, sizeof url, "http://127.0.0.1:%d", port);
        snprintf(purl, sizeof purl, "http://127.0.0.1:%d", pport);
        double href = run(url, vkey, purl, pvkey, 0), href_cpu = last_cpu, hrep = run(url, vkey, purl, pvkey, 1);
        if (href > 0 && hrep > 0) line("HTTP (python3 server)", href, href_cpu, hrep, last_cpu, n);
    } else {
        printf("HTTP: skipped (no python3 to serve the tiles)\n");
    }
    if (ha > 0) kill(ha, SIGTERM), waitpid(ha, NULL, 0);
    if (hp > 0) kill(hp, SIGTERM), waitpid(hp, NULL, 0);
    free(vkey);
    free(pvkey);
    return 0;
}
