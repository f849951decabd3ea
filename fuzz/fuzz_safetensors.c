/* Fuzz target: the safetensors header parser (JSON header, dtypes, shapes, offsets, coverage). */
#include <stdint.h>
#include <stdlib.h>

#include "engine/tensor.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    pt_tensors ts;
    pt_err err;
    pt_tensors_init(&ts);
    if (pt_safetensors_parse(data, size, "fuzz.safetensors", &ts, &err) == 0) {
        volatile size_t n = 0;
        for (size_t i = 0; i < ts.n; i++) n += pt_tensor_numel(&ts.t[i]);
        (void)n;
    }
    pt_tensors_free(&ts);
    return 0;
}
