/* Jinja evaluation: statements, expressions, scopes, macros and the render entry point, after
 * @huggingface/jinja's interpreter (see jinja.h). Filters, tests and methods: jinja_filters.c. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine/jinja_internal.h"

#define MAX_EVAL_DEPTH 600

static void step(jj_rt *rt, size_t pos) {
    if (++rt->steps > rt->max_steps)
        jj_fail(rt, PT_ELIMIT, pos, "more than %llu evaluation steps", (unsigned long long)rt->max_steps);
}

/* ---- scopes ---- */
static jj_env *env_new(jj_rt *rt, jj_env *parent) {
    jj_env *e = jj_alloc(rt, sizeof *e, 0);
    e->parent = parent;
    return e;
}

static void env_set(jj_rt *rt, jj_env *e, jstr name, jv *v) {
    for (size_t i = 0; i < e->n; i++)
        if (e->names[i].n == name.n && !memcmp(e->names[i].s, name.s, name.n)) {
            e->vals[i] = v;
            return;
        }
    if (e->n == e->cap) {
        size_t nc = e->cap ? e->cap * 2 : 8;
        jstr *nn = jj_alloc(rt, nc * sizeof *nn, 0);
        jv **nv = jj_alloc(rt, nc * sizeof *nv, 0);
        if (e->n) memcpy(nn, e->names, e->n * sizeof *nn), memcpy(nv, e->vals, e->n * sizeof *nv);
        e->names = nn, e->vals = nv, e->cap = nc;
    }
    e->names[e->n] = name, e->vals[e->n++] = v;
}

static void env_setc(jj_rt *rt, jj_env *e, const char *name, jv *v) { env_set(rt, e, (jstr){name, NULL, strlen(name)}, v); }

static jv *env_get(jj_rt *rt, jj_env *e, const char *s, size_t n) {
    for (; e; e = e->parent)
        for (size_t i = 0; i < e->n; i++)
            if (e->names[i].n == n && !memcmp(e->names[i].s, s, n)) return e->vals[i];
    return rt->undef;
}

static jstr node_str(const jj_node *n) { return (jstr){n->s, NULL, n->sn}; }

/* ---- rendering ---- */
enum { FLOW_NORMAL, FLOW_BREAK, FLOW_CONTINUE };
static int render_block(jj_rt *rt, const jj_list *body, jj_env *env, jsb *out);

static void append_value(jj_rt *rt, jsb *out, jv *v, size_t pos) {
    if (v->t == V_NULL || v->t == V_UNDEF) return;
    if (v->t == V_STR) jsb_put(rt, out, v->str.s, v->str.org, v->str.n, pos);
    else jj_to_string(rt, out, v, pos, 0);
}

static jv *block_value(jj_rt *rt, const jj_list *body, jj_env *env, size_t pos) {
    jsb b = {0};
    if (render_block(rt, body, env, &b) != FLOW_NORMAL) jj_fail(rt, PT_EINVAL, pos, "break or continue outside a loop");
    return jv_str(rt, jsb_str(&b));
}

static void assign(jj_rt *rt, const jj_node *target, jv *v, jj_env *env, size_t pos) {
    if (target->kind == N_IDENT) {
        env_set(rt, env, node_str(target), v);
    } else if (target->kind == N_TUPLE) {
        if (v->t != V_ARR) jj_fail(rt, PT_EINVAL, pos, "cannot unpack non-iterable type in set: %s", jv_type_name(v));
        if (v->n != target->args.n)
            jj_fail(rt, PT_EINVAL, pos, "too %s items to unpack in set", target->args.n > v->n ? "few" : "many");
        for (size_t i = 0; i < target->args.n; i++) {
            if (target->args.v[i]->kind != N_IDENT) jj_fail(rt, PT_EINVAL, pos, "cannot unpack to a non-identifier in set");
            env_set(rt, env, node_str(target->args.v[i]), v->items[i]);
        }
    } else if (target->kind == N_MEMBER) {
        jv *o = jj_eval(rt, target->a, env);
        if (o->t != V_NS) jj_fail(rt, PT_EINVAL, pos, "cannot assign an attribute of a non-namespace object");
        if (target->b->kind != N_IDENT || target->flag) jj_fail(rt, PT_EINVAL, pos, "cannot assign to a member with a non-identifier property");
        jv_set(rt, o, node_str(target->b), v);
    } else {
        jj_fail(rt, PT_EINVAL, pos, "invalid left side of an assignment");
    }
}

