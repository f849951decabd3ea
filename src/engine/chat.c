/* see chat.h */
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "engine/chat.h"
#include "engine/tokenizer.h"

const char *pt_chat_plain_prefix(const char *role) {
    if (!role) return NULL;
    if (!strcmp(role, "system") || !strcmp(role, "developer")) return "System: ";
    if (!strcmp(role, "user")) return "User: ";
    if (!strcmp(role, "assistant")) return "Assistant: ";
    return NULL;
}

pt_chat_kind pt_chat_kind_of(const pt_tokenizer *tok) {
    const char *tpl = pt_tokenizer_chat_template(tok);
    if (tpl && strstr(tpl, "<|start_header_id|>")) return PT_CHAT_LLAMA3;
    if (tpl && strstr(tpl, "<|im_start|>")) return PT_CHAT_CHATML;
    if (tpl && strstr(tpl, "[INST]")) return PT_CHAT_LLAMA2;
    if (!tpl) return PT_CHAT_PLAIN;
    pt_jinja *t;
    pt_err err;
    if (pt_jinja_parse(tpl, strlen(tpl), &t, &err)) return PT_CHAT_PLAIN; /* unreadable: the plain template */
    pt_jinja_free(t);
    return PT_CHAT_TEMPLATE;
}

int32_t pt_chat_end_token(const pt_tokenizer *tok, pt_chat_kind kind) {
    if (kind == PT_CHAT_LLAMA3) return pt_tokenizer_token_id(tok, "<|eot_id|>");
    if (kind == PT_CHAT_CHATML) return pt_tokenizer_token_id(tok, "<|im_end|>");
    if (kind == PT_CHAT_TEMPLATE) { /* an end-of-turn marker the template writes */
        static const char *const ends[] = {"<end_of_turn>", "<|eot_id|>", "<|im_end|>", "<|end|>", "<|END_OF_TURN_TOKEN|>", NULL};
        const char *tpl = pt_tokenizer_chat_template(tok);
        for (size_t i = 0; tpl && ends[i]; i++)
            if (strstr(tpl, ends[i]) && pt_tokenizer_token_id(tok, ends[i]) >= 0) return pt_tokenizer_token_id(tok, ends[i]);
    }
    return -1;
}

const char *pt_chat_stop(pt_chat_kind kind) { return kind == PT_CHAT_PLAIN ? PT_CHAT_PLAIN_STOP : NULL; }

void pt_chat_tokens_free(pt_chat_tokens *t) {
    free(t->ids);
    free(t->reply);
    t->ids = NULL, t->reply = NULL, t->n = t->cap = 0;
}

/* Appends the encoding of s[0..n) (special-token strings parsed only when special). */
static int enc(const pt_tokenizer *tok, pt_chat_tokens *o, const char *s, size_t n, int add_bos, int special,
               int reply, pt_err *err) {
    int32_t *ids;
    size_t k;
    int rc = pt_tokenizer_encode(tok, s, n, add_bos, special, &ids, &k, err);
    if (rc) return rc;
    if (o->max && o->n + k > o->max) {
        free(ids);
        return pt_errf(err, PT_ELIMIT, "the prompt is longer than %zu tokens", o->max);
    }
    if (o->n + k > o->cap) {
        size_t nc = (o->n + k) * 2;
        int32_t *ni = realloc(o->ids, nc * sizeof *ni);
        if (ni) o->ids = ni;
        uint8_t *nr = ni ? realloc(o->reply, nc) : NULL;
        if (!nr) {
            free(ids);
            return pt_errf(err, PT_ENOMEM, "out of memory");
        }
        o->reply = nr, o->cap = nc;
    }
    if (k) { /* an empty encoding may leave the arrays NULL */
        memcpy(o->ids + o->n, ids, k * sizeof *ids);
        memset(o->reply + o->n, reply, k);
    }
    o->n += k;
    free(ids);
    return PT_OK;
}

/* The text of a message's content: a string, or an array of {"type":"text","text":...}. */
static int content_text(json_t *content, pt_buf *out, const char **bad) {
    if (json_is_string(content)) {
        if (pt_buf_append(out, json_string_value(content), json_string_length(content))) return *bad = "content too large", -1;
        return 0;
    }
    if (!json_is_array(content)) return *bad = "content must be a string or an array of text parts", -1;
    size_t i;
    json_t *part;
    json_array_foreach(content, i, part) {
        json_t *t = json_object_get(part, "text");
        const char *ty = json_string_value(json_object_get(part, "type"));
        if (!json_is_string(t) || !ty || strcmp(ty, "text")) return *bad = "only text content parts are supported", -1;
        if (pt_buf_append(out, json_string_value(t), json_string_length(t))) return *bad = "content too large", -1;
    }
    return 0;
}

/* The generation prompt: what a served prompt ends with and every assistant message starts with. */
static const char *gen_prompt(pt_chat_kind kind) {
    switch (kind) {
    case PT_CHAT_LLAMA3: return "<|start_header_id|>assistant<|end_header_id|>\n\n";
    case PT_CHAT_CHATML: return "<|im_start|>assistant\n";
    case PT_CHAT_LLAMA2: return "";
    default: return PT_CHAT_PLAIN_GEN;
    }
}

