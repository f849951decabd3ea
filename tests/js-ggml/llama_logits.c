/* llama_logits.c — test helper (built by tests/test_quant_llama.py with cc): loads a GGUF with
 * llama.cpp's own libllama (the prebuilt one in @node-llama-cpp/linux-x64 3.21.1) and prints
 * the logits after each token as one JSON array per line.
 *
 * usage: llama_logits BINS_DIR MODEL.gguf N_VOCAB TOKEN...
 *
 * Only the functions below are declared (no llama.h here). llama_model_params and
 * llama_context_params are used at their defaults only, through buffers larger than either
 * struct: on x86-64 (SysV) a struct of this size is returned through a caller-provided buffer
 * and passed by value as a copy on the stack, of which the callee reads its own size. */
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

typedef struct params_buf {
    _Alignas(16) unsigned char b[1024];
} params_buf;

typedef struct llama_batch { /* llama.h of llama.cpp as node-llama-cpp 3.21.1 bundles it */
    int32_t n_tokens;
    int32_t *token;
    float *embd;
    int32_t *pos;
    int32_t *n_seq_id;
    int32_t **seq_id;
    int8_t *logits;
} llama_batch;

static void *sym(void *h, const char *name) {
    void *p = dlsym(h, name);
    if (!p) {
        fprintf(stderr, "llama_logits: %s missing\n", name);
        exit(1);
    }
    return p;
}

int main(int argc, char **argv) {
    if (argc < 5) {
        fprintf(stderr, "usage: llama_logits BINS_DIR MODEL.gguf N_VOCAB TOKEN...\n");
        return 2;
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/libggml.v0.4.0.so", argv[1]);
    void *hg = dlopen(path, RTLD_NOW | RTLD_GLOBAL);
    snprintf(path, sizeof path, "%s/libllama.v0.4.0.so", argv[1]);
    void *hl = dlopen(path, RTLD_NOW | RTLD_GLOBAL);
    if (!hg || !hl) {
        fprintf(stderr, "llama_logits: dlopen: %s\n", dlerror());
        return 1;
    }
    void (*load_all)(const char *) = (void (*)(const char *))sym(hg, "ggml_backend_load_all_from_path");
    void (*backend_init)(void) = (void (*)(void))sym(hl, "llama_backend_init");
    params_buf (*model_defaults)(void) = (params_buf(*)(void))sym(hl, "llama_model_default_params");
    params_buf (*ctx_defaults)(void) = (params_buf(*)(void))sym(hl, "llama_context_default_params");
    void *(*load)(const char *, params_buf) = (void *(*)(const char *, params_buf))sym(hl, "llama_model_load_from_file");
    void *(*init)(void *, params_buf) = (void *(*)(void *, params_buf))sym(hl, "llama_init_from_model");
    llama_batch (*get_one)(int32_t *, int32_t) = (llama_batch(*)(int32_t *, int32_t))sym(hl, "llama_batch_get_one");
    int32_t (*decode)(void *, llama_batch) = (int32_t(*)(void *, llama_batch))sym(hl, "llama_decode");
    float *(*get_logits)(void *) = (float *(*)(void *))sym(hl, "llama_get_logits");
    void (*free_ctx)(void *) = (void (*)(void *))sym(hl, "llama_free");
    void (*free_model)(void *) = (void (*)(void *))sym(hl, "llama_model_free");
    load_all(argv[1]);
    backend_init();
    void *model = load(argv[2], model_defaults());
    if (!model) {
        fprintf(stderr, "llama_logits: llama.cpp could not load %s\n", argv[2]);
        return 1;
    }
    void *ctx = init(model, ctx_defaults());
    if (!ctx) {
        fprintf(stderr, "llama_logits: no context\n");
        return 1;
    }
    int n_vocab = atoi(argv[3]);
    for (int i = 4; i < argc; i++) {
        int32_t tok = atoi(argv[i]);
        if (decode(ctx, get_one(&tok, 1))) {
            fprintf(stderr, "llama_logits: decode failed at token %d\n", i - 4);
            return 1;
        }
        const float *l = get_logits(ctx);
        putchar('[');
        for (int v = 0; v < n_vocab; v++) printf("%s%.9g", v ? "," : "", l[v]);
        puts("]");
    }
    free_ctx(ctx);
    free_model(model);
    return 0;
}
