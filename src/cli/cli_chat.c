/* parity tokenizer chat-render — renders chat templates with the Jinja interpreter (engine/jinja.h). */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/cli_chat.h"
#include "common/json.h"
#include "common/fileio.h"
#include "engine/chat.h"
#include "engine/tokenizer.h"

/* One context: {"text": ...} or {"error": ...}. */
static json_t *render_one(pt_tokenizer *tok, const pt_jinja *tpl, json_t *vars, const pt_jinja_opts *o) {
    pt_err err;
    pt_err_clear(&err);
    pt_jinja_out out;
    int rc;
    if (tok) rc = pt_chat_template_render(tok, vars, o, &out, &err);
    else rc = pt_jinja_render(tpl, vars, o, &out, &err);
    json_t *r = json_object();
    if (rc) {
        json_object_set_new(r, "error", json_string(err.msg));
    } else {
        json_object_set_new(r, "text", json_stringn(out.text, out.len));
        pt_jinja_out_free(&out);
    }
    return r;
}

/* With --tokens: pt_chat_render's tokens of the context's messages (what serving and fine-tuning
 * use): {"ids": [...], "reply": [0/1...], "replies": [the text of each run of reply tokens]}. */
static void add_tokens(pt_tokenizer *tok, json_t *ctx, json_t *r) {
    pt_chat_tokens ct = {0};
    const char *bad = NULL;
    size_t at = 0;
    pt_err err;
    pt_err_clear(&err);
    int rc = pt_chat_render(tok, json_object_get(ctx, "messages"), json_is_true(json_object_get(ctx, "add_generation_prompt")),
                            &ct, &bad, &at, &err);
    if (rc) {
        json_object_set_new(r, "tokens_error", json_string(rc == PT_EINVAL && bad ? bad : err.msg));
        pt_chat_tokens_free(&ct);
        return;
    }
    json_t *ids = json_array(), *reply = json_array(), *runs = json_array();
    for (size_t i = 0; i < ct.n; i++) {
        json_array_append_new(ids, json_integer(ct.ids[i]));
        json_array_append_new(reply, json_integer(ct.reply[i]));
        if (ct.reply[i] && (i == 0 || !ct.reply[i - 1])) {
            size_t j = i;
            while (j < ct.n && ct.reply[j]) j++;
            char *s;
            size_t len;
            if (pt_tokenizer_decode(tok, ct.ids + i, j - i, 0, &s, &len, &err) == PT_OK) {
                json_array_append_new(runs, json_stringn(s, len));
                free(s);
            }
        }
    }
    json_object_set_new(r, "ids", ids);
    json_object_set_new(r, "reply", reply);
    json_object_set_new(r, "replies", runs);
    pt_chat_tokens_free(&ct);
}

int cli_chat_render(int argc, char **argv) {
    const char *model = NULL, *tfile = NULL;
    pt_jinja_opts o = {0};
    int tokens = 0;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if ((!strcmp(a, "-m") || !strcmp(a, "--model")) && i + 1 < argc) model = argv[++i];
        else if (!strcmp(a, "--template") && i + 1 < argc) tfile = argv[++i];
        else if (!strcmp(a, "--tokens")) tokens = 1;
        else if (!strcmp(a, "--now") && i + 1 < argc) o.now = strtoll(argv[++i], NULL, 10), o.has_now = 1;
        else if (!strcmp(a, "--max-steps") && i + 1 < argc) o.max_steps = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(a, "--max-output") && i + 1 < argc) o.max_output = strtoull(argv[++i], NULL, 10);
        else return cli_usage_error("tokenizer", "unknown or incomplete option '%s'", a);
    }
    if (!model == !tfile) return cli_usage_error("tokenizer", "chat-render needs -m MODEL or --template FILE");
    pt_err err;
    pt_err_clear(&err);
    pt_tokenizer *tok = NULL;
    pt_jinja *tpl = NULL;
    if (model && pt_tokenizer_load(model, &tok, &err)) return cli_fail(&err);
    if (tfile) {
        char *src = NULL;
        size_t n;
        if (pt_read_file(tfile, (size_t)1 << 22, &src, &n, &err)) return cli_fail(&err);
        int prc = pt_jinja_parse(src, n, &tpl, &err);
        free(src);
        if (prc) return cli_fail(&err);
    }
    json_error_t je;
    json_t *in = json_loadf(stdin, JSON_DECODE_ANY, &je), *res = json_array();
    int rc = 0;
    if (!in || !json_is_array(in)) {
        fprintf(stderr, "parity: stdin: a JSON array of contexts (objects) expected: %s\n", in ? "not an array" : je.text);
        rc = 1;
    } else {
        size_t i;
        json_t *ctx;
        json_array_foreach(in, i, ctx) {
            json_t *r = render_one(tok, tpl, ctx, &o);
            if (tokens && tok) add_tokens(tok, ctx, r);
            json_array_append_new(res, r);
        }
        char *s = json_dumps(res, JSON_COMPACT | JSON_ENSURE_ASCII);
        if (s) printf("%s\n", s);
        free(s);
    }
    json_decref(in), json_decref(res);
    pt_tokenizer_free(tok);
    pt_jinja_free(tpl);
    return rc;
}
