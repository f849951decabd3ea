/* Jinja values: allocation in the render's arena, strings with per-byte origins, and the
 * JavaScript conversions @huggingface/jinja's output depends on (number printing, String(),
 * JSON.stringify, loose equality). See jinja.h. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "engine/jinja_internal.h"

void jj_fail(jj_rt *rt, int code, size_t pos, const char *fmt, ...) {
    char msg[700];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    size_t line, col;
    jj_line_col(rt->t, pos, &line, &col);
    pt_errf(rt->err, code, "chat template: line %zu, column %zu: %s", line, col, msg);
    rt->code = code;
    longjmp(rt->fail, 1);
}

void *jj_alloc(jj_rt *rt, size_t n, size_t pos) {
    void *p = jj_arena_alloc(rt->ar, n);
    if (!p) jj_fail(rt, PT_ELIMIT, pos, "the template used more memory than allowed");
    return p;
}

jv *jv_new(jj_rt *rt, jv_type t) {
    jv *v = jj_alloc(rt, sizeof *v, 0);
    v->t = t;
    return v;
}

jv *jv_num(jj_rt *rt, jv_type t, double x) {
    jv *v = jv_new(rt, t);
    v->num = x;
    return v;
}

jv *jv_str(jj_rt *rt, jstr s) {
    jv *v = jv_new(rt, V_STR);
    v->str = s;
    return v;
}

jv *jv_cstr(jj_rt *rt, const char *s, size_t n) {
    char *c = jj_alloc(rt, n + 1, 0);
    memcpy(c, s, n);
    return jv_str(rt, (jstr){c, NULL, n});
}

jv *jv_bool(jj_rt *rt, int b) { return b ? rt->yes : rt->no; }

jv *jv_arr(jj_rt *rt, size_t cap) {
    jv *v = jv_new(rt, V_ARR);
    if (cap) v->items = jj_alloc(rt, cap * sizeof *v->items, 0), v->cap = cap;
    return v;
}

static void grow(jj_rt *rt, jv *v, int keys) {
    size_t nc = v->cap ? v->cap * 2 : 4;
    jv **ni = jj_alloc(rt, nc * sizeof *ni, 0);
    if (v->n) memcpy(ni, v->items, v->n * sizeof *ni);
    v->items = ni;
    if (keys) {
        jstr *nk = jj_alloc(rt, nc * sizeof *nk, 0);
        if (v->n) memcpy(nk, v->keys, v->n * sizeof *nk);
        v->keys = nk;
    }
    v->cap = nc;
}

void jv_push(jj_rt *rt, jv *arr, jv *item) {
    if (arr->n == arr->cap) grow(rt, arr, 0);
    arr->items[arr->n++] = item;
}

jv *jv_obj(jj_rt *rt, jv_type t) { return jv_new(rt, t); }

jv *jv_get(const jv *o, const char *k, size_t kn) {
    for (size_t i = 0; i < o->n; i++)
        if (o->keys[i].n == kn && !memcmp(o->keys[i].s, k, kn)) return o->items[i];
    return NULL;
}

void jv_set(jj_rt *rt, jv *o, jstr k, jv *val) {
    for (size_t i = 0; i < o->n; i++)
        if (o->keys[i].n == k.n && !memcmp(o->keys[i].s, k.s, k.n)) {
            o->items[i] = val;
            return;
        }
    if (o->n == o->cap) grow(rt, o, 1);
    o->keys[o->n] = k;
    o->items[o->n++] = val;
}

int jv_truthy(const jv *v) {
    switch (v->t) {
    case V_UNDEF:
    case V_NULL: return 0;
    case V_BOOL: return v->b;
    case V_INT:
    case V_FLOAT: return v->num != 0 && !isnan(v->num);
    case V_STR: return v->str.n > 0;
    case V_ARR:
    case V_OBJ: return v->n > 0;
    default: return 1; /* namespace (a Map: truthy in JavaScript), function */
    }
}

const char *jv_type_name(const jv *v) {
    static const char *names[] = {"UndefinedValue", "NullValue", "BooleanValue", "IntegerValue", "FloatValue",
                                  "StringValue",    "ArrayValue", "ObjectValue", "NamespaceValue", "FunctionValue"};
    return v->t == V_ARR && v->tuple ? "TupleValue" : names[v->t];
}

