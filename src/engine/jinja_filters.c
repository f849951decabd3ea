/* Jinja filters, tests, methods of strings and dicts, and the globals (range, namespace,
 * raise_exception, strftime_now), as @huggingface/jinja has them (see jinja.h). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine/jinja_internal.h"

static int named(const char *s, size_t n, const char *name) { return strlen(name) == n && !memcmp(s, name, n); }
static int is_num(const jv *v) { return v->t == V_INT || v->t == V_FLOAT; }

/* ---- comparison and sorting ---- */
static int cmp_values(jj_rt *rt, jv *a, jv *b, int case_sensitive, size_t pos) {
    if (a->t == V_NULL && b->t == V_NULL) return 0;
    if (a->t == V_NULL || b->t == V_NULL || a->t == V_UNDEF || b->t == V_UNDEF) {
        if (a->t == V_UNDEF && b->t == V_UNDEF) return 0;
        jj_fail(rt, PT_EINVAL, pos, "cannot compare %s with %s", jv_type_name(a), jv_type_name(b));
    }
    int an = is_num(a) || a->t == V_BOOL, bn = is_num(b) || b->t == V_BOOL;
    if (an && bn) {
        double x = a->t == V_BOOL ? a->b : a->num, y = b->t == V_BOOL ? b->b : b->num;
        return x < y ? -1 : x > y;
    }
    if (a->t != b->t || (a->t == V_ARR && a->tuple != b->tuple))
        jj_fail(rt, PT_EINVAL, pos, "cannot compare different types: %s and %s", jv_type_name(a), jv_type_name(b));
    if (a->t != V_STR) jj_fail(rt, PT_EINVAL, pos, "cannot compare type: %s", jv_type_name(a));
    jstr x = a->str, y = b->str;
    if (!case_sensitive) x = jj_case(rt, x, 0)->str, y = jj_case(rt, y, 0)->str;
    int c = memcmp(x.s, y.s, x.n < y.n ? x.n : y.n);
    if (c) return c < 0 ? -1 : 1;
    return (x.n > y.n) - (x.n < y.n);
}

typedef struct {
    jj_rt *rt;
    int case_sensitive, reverse;
    const char *attr; /* sort by this attribute path (NULL: the item) */
    size_t attr_n;
    int by_value; /* dictsort: compare the pairs' values */
    size_t pos;
} sort_ctx;

static jv *attribute_value(jj_rt *rt, jv *item, const char *path, size_t n);

static int sort_cmp(sort_ctx *c, jv *a, jv *b) {
    if (c->attr) a = attribute_value(c->rt, a, c->attr, c->attr_n), b = attribute_value(c->rt, b, c->attr, c->attr_n);
    if (c->by_value >= 0 && a->t == V_ARR && b->t == V_ARR) a = a->items[c->by_value], b = b->items[c->by_value];
    int r = cmp_values(c->rt, a, b, c->case_sensitive, c->pos);
    return c->reverse ? -r : r;
}

/* A stable merge sort (JavaScript's sort is stable) whose comparison may fail. */
static void merge_sort(sort_ctx *c, jv **v, jv **tmp, size_t n) {
    if (n < 2) return;
    size_t h = n / 2;
    merge_sort(c, v, tmp, h);
    merge_sort(c, v + h, tmp, n - h);
    size_t i = 0, j = h, k = 0;
    while (i < h && j < n) tmp[k++] = sort_cmp(c, v[j], v[i]) < 0 ? v[j++] : v[i++];
    while (i < h) tmp[k++] = v[i++];
    while (j < n) tmp[k++] = v[j++];
    memcpy(v, tmp, n * sizeof *v);
}

static jv *sorted(jj_rt *rt, jv *arr, sort_ctx *c) {
    jv *r = jv_arr(rt, arr->n);
    for (size_t i = 0; i < arr->n; i++) jv_push(rt, r, arr->items[i]);
    jv **tmp = jj_alloc(rt, (arr->n ? arr->n : 1) * sizeof *tmp, c->pos);
    merge_sort(c, r->items, tmp, r->n);
    return r;
}

/* "a.b.0": dict keys and list indices. */
static jv *attribute_value(jj_rt *rt, jv *v, const char *path, size_t n) {
    size_t i = 0;
    while (i <= n) {
        size_t j = i;
        while (j < n && path[j] != '.') j++;
        if (v->t == V_OBJ || v->t == V_NS) {
            v = jv_get(v, path + i, j - i);
            if (!v) return rt->undef;
        } else if (v->t == V_ARR) {
            char buf[32];
            size_t k = j - i < 31 ? j - i : 31;
            memcpy(buf, path + i, k), buf[k] = 0;
            char *end;
            long idx = strtol(buf, &end, 10);
            if (end == buf || idx < 0 || (size_t)idx >= v->n) return rt->undef;
            v = v->items[idx];
        } else {
            return rt->undef;
        }
        i = j + 1;
    }
    return v;
}

