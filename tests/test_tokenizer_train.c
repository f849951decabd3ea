/* BPE trainer tests: merges on tiny corpora worked out by hand (counts, tie-break, overlapping
 * pairs, id reuse), then a tokenizer trained on GPL-3 that the loader reads: exact vocabulary
 * size, decode(encode(x)) == x on unseen text, determinism, specials; and the errors. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/fileio.h"
#include "engine/tokenizer.h"
#include "engine/tokenizer_train.h"
#include "test.h"

static const char *const endoftext[] = {"<|endoftext|>"};

/* Trains on text; returns the trainer (NULL on failure, message printed). */
static pt_bpe_trainer *train(const char *text, size_t vocab, uint64_t min_freq, const char *pattern) {
    pt_bpe_train_opts o = {.vocab_size = vocab, .specials = endoftext, .n_specials = 1, .min_frequency = min_freq,
                           .pattern = pattern};
    pt_bpe_trainer *tr;
    pt_err err;
    if (pt_bpe_trainer_new(&o, &tr, &err)) {
        fprintf(stderr, "new: %s\n", err.msg);
        return NULL;
    }
    if (pt_bpe_trainer_feed(tr, text, strlen(text), "text", &err) || pt_bpe_trainer_run(tr, &err)) {
        fprintf(stderr, "train: %s\n", err.msg);
        pt_bpe_trainer_free(tr);
        return NULL;
    }
    return tr;
}

/* 1 if the trainer's merges are exactly want[0..n). */
static int merges_are(const pt_bpe_trainer *tr, const char *const *want, size_t n) {
    int ok = tr && pt_bpe_trainer_n_merges(tr) == n;
    for (size_t i = 0; ok && i < n; i++) ok = !strcmp(pt_bpe_trainer_merge(tr, i), want[i]);
    if (!ok && tr) {
        fprintf(stderr, "merges:");
        for (size_t i = 0; i < pt_bpe_trainer_n_merges(tr); i++) fprintf(stderr, " [%s]", pt_bpe_trainer_merge(tr, i));
        fprintf(stderr, "\n");
    }
    return ok;
}

static void test_repeated_pair_merges_into_longer_tokens(void) {
    /* one word "abababab": (a,b)=4 beats (b,a)=3; then "ab ab" x3; then "abab abab" */
    pt_bpe_trainer *tr = train("abababab", 256 + 3 + 1, 1, NULL);
    static const char *const want[] = {"a b", "ab ab", "abab abab"};
    CHECK(merges_are(tr, want, 3));
    CHECK(tr && pt_bpe_trainer_vocab_size(tr) == 260);
    pt_bpe_trainer_free(tr);
}

static void test_highest_count_first_ties_by_smallest_ids(void) {
    /* words "the", " the" x2, " cat": (t,h)=3 and (h,e)=3 tie; (h,e) = (104,101) is smaller than
     * (116,104). Then "t he"=3, then "Ġ the"=2 (the space is byte 32, spelled Ġ). */
    pt_bpe_trainer *tr = train("the the the cat", 256 + 3 + 1, 1, NULL);
    static const char *const want[] = {"h e", "t he", "\xc4\xa0 the"};
    CHECK(merges_are(tr, want, 3));
    pt_bpe_trainer_free(tr);
    /* all pairs once: (32,97) < (97,98) < (98,97) */
    tr = train("ba ab", 256 + 1 + 1, 1, NULL);
    static const char *const want2[] = {"\xc4\xa0 a"};
    CHECK(merges_are(tr, want2, 1));
    pt_bpe_trainer_free(tr);
}

static void test_overlapping_pair_merges_left_to_right(void) {
    /* "aaa": (a,a) counted twice, merged once from the left → "aa a", then (aa,a) */
    pt_bpe_trainer *tr = train("aaa", 256 + 2 + 1, 1, NULL);
    static const char *const want[] = {"a a", "aa a"};
    CHECK(merges_are(tr, want, 2));
    pt_bpe_trainer_free(tr);
}

static void test_min_frequency_stops_training(void) {
    pt_bpe_trainer *tr = train("the the the cat", 300, 3, NULL); /* only (h,e), (t,he) reach 3 */
    static const char *const want[] = {"h e", "t he"};
    CHECK(merges_are(tr, want, 2));
    CHECK(tr && pt_bpe_trainer_vocab_size(tr) == 256 + 2 + 1);
    pt_bpe_trainer_free(tr);
}

