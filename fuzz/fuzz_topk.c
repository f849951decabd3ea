/* Fuzz target: the teacher top-k cache reader (`parity distill --cache` maps it). Every
 * accepted file's rows must expand to V finite-or-−∞ log-probabilities with ids in range. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "train/distill.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    uint8_t *buf = malloc(size ? size : 1);
    if (!buf) return 0;
    memcpy(buf, data, size);
    pt_err err;
    pt_topk c;
    if (pt_topk_parse(buf, size, "fuzz", &c, &err) == PT_OK && c.n_windows && c.vocab_size <= 4096) {
        float *row = malloc(c.vocab_size * sizeof *row);
        for (int renorm = 0; row && renorm < 2; renorm++) {
            pt_topk_row(&c, c.n_windows - 1, c.seq_len - 1, renorm, row);
            for (uint32_t v = 0; v < c.vocab_size; v++)
                if (isnan(row[v]) || row[v] > 1.f) abort();
        }
        free(row);
    }
    free(buf);
    return 0;
}
