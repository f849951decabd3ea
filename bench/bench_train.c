/* bench_train — training throughput (tokens/s) against PyTorch CPU on the same model shape,
 * batch, sequence length, threads and dtype (F32), measured in the same run; and peak RSS
 * against the analytic need (parameters + gradients + Adam m, v + activations).
 *
 *   bench_train [--arch gpt2|llama] [--d 384] [--layers 6] [--heads 6] [--vocab 8192]
 *               [--batch 8] [--seq 256] [--rounds 3] [--steps 2] [--threads 2] [--no-torch]
 *
 * The measurement is interleaved so that load changes on a shared machine hit both sides:
 * PyTorch runs as a child process (bench/train_torch_ref.py --serve, Debian's
 * /usr/bin/python3; PARITY_SRC, default ".", locates it) that has taken its warm-up step and
 * waits; each round runs `steps` parity steps, then `steps` steps of each torch process,
 * with a 0.3 s pause at every switch (so threads still spinning from one side do not slow
 * the other; pauses are not timed). Each step is timed alone (forward, loss, backward,
 * clipping, AdamW). Two torch processes run: OMP_WAIT_POLICY unset (torch's default,
 * spinning OpenMP workers) and OMP_WAIT_POLICY=PASSIVE — on a loaded machine the default
 * can be many times slower — and the reference is whichever is faster (the best torch).
 * Both get OPENBLAS_NUM_THREADS = --threads and torch.set_num_threads(--threads).
 *
 * Prints one JSON line per implementation and a summary: tokens/s from the median step
 * time, the ratio parity / best torch of the medians, the range of the per-round ratios,
 * the ratio of the fastest steps (each side's least-disturbed step), and the load average
 * before and after. */
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/util.h"
#include "engine/config.h"
#include "train/train.h"

#define MAX_STEPS 4096

static double peak_rss_bytes(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_maxrss * 1024.0;
}

static void loadavg(char *out, size_t n) {
    FILE *f = fopen("/proc/loadavg", "r");
    double a = 0, b = 0, c = 0;
    if (f && fscanf(f, "%lf %lf %lf", &a, &b, &c) == 3) snprintf(out, n, "%.2f %.2f %.2f", a, b, c);
    else snprintf(out, n, "?");
    if (f) fclose(f);
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(const double *v, int n) {
    if (n < 1) return NAN;
    double *s = malloc((size_t)n * sizeof *s);
    if (!s) return NAN;
    memcpy(s, v, (size_t)n * sizeof *s);
    qsort(s, (size_t)n, sizeof *s, cmp_d);
    double m = n % 2 ? s[n / 2] : 0.5 * (s[n / 2 - 1] + s[n / 2]);
    free(s);
    return m;
}

/* ---- the torch child -------------------------------------------------------------------- */

typedef struct child {
    pid_t pid;
    FILE *in, *out;
    const char *name;
    double t[MAX_STEPS];
    int n;
    double rss;
} child;

static int child_start(child *c, const char *script, const char *cfg, int B, int T, int threads, int passive) {
    int pin[2], pout[2];
    if (pipe(pin) || pipe(pout)) return -1;
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        dup2(pin[0], 0), dup2(pout[1], 1);
        close(pin[0]), close(pin[1]), close(pout[0]), close(pout[1]);
        char th[16], bs[16], ts[16];
        snprintf(th, sizeof th, "%d", threads), snprintf(bs, sizeof bs, "%d", B), snprintf(ts, sizeof ts, "%d", T);
        setenv("OPENBLAS_NUM_THREADS", th, 1);
        if (passive) setenv("OMP_WAIT_POLICY", "PASSIVE", 1);
        else unsetenv("OMP_WAIT_POLICY");
        execl("/usr/bin/python3", "python3", script, cfg, bs, ts, "1", th, "--serve", (char *)NULL);
        _exit(127);
    }
    close(pin[0]), close(pout[1]);
    c->pid = pid;
    c->in = fdopen(pin[1], "w");
    c->out = fdopen(pout[0], "r");
    char line[4096];
    if (!c->in || !c->out || !fgets(line, sizeof line, c->out) || !strstr(line, "\"ready\"")) return -1;
    return 0;
}

/* Runs n torch steps; appends their times. */
static int child_steps(child *c, int n) {
    static char line[1 << 20];
    fprintf(c->in, "%d\n", n);
    fflush(c->in);
    if (!fgets(line, sizeof line, c->out)) return -1;
    char *p = strstr(line, "\"step_s\": [");
    if (!p) return -1;
    p += 11;
    for (int i = 0; i < n && c->n < MAX_STEPS; i++) {
        char *e;
        double v = strtod(p, &e);
        if (e == p) return -1;
        c->t[c->n++] = v;
        p = e + strspn(e, ", ");
    }
    char *r = strstr(line, "\"peak_rss_bytes\": ");
    if (r) c->rss = atof(r + 18);
    return 0;
}

static void child_stop(child *c) {
    if (c->in) fprintf(c->in, "q\n"), fclose(c->in);
    if (c->out) fclose(c->out);
    if (c->pid > 0) waitpid(c->pid, NULL, 0);
}