/* ---- strings with origins ---- */
void jsb_put(jj_rt *rt, jsb *b, const char *s, const uint16_t *org, size_t n, size_t pos) {
    if (!n) return;
    if (b->n + n > b->cap) {
        if (b->n + n > rt->max_output) jj_fail(rt, PT_ELIMIT, pos, "a string longer than %zu bytes", rt->max_output);
        size_t nc = (b->n + n) * 2 < 64 ? 64 : (b->n + n) * 2;
        if (nc > rt->max_output) nc = rt->max_output;
        char *ns = jj_alloc(rt, nc + 1, pos);
        if (b->n) memcpy(ns, b->s, b->n);
        b->s = ns;
        if (b->any_org) {
            uint16_t *no = jj_alloc(rt, nc * sizeof *no, pos);
            if (b->n) memcpy(no, b->org, b->n * sizeof *no);
            b->org = no;
        }
        b->cap = nc;
    }
    if (org && !b->any_org) {
        b->org = jj_alloc(rt, b->cap * sizeof *b->org, pos);
        b->any_org = 1;
    }
    memcpy(b->s + b->n, s, n);
    if (b->any_org) {
        if (org) memcpy(b->org + b->n, org, n * sizeof *org);
        else memset(b->org + b->n, 0, n * sizeof *org);
    }
    b->n += n;
}

void jsb_puts(jj_rt *rt, jsb *b, const char *s, size_t pos) { jsb_put(rt, b, s, NULL, strlen(s), pos); }

jstr jsb_str(jsb *b) { return (jstr){b->s ? b->s : "", b->any_org ? b->org : NULL, b->n}; }

jstr jstr_sub(jstr s, size_t from, size_t to) {
    return (jstr){s.s + from, s.org ? s.org + from : NULL, to - from};
}

uint16_t jstr_origin_of(jstr s) {
    uint16_t m = 0;
    if (s.org)
        for (size_t i = 0; i < s.n; i++)
            if (s.org[i] > m) m = s.org[i];
    return m;
}

jstr jstr_with_origin(jj_rt *rt, const char *s, size_t n, uint16_t org) {
    char *c = jj_alloc(rt, n + 1, 0);
    memcpy(c, s, n);
    uint16_t *o = NULL;
    if (org) {
        o = jj_alloc(rt, (n ? n : 1) * sizeof *o, 0);
        for (size_t i = 0; i < n; i++) o[i] = org;
    }
    return (jstr){c, o, n};
}

size_t jj_utf16_len(jstr s) {
    size_t n = 0;
    for (size_t i = 0; i < s.n;) {
        uint32_t c;
        i += jj_utf8_dec(s.s + i, s.n - i, &c);
        n += c >= 0x10000 ? 2 : 1;
    }
    return n;
}

static size_t ws_end(const char *s, size_t n) {
    uint32_t c;
    size_t k = jj_utf8_dec(s, n, &c);
    return k && jj_is_ws(c) ? k : 0;
}

jstr jj_trim(jstr s, int left, int right) {
    size_t a = 0, b = s.n, k;
    if (left)
        while (a < b && (k = ws_end(s.s + a, b - a))) a += k;
    if (right)
        while (b > a) {
            size_t j = 1;
            while (j < 4 && j < b - a && ((unsigned char)s.s[b - j] & 0xc0) == 0x80) j++;
            if (ws_end(s.s + b - j, j) != j) break;
            b -= j;
        }
    return jstr_sub(s, a, b);
}

jv *jj_case(jj_rt *rt, jstr s, int upper) {
    jsb b = {0};
    uint16_t org = jstr_origin_of(s);
    for (size_t i = 0; i < s.n;) {
        uint32_t c;
        i += jj_utf8_dec(s.s + i, s.n - i, &c);
        utf8proc_int32_t m = upper ? utf8proc_toupper((utf8proc_int32_t)c) : utf8proc_tolower((utf8proc_int32_t)c);
        utf8proc_uint8_t u[4];
        utf8proc_ssize_t k = utf8proc_encode_char(m, u);
        jsb_put(rt, &b, (const char *)u, NULL, (size_t)k, 0);
    }
    jstr r = jsb_str(&b);
    if (org) r = jstr_with_origin(rt, r.s, r.n, org);
    return jv_str(rt, r);
}

