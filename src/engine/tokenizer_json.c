/* tokenizer_json.c — loads Hugging Face tokenizer.json (+ tokenizer_config.json) and GGUF
 * tokenizer vocabularies into the representation of tokenizer_internal.h. Every error names
 * the file and the JSON path of the offending value. See tokenizer.h. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/fileio.h"
#include "common/json.h"
#include "engine/tokenizer_internal.h"

#define TK_MAX_FILE ((size_t)1 << 29) /* 512 MiB: the largest tokenizer.json files are ~20 MB */

typedef struct ctx {
    pt_tokenizer *t;
    const char *what;
    pt_err *err;
} ctx;

__attribute__((format(printf, 3, 4))) static int bad(ctx *c, const char *path, const char *fmt, ...) {
    char m[700];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(m, sizeof m, fmt, ap);
    va_end(ap);
    return pt_errf(c->err, PT_EFORMAT, "%s: %s: %s", c->what, path, m);
}

static int unsupported(ctx *c, const char *path, const char *kind) {
    return pt_errf(c->err, PT_EUNSUPPORTED, "%s: %s: unsupported type \"%s\"", c->what, path, kind);
}

/* Optional boolean member: absent or null → def. */
static int get_bool(ctx *c, json_t *o, const char *key, const char *path, int def, int *out) {
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) {
        *out = def;
        return PT_OK;
    }
    if (!json_is_boolean(v)) return bad(c, path, "\"%s\" must be a boolean", key);
    *out = json_is_true(v);
    return PT_OK;
}

/* Required string member (NUL-free: pt_json_parse rejects NUL). */
static int get_str(ctx *c, json_t *o, const char *key, const char *path, const char **out) {
    json_t *v = json_object_get(o, key);
    if (!json_is_string(v)) return bad(c, path, "\"%s\" must be a string", key);
    *out = json_string_value(v);
    return PT_OK;
}

static const char *type_of(json_t *o) {
    json_t *ty = json_object_get(o, "type");
    return json_is_string(ty) ? json_string_value(ty) : NULL;
}

/* A {"String": s} or {"Regex": r} pattern, compiled as a regex (a String is quoted). */
static int get_pattern(ctx *c, json_t *o, const char *path, pcre2_code **re) {
    json_t *p = json_object_get(o, "pattern");
    json_t *s = json_is_object(p) ? json_object_get(p, "String") : NULL;
    json_t *r = json_is_object(p) ? json_object_get(p, "Regex") : NULL;
    char msg[300];
    if (json_is_string(r)) {
        *re = tk_compile_regex(json_string_value(r), json_string_length(r), msg, sizeof msg);
    } else if (json_is_string(s)) {
        /* \Q...\E quotes a literal; a literal that itself holds "\E" is spelled out per char */
        pt_buf q;
        pt_buf_init(&q, 1 << 20);
        const char *lit = json_string_value(s);
        int rc = 0;
        for (const char *x = lit; *x && !rc; x++) {
            if ((*x >= 'a' && *x <= 'z') || (*x >= 'A' && *x <= 'Z') || (*x >= '0' && *x <= '9') || (unsigned char)*x >= 0x80)
                rc = pt_buf_append(&q, x, 1);
            else
                rc = pt_buf_printf(&q, "\\x{%02x}", (unsigned char)*x);
        }
        if (rc) {
            pt_buf_free(&q);
            return pt_errf(c->err, PT_ENOMEM, "%s: %s: pattern too long", c->what, path);
        }
        if (!q.len) {
            pt_buf_free(&q);
            return bad(c, path, "empty pattern");
        }
        *re = tk_compile_regex(q.data, q.len, msg, sizeof msg);
        pt_buf_free(&q);
    } else {
        return bad(c, path, "\"pattern\" must be {\"String\": ...} or {\"Regex\": ...}");
    }
    if (!*re) return bad(c, path, "pattern: %s", msg);
    return PT_OK;
}

/* ---- normalizer ---- */

static int load_normalizer(ctx *c, json_t *n, const char *path) {
    pt_tokenizer *t = c->t;
    if (!n || json_is_null(n)) return PT_OK;
    if (!json_is_object(n)) return bad(c, path, "must be an object or null");
    const char *ty = type_of(n);
    if (!ty) return bad(c, path, "\"type\" must be a string");
    char sub[256];
    if (!strcmp(ty, "Sequence")) {
        json_t *arr = json_object_get(n, "normalizers");
        if (!json_is_array(arr)) return bad(c, path, "\"normalizers\" must be an array");
        for (size_t i = 0; i < json_array_size(arr); i++) {
            snprintf(sub, sizeof sub, "%s.normalizers[%zu]", path, i);
            int rc = load_normalizer(c, json_array_get(arr, i), sub);
            if (rc) return rc;
        }
        return PT_OK;
    }
    if (t->n_norm == TK_MAX_OPS) return bad(c, path, "more than %d normalizer steps", TK_MAX_OPS);
    tk_op *op = &t->norm[t->n_norm];
    memset(op, 0, sizeof *op);
    const char *a = NULL, *b = NULL;
    if (!strcmp(ty, "Prepend")) {
        if (get_str(c, n, "prepend", path, &a)) return c->err->code;
        op->kind = TKN_PREPEND;
        op->a = strdup(a);
    } else if (!strcmp(ty, "Replace")) {
        json_t *p = json_object_get(n, "pattern");
        json_t *s = json_is_object(p) ? json_object_get(p, "String") : NULL, *re = json_is_object(p) ? json_object_get(p, "Regex") : NULL;
        if (!json_is_string(s) && !json_is_string(re)) return bad(c, path, "\"pattern\" must be {\"String\": ...} or {\"Regex\": ...}");
        if (get_str(c, n, "content", path, &b)) return c->err->code;
        if (!json_string_length(s ? s : re)) return bad(c, path, "empty pattern");
        op->kind = s ? TKN_REPLACE : TKN_REPLACE_RE;
        op->a = strdup(json_string_value(s ? s : re));
        op->b = strdup(b);
        if (!op->b) return pt_errf(c->err, PT_ENOMEM, "out of memory");
        char msg[300];
        if (re && !(op->re = tk_compile_regex(json_string_value(re), json_string_length(re), msg, sizeof msg))) {
            free(op->a), free(op->b);
            return bad(c, path, "pattern: %s", msg);
        }
    } else if (!strcmp(ty, "Strip")) {
        json_t *l = json_object_get(n, "strip_left"), *r = json_object_get(n, "strip_right");
        if ((l && !json_is_boolean(l)) || (r && !json_is_boolean(r))) return bad(c, path, "\"strip_left\"/\"strip_right\" must be booleans");
        op->kind = TKN_STRIP, op->left = json_is_true(l), op->right = json_is_true(r);
        op->a = strdup("");
    } else {
        static const struct { const char *name; int kind; } plain[] = {
            {"NFC", TKN_NFC},           {"NFD", TKN_NFD},
            {"NFKC", TKN_NFKC},         {"NFKD", TKN_NFKD},
            {"Lowercase", TKN_LOWERCASE}, {"StripAccents", TKN_STRIP_ACCENTS}};
        for (size_t i = 0; i < sizeof plain / sizeof *plain && !op->kind; i++)
            if (!strcmp(ty, plain[i].name)) op->kind = plain[i].kind, op->a = strdup("");
        if (!op->kind) return unsupported(c, path, ty);
    }
    if (!op->a) return pt_errf(c->err, PT_ENOMEM, "out of memory");
    t->n_norm++;
    return PT_OK;
}