/* ---- parity ----------------------------------------------------------------------------- */

typedef struct run {
    pt_trainer *t;
    int32_t *tok, *tgt;
    int B, T, V;
    pt_rng r;
    double loss;
} run;

static double parity_step(run *u) {
    pt_err err = {0};
    size_t N = (size_t)u->B * u->T;
    for (size_t i = 0; i <= N; i++) u->tok[i] = (int32_t)pt_rng_below(&u->r, (uint64_t)u->V);
    for (size_t i = 0; i < N; i++) u->tgt[i] = u->tok[i + 1];
    double t0 = pt_now(), ls;
    size_t cnt;
    pt_trainer_zero_grad(u->t);
    if (pt_trainer_forward_backward(u->t, u->tok, u->tgt, u->B, u->T, NULL, 1.f / (float)N, 1, &ls, &cnt, &err)) {
        fprintf(stderr, "bench_train: %s\n", err.msg);
        exit(1);
    }
    double gn = pt_trainer_grad_norm(u->t);
    if (gn > 1.0) pt_trainer_scale_grads(u->t, (float)(1.0 / (gn + 1e-6)));
    pt_trainer_adamw_step(u->t, 3e-4f);
    u->loss = ls / (double)cnt;
    return pt_now() - t0;
}

static void usage(FILE *f) {
    fprintf(f, "usage: bench_train [--arch gpt2|llama] [--d 384] [--layers 6] [--heads 6] [--vocab 8192]\n"
               "                   [--batch 8] [--seq 256] [--rounds 3] [--steps 2] [--threads 2] [--no-torch]\n"
               "Training tokens/s against PyTorch CPU (same shape, batch, threads, F32), interleaved in rounds;\n"
               "peak RSS against the analytic need. PARITY_SRC locates bench/train_torch_ref.py.\n");
}