/* ---- tests ---- */
int jj_test(jj_rt *rt, const char *s, size_t n, jv *a, jv *b, size_t pos) {
#define T(x) named(s, n, x)
    if (T("boolean")) return a->t == V_BOOL;
    if (T("callable")) return a->t == V_FUNC;
    if (T("odd") || T("even")) {
        if (a->t != V_INT) jj_fail(rt, PT_EINVAL, pos, "cannot %.*s on %s", (int)n, s, jv_type_name(a));
        return (fmod(a->num, 2) != 0) == T("odd");
    }
    if (T("false")) return a->t == V_BOOL && !a->b;
    if (T("true")) return a->t == V_BOOL && a->b;
    if (T("none")) return a->t == V_NULL;
    if (T("string")) return a->t == V_STR;
    if (T("number")) return is_num(a);
    if (T("integer")) return a->t == V_INT;
    if (T("iterable")) return (a->t == V_ARR && !a->tuple) || a->t == V_STR;
    if (T("mapping")) return a->t == V_OBJ;
    if (T("sequence")) return a->t == V_ARR || a->t == V_OBJ || a->t == V_STR;
    if (T("lower") || T("upper")) {
        if (a->t != V_STR) jj_fail(rt, PT_EINVAL, pos, "the %.*s test needs a string", (int)n, s);
        jstr c = jj_case(rt, a->str, T("upper"))->str;
        return c.n == a->str.n && !memcmp(c.s, a->str.s, c.n);
    }
    if (T("defined")) return a->t != V_UNDEF;
    if (T("undefined")) return a->t == V_UNDEF;
    if (T("equalto") || T("eq")) {
        if (!b) jj_fail(rt, PT_EINVAL, pos, "the %.*s test needs a value to compare with", (int)n, s);
        return jj_strict_eq(a, b);
    }
#undef T
    jj_fail(rt, PT_EINVAL, pos, "unknown test: %.*s", (int)(n < 60 ? n : 60), s);
}

/* ---- string helpers ---- */
static jstr cat3(jj_rt *rt, jstr a, jstr b, jstr c, size_t pos) {
    jsb s = {0};
    jsb_put(rt, &s, a.s, a.org, a.n, pos);
    jsb_put(rt, &s, b.s, b.org, b.n, pos);
    jsb_put(rt, &s, c.s, c.org, c.n, pos);
    return jsb_str(&s);
}

static int starts(jstr s, jstr p) { return p.n <= s.n && !memcmp(s.s, p.s, p.n); }
static int ends(jstr s, jstr p) { return p.n <= s.n && !memcmp(s.s + s.n - p.n, p.s, p.n); }

static size_t find(jstr h, jstr nd, size_t from) {
    for (size_t i = from; i + nd.n <= h.n; i++)
        if (!memcmp(h.s + i, nd.s, nd.n)) return i;
    return (size_t)-1;
}

static jv *title(jj_rt *rt, jstr s, int capitalize_only) {
    char *c = jj_alloc(rt, s.n + 1, 0);
    memcpy(c, s.s, s.n);
    jstr r = {c, s.org, s.n};
    if (capitalize_only) { /* the first character upper-cased, the rest as it is */
        if (!s.n) return jv_str(rt, r);
        uint32_t cp;
        size_t k = jj_utf8_dec(s.s, s.n, &cp);
        jstr first = jj_case(rt, jstr_sub(s, 0, k), 1)->str;
        return jv_str(rt, cat3(rt, first, jstr_sub(s, k, s.n), (jstr){"", NULL, 0}, 0));
    }
    for (size_t i = 0; i < s.n; i++) { /* /\b\w/g: a word character after a non-word one */
        char ch = c[i], pr = i ? c[i - 1] : ' ';
        int w = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '_';
        int pw = (pr >= 'a' && pr <= 'z') || (pr >= 'A' && pr <= 'Z') || (pr >= '0' && pr <= '9') || pr == '_';
        if (w && !pw && ch >= 'a' && ch <= 'z') c[i] = (char)(ch - 32);
    }
    return jv_str(rt, r);
}

static jv *split(jj_rt *rt, jstr s, jv *sep, jv *maxv, size_t pos) {
    double maxsplit = maxv ? maxv->num : -1;
    jv *r = jv_arr(rt, 0);
    if (!sep || sep->t == V_NULL) { /* runs of whitespace */
        jstr t = jj_trim(s, 1, 0);
        size_t i = 0;
        while (i < t.n) {
            size_t j = i;
            while (j < t.n && jj_trim(jstr_sub(t, j, t.n), 1, 0).s == t.s + j) {
                uint32_t c;
                j += jj_utf8_dec(t.s + j, t.n - j, &c);
            }
            if (maxsplit >= 0 && (double)r->n >= maxsplit) {
                jv_push(rt, r, jv_str(rt, jstr_sub(t, i, t.n)));
                return r;
            }
            jv_push(rt, r, jv_str(rt, jstr_sub(t, i, j)));
            i = (size_t)(jj_trim(jstr_sub(t, j, t.n), 1, 0).s - t.s);
        }
        return r;
    }
    if (!sep->str.n) jj_fail(rt, PT_EINVAL, pos, "empty separator");
    size_t i = 0, f;
    while ((f = find(s, sep->str, i)) != (size_t)-1) {
        if (maxsplit >= 0 && (double)r->n >= maxsplit) break;
        jv_push(rt, r, jv_str(rt, jstr_sub(s, i, f)));
        i = f + sep->str.n;
    }
    jv_push(rt, r, jv_str(rt, jstr_sub(s, i, s.n)));
    return r;
}