static void bind_loopvar(jj_rt *rt, const jj_node *var, jv *cur, jj_env *scope) {
    if (var->kind == N_IDENT) {
        env_set(rt, scope, node_str(var), cur);
        return;
    }
    for (size_t j = 0; j < var->args.n; j++) {
        if (var->args.v[j]->kind != N_IDENT) jj_fail(rt, PT_EINVAL, var->pos, "cannot unpack to a non-identifier");
        env_set(rt, scope, node_str(var->args.v[j]), j < cur->n ? cur->items[j] : rt->undef);
    }
}

static jv *loop_value(jj_rt *rt, size_t i, size_t len, jv **items) {
    jv *o = jv_obj(rt, V_OBJ);
    static const char *names[] = {"index", "index0", "revindex", "revindex0", "first", "last", "length", "previtem", "nextitem"};
    jv *vals[9] = {jv_num(rt, V_INT, (double)i + 1), jv_num(rt, V_INT, (double)i), jv_num(rt, V_INT, (double)(len - i)),
                   jv_num(rt, V_INT, (double)len - (double)i - 1), jv_bool(rt, i == 0), jv_bool(rt, i + 1 == len),
                   jv_num(rt, V_INT, (double)len), i > 0 ? items[i - 1] : rt->undef, i + 1 < len ? items[i + 1] : rt->undef};
    for (int k = 0; k < 9; k++) jv_set(rt, o, (jstr){names[k], NULL, strlen(names[k])}, vals[k]);
    return o;
}

static void render_for(jj_rt *rt, const jj_node *n, jj_env *env, jsb *out) {
    jj_env *scope = env_new(rt, env);
    const jj_node *test = NULL;
    jv *it;
    if (n->b->kind == N_SELECT) it = jj_eval(rt, n->b->a, scope), test = n->b->b;
    else it = jj_eval(rt, n->b, scope);
    if (it->t != V_ARR && it->t != V_OBJ)
        jj_fail(rt, PT_EINVAL, n->pos, "expected an iterable or object in a for loop: got %s", jv_type_name(it));
    if (it->t == V_OBJ) {
        jv *keys = jv_arr(rt, it->n);
        for (size_t i = 0; i < it->n; i++) jv_push(rt, keys, jv_str(rt, it->keys[i]));
        it = keys;
    }
    jv **items = jj_alloc(rt, (it->n ? it->n : 1) * sizeof *items, n->pos);
    size_t m = 0;
    for (size_t i = 0; i < it->n; i++) {
        jv *cur = it->items[i];
        if (n->a->kind == N_TUPLE) {
            if (cur->t != V_ARR || cur->tuple) jj_fail(rt, PT_EINVAL, n->pos, "cannot unpack non-iterable type: %s", jv_type_name(cur));
            if (cur->n != n->a->args.n)
                jj_fail(rt, PT_EINVAL, n->pos, "too %s items to unpack", n->a->args.n > cur->n ? "few" : "many");
        }
        if (test) {
            jj_env *ls = env_new(rt, scope);
            bind_loopvar(rt, n->a, cur, ls);
            if (!jv_truthy(jj_eval(rt, test, ls))) continue;
        }
        items[m++] = cur;
    }
    int none = 1;
    for (size_t i = 0; i < m; i++) {
        step(rt, n->pos);
        env_setc(rt, scope, "loop", loop_value(rt, i, m, items));
        bind_loopvar(rt, n->a, items[i], scope);
        int f = render_block(rt, &n->args, scope, out);
        if (f == FLOW_CONTINUE) continue;
        if (f == FLOW_BREAK) break;
        none = 0;
    }
    if (none && render_block(rt, &n->alt, scope, out) != FLOW_NORMAL)
        jj_fail(rt, PT_EINVAL, n->pos, "break or continue outside a loop");
}

static jv *define_macro(jj_rt *rt, const jj_node *n, jj_env *env) {
    jv *f = jv_new(rt, V_FUNC);
    f->fk = F_MACRO, f->macro = n, f->closure = env;
    env_set(rt, env, node_str(n->a), f);
    return rt->null;
}