int main(int argc, char **argv) {
    const char *arch = "gpt2";
    int d = 384, L = 6, H = 6, V = 8192, B = 8, T = 256, rounds = 3, steps = 2, threads = 2, torch = 1;
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i], *v = i + 1 < argc ? argv[i + 1] : "0";
        if (!strcmp(o, "--help") || !strcmp(o, "-h")) { usage(stdout); return 0; }
        if (!strcmp(o, "--no-torch")) { torch = 0; continue; }
        if (!strcmp(o, "--arch")) arch = v;
        else if (!strcmp(o, "--d")) d = atoi(v);
        else if (!strcmp(o, "--layers")) L = atoi(v);
        else if (!strcmp(o, "--heads")) H = atoi(v);
        else if (!strcmp(o, "--vocab")) V = atoi(v);
        else if (!strcmp(o, "--batch")) B = atoi(v);
        else if (!strcmp(o, "--seq")) T = atoi(v);
        else if (!strcmp(o, "--rounds")) rounds = atoi(v);
        else if (!strcmp(o, "--steps")) steps = atoi(v);
        else if (!strcmp(o, "--threads")) threads = atoi(v);
        else { fprintf(stderr, "unknown option %s\n", o); usage(stderr); return 2; }
        i++;
    }
    if (rounds < 1 || steps < 1 || (long)rounds * steps > MAX_STEPS || H < 1 || d % H) {
        fprintf(stderr, "bench_train: bad --rounds/--steps/--heads\n");
        return 2;
    }
    int llama = !strcmp(arch, "llama");
    pt_config c = {.arch = llama ? PT_ARCH_LLAMA : PT_ARCH_GPT2, .vocab_size = V, .d_model = d, .n_layers = L,
                   .n_heads = H, .n_kv_heads = H, .head_dim = d / H, .d_ff = llama ? (8 * d / 3 + 63) / 64 * 64 : 4 * d,
                   .max_pos = T, .norm_eps = 1e-5f, .rope_theta = 10000.f, .tie_embeddings = 1,
                   .attn_bias = !llama, .mlp_bias = !llama, .bos_token_id = -1};
    pt_err err = {0};
    run u = {.B = B, .T = T, .V = V};
    pt_train_opts o = {.max_batch = B, .max_seq = T, .n_threads = threads, .seed = 1, .beta1 = 0.9f, .beta2 = 0.999f,
                       .eps = 1e-8f, .weight_decay = 0.1f};
    if (pt_trainer_new(&c, &o, &u.t, &err)) {
        fprintf(stderr, "bench_train: %s\n", err.msg);
        return 1;
    }
    size_t N = (size_t)B * T;
    u.tok = malloc((N + 1) * sizeof *u.tok), u.tgt = malloc(N * sizeof *u.tgt);
    if (!u.tok || !u.tgt) return 1;
    pt_rng_seed(&u.r, 42);

    /* the torch children: started (and warmed up) before parity's warm-up step */
    child ch[2] = {{.name = "torch"}, {.name = "torch_omp_passive"}};
    int nch = 0;
    char cfgp[] = "/tmp/bench_train_cfgXXXXXX";
    if (torch) {
        int fd = mkstemp(cfgp);
        FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
        if (!f) return 1;
        if (llama)
            fprintf(f, "{\"model_type\":\"llama\",\"vocab_size\":%d,\"hidden_size\":%d,\"num_hidden_layers\":%d,"
                       "\"num_attention_heads\":%d,\"num_key_value_heads\":%d,\"intermediate_size\":%d,\"rms_norm_eps\":1e-5}",
                    V, d, L, H, H, c.d_ff);
        else
            fprintf(f, "{\"model_type\":\"gpt2\",\"vocab_size\":%d,\"n_embd\":%d,\"n_layer\":%d,\"n_head\":%d}", V, d, L, H);
        fclose(f);
        const char *src = getenv("PARITY_SRC") ? getenv("PARITY_SRC") : ".";
        char script[1024];
        snprintf(script, sizeof script, "%s/bench/train_torch_ref.py", src);
        signal(SIGPIPE, SIG_IGN);
        for (int k = 0; k < 2; k++, nch++)
            if (child_start(&ch[k], script, cfgp, B, T, threads, k == 1)) {
                fprintf(stderr, "bench_train: the PyTorch reference (%s) did not start\n", script);
                return 1;
            }
    }
    char la0[64], la1[64];
    loadavg(la0, sizeof la0);
    parity_step(&u); /* warm-up: page faults, BLAS buffers */
    double pt_[MAX_STEPS], rmin = INFINITY, rmax = 0;
    int np = 0;
    for (int rd = 0; rd < rounds; rd++) {
        int p0 = np, c0[2] = {ch[0].n, ch[1].n};
        for (int s = 0; s < steps; s++) pt_[np++] = parity_step(&u);
        for (int k = 0; k < nch; k++) {
            usleep(300000);
            if (child_steps(&ch[k], steps)) {
                fprintf(stderr, "bench_train: the PyTorch reference (%s) failed\n", ch[k].name);
                return 1;
            }
        }
        usleep(300000);
        if (nch) {
            double mp = median(pt_ + p0, steps), best = INFINITY;
            for (int k = 0; k < nch; k++) {
                double mk = median(ch[k].t + c0[k], steps);
                if (mk < best) best = mk;
            }
            double ratio = best / mp;
            rmin = fmin(rmin, ratio), rmax = fmax(rmax, ratio);
        }
    }
    loadavg(la1, sizeof la1);
    double med = median(pt_, np), mean = 0;
    for (int i = 0; i < np; i++) mean += pt_[i];
    mean /= np;
    double tps = (double)N / med;
    size_t pb, gb, ab, actb, total = pt_trainer_bytes(u.t, &pb, &gb, &ab, &actb);
    double rss = peak_rss_bytes();
    printf("{\"impl\": \"parity\", \"arch\": \"%s\", \"params\": %zu, \"batch\": %d, \"seq\": %d, \"threads\": %d, "
           "\"steps\": %d, \"tokens_per_s\": %.1f, \"tokens_per_s_mean\": %.1f, \"last_loss\": %.4f, "
           "\"peak_rss_bytes\": %.0f, \"analytic_bytes\": %zu, \"params_bytes\": %zu, \"grads_bytes\": %zu, "
           "\"adam_bytes\": %zu, \"act_bytes\": %zu, \"rss_over_analytic\": %.3f}\n",
           arch, pt_trainer_n_params(u.t), B, T, threads, np, tps, (double)N / mean, u.loss, rss, total, pb, gb, ab,
           actb, rss / (double)total);
    double best_tps = 0, pmin = INFINITY, cmin = INFINITY;
    const char *best_name = "";
    for (int i = 0; i < np; i++) pmin = fmin(pmin, pt_[i]);
    for (int k = 0; k < nch; k++)
        for (int i = 0; i < ch[k].n; i++) cmin = fmin(cmin, ch[k].t[i]);
    for (int k = 0; k < nch; k++) {
        double m = median(ch[k].t, ch[k].n), ctps = (double)N / m;
        printf("{\"impl\": \"%s\", \"steps\": %d, \"tokens_per_s\": %.1f, \"peak_rss_bytes\": %.0f}\n", ch[k].name,
               ch[k].n, ctps, ch[k].rss);
        if (ctps > best_tps) best_tps = ctps, best_name = ch[k].name;
    }
    if (nch)
        printf("{\"ratio_tokens_per_s_parity_over_torch\": %.3f, \"reference\": \"%s\", \"round_ratio_min\": %.3f, "
               "\"round_ratio_max\": %.3f, \"ratio_fastest_steps\": %.3f, \"rounds\": %d, \"load_before\": \"%s\", "
               "\"load_after\": \"%s\"}\n",
               tps / best_tps, best_name, rmin, rmax, cmin / pmin, rounds, la0, la1);
    else printf("{\"load_before\": \"%s\", \"load_after\": \"%s\"}\n", la0, la1);
    for (int k = 0; k < nch; k++) child_stop(&ch[k]);
    if (torch) remove(cfgp);
    free(u.tok), free(u.tgt);
    pt_trainer_free(u.t);
    return 0;
}
