/* parity tokenizer — encode and decode text with a model's tokenizer. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/cli_chat.h"
#include "common/buf.h"
#include "common/json.h"
#include "common/fileio.h"
#include "common/util.h"
#include "engine/tokenizer.h"
#include "engine/tokenizer_train.h"

const char cmd_tokenizer_summary[] = "encode text to token ids, decode ids to text, train a byte-level BPE tokenizer";

static void usage(FILE *f) {
    fprintf(f,
            "usage: parity tokenizer encode -m MODEL [--text TEXT] [--json] [--no-add-special] [--no-parse-special]\n"
            "       parity tokenizer decode -m MODEL [--ids 1,2,3] [--skip-special]\n"
            "       parity tokenizer encode|decode -m MODEL --batch < JSON-ARRAY\n"
            "       parity tokenizer info -m MODEL\n"
            "       parity tokenizer chat-render (-m MODEL [--tokens] | --template FILE) [--now SECONDS] < JSON-ARRAY\n"
            "       parity tokenizer train --vocab-size N [--special TOKEN]... [--min-frequency F]\n"
            "                              [--pattern gpt2|llama3] [--chat] -o tokenizer.json FILE...\n"
            "\n"
            "MODEL is a model directory holding tokenizer.json, a tokenizer.json file, or a JSON file of\n"
            "GGUF tokenizer metadata (the tokenizer.ggml.* keys). tokenizer_config.json beside it is read\n"
            "for the chat template and bos/eos tokens.\n"
            "\n"
            "encode   reads TEXT (or all of stdin) and prints the ids separated by spaces; with --json,\n"
            "         {\"ids\": [...], \"tokens\": [...]} (tokens as the vocabulary spells them).\n"
            "         By default the post-processor's tokens (e.g. BOS) are added and special-token text\n"
            "         such as <|endoftext|> becomes that token; the --no-* options turn that off.\n"
            "decode   prints the text of the ids (from --ids, or whitespace/comma separated on stdin),\n"
            "         exactly, without a trailing newline. --skip-special drops control tokens.\n"
            "--batch  encode: stdin is a JSON array of strings, prints a JSON array of id arrays;\n"
            "         decode: stdin is a JSON array of id arrays, prints a JSON array of strings\n"
            "         (null where the bytes are not valid UTF-8).\n"
            "info     prints the vocabulary size, bos/eos ids and whether a chat template was found.\n"
            "chat-render  renders the model's chat template (tokenizer_config.json's chat_template, Jinja)\n"
            "         for each context of the JSON array on stdin ({\"messages\": [...],\n"
            "         \"add_generation_prompt\": true, \"tools\": [...], other variables}), with the model's\n"
            "         special tokens (bos_token, eos_token, ...) added as transformers.js adds them; prints\n"
            "         a JSON array of {\"text\": ...} or {\"error\": ...}. --template FILE renders a template\n"
            "         file with the contexts as they are. --now: strftime_now's time (seconds, UTC).\n"
            "         --tokens adds the tokens serving and fine-tuning use for the messages: \"ids\",\n"
            "         \"reply\" (1 for the tokens a fine-tuned model learns) and \"replies\" (their text).\n"
            "train    learns a byte-level BPE tokenizer from the UTF-8 text FILEs ('-' is stdin) and writes\n"
            "         tokenizer.json (Hugging Face format) and tokenizer_config.json beside it.\n"
            "         --vocab-size N     entries in the vocabulary, specials included (>= 256 + specials)\n"
            "         --special TOKEN    a special token (repeatable; default <|endoftext|>), ids after\n"
            "                            the learned tokens, never split by the pre-tokenizer\n"
            "         --min-frequency F  stop when no pair occurs F times (default 2)\n"
            "         --pattern P        pre-tokenizer split regex: gpt2 (default) or llama3\n"
            "         --chat             add <|im_start|>/<|im_end|> and a ChatML chat_template\n"
            "\n"
            "examples:\n"
            "  parity tokenizer encode -m models/gpt2 --text 'Hello world'\n"
            "  echo -n 'Hello world' | parity tokenizer encode -m models/gpt2/tokenizer.json --json\n"
            "  parity tokenizer decode -m models/gpt2 --ids 15496,995\n"
            "  parity tokenizer train --vocab-size 4096 --chat -o /tmp/tok/tokenizer.json /usr/share/common-licenses/GPL-3\n");
}

static int read_stdin(char **out, size_t *len) {
    pt_buf b;
    pt_buf_init(&b, (size_t)256 << 20);
    char chunk[65536];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, stdin)) > 0)
        if (pt_buf_append(&b, chunk, n)) {
            pt_buf_free(&b);
            return -1;
        }
    if (pt_buf_append(&b, "", 0)) return -1;
    *out = pt_buf_steal(&b, len);
    return 0;
}

/* Parses "1,2 3\n4" into ids. */
static int parse_ids(const char *s, int32_t **ids, size_t *n) {
    size_t cap = 16;
    *n = 0;
    *ids = malloc(cap * sizeof **ids);
    if (!*ids) return -1;
    const char *p = s;
    while (*p) {
        while (*p == ',' || *p == ' ' || *p == '\n' || *p == '\t' || *p == '\r') p++;
        if (!*p) break;
        char num[24];
        size_t k = 0;
        while (p[k] && p[k] != ',' && p[k] != ' ' && p[k] != '\n' && p[k] != '\t' && p[k] != '\r') k++;
        int64_t v;
        if (k == 0 || k >= sizeof num) return -1;
        memcpy(num, p, k);
        num[k] = 0;
        if (pt_parse_i64(num, &v) || v < 0 || v > INT32_MAX) return -1;
        if (*n == cap) {
            cap *= 2;
            int32_t *x = realloc(*ids, cap * sizeof *x);
            if (!x) return -1;
            *ids = x;
        }
        (*ids)[(*n)++] = (int32_t)v;
        p += k;
    }
    return 0;
}

