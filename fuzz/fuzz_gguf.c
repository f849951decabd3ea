/* Fuzz target: the GGUF header parser, then what the loaders do with a parsed file (config from
 * llama.cpp keys, tensors mapped back to HF layout, the tokenizer vocabulary). */
#include <stdint.h>
#include <stdlib.h>

#include "engine/convert.h"
#include "engine/gguf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    pt_gguf g;
    pt_err err;
    if (pt_gguf_parse(data, size, "fuzz.gguf", &g, &err) == 0) {
        pt_gguf_vocab v;
        if (pt_gguf_vocab_load(&g, &v, &err) == 0) pt_gguf_vocab_free(&v);
        pt_config c;
        pt_tensors ts;
        pt_tensors_init(&ts);
        pt_gguf_load_model(&g, &c, &ts, &err);
        pt_tensors_free(&ts);
        pt_gguf_close(&g);
    }
    return 0;
}
