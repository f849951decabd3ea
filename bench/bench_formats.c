/* bench_formats — model file throughput, each figure as a ratio against a reference measured
 * in the same run on the same bytes:
 *   - HF F32 → GGUF F16 conversion vs copying the safetensors file (read + durable write);
 *   - GGUF open (parse, map, un-permute Q/K, checks) + touching every weight vs read() of the file;
 *   - Q8_0 quantisation (ggml's reference rule) vs F32→F16 conversion of the same values.
 * Usage: bench_formats [DIM] (a synthetic Llama with hidden size DIM, default 1024, 4 layers). */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/fileio.h"
#include "common/util.h"
#include "engine/convert.h"

static double read_file_s(const char *path) {
    double t = pt_now();
    int fd = open(path, O_RDONLY);
    static char buf[1 << 20];
    volatile size_t sum = 0;
    ssize_t r;
    while (fd >= 0 && (r = read(fd, buf, sizeof buf)) > 0) sum += (size_t)buf[r - 1];
    (void)sum;
    if (fd >= 0) close(fd);
    return pt_now() - t;
}

static void touch_all(const pt_model_files *mf) { /* read every cache line, as a forward pass would */
    volatile uint64_t s = 0;
    for (size_t i = 0; i < mf->tensors.n; i++) {
        const uint8_t *p = mf->tensors.t[i].data;
        for (size_t k = 0; k < mf->tensors.t[i].nbytes; k += 64) s += p[k];
        (void)s;
    }
}

static void add(pt_tensors *ts, const char *name, int64_t r, int64_t cols) {
    size_t n = (size_t)r * (size_t)(cols ? cols : 1);
    float *p = malloc(n * 4);
    for (size_t k = 0; k < n; k++) p[k] = (float)rand() / (float)RAND_MAX - 0.5f;
    int64_t sh[2] = {r, cols};
    pt_err e;
    pt_tensors_add_owned(ts, name, PT_F32, cols ? 2 : 1, sh, p, n * 4, &e);
}

