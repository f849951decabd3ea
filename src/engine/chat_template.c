/* A model's own chat template (Jinja, engine/jinja.h) in engine/chat.h's rendering: the
 * context transformers.js gives a template, and the rendered text turned into tokens with
 * special tokens taken only from the template's own text, never from message contents. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/chat.h"
#include "engine/tokenizer.h"

json_t *pt_chat_context(const pt_tokenizer *tok, json_t *vars) {
    json_t *c = json_object();
    if (!c) return NULL;
    json_object_set_new(c, "add_generation_prompt", json_false());
    json_object_set_new(c, "tools", json_null());
    json_object_set_new(c, "documents", json_null());
    const char *sv = pt_tokenizer_chat_vars(tok);
    json_t *special = sv ? json_loads(sv, 0, NULL) : NULL;
    if (special) {
        json_object_update(c, special);
        json_decref(special);
    } else { /* a GGUF: the BOS and EOS strings */
        const char *names[2] = {"bos_token", "eos_token"};
        int32_t ids[2] = {pt_tokenizer_bos(tok), pt_tokenizer_eos(tok)};
        for (int i = 0; i < 2; i++) {
            const char *s = ids[i] >= 0 ? pt_tokenizer_token_str(tok, ids[i]) : NULL;
            if (s && *s) json_object_set_new(c, names[i], json_string(s));
        }
    }
    if (vars) json_object_update(c, vars);
    return c;
}

const char *pt_chat_template_for(const pt_tokenizer *tok, json_t *ctx) {
    json_t *tools = json_object_get(ctx, "tools");
    if (tools && !json_is_null(tools) && pt_tokenizer_chat_template_tools(tok)) return pt_tokenizer_chat_template_tools(tok);
    return pt_tokenizer_chat_template(tok);
}

static const char *const TRUSTED[] = {"bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token",
                                      "mask_token", "add_generation_prompt", NULL};

int pt_chat_template_render(const pt_tokenizer *tok, json_t *vars, const pt_jinja_opts *o, pt_jinja_out *out,
                            pt_err *err) {
    json_t *ctx = pt_chat_context(tok, vars);
    if (!ctx) return pt_errf(err, PT_ENOMEM, "out of memory");
    const char *src = pt_chat_template_for(tok, ctx);
    if (!src) {
        json_decref(ctx);
        return pt_errf(err, PT_ENOTFOUND, "the model has no chat template");
    }
    pt_jinja *t;
    int rc = pt_jinja_parse(src, strlen(src), &t, err);
    if (!rc) {
        pt_jinja_opts oo = o ? *o : (pt_jinja_opts){0};
        if (!oo.trusted) oo.trusted = TRUSTED;
        rc = pt_jinja_render(t, ctx, &oo, out, err);
        pt_jinja_free(t);
    }
    json_decref(ctx);
    return rc;
}

/* ---- tokens of a rendered template ---- */
typedef struct {
    const char *s;
    size_t n;
    int32_t id;
} special_tok;

typedef struct {
    special_tok *v;
    size_t n;
    uint8_t first[256]; /* 1 for the bytes a special token starts with */
} specials;

/* The tokenizer's special (control) tokens, the template's markers. */
static int collect_specials(const pt_tokenizer *tok, specials *sp) {
    size_t nv = pt_tokenizer_vocab_size(tok), cap = 0;
    memset(sp, 0, sizeof *sp);
    for (size_t id = 0; id < nv; id++) {
        if (!pt_tokenizer_is_special(tok, (int32_t)id)) continue;
        const char *s = pt_tokenizer_token_str(tok, (int32_t)id);
        if (!s || !*s) continue;
        if (sp->n == cap) {
            cap = cap ? cap * 2 : 64;
            special_tok *nvv = realloc(sp->v, cap * sizeof *nvv);
            if (!nvv) return -1;
            sp->v = nvv;
        }
        sp->v[sp->n++] = (special_tok){s, strlen(s), (int32_t)id};
        sp->first[(unsigned char)s[0]] = 1;
    }
    return 0;
}

/* The longest special token at text[i] whose bytes all come from the template (origin 0). */
static const special_tok *special_at(const specials *sp, const pt_jinja_out *r, size_t i) {
    const special_tok *best = NULL;
    if (!sp->first[(unsigned char)r->text[i]]) return NULL;
    for (size_t k = 0; k < sp->n; k++) {
        const special_tok *t = &sp->v[k];
        if (t->n > r->len - i || (best && t->n <= best->n) || memcmp(r->text + i, t->s, t->n)) continue;
        size_t j = 0;
        while (j < t->n && r->origin[i + j] == 0) j++;
        if (j == t->n) best = t;
    }
    return best;
}

/* Token classes while marking replies. */
enum { C_TEMPLATE = 0, C_REPLY = 1, C_DATA = 2 };

