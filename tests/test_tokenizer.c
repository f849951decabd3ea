/* Tokenizer unit tests: small hand-written tokenizer.json files whose encodings can be worked
 * out by hand, error messages that name the JSON path, added/special tokens, BOS, byte
 * fallback, GGUF vocabularies, and BPE on a long word. */
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "engine/tokenizer.h"
#include "test.h"

/* Byte-level vocabulary: the 256 byte characters plus a few merges. Ids 0..255 are the bytes in
 * GPT-2's byte↔unicode order as the JSON lists them (byte value order here for simplicity:
 * id of byte b is b). */
static char *byte_vocab_json(const char *extra_vocab, const char *merges, const char *pre, const char *extra) {
    static const char *hex = "0123456789abcdef";
    size_t cap = 1 << 16;
    char *s = malloc(cap);
    size_t n = 0;
    n += (size_t)snprintf(s + n, cap - n, "{\"model\":{\"type\":\"BPE\",\"vocab\":{");
    for (unsigned b = 0; b < 256; b++) {
        unsigned cp = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174 ? b
                      : b <= 32 ? 256 + b : b <= 160 ? 256 + 33 + (b - 127) : 256 + 67;
        n += (size_t)snprintf(s + n, cap - n, "%s\"\\u%c%c%c%c\":%u", b ? "," : "", hex[cp >> 12], hex[(cp >> 8) & 15], hex[(cp >> 4) & 15],
                              hex[cp & 15], b);
    }
    n += (size_t)snprintf(s + n, cap - n, "%s},\"merges\":[%s]},\"pre_tokenizer\":%s,\"decoder\":{\"type\":\"ByteLevel\"}%s}",
                          extra_vocab, merges, pre, extra);
    return s;
}

static int encode_eq(pt_tokenizer *t, const char *text, int add, int parse, const int32_t *want, size_t nwant) {
    int32_t *ids;
    size_t n;
    pt_err err;
    if (pt_tokenizer_encode(t, text, strlen(text), add, parse, &ids, &n, &err)) {
        fprintf(stderr, "encode(%s): %s\n", text, err.msg);
        return 0;
    }
    int ok = n == nwant && (!n || !memcmp(ids, want, n * sizeof *ids));
    if (!ok) {
        fprintf(stderr, "encode(%s) =", text);
        for (size_t i = 0; i < n; i++) fprintf(stderr, " %d", ids[i]);
        fprintf(stderr, "\n");
    }
    free(ids);
    return ok;
}

static int roundtrip(pt_tokenizer *t, const char *text) {
    int32_t *ids;
    size_t n, len;
    char *out;
    pt_err err;
    if (pt_tokenizer_encode(t, text, strlen(text), 0, 1, &ids, &n, &err)) return 0;
    int rc = pt_tokenizer_decode(t, ids, n, 0, &out, &len, &err);
    free(ids);
    if (rc) return 0;
    int ok = len == strlen(text) && !memcmp(out, text, len);
    free(out);
    return ok;
}