static jv *replace(jj_rt *rt, jstr s, jstr old, jstr neu, double count, size_t pos) {
    if (count == 0) return jv_str(rt, s);
    double left = count < 0 || isnan(count) ? INFINITY : count;
    jsb b = {0};
    if (!old.n) { /* an empty pattern matches before every character and at the end */
        for (size_t i = 0;; ) {
            if (left > 0) jsb_put(rt, &b, neu.s, neu.org, neu.n, pos), left--;
            if (i >= s.n) break;
            uint32_t c;
            size_t k = jj_utf8_dec(s.s + i, s.n - i, &c);
            jsb_put(rt, &b, s.s + i, s.org ? s.org + i : NULL, k, pos);
            i += k;
        }
        return jv_str(rt, jsb_str(&b));
    }
    size_t i = 0, f;
    while (left > 0 && (f = find(s, old, i)) != (size_t)-1) {
        jsb_put(rt, &b, s.s + i, s.org ? s.org + i : NULL, f - i, pos);
        jsb_put(rt, &b, neu.s, neu.org, neu.n, pos);
        i = f + old.n, left--;
    }
    jsb_put(rt, &b, s.s + i, s.org ? s.org + i : NULL, s.n - i, pos);
    return jv_str(rt, jsb_str(&b));
}

static jv *indent(jj_rt *rt, jstr s, jstr ind, int first, int blank, size_t pos) {
    jsb b = {0};
    size_t i = 0, line = 0;
    for (;;) {
        size_t j = i;
        while (j < s.n && s.s[j] != '\n') j++;
        if (!((!first && line == 0) || (!blank && j == i))) jsb_put(rt, &b, ind.s, ind.org, ind.n, pos);
        jsb_put(rt, &b, s.s + i, s.org ? s.org + i : NULL, j - i, pos);
        if (j >= s.n) break;
        jsb_put(rt, &b, "\n", s.org ? s.org + j : NULL, 1, pos);
        i = j + 1, line++;
    }
    return jv_str(rt, jsb_str(&b));
}

/* parseInt(s, 10) and parseFloat(s): NAN when no number starts the string. */
static double parse_number(jstr s, int integer) {
    jstr t = jj_trim(s, 1, 0);
    char buf[512];
    size_t n = t.n < sizeof buf - 1 ? t.n : sizeof buf - 1, i = 0, start;
    memcpy(buf, t.s, n), buf[n] = 0;
    if (buf[i] == '+' || buf[i] == '-') i++;
    start = i;
    if (!integer && !strncmp(buf + i, "Infinity", 8)) return buf[0] == '-' ? -INFINITY : INFINITY;
    while (buf[i] >= '0' && buf[i] <= '9') i++;
    size_t intdigits = i - start, frac = 0;
    if (!integer && buf[i] == '.') {
        size_t j = i + 1;
        while (buf[j] >= '0' && buf[j] <= '9') j++;
        frac = j - i - 1;
        if (intdigits || frac) i = j;
    }
    if (!intdigits && !frac) return NAN;
    if (!integer && (buf[i] == 'e' || buf[i] == 'E')) {
        size_t j = i + 1;
        if (buf[j] == '+' || buf[j] == '-') j++;
        if (buf[j] >= '0' && buf[j] <= '9') {
            while (buf[j] >= '0' && buf[j] <= '9') j++;
            i = j;
        }
    }
    buf[i] = 0;
    return strtod(buf, NULL);
}

static void join_item(jj_rt *rt, jsb *b, jv *v, size_t pos) {
    if (v->t != V_NULL && v->t != V_UNDEF) jj_js_value_str(rt, b, v, pos, 0);
}

static jv *pairs(jj_rt *rt, jv *o, int keys, int vals) {
    jv *r = jv_arr(rt, o->n);
    for (size_t i = 0; i < o->n; i++) {
        if (keys && vals) {
            jv *p = jv_arr(rt, 2);
            jv_push(rt, p, jv_str(rt, o->keys[i]));
            jv_push(rt, p, o->items[i]);
            jv_push(rt, r, p);
        } else {
            jv_push(rt, r, keys ? jv_str(rt, o->keys[i]) : o->items[i]);
        }
    }
    return r;
}

/* ---- methods and globals ---- */
static jv *arg(jv **a, size_t n, size_t i) { return i < n ? a[i] : NULL; }

