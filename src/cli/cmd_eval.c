/* parity eval — loss and perplexity of a model on a text (the engine's forward pass), and
 * with a teacher: KL(teacher‖student), top-1 agreement and both perplexities. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "common/fileio.h"
#include "common/util.h"
#include "engine/engine.h"
#include "engine/sample.h"
#include "engine/tokenizer.h"
#include "train/tokfile.h"

const char cmd_eval_summary[] = "loss, perplexity, and KL / top-1 agreement against a teacher";

static void usage(void) {
    printf("usage: parity eval -m MODEL (--text FILE | --data FILE.bin) [--teacher DIR] [--json]\n"
           "                   [--ctx N] [--max-tokens N] [--threads N]\n\n"
           "Tokenizes FILE with the model's tokenizer (or reads a token file written by `parity\n"
           "data`), cuts it into windows of CTX tokens (default: the model's context) and runs each\n"
           "through the engine. Every token after the first of a window is predicted from the ones\n"
           "before it; reports the mean loss (nats/token) and perplexity exp(loss).\n"
           "With --teacher (a model with the same vocabulary), also the teacher's loss and\n"
           "perplexity, the mean KL(teacher || student) per token and the fraction of positions\n"
           "where both models' most likely next token agree.\n\n"
           "  --json  {\"tokens\", \"predicted\", \"loss\", \"perplexity\"[, \"teacher_loss\",\n"
           "           \"teacher_perplexity\", \"kl\", \"top1_agreement\"]}\n\n"
           "example:\n"
           "  parity eval -m out/model --text val.txt\n"
           "  parity eval -m analog/ --teacher frontier/ --text eval.txt --json\n");
}

int cmd_eval(int argc, char **argv) {
    if (cli_wants_help(argc, argv)) {
        usage();
        return 0;
    }
    const char *model = NULL, *text = NULL, *data = NULL, *teacher = NULL;
    int json = 0, threads = 2;
    uint64_t ctx = 0, max_tokens = 0;
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i];
        if (!strcmp(o, "--json")) {
            json = 1;
            continue;
        }
        if (i + 1 >= argc) return cli_usage_error("eval", "%s needs a value", o);
        const char *v = argv[++i];
        if (!strcmp(o, "-m") || !strcmp(o, "--model")) model = v;
        else if (!strcmp(o, "--text")) text = v;
        else if (!strcmp(o, "--data")) data = v;
        else if (!strcmp(o, "--teacher")) teacher = v;
        else if (!strcmp(o, "--threads")) threads = atoi(v);
        else if (!strcmp(o, "--ctx")) {
            if (pt_parse_u64(v, &ctx) || ctx < 2) return cli_usage_error("eval", "--ctx must be an integer >= 2");
        } else if (!strcmp(o, "--max-tokens")) {
            if (pt_parse_u64(v, &max_tokens)) return cli_usage_error("eval", "--max-tokens must be an integer");
        } else return cli_usage_error("eval", "unknown option '%s'", o);
    }
    if (!model) return cli_usage_error("eval", "-m MODEL is required");
    if (!!text == !!data) return cli_usage_error("eval", "give exactly one of --text and --data");
    if (threads < 1 || threads > 256) return cli_usage_error("eval", "--threads must be 1..256");
    pt_err err = {0};
    pt_engine *e = NULL, *te = NULL;
    pt_seq *s = NULL, *ts = NULL;
    pt_tokenizer *tok = NULL;
    int32_t *ids = NULL;
    size_t n = 0;
    float *lg = NULL, *tlg = NULL;
    pt_tokfile tf = {0};
    int rc = pt_engine_open(model, threads, &e, &err);
    if (!rc && teacher) rc = pt_engine_open(teacher, threads, &te, &err);
    const pt_config *c = e ? pt_engine_config(e) : NULL;
    if (!rc && te && pt_engine_config(te)->vocab_size != c->vocab_size)
        rc = pt_errf(&err, PT_EINVAL, "the teacher's vocabulary (%d) differs from the model's (%d)",
                     pt_engine_config(te)->vocab_size, c->vocab_size);
    if (!rc && text) {
        char *buf;
        size_t len;
        rc = pt_tokenizer_load(model, &tok, &err);
        if (!rc) rc = pt_read_file(text, (size_t)1 << 30, &buf, &len, &err);
        if (!rc) {
            rc = pt_tokenizer_encode(tok, buf, len, 1, 0, &ids, &n, &err);
            free(buf);
        }
    } else if (!rc) {
        rc = pt_tokfile_open(data, &tf, &err);
        if (!rc && !(ids = malloc((tf.n_tokens ? tf.n_tokens : 1) * sizeof *ids))) rc = pt_errf(&err, PT_ENOMEM, "out of memory");
        for (uint64_t i = 0; !rc && i < tf.n_tokens; i++) ids[i] = (int32_t)tf.tokens[i];
        n = (size_t)tf.n_tokens;
    }
    if (!rc && max_tokens && n > max_tokens) n = (size_t)max_tokens;
    if (!rc && n < 2) rc = pt_errf(&err, PT_EINVAL, "%s: fewer than 2 tokens: nothing to predict", text ? text : data);
    size_t W = (size_t)c->max_pos;
    if (te && (size_t)pt_engine_config(te)->max_pos < W) W = (size_t)pt_engine_config(te)->max_pos;
    if (ctx && ctx < W) W = (size_t)ctx;
    size_t V = c ? (size_t)c->vocab_size : 0;
    if (!rc && (!(s = pt_seq_new(e, (int)W)) || (te && !(ts = pt_seq_new(te, (int)W))) ||
                !(lg = malloc(W * V * sizeof(float))) || (te && !(tlg = malloc(W * V * sizeof(float))))))
        rc = pt_errf(&err, PT_ENOMEM, "out of memory");
    double nll = 0, tnll = 0, kl = 0;
    size_t pred = 0, agree = 0;
    for (size_t w0 = 0; !rc && w0 + 1 < n; w0 += W) {
        size_t len = n - w0 < W ? n - w0 : W;
        if (len < 2) break;
        pt_seq_reset(s);
        pt_step st = {s, ids + w0, (int)len, 1, lg};
        if ((rc = pt_engine_forward(e, &st, 1, &err))) break;
        if (te) {
            pt_seq_reset(ts);
            pt_step tt = {ts, ids + w0, (int)len, 1, tlg};
            if ((rc = pt_engine_forward(te, &tt, 1, &err))) break;
        }
        for (size_t i = 0; i + 1 < len; i++) {
            float *row = lg + i * V;
            int top_s = pt_argmax(row, (int)V);
            pt_log_softmax(row, V, row);
            int32_t next = ids[w0 + i + 1];
            nll -= row[next];
            if (te) {
                float *tr = tlg + i * V;
                int top_t = pt_argmax(tr, (int)V);
                pt_log_softmax(tr, V, tr);
                tnll -= tr[next];
                double k = 0;
                for (size_t j = 0; j < V; j++) {
                    double pt = exp((double)tr[j]);
                    if (pt > 0) k += pt * ((double)tr[j] - (double)row[j]);
                }
                kl += k;
                agree += top_s == top_t;
            }
            pred++;
        }
    }
    if (!rc) {
        double loss = nll / (double)pred, tloss = tnll / (double)pred;
        if (json) {
            printf("{\"tokens\": %zu, \"predicted\": %zu, \"loss\": %.9g, \"perplexity\": %.9g", n, pred, loss, exp(loss));
            if (te)
                printf(", \"teacher_loss\": %.9g, \"teacher_perplexity\": %.9g, \"kl\": %.9g, \"top1_agreement\": %.9g",
                       tloss, exp(tloss), kl / (double)pred, (double)agree / (double)pred);
            printf("}\n");
        } else {
            printf("tokens\t%zu\npredicted\t%zu\nloss\t%.6f\nperplexity\t%.6f\n", n, pred, loss, exp(loss));
            if (te)
                printf("teacher_loss\t%.6f\nteacher_perplexity\t%.6f\nkl\t%.6f\ntop1_agreement\t%.6f\n", tloss,
                       exp(tloss), kl / (double)pred, (double)agree / (double)pred);
        }
    }
    free(ids), free(lg), free(tlg);
    pt_tokfile_close(&tf);
    pt_tokenizer_free(tok);
    pt_seq_free(s), pt_seq_free(ts);
    pt_engine_free(e), pt_engine_free(te);
    return rc ? cli_fail(&err) : 0;
}
