/* bench_lora — the cost of a LoRA training step against a full training step of the same
 * Llama model, batch and thread count, measured in the same run (alternating, so load
 * changes hit both; the order swaps every step): forward + backward + clipping + AdamW, step 0
 * of each a warm-up. Figures are medians of the per-step times; the per-step ratio range and
 * the load average before and after are printed too, and the CPU seconds (user + system, all
 * threads) of each kind of step: on a machine shared with other work, wall time swings with
 * their load while the CPU time a step needs barely moves (the trainer's threads block, they
 * do not spin, when they wait).
 *
 *   bench_lora [--d 384] [--layers 6] [--heads 6] [--vocab 8192] [--batch 8] [--seq 256]
 *              [--steps 4] [--threads 2] [--rank 8] [--targets all] [--dropout 0.05]
 * Prints one JSON line: full_s, lora_s (median seconds per step) and ratio = lora_s / full_s.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "common/util.h"
#include "engine/lora.h"
#include "engine/sample.h"
#include "train/train.h"

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
    double s[256];
    memcpy(s, v, (size_t)n * sizeof *s);
    qsort(s, (size_t)n, sizeof *s, cmp_d);
    return n % 2 ? s[n / 2] : 0.5 * (s[n / 2 - 1] + s[n / 2]);
}

/* CPU seconds (user + system, every thread) this process has used. */
static double cpu_now(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec * 1e-6 + (double)ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec * 1e-6;
}

static double last_cpu; /* CPU seconds of the last step */

static double step(pt_trainer *t, const int32_t *tok, const int32_t *tgt, int B, int T) {
    pt_err err = {0};
    double c0 = cpu_now(), t0 = pt_now(), loss;
    pt_trainer_zero_grad(t);
    if (pt_trainer_forward_backward(t, tok, tgt, B, T, NULL, 1.f / (float)(B * T), 1, &loss, NULL, &err)) {
        fprintf(stderr, "bench_lora: %s\n", err.msg);
        exit(1);
    }
    double gn = pt_trainer_grad_norm(t);
    if (gn > 1.0) pt_trainer_scale_grads(t, (float)(1.0 / gn));
    pt_trainer_adamw_step(t, 1e-4f);
    double el = pt_now() - t0;
    last_cpu = cpu_now() - c0;
    return el;
}