static jv *str_method(jj_rt *rt, jv *self, const char *m, jv **a, size_t n, size_t pos) {
    jstr s = self->str;
    if (!strcmp(m, "upper") || !strcmp(m, "lower")) return jj_case(rt, s, m[0] == 'u');
    if (!strcmp(m, "strip")) return jv_str(rt, jj_trim(s, 1, 1));
    if (!strcmp(m, "lstrip")) return jv_str(rt, jj_trim(s, 1, 0));
    if (!strcmp(m, "rstrip")) return jv_str(rt, jj_trim(s, 0, 1));
    if (!strcmp(m, "title") || !strcmp(m, "capitalize")) return title(rt, s, m[0] == 'c');
    if (!strcmp(m, "startswith") || !strcmp(m, "endswith")) {
        jv *p = arg(a, n, 0);
        int st = m[0] == 's';
        if (!p) jj_fail(rt, PT_EINVAL, pos, "%s() requires at least one argument", m);
        if (p->t == V_STR) return jv_bool(rt, st ? starts(s, p->str) : ends(s, p->str));
        if (p->t != V_ARR) jj_fail(rt, PT_EINVAL, pos, "%s() argument must be a string or tuple of strings", m);
        for (size_t i = 0; i < p->n; i++) {
            if (p->items[i]->t != V_STR) jj_fail(rt, PT_EINVAL, pos, "%s() tuple elements must be strings", m);
            if (st ? starts(s, p->items[i]->str) : ends(s, p->items[i]->str)) return rt->yes;
        }
        return rt->no;
    }
    if (!strcmp(m, "split")) {
        jv *sep = arg(a, n, 0), *mx = arg(a, n, 1);
        if (sep && sep->t != V_STR && sep->t != V_NULL) jj_fail(rt, PT_EINVAL, pos, "sep argument must be a string or null");
        if (mx && mx->t != V_INT) jj_fail(rt, PT_EINVAL, pos, "maxsplit argument must be a number");
        return split(rt, s, sep, mx, pos);
    }
    /* replace */
    if (n < 2) jj_fail(rt, PT_EINVAL, pos, "replace() requires at least two arguments");
    if (a[0]->t != V_STR || a[1]->t != V_STR) jj_fail(rt, PT_EINVAL, pos, "replace() arguments must be strings");
    jv *count = n > 2 ? a[2] : NULL;
    if (count && count->t == V_OBJ && count == a[n - 1]) count = jv_get(count, "count", 5);
    if (count && count->t != V_INT && count->t != V_NULL) jj_fail(rt, PT_EINVAL, pos, "replace() count argument must be a number or null");
    return replace(rt, s, a[0]->str, a[1]->str, count && count->t == V_INT ? count->num : -1, pos);
}

static jv *dictsort(jj_rt *rt, jv *o, jv **a, size_t n, jv *kw, size_t pos) {
    jv *cs = arg(a, n, 0), *by = arg(a, n, 1), *rev = arg(a, n, 2);
    if (!cs) cs = jj_kwarg(kw, "case_sensitive");
    if (!by) by = jj_kwarg(kw, "by");
    if (!rev) rev = jj_kwarg(kw, "reverse");
    if (cs && cs->t != V_BOOL) jj_fail(rt, PT_EINVAL, pos, "case_sensitive must be a boolean");
    if (by && (by->t != V_STR || !(named(by->str.s, by->str.n, "key") || named(by->str.s, by->str.n, "value"))))
        jj_fail(rt, PT_EINVAL, pos, "by must be either 'key' or 'value'");
    if (rev && rev->t != V_BOOL) jj_fail(rt, PT_EINVAL, pos, "reverse must be a boolean");
    sort_ctx c = {rt, cs && cs->b, rev && rev->b, NULL, 0, by && by->str.s[0] == 'v' ? 1 : 0, pos};
    return sorted(rt, pairs(rt, o, 1, 1), &c);
}

static jv *obj_method(jj_rt *rt, jv *o, const char *m, jv **a, size_t n, jv *kw, size_t pos) {
    if (!strcmp(m, "get")) {
        jv *k = arg(a, n, 0);
        if (!k || k->t != V_STR) jj_fail(rt, PT_EINVAL, pos, "object key must be a string");
        jv *v = jv_get(o, k->str.s, k->str.n);
        return v ? v : n > 1 ? a[1] : rt->null;
    }
    if (!strcmp(m, "items")) return pairs(rt, o, 1, 1);
    if (!strcmp(m, "keys")) return pairs(rt, o, 1, 0);
    if (!strcmp(m, "values")) return pairs(rt, o, 0, 1);
    return dictsort(rt, o, a, n, kw, pos);
}

static jv *namespace_of(jj_rt *rt, jv **a, size_t n, jv *kw, size_t pos) {
    if (n > 1) jj_fail(rt, PT_EINVAL, pos, "namespace expected at most 1 argument, got %zu", n);
    jv *ns = jv_obj(rt, V_NS);
    if (n == 1) {
        jv *src = a[0];
        if (src->t == V_OBJ) {
            for (size_t i = 0; i < src->n; i++) jv_set(rt, ns, src->keys[i], src->items[i]);
        } else if (src->t == V_ARR) {
            for (size_t i = 0; i < src->n; i++) {
                jv *p = src->items[i];
                if (p->t != V_ARR || p->n != 2) jj_fail(rt, PT_EINVAL, pos, "namespace expected an object or an iterable of [key, value] pairs");
                if (p->items[0]->t != V_STR) jj_fail(rt, PT_EINVAL, pos, "namespace keys must be strings");
                jv_set(rt, ns, p->items[0]->str, p->items[1]);
            }
        } else {
            jj_fail(rt, PT_EINVAL, pos, "'%s' object is not iterable", jv_type_name(src));
        }
    }
    for (size_t i = 0; kw && i < kw->n; i++) jv_set(rt, ns, kw->keys[i], kw->items[i]);
    return ns;
}