static int assistant_msg(const pt_tokenizer *tok, pt_chat_kind kind, const char *t, size_t tl, pt_chat_tokens *o,
                         pt_buf *tmp, pt_err *err) {
    const char *g = gen_prompt(kind);
    int rc = enc(tok, o, g, strlen(g), 0, 1, 0, err);
    if (rc) return rc;
    pt_buf_reset(tmp);
    int lead = kind == PT_CHAT_PLAIN || kind == PT_CHAT_LLAMA2; /* the space after "Assistant:" / "[/INST]" */
    if ((lead && pt_buf_append(tmp, " ", 1)) || pt_buf_append(tmp, t, tl) ||
        (kind == PT_CHAT_PLAIN && pt_buf_append(tmp, PT_CHAT_PLAIN_SEP, strlen(PT_CHAT_PLAIN_SEP))))
        return pt_errf(err, PT_ENOMEM, "out of memory");
    if ((rc = enc(tok, o, tmp->data ? tmp->data : "", tmp->len, 0, 0, 1, err))) return rc;
    switch (kind) {
    case PT_CHAT_LLAMA3: return enc(tok, o, "<|eot_id|>", 10, 0, 1, 1, err);
    case PT_CHAT_CHATML: return (rc = enc(tok, o, "<|im_end|>", 10, 0, 1, 1, err)) ? rc : enc(tok, o, "\n", 1, 0, 0, 0, err);
    case PT_CHAT_LLAMA2: return enc(tok, o, " </s>", 5, 0, 1, 1, err);
    default: return PT_OK;
    }
}

static int other_msg(const pt_tokenizer *tok, pt_chat_kind kind, const char *role, const char *t, size_t tl,
                     pt_chat_tokens *o, pt_err *err) {
    int sys = !strcmp(role, "system"), rc;
#define ENC(s, n, special) \
    if ((rc = enc(tok, o, s, n, 0, special, 0, err))) return rc
    switch (kind) {
    case PT_CHAT_LLAMA3:
    case PT_CHAT_CHATML: { /* markers as special tokens around the role and the text */
        int l3 = kind == PT_CHAT_LLAMA3;
        const char *open = l3 ? "<|start_header_id|>" : "<|im_start|>", *mid = l3 ? "<|end_header_id|>\n\n" : "\n",
                   *close = l3 ? "<|eot_id|>" : "<|im_end|>\n";
        ENC(open, strlen(open), 1);
        ENC(role, strlen(role), 0);
        ENC(mid, strlen(mid), 1);
        ENC(t, tl, 0);
        ENC(close, strlen(close), 1);
        break;
    }
    case PT_CHAT_LLAMA2:
        ENC(sys ? "[INST] <<SYS>>\n" : "[INST] ", sys ? 15 : 7, 1);
        ENC(t, tl, 0);
        ENC(sys ? "\n<</SYS>>\n\n" : " [/INST]", sys ? 11 : 8, 1);
        break;
    default:
        ENC(pt_chat_plain_prefix(role), strlen(pt_chat_plain_prefix(role)), 0);
        ENC(t, tl, 0);
        ENC(PT_CHAT_PLAIN_SEP, strlen(PT_CHAT_PLAIN_SEP), 0);
    }
#undef ENC
    return PT_OK;
}

int pt_chat_render(const pt_tokenizer *tok, json_t *messages, int gen, pt_chat_tokens *out, const char **bad,
                   size_t *bad_index, pt_err *err) {
    int rc = pt_chat_render_template(tok, messages, gen, out, bad, bad_index, err);
    if (rc != PT_EUNSUPPORTED) return rc;
    pt_chat_kind kind = pt_chat_kind_of(tok);
    rc = PT_OK;
    if (pt_tokenizer_bos(tok) >= 0 && (rc = enc(tok, out, "", 0, 1, 0, 0, err))) return rc; /* just the BOS */
    pt_buf text, tmp;
    pt_buf_init(&text, 64u << 20);
    pt_buf_init(&tmp, 64u << 20);
    size_t i;
    json_t *msg;
    json_array_foreach(messages, i, msg) {
        const char *role = json_string_value(json_object_get(msg, "role"));
        *bad_index = i;
        if (!role || !pt_chat_plain_prefix(role)) {
            *bad = "each message needs a role: system, developer, user or assistant";
            rc = PT_EINVAL;
            break;
        }
        if (!strcmp(role, "developer")) role = "system";
        pt_buf_reset(&text);
        if (content_text(json_object_get(msg, "content"), &text, bad)) {
            rc = PT_EINVAL;
            break;
        }
        const char *t = text.data ? text.data : "";
        rc = !strcmp(role, "assistant") ? assistant_msg(tok, kind, t, text.len, out, &tmp, err)
                                        : other_msg(tok, kind, role, t, text.len, out, err);
        if (rc) break;
    }
    if (!rc && gen) rc = enc(tok, out, gen_prompt(kind), strlen(gen_prompt(kind)), 0, 1, 0, err);
    pt_buf_free(&text);
    pt_buf_free(&tmp);
    return rc;
}