/* ---- pre-tokenizer ---- */

static int parse_scheme(ctx *c, json_t *n, const char *path, int *scheme) {
    json_t *ps = json_object_get(n, "prepend_scheme");
    if (ps && !json_is_null(ps)) {
        const char *s = json_string_value(ps);
        if (!s) return bad(c, path, "\"prepend_scheme\" must be a string");
        if (!strcmp(s, "always")) *scheme = TKM_ALWAYS;
        else if (!strcmp(s, "first")) *scheme = TKM_FIRST;
        else if (!strcmp(s, "never")) *scheme = TKM_NEVER;
        else return bad(c, path, "unknown prepend_scheme \"%s\"", s);
        return PT_OK;
    }
    int aps; /* older files: add_prefix_space */
    if (get_bool(c, n, "add_prefix_space", path, 1, &aps)) return c->err->code;
    *scheme = aps ? TKM_ALWAYS : TKM_NEVER;
    return PT_OK;
}

static int load_pre(ctx *c, json_t *n, const char *path) {
    pt_tokenizer *t = c->t;
    if (!n || json_is_null(n)) return PT_OK;
    if (!json_is_object(n)) return bad(c, path, "must be an object or null");
    const char *ty = type_of(n);
    if (!ty) return bad(c, path, "\"type\" must be a string");
    char sub[256];
    if (!strcmp(ty, "Sequence")) {
        json_t *arr = json_object_get(n, "pretokenizers");
        if (!json_is_array(arr)) return bad(c, path, "\"pretokenizers\" must be an array");
        for (size_t i = 0; i < json_array_size(arr); i++) {
            snprintf(sub, sizeof sub, "%s.pretokenizers[%zu]", path, i);
            int rc = load_pre(c, json_array_get(arr, i), sub);
            if (rc) return rc;
        }
        return PT_OK;
    }
    if (t->n_pre == TK_MAX_OPS) return bad(c, path, "more than %d pre-tokenizer steps", TK_MAX_OPS);
    tk_op *op = &t->pre[t->n_pre];
    memset(op, 0, sizeof *op);
    if (!strcmp(ty, "ByteLevel")) {
        int use_regex = 1;
        op->kind = TKP_BYTELEVEL;
        if (get_bool(c, n, "add_prefix_space", path, 1, &op->add_prefix_space) ||
            get_bool(c, n, "use_regex", path, 1, &use_regex))
            return c->err->code;
        char msg[300];
        if (use_regex && !(op->re = tk_compile_regex(tk_gpt2_pattern, strlen(tk_gpt2_pattern), msg, sizeof msg)))
            return pt_errf(c->err, PT_EINTERNAL, "GPT-2 pattern: %s", msg);
        t->byte_level = 1;
    } else if (!strcmp(ty, "Split")) {
        op->kind = TKP_SPLIT;
        json_t *bh = json_object_get(n, "behavior");
        const char *b = json_string_value(bh);
        if (!b) return bad(c, path, "\"behavior\" must be a string");
        if (!strcmp(b, "Isolated")) op->behavior = TKB_ISOLATED;
        else if (!strcmp(b, "Removed")) op->behavior = TKB_REMOVED;
        else if (!strcmp(b, "MergedWithPrevious")) op->behavior = TKB_MERGED_PREV;
        else if (!strcmp(b, "MergedWithNext")) op->behavior = TKB_MERGED_NEXT;
        else return pt_errf(c->err, PT_EUNSUPPORTED, "%s: %s.behavior: unsupported \"%s\"", c->what, path, b);
        if (get_bool(c, n, "invert", path, 0, &op->invert)) return c->err->code;
        if (get_pattern(c, n, path, &op->re)) return c->err->code;
    } else if (!strcmp(ty, "Metaspace")) {
        const char *r = NULL;
        op->kind = TKP_METASPACE;
        if (get_str(c, n, "replacement", path, &r) || parse_scheme(c, n, path, &op->prepend_scheme) ||
            get_bool(c, n, "split", path, 1, &op->split))
            return c->err->code;
        if (!*r) return bad(c, path, "empty replacement");
        if (!(op->a = strdup(r))) return pt_errf(c->err, PT_ENOMEM, "out of memory");
    } else if (!strcmp(ty, "Digits")) {
        op->kind = TKP_DIGITS;
        if (get_bool(c, n, "individual_digits", path, 0, &op->individual)) return c->err->code;
    } else {
        return unsupported(c, path, ty);
    }
    t->n_pre++;
    return PT_OK;
}