static jv *range_of(jj_rt *rt, jv **a, size_t n, size_t pos) {
    for (size_t i = 0; i < n && i < 3; i++)
        if (!is_num(a[i])) jj_fail(rt, PT_EINVAL, pos, "range() arguments must be numbers");
    if (!n) jj_fail(rt, PT_EINVAL, pos, "range() needs an argument");
    double start = n >= 2 ? a[0]->num : 0, stop = n >= 2 ? a[1]->num : a[0]->num, st = n >= 3 ? a[2]->num : 1;
    if (st == 0) jj_fail(rt, PT_EINVAL, pos, "range() step must not be zero");
    double count = st > 0 ? ceil((stop - start) / st) : ceil((start - stop) / -st);
    if (!(count <= 0) && count > 10000000) jj_fail(rt, PT_ELIMIT, pos, "range() of more than 10000000 numbers");
    jv *r = jv_arr(rt, count > 0 ? (size_t)count : 0);
    for (double i = start; st > 0 ? i < stop : i > stop; i += st) {
        if (++rt->steps > rt->max_steps) jj_fail(rt, PT_ELIMIT, pos, "more than %llu evaluation steps", (unsigned long long)rt->max_steps);
        jv_push(rt, r, jv_num(rt, i == floor(i) ? V_INT : V_FLOAT, i));
    }
    return r;
}

static jv *strftime_now(jj_rt *rt, jv *f, size_t pos) {
    static const char *mon[] = {"January", "February", "March", "April", "May", "June", "July", "August", "September",
                                "October", "November", "December"};
    if (!f || f->t != V_STR) jj_fail(rt, PT_EINVAL, pos, "strftime_now() needs a format string");
    time_t t = (time_t)rt->now;
    struct tm tm;
    if (rt->local_time) localtime_r(&t, &tm);
    else gmtime_r(&t, &tm);
    jsb b = {0};
    jstr s = f->str;
    for (size_t i = 0; i < s.n; i++) {
        char buf[32];
        if (s.s[i] == '%' && i + 1 < s.n && strchr("YmdbBHM%", s.s[i + 1]) && s.s[i + 1]) {
            switch (s.s[++i]) {
            case 'Y': snprintf(buf, sizeof buf, "%d", tm.tm_year + 1900); break;
            case 'm': snprintf(buf, sizeof buf, "%02d", tm.tm_mon + 1); break;
            case 'd': snprintf(buf, sizeof buf, "%02d", tm.tm_mday); break;
            case 'b': snprintf(buf, sizeof buf, "%.3s", mon[tm.tm_mon]); break;
            case 'B': snprintf(buf, sizeof buf, "%s", mon[tm.tm_mon]); break;
            case 'H': snprintf(buf, sizeof buf, "%02d", tm.tm_hour); break;
            case 'M': snprintf(buf, sizeof buf, "%02d", tm.tm_min); break;
            default: strcpy(buf, "%");
            }
            jsb_puts(rt, &b, buf, pos);
        } else {
            jsb_put(rt, &b, s.s + i, s.org ? s.org + i : NULL, 1, pos);
        }
    }
    return jv_str(rt, jsb_str(&b));
}

jv *jj_call_method(jj_rt *rt, jv *fn, jv **args, size_t n, jv *kw, size_t pos) {
    switch (fn->fk) {
    case F_STRMETHOD: {
        jv **all = args;
        if (kw) { /* the reference passes keyword arguments as one more positional (a mapping) */
            all = jj_alloc(rt, (n + 1) * sizeof *all, pos);
            if (n) memcpy(all, args, n * sizeof *all);
            all[n++] = kw;
        }
        return str_method(rt, fn->self, fn->fname, all, n, pos);
    }
    case F_OBJMETHOD: return obj_method(rt, fn->self, fn->fname, args, n, kw, pos);
    case F_NAMESPACE: return namespace_of(rt, args, n, kw, pos);
    case F_RANGE: return range_of(rt, args, n, pos);
    case F_STRFTIME: return strftime_now(rt, n ? args[0] : NULL, pos);
    case F_RAISE: {
        jsb b = {0};
        if (n && args[0]->t != V_UNDEF) jj_js_value_str(rt, &b, args[0], pos, 0);
        jstr m = jsb_str(&b);
        jj_fail(rt, PT_EINVAL, pos, "raise_exception: %.*s", (int)(m.n < 500 ? m.n : 500), m.s);
    }
    default: jj_fail(rt, PT_EINTERNAL, pos, "bad function");
    }
}

/* ---- filters ---- */
static _Noreturn void unknown(jj_rt *rt, const char *what, jstr name, size_t pos) {
    jj_fail(rt, PT_EINVAL, pos, "unknown %s filter: %.*s", what, (int)(name.n < 60 ? name.n : 60), name.s);
}