/* ---- numbers as JavaScript prints them ---- */
void jj_num_str(double x, char *buf) {
    if (isnan(x)) {
        strcpy(buf, "NaN");
        return;
    }
    if (x == 0) {
        strcpy(buf, "0");
        return;
    }
    char *o = buf;
    if (x < 0) *o++ = '-', x = -x;
    if (isinf(x)) {
        strcpy(o, "Infinity");
        return;
    }
    char tmp[40], digits[20];
    int k = 0, e = 0;
    for (int p = 1; p <= 17; p++) {
        snprintf(tmp, sizeof tmp, "%.*e", p - 1, x);
        if (strtod(tmp, NULL) == x || p == 17) break;
    }
    for (char *q = tmp; *q && *q != 'e'; q++)
        if (*q >= '0' && *q <= '9') digits[k++] = *q;
    e = atoi(strchr(tmp, 'e') + 1);
    while (k > 1 && digits[k - 1] == '0') k--;
    digits[k] = 0;
    int n = e + 1; /* x = 0.digits * 10^n */
    if (k <= n && n <= 21) {
        o += sprintf(o, "%s", digits);
        for (int i = k; i < n; i++) *o++ = '0';
        *o = 0;
    } else if (0 < n && n <= 21) {
        sprintf(o, "%.*s.%s", n, digits, digits + n);
    } else if (-6 < n && n <= 0) {
        o += sprintf(o, "0.");
        for (int i = 0; i < -n; i++) *o++ = '0';
        sprintf(o, "%s", digits);
    } else if (k == 1) {
        sprintf(o, "%se%c%d", digits, n - 1 >= 0 ? '+' : '-', abs(n - 1));
    } else {
        sprintf(o, "%c.%se%c%d", digits[0], digits + 1, n - 1 >= 0 ? '+' : '-', abs(n - 1));
    }
}

static void put_num(jj_rt *rt, jsb *b, double x, size_t pos) {
    char buf[64];
    jj_num_str(x, buf);
    jsb_puts(rt, b, buf, pos);
}

/* ---- String(), toString(), JSON ---- */
void jj_js_value_str(jj_rt *rt, jsb *b, const jv *v, size_t pos, int depth) {
    if (depth > JJ_MAX_DEPTH) jj_fail(rt, PT_ELIMIT, pos, "a value nested more than %d deep", JJ_MAX_DEPTH);
    switch (v->t) {
    case V_UNDEF: jsb_puts(rt, b, "undefined", pos); break;
    case V_NULL: jsb_puts(rt, b, "null", pos); break;
    case V_BOOL: jsb_puts(rt, b, v->b ? "true" : "false", pos); break;
    case V_INT:
    case V_FLOAT: put_num(rt, b, v->num, pos); break;
    case V_STR: jsb_put(rt, b, v->str.s, v->str.org, v->str.n, pos); break;
    case V_ARR: /* Array.prototype.toString: each item's toString(), joined with "," */
        for (size_t i = 0; i < v->n; i++) {
            if (i) jsb_puts(rt, b, ",", pos);
            jj_to_string(rt, b, v->items[i], pos, depth + 1);
        }
        break;
    case V_OBJ:
    case V_NS: jsb_puts(rt, b, "[object Map]", pos); break;
    default: jsb_puts(rt, b, "function () { [native code] }", pos); break;
    }
}

void jj_to_string(jj_rt *rt, jsb *b, const jv *v, size_t pos, int depth) {
    if (v->t == V_FLOAT) {
        char buf[400];
        double x = v->num;
        if (x == 0 && signbit(x)) strcpy(buf, "-0.0");
        else if (isfinite(x) && x == floor(x) && fabs(x) < 1e21) snprintf(buf, sizeof buf, "%.1f", x);
        else jj_num_str(x, buf);
        jsb_puts(rt, b, buf, pos);
    } else if (v->t == V_ARR || v->t == V_OBJ || v->t == V_NS) {
        jj_json_opts o = {.item_sep = ", ", .key_sep = ": ", .item_sep_n = 2, .key_sep_n = 2, .undef_null = 0};
        jj_to_json(rt, b, v, &o, depth, pos);
    } else {
        jj_js_value_str(rt, b, v, pos, depth);
    }
}

