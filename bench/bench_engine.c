/* bench_engine — decode and prefill throughput of the engine as ratios against references
 * measured in the same run: memory read bandwidth (decode bound = bandwidth / weight bytes
 * per token), the cblas_sgemm rate (prefill), PyTorch CPU on the same model and threads, the
 * cost of hooks, and peak RSS of an mmapped F16 model.
 *
 * usage: bench_engine [--threads 2] [--sizes 10,100,500] [--decode 32] [--prefill 512]
 *                     [--dir /tmp/parity-bench] [--no-torch]
 * Random-weight Llama models are written to --dir once and reused. */
#include <cblas.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "common/fileio.h"
#include "common/util.h"
#include "engine/engine.h"

static int threads = 2, n_decode = 32, n_prefill = 512, use_torch = 1;
static const char *dir = "/tmp/parity-bench";
static const char *src_dir = ".";

/* ---- read bandwidth: threads summing disjoint halves of a 1 GiB buffer ---------------- */
typedef struct {
    const float *p;
    size_t n;
    double sum;
} bw_arg;
static void *bw_thread(void *a) {
    bw_arg *b = a;
    float s0 = 0, s1 = 0, s2 = 0, s3 = 0, s4 = 0, s5 = 0, s6 = 0, s7 = 0;
    for (size_t i = 0; i + 8 <= b->n; i += 8) {
        s0 += b->p[i], s1 += b->p[i + 1], s2 += b->p[i + 2], s3 += b->p[i + 3];
        s4 += b->p[i + 4], s5 += b->p[i + 5], s6 += b->p[i + 6], s7 += b->p[i + 7];
    }
    b->sum = s0 + s1 + s2 + s3 + s4 + s5 + s6 + s7;
    return NULL;
}
static double read_bandwidth(void) {
    size_t n = (size_t)1 << 28; /* 1 GiB */
    float *buf = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) buf[i] = (float)(i & 7);
    double best = 0;
    for (int rep = 0; rep < 3; rep++) {
        pthread_t th[64];
        bw_arg a[64];
        double t0 = pt_now();
        for (int t = 0; t < threads; t++) {
            a[t] = (bw_arg){buf + n / threads * t, n / threads, 0};
            pthread_create(&th[t], NULL, bw_thread, &a[t]);
        }
        for (int t = 0; t < threads; t++) pthread_join(th[t], NULL);
        double bw = n * sizeof(float) / (pt_now() - t0);
        if (bw > best) best = bw;
    }
    free(buf);
    return best;
}

static double sgemm_rate(int M, int N, int K) {
    float *a = calloc((size_t)M * K, 4), *b = calloc((size_t)N * K, 4), *c = calloc((size_t)M * N, 4);
    for (size_t i = 0; i < (size_t)M * K; i++) a[i] = (float)(i % 13) * 0.01f;
    for (size_t i = 0; i < (size_t)N * K; i++) b[i] = (float)(i % 7) * 0.01f;
    double best = 1e9;
    for (int r = 0; r < 3; r++) {
        double t0 = pt_now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1, a, K, b, K, 0, c, N);
        double dt = pt_now() - t0;
        if (dt < best) best = dt;
    }
    free(a), free(b), free(c);
    return 2.0 * M * N * K / best;
}

typedef struct size_spec {
    int mparams, d, layers, heads, kv, ff, vocab;
} size_spec;
static const size_spec specs[] = {
    {10, 256, 8, 4, 4, 688, 8000},
    {100, 768, 12, 12, 12, 2048, 8000},
    {500, 1280, 20, 20, 20, 3456, 32000},
};

static int make(const size_spec *s, const char *dtype, char *out, size_t cap) {
    snprintf(out, cap, "%s/llama-%dM-%s", dir, s->mparams, dtype);
    char cfgp[600];
    snprintf(cfgp, sizeof cfgp, "%s/config.json", out);
    if (pt_exists(cfgp)) return 0;
    char js[512];
    snprintf(js, sizeof js,
             "{\"model_type\":\"llama\",\"vocab_size\":%d,\"hidden_size\":%d,\"intermediate_size\":%d,"
             "\"num_hidden_layers\":%d,\"num_attention_heads\":%d,\"num_key_value_heads\":%d,"
             "\"max_position_embeddings\":2048}",
             s->vocab, s->d, s->ff, s->layers, s->heads, s->kv);
    pt_config c;
    pt_err err;
    json_t *j = json_loads(js, 0, NULL);
    int rc = pt_config_from_json(j, "bench", &c, &err);
    json_decref(j);
    if (!rc) rc = pt_model_write_random(out, &c, strcmp(dtype, "F16") ? PT_F32 : PT_F16, 1, &err);
    if (rc) fprintf(stderr, "%s\n", err.msg);
    return rc;
}