/* ---- decoder ---- */

static int load_decoder(ctx *c, json_t *n, const char *path) {
    pt_tokenizer *t = c->t;
    if (!n || json_is_null(n)) return PT_OK;
    if (!json_is_object(n)) return bad(c, path, "must be an object or null");
    const char *ty = type_of(n);
    if (!ty) return bad(c, path, "\"type\" must be a string");
    char sub[256];
    if (!strcmp(ty, "Sequence")) {
        json_t *arr = json_object_get(n, "decoders");
        if (!json_is_array(arr)) return bad(c, path, "\"decoders\" must be an array");
        for (size_t i = 0; i < json_array_size(arr); i++) {
            snprintf(sub, sizeof sub, "%s.decoders[%zu]", path, i);
            int rc = load_decoder(c, json_array_get(arr, i), sub);
            if (rc) return rc;
        }
        return PT_OK;
    }
    if (t->n_dec == TK_MAX_OPS) return bad(c, path, "more than %d decoder steps", TK_MAX_OPS);
    tk_dec *d = &t->dec[t->n_dec];
    memset(d, 0, sizeof *d);
    const char *a = NULL;
    if (!strcmp(ty, "ByteLevel")) {
        d->kind = TKD_BYTELEVEL;
    } else if (!strcmp(ty, "ByteFallback")) {
        d->kind = TKD_BYTEFALLBACK;
    } else if (!strcmp(ty, "Fuse")) {
        d->kind = TKD_FUSE;
    } else if (!strcmp(ty, "Replace")) {
        json_t *p = json_object_get(n, "pattern");
        json_t *s = json_is_object(p) ? json_object_get(p, "String") : NULL;
        if (!json_is_string(s) || !json_string_length(s)) return bad(c, path, "\"pattern\" must be {\"String\": non-empty}");
        if (get_str(c, n, "content", path, &a)) return c->err->code;
        d->kind = TKD_REPLACE;
        d->a = strdup(json_string_value(s));
        d->b = strdup(a);
        if (!d->a || !d->b) return pt_errf(c->err, PT_ENOMEM, "out of memory");
    } else if (!strcmp(ty, "Strip")) {
        json_t *st = json_object_get(n, "start"), *sp = json_object_get(n, "stop");
        if (get_str(c, n, "content", path, &a)) return c->err->code;
        if (!json_is_integer(st) || !json_is_integer(sp) || json_integer_value(st) < 0 || json_integer_value(sp) < 0 ||
            json_integer_value(st) > 64 || json_integer_value(sp) > 64)
            return bad(c, path, "\"start\" and \"stop\" must be integers in 0..64");
        d->kind = TKD_STRIP;
        d->start = (int)json_integer_value(st);
        d->stop = (int)json_integer_value(sp);
        if (!(d->a = strdup(a))) return pt_errf(c->err, PT_ENOMEM, "out of memory");
    } else if (!strcmp(ty, "Metaspace")) {
        int scheme = TKM_ALWAYS;
        if (get_str(c, n, "replacement", path, &a) || parse_scheme(c, n, path, &scheme)) return c->err->code;
        if (!*a) return bad(c, path, "empty replacement");
        d->kind = TKD_METASPACE;
        d->start = scheme != TKM_NEVER;
        if (!(d->a = strdup(a))) return pt_errf(c->err, PT_ENOMEM, "out of memory");
    } else {
        return unsupported(c, path, ty);
    }
    t->n_dec++;
    return PT_OK;
}

/* ---- post-processor ---- */

static int special_id(ctx *c, json_t *specials, const char *name, const char *path, int32_t *id) {
    json_t *e = json_is_object(specials) ? json_object_get(specials, name) : NULL;
    json_t *ids = json_is_object(e) ? json_object_get(e, "ids") : NULL;
    if (json_is_array(ids) && json_array_size(ids) == 1 && json_is_integer(json_array_get(ids, 0))) {
        json_int_t v = json_integer_value(json_array_get(ids, 0));
        if (v < 0 || (size_t)v >= c->t->n_vocab) return bad(c, path, "special token \"%s\" has id %lld out of range", name, (long long)v);
        *id = (int32_t)v;
        return PT_OK;
    }
    int32_t v = tk_lookup(c->t, name, strlen(name));
    if (v < 0) return bad(c, path, "special token \"%s\" is not defined", name);
    *id = v;
    return PT_OK;
}