static int render_block(jj_rt *rt, const jj_list *body, jj_env *env, jsb *out) {
    if (++rt->depth > MAX_EVAL_DEPTH) jj_fail(rt, PT_ELIMIT, body->n ? body->v[0]->pos : 0, "nested more than %d deep", MAX_EVAL_DEPTH);
    for (size_t i = 0; i < body->n; i++) {
        const jj_node *n = body->v[i];
        step(rt, n->pos);
        switch (n->kind) {
        case N_TEXT: jsb_put(rt, out, n->s, NULL, n->sn, n->pos); break;
        case N_COMMENT: break;
        case N_IF: {
            int f = render_block(rt, jv_truthy(jj_eval(rt, n->a, env)) ? &n->args : &n->alt, env, out);
            if (f != FLOW_NORMAL) return rt->depth--, f;
            break;
        }
        case N_FOR: render_for(rt, n, env, out); break;
        case N_SET: assign(rt, n->a, n->b ? jj_eval(rt, n->b, env) : block_value(rt, &n->args, env, n->pos), env, n->pos); break;
        case N_MACRO: define_macro(rt, n, env); break;
        case N_BREAK: return rt->depth--, FLOW_BREAK;
        case N_CONTINUE: return rt->depth--, FLOW_CONTINUE;
        default: append_value(rt, out, jj_eval(rt, n, env), n->pos);
        }
    }
    rt->depth--;
    return FLOW_NORMAL;
}

/* ---- arguments ---- */
jv *jj_kwarg(jv *kw, const char *name) { return kw ? jv_get(kw, name, strlen(name)) : NULL; }

void jj_eval_args(jj_rt *rt, const jj_list *args, jj_env *env, jv ***pos_out, size_t *npos, jv **kw_out) {
    size_t cap = args->n + 1, n = 0;
    jv **pos = jj_alloc(rt, cap * sizeof *pos, 0), *kw = NULL;
    for (size_t i = 0; i < args->n; i++) {
        const jj_node *a = args->v[i];
        if (a->kind == N_SPREAD) {
            jv *v = jj_eval(rt, a->a, env);
            if (v->t != V_ARR) jj_fail(rt, PT_EINVAL, a->pos, "cannot unpack non-iterable type: %s", jv_type_name(v));
            jv **np = jj_alloc(rt, (cap + v->n) * sizeof *np, a->pos);
            memcpy(np, pos, n * sizeof *np);
            pos = np, cap += v->n;
            for (size_t k = 0; k < v->n; k++) pos[n++] = v->items[k];
        } else if (a->kind != N_KWARG && a->kind != N_KWSPREAD) {
            pos[n++] = jj_eval(rt, a, env);
        }
    }
    for (size_t i = 0; i < args->n; i++) {
        const jj_node *a = args->v[i];
        if (a->kind != N_KWARG && a->kind != N_KWSPREAD) continue;
        if (!kw) kw = jv_obj(rt, V_OBJ);
        if (a->kind == N_KWARG) {
            jstr k = node_str(a->a);
            if (jv_get(kw, k.s, k.n)) jj_fail(rt, PT_EINVAL, a->pos, "got multiple values for keyword argument '%.*s'", (int)k.n, k.s);
            jv_set(rt, kw, k, jj_eval(rt, a->b, env));
        } else {
            jv *v = jj_eval(rt, a->a, env);
            if (v->t != V_OBJ) jj_fail(rt, PT_EINVAL, a->pos, "argument after ** must be a mapping, not %s", jv_type_name(v));
            for (size_t k = 0; k < v->n; k++) {
                if (jv_get(kw, v->keys[k].s, v->keys[k].n)) jj_fail(rt, PT_EINVAL, a->pos, "got multiple values for a keyword argument");
                jv_set(rt, kw, v->keys[k], v->items[k]);
            }
        }
    }
    *pos_out = pos, *npos = n, *kw_out = kw;
}

static jv *call_macro(jj_rt *rt, jv *fn, jv **args, size_t n, jv *kw, size_t pos) {
    const jj_node *m = fn->macro;
    jj_env *scope = env_new(rt, fn->closure);
    size_t used_kw = 0;
    for (size_t i = 0; i < m->args.n; i++) {
        const jj_node *p = m->args.v[i];
        jstr name = node_str(p->kind == N_KWARG ? p->a : p);
        jv *v = i < n ? args[i] : NULL;
        if (!v && kw && (v = jv_get(kw, name.s, name.n))) used_kw++;
        env_set(rt, scope, name, v ? v : rt->undef);
    }
    if (kw && used_kw < kw->n) jj_fail(rt, PT_EINVAL, pos, "macro '%.*s' got an unexpected keyword argument", (int)m->a->sn, m->a->s);
    if (n > m->args.n) jj_fail(rt, PT_EINVAL, pos, "macro '%.*s' takes not more than %zu argument(s)", (int)m->a->sn, m->a->s, m->args.n);
    for (size_t i = 0; i < m->args.n; i++) {
        const jj_node *p = m->args.v[i];
        if (p->kind != N_KWARG || i < n) continue;
        jstr name = node_str(p->a);
        if (kw && jv_get(kw, name.s, name.n)) continue;
        env_set(rt, scope, name, jj_eval(rt, p->b, scope));
    }
    if (++rt->depth > MAX_EVAL_DEPTH) jj_fail(rt, PT_ELIMIT, pos, "nested more than %d deep", MAX_EVAL_DEPTH);
    jv *r = block_value(rt, &m->alt, scope, pos);
    rt->depth--;
    return r;
}