/* decode tok/s: prefill 16 tokens, then n_decode single-token steps (greedy). */
static double decode_tps(pt_engine *e, pt_hooks *h) {
    const pt_config *c = pt_engine_config(e);
    pt_seq *s = pt_seq_new(e, 0);
    pt_seq_set_hooks(s, h);
    float *lg = malloc((size_t)c->vocab_size * sizeof(float));
    int32_t toks[16];
    for (int i = 0; i < 16; i++) toks[i] = (i * 31) % c->vocab_size;
    pt_step st = {s, toks, 16, 0, lg};
    pt_err err;
    pt_engine_forward(e, &st, 1, &err);
    double t0 = pt_now();
    int32_t next;
    for (int j = 0; j < n_decode; j++) {
        next = pt_argmax(lg, c->vocab_size);
        st = (pt_step){s, &next, 1, 0, lg};
        if (pt_engine_forward(e, &st, 1, &err)) fprintf(stderr, "%s\n", err.msg);
    }
    double dt = pt_now() - t0;
    free(lg);
    pt_seq_free(s);
    return n_decode / dt;
}

static double prefill_tps(pt_engine *e) {
    const pt_config *c = pt_engine_config(e);
    int32_t *toks = malloc((size_t)n_prefill * sizeof *toks);
    for (int i = 0; i < n_prefill; i++) toks[i] = (i * 7) % c->vocab_size;
    float *lg = malloc((size_t)c->vocab_size * sizeof(float));
    double best = 1e9;
    pt_err err;
    for (int r = 0; r < 2; r++) {
        pt_seq *s = pt_seq_new(e, 0);
        pt_step st = {s, toks, n_prefill, 0, lg};
        double t0 = pt_now();
        if (pt_engine_forward(e, &st, 1, &err)) fprintf(stderr, "%s\n", err.msg);
        double dt = pt_now() - t0;
        if (dt < best) best = dt;
        pt_seq_free(s);
    }
    free(toks), free(lg);
    return n_prefill / best;
}

/* FLOPs of one prefill of n tokens: matmuls plus attention (causal: half of T^2). */
static double prefill_flops(const pt_model *m, int n) {
    const pt_config *c = &m->c;
    double mat = 0;
    for (int p = 0; p < PT_PROJ_COUNT; p++) mat += (double)m->w.layers[0].proj[p].n * m->w.layers[0].proj[p].k;
    mat = mat * c->n_layers + (double)c->vocab_size * c->d_model / n; /* logits of the last row only */
    double att = 2.0 * c->n_layers * c->n_heads * c->head_dim * (double)n * n; /* QK^T and PV, causal half each */
    return 2.0 * mat * n + att;
}

static int torch_ref(const char *model, double *dec, double *pre) {
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s/bench/torch_ref.py %s %d %d %d", src_dir, model, threads, n_decode,
             n_prefill);
    FILE *f = popen(cmd, "r");
    if (!f) return -1;
    char line[512] = "";
    if (!fgets(line, sizeof line, f)) line[0] = 0;
    int rc = pclose(f);
    return rc || sscanf(line, "{\"decode_tps\": %lf, \"prefill_tps\": %lf}", dec, pre) != 2 ? -1 : 0;
}