static jv *filter_plain(jj_rt *rt, jv *v, jstr f, size_t pos) {
#define F(x) named(f.s, f.n, x)
    if (F("safe")) return v;
    if (F("tojson")) {
        jsb b = {0};
        jj_json_opts o = {.item_sep = ", ", .key_sep = ": ", .item_sep_n = 2, .key_sep_n = 2, .undef_null = 1};
        jj_to_json(rt, &b, v, &o, 0, pos);
        return jv_str(rt, jsb_str(&b));
    }
    if (v->t == V_ARR) {
        if (F("list")) return v;
        if (F("first") || F("last")) {
            if (!v->n) jj_fail(rt, PT_EINVAL, pos, "%.*s of an empty list", (int)f.n, f.s);
            return v->items[F("first") ? 0 : v->n - 1];
        }
        if (F("length")) return jv_num(rt, V_INT, (double)v->n);
        if (F("reverse")) {
            jv *r = jv_arr(rt, v->n);
            for (size_t i = v->n; i-- > 0;) jv_push(rt, r, v->items[i]);
            return r;
        }
        if (F("sort")) {
            sort_ctx c = {rt, 0, 0, NULL, 0, -1, pos};
            return sorted(rt, v, &c);
        }
        if (F("join")) {
            jsb b = {0};
            for (size_t i = 0; i < v->n; i++) join_item(rt, &b, v->items[i], pos);
            return jv_str(rt, jsb_str(&b));
        }
        if (F("string")) {
            jsb b = {0};
            jj_to_string(rt, &b, v, pos, 0);
            return jv_str(rt, jsb_str(&b));
        }
        if (F("unique")) {
            jv *r = jv_arr(rt, 0);
            for (size_t i = 0; i < v->n; i++) {
                int seen = 0;
                for (size_t k = 0; k < r->n && !seen; k++)
                    seen = jj_strict_eq(r->items[k], v->items[i]) ||
                           (is_num(r->items[k]) && is_num(v->items[i]) && isnan(r->items[k]->num) && isnan(v->items[i]->num));
                if (!seen) jv_push(rt, r, v->items[i]);
            }
            return r;
        }
        unknown(rt, "ArrayValue", f, pos);
    }
    if (v->t == V_STR) {
        if (F("length")) return jv_num(rt, V_INT, (double)jj_utf16_len(v->str));
        if (F("upper") || F("lower")) return jj_case(rt, v->str, F("upper"));
        if (F("title") || F("capitalize")) return title(rt, v->str, F("capitalize"));
        if (F("trim")) return jv_str(rt, jj_trim(v->str, 1, 1));
        if (F("indent")) return indent(rt, v->str, (jstr){"    ", NULL, 4}, 0, 0, pos);
        if (F("join") || F("string")) return v;
        if (F("int") || F("float")) {
            double x = parse_number(v->str, F("int"));
            return jv_num(rt, F("int") ? V_INT : V_FLOAT, isnan(x) ? 0 : x);
        }
        unknown(rt, "StringValue", f, pos);
    }
    if (is_num(v)) {
        if (F("abs")) return jv_num(rt, v->t, fabs(v->num));
        if (F("int")) return jv_num(rt, V_INT, trunc(v->num) + 0.0);
        if (F("float")) return jv_num(rt, V_FLOAT, v->num);
        if (F("string")) {
            jsb b = {0};
            jj_to_string(rt, &b, v, pos, 0);
            return jv_str(rt, jsb_str(&b));
        }
        unknown(rt, "NumericValue", f, pos);
    }
    if (v->t == V_OBJ) {
        if (F("items")) return pairs(rt, v, 1, 1);
        if (F("length")) return jv_num(rt, V_INT, (double)v->n);
        if (F("keys") || F("values") || F("dictsort") || F("get"))
            return obj_method(rt, v, F("keys") ? "keys" : F("values") ? "values" : F("get") ? "get" : "dictsort", NULL, 0, NULL, pos);
        unknown(rt, "ObjectValue", f, pos);
    }
    if (v->t == V_BOOL) {
        if (F("bool")) return v;
        if (F("int")) return jv_num(rt, V_INT, v->b);
        if (F("float")) return jv_num(rt, V_FLOAT, v->b);
        if (F("string")) return jv_cstr(rt, v->b ? "true" : "false", v->b ? 4 : 5);
        unknown(rt, "BooleanValue", f, pos);
    }
    jj_fail(rt, PT_EINVAL, pos, "cannot apply filter \"%.*s\" to type: %s", (int)(f.n < 60 ? f.n : 60), f.s, jv_type_name(v));
#undef F
}