static int load_post(ctx *c, json_t *n, const char *path) {
    pt_tokenizer *t = c->t;
    if (!n || json_is_null(n)) return PT_OK;
    if (!json_is_object(n)) return bad(c, path, "must be an object or null");
    const char *ty = type_of(n);
    if (!ty) return bad(c, path, "\"type\" must be a string");
    char sub[256];
    if (!strcmp(ty, "Sequence")) {
        json_t *arr = json_object_get(n, "processors");
        if (!json_is_array(arr)) return bad(c, path, "\"processors\" must be an array");
        for (size_t i = 0; i < json_array_size(arr); i++) {
            snprintf(sub, sizeof sub, "%s.processors[%zu]", path, i);
            int rc = load_post(c, json_array_get(arr, i), sub);
            if (rc) return rc;
        }
        return PT_OK;
    }
    if (!strcmp(ty, "ByteLevel")) return PT_OK; /* offsets only */
    if (!strcmp(ty, "TemplateProcessing")) {
        json_t *single = json_object_get(n, "single"), *specials = json_object_get(n, "special_tokens");
        if (!json_is_array(single)) return bad(c, path, "\"single\" must be an array");
        int seen_seq = 0;
        t->n_prefix = t->n_suffix = 0;
        for (size_t i = 0; i < json_array_size(single); i++) {
            json_t *e = json_array_get(single, i);
            snprintf(sub, sizeof sub, "%s.single[%zu]", path, i);
            json_t *sp = json_is_object(e) ? json_object_get(e, "SpecialToken") : NULL;
            json_t *sq = json_is_object(e) ? json_object_get(e, "Sequence") : NULL;
            if (sq) {
                if (seen_seq) return bad(c, sub, "more than one sequence");
                seen_seq = 1;
                continue;
            }
            const char *name = json_is_object(sp) ? json_string_value(json_object_get(sp, "id")) : NULL;
            if (!name) return bad(c, sub, "must be {\"SpecialToken\": {\"id\": ...}} or {\"Sequence\": ...}");
            int32_t id = -1;
            if (special_id(c, specials, name, sub, &id)) return c->err->code;
            if (!seen_seq) {
                if (t->n_prefix == 8) return bad(c, sub, "more than 8 tokens before the sequence");
                t->prefix[t->n_prefix++] = id;
            } else {
                if (t->n_suffix == 8) return bad(c, sub, "more than 8 tokens after the sequence");
                t->suffix[t->n_suffix++] = id;
            }
        }
        if (t->n_prefix && t->bos < 0) t->bos = t->prefix[0];
        return PT_OK;
    }
    if (!strcmp(ty, "RobertaProcessing") || !strcmp(ty, "BertProcessing")) {
        json_t *cls = json_object_get(n, "cls"), *sep = json_object_get(n, "sep");
        if (!json_is_array(cls) || !json_is_array(sep) || !json_is_integer(json_array_get(cls, 1)) ||
            !json_is_integer(json_array_get(sep, 1)))
            return bad(c, path, "\"cls\" and \"sep\" must be [token, id]");
        json_int_t ci = json_integer_value(json_array_get(cls, 1)), si = json_integer_value(json_array_get(sep, 1));
        if (ci < 0 || si < 0 || (size_t)ci >= t->n_vocab || (size_t)si >= t->n_vocab) return bad(c, path, "cls/sep id out of range");
        t->prefix[0] = (int32_t)ci;
        t->suffix[0] = (int32_t)si;
        t->n_prefix = t->n_suffix = 1;
        return PT_OK;
    }
    return unsupported(c, path, ty);
}

/* ---- model ---- */

static int load_model(ctx *c, json_t *m, json_t *added) {
    pt_tokenizer *t = c->t;
    if (!json_is_object(m)) return bad(c, "model", "must be an object");
    const char *ty = type_of(m);
    if (ty && strcmp(ty, "BPE")) return unsupported(c, "model.type", ty);
    json_t *vocab = json_object_get(m, "vocab"), *merges = json_object_get(m, "merges");
    if (!json_is_object(vocab)) return bad(c, "model.vocab", "must be an object of token: id");
    if (!json_is_array(merges)) return bad(c, "model.merges", "must be an array");
    const char *key;
    json_t *v;
    char path[300];
    json_object_foreach(vocab, key, v) {
        if (!json_is_integer(v)) {
            snprintf(path, sizeof path, "model.vocab[\"%.200s\"]", key);
            return bad(c, path, "id must be an integer");
        }
        json_int_t id = json_integer_value(v);
        if (id < 0 || id >= (json_int_t)TK_MAX_VOCAB || tk_set_token(t, (int32_t)id, key, strlen(key), 0, c->err)) {
            snprintf(path, sizeof path, "model.vocab[\"%.200s\"]", key);
            if (id < 0 || id >= (json_int_t)TK_MAX_VOCAB) return bad(c, path, "id %lld out of range", (long long)id);
            pt_err_prefix(c->err, "%s: %s", c->what, path);
            return c->err->code;
        }
    }
    /* added tokens may extend the vocabulary (Llama-3's specials are only there) */
    if (added && !json_is_null(added) && !json_is_array(added)) return bad(c, "added_tokens", "must be an array");
    for (size_t i = 0; i < json_array_size(added); i++) {
        json_t *a = json_array_get(added, i);
        snprintf(path, sizeof path, "added_tokens[%zu]", i);
        json_t *id = json_object_get(a, "id"), *content = json_object_get(a, "content");
        if (!json_is_integer(id) || !json_is_string(content)) return bad(c, path, "needs an integer \"id\" and a string \"content\"");
        json_int_t iv = json_integer_value(id);
        if (iv < 0 || iv >= (json_int_t)TK_MAX_VOCAB) return bad(c, path, "id %lld out of range", (long long)iv);
        if (tk_set_token(t, (int32_t)iv, json_string_value(content), json_string_length(content), 1, c->err)) {
            pt_err_prefix(c->err, "%s: %s", c->what, path);
            return c->err->code;
        }
    }
    if (tk_finish_vocab(t, c->err)) {
        pt_err_prefix(c->err, "%s: model.vocab", c->what);
        return c->err->code;
    }
    if (tk_reserve_merges(t, json_array_size(merges))) return pt_errf(c->err, PT_ENOMEM, "%s: too many merges", c->what);
    for (size_t i = 0; i < json_array_size(merges); i++) {
        json_t *e = json_array_get(merges, i);
        snprintf(path, sizeof path, "model.merges[%zu]", i);
        const char *l, *r;
        size_t ll, rl;
        if (json_is_string(e)) { /* "left right" */
            const char *s = json_string_value(e), *sp = strchr(s, ' ');
            if (!sp || sp == s || !sp[1] || strchr(sp + 1, ' ')) return bad(c, path, "must be \"LEFT RIGHT\"");
            l = s, ll = (size_t)(sp - s), r = sp + 1, rl = strlen(sp + 1);
        } else if (json_is_array(e) && json_array_size(e) == 2 && json_is_string(json_array_get(e, 0)) &&
                   json_is_string(json_array_get(e, 1))) { /* ["left", "right"] */
            l = json_string_value(json_array_get(e, 0)), ll = json_string_length(json_array_get(e, 0));
            r = json_string_value(json_array_get(e, 1)), rl = json_string_length(json_array_get(e, 1));
        } else {
            return bad(c, path, "must be \"LEFT RIGHT\" or [\"LEFT\", \"RIGHT\"]");
        }
        int32_t li = tk_lookup(t, l, ll), ri = tk_lookup(t, r, rl);
        if (li < 0 || ri < 0) return bad(c, path, "%s is not in the vocabulary", li < 0 ? "left" : "right");
        if (ll + rl > TK_MAX_TOKEN_LEN) return bad(c, path, "merged token too long");
        char small[256], *buf = ll + rl <= sizeof small ? small : malloc(ll + rl);
        if (!buf) return pt_errf(c->err, PT_ENOMEM, "out of memory");
        memcpy(buf, l, ll);
        memcpy(buf + ll, r, rl);
        int32_t mi = tk_lookup(t, buf, ll + rl);
        if (buf != small) free(buf);
        if (mi < 0) return bad(c, path, "the merged token is not in the vocabulary");
        if (tk_add_merge(t, li, ri, mi, (int32_t)i)) return pt_errf(c->err, PT_ENOMEM, "out of memory");
    }
    json_t *unk = json_object_get(m, "unk_token");
    if (unk && !json_is_null(unk)) {
        if (!json_is_string(unk)) return bad(c, "model.unk_token", "must be a string or null");
        t->unk_id = tk_lookup(t, json_string_value(unk), json_string_length(unk));
        if (t->unk_id < 0) return bad(c, "model.unk_token", "\"%s\" is not in the vocabulary", json_string_value(unk));
    }
    json_t *csp = json_object_get(m, "continuing_subword_prefix"), *eow = json_object_get(m, "end_of_word_suffix");
    if ((json_is_string(csp) && json_string_length(csp)) || (json_is_string(eow) && json_string_length(eow)))
        return pt_errf(c->err, PT_EUNSUPPORTED, "%s: model: continuing_subword_prefix/end_of_word_suffix are not supported", c->what);
    if (get_bool(c, m, "byte_fallback", "model", 0, &t->byte_fallback) || get_bool(c, m, "fuse_unk", "model", 0, &t->fuse_unk) ||
        get_bool(c, m, "ignore_merges", "model", 0, &t->ignore_merges))
        return c->err->code;
    for (size_t i = 0; i < json_array_size(added); i++) {
        json_t *a = json_array_get(added, i);
        snprintf(path, sizeof path, "added_tokens[%zu]", i);
        int special = 0, lstrip = 0, rstrip = 0;
        if (get_bool(c, a, "special", path, 0, &special) || get_bool(c, a, "lstrip", path, 0, &lstrip) ||
            get_bool(c, a, "rstrip", path, 0, &rstrip))
            return c->err->code;
        if (tk_add_added(t, (int32_t)json_integer_value(json_object_get(a, "id")), special, lstrip, rstrip, c->err)) {
            pt_err_prefix(c->err, "%s: %s", c->what, path);
            return c->err->code;
        }
    }
    tk_sort_added(t);
    return PT_OK;
}

