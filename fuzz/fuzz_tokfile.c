/* Fuzz target: the token-file reader `parity train` and `parity eval --data` map. Every id of
 * an accepted file must be below the header's vocabulary size. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "train/tokfile.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    /* copy into an aligned buffer, as a mapping would be */
    uint32_t *buf = malloc(size / 4 + 1 ? (size / 4 + 1) * 4 : 4);
    if (!buf) return 0;
    memcpy(buf, data, size);
    pt_err err;
    pt_tokfile tf;
    if (pt_tokfile_parse((const uint8_t *)buf, size, "fuzz", &tf, &err) == PT_OK) {
        for (uint64_t i = 0; i < tf.n_tokens; i++)
            if (tf.tokens[i] >= tf.vocab_size) abort();
    }
    free(buf);
    return 0;
}