int main(int argc, char **argv) {
    if (argc > 1 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        printf("usage: bench_formats [DIM]   (a synthetic 4-layer Llama of hidden size DIM, a multiple of 128; "
               "default 1024)\n");
        return 0;
    }
    int D = argc > 1 ? atoi(argv[1]) : 1024, L = 4, FF = D * 8 / 3 / 32 * 32, V = 8192;
    if (D < 128 || D % 128) return fprintf(stderr, "DIM must be a multiple of 128\n"), 2;
    char dir[] = "/tmp/parity-bench-XXXXXX";
    if (!mkdtemp(dir)) return 1;
    pt_err e;
    pt_config c = {.arch = PT_ARCH_LLAMA, .vocab_size = V, .d_model = D, .n_layers = L, .n_heads = D / 64,
                   .n_kv_heads = D / 128, .head_dim = 64, .d_ff = FF, .max_pos = 2048, .norm_eps = 1e-5f,
                   .rope_theta = 10000, .bos_token_id = 1, .n_eos = 1, .eos_token_ids = {2}};
    pt_tensors ts;
    pt_tensors_init(&ts);
    srand(1);
    char nm[128];
    add(&ts, "model.embed_tokens.weight", V, D);
    add(&ts, "lm_head.weight", V, D);
    add(&ts, "model.norm.weight", D, 0);
    static const struct { const char *s; int r, c; } layer[] = {
        {"input_layernorm.weight", 1, 0}, {"post_attention_layernorm.weight", 1, 0}, {"self_attn.q_proj.weight", 1, 1},
        {"self_attn.k_proj.weight", 2, 1}, {"self_attn.v_proj.weight", 2, 1}, {"self_attn.o_proj.weight", 1, 1},
        {"mlp.gate_proj.weight", 3, 1}, {"mlp.up_proj.weight", 3, 1}, {"mlp.down_proj.weight", 1, 3}};
    for (int l = 0; l < L; l++)
        for (size_t k = 0; k < sizeof layer / sizeof layer[0]; k++) {
            snprintf(nm, sizeof nm, "model.layers.%d.%s", l, layer[k].s);
            int64_t rows = layer[k].r == 3 ? FF : layer[k].r == 2 ? D / 2 : D;
            int64_t cols = layer[k].c == 0 ? 0 : layer[k].c == 3 ? FF : D;
            add(&ts, nm, rows, cols);
        }
    char *st = pt_path_join(dir, "model.safetensors"), *cf = pt_path_join(dir, "config.json");
    char *gg = pt_path_join(dir, "m.gguf"), *copy = pt_path_join(dir, "copy.bin");
    if (pt_safetensors_write(st, ts.t, ts.n, NULL, &e)) return fprintf(stderr, "%s\n", e.msg), 1;
    json_t *cj = pt_config_to_json(&c);
    char *js = json_dumps(cj, 0);
    pt_write_atomic(cf, js, strlen(js), 0644, &e);
    size_t total = 0;
    for (size_t i = 0; i < ts.n; i++) total += ts.t[i].nbytes;
    printf("synthetic llama: d_model %d, %d layers, %.1f MB of F32 weights\n", D, L, (double)total / 1e6);

    pt_convert_opts o = {.to = PT_FORMAT_GGUF, .dtype = PT_F16};
    double t0 = pt_now();
    if (pt_convert(dir, gg, &o, &e)) return fprintf(stderr, "%s\n", e.msg), 1;
    double t_conv = pt_now() - t0;
    char *buf;
    size_t len;
    t0 = pt_now();
    pt_read_file(st, (size_t)1 << 34, &buf, &len, &e);
    pt_write_atomic(copy, buf, len, 0644, &e);
    double t_copy = pt_now() - t0;
    free(buf);
    printf("convert HF F32 -> GGUF F16: %.3f s; copy of the safetensors file: %.3f s; ratio %.2fx\n", t_conv, t_copy,
           t_conv / t_copy);

    double best_open = 1e9, best_read = 1e9;
    for (int r = 0; r < 5; r++) {
        pt_model_files mf;
        t0 = pt_now();
        if (pt_model_files_open(&mf, gg, &e)) return fprintf(stderr, "%s\n", e.msg), 1;
        touch_all(&mf);
        double t = pt_now() - t0;
        pt_model_files_close(&mf);
        best_open = t < best_open ? t : best_open;
        t = read_file_s(gg);
        best_read = t < best_read ? t : best_read;
    }
    printf("open GGUF F16 + touch every weight: %.4f s; read() of the file: %.4f s; ratio %.2fx\n", best_open,
           best_read, best_open / best_read);

    size_t n = (size_t)FF * (size_t)D;
    const float *x = pt_tensors_find(&ts, "model.layers.0.mlp.up_proj.weight")->data;
    void *q = malloc(n / 32 * sizeof(pt_block_q8_0)), *h = malloc(n * 2);
    double tq = 1e9, th = 1e9;
    for (int r = 0; r < 5; r++) {
        t0 = pt_now();
        pt_from_f32(PT_Q8_0, x, q, n);
        double t = pt_now() - t0;
        tq = t < tq ? t : tq;
        t0 = pt_now();
        pt_from_f32(PT_F16, x, h, n);
        t = pt_now() - t0;
        th = t < th ? t : th;
    }
    printf("quantise Q8_0: %.1f M values/s; F32->F16: %.1f M values/s; time ratio %.2fx\n", (double)n / tq / 1e6,
           (double)n / th / 1e6, tq / th);
    free(q);
    free(h);
    unlink(st);
    unlink(cf);
    unlink(gg);
    unlink(copy);
    rmdir(dir);
    free(st);
    free(cf);
    free(gg);
    free(copy);
    free(js);
    json_decref(cj);
    pt_tensors_free(&ts);
    return 0;
}