/* The token string of a tokenizer_config.json entry: "x" or {"content": "x", ...}. */
static const char *config_token(json_t *v) {
    if (json_is_string(v)) return json_string_value(v);
    if (json_is_object(v)) return json_string_value(json_object_get(v, "content"));
    return NULL;
}

static int load_config(ctx *c, const char *cfg_path, int has_post) {
    pt_tokenizer *t = c->t;
    if (!pt_exists(cfg_path)) return PT_OK;
    json_t *cfg = pt_json_load_file(cfg_path, 64u << 20, c->err);
    if (!cfg) return c->err->code;
    int rc = PT_OK;
    ctx cc = {t, cfg_path, c->err};
    if (!json_is_object(cfg)) {
        rc = bad(&cc, "$", "must be an object");
        goto out;
    }
    json_t *tpl = json_object_get(cfg, "chat_template");
    if (json_is_string(tpl)) {
        t->chat_template = strdup(json_string_value(tpl));
    } else if (json_is_array(tpl)) { /* [{"name": "default", "template": ...}, ...] */
        for (size_t i = 0; i < json_array_size(tpl); i++) {
            json_t *e = json_array_get(tpl, i);
            const char *name = json_string_value(json_object_get(e, "name"));
            const char *body = json_string_value(json_object_get(e, "template"));
            if (body && (!t->chat_template || (name && !strcmp(name, "default")))) {
                free(t->chat_template);
                t->chat_template = strdup(body);
            }
            if (body && name && !strcmp(name, "tool_use")) {
                free(t->chat_template_tools);
                t->chat_template_tools = strdup(body);
            }
        }
    } else if (tpl && !json_is_null(tpl)) {
        rc = bad(&cc, "chat_template", "must be a string or a list of {name, template}");
        goto out;
    }
    static const char *const special_names[] = {"bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token"};
    json_t *vars = json_object();
    for (size_t i = 0; vars && i < sizeof special_names / sizeof *special_names; i++) {
        const char *v = config_token(json_object_get(cfg, special_names[i]));
        if (v && *v) json_object_set_new(vars, special_names[i], json_string(v));
    }
    free(t->chat_vars);
    t->chat_vars = vars ? json_dumps(vars, JSON_COMPACT) : NULL;
    json_decref(vars);
    const char *bos = config_token(json_object_get(cfg, "bos_token")), *eos = config_token(json_object_get(cfg, "eos_token"));
    if (bos && tk_lookup(t, bos, strlen(bos)) >= 0) t->bos = tk_lookup(t, bos, strlen(bos));
    if (eos && tk_lookup(t, eos, strlen(eos)) >= 0) t->eos = tk_lookup(t, eos, strlen(eos));
    int add_bos = 0, add_eos = 0;
    if (get_bool(&cc, cfg, "add_bos_token", "$", 0, &add_bos) || get_bool(&cc, cfg, "add_eos_token", "$", 0, &add_eos)) {
        rc = c->err->code;
        goto out;
    }
    /* Without a post-processor in tokenizer.json, the config's flags say what to add. */
    if (!has_post) {
        if (add_bos && t->bos >= 0) t->prefix[0] = t->bos, t->n_prefix = 1;
        if (add_eos && t->eos >= 0) t->suffix[0] = t->eos, t->n_suffix = 1;
    }
out:
    json_decref(cfg);
    return rc;
}