typedef struct {
    pt_chat_tokens *o;
    uint8_t *cls, *special;
    size_t cap;
} tok_acc;

static int push(tok_acc *a, int32_t id, uint8_t cls, uint8_t special, pt_err *err) {
    pt_chat_tokens *o = a->o;
    if (o->max && o->n + 1 > o->max) return pt_errf(err, PT_ELIMIT, "the prompt is longer than %zu tokens", o->max);
    if (o->n + 1 > o->cap) {
        size_t nc = (o->n + 1) * 2;
        int32_t *ni = realloc(o->ids, nc * sizeof *ni);
        if (ni) o->ids = ni;
        uint8_t *nr = ni ? realloc(o->reply, nc) : NULL;
        if (nr) o->reply = nr, o->cap = nc;
        if (!nr) return pt_errf(err, PT_ENOMEM, "out of memory");
    }
    if (o->n + 1 > a->cap) {
        size_t nc = (o->n + 1) * 2;
        uint8_t *c = realloc(a->cls, nc), *s = c ? realloc(a->special, nc) : NULL;
        if (c) a->cls = c;
        if (!s) return pt_errf(err, PT_ENOMEM, "out of memory");
        a->special = s, a->cap = nc;
    }
    o->ids[o->n] = id, o->reply[o->n] = 0, a->cls[o->n] = cls, a->special[o->n] = special;
    o->n++;
    return PT_OK;
}

/* Encodes text[from, to) (no special tokens parsed) and classes each token by the origins of the
 * bytes it covers: the token lengths are aligned to the text's end (a SentencePiece prefix space
 * makes them longer than the text by its length). */
static int encode_piece(const pt_tokenizer *tok, const pt_jinja_out *r, size_t from, size_t to, const uint8_t *is_reply,
                        tok_acc *a, pt_err *err) {
    if (to <= from) return PT_OK;
    int32_t *ids;
    size_t k;
    int rc = pt_tokenizer_encode(tok, r->text + from, to - from, 0, 0, &ids, &k, err);
    if (rc) return rc;
    size_t total = 0, len;
    char buf[256];
    size_t *lens = malloc((k ? k : 1) * sizeof *lens);
    if (!lens) {
        free(ids);
        return pt_errf(err, PT_ENOMEM, "out of memory");
    }
    for (size_t i = 0; i < k; i++) {
        lens[i] = pt_tokenizer_token_bytes(tok, ids[i], buf, sizeof buf, &len) == PT_OK ? len : 0;
        total += lens[i];
    }
    long long off = (long long)(to - from) - (long long)total, pos = off;
    for (size_t i = 0; i < k && !rc; i++) {
        long long a0 = pos < 0 ? 0 : pos, a1 = pos + (long long)lens[i];
        if (a1 > (long long)(to - from)) a1 = (long long)(to - from);
        uint8_t cls = C_TEMPLATE;
        for (long long b = a0; b < a1; b++) {
            uint16_t org = r->origin[from + (size_t)b];
            if (org && org < PT_JINJA_ORIGIN_DATA && is_reply[org]) cls = C_REPLY;
            else if (org && cls == C_TEMPLATE) cls = C_DATA;
        }
        rc = push(a, ids[i], cls, 0, err);
        pos += (long long)lens[i];
    }
    free(lens);
    free(ids);
    return rc;
}

static int end_of_turn(const pt_tokenizer *tok, int32_t id) {
    static const char *const ends[] = {"<|eot_id|>", "<|im_end|>", "<end_of_turn>", "<|end|>", "</s>", "<|endoftext|>", NULL};
    if (id == pt_tokenizer_eos(tok)) return 1;
    for (size_t i = 0; ends[i]; i++)
        if (pt_tokenizer_token_id(tok, ends[i]) == id) return 1;
    return 0;
}

/* The reply: tokens from an assistant message's content, then the template's text after them
 * up to and including an end-of-turn token (what the model generates to end its turn). */
static void mark_replies(const pt_tokenizer *tok, tok_acc *a) {
    pt_chat_tokens *o = a->o;
    for (size_t i = 0; i < o->n; i++) {
        if (a->cls[i] != C_REPLY) continue;
        o->reply[i] = 1;
        if (i + 1 < o->n && a->cls[i + 1] == C_REPLY) continue;
        size_t j = i + 1;
        while (j < o->n && a->cls[j] == C_TEMPLATE && !a->special[j]) j++;
        if (j < o->n && a->special[j] && end_of_turn(tok, o->ids[j]))
            for (size_t k = i + 1; k <= j; k++) o->reply[k] = 1;
    }
}