static jv *eval_call(jj_rt *rt, const jj_node *n, jj_env *env) {
    jv **args, *kw;
    size_t na;
    jj_eval_args(rt, &n->args, env, &args, &na, &kw);
    jv *fn = jj_eval(rt, n->a, env);
    if (fn->t != V_FUNC) jj_fail(rt, PT_EINVAL, n->pos, "cannot call something that is not a function: got %s", jv_type_name(fn));
    if (fn->fk == F_MACRO) return call_macro(rt, fn, args, na, kw, n->pos);
    return jj_call_method(rt, fn, args, na, kw, n->pos);
}

/* ---- member access and slices ---- */
static long long clampll(double x) { return x > 9e15 ? (long long)9e15 : x < -9e15 ? (long long)-9e15 : (long long)x; }

static jv *eval_slice(jj_rt *rt, jv *obj, const jj_node *s, jj_env *env) {
    if (obj->t != V_ARR && obj->t != V_STR) jj_fail(rt, PT_EINVAL, s->pos, "slice object must be an array or string");
    jv *part[3];
    for (int k = 0; k < 3; k++) {
        const jj_node *e = k == 0 ? s->a : k == 1 ? s->b : s->c;
        part[k] = e ? jj_eval(rt, e, env) : rt->undef;
        if (part[k]->t != V_INT && part[k]->t != V_UNDEF) jj_fail(rt, PT_EINVAL, s->pos, "slice indices must be integers");
    }
    /* the items: array items, or a string's code points */
    size_t len = obj->n;
    size_t *cp_off = NULL;
    if (obj->t == V_STR) {
        cp_off = jj_alloc(rt, (obj->str.n + 1) * sizeof *cp_off, s->pos);
        len = 0;
        for (size_t i = 0; i < obj->str.n;) {
            uint32_t c;
            cp_off[len++] = i;
            i += jj_utf8_dec(obj->str.s + i, obj->str.n - i, &c);
        }
        cp_off[len] = obj->str.n;
    }
    long long L = (long long)len, stp = part[2]->t == V_UNDEF ? 1 : clampll(part[2]->num), start, stop;
    if (stp == 0) stp = 1; /* Math.sign(0) = 0: the reference's loop then runs no iteration */
    int zero = part[2]->t != V_UNDEF && part[2]->num == 0;
    if (stp > 0) {
        start = part[0]->t == V_UNDEF ? 0 : clampll(part[0]->num);
        stop = part[1]->t == V_UNDEF ? L : clampll(part[1]->num);
        start = start < 0 ? (L + start > 0 ? L + start : 0) : (start < L ? start : L);
        stop = stop < 0 ? (L + stop > 0 ? L + stop : 0) : (stop < L ? stop : L);
    } else {
        start = part[0]->t == V_UNDEF ? L - 1 : clampll(part[0]->num);
        stop = part[1]->t == V_UNDEF ? -1 : clampll(part[1]->num);
        start = start < 0 ? (L + start > -1 ? L + start : -1) : (start < L - 1 ? start : L - 1);
        stop = stop < -1 ? (L + stop > -1 ? L + stop : -1) : (stop < L - 1 ? stop : L - 1);
    }
    jv *arr = obj->t == V_ARR ? jv_arr(rt, 0) : NULL;
    jsb b = {0};
    for (long long i = start; !zero && (stp > 0 ? i < stop : i > stop); i += stp) {
        step(rt, s->pos);
        if (arr) jv_push(rt, arr, obj->items[i]);
        else jsb_put(rt, &b, obj->str.s + cp_off[i], obj->str.org ? obj->str.org + cp_off[i] : NULL, cp_off[i + 1] - cp_off[i], s->pos);
    }
    return arr ? arr : jv_str(rt, jsb_str(&b));
}

static jv *method(jj_rt *rt, jv *self, jfunc_kind k, const char *name) {
    jv *f = jv_new(rt, V_FUNC);
    f->fk = k, f->self = self, f->fname = name;
    return f;
}

static const char *const STR_METHODS[] = {"upper", "lower", "strip", "title", "capitalize", "rstrip", "lstrip",
                                          "startswith", "endswith", "split", "replace", NULL};
