/* Fuzz target: the training config parser (YAML through ytree, the model's config.json
 * fields through pt_config_from_json). An accepted config must satisfy the invariants the
 * trainer relies on. */
#include <stdint.h>
#include <stdlib.h>

#include "train/loop.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    pt_err err;
    pt_train_conf tc;
    if (pt_train_conf_parse((const char *)data, size, "fuzz", &tc, &err) == PT_OK) {
        if (tc.seq_len < 1 || tc.seq_len > tc.model.max_pos || tc.batch_size < 1 || !tc.data || !tc.out) abort();
        pt_train_conf_free(&tc);
    }
    return 0;
}
