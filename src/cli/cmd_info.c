/* parity info — what a model is: architecture, sizes, parameters, dtypes, hook points. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/cli_engine.h"

const char cmd_info_summary[] = "describe a model: architecture, sizes, dtypes, hook points";

int cmd_info(int argc, char **argv) {
    if (cli_wants_help(argc, argv)) {
        printf("usage: parity info -m MODEL\n\n"
               "Prints the architecture, its sizes, the parameter count, the tensors' dtypes, the KV\n"
               "cache per position, and every hook point with its per-sequence shape.\n\n"
               "example:\n  parity info -m models/tiny\n");
        return 0;
    }
    const char *model = NULL;
    for (int i = 1; i < argc; i++) {
        if ((!strcmp(argv[i], "-m") || !strcmp(argv[i], "--model")) && i + 1 < argc) model = argv[++i];
        else return cli_usage_error("info", "unknown option '%s'", argv[i]);
    }
    if (!model) return cli_usage_error("info", "-m MODEL is required");
    pt_err err = {0};
    pt_model *m;
    int rc = pt_model_load(model, &m, &err);
    if (rc) return cli_fail(&err);
    const pt_config *c = &m->c;
    size_t by_dtype[PT_DTYPE_COUNT] = {0}, bytes = 0;
    for (size_t i = 0; i < m->files.tensors.n; i++) {
        by_dtype[m->files.tensors.t[i].dtype]++;
        bytes += m->files.tensors.t[i].nbytes;
    }
    printf("model:        %s\n", model);
    printf("architecture: %s\n", c->arch == PT_ARCH_LLAMA ? pt_family_name(c->family) : "gpt2");
    printf("parameters:   %zu (%.1fM), %zu bytes of tensors\n", m->n_params, m->n_params / 1e6, bytes);
    printf("dtypes:      ");
    for (int t = 0; t < PT_DTYPE_COUNT; t++)
        if (by_dtype[t]) printf(" %s x%zu", pt_dtype_name((pt_dtype)t), by_dtype[t]);
    printf("\nvocab %d, d_model %d, layers %d, heads %d, kv_heads %d, head_dim %d, d_ff %d, context %d\n",
           c->vocab_size, c->d_model, c->n_layers, c->n_heads, c->n_kv_heads, c->head_dim, c->d_ff, c->max_pos);
    if (c->arch == PT_ARCH_LLAMA)
        printf("rope_theta %g, rms_norm_eps %g, tied embeddings %s, attention bias %s, mlp bias %s\n", c->rope_theta,
               c->norm_eps, c->tie_embeddings ? "yes" : "no", c->attn_bias ? (c->o_bias ? "yes" : "q, k, v") : "no",
               c->mlp_bias ? "yes" : "no");
    if (c->arch == PT_ARCH_LLAMA && c->rope.type != PT_ROPE_DEFAULT) {
        static const char *const types[] = {"default", "linear", "dynamic", "yarn", "llama3", "longrope"};
        printf("rope_scaling %s, factor %g, original context %d\n", types[c->rope.type], c->rope.factor,
               c->rope.orig_max_pos);
    }
    if (c->qk_norm) printf("per-head q and k RMSNorm before RoPE\n");
    if (c->sliding_window) {
        int n_win = 0;
        for (int i = 0; i < c->n_layers; i++) n_win += pt_config_layer_windowed(c, i);
        printf("sliding window %d positions on %d of %d layers\n", c->sliding_window, n_win, c->n_layers);
    }
    if (pt_config_gemma(c))
        printf("Gemma: norms (1 + w), pre- and post-norms, GeGLU, embeddings x %g, query_pre_attn_scalar %d, "
               "attention soft-cap %g, final soft-cap %g%s\n",
               c->embed_scale, c->query_pre_attn_scalar, c->attn_softcap, c->final_softcap,
               c->rope_local_theta > 0 ? ", local layers' rope_theta" : "");
    if (pt_config_fused(c)) printf("fused qkv_proj and gate_up_proj (Phi-3)\n");
    if (c->arch != PT_ARCH_LLAMA)
        printf("layer_norm_epsilon %g, tied embeddings yes\n", c->norm_eps);
    printf("weights read per decoded token: %zu bytes; KV cache per position: %zu bytes\n", m->weight_bytes,
           2 * (size_t)c->n_layers * c->n_kv_heads * c->head_dim * sizeof(float));
    printf("hook points (per sequence; pos = positions):\n");
    char name[128];
    for (int site = 0; site < pt_hook_n_sites(c); site++) {
        if (!pt_hook_site_exists(c, site)) continue;
        int64_t d[2];
        int nd = pt_hook_row_shape(c, site, d);
        pt_hook_name(c, site, name, sizeof name);
        if (site >= PT_HOOK_N_GLOBAL && (site - PT_HOOK_N_GLOBAL) / PT_HOOK_N_LAYER == 1 && c->n_layers > 2) {
            printf("  ... (the same for blocks.1 .. blocks.%d)\n", c->n_layers - 1);
            site = PT_HOOK_N_GLOBAL + (c->n_layers) * PT_HOOK_N_LAYER - 1;
            continue;
        }
        if (site == pt_hook_site(PT_HOOK_PATTERN, 0) || (site >= PT_HOOK_N_GLOBAL &&
                                                         (site - PT_HOOK_N_GLOBAL) % PT_HOOK_N_LAYER ==
                                                             PT_HOOK_PATTERN - PT_HOOK_N_GLOBAL))
            printf("  %-34s [%lld, pos, pos]\n", name, (long long)d[0]);
        else if (nd == 2)
            printf("  %-34s [pos, %lld, %lld]\n", name, (long long)d[0], (long long)d[1]);
        else
            printf("  %-34s [pos, %lld]\n", name, (long long)d[0]);
    }
    pt_model_free(m);
    return 0;
}