static const char *const OBJ_METHODS[] = {"get", "items", "keys", "values", "dictsort", NULL};

static const char *find_name(const char *const *names, jstr p) {
    for (size_t i = 0; names[i]; i++)
        if (strlen(names[i]) == p.n && !memcmp(names[i], p.s, p.n)) return names[i];
    return NULL;
}

/* The builtins of a value (its methods and "length"), or NULL. */
static jv *builtin(jj_rt *rt, jv *o, jstr p) {
    const char *m;
    if (o->t == V_STR) {
        if (p.n == 6 && !memcmp(p.s, "length", 6)) return jv_num(rt, V_INT, (double)jj_utf16_len(o->str));
        if ((m = find_name(STR_METHODS, p))) return method(rt, o, F_STRMETHOD, m);
    } else if (o->t == V_ARR) {
        if (p.n == 6 && !memcmp(p.s, "length", 6)) return jv_num(rt, V_INT, (double)o->n);
    } else if (o->t == V_OBJ) {
        if ((m = find_name(OBJ_METHODS, p))) return method(rt, o, F_OBJMETHOD, m);
    }
    return NULL;
}

/* The character of a string at a UTF-16 index (JavaScript's String.prototype.at), or NULL. */
static jv *str_at(jj_rt *rt, jstr s, double idx) {
    long long n16 = (long long)jj_utf16_len(s), i = clampll(idx);
    if (i < 0) i += n16;
    if (i < 0 || i >= n16) return NULL;
    long long u = 0;
    for (size_t off = 0; off < s.n;) {
        uint32_t c;
        size_t k = jj_utf8_dec(s.s + off, s.n - off, &c);
        int w = c >= 0x10000 ? 2 : 1;
        if (i < u + w) {
            if (w == 2) return jv_str(rt, jstr_with_origin(rt, "\xef\xbf\xbd", 3, jstr_origin_of(jstr_sub(s, off, off + k))));
            return jv_str(rt, jstr_sub(s, off, off + k));
        }
        u += w, off += k;
    }
    return NULL;
}

static jv *eval_member(jj_rt *rt, const jj_node *n, jj_env *env) {
    jv *o = jj_eval(rt, n->a, env), *p, *v = NULL;
    if (n->flag && n->b->kind == N_SLICE) return eval_slice(rt, o, n->b, env);
    if (n->flag) p = jj_eval(rt, n->b, env);
    else if (n->b->kind == N_INT) p = jv_num(rt, V_INT, n->b->num);
    else p = jv_str(rt, node_str(n->b));
    if (o->t == V_OBJ || o->t == V_NS) {
        if (p->t != V_STR) jj_fail(rt, PT_EINVAL, n->pos, "cannot access a property with a non-string: got %s", jv_type_name(p));
        v = jv_get(o, p->str.s, p->str.n);
        if (!v && o->t == V_OBJ) v = builtin(rt, o, p->str);
    } else if (o->t == V_ARR || o->t == V_STR) {
        if (p->t == V_INT) {
            if (o->t == V_STR) v = str_at(rt, o->str, p->num);
            else {
                long long i = clampll(p->num);
                if (i < 0) i += (long long)o->n;
                if (i >= 0 && i < (long long)o->n) v = o->items[i];
            }
        } else if (p->t == V_STR) {
            v = builtin(rt, o, p->str);
        } else {
            jj_fail(rt, PT_EINVAL, n->pos, "cannot access a property with a non-string/non-number: got %s", jv_type_name(p));
        }
    } else if (p->t != V_STR) {
        jj_fail(rt, PT_EINVAL, n->pos, "cannot access a property with a non-string: got %s", jv_type_name(p));
    }
    return v ? v : rt->undef;
}

/* ---- operators ---- */
static int op_is(const jj_node *n, const char *s) { return n->sn == strlen(s) && !memcmp(n->s, s, n->sn); }

static jv *concat(jj_rt *rt, jv *a, jv *b, size_t pos) {
    jsb s = {0};
    jj_js_value_str(rt, &s, a, pos, 0);
    jj_js_value_str(rt, &s, b, pos, 0);
    return jv_str(rt, jsb_str(&s));
}

static int str_contains(jstr hay, jstr needle) {
    if (!needle.n) return 1;
    for (size_t i = 0; i + needle.n <= hay.n; i++)
        if (!memcmp(hay.s + i, needle.s, needle.n)) return 1;
    return 0;
}

