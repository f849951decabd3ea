/* parity data — tokenizes text or JSONL into the token files `parity train` reads. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "common/fileio.h"
#include "common/json.h"
#include "common/util.h"
#include "engine/tokenizer.h"
#include "train/tokfile.h"
#include "train/train.h"

const char cmd_data_summary[] = "tokenize text or JSONL into a train/validation token dataset";

static void usage(void) {
    printf("usage: parity data --tokenizer TOKENIZER.json --input FILE... --out DIR\n"
           "                   [--jsonl [--field text]] [--val-fraction 0.01] [--seed S]\n"
           "                   [--on-error skip|stop]\n\n"
           "Splits the input into documents (plain text: paragraphs separated by blank lines;\n"
           "JSONL: one JSON object per line, the string FIELD), tokenizes each, ends it with the\n"
           "tokenizer's EOS token (when it has one), assigns each document to validation with\n"
           "probability VAL_FRACTION (deterministic for a seed; at least one when there are two or\n"
           "more documents), and writes DIR/train.bin, DIR/val.bin (see docs/train.md: a 32-byte\n"
           "header then uint32 ids), DIR/tokenizer.json and DIR/meta.json.\n"
           "A malformed JSONL line names the file and the line; --on-error skip counts and skips\n"
           "such lines, stop (the default) ends the job.\n\n"
           "example:\n"
           "  parity data --tokenizer models/tiny/tokenizer.json --input corpus.txt --out data/tiny\n"
           "  parity data --tokenizer tok.json --input a.jsonl b.jsonl --jsonl --field text --out data/x\n");
}

typedef struct ids {
    uint32_t *v;
    size_t n, cap;
} ids;

static int push(ids *a, const int32_t *x, size_t n) {
    if (a->n + n > a->cap) {
        size_t nc = a->cap ? a->cap : 4096;
        while (nc < a->n + n) nc *= 2;
        uint32_t *p = realloc(a->v, nc * sizeof *p);
        if (!p) return -1;
        a->v = p, a->cap = nc;
    }
    for (size_t i = 0; i < n; i++) a->v[a->n++] = (uint32_t)x[i];
    return 0;
}

typedef struct job {
    const pt_tokenizer *tok;
    int32_t eos;
    double val_fraction;
    pt_rng rng;
    ids train, val;
    size_t docs, val_docs, skipped;
    ids last;  /* the last document, in case validation would otherwise be empty */
    int last_in_train;
} job;

static int add_doc(job *j, const char *text, size_t len, const char *what, pt_err *err) {
    int32_t *x = NULL;
    size_t n = 0;
    int rc = pt_tokenizer_encode(j->tok, text, len, 0, 0, &x, &n, err);
    if (rc) {
        pt_err_prefix(err, "%s", what);
        return rc;
    }
    if (!n) {
        free(x);
        return PT_OK;
    }
    int to_val = j->val_fraction > 0 && pt_rng_uniform(&j->rng) < j->val_fraction;
    ids *dst = to_val ? &j->val : &j->train;
    j->last.n = 0;
    if (push(dst, x, n) || (j->eos >= 0 && push(dst, &j->eos, 1)) || push(&j->last, x, n) ||
        (j->eos >= 0 && push(&j->last, &j->eos, 1))) {
        free(x);
        return pt_errf(err, PT_ENOMEM, "out of memory");
    }
    j->last_in_train = !to_val;
    j->docs++, j->val_docs += to_val;
    free(x);
    return PT_OK;
}