static void json_str_out(jj_rt *rt, jsb *b, jstr s, int ascii, size_t pos) {
    jsb_puts(rt, b, "\"", pos);
    size_t run = 0;
    for (size_t i = 0; i < s.n;) {
        unsigned char c = (unsigned char)s.s[i];
        char esc[16] = "";
        uint32_t cp = c;
        size_t k = 1;
        if (c >= 0x80) k = jj_utf8_dec(s.s + i, s.n - i, &cp);
        if (c == '"') strcpy(esc, "\\\"");
        else if (c == '\\') strcpy(esc, "\\\\");
        else if (c == '\n') strcpy(esc, "\\n");
        else if (c == '\r') strcpy(esc, "\\r");
        else if (c == '\t') strcpy(esc, "\\t");
        else if (c == '\b') strcpy(esc, "\\b");
        else if (c == '\f') strcpy(esc, "\\f");
        else if (c < 0x20) snprintf(esc, sizeof esc, "\\u%04x", c);
        else if (ascii && cp >= 0x7f) {
            if (cp >= 0x10000)
                snprintf(esc, sizeof esc, "\\u%04x\\u%04x", 0xd800 + ((cp - 0x10000) >> 10), 0xdc00 + ((cp - 0x10000) & 0x3ff));
            else snprintf(esc, sizeof esc, "\\u%04x", cp);
        }
        if (esc[0]) {
            jsb_put(rt, b, s.s + i - run, s.org ? s.org + i - run : NULL, run, pos);
            run = 0;
            jsb_puts(rt, b, esc, pos);
        } else {
            run += k;
        }
        i += k;
    }
    jsb_put(rt, b, s.s + s.n - run, s.org ? s.org + s.n - run : NULL, run, pos);
    jsb_puts(rt, b, "\"", pos);
}

static void newline_indent(jj_rt *rt, jsb *b, long indent, int depth, size_t pos) {
    jsb_puts(rt, b, "\n", pos);
    for (long i = 0; i < indent * depth; i++) jsb_puts(rt, b, " ", pos);
}

static int key_cmp(const void *a, const void *b) {
    const jstr *x = *(const jstr *const *)a, *y = *(const jstr *const *)b;
    int c = memcmp(x->s, y->s, x->n < y->n ? x->n : y->n);
    return c ? c : (x->n > y->n) - (x->n < y->n);
}

void jj_to_json(jj_rt *rt, jsb *b, const jv *v, const jj_json_opts *o, int depth, size_t pos) {
    if (depth > JJ_MAX_DEPTH) jj_fail(rt, PT_ELIMIT, pos, "a value nested more than %d deep", JJ_MAX_DEPTH);
    if (++rt->steps > rt->max_steps) jj_fail(rt, PT_ELIMIT, pos, "more than %llu evaluation steps", (unsigned long long)rt->max_steps);
    switch (v->t) {
    case V_NULL: jsb_puts(rt, b, "null", pos); return;
    case V_UNDEF: jsb_puts(rt, b, o->undef_null ? "null" : "undefined", pos); return;
    case V_INT:
    case V_FLOAT:
        if (isfinite(v->num)) put_num(rt, b, v->num, pos);
        else jsb_puts(rt, b, "null", pos);
        return;
    case V_BOOL: jsb_puts(rt, b, v->b ? "true" : "false", pos); return;
    case V_STR: json_str_out(rt, b, v->str, o->ascii, pos); return;
    case V_ARR:
        if (v->tuple) break;
        jsb_puts(rt, b, "[", pos);
        for (size_t i = 0; i < v->n; i++) {
            if (i) jsb_put(rt, b, o->item_sep, NULL, o->item_sep_n, pos);
            if (o->indent > 0) newline_indent(rt, b, o->indent, depth + 1, pos);
            jj_to_json(rt, b, v->items[i], o, depth + 1, pos);
        }
        if (o->indent > 0 && v->n) newline_indent(rt, b, o->indent, depth, pos);
        jsb_puts(rt, b, "]", pos);
        return;
    case V_OBJ:
    case V_NS: {
        const jstr **order = jj_alloc(rt, (v->n ? v->n : 1) * sizeof *order, pos);
        for (size_t i = 0; i < v->n; i++) order[i] = &v->keys[i];
        if (o->sort_keys) qsort(order, v->n, sizeof *order, key_cmp);
        jsb_puts(rt, b, "{", pos);
        for (size_t i = 0; i < v->n; i++) {
            if (i) jsb_put(rt, b, o->item_sep, NULL, o->item_sep_n, pos);
            if (o->indent > 0) newline_indent(rt, b, o->indent, depth + 1, pos);
            json_str_out(rt, b, *order[i], o->ascii, pos);
            jsb_put(rt, b, o->key_sep, NULL, o->key_sep_n, pos);
            jj_to_json(rt, b, v->items[order[i] - v->keys], o, depth + 1, pos);
        }
        if (o->indent > 0 && v->n) newline_indent(rt, b, o->indent, depth, pos);
        jsb_puts(rt, b, "}", pos);
        return;
    }
    default: break;
    }
    jj_fail(rt, PT_EINVAL, pos, "cannot convert to JSON: %s", jv_type_name(v));
}