static jv *numeric_op(jj_rt *rt, const jj_node *n, jv *l, jv *r) {
    double a = l->num, b = r->num;
    jv_type ft = l->t == V_FLOAT || r->t == V_FLOAT ? V_FLOAT : V_INT;
    if (op_is(n, "+")) return jv_num(rt, ft, a + b);
    if (op_is(n, "-")) return jv_num(rt, ft, a - b);
    if (op_is(n, "*")) return jv_num(rt, ft, a * b);
    if (op_is(n, "/")) return jv_num(rt, V_FLOAT, a / b);
    if (op_is(n, "//")) return jv_num(rt, ft, floor(a / b));
    if (op_is(n, "%")) return jv_num(rt, ft, fmod(a, b));
    if (op_is(n, "<")) return jv_bool(rt, a < b);
    if (op_is(n, ">")) return jv_bool(rt, a > b);
    if (op_is(n, ">=")) return jv_bool(rt, a >= b);
    if (op_is(n, "<=")) return jv_bool(rt, a <= b);
    return NULL;
}

static jv *eval_binary(jj_rt *rt, const jj_node *n, jj_env *env) {
    jv *l = jj_eval(rt, n->a, env);
    if (op_is(n, "and")) return jv_truthy(l) ? jj_eval(rt, n->b, env) : l;
    if (op_is(n, "or")) return jv_truthy(l) ? l : jj_eval(rt, n->b, env);
    jv *r = jj_eval(rt, n->b, env), *x;
    if (op_is(n, "==")) return jv_bool(rt, jj_loose_eq(rt, l, r, n->pos));
    if (op_is(n, "!=")) return jv_bool(rt, !jj_loose_eq(rt, l, r, n->pos));
    int ln = l->t == V_INT || l->t == V_FLOAT, rn = r->t == V_INT || r->t == V_FLOAT;
    int in = op_is(n, "in"), notin = op_is(n, "not in");
    if (ln && rn && !op_is(n, "~") && !op_is(n, "**")) {
        if ((x = numeric_op(rt, n, l, r))) return x;
    } else if (l->t == V_UNDEF || r->t == V_UNDEF) {
        if (r->t == V_UNDEF && (in || notin)) return jv_bool(rt, notin);
        if (op_is(n, "~") && l->t != V_NULL && r->t != V_NULL) {
            jsb s = {0};
            if (l->t != V_UNDEF) jj_js_value_str(rt, &s, l, n->pos, 0);
            if (r->t != V_UNDEF) jj_js_value_str(rt, &s, r, n->pos, 0);
            return jv_str(rt, jsb_str(&s));
        }
        jj_fail(rt, PT_EINVAL, n->pos, "cannot perform operation %.*s on undefined values", (int)n->sn, n->s);
    } else if (l->t == V_NULL || r->t == V_NULL) {
        jj_fail(rt, PT_EINVAL, n->pos, "cannot perform operation %.*s on null values", (int)n->sn, n->s);
    } else if (op_is(n, "~")) {
        return concat(rt, l, r, n->pos);
    } else if (op_is(n, "**") && (ln || l->t == V_BOOL) && (rn || r->t == V_BOOL)) {
        double a = l->t == V_BOOL ? l->b : l->num, b = r->t == V_BOOL ? r->b : r->num, p;
        if (a == 0 && b < 0) jj_fail(rt, PT_EINVAL, n->pos, "0.0 cannot be raised to a negative power");
        p = pow(a, b);
        if (!isfinite(p)) jj_fail(rt, PT_EINVAL, n->pos, "exponentiation result is not a finite real number");
        return jv_num(rt, l->t == V_FLOAT || r->t == V_FLOAT || b < 0 ? V_FLOAT : V_INT, p);
    } else if (l->t == V_ARR && r->t == V_ARR) {
        if (op_is(n, "+")) {
            jv *a = jv_arr(rt, l->n + r->n);
            for (size_t i = 0; i < l->n; i++) jv_push(rt, a, l->items[i]);
            for (size_t i = 0; i < r->n; i++) jv_push(rt, a, r->items[i]);
            return a;
        }
    } else if (r->t == V_ARR) {
        int member = 0;
        for (size_t i = 0; i < r->n && !member; i++) member = jj_strict_eq(r->items[i], l);
        if (in || notin) return jv_bool(rt, in ? member : !member);
    }
    if ((l->t == V_STR || r->t == V_STR) && op_is(n, "+")) return concat(rt, l, r, n->pos);
    if (l->t == V_STR && r->t == V_STR && (in || notin)) return jv_bool(rt, str_contains(r->str, l->str) == in);
    if (l->t == V_STR && r->t == V_OBJ && (in || notin)) return jv_bool(rt, (jv_get(r, l->str.s, l->str.n) != NULL) == in);
    jj_fail(rt, PT_EINVAL, n->pos, "unknown operator \"%.*s\" between %s and %s", (int)n->sn, n->s, jv_type_name(l), jv_type_name(r));
}