int main(int argc, char **argv) {
    int d = 384, L = 6, H = 6, V = 8192, B = 8, T = 256, steps = 4, threads = 2, rank = 8;
    const char *targets = "all", *only = NULL;
    float dropout = 0.05f;
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            printf("usage: bench_lora [--d 384] [--layers 6] [--heads 6] [--vocab 8192] [--batch 8] [--seq 256]\n"
                   "                  [--steps 4] [--threads 2] [--rank 8] [--targets all] [--dropout 0.05]\n"
                   "                  [--only full|lora]   (profiling: time one kind of step only)\n");
            return 0;
        }
    for (int i = 1; i + 1 < argc; i += 2) {
        const char *o = argv[i], *v = argv[i + 1];
        if (!strcmp(o, "--only")) only = v;
        else if (!strcmp(o, "--d")) d = atoi(v);
        else if (!strcmp(o, "--layers")) L = atoi(v);
        else if (!strcmp(o, "--heads")) H = atoi(v);
        else if (!strcmp(o, "--vocab")) V = atoi(v);
        else if (!strcmp(o, "--batch")) B = atoi(v);
        else if (!strcmp(o, "--seq")) T = atoi(v);
        else if (!strcmp(o, "--steps")) steps = atoi(v);
        else if (!strcmp(o, "--threads")) threads = atoi(v);
        else if (!strcmp(o, "--rank")) rank = atoi(v);
        else if (!strcmp(o, "--targets")) targets = v;
        else if (!strcmp(o, "--dropout")) dropout = (float)atof(v);
        else {
            fprintf(stderr, "unknown option %s\n", o);
            return 2;
        }
    }
    pt_config c = {.arch = PT_ARCH_LLAMA, .vocab_size = V, .d_model = d, .n_layers = L, .n_heads = H,
                   .n_kv_heads = H, .head_dim = d / H, .d_ff = (8 * d / 3 + 63) / 64 * 64, .max_pos = T,
                   .norm_eps = 1e-5f, .rope_theta = 10000.f, .tie_embeddings = 1, .bos_token_id = -1};
    pt_train_opts o = {.max_batch = B, .max_seq = T, .n_threads = threads, .seed = 1, .beta1 = 0.9f, .beta2 = 0.999f,
                       .eps = 1e-8f, .weight_decay = 0.0f};
    pt_err err = {0};
    pt_trainer *full, *lt;
    pt_lora *lora;
    unsigned mask;
    if (pt_trainer_new(&c, &o, &full, &err) || pt_trainer_new(&c, &o, &lt, &err) ||
        pt_lora_parse_targets(targets, &c, &mask, &err) || pt_lora_new(&c, rank, 2.f * rank, mask, 1, &lora, &err) ||
        pt_trainer_attach_lora(lt, lora, dropout, 2, &err)) {
        fprintf(stderr, "bench_lora: %s\n", err.msg);
        return 1;
    }
    size_t N = (size_t)B * T;
    int32_t *tok = malloc((N + 1) * sizeof *tok), *tgt = malloc(N * sizeof *tgt);
    pt_rng r;
    pt_rng_seed(&r, 42);
    for (size_t i = 0; i <= N; i++) tok[i] = (int32_t)pt_rng_below(&r, (uint64_t)V);
    for (size_t i = 0; i < N; i++) tgt[i] = tok[i + 1];
    int do_full = !only || !strcmp(only, "full"), do_lora = !only || !strcmp(only, "lora");
    if (do_full) step(full, tok, tgt, B, T);
    if (do_lora) step(lt, tok, tgt, B, T);
    double tf[256], tl[256], cf[256], cl[256], rmin = INFINITY, rmax = 0;
    if (steps > 256) steps = 256;
    char la0[64], la1[64];
    loadavg(la0, sizeof la0);
    for (int s = 0; s < steps; s++) { /* alternating, the order swapped every step */
        if (s % 2 == 0) {
            if (do_full) tf[s] = step(full, tok, tgt, B, T), cf[s] = last_cpu;
            if (do_lora) tl[s] = step(lt, tok, tgt, B, T), cl[s] = last_cpu;
        } else {
            if (do_lora) tl[s] = step(lt, tok, tgt, B, T), cl[s] = last_cpu;
            if (do_full) tf[s] = step(full, tok, tgt, B, T), cf[s] = last_cpu;
        }
        if (do_full && do_lora) rmin = fmin(rmin, tl[s] / tf[s]), rmax = fmax(rmax, tl[s] / tf[s]);
    }
    loadavg(la1, sizeof la1);
    double sf = do_full ? median(tf, steps) : 0, sl = do_lora ? median(tl, steps) : 0;
    double csf = do_full ? median(cf, steps) : 0, csl = do_lora ? median(cl, steps) : 0;
    printf("{\"d\":%d,\"layers\":%d,\"batch\":%d,\"seq\":%d,\"threads\":%d,\"rank\":%d,\"targets\":\"%s\","
           "\"dropout\":%g,\"adapter_params\":%zu,\"base_params\":%zu,\"steps\":%d,\"full_s\":%.4f,\"lora_s\":%.4f,"
           "\"ratio\":%.3f,\"cpu_full_s\":%.4f,\"cpu_lora_s\":%.4f,\"cpu_ratio\":%.3f,\"step_ratio_min\":%.3f,\"step_ratio_max\":%.3f,\"load_before\":\"%s\","
           "\"load_after\":\"%s\"}\n",
           d, L, B, T, threads, rank, targets, dropout, lora->n_params, pt_trainer_n_params(full), steps, sf, sl,
           sl / sf, csf, csl, csl / csf, rmin, rmax, la0, la1);
    free(tok), free(tgt);
    pt_trainer_free(full), pt_trainer_free(lt);
    pt_lora_free(lora);
    return 0;
}