static long rss_kb(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

int main(int argc, char **argv) {
    char sizes[64] = "10,100";
    if (getenv("PARITY_SRC")) src_dir = getenv("PARITY_SRC");
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--sizes") && i + 1 < argc) snprintf(sizes, sizeof sizes, "%s", argv[++i]);
        else if (!strcmp(argv[i], "--decode") && i + 1 < argc) n_decode = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--prefill") && i + 1 < argc) n_prefill = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--dir") && i + 1 < argc) dir = argv[++i];
        else if (!strcmp(argv[i], "--src") && i + 1 < argc) src_dir = argv[++i];
        else if (!strcmp(argv[i], "--no-torch")) use_torch = 0;
        else if (!strcmp(argv[i], "--rss") && i + 1 < argc) {
            /* child mode: load an F16 model, prefill + decode, report peak RSS vs file + KV */
            pt_engine *e;
            pt_err err;
            if (pt_engine_open(argv[++i], threads, &e, &err)) return fprintf(stderr, "%s\n", err.msg), 1;
            long before = rss_kb();
            prefill_tps(e);
            decode_tps(e, NULL);
            size_t file = 0;
            for (size_t k = 0; k < pt_engine_model(e)->files.tensors.n; k++)
                file += pt_engine_model(e)->files.tensors.t[k].nbytes;
            size_t kv = pt_seq_bytes_per_pos(e) * (size_t)(n_prefill > 16 + n_decode ? n_prefill : 16 + n_decode);
            printf("rss: peak %.1f MiB (at load %.1f MiB), weights %.1f MiB, KV cache %.1f MiB: %.2fx (weights + KV)\n",
                   rss_kb() / 1024.0, before / 1024.0, file / 1048576.0, kv / 1048576.0,
                   rss_kb() * 1024.0 / (double)(file + kv));
            pt_engine_free(e);
            return 0;
        } else {
            fprintf(stderr, "usage: bench_engine [--threads N] [--sizes 10,100,500] [--decode N] [--prefill N] "
                            "[--dir DIR] [--src SRCDIR] [--no-torch]\n");
            return 2;
        }
    }
    pt_err err;
    if (pt_mkdirs(dir, 0, &err)) return fprintf(stderr, "%s\n", err.msg), 1;
    openblas_set_num_threads(threads);
    double bw = read_bandwidth();
    printf("threads %d; read bandwidth %.2f GB/s\n", threads, bw / 1e9);
    printf("%-14s %10s %10s %8s %10s %8s %10s %8s %10s %8s\n", "model", "weights", "decode", "of bw", "prefill",
           "of sgemm", "torch dec", "ratio", "torch pre", "ratio");
    char *save = NULL;
    for (char *tok = strtok_r(sizes, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        const size_spec *s = NULL;
        for (size_t k = 0; k < sizeof specs / sizeof specs[0]; k++)
            if (specs[k].mparams == atoi(tok)) s = &specs[k];
        if (!s) continue;
        char path[512];
        if (make(s, "F32", path, sizeof path)) return 1;
        pt_engine *e;
        if (pt_engine_open(path, threads, &e, &err)) return fprintf(stderr, "%s\n", err.msg), 1;
        const pt_model *m = pt_engine_model(e);
        double sg = sgemm_rate(n_prefill, m->c.d_ff, m->c.d_model);
        double dec = decode_tps(e, NULL), pre = prefill_tps(e);
        double bound = bw / (double)m->weight_bytes;
        double pre_rate = pre * prefill_flops(m, n_prefill) / n_prefill;
        double tdec = 0, tpre = 0;
        int have_torch = use_torch && !torch_ref(path, &tdec, &tpre);
        printf("%-14s %8.0fMB %7.1f/s %7.0f%% %7.1f/s %7.0f%%", tok, m->weight_bytes / 1e6, dec, 100 * dec / bound,
               pre, 100 * pre_rate / sg);
        if (have_torch) printf(" %7.1f/s %7.2fx %7.1f/s %7.2fx", tdec, dec / tdec, tpre, pre / tpre);
        printf("\n");
        /* hooks: every residual-stream hook read; one steering vector */
        if (s->mparams == 100 || s->mparams == 10) {
            pt_hooks *h;
            pt_hooks_new(&m->c, &h, &err);
            char name[96];
            for (int L = 0; L < m->c.n_layers; L++) {
                snprintf(name, sizeof name, "blocks.%d.hook_resid_pre", L), pt_hooks_read(h, name, NULL, 0, &err);
                snprintf(name, sizeof name, "blocks.%d.hook_resid_mid", L), pt_hooks_read(h, name, NULL, 0, &err);
                snprintf(name, sizeof name, "blocks.%d.hook_resid_post", L), pt_hooks_read(h, name, NULL, 0, &err);
            }
            double base = decode_tps(e, NULL), rd = decode_tps(e, h);
            pt_hooks_free(h);
            pt_hooks_new(&m->c, &h, &err);
            float *v = calloc((size_t)m->c.d_model, sizeof(float));
            v[0] = 1;
            pt_hooks_add(h, "blocks.1.hook_resid_pre", v, (size_t)m->c.d_model, 4.f, NULL, 0, &err);
            double st = decode_tps(e, h), base2 = decode_tps(e, NULL);
            pt_hooks_free(h);
            free(v);
            printf("%-14s hooks: reading all %d resid hooks costs %.1f%%, one steering vector %.1f%% (decode)\n", tok,
                   3 * m->c.n_layers, 100 * (1 - rd / base), 100 * (1 - st / base2));
        }
        pt_engine_free(e);
        /* Q8_0 built in memory from the F32 checkpoint */
        pt_model *q;
        if (pt_model_load(path, &q, &err) || pt_model_convert(q, PT_Q8_0, &err))
            return fprintf(stderr, "%s\n", err.msg), 1;
        pt_engine_new(q, pt_backend_cpu_new(threads), &e, &err);
        double qdec = decode_tps(e, NULL), qpre = prefill_tps(e);
        printf("%-14s %8.0fMB %7.1f/s %7.0f%% %7.1f/s %7.0f%%   (Q8_0)\n", tok, q->weight_bytes / 1e6, qdec,
               100 * qdec / (bw / (double)q->weight_bytes), qpre,
               100 * qpre * prefill_flops(q, n_prefill) / n_prefill / sg);
        pt_engine_free(e);
    }
    /* peak RSS of an mmapped F16 model, in a fresh process */
    char path[512], cmd[1200];
    if (!make(&specs[1], "F16", path, sizeof path)) {
        snprintf(cmd, sizeof cmd, "%s --threads %d --decode %d --prefill %d --rss %s", argv[0], threads, n_decode,
                 n_prefill, path);
        if (system(cmd)) fprintf(stderr, "rss run failed\n");
    }
    return 0;
}