static jv *filter_tojson(jj_rt *rt, jv *v, jv *kw, size_t pos) {
    jv *ind = jj_kwarg(kw, "indent"), *asc = jj_kwarg(kw, "ensure_ascii"), *sk = jj_kwarg(kw, "sort_keys"),
       *sep = jj_kwarg(kw, "separators");
    if (ind && ind->t != V_INT && ind->t != V_NULL) jj_fail(rt, PT_EINVAL, pos, "if set, indent must be a number");
    if (asc && asc->t != V_BOOL) jj_fail(rt, PT_EINVAL, pos, "if set, ensure_ascii must be a boolean");
    if (sk && sk->t != V_BOOL) jj_fail(rt, PT_EINVAL, pos, "if set, sort_keys must be a boolean");
    long indent_n = ind && ind->t == V_INT ? (long)(ind->num > 1000 ? 1000 : ind->num) : 0;
    if (ind && ind->t == V_INT && ind->num < 0) jj_fail(rt, PT_EINVAL, pos, "invalid count value: %g", ind->num);
    jj_json_opts o = {.indent = indent_n, .ascii = asc && asc->b, .sort_keys = sk && sk->b, .undef_null = 1};
    if (sep && sep->t == V_ARR) {
        if (sep->n != 2 || sep->items[0]->t != V_STR || sep->items[1]->t != V_STR)
            jj_fail(rt, PT_EINVAL, pos, "separators must be a tuple of two strings");
        o.item_sep = sep->items[0]->str.s, o.item_sep_n = sep->items[0]->str.n;
        o.key_sep = sep->items[1]->str.s, o.key_sep_n = sep->items[1]->str.n;
    } else if (sep && sep->t != V_NULL) {
        jj_fail(rt, PT_EINVAL, pos, "if set, separators must be a tuple of two strings");
    } else {
        o.item_sep = indent_n > 0 ? "," : ", ", o.item_sep_n = indent_n > 0 ? 1 : 2, o.key_sep = ": ", o.key_sep_n = 2;
    }
    jsb b = {0};
    jj_to_json(rt, &b, v, &o, 0, pos);
    return jv_str(rt, jsb_str(&b));
}

static jv *filter_selectattr(jj_rt *rt, jv *v, const jj_node *f, jj_env *env, int select) {
    for (size_t i = 0; i < v->n; i++)
        if (v->items[i]->t != V_OBJ && v->items[i]->t != V_NS)
            jj_fail(rt, PT_EINVAL, f->pos, "%sattr can only be applied to an array of objects", select ? "select" : "reject");
    for (size_t i = 0; i < f->args.n; i++)
        if (f->args.v[i]->kind != N_STR) jj_fail(rt, PT_EINVAL, f->pos, "the arguments of %sattr must be strings", select ? "select" : "reject");
    if (!f->args.n) jj_fail(rt, PT_EINVAL, f->pos, "%sattr needs an attribute", select ? "select" : "reject");
    jv *attr = jj_eval(rt, f->args.v[0], env), *tn = f->args.n > 1 ? jj_eval(rt, f->args.v[1], env) : NULL,
       *val = f->args.n > 2 ? jj_eval(rt, f->args.v[2], env) : NULL;
    jv *r = jv_arr(rt, 0);
    for (size_t i = 0; i < v->n; i++) {
        jv *a = jv_get(v->items[i], attr->str.s, attr->str.n);
        int res = a ? (tn ? jj_test(rt, tn->str.s, tn->str.n, a, val, f->pos) : jv_truthy(a)) : 0;
        if (res == select) jv_push(rt, r, v->items[i]);
    }
    return r;
}