static void test_byte_level_merges_by_rank(void) {
    /* merges: "h e" (rank 0) then "l l" (1), "he ll" (2), "hell o" (3) */
    char *j = byte_vocab_json(",\"he\":256,\"ll\":257,\"hell\":258,\"hello\":259,\"\\u0120w\":260",
                              "\"h e\",\"l l\",\"he ll\",\"hell o\",\"\\u0120 w\"",
                              "{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"use_regex\":true}", "");
    pt_tokenizer *t;
    pt_err err;
    int prc = pt_tokenizer_parse(j, strlen(j), "t.json", &t, &err);
    CHECK(prc == PT_OK);
    free(j);
    if (prc) {
        fprintf(stderr, "%s\n", err.msg);
        return;
    }
    CHECK(encode_eq(t, "hello", 0, 1, (int32_t[]){259}, 1));
    CHECK(encode_eq(t, "hellx", 0, 1, (int32_t[]){258, 'x'}, 2));
    CHECK(encode_eq(t, "lhe", 0, 1, (int32_t[]){'l', 256}, 2));
    /* " world" is one pre-token: Ġw merges, the rest are bytes */
    CHECK(encode_eq(t, "hello world", 0, 1, (int32_t[]){259, 260, 'o', 'r', 'l', 'd'}, 6));
    /* "lll": the leftmost pair merges first */
    CHECK(encode_eq(t, "lll", 0, 1, (int32_t[]){257, 'l'}, 2));
    CHECK(encode_eq(t, "", 0, 1, NULL, 0));
    CHECK(roundtrip(t, "hello world \xe6\x97\xa5\xe6\x9c\xac\xf0\x9f\x98\x80 \t\n end"));
    /* invalid UTF-8 is an error naming the offset */
    int32_t *ids;
    size_t n;
    CHECK(pt_tokenizer_encode(t, "ab\xff", 3, 0, 1, &ids, &n, &err) == PT_EINVAL);
    CHECK(strstr(err.msg, "offset 2") != NULL);
    /* decoding an unknown id is an error */
    char *out;
    size_t len;
    CHECK(pt_tokenizer_decode(t, (int32_t[]){5, 99999}, 2, 0, &out, &len, &err) == PT_EINVAL);
    char tb[16];
    CHECK(pt_tokenizer_token_bytes(t, 260, tb, sizeof tb, &len) == PT_OK && len == 2 && !memcmp(tb, " w", 2));
    CHECK(pt_tokenizer_token_id(t, "hello") == 259);
    CHECK(pt_tokenizer_token_id(t, "nope") == -1);
    pt_tokenizer_free(t);
}

static void test_long_word_is_fast(void) {
    /* 200k identical letters: a quadratic merge loop would take minutes */
    char *j = byte_vocab_json(",\"aa\":256,\"aaaa\":257", "\"a a\",\"aa aa\"",
                              "{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"use_regex\":true}", "");
    pt_tokenizer *t;
    pt_err err;
    CHECK(pt_tokenizer_parse(j, strlen(j), "t.json", &t, &err) == PT_OK);
    free(j);
    size_t N = 200001;
    char *text = malloc(N + 1);
    memset(text, 'a', N);
    text[N] = 0;
    int32_t *ids;
    size_t n;
    double t0 = pt_now();
    CHECK(pt_tokenizer_encode(t, text, N, 0, 1, &ids, &n, &err) == PT_OK);
    double dt = pt_now() - t0;
    CHECK(n == 50001 && ids[0] == 257 && ids[n - 1] == 'a');
    printf("200k-letter word: %.3f s\n", dt);
    free(ids);
    free(text);
    pt_tokenizer_free(t);
}

static void test_added_tokens_and_bos(void) {
    char *j = byte_vocab_json(",\"<|bos|>\":256", "",
                              "{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"use_regex\":true}",
                              ",\"added_tokens\":[{\"id\":256,\"content\":\"<|bos|>\",\"special\":true},"
                              "{\"id\":257,\"content\":\"<|user|>\",\"special\":false,\"rstrip\":true},"
                              "{\"id\":258,\"content\":\"<|longer|>\",\"special\":true}],"
                              "\"post_processor\":{\"type\":\"TemplateProcessing\",\"single\":[{\"SpecialToken\":"
                              "{\"id\":\"<|bos|>\",\"type_id\":0}},{\"Sequence\":{\"id\":\"A\",\"type_id\":0}}],"
                              "\"special_tokens\":{\"<|bos|>\":{\"id\":\"<|bos|>\",\"ids\":[256],\"tokens\":[\"<|bos|>\"]}}}");
    pt_tokenizer *t;
    pt_err err;
    CHECK(pt_tokenizer_parse(j, strlen(j), "t.json", &t, &err) == PT_OK);
    free(j);
    CHECK(pt_tokenizer_vocab_size(t) == 259);
    CHECK(pt_tokenizer_bos(t) == 256);
    CHECK(encode_eq(t, "a", 1, 1, (int32_t[]){256, 'a'}, 2));
    CHECK(encode_eq(t, "a<|bos|>b", 0, 1, (int32_t[]){'a', 256, 'b'}, 3));
    /* parse_special off: special text is plain text, a non-special added token still matches */
    CHECK(encode_eq(t, "<|bos|>", 0, 0, (int32_t[]){'<', '|', 'b', 'o', 's', '|', '>'}, 7));
    CHECK(encode_eq(t, "x<|user|>   y", 0, 0, (int32_t[]){'x', 257, 'y'}, 3));
    CHECK(encode_eq(t, "<|longer|>", 0, 1, (int32_t[]){258}, 1));
    char *out;
    size_t len;
    CHECK(pt_tokenizer_decode(t, (int32_t[]){256, 'h', 'i', 258}, 4, 1, &out, &len, &err) == PT_OK);
    CHECK(len == 2 && !strcmp(out, "hi"));
    free(out);
    CHECK(pt_tokenizer_decode(t, (int32_t[]){256, 'h', 'i'}, 3, 0, &out, &len, &err) == PT_OK);
    CHECK(!strcmp(out, "<|bos|>hi"));
    free(out);
    CHECK(pt_tokenizer_is_special(t, 256) && !pt_tokenizer_is_special(t, 257) && !pt_tokenizer_is_special(t, 'a'));
    pt_tokenizer_free(t);
}