/* Plain text: paragraphs (runs of non-blank lines) are documents. */
static int do_text(job *j, const char *path, const char *s, size_t len, pt_err *err) {
    size_t i = 0, line = 0, pb = 0, pe = 0, pline = 0;
    int in_par = 0;
    while (i <= len) {
        const char *nl = i < len ? memchr(s + i, '\n', len - i) : NULL;
        size_t e = nl ? (size_t)(nl - s) : len;
        line++;
        int blank = 1;
        for (size_t k = i; k < e; k++)
            if (s[k] != ' ' && s[k] != '\t' && s[k] != '\r') blank = 0;
        if (!blank && !in_par) in_par = 1, pb = i, pline = line;
        if (!blank) pe = e;
        if ((blank || !nl) && in_par) {
            char what[1200];
            snprintf(what, sizeof what, "%s:%zu", path, pline);
            int rc = add_doc(j, s + pb, pe - pb, what, err);
            if (rc) return rc;
            in_par = 0;
        }
        if (!nl) break;
        i = e + 1;
    }
    return PT_OK;
}

static int do_jsonl(job *j, const char *path, const char *s, size_t len, const char *field, int skip, pt_err *err) {
    size_t i = 0, line = 0;
    while (i < len) {
        const char *nl = memchr(s + i, '\n', len - i);
        size_t e = nl ? (size_t)(nl - s) : len, b = i;
        i = nl ? e + 1 : len;
        line++;
        size_t k = b;
        while (k < e && (s[k] == ' ' || s[k] == '\t' || s[k] == '\r')) k++;
        if (k == e) continue; /* blank line */
        char what[1200];
        snprintf(what, sizeof what, "%s:%zu", path, line);
        pt_err le = {0};
        json_t *o = pt_json_parse(s + b, e - b, 32, what, &le);
        int bad = 0;
        if (!o) bad = 1;
        else if (!json_is_object(o)) bad = 1, pt_errf(&le, PT_EFORMAT, "%s: expected a JSON object", what);
        else if (!json_is_string(json_object_get(o, field)))
            bad = 1, pt_errf(&le, PT_EFORMAT, "%s: no string field '%s'", what, field);
        if (bad) {
            json_decref(o);
            if (!skip) return pt_errf(err, le.code ? le.code : PT_EFORMAT, "%s", le.msg);
            if (j->skipped < 5) fprintf(stderr, "parity data: skipped %s\n", le.msg);
            j->skipped++;
            continue;
        }
        json_t *f = json_object_get(o, field);
        int rc = add_doc(j, json_string_value(f), json_string_length(f), what, err);
        json_decref(o);
        if (rc) return rc;
    }
    return PT_OK;
}

