/* Jinja templates: preprocessing, lexer and parser, after @huggingface/jinja's (see jinja.h). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/jinja_internal.h"

/* ---- arena ---- */
typedef struct chunk {
    struct chunk *next;
    size_t used, cap;
    _Alignas(16) unsigned char data[];
} chunk;
struct jj_arena {
    chunk *head;
    size_t total, max;
};

jj_arena *jj_arena_new(size_t max) {
    jj_arena *a = calloc(1, sizeof *a);
    if (a) a->max = max;
    return a;
}

void *jj_arena_alloc(jj_arena *a, size_t n) {
    n = (n + 15) & ~(size_t)15;
    if (!n) n = 16;
    if (n > a->max || a->total > a->max - n) return NULL;
    if (!a->head || a->head->cap - a->head->used < n) {
        size_t cap = n > 65536 ? n : 65536;
        chunk *c = malloc(sizeof *c + cap);
        if (!c) return NULL;
        c->used = 0, c->cap = cap, c->next = a->head, a->head = c;
        if (n > 65536) { /* a big block gets its own chunk, kept behind the current one */
            if (c->next) a->head = c->next, c->next = a->head->next, a->head->next = c;
        }
        a->total += sizeof *c + cap;
        if (n > 65536) {
            c->used = n;
            memset(c->data, 0, n);
            return c->data;
        }
    }
    void *p = a->head->data + a->head->used;
    a->head->used += n;
    memset(p, 0, n);
    return p;
}

size_t jj_arena_used(const jj_arena *a) { return a->total; }

void jj_arena_free(jj_arena *a) {
    if (!a) return;
    for (chunk *c = a->head, *nx; c; c = nx) nx = c->next, free(c);
    free(a);
}

/* ---- UTF-8 and JavaScript whitespace ---- */
size_t jj_utf8_dec(const char *s, size_t n, uint32_t *cp) {
    const unsigned char *u = (const unsigned char *)s;
    if (!n) return *cp = 0, 0;
    if (u[0] < 0x80) return *cp = u[0], 1;
    size_t k = u[0] >= 0xf0 ? 4 : u[0] >= 0xe0 ? 3 : u[0] >= 0xc0 ? 2 : 1;
    if (k == 1 || k > n) return *cp = 0xfffd, 1;
    uint32_t c = u[0] & (0x3f >> (k - 1));
    for (size_t i = 1; i < k; i++) {
        if ((u[i] & 0xc0) != 0x80) return *cp = 0xfffd, 1;
        c = c << 6 | (u[i] & 0x3f);
    }
    return *cp = c, k;
}

int jj_is_ws(uint32_t c) {
    if (c <= 32) return c == 32 || (c >= 9 && c <= 13);
    return c == 0xa0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 || c == 0x202f ||
           c == 0x205f || c == 0x3000 || c == 0xfeff;
}

/* Bytes of the whitespace character at s (0: none). */
static size_t ws_at(const char *s, size_t n) {
    uint32_t c;
    size_t k = jj_utf8_dec(s, n, &c);
    return k && jj_is_ws(c) ? k : 0;
}

/* Bytes of the whitespace character ending at s[n] (0: none). */
static size_t ws_before(const char *s, size_t n) {
    size_t k = 1;
    while (k < 4 && k < n && ((unsigned char)s[n - k] & 0xc0) == 0x80) k++;
    return n >= k && ws_at(s + n - k, k) == k ? k : 0;
}

void jj_line_col(const pt_jinja *t, size_t pos, size_t *line, size_t *col) {
    size_t l = 1, c = 1;
    for (size_t i = 0; i < pos && i < t->orig_len; i++) {
        if (t->orig[i] == '\n') l++, c = 1;
        else if (((unsigned char)t->orig[i] & 0xc0) != 0x80) c++;
    }
    *line = l, *col = c;
}

/* ---- preprocessing (with a map back to the original offsets) ---- */
typedef struct {
    char *s;
    size_t *m;
    size_t n;
} text;

static void tput(text *o, const text *in, size_t from, size_t to) {
    memcpy(o->s + o->n, in->s + from, to - from);
    memcpy(o->m + o->n, in->m + from, (to - from) * sizeof *o->m);
    o->n += to - from;
}

static int line_start(const text *t, size_t i) {
    if (i == 0) return 1;
    unsigned char c = (unsigned char)t->s[i - 1];
    if (c == '\n' || c == '\r') return 1;
    return i >= 3 && (unsigned char)t->s[i - 3] == 0xe2 && (unsigned char)t->s[i - 2] == 0x80 && (c == 0xa8 || c == 0xa9);
}

static void lstrip_blocks(const text *in, text *o) {
    size_t i = 0;
    while (i < in->n) {
        if (line_start(in, i)) {
            size_t j = i;
            while (j < in->n && (in->s[j] == ' ' || in->s[j] == '\t')) j++;
            if (j > i && j + 1 < in->n && in->s[j] == '{' && strchr("#%-", in->s[j + 1]) && in->s[j + 1]) i = j;
        }
        tput(o, in, i, i + 1);
        i++;
    }
}