/* --batch: many texts (or id lists) in one process, for tests and data preparation. */
static int run_batch(pt_tokenizer *t, int encode, int add_special, int parse_special, int skip_special) {
    char *in;
    size_t len;
    pt_err err;
    pt_err_clear(&err);
    if (read_stdin(&in, &len)) {
        fprintf(stderr, "parity: stdin: input larger than 256 MiB\n");
        return 1;
    }
    json_t *arr = pt_json_parse(in, len, 8, "stdin", &err);
    free(in);
    if (!arr) return cli_fail(&err);
    if (!json_is_array(arr)) {
        json_decref(arr);
        fprintf(stderr, "parity: stdin: expected a JSON array\n");
        return 1;
    }
    json_t *outa = json_array();
    int rc = 0;
    for (size_t i = 0; i < json_array_size(arr) && !rc; i++) {
        json_t *e = json_array_get(arr, i);
        if (encode) {
            int32_t *ids;
            size_t n;
            if (!json_is_string(e)) {
                fprintf(stderr, "parity: stdin: [%zu]: expected a string\n", i);
                rc = 1;
            } else if (pt_tokenizer_encode(t, json_string_value(e), json_string_length(e), add_special, parse_special, &ids,
                                           &n, &err)) {
                pt_err_prefix(&err, "stdin: [%zu]", i);
                rc = cli_fail(&err);
            } else {
                json_t *ja = json_array();
                for (size_t k = 0; k < n; k++) json_array_append_new(ja, json_integer(ids[k]));
                json_array_append_new(outa, ja);
                free(ids);
            }
        } else {
            size_t n = json_is_array(e) ? json_array_size(e) : 0;
            int32_t *ids = malloc((n ? n : 1) * sizeof *ids);
            for (size_t k = 0; k < n && ids; k++) {
                json_t *v = json_array_get(e, k);
                ids[k] = json_is_integer(v) && json_integer_value(v) >= 0 && json_integer_value(v) <= INT32_MAX
                             ? (int32_t)json_integer_value(v) : -1;
            }
            char *out;
            size_t olen;
            if (!json_is_array(e) || !ids) {
                fprintf(stderr, "parity: stdin: [%zu]: expected an array of ids\n", i);
                rc = 1;
            } else if (pt_tokenizer_decode(t, ids, n, skip_special, &out, &olen, &err)) {
                pt_err_prefix(&err, "stdin: [%zu]", i);
                rc = cli_fail(&err);
            } else {
                json_t *js = json_stringn(out, olen);
                json_array_append_new(outa, js ? js : json_null());
                free(out);
            }
            free(ids);
        }
    }
    if (!rc) {
        char *s = json_dumps(outa, JSON_COMPACT);
        if (s) printf("%s\n", s);
        free(s);
    }
    json_decref(outa);
    json_decref(arr);
    return rc;
}