static void test_llama3_split_regex(void) {
    /* Llama-3's pattern: digits in groups of at most 3, case-insensitive contractions */
    char *j = byte_vocab_json("", "",
                              "{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"Split\",\"pattern\":{\"Regex\":"
                              "\"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\\\r\\\\n\\\\p{L}\\\\p{N}]?\\\\p{L}+|\\\\p{N}{1,3}| ?[^\\\\s\\\\p{L}\\\\p{N}]+[\\\\r\\\\n]*|\\\\s*[\\\\r\\\\n]+|\\\\s+(?!\\\\S)|\\\\s+\"},"
                              "\"behavior\":\"Isolated\",\"invert\":false},{\"type\":\"ByteLevel\",\"add_prefix_space\":false,"
                              "\"use_regex\":false}]}",
                              "");
    pt_tokenizer *t;
    pt_err err;
    int rc = pt_tokenizer_parse(j, strlen(j), "t.json", &t, &err);
    CHECK(rc == PT_OK);
    if (rc) fprintf(stderr, "%s\n", err.msg);
    free(j);
    if (rc) return;
    CHECK(roundtrip(t, "I'LL pay 1234567 for it's \xc3\xa9t\xc3\xa9\r\n\n  ok"));
    pt_tokenizer_free(t);
}

static void test_spm_byte_fallback_gguf(void) {
    /* SentencePiece-style: pieces with ▁, scores decide the merges, unknown chars as bytes */
    const char *tokens[256 + 8];
    char bytes[256][7];
    float scores[256 + 8];
    int32_t types[256 + 8];
    size_t n = 0;
    tokens[n] = "<unk>", types[n] = PT_TOKTYPE_UNKNOWN, scores[n++] = 0;
    tokens[n] = "<s>", types[n] = PT_TOKTYPE_CONTROL, scores[n++] = 0;
    tokens[n] = "</s>", types[n] = PT_TOKTYPE_CONTROL, scores[n++] = 0;
    for (int b = 0; b < 256; b++) {
        snprintf(bytes[b], sizeof bytes[b], "<0x%02X>", b);
        tokens[n] = bytes[b], types[n] = PT_TOKTYPE_BYTE, scores[n++] = 0;
    }
    const char *pieces[] = {"\xe2\x96\x81", "h", "i", "\xe2\x96\x81h", "\xe2\x96\x81hi"};
    float sc[] = {-1, -2, -3, -4, -5};
    for (int i = 0; i < 5; i++) tokens[n] = pieces[i], types[n] = PT_TOKTYPE_NORMAL, scores[n++] = sc[i];
    pt_vocab_spec spec = {.model = "llama", .tokens = tokens, .scores = scores, .types = types, .n_tokens = n,
                          .bos_id = 1, .eos_id = 2, .unk_id = 0, .add_bos = 1};
    pt_tokenizer *t;
    pt_err err;
    CHECK(pt_tokenizer_from_vocab(&spec, &t, &err) == PT_OK);
    int32_t sp = 259, h = 260, i_ = 261, sph = 262, sphi = 263;
    CHECK(encode_eq(t, "hi", 1, 1, (int32_t[]){1, sphi}, 2));
    CHECK(encode_eq(t, "hi hi", 0, 1, (int32_t[]){sphi, sphi}, 2));
    CHECK(encode_eq(t, "hix", 0, 1, (int32_t[]){sphi, 3 + 'x'}, 2));
    CHECK(encode_eq(t, "ih", 0, 1, (int32_t[]){sp, i_, h}, 3));
    CHECK(encode_eq(t, "<s>hi", 0, 1, (int32_t[]){1, h, i_}, 3));
    CHECK(roundtrip(t, "hi \xc3\xa9\xf0\x9f\x98\x80 x"));
    char *out;
    size_t len;
    CHECK(pt_tokenizer_decode(t, (int32_t[]){1, sphi, sph, 3 + 0xC3, 3 + 0xA9}, 5, 1, &out, &len, &err) == PT_OK);
    CHECK(!strcmp(out, "hi h\xc3\xa9"));
    free(out);
    CHECK(pt_tokenizer_eos(t) == 2);
    pt_tokenizer_free(t);
    spec.model = "wordpiece";
    CHECK(pt_tokenizer_from_vocab(&spec, &t, &err) == PT_EUNSUPPORTED);
}

