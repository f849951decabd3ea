/* Fuzz target: the BPE trainer on arbitrary text, with a property check. The first byte picks
 * the options (pattern, min frequency, vocabulary size), the rest is the training text. When
 * the text is valid UTF-8, the trained tokenizer.json must load, have the trainer's vocabulary
 * size, and give decode(encode(text)) == text; any failure of that traps. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "engine/tokenizer.h"
#include "engine/tokenizer_train.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!size || size > 4096) return 0;
    unsigned opt = data[0];
    const char *text = (const char *)data + 1;
    size_t len = size - 1;
    static const char *const sp[] = {"<|endoftext|>", "<|x|>"};
    pt_bpe_train_opts o = {.vocab_size = 258 + (opt & 63), .specials = sp, .n_specials = 2,
                           .min_frequency = (opt >> 6) & 1 ? 2 : 1, .pattern = opt & 128 ? "llama3" : "gpt2"};
    pt_bpe_trainer *tr;
    pt_err err;
    if (pt_bpe_trainer_new(&o, &tr, &err)) __builtin_trap();
    int rc = pt_bpe_trainer_feed(tr, text, len, "fuzz", &err);
    if (rc == PT_OK) rc = pt_bpe_trainer_run(tr, &err);
    char *json = NULL;
    size_t jlen;
    if (rc == PT_OK) {
        if (pt_bpe_trainer_tokenizer_json(tr, &json, &jlen, &err)) __builtin_trap();
        pt_tokenizer *t;
        if (pt_tokenizer_parse(json, jlen, "trained", &t, &err)) __builtin_trap();
        if (pt_tokenizer_vocab_size(t) != pt_bpe_trainer_vocab_size(tr)) __builtin_trap();
        int32_t *ids;
        size_t n, olen;
        char *out;
        if (pt_tokenizer_encode(t, text, len, 0, 1, &ids, &n, &err)) __builtin_trap();
        if (pt_tokenizer_decode(t, ids, n, 0, &out, &olen, &err)) __builtin_trap();
        if (olen != len || memcmp(out, text, len)) __builtin_trap();
        free(out);
        free(ids);
        pt_tokenizer_free(t);
    }
    free(json);
    pt_bpe_trainer_free(tr);
    return 0;
}