static void trim_blocks(const text *in, text *o) {
    for (size_t i = 0; i < in->n;) {
        if (i + 2 < in->n && strchr("#%-", in->s[i]) && in->s[i] && in->s[i + 1] == '}' && in->s[i + 2] == '\n') {
            tput(o, in, i, i + 2);
            i += 3;
        } else {
            tput(o, in, i, i + 1);
            i++;
        }
    }
}

/* The match of {%(-?)\s*(?:end)?generation\s*(-?)%}(\s*) at i: its end, *lstrip, *rstrip, *after. */
static size_t gen_tag(const text *t, size_t i, int *lstrip, int *rstrip, size_t *after) {
    const char *s = t->s;
    size_t n = t->n, j = i + 2, k;
    if (i + 1 >= n || s[i] != '{' || s[i + 1] != '%') return 0;
    *lstrip = j < n && s[j] == '-';
    if (*lstrip) j++;
    while ((k = ws_at(s + j, n - j))) j += k;
    if (n - j >= 3 && !memcmp(s + j, "end", 3) && n - j >= 13 && !memcmp(s + j + 3, "generation", 10)) j += 3;
    if (n - j < 10 || memcmp(s + j, "generation", 10)) return 0;
    j += 10;
    while ((k = ws_at(s + j, n - j))) j += k;
    *rstrip = j < n && s[j] == '-' && j + 2 < n && s[j + 1] == '%' && s[j + 2] == '}';
    if (*rstrip) j++;
    if (j + 1 >= n || s[j] != '%' || s[j + 1] != '}') return 0;
    j += 2;
    *after = j;
    while ((k = ws_at(s + j, n - j))) j += k;
    return j;
}

static void generation_tags(const text *in, text *o) {
    size_t last = 0;
    for (size_t i = 0; i < in->n; i++) {
        int ls, rs;
        size_t after, end = gen_tag(in, i, &ls, &rs, &after);
        if (!end) continue;
        size_t e = i, k;
        while (ls && e > last && (k = ws_before(in->s, e))) e -= k;
        tput(o, in, last, e);
        if (!rs) tput(o, in, after, end);
        last = end;
        i = end - 1;
    }
    tput(o, in, last, in->n);
}

static int preprocess(const char *src, size_t n, text *out) {
    text a = {malloc(n + 1), malloc((n + 1) * sizeof(size_t)), 0}, b = {malloc(n + 1), malloc((n + 1) * sizeof(size_t)), 0};
    if (!a.s || !a.m || !b.s || !b.m) {
        free(a.s), free(a.m), free(b.s), free(b.m);
        return -1;
    }
    memcpy(a.s, src, n);
    for (size_t i = 0; i < n; i++) a.m[i] = i;
    a.n = n && src[n - 1] == '\n' ? n - 1 : n;
    lstrip_blocks(&a, &b);
    a.n = 0;
    trim_blocks(&b, &a);
    b.n = 0;
    generation_tags(&a, &b);
    b.s[b.n] = 0;
    b.m[b.n] = b.n ? b.m[b.n - 1] + 1 : 0;
    free(a.s), free(a.m);
    *out = b;
    return 0;
}

/* ---- lexer ---- */
typedef enum {
    T_TEXT, T_NUM, T_STR, T_IDENT, T_EQUALS, T_LPAREN, T_RPAREN, T_OPEN_STMT, T_CLOSE_STMT, T_OPEN_EXPR, T_CLOSE_EXPR,
    T_LBRACKET, T_RBRACKET, T_LBRACE, T_RBRACE, T_COMMA, T_DOT, T_COLON, T_PIPE, T_ADD, T_MUL, T_POW, T_CMP, T_UNARY,
    T_COMMENT,
} tok_type;

typedef struct {
    tok_type t;
    const char *s;
    size_t n, pos;
} tok;

typedef struct {
    pt_jinja *T;
    jj_arena *ar;
    const char *s;
    size_t n, cur;
    tok *toks;
    size_t nt, ct;
    size_t p; /* parser position */
    int depth;
    pt_err *err;
    jmp_buf fail;
} lx;

