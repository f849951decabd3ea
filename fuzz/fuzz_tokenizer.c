/* Fuzz target: tokenizer.json / GGUF-vocab JSON loading, then encode and decode of a text
 * taken from the tail of the input (after the last 0x00 byte, if any). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "engine/tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const uint8_t *nul = memchr(data, 0, size);
    size_t jlen = nul ? (size_t)(nul - data) : size;
    const char *text = nul ? (const char *)nul + 1 : "Hello world, \xc3\xa9t\xc3\xa9 \xf0\x9f\x98\x80 <s> 123";
    size_t tlen = nul ? size - jlen - 1 : strlen(text);
    pt_err err;
    pt_tokenizer *t;
    if (pt_tokenizer_parse((const char *)data, jlen, "fuzz", &t, &err)) return 0;
    int32_t *ids;
    size_t n;
    for (int mode = 0; mode < 2; mode++) {
        if (pt_tokenizer_encode(t, text, tlen, mode, mode, &ids, &n, &err) == PT_OK) {
            char *out;
            size_t len;
            if (pt_tokenizer_decode(t, ids, n, mode, &out, &len, &err) == PT_OK) free(out);
            free(ids);
        }
    }
    int32_t probe[] = {0, 1, 2, (int32_t)pt_tokenizer_vocab_size(t) - 1, (int32_t)pt_tokenizer_vocab_size(t), -1};
    char buf[64];
    size_t len;
    for (size_t i = 0; i < sizeof probe / sizeof *probe; i++) pt_tokenizer_token_bytes(t, probe[i], buf, sizeof buf, &len);
    char *out;
    if (pt_tokenizer_decode(t, probe, 4, 0, &out, &len, &err) == PT_OK) free(out);
    pt_tokenizer_free(t);
    return 0;
}