static int tokens_of(const pt_tokenizer *tok, const pt_jinja_out *r, const uint8_t *is_reply, pt_chat_tokens *out,
                     pt_err *err) {
    specials sp;
    if (collect_specials(tok, &sp)) return pt_errf(err, PT_ENOMEM, "out of memory");
    tok_acc a = {out, NULL, NULL, 0};
    size_t start = 0;
    int rc = PT_OK;
    for (size_t i = 0; i < r->len && !rc;) {
        const special_tok *t = r->origin[i] == 0 ? special_at(&sp, r, i) : NULL;
        if (!t) {
            i++;
            continue;
        }
        if (!(rc = encode_piece(tok, r, start, i, is_reply, &a, err))) rc = push(&a, t->id, C_TEMPLATE, 1, err);
        i += t->n, start = i;
    }
    if (!rc) rc = encode_piece(tok, r, start, r->len, is_reply, &a, err);
    if (!rc) mark_replies(tok, &a);
    free(a.cls), free(a.special), free(sp.v);
    return rc;
}

/* A message as the template sees it: role (developer as system), content as a string (text
 * parts joined; "" when absent), and its other members (tool_calls, tool_call_id, name, ...). */
static json_t *template_message(json_t *msg, const char **bad) {
    const char *role = json_string_value(json_object_get(msg, "role"));
    static const char *const roles[] = {"system", "developer", "user", "assistant", "tool", NULL};
    int ok = 0;
    for (size_t i = 0; role && roles[i]; i++) ok |= !strcmp(role, roles[i]);
    if (!json_is_object(msg) || !ok) return *bad = "each message needs a role: system, developer, user, assistant or tool", NULL;
    json_t *c = json_object_get(msg, "content"), *m = json_deep_copy(msg);
    if (!m) return *bad = "out of memory", NULL;
    if (!strcmp(role, "developer")) json_object_set_new(m, "role", json_string("system"));
    if (!c || json_is_null(c)) {
        json_object_set_new(m, "content", json_string(""));
    } else if (!json_is_string(c)) {
        if (!json_is_array(c)) return json_decref(m), *bad = "content must be a string or an array of text parts", NULL;
        size_t i, total = 0;
        json_t *part;
        json_array_foreach(c, i, part) {
            json_t *t = json_object_get(part, "text");
            const char *ty = json_string_value(json_object_get(part, "type"));
            if (!json_is_string(t) || !ty || strcmp(ty, "text")) return json_decref(m), *bad = "only text content parts are supported", NULL;
            total += json_string_length(t);
        }
        char *s = malloc(total + 1);
        if (!s) return json_decref(m), *bad = "content too large", NULL;
        total = 0;
        json_array_foreach(c, i, part) {
            memcpy(s + total, json_string_value(json_object_get(part, "text")), json_string_length(json_object_get(part, "text")));
            total += json_string_length(json_object_get(part, "text"));
        }
        json_object_set_new(m, "content", json_stringn(s, total));
        free(s);
    }
    return m;
}

static _Thread_local char template_error[sizeof(((pt_err *)0)->msg)];

int pt_chat_render_template(const pt_tokenizer *tok, json_t *messages, int gen, pt_chat_tokens *out, const char **bad,
                            size_t *bad_index, pt_err *err) {
    const char *src = pt_tokenizer_chat_template(tok);
    pt_jinja *t;
    if (!src) return PT_EUNSUPPORTED;
    pt_err perr;
    if (pt_jinja_parse(src, strlen(src), &t, &perr)) return PT_EUNSUPPORTED; /* the built-in templates instead */
    pt_jinja_free(t);
    json_t *ms = json_array(), *msg;
    size_t i, n = json_array_size(messages);
    uint8_t *is_reply = calloc(n + 2 < PT_JINJA_ORIGIN_DATA ? n + 2 : PT_JINJA_ORIGIN_DATA, 1);
    int rc = PT_OK;
    if (!ms || !is_reply) rc = pt_errf(err, PT_ENOMEM, "out of memory");
    json_array_foreach(messages, i, msg) {
        if (rc) break;
        *bad_index = i;
        json_t *m = template_message(msg, bad);
        if (!m) rc = PT_EINVAL;
        else {
            if (i + 1 < PT_JINJA_ORIGIN_DATA) is_reply[i + 1] = !strcmp(json_string_value(json_object_get(m, "role")), "assistant");
            json_array_append_new(ms, m);
        }
    }
    json_t *vars = rc ? NULL : json_pack("{sOsb}", "messages", ms, "add_generation_prompt", gen);
    pt_jinja_out r = {0};
    if (!rc && !vars) rc = pt_errf(err, PT_ENOMEM, "out of memory");
    if (!rc && (rc = pt_chat_template_render(tok, vars, NULL, &r, err)) == PT_EINVAL) {
        snprintf(template_error, sizeof template_error, "%s", err ? err->msg : "the chat template failed");
        *bad = template_error, *bad_index = 0;
    }
    if (!rc) rc = tokens_of(tok, &r, is_reply, out, err);
    pt_jinja_out_free(&r);
    json_decref(vars), json_decref(ms);
    free(is_reply);
    return rc;
}