static void train_progress(void *ud, size_t done, size_t total) { pt_progress_update(ud, done, NULL); (void)total; }

#define TRAIN_MAX_FILE ((size_t)1 << 30)
#define TRAIN_MAX_SPECIALS 64

/* parity tokenizer train */
static int cmd_train(int argc, char **argv) {
    const char *out = NULL, *pattern = "gpt2";
    const char *specials[TRAIN_MAX_SPECIALS + 2];
    size_t n_specials = 0, n_files = 0;
    uint64_t vocab = 0, min_freq = 2;
    int chat = 0, have_vocab = 0;
    const char **files = calloc((size_t)argc, sizeof *files);
    if (!files) return 1;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--vocab-size") && i + 1 < argc) {
            if (pt_parse_u64(argv[++i], &vocab)) {
                free(files);
                return cli_usage_error("tokenizer", "--vocab-size must be a non-negative integer");
            }
            have_vocab = 1;
        } else if (!strcmp(a, "--min-frequency") && i + 1 < argc) {
            if (pt_parse_u64(argv[++i], &min_freq)) {
                free(files);
                return cli_usage_error("tokenizer", "--min-frequency must be a non-negative integer");
            }
        } else if (!strcmp(a, "--special") && i + 1 < argc) {
            if (n_specials == TRAIN_MAX_SPECIALS) {
                free(files);
                return cli_usage_error("tokenizer", "at most %d --special tokens", TRAIN_MAX_SPECIALS);
            }
            specials[n_specials++] = argv[++i];
        } else if (!strcmp(a, "--pattern") && i + 1 < argc) pattern = argv[++i];
        else if ((!strcmp(a, "-o") || !strcmp(a, "--output")) && i + 1 < argc) out = argv[++i];
        else if (!strcmp(a, "--chat")) chat = 1;
        else if (a[0] == '-' && a[1]) {
            free(files);
            return cli_usage_error("tokenizer", "unknown or incomplete option '%s'", a);
        } else files[n_files++] = a;
    }
    if (!have_vocab || !out || !n_files) {
        free(files);
        return cli_usage_error("tokenizer", "train needs --vocab-size N, -o FILE and at least one input FILE");
    }
    if (!n_specials) specials[n_specials++] = "<|endoftext|>";
    if (chat) { /* ChatML's two tokens, unless given */
        static const char *const cm[2] = {"<|im_start|>", "<|im_end|>"};
        for (int k = 0; k < 2; k++) {
            size_t j = 0;
            while (j < n_specials && strcmp(specials[j], cm[k])) j++;
            if (j == n_specials) specials[n_specials++] = cm[k];
        }
    }
    pt_err err;
    pt_err_clear(&err);
    pt_bpe_train_opts o = {.vocab_size = (size_t)vocab, .specials = specials, .n_specials = n_specials,
                           .min_frequency = min_freq, .pattern = pattern};
    if (vocab > SIZE_MAX) vocab = SIZE_MAX;
    pt_progress bar;
    o.progress = train_progress;
    o.progress_ud = &bar;
    pt_bpe_trainer *tr = NULL;
    char *json = NULL, *cfg = NULL, *cfg_path = NULL;
    size_t json_len = 0, cfg_len = 0, total_bytes = 0;
    double t0 = pt_now();
    int rc = pt_bpe_trainer_new(&o, &tr, &err);
    if (rc) {
        free(files);
        return rc == PT_EINVAL ? cli_usage_error("tokenizer", "%s", err.msg) : cli_fail(&err);
    }
    for (size_t f = 0; f < n_files && !rc; f++) {
        char *text = NULL;
        size_t len = 0;
        if (!strcmp(files[f], "-")) {
            if (read_stdin(&text, &len)) rc = pt_errf(&err, PT_ENOMEM, "stdin: input larger than 256 MiB");
        } else {
            rc = pt_read_file(files[f], TRAIN_MAX_FILE, &text, &len, &err);
        }
        if (!rc) rc = pt_bpe_trainer_feed(tr, text, len, strcmp(files[f], "-") ? files[f] : "stdin", &err);
        total_bytes += len;
        free(text);
    }
    double t1 = pt_now();
    if (!rc) {
        pt_progress_start(&bar, "merges", (uint64_t)(vocab - n_specials - 256));
        rc = pt_bpe_trainer_run(tr, &err);
        pt_progress_finish(&bar);
    }
    double t2 = pt_now();
    if (!rc) rc = pt_bpe_trainer_tokenizer_json(tr, &json, &json_len, &err);
    if (!rc) rc = pt_bpe_trainer_config_json(tr, chat, &cfg, &cfg_len, &err);
    if (!rc) {
        /* tokenizer_config.json goes beside tokenizer.json: the loader looks for it there */
        const char *slash = strrchr(out, '/');
        char *dir = slash ? strndup(out, (size_t)(slash - out + (slash == out))) : strdup(".");
        cfg_path = dir ? pt_path_join(dir, "tokenizer_config.json") : NULL;
        if (!cfg_path) rc = pt_errf(&err, PT_ENOMEM, "out of memory");
        else if (!pt_exists(dir)) rc = pt_mkdirs(dir, 0, &err); /* -o models/new/tokenizer.json */
        free(dir);
    }
    if (!rc) rc = pt_write_atomic(out, json, json_len, 0644, &err);
    if (!rc) rc = pt_write_atomic(cfg_path, cfg, cfg_len, 0644, &err);
    if (!rc) {
        size_t got = pt_bpe_trainer_vocab_size(tr);
        fprintf(stderr,
                "parity: %zu bytes, %llu words (%zu distinct) read in %.2f s; %zu merges learned in %.2f s; vocab %zu "
                "(%zu special)\n",
                total_bytes, (unsigned long long)pt_bpe_trainer_n_pieces(tr), pt_bpe_trainer_n_words(tr), t1 - t0,
                pt_bpe_trainer_n_merges(tr), t2 - t1, got, n_specials);
        if (got < (size_t)vocab)
            fprintf(stderr, "parity: note: stopped at vocab %zu < %llu: no pair left that occurs %llu times\n", got,
                    (unsigned long long)vocab, (unsigned long long)(min_freq ? min_freq : 1));
        printf("%s\n%s\n", out, cfg_path);
    }
    free(json);
    free(cfg);
    free(cfg_path);
    free(files);
    pt_bpe_trainer_free(tr);
    return rc ? cli_fail(&err) : 0;
}

