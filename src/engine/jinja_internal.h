/* jinja_internal.h — the Jinja interpreter's tokens, syntax tree and values, shared by
 * jinja_parse.c (lexer, parser), jinja_value.c (values, strings, JSON, numbers) and
 * jinja_eval.c (the evaluator, filters, tests, methods). Only the engine includes it. */
#ifndef PARITY_ENGINE_JINJA_INTERNAL_H
#define PARITY_ENGINE_JINJA_INTERNAL_H

#include <setjmp.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "engine/jinja.h"

#define JJ_MAX_SOURCE (1u << 20) /* template bytes */
#define JJ_MAX_NEST 200          /* parser recursion */
#define JJ_MAX_DEPTH 120         /* evaluation recursion (macro calls, nested values) */

/* ---- syntax tree ---- */
typedef enum {
    /* statements */
    N_TEXT, N_IF, N_FOR, N_SET, N_MACRO, N_BREAK, N_CONTINUE, N_COMMENT,
    /* expressions */
    N_STR, N_INT, N_FLOAT, N_IDENT, N_ARRAY, N_TUPLE, N_OBJECT, N_BINARY, N_UNARY, N_MEMBER, N_SLICE, N_CALL,
    N_FILTER, N_TEST, N_TERNARY, N_SELECT, N_KWARG, N_SPREAD, N_KWSPREAD,
} jj_kind;

typedef struct jj_node jj_node;
typedef struct {
    jj_node **v;
    size_t n, cap;
} jj_list;

struct jj_node {
    jj_kind kind;
    size_t pos;      /* offset in the original template */
    const char *s;   /* N_TEXT, N_STR, N_IDENT: bytes; N_BINARY, N_UNARY: the operator */
    size_t sn;
    double num;      /* N_INT, N_FLOAT */
    int flag;        /* N_MEMBER: computed; N_TEST: negate; N_FILTER: has a call */
    jj_node *a, *b, *c; /* operands: binary (a, b), unary (a), member (a object, b property), slice (a, b, c),
                         * call (a callee), filter (a operand, b name ident), test (a operand, b name),
                         * ternary (a cond, b then, c else), select (a lhs, b test), kwarg (a key, b value),
                         * if (a test), for (a loop var, b iterable), set (a target, b value), macro (a name) */
    jj_list args;    /* call/filter arguments, array/tuple items, object keys and values alternated,
                      * macro parameters, if body, for body, set body */
    jj_list alt;     /* if alternate, for else */
};

struct pt_jinja {
    char *src;       /* preprocessed source (tokens point into it) */
    size_t *map;     /* preprocessed offset -> original offset */
    char *orig;      /* the original, for line/column */
    size_t orig_len;
    jj_list body;
    void *arena;     /* node and string storage */
};

/* Line and column (1-based) of an original offset. */
void jj_line_col(const pt_jinja *t, size_t pos, size_t *line, size_t *col);

/* ---- arena ---- */
typedef struct jj_arena jj_arena;
jj_arena *jj_arena_new(size_t max);
void *jj_arena_alloc(jj_arena *a, size_t n); /* zeroed; NULL past max */
size_t jj_arena_used(const jj_arena *a);
void jj_arena_free(jj_arena *a);

/* ---- values ---- */
typedef enum { V_UNDEF, V_NULL, V_BOOL, V_INT, V_FLOAT, V_STR, V_ARR, V_OBJ, V_NS, V_FUNC } jv_type;

typedef struct jv jv;
typedef struct {
    const char *s;
    const uint16_t *org; /* NULL: all origin 0 */
    size_t n;
} jstr;

typedef enum { F_RANGE, F_RAISE, F_NAMESPACE, F_STRFTIME, F_STRMETHOD, F_OBJMETHOD, F_MACRO } jfunc_kind;

typedef struct jj_env jj_env;
struct jv {
    jv_type t;
    int tuple;      /* V_ARR made by a tuple */
    int b;          /* V_BOOL */
    double num;     /* V_INT, V_FLOAT */
    jstr str;       /* V_STR */
    jv **items;     /* V_ARR: items; V_OBJ, V_NS: values */
    jstr *keys;     /* V_OBJ, V_NS */
    size_t n, cap;
    /* V_FUNC */
    jfunc_kind fk;
    const char *fname; /* method name */
    jv *self;          /* method receiver */
    const jj_node *macro;
    jj_env *closure;
};