static void default_bos_eos(pt_tokenizer *t) {
    static const char *const bos_names[] = {"<|begin_of_text|>", "<s>", "<|startoftext|>", "<|endoftext|>"};
    static const char *const eos_names[] = {"<|end_of_text|>", "</s>", "<|endoftext|>", "<|im_end|>", "<eos>"};
    for (size_t i = 0; t->bos < 0 && i < sizeof bos_names / sizeof *bos_names; i++) t->bos = pt_tokenizer_token_id(t, bos_names[i]);
    for (size_t i = 0; t->eos < 0 && i < sizeof eos_names / sizeof *eos_names; i++) t->eos = pt_tokenizer_token_id(t, eos_names[i]);
}

static int from_gguf_json(json_t *root, const char *what, pt_tokenizer **out, pt_err *err);

static int parse_root(json_t *root, const char *what, const char *cfg_path, pt_tokenizer **out, pt_err *err) {
    if (!json_is_object(root)) return pt_errf(err, PT_EFORMAT, "%s: $: must be an object", what);
    if (json_object_get(root, "tokenizer.ggml.model")) return from_gguf_json(root, what, out, err);
    pt_tokenizer *t = tk_new();
    if (!t) return pt_errf(err, PT_ENOMEM, "out of memory");
    ctx c = {t, what, err};
    json_t *post = json_object_get(root, "post_processor");
    int rc = load_model(&c, json_object_get(root, "model"), json_object_get(root, "added_tokens"));
    if (!rc) rc = load_normalizer(&c, json_object_get(root, "normalizer"), "normalizer");
    if (!rc) rc = load_pre(&c, json_object_get(root, "pre_tokenizer"), "pre_tokenizer");
    if (!rc) rc = load_decoder(&c, json_object_get(root, "decoder"), "decoder");
    if (!rc) rc = load_post(&c, post, "post_processor");
    if (!rc && cfg_path) rc = load_config(&c, cfg_path, post && !json_is_null(post));
    if (!rc) default_bos_eos(t);
    if (rc) {
        pt_tokenizer_free(t);
        return rc;
    }
    *out = t;
    return PT_OK;
}

int pt_tokenizer_parse(const char *json, size_t len, const char *what, pt_tokenizer **out, pt_err *err) {
    pt_err local;
    if (!err) err = &local;
    *out = NULL;
    json_t *root = pt_json_parse_config(json, len, PT_JSON_MAX_DEPTH, what, err);
    if (!root) return err ? err->code : PT_EFORMAT;
    int rc = parse_root(root, what, NULL, out, err);
    json_decref(root);
    return rc;
}

int pt_tokenizer_load(const char *path, pt_tokenizer **out, pt_err *err) {
    pt_err local;
    if (!err) err = &local;
    *out = NULL;
    struct stat st;
    char *file = NULL;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) file = pt_path_join(path, "tokenizer.json");
    else file = strdup(path);
    if (!file) return pt_errf(err, PT_ENOMEM, "out of memory");
    /* tokenizer_config.json lives beside tokenizer.json */
    char *dir = strdup(file), *slash = dir ? strrchr(dir, '/') : NULL;
    char *cfg = NULL;
    if (dir) {
        if (slash) *slash = 0;
        cfg = pt_path_join(slash ? dir : ".", "tokenizer_config.json");
    }
    free(dir);
    json_t *root = pt_json_load_file(file, TK_MAX_FILE, err);
    int rc = root ? parse_root(root, file, cfg, out, err) : (err ? err->code : PT_EFORMAT);
    json_decref(root);
    free(cfg);
    free(file);
    return rc;
}

/* ---- GGUF vocabularies ---- */

static int add_op_bytelevel(pt_tokenizer *t, const char *pattern, pt_err *err) {
    char msg[300];
    tk_op *op = &t->pre[t->n_pre];
    memset(op, 0, sizeof *op);
    op->kind = TKP_SPLIT;
    op->behavior = TKB_ISOLATED;
    if (!(op->re = tk_compile_regex(pattern, strlen(pattern), msg, sizeof msg))) return pt_errf(err, PT_EINTERNAL, "%s", msg);
    t->n_pre++;
    t->byte_level = 1;
    t->dec[t->n_dec++].kind = TKD_BYTELEVEL;
    return PT_OK;
}

/* The regex of a tokenizer.ggml.pre name: llama.cpp's names (llama-vocab.cpp) of the GPT-2,
 * Llama 3 and Qwen2 pre-tokenizer types, "default" (read as GPT-2's) and "gpt2" (what parity
 * wrote before it used llama.cpp's "gpt-2"). NULL for any other name. */
static const char *ggml_pre_pattern(const char *pre, int *ignore_merges) {
    static const char *const gpt2[] = {"default", "gpt-2", "gpt2", "phi-2", "jina-es", "jina-de", "gigachat",
                                       "jina-v2-es", "jina-v2-de", "a.x-4.0", "mellum", "exaone4"};
    static const char *const llama3[] = {"llama-bpe", "llama3", "llama-v3", "smaug-bpe", "falcon3",
                                         "falcon-h1", "pixtral", "midm-2.0", "lfm2"};
    static const char *const qwen2[] = {"qwen2", "deepseek-r1-qwen", "kormo", "megrez"};
    for (size_t i = 0; i < sizeof gpt2 / sizeof *gpt2; i++)
        if (!strcmp(pre, gpt2[i])) return tk_gpt2_pattern;
    for (size_t i = 0; i < sizeof llama3 / sizeof *llama3; i++)
        if (!strcmp(pre, llama3[i])) return *ignore_merges = 1, tk_llama3_pattern;
    for (size_t i = 0; i < sizeof qwen2 / sizeof *qwen2; i++)
        if (!strcmp(pre, qwen2[i])) return tk_qwen2_pattern;
    return NULL;
}

