/* The hook rules the server's listing and trace share (pt_hook_site_exists), and interventions
 * whose values are not finite (issue 12: a scale of 1e308 gave NaN logits and a 200). */
#include <math.h>
#include <string.h>

#include "engine/hooks.h"
#include "test.h"

static pt_config config(pt_arch arch) {
    pt_config c;
    memset(&c, 0, sizeof c);
    c.arch = arch;
    c.vocab_size = 16, c.d_model = 4, c.n_layers = 2, c.n_heads = 2, c.n_kv_heads = 2, c.head_dim = 2;
    c.d_ff = 8, c.max_pos = 32;
    return c;
}

/* Every site a listing would show parses, and nothing else does: hook_pos_embed only on GPT-2,
 * the q/k norm hooks only on a model with per-head q/k norms (Qwen3, Gemma 3), the post-norm
 * hooks ln1_post/ln2_post only on Gemma. */
static void test_listing_is_what_parses(void) {
    pt_arch arches[4] = {PT_ARCH_LLAMA, PT_ARCH_GPT2, PT_ARCH_LLAMA, PT_ARCH_LLAMA};
    for (int a = 0; a < 4; a++) {
        pt_config c = config(arches[a]);
        c.qk_norm = a >= 2;
        if (a == 3) c.family = PT_FAM_GEMMA3;
        int gemma = a == 3;
        int listed = 0;
        for (int site = 0; site < pt_hook_n_sites(&c); site++) {
            char name[96];
            int64_t dims[4];
            int got, exists = pt_hook_site_exists(&c, site);
            pt_hook_name(&c, site, name, sizeof name);
            CHECK((pt_hook_row_shape(&c, site, dims) >= 0) == exists);
            CHECK((pt_hook_parse(&c, name, &got, NULL) == PT_OK) == exists);
            if (exists) CHECK(got == site);
            listed += exists;
        }
        CHECK(pt_hook_site_exists(&c, PT_HOOK_POS_EMBED) == (arches[a] == PT_ARCH_GPT2));
        CHECK(listed == pt_hook_n_sites(&c) - (arches[a] == PT_ARCH_GPT2 ? 0 : 1) - (c.qk_norm ? 0 : 2 * c.n_layers) -
                            (gemma ? 0 : 2 * c.n_layers));
        int site;
        CHECK((pt_hook_parse(&c, "blocks.1.attn.k_norm.hook_normalized", &site, NULL) == PT_OK) == c.qk_norm);
        CHECK((pt_hook_parse(&c, "blocks.1.ln2_post.hook_normalized", &site, NULL) == PT_OK) == gemma);
    }
}

static void test_non_finite_interventions(void) {
    pt_config c = config(PT_ARCH_LLAMA);
    pt_hooks *h;
    pt_err err;
    CHECK(pt_hooks_new(&c, &h, &err) == PT_OK);
    float v[4] = {1, 2, 3, 4}, big[4] = {1, 1e10f, 1, 1};
    CHECK(pt_hooks_add(h, "blocks.0.hook_resid_pre", v, 4, 2.0f, NULL, 0, &err) == PT_OK);
    CHECK(pt_hooks_add(h, "blocks.0.hook_resid_pre", v, 4, INFINITY, NULL, 0, &err) == PT_EINVAL);
    CHECK(pt_hooks_add(h, "blocks.0.hook_resid_pre", big, 4, 1e30f, NULL, 0, &err) == PT_EINVAL &&
          strstr(err.msg, "blocks.0.hook_resid_pre") && strstr(err.msg, "value 1 "));
    big[2] = NAN;
    CHECK(pt_hooks_set(h, "blocks.1.hook_resid_post", big, 4, NULL, 0, &err) == PT_EINVAL);
    pt_hooks_free(h);
}

int main(void) {
    test_listing_is_what_parses();
    test_non_finite_interventions();
    return test_summary("test_hooks_rules");
}