static void test_specials_are_not_learned_from(void) {
    /* "<|endoftext|>" in the text is cut out: no pair of its characters is counted */
    pt_bpe_trainer *tr = train("<|endoftext|><|endoftext|>ab<|endoftext|>", 256 + 5 + 1, 1, NULL);
    static const char *const want[] = {"a b"};
    CHECK(merges_are(tr, want, 1));
    pt_bpe_trainer_free(tr);
}

static char *read_text(const char *path, size_t *len) {
    char *s = NULL;
    pt_err err;
    if (pt_read_file(path, 1 << 24, &s, len, &err)) fprintf(stderr, "%s\n", err.msg);
    return s;
}

static int roundtrip(const pt_tokenizer *t, const char *text) {
    int32_t *ids;
    size_t n, len;
    char *out;
    pt_err err;
    if (pt_tokenizer_encode(t, text, strlen(text), 0, 1, &ids, &n, &err)) {
        fprintf(stderr, "encode: %s\n", err.msg);
        return 0;
    }
    int ok = !pt_tokenizer_decode(t, ids, n, 0, &out, &len, &err) && len == strlen(text) && !memcmp(out, text, len);
    if (!ok) fprintf(stderr, "round trip failed: %s\n", text);
    else free(out);
    free(ids);
    return ok;
}

static void test_trained_on_gpl3_loads_and_round_trips(void) {
    size_t len;
    char *text = read_text("/usr/share/common-licenses/GPL-3", &len);
    CHECK(text != NULL);
    if (!text) return;
    static const char *const sp[] = {"<|endoftext|>", "<|im_start|>", "<|im_end|>"};
    char *json[2] = {NULL, NULL}, *cfg = NULL;
    size_t jlen[2] = {0, 0}, clen = 0;
    for (int run = 0; run < 2; run++) {
        pt_bpe_train_opts o = {.vocab_size = 1000, .specials = sp, .n_specials = 3, .min_frequency = 2};
        pt_bpe_trainer *tr;
        pt_err err;
        int rc = pt_bpe_trainer_new(&o, &tr, &err);
        CHECK(rc == PT_OK);
        if (rc) break;
        CHECK(pt_bpe_trainer_feed(tr, text, len, "GPL-3", &err) == PT_OK);
        CHECK(pt_bpe_trainer_run(tr, &err) == PT_OK);
        CHECK(pt_bpe_trainer_vocab_size(tr) == 1000);
        CHECK(pt_bpe_trainer_tokenizer_json(tr, &json[run], &jlen[run], &err) == PT_OK);
        if (!run) CHECK(pt_bpe_trainer_config_json(tr, 1, &cfg, &clen, &err) == PT_OK);
        pt_bpe_trainer_free(tr);
    }
    free(text);
    CHECK(json[0] && json[1] && jlen[0] == jlen[1] && !memcmp(json[0], json[1], jlen[0])); /* deterministic */

    char dir[] = "/tmp/parity-tokt-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char *tj = pt_path_join(dir, "tokenizer.json"), *tc = pt_path_join(dir, "tokenizer_config.json");
    pt_err err;
    CHECK(json[0] && pt_write_atomic(tj, json[0], jlen[0], 0644, &err) == PT_OK);
    CHECK(cfg && pt_write_atomic(tc, cfg, clen, 0644, &err) == PT_OK);
    pt_tokenizer *t = NULL;
    int rc = pt_tokenizer_load(dir, &t, &err);
    if (rc) fprintf(stderr, "load: %s\n", err.msg);
    CHECK(rc == PT_OK);
    if (!rc) {
        CHECK(pt_tokenizer_vocab_size(t) == 1000);
        CHECK(pt_tokenizer_token_id(t, "<|endoftext|>") == 997);
        CHECK(pt_tokenizer_token_id(t, "<|im_end|>") == 999);
        CHECK(pt_tokenizer_eos(t) == 999);
        CHECK(pt_tokenizer_chat_template(t) && strstr(pt_tokenizer_chat_template(t), "<|im_start|>"));
        CHECK(pt_tokenizer_is_special(t, 998));
        CHECK(pt_tokenizer_token_id(t, "\xc4\xa0the") >= 256); /* " the" was learned */
        static const char *const texts[] = {
            "This program is free software: you can redistribute it and/or modify it.",
            "Unseen words: xylophone quagmire zeitgeist; numbers 1234567890 and 3.14159.",
            "Emoji 🤖👩‍👩‍👧‍👦🏳️‍🌈 and CJK 你好，世界 and Arabic مرحبا بالعالم and Ελληνικά.",
            "  leading spaces, tabs\tand\r\nCRLF lines\n\n\nand trailing   ",
            "combining: e\xcc\x81 n\xcc\x83; a 3-byte char \xe2\x82\xac and 4-byte \xf0\x9f\x98\x80",
            "<|im_start|>user\nhello<|im_end|>\n",
            "",
        };
        for (size_t i = 0; i < sizeof texts / sizeof *texts; i++) CHECK(roundtrip(t, texts[i]));
        /* special-token text becomes the special token */
        int32_t *ids;
        size_t n;
        CHECK(pt_tokenizer_encode(t, "<|im_end|>", 10, 0, 1, &ids, &n, &err) == PT_OK && n == 1 && ids[0] == 999);
        free(ids);
        pt_tokenizer_free(t);
    }
    unlink(tj);
    unlink(tc);
    rmdir(dir);
    free(tj);
    free(tc);
    free(json[0]);
    free(json[1]);
    free(cfg);
}

