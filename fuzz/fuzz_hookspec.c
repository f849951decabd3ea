/* Fuzz target: the interventions document (pt_hooks_load_spec) and hook-name parser that
 * `parity trace --spec` and the HTTP internals API feed with outside input. The config is a
 * small fixed Llama; file references resolve under a directory that does not exist, so the
 * file branch exercises its error path. Reads the result back (pt_hooks_get). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/json.h"
#include "engine/hooks.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    pt_config c;
    memset(&c, 0, sizeof c);
    c.arch = PT_ARCH_LLAMA;
    c.vocab_size = 50, c.d_model = 8, c.n_layers = 2, c.n_heads = 2, c.n_kv_heads = 1, c.head_dim = 4;
    c.d_ff = 16, c.max_pos = 64;
    pt_err err;
    json_t *j = pt_json_parse((const char *)data, size, PT_JSON_MAX_DEPTH, "fuzz", &err);
    if (!j) return 0;
    pt_hooks *h;
    if (pt_hooks_new(&c, &h, &err)) {
        json_decref(j);
        return 0;
    }
    if (!pt_hooks_load_spec(h, j, "/nonexistent-parity-fuzz", "fuzz", &err)) {
        /* run the registered hooks over a few rows of every site, then read back */
        float x[4 * 50];
        for (int site = 0; site < pt_hook_n_sites(&c); site++) {
            if (!pt_hooks_active(h, site)) continue;
            int w = pt_hook_width(&c, site);
            if (w > 50) continue;
            for (int i = 0; i < 4 * w; i++) x[i] = (float)i;
            if (site == pt_hook_site(PT_HOOK_PATTERN, 0) || site == pt_hook_site(PT_HOOK_PATTERN, 1)) {
                float pat[2 * 4 * 4] = {0};
                pt_hooks_record_pattern(h, site, pat, 4, 0, &err);
            } else {
                pt_hooks_apply(h, site, x, 4, 0, &err);
            }
        }
        for (size_t i = 0; i < pt_hooks_n_reads(h); i++) {
            pt_hook_tensor t;
            pt_hooks_get(h, pt_hooks_read_name(h, i), &t, &err);
        }
    }
    pt_hooks_free(h);
    json_decref(j);
    return 0;
}