static void expect_error(const char *json, int code, const char *needle) {
    pt_tokenizer *t = NULL;
    pt_err err;
    pt_err_clear(&err);
    int rc = pt_tokenizer_parse(json, strlen(json), "bad.json", &t, &err);
    CHECK(rc == code);
    CHECK(t == NULL);
    if (!strstr(err.msg, needle)) fprintf(stderr, "error \"%s\" lacks \"%s\"\n", err.msg, needle);
    CHECK(strstr(err.msg, needle) != NULL);
    CHECK(strstr(err.msg, "bad.json") != NULL);
    pt_tokenizer_free(t);
}

static void test_malformed_files_name_the_path(void) {
    expect_error("[1,2]", PT_EFORMAT, "$");
    expect_error("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":\"x\"},\"merges\":[]}}", PT_EFORMAT, "model.vocab[\"a\"]");
    expect_error("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1},\"merges\":[\"a c\"]}}", PT_EFORMAT, "model.merges[0]");
    expect_error("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1},\"merges\":[\"a b\"]}}", PT_EFORMAT, "model.merges[0]");
    expect_error("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":0},\"merges\":[]}}", PT_EFORMAT, "given twice");
    expect_error("{\"model\":{\"type\":\"WordPiece\",\"vocab\":{}}}", PT_EUNSUPPORTED, "model.type");
    expect_error("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]},\"pre_tokenizer\":{\"type\":\"Split\","
                 "\"pattern\":{\"Regex\":\"(\"},\"behavior\":\"Isolated\"}}",
                 PT_EFORMAT, "pre_tokenizer");
    expect_error("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]},\"normalizer\":{\"type\":\"Sequence\","
                 "\"normalizers\":[{\"type\":\"BertNormalizer\"}]}}",
                 PT_EUNSUPPORTED, "normalizer.normalizers[0]");
    expect_error("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]},\"normalizer\":{\"type\":\"Replace\","
                 "\"pattern\":{\"Regex\":\"(\"},\"content\":\"x\"}}",
                 PT_EFORMAT, "normalizer");
    expect_error("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]},\"normalizer\":{\"type\":\"Strip\","
                 "\"strip_left\":1}}",
                 PT_EFORMAT, "strip_left");
    expect_error("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]},\"added_tokens\":[{\"id\":-1,"
                 "\"content\":\"x\"}]}",
                 PT_EFORMAT, "added_tokens[0]");
    expect_error("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]},\"post_processor\":{\"type\":"
                 "\"TemplateProcessing\",\"single\":[{\"SpecialToken\":{\"id\":\"<s>\"}}],\"special_tokens\":{}}}",
                 PT_EFORMAT, "post_processor.single[0]");
    expect_error("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":99999999},\"merges\":[]}}", PT_EFORMAT, "out of range");
    expect_error("{\"tokenizer.ggml.model\":\"llama\",\"tokenizer.ggml.tokens\":[\"a\",3]}", PT_EFORMAT,
                 "tokenizer.ggml.tokens[1]");
    expect_error("{\"model\":", PT_EFORMAT, "bad.json:1");
}

int main(void) {
    test_byte_level_merges_by_rank();
    test_long_word_is_fast();
    test_added_tokens_and_bos();
    test_llama3_split_regex();
    test_spm_byte_fallback_gguf();
    test_malformed_files_name_the_path();
    return test_summary("tokenizer");
}