struct jj_env {
    jj_env *parent;
    jstr *names;
    jv **vals;
    size_t n, cap;
};

/* The render state: limits, arena, the error. */
typedef struct {
    const pt_jinja *t;
    jj_arena *ar;
    pt_err *err;
    jmp_buf fail;
    int code;
    uint64_t steps, max_steps;
    size_t max_output;
    int depth;
    int64_t now;
    int local_time;
    jv *undef, *null, *yes, *no;
} jj_rt;

/* Every failure longjmps to rt->fail with rt->err filled. */
_Noreturn void jj_fail(jj_rt *rt, int code, size_t pos, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
void *jj_alloc(jj_rt *rt, size_t n, size_t pos);

jv *jv_new(jj_rt *rt, jv_type t);
jv *jv_num(jj_rt *rt, jv_type t, double x);
jv *jv_str(jj_rt *rt, jstr s);
jv *jv_cstr(jj_rt *rt, const char *s, size_t n); /* origin 0 copy */
jv *jv_bool(jj_rt *rt, int b);
jv *jv_arr(jj_rt *rt, size_t cap);
void jv_push(jj_rt *rt, jv *arr, jv *item);
jv *jv_obj(jj_rt *rt, jv_type t);
jv *jv_get(const jv *obj, const char *k, size_t kn); /* NULL if absent */
void jv_set(jj_rt *rt, jv *obj, jstr k, jv *val);
int jv_truthy(const jv *v);
const char *jv_type_name(const jv *v);

/* Strings with origins. */
typedef struct {
    char *s;
    uint16_t *org;
    size_t n, cap;
    int any_org;
} jsb;
void jsb_put(jj_rt *rt, jsb *b, const char *s, const uint16_t *org, size_t n, size_t pos);
void jsb_puts(jj_rt *rt, jsb *b, const char *s, size_t pos);
jstr jsb_str(jsb *b);
jstr jstr_sub(jstr s, size_t from, size_t to);
uint16_t jstr_origin_of(jstr s); /* the highest origin in s (0 if none) */
jstr jstr_with_origin(jj_rt *rt, const char *s, size_t n, uint16_t org); /* one origin for all */

/* JavaScript conversions. */
void jj_num_str(double x, char *buf);                      /* Number.prototype.toString */
void jj_to_string(jj_rt *rt, jsb *b, const jv *v, size_t pos, int depth); /* the reference's toString() */
void jj_js_value_str(jj_rt *rt, jsb *b, const jv *v, size_t pos, int depth); /* String(v.value) */
int jj_loose_eq(jj_rt *rt, const jv *a, const jv *b, size_t pos);         /* a.value == b.value */
int jj_strict_eq(const jv *a, const jv *b);                                /* a.value === b.value */
typedef struct {
    long indent;  /* <= 0: none */
    const char *item_sep, *key_sep;
    size_t item_sep_n, key_sep_n;
    int ascii, sort_keys, undef_null;
} jj_json_opts;
void jj_to_json(jj_rt *rt, jsb *b, const jv *v, const jj_json_opts *o, int depth, size_t pos);
jv *jj_from_json(jj_rt *rt, json_t *j, uint16_t org, int depth);
size_t jj_utf16_len(jstr s);
int jj_is_ws(uint32_t cp);
size_t jj_utf8_dec(const char *s, size_t n, uint32_t *cp); /* bytes of one code point (1 on invalid) */
jstr jj_trim(jstr s, int left, int right);
jv *jj_case(jj_rt *rt, jstr s, int upper);

/* The evaluator's entry for filters and methods (jinja_filters.c). */
jv *jj_eval(jj_rt *rt, const jj_node *n, jj_env *env);
jv *jj_apply_filter(jj_rt *rt, jv *operand, const jj_node *f, jj_env *env);
jv *jj_call_method(jj_rt *rt, jv *fn, jv **args, size_t n, jv *kw, size_t pos);
int jj_test(jj_rt *rt, const char *name, size_t nn, jv *a, jv *b, size_t pos);
void jj_eval_args(jj_rt *rt, const jj_list *args, jj_env *env, jv ***pos_out, size_t *npos, jv **kw_out);
jv *jj_kwarg(jv *kw, const char *name);

#endif