int cmd_tokenizer(int argc, char **argv) {
    if (cli_wants_help(argc, argv)) {
        usage(stdout);
        return 0;
    }
    if (argc < 2) return cli_usage_error("tokenizer", "missing action (encode, decode, info or train)");
    if (!strcmp(argv[1], "train")) return cmd_train(argc, argv);
    if (!strcmp(argv[1], "chat-render")) return cli_chat_render(argc, argv);
    const char *action = argv[1], *model = NULL, *text = NULL, *ids_arg = NULL;
    int as_json = 0, batch = 0, add_special = 1, parse_special = 1, skip_special = 0;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if ((!strcmp(a, "-m") || !strcmp(a, "--model")) && i + 1 < argc) model = argv[++i];
        else if (!strcmp(a, "--text") && i + 1 < argc) text = argv[++i];
        else if (!strcmp(a, "--ids") && i + 1 < argc) ids_arg = argv[++i];
        else if (!strcmp(a, "--json")) as_json = 1;
        else if (!strcmp(a, "--batch")) batch = 1;
        else if (!strcmp(a, "--no-add-special")) add_special = 0;
        else if (!strcmp(a, "--no-parse-special")) parse_special = 0;
        else if (!strcmp(a, "--skip-special")) skip_special = 1;
        else return cli_usage_error("tokenizer", "unknown or incomplete option '%s'", a);
    }
    if (strcmp(action, "encode") && strcmp(action, "decode") && strcmp(action, "info"))
        return cli_usage_error("tokenizer", "unknown action '%s' (encode, decode, info or train)", action);
    if (!model) return cli_usage_error("tokenizer", "-m MODEL is required");
    pt_err err;
    pt_err_clear(&err);
    pt_tokenizer *t;
    if (pt_tokenizer_load(model, &t, &err)) return cli_fail(&err);
    int rc = 0;
    if (batch && strcmp(action, "info")) {
        rc = run_batch(t, !strcmp(action, "encode"), add_special, parse_special, skip_special);
    } else if (!strcmp(action, "info")) {
        printf("vocab_size %zu\nbos %ld\neos %ld\nchat_template %s\n", pt_tokenizer_vocab_size(t), (long)pt_tokenizer_bos(t),
               (long)pt_tokenizer_eos(t), pt_tokenizer_chat_template(t) ? "yes" : "no");
    } else if (!strcmp(action, "encode")) {
        char *buf = NULL;
        size_t len;
        if (!text) {
            if (read_stdin(&buf, &len)) {
                fprintf(stderr, "parity: stdin: input larger than 256 MiB\n");
                pt_tokenizer_free(t);
                return 1;
            }
            text = buf;
        } else {
            len = strlen(text);
        }
        int32_t *ids;
        size_t n;
        if (pt_tokenizer_encode(t, text, len, add_special, parse_special, &ids, &n, &err)) {
            rc = cli_fail(&err);
        } else if (as_json) {
            json_t *o = json_object(), *ja = json_array(), *jt = json_array();
            for (size_t i = 0; i < n; i++) {
                json_array_append_new(ja, json_integer(ids[i]));
                json_array_append_new(jt, json_string(pt_tokenizer_token_str(t, ids[i])));
            }
            json_object_set_new(o, "ids", ja);
            json_object_set_new(o, "tokens", jt);
            char *s = json_dumps(o, JSON_COMPACT);
            if (s) printf("%s\n", s);
            free(s);
            json_decref(o);
        } else {
            for (size_t i = 0; i < n; i++) printf(i ? " %ld" : "%ld", (long)ids[i]);
            printf("\n");
        }
        free(ids);
        free(buf);
    } else {
        char *buf = NULL;
        size_t len;
        if (!ids_arg) {
            if (read_stdin(&buf, &len)) {
                fprintf(stderr, "parity: stdin: input larger than 256 MiB\n");
                pt_tokenizer_free(t);
                return 1;
            }
            ids_arg = buf;
        }
        int32_t *ids = NULL;
        size_t n;
        if (parse_ids(ids_arg, &ids, &n)) {
            rc = cli_usage_error("tokenizer", "--ids must be non-negative integers separated by commas or spaces");
        } else {
            char *out;
            size_t olen;
            if (pt_tokenizer_decode(t, ids, n, skip_special, &out, &olen, &err)) rc = cli_fail(&err);
            else {
                fwrite(out, 1, olen, stdout);
                free(out);
            }
        }
        free(ids);
        free(buf);
    }
    pt_tokenizer_free(t);
    return rc;
}