int pt_tokenizer_from_vocab(const pt_vocab_spec *s, pt_tokenizer **out, pt_err *err) {
    pt_err local;
    if (!err) err = &local;
    *out = NULL;
    int spm;
    if (!s->model) return pt_errf(err, PT_EINVAL, "tokenizer.ggml.model missing");
    if (!strcmp(s->model, "llama")) spm = 1;
    else if (!strcmp(s->model, "gpt2")) spm = 0;
    else return pt_errf(err, PT_EUNSUPPORTED, "tokenizer.ggml.model \"%s\" is not supported (llama, gpt2 are)", s->model);
    if (!s->n_tokens || s->n_tokens > TK_MAX_VOCAB) return pt_errf(err, PT_EFORMAT, "tokenizer.ggml.tokens: %zu tokens", s->n_tokens);
    pt_tokenizer *t = tk_new();
    if (!t) return pt_errf(err, PT_ENOMEM, "out of memory");
    int rc = PT_OK;
    for (size_t i = 0; i < s->n_tokens && !rc; i++) {
        if (!s->tokens[i]) rc = pt_errf(err, PT_EFORMAT, "tokenizer.ggml.tokens[%zu]: missing", i);
        else if ((rc = tk_set_token(t, (int32_t)i, s->tokens[i], strlen(s->tokens[i]), 0, err)))
            pt_err_prefix(err, "tokenizer.ggml.tokens[%zu]", i);
    }
    if (!rc) rc = tk_finish_vocab(t, err);
    if (!rc && t->n_vocab != s->n_tokens) {
        /* tk_finish_vocab trims trailing empty ids; GGUF ids are dense, keep them all */
        t->n_vocab = s->n_tokens;
    }
    for (size_t i = 0; i < s->n_tokens && !rc && s->types; i++) {
        int32_t ty = s->types[i];
        if (ty < 1 || ty > 6) rc = pt_errf(err, PT_EFORMAT, "tokenizer.ggml.token_type[%zu]: unknown type %ld", i, (long)ty);
        else if (ty == PT_TOKTYPE_CONTROL || ty == PT_TOKTYPE_USER) {
            if (t->tok[i].len) rc = tk_add_added(t, (int32_t)i, ty == PT_TOKTYPE_CONTROL, 0, 0, err);
            else if (ty == PT_TOKTYPE_CONTROL) t->attr[i] |= TKA_SPECIAL;
        }
    }
    tk_sort_added(t);
    if (!rc && spm) {
        if (!s->scores) rc = pt_errf(err, PT_EFORMAT, "tokenizer.ggml.scores: required for model \"llama\"");
        for (size_t i = 0; i < s->n_tokens && !rc; i++)
            if (s->scores[i] != s->scores[i]) rc = pt_errf(err, PT_EFORMAT, "tokenizer.ggml.scores[%zu]: NaN", i);
        if (!rc) rc = tk_merges_from_scores(t, s->scores, err);
        if (!rc) {
            t->byte_fallback = 1;
            tk_op *op = &t->pre[t->n_pre++];
            memset(op, 0, sizeof *op);
            op->kind = TKP_METASPACE;
            op->prepend_scheme = TKM_FIRST;
            op->split = 0;
            tk_dec *d0 = &t->dec[t->n_dec++], *d1 = &t->dec[t->n_dec++];
            memset(d0, 0, sizeof *d0);
            memset(d1, 0, sizeof *d1);
            d0->kind = TKD_METASPACE;
            d0->start = 1;
            d1->kind = TKD_BYTEFALLBACK;
            if (!(op->a = strdup("\xe2\x96\x81")) || !(d0->a = strdup("\xe2\x96\x81"))) rc = pt_errf(err, PT_ENOMEM, "out of memory");
        }
    } else if (!rc) {
        const char *pre = s->pre ? s->pre : "default";
        const char *pat = ggml_pre_pattern(pre, &t->ignore_merges);
        if (!pat) rc = pt_errf(err, PT_EUNSUPPORTED, "tokenizer.ggml.pre \"%s\" is not supported", pre);
        if (!rc) rc = add_op_bytelevel(t, pat, err);
        if (!rc && tk_reserve_merges(t, s->n_merges)) rc = pt_errf(err, PT_ENOMEM, "out of memory");
        for (size_t i = 0; i < s->n_merges && !rc; i++) {
            const char *m = s->merges[i], *sp = m ? strchr(m, ' ') : NULL;
            if (!sp || sp == m || !sp[1]) {
                rc = pt_errf(err, PT_EFORMAT, "tokenizer.ggml.merges[%zu]: must be \"LEFT RIGHT\"", i);
                break;
            }
            size_t ll = (size_t)(sp - m), rl = strlen(sp + 1);
            int32_t li = tk_lookup(t, m, ll), ri = tk_lookup(t, sp + 1, rl), mi = -1;
            if (li >= 0 && ri >= 0 && ll + rl <= TK_MAX_TOKEN_LEN) {
                char *buf = malloc(ll + rl);
                if (!buf) {
                    rc = pt_errf(err, PT_ENOMEM, "out of memory");
                    break;
                }
                memcpy(buf, m, ll);
                memcpy(buf + ll, sp + 1, rl);
                mi = tk_lookup(t, buf, ll + rl);
                free(buf);
            }
            if (mi < 0) rc = pt_errf(err, PT_EFORMAT, "tokenizer.ggml.merges[%zu]: a part or the merged token is not in the vocabulary", i);
            else if (tk_add_merge(t, li, ri, mi, (int32_t)i)) rc = pt_errf(err, PT_ENOMEM, "out of memory");
        }
    }
    if (!rc) {
        int32_t n = (int32_t)s->n_tokens;
        if (s->bos_id >= n || s->eos_id >= n || s->unk_id >= n)
            rc = pt_errf(err, PT_EFORMAT, "tokenizer.ggml: bos/eos/unk id out of range");
        t->bos = s->bos_id >= 0 ? s->bos_id : -1;
        t->eos = s->eos_id >= 0 ? s->eos_id : -1;
        t->unk_id = s->unk_id >= 0 ? s->unk_id : -1;
        if (s->add_bos && t->bos >= 0) t->prefix[0] = t->bos, t->n_prefix = 1;
    }
    if (rc) {
        pt_tokenizer_free(t);
        return rc;
    }
    *out = t;
    return PT_OK;
}