static jv *eval_unary(jj_rt *rt, const jj_node *n, jj_env *env) {
    jv *a = jj_eval(rt, n->a, env);
    if (op_is(n, "not")) return jv_bool(rt, !jv_truthy(a));
    if (a->t != V_INT && a->t != V_FLOAT && a->t != V_BOOL)
        jj_fail(rt, PT_EINVAL, n->pos, "unknown operator \"%.*s\" for %s", (int)n->sn, n->s, jv_type_name(a));
    double x = a->t == V_BOOL ? a->b : a->num;
    return jv_num(rt, a->t == V_FLOAT ? V_FLOAT : V_INT, op_is(n, "-") ? -x : x);
}

jv *jj_eval(jj_rt *rt, const jj_node *n, jj_env *env) {
    if (!n) return rt->undef;
    step(rt, n->pos);
    if (++rt->depth > MAX_EVAL_DEPTH) jj_fail(rt, PT_ELIMIT, n->pos, "nested more than %d deep", MAX_EVAL_DEPTH);
    jv *r;
    switch (n->kind) {
    case N_IDENT: r = env_get(rt, env, n->s, n->sn); break;
    case N_INT: r = jv_num(rt, V_INT, n->num); break;
    case N_FLOAT: r = jv_num(rt, V_FLOAT, n->num); break;
    case N_STR: r = jv_str(rt, node_str(n)); break;
    case N_BINARY: r = eval_binary(rt, n, env); break;
    case N_UNARY: r = eval_unary(rt, n, env); break;
    case N_MEMBER: r = eval_member(rt, n, env); break;
    case N_CALL: r = eval_call(rt, n, env); break;
    case N_FILTER: r = jj_apply_filter(rt, jj_eval(rt, n->a, env), n, env); break;
    case N_TEST: {
        jv *a = jj_eval(rt, n->a, env);
        r = jv_bool(rt, jj_test(rt, n->b->s, n->b->sn, a, NULL, n->pos) != n->flag);
        break;
    }
    case N_TERNARY: r = jj_eval(rt, jv_truthy(jj_eval(rt, n->a, env)) ? n->b : n->c, env); break;
    case N_SELECT: r = jv_truthy(jj_eval(rt, n->b, env)) ? jj_eval(rt, n->a, env) : rt->undef; break;
    case N_ARRAY:
    case N_TUPLE:
        r = jv_arr(rt, n->args.n);
        r->tuple = n->kind == N_TUPLE;
        for (size_t i = 0; i < n->args.n; i++) jv_push(rt, r, jj_eval(rt, n->args.v[i], env));
        break;
    case N_OBJECT:
        r = jv_obj(rt, V_OBJ);
        for (size_t i = 0; i + 1 < n->args.n; i += 2) {
            jv *k = jj_eval(rt, n->args.v[i], env);
            if (k->t != V_STR) jj_fail(rt, PT_EINVAL, n->pos, "object keys must be strings: got %s", jv_type_name(k));
            jv_set(rt, r, k->str, jj_eval(rt, n->args.v[i + 1], env));
        }
        break;
    case N_MACRO: r = define_macro(rt, n, env); break;
    case N_COMMENT: r = rt->null; break;
    default: {
        jsb b = {0};
        jj_list one = {(jj_node **)&n, 1, 1};
        if (render_block(rt, &one, env, &b) != FLOW_NORMAL) jj_fail(rt, PT_EINVAL, n->pos, "break or continue outside a loop");
        r = jv_str(rt, jsb_str(&b));
    }
    }
    rt->depth--;
    return r;
}

/* ---- entry ---- */
static int trusted(const pt_jinja_opts *o, const char *k) {
    if (o && o->trusted)
        for (size_t i = 0; o->trusted[i]; i++)
            if (!strcmp(o->trusted[i], k)) return 1;
    return 0;
}