static _Noreturn void lfail(lx *L, int code, size_t ppos, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static _Noreturn void lfail(lx *L, int code, size_t ppos, const char *fmt, ...) {
    char msg[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    size_t line, col, o = L->T->map[ppos < L->n ? ppos : L->n];
    jj_line_col(L->T, o, &line, &col);
    pt_errf(L->err, code, "chat template: line %zu, column %zu: %s", line, col, msg);
    longjmp(L->fail, 1);
}

static void *lalloc(lx *L, size_t n) {
    void *p = jj_arena_alloc(L->ar, n);
    if (!p) lfail(L, PT_ENOMEM, L->cur, "out of memory");
    return p;
}

static void push_tok(lx *L, tok_type t, const char *s, size_t n, size_t pos) {
    if (L->nt == L->ct) {
        size_t nc = L->ct ? L->ct * 2 : 256;
        tok *nt = realloc(L->toks, nc * sizeof *nt);
        if (!nt) lfail(L, PT_ENOMEM, pos, "out of memory");
        L->toks = nt, L->ct = nc;
    }
    L->toks[L->nt++] = (tok){t, s, n, pos};
}

static int is_word(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_'; }
static int is_digit(char c) { return c >= '0' && c <= '9'; }

/* Consumes whitespace (the reference fails when it runs to the end of the input). */
static void skip_ws_strict(lx *L) {
    size_t k;
    while (L->cur < L->n && (k = ws_at(L->s + L->cur, L->n - L->cur))) {
        L->cur += k;
        if (L->cur >= L->n) lfail(L, PT_EFORMAT, L->cur, "unexpected end of input");
    }
}

static void skip_ws(lx *L) {
    size_t k;
    while (L->cur < L->n && (k = ws_at(L->s + L->cur, L->n - L->cur))) L->cur += k;
}

static void put_cp(char *o, size_t *n, uint32_t c) {
    if (c >= 0xd800 && c <= 0xdfff) c = 0xfffd; /* a lone surrogate: what a UTF-8 encoder writes for it */
    if (c < 0x80) o[(*n)++] = (char)c;
    else if (c < 0x800) o[(*n)++] = (char)(0xc0 | c >> 6), o[(*n)++] = (char)(0x80 | (c & 0x3f));
    else if (c < 0x10000)
        o[(*n)++] = (char)(0xe0 | c >> 12), o[(*n)++] = (char)(0x80 | ((c >> 6) & 0x3f)), o[(*n)++] = (char)(0x80 | (c & 0x3f));
    else
        o[(*n)++] = (char)(0xf0 | c >> 18), o[(*n)++] = (char)(0x80 | ((c >> 12) & 0x3f)),
        o[(*n)++] = (char)(0x80 | ((c >> 6) & 0x3f)), o[(*n)++] = (char)(0x80 | (c & 0x3f));
}

static int hexval(const char *s, size_t k, uint32_t *v) {
    *v = 0;
    for (size_t i = 0; i < k; i++) {
        char c = s[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (d < 0) return -1;
        *v = *v * 16 + (uint32_t)d;
    }
    return 0;
}

static void lex_string(lx *L, char q, size_t start) {
    size_t end = L->cur; /* the literal's source length bounds its decoded length */
    while (end < L->n && L->s[end] != q) end += L->s[end] == '\\' ? 2 : 1;
    char *o = lalloc(L, (end < L->n ? end : L->n) - L->cur + 1);
    size_t on = 0;
    for (;;) {
        if (L->cur >= L->n) lfail(L, PT_EFORMAT, start, "unterminated string literal");
        char c = L->s[L->cur];
        if (c == q) break;
        L->cur++;
        if (c != '\\') {
            o[on++] = c;
            continue;
        }
        if (L->cur >= L->n) lfail(L, PT_EFORMAT, start, "unterminated string literal");
        char e = L->s[L->cur++];
        const char *map = "n\nt\tr\rb\bf\fv\v''\"\"\\\\";
        const char *m = NULL;
        for (const char *p = map; *p; p += 2)
            if (*p == e) m = p;
        if (e == 'x' || e == 'u') {
            size_t k = e == 'x' ? 2 : 4;
            uint32_t v;
            if (L->n - L->cur < k || hexval(L->s + L->cur, k, &v))
                lfail(L, PT_EFORMAT, L->cur, "invalid hexadecimal escape sequence");
            L->cur += k;
            uint32_t lo;
            if (e == 'u' && v >= 0xd800 && v < 0xdc00 && L->n - L->cur >= 6 && L->s[L->cur] == '\\' &&
                L->s[L->cur + 1] == 'u' && !hexval(L->s + L->cur + 2, 4, &lo) && lo >= 0xdc00 && lo < 0xe000) {
                v = 0x10000 + ((v - 0xd800) << 10) + (lo - 0xdc00);
                L->cur += 6;
            }
            put_cp(o, &on, v);
        } else if (m) {
            o[on++] = m[1];
        } else {
            lfail(L, PT_EFORMAT, L->cur - 1, "unexpected escaped character: %c", e);
        }
    }
    L->cur++;
    push_tok(L, T_STR, o, on, start);
}

static void strip_trailing_text(lx *L) {
    if (!L->nt || L->toks[L->nt - 1].t != T_TEXT) return;
    tok *t = &L->toks[L->nt - 1];
    size_t k;
    while (t->n && (k = ws_before(t->s, t->n))) t->n -= k;
    if (!t->n) L->nt--;
}

static const struct {
    const char *s;
    tok_type t;
} RULES[] = {
    {"{%", T_OPEN_STMT}, {"%}", T_CLOSE_STMT}, {"{{", T_OPEN_EXPR}, {"}}", T_CLOSE_EXPR}, {"(", T_LPAREN},
    {")", T_RPAREN}, {"{", T_LBRACE}, {"}", T_RBRACE}, {"[", T_LBRACKET}, {"]", T_RBRACKET}, {",", T_COMMA},
    {".", T_DOT}, {":", T_COLON}, {"|", T_PIPE}, {"<=", T_CMP}, {">=", T_CMP}, {"==", T_CMP}, {"!=", T_CMP},
    {"<", T_CMP}, {">", T_CMP}, {"+", T_ADD}, {"-", T_ADD}, {"~", T_ADD}, {"**", T_POW}, {"*", T_MUL},
    {"//", T_MUL}, {"/", T_MUL}, {"%", T_MUL}, {"=", T_EQUALS},
};

/* Text up to the next {%, {{ or {#. */
static int lex_text(lx *L) {
    size_t end = L->cur;
    for (;;) {
        const char *p = memchr(L->s + end, '{', L->n - end);
        if (!p) {
            end = L->n;
            break;
        }
        end = (size_t)(p - L->s);
        if (end + 1 < L->n && (p[1] == '%' || p[1] == '{' || p[1] == '#')) break;
        end++;
    }
    if (end <= L->cur) return 0;
    push_tok(L, T_TEXT, L->s + L->cur, end - L->cur, L->cur);
    L->cur = end;
    return 1;
}

/* {# ... #}, {%-, {{- at the cursor: 1 if consumed. */
static int lex_open(lx *L) {
    const char *s = L->s;
    size_t c = L->cur;
    if (s[c] != '{' || c + 1 >= L->n) return 0;
    if (s[c + 1] == '#') {
        c += 2;
        int before = c < L->n && s[c] == '-';
        if (before) c++;
        const char *e = NULL;
        for (size_t i = c; i + 1 < L->n; i++)
            if (s[i] == '#' && s[i + 1] == '}') {
                e = s + i;
                break;
            }
        if (!e) lfail(L, PT_EFORMAT, L->cur, "missing end of comment tag");
        size_t end = (size_t)(e - s);
        int after = end > c && s[end - 1] == '-';
        if (before) strip_trailing_text(L);
        push_tok(L, T_COMMENT, s + c, end - c - (size_t)after, L->cur);
        L->cur = end + 2;
        if (after) skip_ws(L);
        return 1;
    }
    if (c + 2 < L->n && s[c + 2] == '-' && (s[c + 1] == '%' || s[c + 1] == '{')) {
        strip_trailing_text(L);
        push_tok(L, s[c + 1] == '%' ? T_OPEN_STMT : T_OPEN_EXPR, s + c, 2, c);
        L->cur += 3;
        return 2;
    }
    return 0;
}

static void lex_number(lx *L, size_t start, int after_dot) {
    while (L->cur < L->n && is_digit(L->s[L->cur])) L->cur++;
    if (L->cur >= L->n) lfail(L, PT_EFORMAT, L->cur, "unexpected end of input");
    if (!after_dot && L->s[L->cur] == '.' && L->cur + 1 < L->n && is_digit(L->s[L->cur + 1])) {
        L->cur++;
        while (L->cur < L->n && is_digit(L->s[L->cur])) L->cur++;
        if (L->cur >= L->n) lfail(L, PT_EFORMAT, L->cur, "unexpected end of input");
    }
    push_tok(L, T_NUM, L->s + start, L->cur - start, start);
}

static void lex(lx *L) {
    int depth = 0; /* curly brackets inside an expression */
    while (L->cur < L->n) {
        tok_type last = L->nt ? L->toks[L->nt - 1].t : T_TEXT;
        int none = L->nt == 0;
        if (none || last == T_CLOSE_STMT || last == T_CLOSE_EXPR || last == T_COMMENT)
            if (lex_text(L)) continue;
        int o = lex_open(L);
        if (o == 1) continue;
        if (o == 2) {
            if (L->toks[L->nt - 1].t == T_OPEN_EXPR) depth = 0;
            continue;
        }
        skip_ws_strict(L);
        if (L->cur >= L->n) break;
        const char *s = L->s;
        size_t c = L->cur;
        char ch = s[c];
        if (ch == '-' && c + 2 < L->n && s[c + 2] == '}' && (s[c + 1] == '%' || s[c + 1] == '}')) {
            push_tok(L, s[c + 1] == '%' ? T_CLOSE_STMT : T_CLOSE_EXPR, s + c + 1, 2, c);
            L->cur += 3;
            skip_ws(L);
            continue;
        }
        if (ch == '-' || ch == '+') {
            if (none || last == T_TEXT) lfail(L, PT_EFORMAT, c, "unexpected character: %c", ch);
            if (!(last == T_IDENT || last == T_NUM || last == T_STR || last == T_RPAREN || last == T_RBRACKET)) {
                L->cur++;
                if (L->cur < L->n && is_digit(s[L->cur])) lex_number(L, c, 0);
                else push_tok(L, T_UNARY, s + c, 1, c);
                continue;
            }
        }
        int matched = 0;
        for (size_t i = 0; i < sizeof RULES / sizeof *RULES && !matched; i++) {
            size_t k = strlen(RULES[i].s);
            if (RULES[i].t == T_CLOSE_EXPR && depth > 0) continue;
            if (L->n - c >= k && !memcmp(s + c, RULES[i].s, k)) {
                push_tok(L, RULES[i].t, s + c, k, c);
                if (RULES[i].t == T_OPEN_EXPR) depth = 0;
                else if (RULES[i].t == T_LBRACE) depth++;
                else if (RULES[i].t == T_RBRACE) depth--;
                L->cur += k;
                matched = 1;
            }
        }
        if (matched) continue;
        if (ch == '\'' || ch == '"') {
            L->cur++;
            lex_string(L, ch, c);
        } else if (is_digit(ch)) {
            lex_number(L, c, last == T_DOT && !none);
        } else if (is_word(ch)) {
            while (L->cur < L->n && is_word(s[L->cur])) L->cur++;
            if (L->cur >= L->n) lfail(L, PT_EFORMAT, L->cur, "unexpected end of input");
            push_tok(L, T_IDENT, s + c, L->cur - c, c);
        } else {
            uint32_t cp;
            jj_utf8_dec(s + c, L->n - c, &cp);
            lfail(L, PT_EFORMAT, c, "unexpected character U+%04X", (unsigned)cp);
        }
    }
}

/* ---- parser ---- */
static tok *peek(lx *L, size_t k) { return L->p + k < L->nt ? &L->toks[L->p + k] : NULL; }
static int is(lx *L, tok_type t) { return L->p < L->nt && L->toks[L->p].t == t; }
static int is_id(lx *L, size_t k, const char *name) {
    tok *t = peek(L, k);
    return t && t->t == T_IDENT && t->n == strlen(name) && !memcmp(t->s, name, t->n);
}
static int is_stmt(lx *L, const char *a, const char *b, const char *c) {
    return is(L, T_OPEN_STMT) && (is_id(L, 1, a) || (b && is_id(L, 1, b)) || (c && is_id(L, 1, c)));
}
static size_t here(lx *L) { return L->p < L->nt ? L->toks[L->p].pos : L->n; }

static tok *expect(lx *L, tok_type t, const char *what) {
    if (!is(L, t)) lfail(L, PT_EFORMAT, here(L), "expected %s", what);
    return &L->toks[L->p++];
}
static void expect_id(lx *L, const char *name) {
    if (!is_id(L, 0, name)) lfail(L, PT_EFORMAT, here(L), "expected %s", name);
    L->p++;
}

static jj_node *node(lx *L, jj_kind k, size_t ppos) {
    jj_node *n = lalloc(L, sizeof *n);
    n->kind = k;
    n->pos = L->T->map[ppos < L->n ? ppos : L->n];
    return n;
}

static void add(lx *L, jj_list *l, jj_node *n) {
    if (l->n == l->cap) {
        size_t nc = l->cap ? l->cap * 2 : 4;
        jj_node **v = lalloc(L, nc * sizeof *v);
        if (l->n) memcpy(v, l->v, l->n * sizeof *v);
        l->v = v, l->cap = nc;
    }
    l->v[l->n++] = n;
}

static jj_node *binary(lx *L, tok *op, const char *s, jj_node *a, jj_node *b) {
    jj_node *n = node(L, N_BINARY, op->pos);
    n->s = s ? s : op->s, n->sn = s ? strlen(s) : op->n, n->a = a, n->b = b;
    return n;
}

static jj_node *parse_expr(lx *L);
static jj_node *parse_any(lx *L);
static jj_node *parse_primary(lx *L);

static void enter(lx *L) {
    if (++L->depth > JJ_MAX_NEST) lfail(L, PT_ELIMIT, here(L), "nested more than %d deep", JJ_MAX_NEST);
}

static void parse_args(lx *L, jj_list *out, int params) {
    expect(L, T_LPAREN, "(");
    int saw_kw = 0;
    while (!is(L, T_RPAREN)) {
        if (L->p >= L->nt) lfail(L, PT_EFORMAT, here(L), "expected )");
        tok *t = peek(L, 0);
        int kwspread = t->t == T_POW, spread = t->t == T_MUL && t->n == 1 && t->s[0] == '*';
        if (params && (kwspread || spread)) lfail(L, PT_EFORMAT, t->pos, "argument unpacking in parameters");
        jj_node *a;
        if (kwspread || spread) {
            L->p++;
            a = node(L, kwspread ? N_KWSPREAD : N_SPREAD, t->pos);
            a->a = parse_expr(L);
        } else {
            a = parse_expr(L);
            if (is(L, T_EQUALS)) {
                L->p++;
                if (a->kind != N_IDENT) lfail(L, PT_EFORMAT, t->pos, "expected an identifier for a keyword argument");
                jj_node *kw = node(L, N_KWARG, t->pos);
                kw->a = a, kw->b = parse_expr(L);
                a = kw;
                saw_kw = 1;
            } else if (params && a->kind != N_IDENT) {
                lfail(L, PT_EFORMAT, t->pos, "expected an identifier for a parameter");
            } else if (saw_kw) {
                lfail(L, PT_EFORMAT, t->pos, "positional argument after keyword arguments");
            }
        }
        add(L, out, a);
        if (is(L, T_COMMA)) L->p++;
    }
    L->p++;
}

static jj_node *parse_member(lx *L, jj_node *obj) {
    while (is(L, T_DOT) || is(L, T_LBRACKET)) {
        tok *op = &L->toks[L->p++];
        jj_node *m = node(L, N_MEMBER, op->pos);
        m->a = obj;
        if (op->t == T_LBRACKET) {
            m->flag = 1;
            jj_node *sl[3] = {0};
            size_t k = 0;
            int slice = 0;
            while (!is(L, T_RBRACKET)) {
                if (L->p >= L->nt || k >= 3) lfail(L, PT_EFORMAT, here(L), "bad subscript");
                if (is(L, T_COLON)) {
                    sl[k++] = NULL, L->p++, slice = 1;
                } else {
                    sl[k++] = parse_expr(L);
                    if (is(L, T_COLON)) L->p++, slice = 1;
                }
            }
            if (!k) lfail(L, PT_EFORMAT, op->pos, "expected a subscript");
            L->p++;
            if (slice) {
                jj_node *s = node(L, N_SLICE, op->pos);
                s->a = sl[0], s->b = sl[1], s->c = sl[2];
                m->b = s;
            } else {
                m->b = sl[0];
            }
        } else {
            m->b = parse_primary(L);
            if (m->b->kind != N_IDENT && m->b->kind != N_INT)
                lfail(L, PT_EFORMAT, op->pos, "expected an identifier or integer after '.'");
        }
        obj = m;
    }
    return obj;
}

static jj_node *parse_call(lx *L, jj_node *callee) {
    enter(L);
    jj_node *c = node(L, N_CALL, here(L));
    c->a = callee;
    parse_args(L, &c->args, 0);
    jj_node *e = parse_member(L, c);
    if (is(L, T_LPAREN)) e = parse_call(L, e);
    L->depth--;
    return e;
}

static jj_node *parse_seq(lx *L, int primary) {
    size_t at = here(L);
    jj_node *first = primary ? parse_primary(L) : parse_expr(L);
    if (!is(L, T_COMMA)) return first;
    jj_node *t = node(L, N_TUPLE, at);
    add(L, &t->args, first);
    while (is(L, T_COMMA)) {
        L->p++;
        add(L, &t->args, primary ? parse_primary(L) : parse_expr(L));
    }
    return t;
}

static jj_node *parse_primary(lx *L) {
    if (L->p >= L->nt) lfail(L, PT_EFORMAT, L->n, "unexpected end of the template");
    enter(L);
    tok *t = &L->toks[L->p++];
    jj_node *n;
    switch (t->t) {
    case T_NUM: {
        char *buf = lalloc(L, t->n + 1);
        memcpy(buf, t->s, t->n);
        n = node(L, memchr(t->s, '.', t->n) ? N_FLOAT : N_INT, t->pos);
        n->num = strtod(buf, NULL);
        break;
    }
    case T_STR: {
        size_t total = t->n;
        for (size_t k = L->p; k < L->nt && L->toks[k].t == T_STR; k++) total += L->toks[k].n;
        char *s = lalloc(L, total + 1);
        memcpy(s, t->s, t->n);
        size_t off = t->n;
        while (is(L, T_STR)) memcpy(s + off, L->toks[L->p].s, L->toks[L->p].n), off += L->toks[L->p].n, L->p++;
        n = node(L, N_STR, t->pos);
        n->s = s, n->sn = total;
        break;
    }
    case T_IDENT:
        n = node(L, N_IDENT, t->pos);
        n->s = t->s, n->sn = t->n;
        break;
    case T_LPAREN:
        n = parse_seq(L, 0);
        expect(L, T_RPAREN, ")");
        break;
    case T_LBRACKET:
        n = node(L, N_ARRAY, t->pos);
        while (!is(L, T_RBRACKET)) {
            if (L->p >= L->nt) lfail(L, PT_EFORMAT, t->pos, "unterminated list");
            add(L, &n->args, parse_expr(L));
            if (is(L, T_COMMA)) L->p++;
        }
        L->p++;
        break;
    case T_LBRACE:
        n = node(L, N_OBJECT, t->pos);
        while (!is(L, T_RBRACE)) {
            if (L->p >= L->nt) lfail(L, PT_EFORMAT, t->pos, "unterminated dict");
            add(L, &n->args, parse_expr(L));
            expect(L, T_COLON, ":");
            add(L, &n->args, parse_expr(L));
            if (is(L, T_COMMA)) L->p++;
        }
        L->p++;
        break;
    default:
        lfail(L, PT_EFORMAT, t->pos, "unexpected token '%.*s'", (int)(t->n < 40 ? t->n : 40), t->s);
    }
    L->depth--;
    return n;
}

static jj_node *parse_unary_sign(lx *L) {
    tok *t = peek(L, 0);
    if (t && (t->t == T_UNARY || t->t == T_ADD) && t->n == 1 && (t->s[0] == '-' || t->s[0] == '+')) {
        enter(L);
        L->p++;
        jj_node *n = node(L, N_UNARY, t->pos);
        n->s = t->s, n->sn = 1, n->a = parse_unary_sign(L);
        L->depth--;
        return n;
    }
    jj_node *m = parse_member(L, parse_primary(L));
    return is(L, T_LPAREN) ? parse_call(L, m) : m;
}

static jj_node *parse_filter(lx *L) {
    jj_node *x = parse_unary_sign(L);
    while (is(L, T_PIPE)) {
        tok *op = &L->toks[L->p++];
        jj_node *f = node(L, N_FILTER, op->pos);
        f->a = x, f->b = parse_primary(L);
        if (f->b->kind != N_IDENT) lfail(L, PT_EFORMAT, op->pos, "expected a filter name");
        if (is(L, T_LPAREN)) f->flag = 1, parse_args(L, &f->args, 0);
        x = f;
    }
    return x;
}

static jj_node *parse_test(lx *L) {
    jj_node *x = parse_filter(L);
    while (is_id(L, 0, "is")) {
        size_t at = here(L);
        L->p++;
        int neg = is_id(L, 0, "not");
        if (neg) L->p++;
        jj_node *t = node(L, N_TEST, at);
        t->a = x, t->flag = neg, t->b = parse_primary(L);
        if (t->b->kind != N_IDENT) lfail(L, PT_EFORMAT, at, "expected a test name");
        x = t;
    }
    return x;
}

static jj_node *parse_pow(lx *L) {
    jj_node *x = parse_test(L);
    while (is(L, T_POW)) {
        tok *op = &L->toks[L->p++];
        x = binary(L, op, NULL, x, parse_test(L));
    }
    return x;
}

static jj_node *parse_mul(lx *L) {
    jj_node *x = parse_pow(L);
    while (is(L, T_MUL)) {
        tok *op = &L->toks[L->p++];
        x = binary(L, op, NULL, x, parse_pow(L));
    }
    return x;
}

static jj_node *parse_add(lx *L) {
    jj_node *x = parse_mul(L);
    while (is(L, T_ADD)) {
        tok *op = &L->toks[L->p++];
        x = binary(L, op, NULL, x, parse_mul(L));
    }
    return x;
}

static jj_node *parse_cmp(lx *L) {
    jj_node *x = parse_add(L);
    for (;;) {
        tok *op = peek(L, 0);
        const char *s = NULL;
        if (is_id(L, 0, "not") && is_id(L, 1, "in")) s = "not in", L->p += 2;
        else if (is_id(L, 0, "in")) s = "in", L->p++;
        else if (is(L, T_CMP)) L->p++;
        else break;
        x = binary(L, op, s, x, parse_add(L));
    }
    return x;
}

static jj_node *parse_not(lx *L) {
    jj_node *r = NULL;
    while (is_id(L, 0, "not")) {
        enter(L);
        tok *op = &L->toks[L->p++];
        jj_node *n = node(L, N_UNARY, op->pos);
        n->s = "not", n->sn = 3, n->a = parse_not(L);
        r = n;
        L->depth--;
    }
    return r ? r : parse_cmp(L);
}

static jj_node *parse_and(lx *L) {
    jj_node *x = parse_not(L);
    while (is_id(L, 0, "and")) {
        tok *op = &L->toks[L->p++];
        x = binary(L, op, NULL, x, parse_not(L));
    }
    return x;
}

static jj_node *parse_or(lx *L) {
    jj_node *x = parse_and(L);
    while (is_id(L, 0, "or")) {
        tok *op = &L->toks[L->p++];
        x = binary(L, op, NULL, x, parse_and(L));
    }
    return x;
}

static jj_node *parse_expr(lx *L) {
    enter(L);
    jj_node *a = parse_or(L);
    if (is_id(L, 0, "if")) {
        size_t at = here(L);
        L->p++;
        jj_node *test = parse_or(L);
        if (is_id(L, 0, "else")) {
            L->p++;
            jj_node *t = node(L, N_TERNARY, at);
            t->a = test, t->b = a, t->c = parse_expr(L);
            a = t;
        } else {
            jj_node *s = node(L, N_SELECT, at);
            s->a = a, s->b = test;
            a = s;
        }
    }
    L->depth--;
    return a;
}

static void parse_until(lx *L, jj_list *body, const char *a, const char *b, const char *c, size_t start) {
    while (!is_stmt(L, a, b, c)) {
        if (L->p >= L->nt) lfail(L, PT_EFORMAT, start, "this block has no {%% %s %%}", a);
        add(L, body, parse_any(L));
    }
}

static void end_block(lx *L, const char *name) {
    expect(L, T_OPEN_STMT, "{%");
    expect_id(L, name);
    expect(L, T_CLOSE_STMT, "%}");
}

static jj_node *parse_if(lx *L, size_t at) {
    enter(L);
    jj_node *n = node(L, N_IF, at);
    n->a = parse_expr(L);
    expect(L, T_CLOSE_STMT, "%}");
    parse_until(L, &n->args, "elif", "else", "endif", at);
    if (is_stmt(L, "elif", NULL, NULL)) {
        size_t p2 = here(L);
        L->p += 2;
        add(L, &n->alt, parse_if(L, p2));
    } else if (is_stmt(L, "else", NULL, NULL)) {
        L->p += 2;
        expect(L, T_CLOSE_STMT, "%}");
        parse_until(L, &n->alt, "endif", NULL, NULL, at);
    }
    L->depth--;
    return n;
}

static jj_node *parse_stmt(lx *L) {
    size_t at = here(L);
    expect(L, T_OPEN_STMT, "{%");
    if (!is(L, T_IDENT)) lfail(L, PT_EFORMAT, at, "expected a statement name");
    tok *name = &L->toks[L->p++];
    jj_node *n;
#define NAMED(x) (name->n == strlen(x) && !memcmp(name->s, x, name->n))
    if (NAMED("set")) {
        n = node(L, N_SET, at);
        n->a = parse_seq(L, 0);
        if (is(L, T_EQUALS)) {
            L->p++;
            n->b = parse_seq(L, 0);
        } else {
            expect(L, T_CLOSE_STMT, "%}");
            parse_until(L, &n->args, "endset", NULL, NULL, at);
            L->p++;
            expect_id(L, "endset");
        }
        expect(L, T_CLOSE_STMT, "%}");
    } else if (NAMED("if")) {
        n = parse_if(L, at);
        end_block(L, "endif");
    } else if (NAMED("for")) {
        n = node(L, N_FOR, at);
        n->a = parse_seq(L, 1);
        if (n->a->kind != N_IDENT && n->a->kind != N_TUPLE) lfail(L, PT_EFORMAT, at, "expected a loop variable");
        if (!is_id(L, 0, "in")) lfail(L, PT_EFORMAT, here(L), "expected 'in' after the loop variable");
        L->p++;
        n->b = parse_expr(L);
        expect(L, T_CLOSE_STMT, "%}");
        parse_until(L, &n->args, "endfor", "else", NULL, at);
        if (is_stmt(L, "else", NULL, NULL)) {
            L->p += 2;
            expect(L, T_CLOSE_STMT, "%}");
            parse_until(L, &n->alt, "endfor", NULL, NULL, at);
        }
        end_block(L, "endfor");
    } else if (NAMED("macro")) {
        n = node(L, N_MACRO, at);
        n->a = parse_primary(L);
        if (n->a->kind != N_IDENT) lfail(L, PT_EFORMAT, at, "expected the macro's name");
        parse_args(L, &n->args, 1);
        expect(L, T_CLOSE_STMT, "%}");
        parse_until(L, &n->alt, "endmacro", NULL, NULL, at);
        end_block(L, "endmacro");
    } else if (NAMED("break") || NAMED("continue")) {
        n = node(L, NAMED("break") ? N_BREAK : N_CONTINUE, at);
        expect(L, T_CLOSE_STMT, "%}");
    } else {
        lfail(L, PT_EFORMAT, name->pos, "unsupported statement '%.*s'", (int)(name->n < 40 ? name->n : 40), name->s);
    }
#undef NAMED
    return n;
}

static jj_node *parse_any(lx *L) {
    enter(L);
    tok *t = &L->toks[L->p];
    jj_node *n;
    if (t->t == T_COMMENT) {
        n = node(L, N_COMMENT, t->pos);
        L->p++;
    } else if (t->t == T_TEXT) {
        n = node(L, N_TEXT, t->pos);
        n->s = t->s, n->sn = t->n;
        L->p++;
    } else if (t->t == T_OPEN_STMT) {
        n = parse_stmt(L);
    } else if (t->t == T_OPEN_EXPR) {
        L->p++;
        n = parse_expr(L);
        expect(L, T_CLOSE_EXPR, "}}");
    } else {
        lfail(L, PT_EFORMAT, t->pos, "unexpected '%.*s'", (int)(t->n < 40 ? t->n : 40), t->s);
    }
    L->depth--;
    return n;
}

static int valid_utf8(const char *s, size_t n) {
    for (size_t i = 0; i < n;) {
        uint32_t c;
        size_t k = jj_utf8_dec(s + i, n - i, &c);
        if (c == 0xfffd && !(k == 3 && (unsigned char)s[i] == 0xef)) return 0;
        if (k >= 2 && ((k == 2 && c < 0x80) || (k == 3 && c < 0x800) || (k == 4 && (c < 0x10000 || c > 0x10ffff)) ||
                       (c >= 0xd800 && c <= 0xdfff)))
            return 0;
        i += k;
    }
    return 1;
}

int pt_jinja_parse(const char *src, size_t n, pt_jinja **out, pt_err *err) {
    *out = NULL;
    if (n > JJ_MAX_SOURCE) return pt_errf(err, PT_ELIMIT, "chat template: longer than %u bytes", JJ_MAX_SOURCE);
    if (!valid_utf8(src, n)) return pt_errf(err, PT_EFORMAT, "chat template: not valid UTF-8");
    pt_jinja *T = calloc(1, sizeof *T);
    text pre;
    if (!T || !(T->orig = malloc(n + 1)) || preprocess(src, n, &pre)) {
        if (T) free(T->orig);
        free(T);
        return pt_errf(err, PT_ENOMEM, "out of memory");
    }
    memcpy(T->orig, src, n), T->orig[n] = 0, T->orig_len = n;
    T->src = pre.s, T->map = pre.m;
    lx L = {.T = T, .s = pre.s, .n = pre.n, .err = err};
    L.ar = jj_arena_new((size_t)64 << 20);
    T->arena = L.ar;
    if (!L.ar) {
        pt_jinja_free(T);
        return pt_errf(err, PT_ENOMEM, "out of memory");
    }
    if (setjmp(L.fail)) {
        free(L.toks);
        pt_jinja_free(T);
        return err ? err->code : PT_EFORMAT;
    }
    lex(&L);
    while (L.p < L.nt) add(&L, &T->body, parse_any(&L));
    free(L.toks);
    *out = T;
    return PT_OK;
}

void pt_jinja_free(pt_jinja *t) {
    if (!t) return;
    jj_arena_free(t->arena);
    free(t->src), free(t->map), free(t->orig);
    free(t);
}