static jv *filter_call(jj_rt *rt, jv *v, const jj_node *f, jj_env *env) {
    jstr name = {f->b->s, NULL, f->b->sn};
    size_t pos = f->pos;
    jv **a, *kw;
    size_t n;
#define F(x) named(name.s, name.n, x)
    if (F("selectattr") || F("rejectattr")) {
        if (v->t != V_ARR) jj_fail(rt, PT_EINVAL, pos, "cannot apply filter \"%.*s\" to type: %s", (int)name.n, name.s, jv_type_name(v));
        return filter_selectattr(rt, v, f, env, F("selectattr"));
    }
    jj_eval_args(rt, &f->args, env, &a, &n, &kw);
    if (F("tojson")) return filter_tojson(rt, v, kw, pos);
    if (F("join")) {
        if (v->t != V_STR && v->t != V_ARR) jj_fail(rt, PT_EINVAL, pos, "cannot apply filter \"join\" to type: %s", jv_type_name(v));
        jv *sep = n ? a[0] : jj_kwarg(kw, "separator");
        if (sep && sep->t != V_STR) jj_fail(rt, PT_EINVAL, pos, "separator must be a string");
        jsb b = {0};
        if (v->t == V_STR) {
            for (size_t i = 0; i < v->str.n;) {
                uint32_t c;
                size_t k = jj_utf8_dec(v->str.s + i, v->str.n - i, &c);
                if (i && sep) jsb_put(rt, &b, sep->str.s, sep->str.org, sep->str.n, pos);
                jsb_put(rt, &b, v->str.s + i, v->str.org ? v->str.org + i : NULL, k, pos);
                i += k;
            }
        } else {
            for (size_t i = 0; i < v->n; i++) {
                if (i && sep) jsb_put(rt, &b, sep->str.s, sep->str.org, sep->str.n, pos);
                join_item(rt, &b, v->items[i], pos);
            }
        }
        return jv_str(rt, jsb_str(&b));
    }
    if (F("int") || F("float")) {
        int is_int = F("int");
        jv *def = n ? a[0] : jj_kwarg(kw, "default");
        if (!def) def = jv_num(rt, is_int ? V_INT : V_FLOAT, 0);
        if (v->t == V_STR) {
            double x = parse_number(v->str, is_int);
            return isnan(x) ? def : jv_num(rt, is_int ? V_INT : V_FLOAT, x);
        }
        if (is_num(v)) return jv_num(rt, is_int ? V_INT : V_FLOAT, is_int ? trunc(v->num) + 0.0 : v->num);
        if (v->t == V_BOOL) return jv_num(rt, is_int ? V_INT : V_FLOAT, v->b);
        jj_fail(rt, PT_EINVAL, pos, "cannot apply filter \"%.*s\" to type: %s", (int)name.n, name.s, jv_type_name(v));
    }
    if (F("default")) {
        jv *def = n ? a[0] : NULL, *bo = n > 1 ? a[1] : jj_kwarg(kw, "boolean");
        if (!def) def = jv_cstr(rt, "", 0);
        if (bo && bo->t != V_BOOL) jj_fail(rt, PT_EINVAL, pos, "`default` filter flag must be a boolean");
        return v->t == V_UNDEF || (bo && bo->b && !jv_truthy(v)) ? def : v;
    }
    if (v->t == V_ARR) {
        if (F("sort")) {
            jv *rev = n > 0 ? a[0] : jj_kwarg(kw, "reverse"), *cs = n > 1 ? a[1] : jj_kwarg(kw, "case_sensitive"),
               *at = n > 2 ? a[2] : jj_kwarg(kw, "attribute");
            if (rev && rev->t != V_BOOL) jj_fail(rt, PT_EINVAL, pos, "reverse must be a boolean");
            if (cs && cs->t != V_BOOL) jj_fail(rt, PT_EINVAL, pos, "case_sensitive must be a boolean");
            if (at && at->t != V_STR && at->t != V_INT && at->t != V_NULL) jj_fail(rt, PT_EINVAL, pos, "attribute must be a string, integer, or null");
            sort_ctx c = {rt, cs && cs->b, rev && rev->b, NULL, 0, -1, pos};
            char buf[64];
            if (at && at->t == V_STR) c.attr = at->str.s, c.attr_n = at->str.n;
            if (at && at->t == V_INT) jj_num_str(at->num, buf), c.attr = buf, c.attr_n = strlen(buf);
            return sorted(rt, v, &c);
        }
        if (F("map")) {
            jv *at = jj_kwarg(kw, "attribute"), *def = jj_kwarg(kw, "default");
            if (!at) jj_fail(rt, PT_EINVAL, pos, "`map` expressions without `attribute` set are not supported");
            if (at->t != V_STR) jj_fail(rt, PT_EINVAL, pos, "attribute must be a string");
            jv *r = jv_arr(rt, v->n);
            for (size_t i = 0; i < v->n; i++) {
                if (v->items[i]->t != V_OBJ && v->items[i]->t != V_NS) jj_fail(rt, PT_EINVAL, pos, "items in map must be objects");
                jv *x = attribute_value(rt, v->items[i], at->str.s, at->str.n);
                jv_push(rt, r, x->t == V_UNDEF && def ? def : x);
            }
            return r;
        }
        unknown(rt, "ArrayValue", name, pos);
    }
    if (v->t == V_STR) {
        if (F("indent")) {
            jv *w = n > 0 ? a[0] : jj_kwarg(kw, "width"), *first = n > 1 ? a[1] : jj_kwarg(kw, "first"),
               *blank = n > 2 ? a[2] : jj_kwarg(kw, "blank");
            if (w && w->t != V_INT && w->t != V_STR) jj_fail(rt, PT_EINVAL, pos, "width must be an integer or a string");
            jstr ind = {"    ", NULL, 4};
            if (w && w->t == V_STR) ind = w->str;
            else if (w) {
                size_t k = w->num > 0 ? (size_t)(w->num > 4096 ? 4096 : w->num) : 0;
                char *sp = jj_alloc(rt, k + 1, pos);
                memset(sp, ' ', k);
                ind = (jstr){sp, NULL, k};
            }
            return indent(rt, v->str, ind, first && jv_truthy(first), blank && jv_truthy(blank), pos);
        }
        if (F("replace")) {
            jv **all = jj_alloc(rt, (n + 1) * sizeof *all, pos);
            if (n) memcpy(all, a, n * sizeof *all);
            all[n] = kw ? kw : jv_obj(rt, V_OBJ);
            return str_method(rt, v, "replace", all, n + 1, pos);
        }
        unknown(rt, "StringValue", name, pos);
    }
    if (v->t == V_OBJ) {
        static const char *const m[] = {"get", "items", "keys", "values", "dictsort"};
        for (size_t i = 0; i < 5; i++)
            if (F(m[i])) return obj_method(rt, v, m[i], a, n, kw, pos);
        unknown(rt, "ObjectValue", name, pos);
    }
    jj_fail(rt, PT_EINVAL, pos, "cannot apply filter \"%.*s\" to type: %s", (int)(name.n < 60 ? name.n : 60), name.s, jv_type_name(v));
#undef F
}

jv *jj_apply_filter(jj_rt *rt, jv *v, const jj_node *f, jj_env *env) {
    if (!f->flag) return filter_plain(rt, v, (jstr){f->b->s, NULL, f->b->sn}, f->pos);
    return filter_call(rt, v, f, env);
}