static void test_llama3_pattern_loads_and_round_trips(void) {
    pt_bpe_trainer *tr = train("Numbers 1234567 split in threes; I'LL say it's fine.\n\n  Yes. 1234 1234", 300, 1, "llama3");
    CHECK(tr != NULL);
    if (!tr) return;
    char *json;
    size_t len;
    pt_err err;
    CHECK(pt_bpe_trainer_tokenizer_json(tr, &json, &len, &err) == PT_OK);
    pt_tokenizer *t;
    int rc = pt_tokenizer_parse(json, len, "llama3.json", &t, &err);
    if (rc) fprintf(stderr, "parse: %s\n", err.msg);
    CHECK(rc == PT_OK);
    if (!rc) {
        CHECK(pt_tokenizer_vocab_size(t) == pt_bpe_trainer_vocab_size(tr));
        CHECK(pt_tokenizer_token_id(t, "1234") < 0); /* \p{N}{1,3}: digits never merge past three */
        CHECK(roundtrip(t, "Numbers 98765432 😀 and I'LL, you'VE\r\n"));
        pt_tokenizer_free(t);
    }
    free(json);
    pt_bpe_trainer_free(tr);
}

static void test_bad_options_and_input_are_errors(void) {
    pt_bpe_trainer *tr = NULL;
    pt_err err;
    pt_bpe_train_opts o = {.vocab_size = 256, .specials = endoftext, .n_specials = 1};
    CHECK(pt_bpe_trainer_new(&o, &tr, &err) == PT_EINVAL && strstr(err.msg, "below 256") && !tr);
    o.vocab_size = 257;
    o.pattern = "bert";
    CHECK(pt_bpe_trainer_new(&o, &tr, &err) == PT_EINVAL && strstr(err.msg, "bert"));
    o.pattern = NULL;
    static const char *const dup[] = {"<a>", "<a>"};
    o.specials = dup, o.n_specials = 2, o.vocab_size = 300;
    CHECK(pt_bpe_trainer_new(&o, &tr, &err) == PT_EINVAL && strstr(err.msg, "twice"));
    static const char *const empty[] = {""};
    o.specials = empty, o.n_specials = 1;
    CHECK(pt_bpe_trainer_new(&o, &tr, &err) == PT_EINVAL && strstr(err.msg, "empty"));

    o.specials = endoftext;
    CHECK(pt_bpe_trainer_new(&o, &tr, &err) == PT_OK);
    CHECK(pt_bpe_trainer_run(tr, &err) == PT_EINVAL && strstr(err.msg, "no training text")); /* nothing fed */
    pt_bpe_trainer_free(tr);

    CHECK(pt_bpe_trainer_new(&o, &tr, &err) == PT_OK);
    CHECK(pt_bpe_trainer_feed(tr, "ok \xff bad", 8, "in.txt", &err) == PT_EFORMAT && strstr(err.msg, "in.txt: offset 3"));
    CHECK(pt_bpe_trainer_feed(tr, "<|endoftext|>", 13, "in.txt", &err) == PT_OK);
    CHECK(pt_bpe_trainer_run(tr, &err) == PT_EINVAL); /* only a special token */
    char *json;
    size_t len;
    CHECK(pt_bpe_trainer_config_json(tr, 1, &json, &len, &err) == PT_EINVAL && strstr(err.msg, "<|im_start|>"));
    pt_bpe_trainer_free(tr);
    pt_bpe_trainer_free(NULL);
}

int main(void) {
    test_repeated_pair_merges_into_longer_tokens();
    test_highest_count_first_ties_by_smallest_ids();
    test_overlapping_pair_merges_left_to_right();
    test_min_frequency_stops_training();
    test_specials_are_not_learned_from();
    test_trained_on_gpl3_loads_and_round_trips();
    test_llama3_pattern_loads_and_round_trips();
    test_bad_options_and_input_are_errors();
    return test_summary("test_tokenizer_train");
}