/* ---- the context from JSON ---- */
static int array_index_key(const char *k, unsigned long long *idx) {
    size_t n = strlen(k);
    if (!n || n > 10 || (n > 1 && k[0] == '0')) return 0;
    unsigned long long x = 0;
    for (size_t i = 0; i < n; i++) {
        if (k[i] < '0' || k[i] > '9') return 0;
        x = x * 10 + (unsigned long long)(k[i] - '0');
    }
    *idx = x;
    return x < 4294967295ull;
}

typedef struct {
    unsigned long long x;
    const char *k;
    json_t *v;
} idx_key;

static int idx_cmp(const void *a, const void *b) {
    unsigned long long x = ((const idx_key *)a)->x, y = ((const idx_key *)b)->x;
    return (x > y) - (x < y);
}

jv *jj_from_json(jj_rt *rt, json_t *j, uint16_t org, int depth) {
    if (depth > JJ_MAX_DEPTH) jj_fail(rt, PT_ELIMIT, 0, "a context value nested more than %d deep", JJ_MAX_DEPTH);
    switch (json_typeof(j)) {
    case JSON_NULL: return rt->null;
    case JSON_TRUE: return rt->yes;
    case JSON_FALSE: return rt->no;
    case JSON_INTEGER: return jv_num(rt, V_INT, (double)json_integer_value(j));
    case JSON_REAL: {
        double x = json_real_value(j);
        return jv_num(rt, isfinite(x) && x == floor(x) ? V_INT : V_FLOAT, x);
    }
    case JSON_STRING: return jv_str(rt, jstr_with_origin(rt, json_string_value(j), json_string_length(j), org));
    case JSON_ARRAY: {
        jv *a = jv_arr(rt, json_array_size(j));
        for (size_t i = 0; i < json_array_size(j); i++) jv_push(rt, a, jj_from_json(rt, json_array_get(j, i), org, depth + 1));
        return a;
    }
    default: {
        /* JavaScript objects list integer-like keys first, in numeric order, then the rest as written */
        size_t n = json_object_size(j), ni = 0;
        idx_key *ix = jj_alloc(rt, (n ? n : 1) * sizeof *ix, 0);
        const char *k;
        json_t *val;
        unsigned long long x;
        json_object_foreach(j, k, val) {
            if (array_index_key(k, &x)) ix[ni++] = (idx_key){x, k, val};
        }
        qsort(ix, ni, sizeof *ix, idx_cmp);
        jv *o = jv_obj(rt, V_OBJ);
        for (size_t i = 0; i < ni; i++)
            jv_set(rt, o, jstr_with_origin(rt, ix[i].k, strlen(ix[i].k), 0), jj_from_json(rt, ix[i].v, org, depth + 1));
        json_object_foreach(j, k, val) {
            if (!array_index_key(k, &x)) jv_set(rt, o, jstr_with_origin(rt, k, strlen(k), 0), jj_from_json(rt, val, org, depth + 1));
        }
        return o;
    }
    }
}