/* GGUF tokenizer metadata as JSON: {"tokenizer.ggml.model": "llama", "tokenizer.ggml.tokens":
 * [...], "tokenizer.ggml.scores": [...], ...} — the keys and value types of GGUF. */
static int from_gguf_json(json_t *root, const char *what, pt_tokenizer **out, pt_err *err) {
    pt_vocab_spec s;
    memset(&s, 0, sizeof s);
    s.bos_id = s.eos_id = s.unk_id = -1;
    ctx c = {NULL, what, err};
    s.model = json_string_value(json_object_get(root, "tokenizer.ggml.model"));
    if (!s.model) return bad(&c, "tokenizer.ggml.model", "must be a string");
    json_t *pre = json_object_get(root, "tokenizer.ggml.pre");
    if (pre && !json_is_string(pre)) return bad(&c, "tokenizer.ggml.pre", "must be a string");
    s.pre = json_string_value(pre);
    json_t *toks = json_object_get(root, "tokenizer.ggml.tokens"), *scores = json_object_get(root, "tokenizer.ggml.scores");
    json_t *types = json_object_get(root, "tokenizer.ggml.token_type"), *merges = json_object_get(root, "tokenizer.ggml.merges");
    if (!json_is_array(toks) || !json_array_size(toks)) return bad(&c, "tokenizer.ggml.tokens", "must be a non-empty array of strings");
    size_t n = json_array_size(toks);
    if (n > TK_MAX_VOCAB) return bad(&c, "tokenizer.ggml.tokens", "more than %u tokens", TK_MAX_VOCAB);
    if (scores && (!json_is_array(scores) || json_array_size(scores) != n)) return bad(&c, "tokenizer.ggml.scores", "must be an array as long as tokens");
    if (types && (!json_is_array(types) || json_array_size(types) != n)) return bad(&c, "tokenizer.ggml.token_type", "must be an array as long as tokens");
    if (merges && !json_is_array(merges)) return bad(&c, "tokenizer.ggml.merges", "must be an array of strings");
    size_t nm = merges ? json_array_size(merges) : 0;
    const char **tv = calloc(n, sizeof *tv), **mv = calloc(nm + 1, sizeof *mv);
    float *sv = scores ? calloc(n, sizeof *sv) : NULL;
    int32_t *yv = types ? calloc(n, sizeof *yv) : NULL;
    int rc = PT_OK;
    char path[96];
    if (!tv || !mv || (scores && !sv) || (types && !yv)) rc = pt_errf(err, PT_ENOMEM, "out of memory");
    for (size_t i = 0; i < n && !rc; i++) {
        json_t *e = json_array_get(toks, i);
        snprintf(path, sizeof path, "tokenizer.ggml.tokens[%zu]", i);
        if (!json_is_string(e)) rc = bad(&c, path, "must be a string");
        else tv[i] = json_string_value(e);
        if (!rc && sv) {
            e = json_array_get(scores, i);
            snprintf(path, sizeof path, "tokenizer.ggml.scores[%zu]", i);
            if (!json_is_number(e)) rc = bad(&c, path, "must be a number");
            else sv[i] = (float)json_number_value(e);
        }
        if (!rc && yv) {
            e = json_array_get(types, i);
            snprintf(path, sizeof path, "tokenizer.ggml.token_type[%zu]", i);
            if (!json_is_integer(e) || json_integer_value(e) < 0 || json_integer_value(e) > 1000) rc = bad(&c, path, "must be a small integer");
            else yv[i] = (int32_t)json_integer_value(e);
        }
    }
    for (size_t i = 0; i < nm && !rc; i++) {
        json_t *e = json_array_get(merges, i);
        snprintf(path, sizeof path, "tokenizer.ggml.merges[%zu]", i);
        if (!json_is_string(e)) rc = bad(&c, path, "must be a string");
        else mv[i] = json_string_value(e);
    }
    static const char *const idkeys[] = {"tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id", "tokenizer.ggml.unknown_token_id"};
    int32_t *idp[] = {&s.bos_id, &s.eos_id, &s.unk_id};
    for (int k = 0; k < 3 && !rc; k++) {
        json_t *e = json_object_get(root, idkeys[k]);
        if (!e) continue;
        if (!json_is_integer(e) || json_integer_value(e) < 0 || (size_t)json_integer_value(e) >= n) rc = bad(&c, idkeys[k], "must be a token id");
        else *idp[k] = (int32_t)json_integer_value(e);
    }
    json_t *ab = json_object_get(root, "tokenizer.ggml.add_bos_token");
    if (!rc && ab && !json_is_boolean(ab)) rc = bad(&c, "tokenizer.ggml.add_bos_token", "must be a boolean");
    s.add_bos = ab ? json_is_true(ab) : !strcmp(s.model, "llama");
    if (!rc) {
        s.tokens = tv, s.scores = sv, s.types = yv, s.n_tokens = n, s.merges = mv, s.n_merges = nm;
        rc = pt_tokenizer_from_vocab(&s, out, err);
        if (rc) pt_err_prefix(err, "%s", what);
    }
    if (!rc) {
        json_t *tpl = json_object_get(root, "tokenizer.chat_template");
        if (json_is_string(tpl) && !((*out)->chat_template = strdup(json_string_value(tpl)))) {
            pt_tokenizer_free(*out);
            *out = NULL;
            rc = pt_errf(err, PT_ENOMEM, "out of memory");
        }
    }
    free(tv), free(mv), free(sv), free(yv);
    return rc;
}
