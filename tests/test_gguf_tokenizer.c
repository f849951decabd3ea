/* End to end: a byte-level BPE tokenizer.json converted to tokenizer.ggml.* keys, written to a
 * GGUF, read back into a pt_vocab_spec, encodes and decodes exactly as the tokenizer.json does. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/fileio.h"
#include "engine/convert.h"
#include "engine/gguf.h"
#include "engine/tokenizer.h"
#include "test.h"

static char dir[] = "/tmp/parity-ggtok-XXXXXX";

/* GPT-2's bytes_to_unicode: printable bytes map to themselves, the rest to U+0100 onwards. */
static void byte_char(int b, char out[3]) {
    static int map[256], done;
    if (!done) {
        int n = 0;
        for (int i = 0; i < 256; i++) {
            int keep = (i >= 33 && i <= 126) || (i >= 161 && i <= 172) || (i >= 174 && i <= 255);
            map[i] = keep ? i : 256 + n++;
        }
        done = 1;
    }
    int cp = map[b];
    if (cp < 0x80) {
        out[0] = (char)cp;
        out[1] = 0;
    } else {
        out[0] = (char)(0xc0 | cp >> 6);
        out[1] = (char)(0x80 | (cp & 0x3f));
        out[2] = 0;
    }
}

static void write_tokenizer_json(const char *path) {
    pt_buf b;
    pt_buf_init(&b, 1 << 20);
    pt_buf_puts(&b, "{\"version\":\"1.0\",\"added_tokens\":[{\"id\":266,\"content\":\"<|endoftext|>\",\"special\":true,"
                    "\"single_word\":false,\"lstrip\":false,\"rstrip\":false,\"normalized\":false}],"
                    "\"normalizer\":null,\"pre_tokenizer\":{\"type\":\"ByteLevel\",\"add_prefix_space\":false,"
                    "\"trim_offsets\":true,\"use_regex\":true},\"post_processor\":null,"
                    "\"decoder\":{\"type\":\"ByteLevel\",\"add_prefix_space\":true,\"trim_offsets\":true,\"use_regex\":true},"
                    "\"model\":{\"type\":\"BPE\",\"dropout\":null,\"unk_token\":null,\"continuing_subword_prefix\":\"\","
                    "\"end_of_word_suffix\":\"\",\"fuse_unk\":false,\"vocab\":{");
    for (int i = 0; i < 256; i++) {
        char c[3];
        byte_char(i, c);
        pt_buf_printf(&b, "%s\"%s%s\":%d", i ? "," : "", c[0] == '"' || c[0] == '\\' ? "\\" : "", c, i);
    }
    static const char *const extra[] = {"he", "ll", "hell", "hello", "\xc4\xa0w", "or", "\xc4\xa0wor", "ld",
                                        "\xc4\xa0world", "\xc4\xa0t"};
    static const char *const merges[] = {"h e", "l l", "he ll", "hell o", "\xc4\xa0 w", "o r", "\xc4\xa0w or",
                                         "l d", "\xc4\xa0wor ld", "\xc4\xa0 t"};
    for (int i = 0; i < 10; i++) pt_buf_printf(&b, ",\"%s\":%d", extra[i], 256 + i);
    pt_buf_puts(&b, "},\"merges\":[");
    for (int i = 0; i < 10; i++) pt_buf_printf(&b, "%s\"%s\"", i ? "," : "", merges[i]);
    pt_buf_puts(&b, "]}}");
    pt_err e;
    CHECK(pt_write_atomic(path, b.data, b.len, 0644, &e) == 0);
    pt_buf_free(&b);
}

static void test_gguf_vocab_encodes_like_tokenizer_json(void) {
    char *tj = pt_path_join(dir, "tokenizer.json"), *gg = pt_path_join(dir, "t.gguf");
    write_tokenizer_json(tj);
    pt_err e;
    pt_tokenizer *ref = NULL, *fromg = NULL;
    CHECK(pt_tokenizer_load(tj, &ref, &e) == 0);
    if (!ref) fprintf(stderr, "%s\n", e.msg);
    pt_config c = {.vocab_size = 270, .bos_token_id = 266, .n_eos = 1, .eos_token_ids = {266}};
    pt_gguf_writer *w = pt_gguf_writer_new();
    CHECK(pt_gguf_set_str(w, "general.architecture", "gpt2", &e) == 0);
    CHECK(pt_tokenizer_json_to_gguf(dir, &c, w, &e) == 0);
    CHECK(pt_gguf_write(w, gg, NULL, NULL, NULL, &e) == 0);
    pt_gguf_writer_free(w);
    pt_gguf g;
    pt_gguf_vocab v;
    CHECK(pt_gguf_open(gg, &g, &e) == 0);
    CHECK(pt_gguf_vocab_load(&g, &v, &e) == 0);
    CHECK(v.spec.n_tokens == 270 && v.spec.n_merges == 10 && !strcmp(v.spec.model, "gpt2"));
    CHECK(pt_tokenizer_from_vocab(&v.spec, &fromg, &e) == 0);
    if (!fromg) fprintf(stderr, "%s\n", e.msg);
    static const char *const texts[] = {"hello world", "hello  world!\n\tworld's 123 <|endoftext|> x",
                                        "h\xc3\xa9llo w\xe2\x82\xac rld", "", "tttt t t"};
    for (size_t i = 0; ref && fromg && i < sizeof texts / sizeof texts[0]; i++) {
        int32_t *a = NULL, *b = NULL;
        size_t na = 0, nb = 0;
        CHECK(pt_tokenizer_encode(ref, texts[i], strlen(texts[i]), 0, 1, &a, &na, &e) == 0);
        CHECK(pt_tokenizer_encode(fromg, texts[i], strlen(texts[i]), 0, 1, &b, &nb, &e) == 0);
        CHECK(na == nb && (na == 0 || !memcmp(a, b, na * sizeof *a)));
        char *s = NULL;
        size_t sl = 0;
        CHECK(pt_tokenizer_decode(fromg, b, nb, 0, &s, &sl, &e) == 0 && sl == strlen(texts[i]) &&
              !memcmp(s, texts[i], sl));
        if (i == 0) CHECK(na == 2 && a[0] == 259 && a[1] == 264); /* "hello", " world" */
        free(a);
        free(b);
        free(s);
    }
    pt_tokenizer_free(ref);
    pt_tokenizer_free(fromg);
    pt_gguf_vocab_free(&v);
    pt_gguf_close(&g);
    unlink(tj);
    unlink(gg);
    free(tj);
    free(gg);
}

int main(void) {
    CHECK(mkdtemp(dir) != NULL);
    test_gguf_vocab_encodes_like_tokenizer_json();
    rmdir(dir);
    return test_summary("gguf_tokenizer");
}
