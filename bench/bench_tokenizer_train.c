/* bench_tokenizer_train — byte-level BPE training time (read + pre-tokenize + merges + writing
 * the tokenizer.json text), as a ratio against SentencePiece's BPE trainer (C++, through
 * python3-sentencepiece) run in the same process tree on the same file and vocabulary size.
 * The two are not the same algorithm (SentencePiece works on characters of whitespace-split
 * sentences, parity on bytes of regex pieces): the figure says "a production BPE trainer
 * takes this long for this job", not "the same code, faster".
 * Usage: bench_tokenizer_train [FILE [VOCAB=8192] [RUNS=3]]
 * Without FILE: the KJV text from Debian's `bible` program (package bible-kjv), 4.3 MB. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/fileio.h"
#include "common/util.h"
#include "engine/tokenizer_train.h"

int main(int argc, char **argv) {
    if (argc > 1 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        printf("usage: bench_tokenizer_train [FILE [VOCAB=8192] [RUNS=3]]  (default FILE: the KJV bible via `bible`)\n");
        return 0;
    }
    char kjv[] = "/tmp/parity-bench-kjv-XXXXXX";
    const char *path = argc > 1 ? argv[1] : NULL;
    if (!path) {
        int fd = mkstemp(kjv);
        char cmd[256];
        snprintf(cmd, sizeof cmd, "bible Gen1:1-Rev22:21 > %s", kjv);
        if (fd < 0 || system(cmd) != 0) {
            fprintf(stderr, "bench_tokenizer_train: no FILE given and `bible` (Debian bible-kjv) failed\n");
            if (fd >= 0) unlink(kjv);
            return 1;
        }
        close(fd);
        path = kjv;
    }
    size_t vocab = argc > 2 ? (size_t)atol(argv[2]) : 8192;
    int runs = argc > 3 ? atoi(argv[3]) : 3;
    static const char *const sp[] = {"<|endoftext|>"};
    double best = 1e30, best_feed = 0, best_run = 0;
    size_t len = 0, merges = 0, words = 0;
    for (int r = 0; r < runs; r++) {
        pt_err err;
        char *text = NULL, *json = NULL;
        size_t jlen;
        pt_bpe_train_opts o = {.vocab_size = vocab, .specials = sp, .n_specials = 1, .min_frequency = 2};
        pt_bpe_trainer *tr = NULL;
        double t0 = pt_now();
        if (pt_read_file(path, (size_t)1 << 30, &text, &len, &err) || pt_bpe_trainer_new(&o, &tr, &err) ||
            pt_bpe_trainer_feed(tr, text, len, path, &err)) {
            fprintf(stderr, "%s\n", err.msg);
            return 1;
        }
        double t1 = pt_now();
        if (pt_bpe_trainer_run(tr, &err) || pt_bpe_trainer_tokenizer_json(tr, &json, &jlen, &err)) {
            fprintf(stderr, "%s\n", err.msg);
            return 1;
        }
        double t2 = pt_now();
        if (t2 - t0 < best) best = t2 - t0, best_feed = t1 - t0, best_run = t2 - t1;
        merges = pt_bpe_trainer_n_merges(tr);
        words = pt_bpe_trainer_n_words(tr);
        free(text);
        free(json);
        pt_bpe_trainer_free(tr);
    }
    char cmd[2048];
    const char *src = getenv("PARITY_SRC") ? getenv("PARITY_SRC") : ".";
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s/bench/spm_train_ref.py '%s' %zu %d 2", src, path, vocab, runs < 2 ? runs : 2);
    FILE *f = popen(cmd, "r");
    double ref = 0;
    if (!f || fscanf(f, "%lf", &ref) != 1) ref = 0;
    if (f) pclose(f);
    printf("corpus %s: %zu bytes, %zu distinct words, vocab %zu, %zu merges\n", path, len, words, vocab, merges);
    printf("parity train: %.3f s (read + pre-tokenize %.3f s, merges + JSON %.3f s), best of %d\n", best, best_feed,
           best_run, runs);
    if (ref > 0) printf("sentencepiece bpe (2 threads): %.3f s  ->  parity is %.1fx faster\n", ref, ref / best);
    else printf("sentencepiece reference not available (python3-sentencepiece)\n");
    if (path == kjv) unlink(kjv);
    return 0;
}
