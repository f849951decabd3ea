/* bench_train — training throughput (tokens/s) against PyTorch CPU on the same model shape,
 * batch, sequence length, threads and dtype (F32), measured in the same run; and peak RSS
 * against the analytic need (parameters + gradients + Adam m, v + activations).
 *
 *   bench_train [--arch gpt2|llama] [--d 384] [--layers 6] [--heads 6] [--vocab 8192]
 *               [--batch 8] [--seq 256] [--steps 5] [--threads 2] [--no-torch]
 *
 * Prints one JSON line per measurement. The reference runs bench/train_torch_ref.py with
 * Debian's /usr/bin/python3 (python3-torch); PARITY_SRC (default ".") locates it. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "common/util.h"
#include "engine/config.h"
#include "train/train.h"

static double peak_rss_bytes(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_maxrss * 1024.0;
}

int main(int argc, char **argv) {
    const char *arch = "gpt2";
    int d = 384, L = 6, H = 6, V = 8192, B = 8, T = 256, steps = 5, threads = 2, torch = 1;
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i], *v = i + 1 < argc ? argv[i + 1] : "0";
        if (!strcmp(o, "--no-torch")) { torch = 0; continue; }
        if (!strcmp(o, "--arch")) arch = v;
        else if (!strcmp(o, "--d")) d = atoi(v);
        else if (!strcmp(o, "--layers")) L = atoi(v);
        else if (!strcmp(o, "--heads")) H = atoi(v);
        else if (!strcmp(o, "--vocab")) V = atoi(v);
        else if (!strcmp(o, "--batch")) B = atoi(v);
        else if (!strcmp(o, "--seq")) T = atoi(v);
        else if (!strcmp(o, "--steps")) steps = atoi(v);
        else if (!strcmp(o, "--threads")) threads = atoi(v);
        else { fprintf(stderr, "unknown option %s\n", o); return 2; }
        i++;
    }
    int llama = !strcmp(arch, "llama");
    pt_config c = {.arch = llama ? PT_ARCH_LLAMA : PT_ARCH_GPT2, .vocab_size = V, .d_model = d, .n_layers = L,
                   .n_heads = H, .n_kv_heads = H, .head_dim = d / H, .d_ff = llama ? (8 * d / 3 + 63) / 64 * 64 : 4 * d,
                   .max_pos = T, .norm_eps = 1e-5f, .rope_theta = 10000.f, .tie_embeddings = 1,
                   .attn_bias = !llama, .mlp_bias = !llama, .bos_token_id = -1};
    pt_err err = {0};
    pt_trainer *t;
    pt_train_opts o = {.max_batch = B, .max_seq = T, .n_threads = threads, .seed = 1, .beta1 = 0.9f, .beta2 = 0.999f,
                       .eps = 1e-8f, .weight_decay = 0.1f};
    if (pt_trainer_new(&c, &o, &t, &err)) {
        fprintf(stderr, "bench_train: %s\n", err.msg);
        return 1;
    }
    size_t N = (size_t)B * T;
    int32_t *tok = malloc((N + 1) * sizeof *tok), *tgt = malloc(N * sizeof *tgt);
    pt_rng r;
    pt_rng_seed(&r, 42);
    double t0 = 0, loss = 0;
    for (int s = 0; s <= steps; s++) {
        if (s == 1) t0 = pt_now(); /* step 0 warms up (page faults, BLAS buffers) */
        for (size_t i = 0; i <= N; i++) tok[i] = (int32_t)pt_rng_below(&r, (uint64_t)V);
        for (size_t i = 0; i < N; i++) tgt[i] = tok[i + 1];
        pt_trainer_zero_grad(t);
        double ls;
        size_t cnt;
        if (pt_trainer_forward_backward(t, tok, tgt, B, T, NULL, 1.f / (float)N, 1, &ls, &cnt, &err)) {
            fprintf(stderr, "bench_train: %s\n", err.msg);
            return 1;
        }
        double gn = pt_trainer_grad_norm(t);
        if (gn > 1.0) pt_trainer_scale_grads(t, (float)(1.0 / (gn + 1e-6)));
        pt_trainer_adamw_step(t, 3e-4f);
        loss = ls / (double)cnt;
    }
    double el = pt_now() - t0, tps = (double)steps * (double)N / el;
    size_t pb, gb, ab, actb, total = pt_trainer_bytes(t, &pb, &gb, &ab, &actb);
    double rss = peak_rss_bytes();
    printf("{\"impl\": \"parity\", \"arch\": \"%s\", \"params\": %zu, \"batch\": %d, \"seq\": %d, \"threads\": %d, "
           "\"tokens_per_s\": %.1f, \"last_loss\": %.4f, \"peak_rss_bytes\": %.0f, \"analytic_bytes\": %zu, "
           "\"params_bytes\": %zu, \"grads_bytes\": %zu, \"adam_bytes\": %zu, \"act_bytes\": %zu, "
           "\"rss_over_analytic\": %.3f}\n",
           arch, pt_trainer_n_params(t), B, T, threads, tps, loss, rss, total, pb, gb, ab, actb, rss / (double)total);
    fflush(stdout);
    if (torch) {
        char cfgp[] = "/tmp/bench_train_cfgXXXXXX";
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
        char cmd[2048];
        snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s/bench/train_torch_ref.py %s %d %d %d %d", src, cfgp, B, T, steps,
                 threads);
        FILE *p = popen(cmd, "r");
        char line[65536];
        double ttps = 0;
        if (p && fgets(line, sizeof line, p)) {
            char *k = strstr(line, "\"tokens_per_s\": ");
            if (k) ttps = atof(k + 16);
        }
        if (p) pclose(p);
        remove(cfgp);
        printf("{\"impl\": \"torch\", \"tokens_per_s\": %.1f}\n", ttps);
        printf("{\"ratio_tokens_per_s_parity_over_torch\": %.3f}\n", ttps > 0 ? tps / ttps : NAN);
    }
    free(tok), free(tgt);
    pt_trainer_free(t);
    return 0;
}