int cmd_data(int argc, char **argv) {
    if (cli_wants_help(argc, argv)) {
        usage();
        return 0;
    }
    const char *tokp = NULL, *out = NULL, *field = "text";
    const char **inputs = calloc((size_t)argc, sizeof *inputs);
    size_t n_in = 0;
    int jsonl = 0, skip = 0;
    double valf = 0.01;
    uint64_t seed = 1;
    if (!inputs) return 1;
    int urc = 0;
    for (int i = 1; i < argc && !urc; i++) {
        const char *o = argv[i];
        if (!strcmp(o, "--jsonl")) {
            jsonl = 1;
            continue;
        }
        if (!strcmp(o, "--input")) {
            while (i + 1 < argc && strncmp(argv[i + 1], "--", 2)) inputs[n_in++] = argv[++i];
            continue;
        }
        if (i + 1 >= argc) {
            urc = cli_usage_error("data", "%s needs a value", o);
            break;
        }
        const char *v = argv[++i];
        if (!strcmp(o, "--tokenizer")) tokp = v;
        else if (!strcmp(o, "--out")) out = v;
        else if (!strcmp(o, "--field")) field = v;
        else if (!strcmp(o, "--val-fraction")) {
            if (pt_parse_double(v, &valf) || !(valf >= 0 && valf < 1))
                urc = cli_usage_error("data", "--val-fraction must be a number in [0, 1)");
        } else if (!strcmp(o, "--seed")) {
            if (pt_parse_u64(v, &seed)) urc = cli_usage_error("data", "--seed must be a non-negative integer");
        } else if (!strcmp(o, "--on-error")) {
            if (!strcmp(v, "skip")) skip = 1;
            else if (!strcmp(v, "stop")) skip = 0;
            else urc = cli_usage_error("data", "--on-error is skip or stop");
        } else urc = cli_usage_error("data", "unknown option '%s'", o);
    }
    if (!urc && (!tokp || !out || !n_in)) urc = cli_usage_error("data", "--tokenizer, --input and --out are required");
    if (urc) {
        free(inputs);
        return urc;
    }
    pt_err err = {0};
    pt_tokenizer *tok = NULL;
    job j = {0};
    int rc = pt_tokenizer_load(tokp, &tok, &err);
    if (!rc) {
        j.tok = tok, j.eos = pt_tokenizer_eos(tok), j.val_fraction = valf;
        pt_rng_seed(&j.rng, seed);
    }
    for (size_t i = 0; !rc && i < n_in; i++) {
        char *s;
        size_t len;
        if ((rc = pt_read_file(inputs[i], (size_t)4 << 30, &s, &len, &err))) break;
        rc = jsonl ? do_jsonl(&j, inputs[i], s, len, field, skip, &err) : do_text(&j, inputs[i], s, len, &err);
        free(s);
    }
    if (!rc && !j.train.n && !j.val.n) rc = pt_errf(&err, PT_EINVAL, "the input holds no text to tokenize");
    /* Validation asked for but no document drawn: move the last one over. */
    if (!rc && valf > 0 && !j.val_docs && j.docs >= 2 && j.last_in_train) {
        j.train.n -= j.last.n;
        j.val.n = 0;
        if (push(&j.val, (const int32_t *)(const void *)j.last.v, j.last.n)) rc = pt_errf(&err, PT_ENOMEM, "out of memory");
        j.val_docs = 1;
    }
    uint32_t V = tok ? (uint32_t)pt_tokenizer_vocab_size(tok) : 0;
    char *p = NULL;
    if (!rc) rc = pt_mkdirs(out, 0, &err);
    if (!rc) {
        p = pt_path_join(out, "train.bin");
        rc = pt_tokfile_write(p, j.train.v, j.train.n, V, &err);
        free(p);
    }
    if (!rc) {
        p = pt_path_join(out, "val.bin");
        rc = pt_tokfile_write(p, j.val.v, j.val.n, V, &err);
        free(p);
    }
    if (!rc) {
        char *tk;
        size_t tl;
        /* the tokenizer file itself (a model directory holds it as tokenizer.json) */
        char *src = NULL;
        if (pt_read_file(tokp, (size_t)1 << 30, &tk, &tl, &err) == PT_OK) src = tk;
        else {
            char *q = pt_path_join(tokp, "tokenizer.json");
            pt_err_clear(&err);
            rc = q ? pt_read_file(q, (size_t)1 << 30, &tk, &tl, &err) : pt_errf(&err, PT_ENOMEM, "out of memory");
            free(q);
            if (!rc) src = tk;
        }
        if (!rc) {
            p = pt_path_join(out, "tokenizer.json");
            rc = pt_write_atomic(p, src, tl, 0644, &err);
            free(p);
            free(src);
        }
    }
    if (!rc) {
        char meta[512];
        int n = snprintf(meta, sizeof meta,
                         "{\"documents\": %zu, \"val_documents\": %zu, \"skipped_lines\": %zu, \"train_tokens\": %zu, "
                         "\"val_tokens\": %zu, \"vocab_size\": %u, \"seed\": %llu, \"val_fraction\": %g}\n",
                         j.docs, j.val_docs, j.skipped, j.train.n, j.val.n, V, (unsigned long long)seed, valf);
        p = pt_path_join(out, "meta.json");
        rc = pt_write_atomic(p, meta, (size_t)n, 0644, &err);
        free(p);
        if (!rc) printf("%s", meta);
    }
    free(j.train.v), free(j.val.v), free(j.last.v);
    pt_tokenizer_free(tok);
    free(inputs);
    return rc ? cli_fail(&err) : 0;
}