/* ---- equality ---- */
/* ToNumber of a string, as JavaScript: whitespace around, "" is 0, decimal, Infinity, 0x/0o/0b. */
static double str_to_num(jstr s) {
    jstr t = jj_trim(s, 1, 1);
    if (!t.n) return 0;
    char buf[400];
    if (t.n >= sizeof buf) return NAN;
    memcpy(buf, t.s, t.n), buf[t.n] = 0;
    const char *p = buf;
    if (t.n > 2 && p[0] == '0' && strchr("xXoObB", p[1])) {
        int base = p[1] == 'x' || p[1] == 'X' ? 16 : p[1] == 'o' || p[1] == 'O' ? 8 : 2;
        double x = 0;
        for (const char *q = p + 2; *q; q++) {
            int d = *q >= '0' && *q <= '9' ? *q - '0' : *q >= 'a' && *q <= 'f' ? *q - 'a' + 10 : *q >= 'A' && *q <= 'F' ? *q - 'A' + 10 : 99;
            if (d >= base) return NAN;
            x = x * base + d;
        }
        return x;
    }
    const char *q = p;
    if (*q == '+' || *q == '-') q++;
    if (!strcmp(q, "Infinity")) return p[0] == '-' ? -INFINITY : INFINITY;
    int digits = 0;
    while (*q >= '0' && *q <= '9') q++, digits++;
    if (*q == '.') {
        q++;
        while (*q >= '0' && *q <= '9') q++, digits++;
    }
    if (!digits) return NAN;
    if (*q == 'e' || *q == 'E') {
        q++;
        if (*q == '+' || *q == '-') q++;
        if (!(*q >= '0' && *q <= '9')) return NAN;
        while (*q >= '0' && *q <= '9') q++;
    }
    return *q ? NAN : strtod(p, NULL);
}

static int is_num(const jv *v) { return v->t == V_INT || v->t == V_FLOAT; }
static int is_objlike(const jv *v) { return v->t == V_ARR || v->t == V_OBJ || v->t == V_NS || v->t == V_FUNC; }

int jj_strict_eq(const jv *a, const jv *b) {
    if (is_num(a) && is_num(b)) return a->num == b->num;
    if (a->t != b->t) return 0;
    switch (a->t) {
    case V_UNDEF:
    case V_NULL: return 1;
    case V_BOOL: return a->b == b->b;
    case V_STR: return a->str.n == b->str.n && !memcmp(a->str.s, b->str.s, a->str.n);
    default: return a == b;
    }
}

int jj_loose_eq(jj_rt *rt, const jv *a, const jv *b, size_t pos) {
    int an = a->t == V_UNDEF || a->t == V_NULL, bn = b->t == V_UNDEF || b->t == V_NULL;
    if (an || bn) return an && bn;
    if (is_num(a) && is_num(b)) return a->num == b->num;
    if (a->t == b->t) return jj_strict_eq(a, b);
    if (is_objlike(a) && is_objlike(b)) return a == b;
    if (a->t == V_BOOL || b->t == V_BOOL) { /* ToNumber(bool), then compare again */
        jv x = *(a->t == V_BOOL ? a : b), *o = (jv *)(a->t == V_BOOL ? b : a);
        x.t = V_INT, x.num = x.b;
        return jj_loose_eq(rt, &x, o, pos);
    }
    if (is_objlike(a) || is_objlike(b)) { /* ToPrimitive(object): its string */
        const jv *obj = is_objlike(a) ? a : b, *prim = is_objlike(a) ? b : a;
        jsb s = {0};
        jj_js_value_str(rt, &s, obj, pos, 0);
        jv tmp = {.t = V_STR, .str = jsb_str(&s)};
        return jj_loose_eq(rt, &tmp, prim, pos);
    }
    /* number and string */
    const jv *num = is_num(a) ? a : b, *str = is_num(a) ? b : a;
    return str_to_num(str->str) == num->num;
}
