/* Fuzz target: `parity finetune`'s inputs — one JSONL line (prompt/completion or chat
 * messages, tokenized with a small byte-level tokenizer) and, with the same bytes, the
 * finetune YAML config. Accepted examples must be consistent (loss flags 0/1, ids in the
 * vocabulary, length within max_len). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/tokenizer.h"
#include "train/finetune.h"

static pt_tokenizer *tok;

static void make_tok(void) {
    /* bytes 0..255 as <0xNN> pieces would need a byte-fallback model; a plain byte-level BPE
     * vocabulary of the 256 GPT-2 byte symbols is enough */
    static char json[16384];
    size_t n = 0;
    n += (size_t)snprintf(json + n, sizeof json - n,
                          "{\"model\":{\"type\":\"BPE\",\"merges\":[],\"vocab\":{");
    int id = 0;
    for (int b = 0; b < 256; b++) {
        int cp = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174) ? b : 0;
        static int extra = 0;
        if (!cp) cp = 256 + extra++;
        char u[8];
        int ul = cp < 0x80 ? (u[0] = (char)cp, 1) : (u[0] = (char)(0xC0 | (cp >> 6)), u[1] = (char)(0x80 | (cp & 63)), 2);
        n += (size_t)snprintf(json + n, sizeof json - n, "%s\"", id ? "," : "");
        for (int k = 0; k < ul; k++) {
            if (u[k] == '"' || u[k] == '\\') json[n++] = '\\';
            json[n++] = u[k];
        }
        n += (size_t)snprintf(json + n, sizeof json - n, "\":%d", id++);
    }
    n += (size_t)snprintf(json + n, sizeof json - n,
                          ",\"<|endoftext|>\":256}},\"pre_tokenizer\":{\"type\":\"ByteLevel\",\"add_prefix_space\":false},"
                          "\"added_tokens\":[{\"id\":256,\"content\":\"<|endoftext|>\",\"special\":true}]}");
    pt_err err;
    if (pt_tokenizer_parse(json, n, "fuzz-tok", &tok, &err)) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!tok) make_tok();
    pt_err err;
    pt_sft_example ex;
    if (pt_sft_parse_line((const char *)data, size, "fuzz:1", tok, 64, &ex, &err) == PT_OK) {
        if (ex.n > 64 || ex.n < 0) abort();
        for (int i = 0; i < ex.n; i++)
            if (ex.loss[i] > 1 || ex.tokens[i] < 0 || ex.tokens[i] > 256) abort();
        free(ex.tokens), free(ex.loss);
    }
    pt_finetune_conf fc;
    pt_finetune_conf_defaults(&fc);
    if (pt_finetune_conf_parse((const char *)data, size, "fuzz", &fc, &err) == PT_OK) {
        if (fc.rank < 1 || fc.batch_size < 1 || fc.max_len < 2 || !(fc.dropout >= 0 && fc.dropout < 1)) abort();
    }
    pt_finetune_conf_free(&fc);
    return 0;
}