static void setup(jj_rt *rt, jj_env *g, json_t *ctx, const pt_jinja_opts *o) {
    static const struct {
        const char *name;
        jfunc_kind k;
    } fns[] = {{"namespace", F_NAMESPACE}, {"raise_exception", F_RAISE}, {"range", F_RANGE}, {"strftime_now", F_STRFTIME}};
    for (size_t i = 0; i < sizeof fns / sizeof *fns; i++) {
        jv *f = jv_new(rt, V_FUNC);
        f->fk = fns[i].k;
        env_setc(rt, g, fns[i].name, f);
    }
    env_setc(rt, g, "false", rt->no), env_setc(rt, g, "true", rt->yes), env_setc(rt, g, "none", rt->null);
    env_setc(rt, g, "False", rt->no), env_setc(rt, g, "True", rt->yes), env_setc(rt, g, "None", rt->null);
    if (!ctx) return;
    const char *k;
    json_t *v;
    json_object_foreach(ctx, k, v) {
        if (env_get(rt, g, k, strlen(k)) != rt->undef) jj_fail(rt, PT_EINVAL, 0, "variable already declared: %s", k);
        jv *val;
        if (!strcmp(k, "messages") && json_is_array(v)) {
            val = jv_arr(rt, json_array_size(v));
            for (size_t i = 0; i < json_array_size(v); i++) {
                json_t *m = json_array_get(v, i);
                uint16_t org = (uint16_t)(i + 1 < PT_JINJA_ORIGIN_DATA ? i + 1 : PT_JINJA_ORIGIN_DATA - 1);
                jv *mv = jj_from_json(rt, m, PT_JINJA_ORIGIN_DATA, 1);
                if (mv->t == V_OBJ) /* what the message says is its origin; its role, name and ids are data */
                    for (size_t f = 0; f < mv->n; f++) {
                        const char *key = mv->keys[f].s;
                        if (!strcmp(key, "content") || !strcmp(key, "reasoning_content") || !strcmp(key, "tool_calls"))
                            mv->items[f] = jj_from_json(rt, json_object_get(m, key), org, 2);
                    }
                jv_push(rt, val, mv);
            }
        } else {
            val = jj_from_json(rt, v, trusted(o, k) ? 0 : PT_JINJA_ORIGIN_DATA, 0);
        }
        env_set(rt, g, jstr_with_origin(rt, k, strlen(k), 0), val);
    }
}

int pt_jinja_render(const pt_jinja *t, json_t *ctx, const pt_jinja_opts *o, pt_jinja_out *out, pt_err *err) {
    memset(out, 0, sizeof *out);
    if (ctx && !json_is_object(ctx)) return pt_errf(err, PT_EINVAL, "chat template: the context must be an object");
    jj_rt *rt = calloc(1, sizeof *rt);
    if (!rt) return pt_errf(err, PT_ENOMEM, "out of memory");
    rt->t = t, rt->err = err, rt->code = PT_OK;
    rt->max_steps = o && o->max_steps ? o->max_steps : 20000000;
    rt->max_output = o && o->max_output ? o->max_output : (size_t)16 << 20;
    rt->now = o && o->has_now ? o->now : (int64_t)time(NULL);
    rt->local_time = o ? o->local_time : 0;
    rt->ar = jj_arena_new(o && o->max_memory ? o->max_memory : (size_t)256 << 20);
    volatile int rc = PT_OK;
    if (!rt->ar) {
        free(rt);
        return pt_errf(err, PT_ENOMEM, "out of memory");
    }
    if (setjmp(rt->fail)) {
        rc = rt->code ? rt->code : PT_EINVAL;
        goto done;
    }
    rt->undef = jv_new(rt, V_UNDEF), rt->null = jv_new(rt, V_NULL);
    rt->yes = jv_new(rt, V_BOOL), rt->no = jv_new(rt, V_BOOL);
    rt->yes->b = 1;
    jj_env *g = env_new(rt, NULL);
    setup(rt, g, ctx, o);
    jsb b = {0};
    if (render_block(rt, &t->body, g, &b) != FLOW_NORMAL) jj_fail(rt, PT_EINVAL, 0, "break or continue outside a loop");
    if (b.n > rt->max_output) jj_fail(rt, PT_ELIMIT, 0, "the output is longer than %zu bytes", rt->max_output);
    out->text = malloc(b.n + 1);
    out->origin = malloc((b.n ? b.n : 1) * sizeof *out->origin);
    if (!out->text || !out->origin) {
        pt_jinja_out_free(out);
        rc = pt_errf(err, PT_ENOMEM, "out of memory");
        goto done;
    }
    if (b.n) memcpy(out->text, b.s, b.n);
    out->text[b.n] = 0;
    out->len = b.n;
    if (b.any_org) memcpy(out->origin, b.org, b.n * sizeof *out->origin);
    else memset(out->origin, 0, (b.n ? b.n : 1) * sizeof *out->origin);
done:
    jj_arena_free(rt->ar);
    free(rt);
    return rc;
}

void pt_jinja_out_free(pt_jinja_out *o) {
    free(o->text), free(o->origin);
    memset(o, 0, sizeof *o);
}
