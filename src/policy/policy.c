/* see policy.h — parsing, validation and the JSON form of the access policy. */
#include "policy/policy.h"
#include "policy/policy_internal.h"

#include <fnmatch.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/fileio.h"
#include "common/util.h"
#include "common/ytree.h"
#include "tlog/cosig.h"

#define POLICY_MAX_FILE (16u << 20)

static const char *const cap_names[PT_CAP_COUNT] = {
    "sample", "logprobs", "prefill", "activations", "interventions", "finetune", "unmitigated", "model_info", "weights",
};
static const char *const kind_names[] = {"insider", "evaluator", "researcher", "public"};

const char *pt_cap_name(pt_cap c) { return (unsigned)c < PT_CAP_COUNT ? cap_names[c] : NULL; }

int pt_cap_parse(const char *s) {
    for (int i = 0; i < PT_CAP_COUNT; i++)
        if (!strcmp(s, cap_names[i])) return i;
    return -1;
}

const char *pt_org_kind_name(pt_org_kind k) { return (unsigned)k < 4 ? kind_names[k] : "?"; }

#define C(x) (1u << PT_CAP_##x)
/* The predefined access levels (Charnock et al. 2026): black-, grey- and white-box. */
static const struct {
    const char *id, *description;
    pt_capset caps;
} default_tiers[] = {
    {"AL1", "black-box: sampling and minimal information", C(SAMPLE) | C(MODEL_INFO)},
    {"AL2", "grey-box: adds log-probs, raw prefill and the unmitigated variant",
     C(SAMPLE) | C(MODEL_INFO) | C(LOGPROBS) | C(PREFILL) | C(UNMITIGATED)},
    {"AL3", "white-box: adds activations, interventions, fine-tuning and weights",
     C(SAMPLE) | C(MODEL_INFO) | C(LOGPROBS) | C(PREFILL) | C(UNMITIGATED) | C(ACTIVATIONS) | C(INTERVENTIONS) |
         C(FINETUNE) | C(WEIGHTS)},
};
#undef C

/* ---- parse context ---- */

typedef struct {
    const char *what;
    pt_err *err;
    pt_policy *p;
} pctx;

static int perr(pctx *c, const ynode *n, const char *path, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static int perr(pctx *c, const ynode *n, const char *path, const char *fmt, ...) {
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return pt_errf(c->err, PT_EFORMAT, "%s:%d:%d: %s: %s", c->what, n ? n->line : 1, n ? n->col : 1,
                   path && *path ? path : "(document)", msg);
}

static int nomem(pctx *c) { return pt_errf(c->err, PT_ENOMEM, "%s: out of memory", c->what); }

static const char *type_name(const ynode *n) {
    if (ytree_is_null(n)) return "null";
    return n->type == YN_MAP ? "a mapping" : n->type == YN_SEQ ? "a list" : "a scalar";
}

/* Checks that n is a mapping whose keys are all in `keys` (NULL-terminated), without
 * duplicates, and stores each value in vals[i] (NULL when absent). */
static int get_map(pctx *c, const ynode *n, const char *path, const char *const *keys, const ynode **vals) {
    size_t nk = 0;
    while (keys[nk]) vals[nk++] = NULL;
    if (n->type != YN_MAP) return perr(c, n, path, "expected a mapping, found %s", type_name(n));
    for (size_t i = 0; i + 1 < n->n; i += 2) {
        const ynode *k = n->items[i];
        size_t j;
        for (j = 0; j < nk; j++)
            if (!strcmp(k->str, keys[j])) break;
        if (j == nk) {
            char sub[320];
            snprintf(sub, sizeof sub, "%s%s%s", path, *path ? "." : "", k->str);
            return perr(c, k, sub, "unknown key '%s'", k->str);
        }
        if (vals[j]) {
            char sub[320];
            snprintf(sub, sizeof sub, "%s%s%s", path, *path ? "." : "", k->str);
            return perr(c, k, sub, "duplicate key '%s'", k->str);
        }
        vals[j] = n->items[i + 1];
    }
    return PT_OK;
}

static void subpath(char *out, size_t cap, const char *path, const char *key) {
    snprintf(out, cap, "%s%s%s", path, *path ? "." : "", key);
}

static int get_str(pctx *c, const ynode *n, const char *path, char **out) {
    if (n->type != YN_SCALAR || ytree_is_null(n)) return perr(c, n, path, "expected a string, found %s", type_name(n));
    if (n->len > 4096) return perr(c, n, path, "string longer than 4096 bytes");
    *out = strdup(n->str);
    return *out ? PT_OK : nomem(c);
}

/* Identifiers: 1-128 characters from [A-Za-z0-9._:/@+-]; globs add * ? [ ] !. */
static int check_id(pctx *c, const ynode *n, const char *path, int glob) {
    const char *s = n->str;
    if (!*s) return perr(c, n, path, "empty identifier");
    if (n->len > 128) return perr(c, n, path, "identifier longer than 128 characters");
    for (const char *q = s; *q; q++) {
        char ch = *q;
        int ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
                 strchr("._:/@+-", ch) || (glob && strchr("*?[]!", ch));
        if (!ok) return perr(c, n, path, "'%s' has the character '%c' (identifiers use letters, digits and ._:/@+-)", s, ch);
    }
    return PT_OK;
}

static int get_id(pctx *c, const ynode *n, const char *path, int glob, char **out) {
    if (n->type != YN_SCALAR || ytree_is_null(n))
        return perr(c, n, path, "expected an identifier, found %s", type_name(n));
    int rc = check_id(c, n, path, glob);
    if (rc) return rc;
    *out = strdup(n->str);
    return *out ? PT_OK : nomem(c);
}

static int get_time(pctx *c, const ynode *n, const char *path, int64_t *out) {
    if (n->type != YN_SCALAR || ytree_is_null(n))
        return perr(c, n, path, "expected an ISO 8601 date, found %s", type_name(n));
    pt_err e;
    if (pt_parse_time(n->str, out, &e)) return perr(c, n, path, "%s", e.msg);
    /* The canonical form writes times as YYYY-MM-DDTHH:MM:SSZ; before 1970 is never meant. */
    if (*out < 0) return perr(c, n, path, "'%s' is before 1970", n->str);
    return PT_OK;
}

static int get_limit(pctx *c, const ynode *n, const char *path, int64_t *out) {
    uint64_t v;
    if (n->type != YN_SCALAR || ytree_is_null(n))
        return perr(c, n, path, "expected a non-negative integer, found %s", type_name(n));
    if (pt_parse_u64(n->str, &v) && strspn(n->str, "0123456789") == strlen(n->str) && *n->str)
        return perr(c, n, path, "'%s' is larger than 9223372036854775807 (2^63-1), the largest limit", n->str);
    if (pt_parse_u64(n->str, &v)) return perr(c, n, path, "'%s' is not a non-negative integer", n->str);
    if (v > (uint64_t)INT64_MAX)
        return perr(c, n, path, "'%s' is larger than 9223372036854775807 (2^63-1), the largest limit", n->str);
    *out = (int64_t)v;
    return PT_OK;
}

static int get_bool(pctx *c, const ynode *n, const char *path, int *out) {
    if (n->type == YN_SCALAR && n->plain && (!strcmp(n->str, "true") || !strcmp(n->str, "false"))) {
        *out = n->str[0] == 't';
        return PT_OK;
    }
    return perr(c, n, path, "expected true or false");
}

static int get_caps(pctx *c, const ynode *n, const char *path, pt_capset *out) {
    if (n->type != YN_SEQ) return perr(c, n, path, "expected a list of capabilities, found %s", type_name(n));
    *out = 0;
    for (size_t i = 0; i < n->n; i++) {
        char sub[320];
        snprintf(sub, sizeof sub, "%s[%zu]", path, i);
        const ynode *it = n->items[i];
        if (it->type != YN_SCALAR || ytree_is_null(it)) return perr(c, it, sub, "expected a capability name");
        int cap = pt_cap_parse(it->str);
        if (cap < 0)
            return perr(c, it, sub,
                        "unknown capability '%s' (one of sample, logprobs, prefill, activations, interventions, "
                        "finetune, unmitigated, model_info, weights)",
                        it->str);
        if (*out & (1u << cap)) return perr(c, it, sub, "capability '%s' listed twice", it->str);
        *out |= 1u << cap;
    }
    return PT_OK;
}

static int get_window(pctx *c, const ynode *n, const char *path, int64_t *from, int64_t *until) {
    static const char *const keys[] = {"from", "until", NULL};
    const ynode *v[2];
    char sub[320];
    *from = PT_TIME_MIN;
    *until = PT_TIME_MAX;
    int rc = get_map(c, n, path, keys, v);
    if (rc) return rc;
    if (v[0]) {
        subpath(sub, sizeof sub, path, "from");
        if ((rc = get_time(c, v[0], sub, from))) return rc;
    }
    if (v[1]) {
        subpath(sub, sizeof sub, path, "until");
        if ((rc = get_time(c, v[1], sub, until))) return rc;
    }
    if (v[0] && v[1] && *until <= *from) return perr(c, v[1], sub, "the window closes before it opens");
    return PT_OK;
}

static int get_limits(pctx *c, const ynode *n, const char *path, pt_limits *l) {
    static const char *const keys[] = {"requests_per_minute", "tokens_per_day", "concurrent_finetune_jobs",
                                       "logprobs_top_k", NULL};
    const ynode *v[4];
    int64_t *dst[4] = {&l->requests_per_minute, &l->tokens_per_day, &l->concurrent_finetune_jobs, &l->logprobs_top_k};
    int rc = get_map(c, n, path, keys, v);
    if (rc) return rc;
    for (int i = 0; i < 4; i++) {
        if (!v[i]) continue;
        char sub[320];
        subpath(sub, sizeof sub, path, keys[i]);
        if ((rc = get_limit(c, v[i], sub, dst[i]))) return rc;
    }
    return PT_OK;
}

static int seq_of(pctx *c, const ynode *n, const char *path) {
    if (n->type != YN_SEQ) return perr(c, n, path, "expected a list, found %s", type_name(n));
    if (n->n > 1000000) return perr(c, n, path, "more than 1,000,000 entries");
    return PT_OK;
}

/* ---- sections ---- */

static int parse_lab(pctx *c, const ynode *n) {
    static const char *const keys[] = {"id", "name", "url", NULL};
    const ynode *v[3];
    int rc = get_map(c, n, "lab", keys, v);
    if (rc) return rc;
    if (!v[0]) return perr(c, n, "lab", "missing 'id'");
    if (!v[1]) return perr(c, n, "lab", "missing 'name'");
    if ((rc = get_id(c, v[0], "lab.id", 0, &c->p->lab_id))) return rc;
    if ((rc = get_str(c, v[1], "lab.name", &c->p->lab_name))) return rc;
    if (v[2] && (rc = get_str(c, v[2], "lab.url", &c->p->lab_url))) return rc;
    return PT_OK;
}

static int parse_variants(pctx *c, const ynode *n, const char *path, pt_pmodel *m) {
    int rc = seq_of(c, n, path);
    if (rc) return rc;
    m->variants = calloc(n->n ? n->n : 1, sizeof *m->variants);
    if (!m->variants) return nomem(c);
    for (size_t i = 0; i < n->n; i++) {
        static const char *const keys[] = {"id", "differs", "unmitigated", NULL};
        const ynode *v[3];
        char base[320], sub[352];
        snprintf(base, sizeof base, "%s[%zu]", path, i);
        if ((rc = get_map(c, n->items[i], base, keys, v))) return rc;
        if (!v[0]) return perr(c, n->items[i], base, "missing 'id'");
        pt_variant *var = &m->variants[m->n_variants];
        subpath(sub, sizeof sub, base, "id");
        if ((rc = get_id(c, v[0], sub, 0, &var->id))) return rc;
        m->n_variants++;
        for (size_t j = 0; j + 1 < m->n_variants; j++)
            if (!strcmp(m->variants[j].id, var->id)) return perr(c, v[0], sub, "duplicate variant id '%s'", var->id);
        if (v[1]) {
            subpath(sub, sizeof sub, base, "differs");
            if ((rc = get_str(c, v[1], sub, &var->differs))) return rc;
        }
        var->unmitigated = !strcmp(var->id, "unmitigated");
        if (v[2]) {
            subpath(sub, sizeof sub, base, "unmitigated");
            if ((rc = get_bool(c, v[2], sub, &var->unmitigated))) return rc;
        }
    }
    return PT_OK;
}

static int parse_models(pctx *c, const ynode *n) {
    int rc = seq_of(c, n, "models");
    if (rc) return rc;
    pt_policy *p = c->p;
    p->models = calloc(n->n ? n->n : 1, sizeof *p->models);
    if (!p->models) return nomem(c);
    for (size_t i = 0; i < n->n; i++) {
        static const char *const keys[] = {"id", "name", "weights", "variants", "insider_since", "public_since",
                                           "analog_of", NULL};
        const ynode *v[7];
        char base[64], sub[352];
        snprintf(base, sizeof base, "models[%zu]", i);
        const ynode *it = n->items[i];
        if ((rc = get_map(c, it, base, keys, v))) return rc;
        pt_pmodel *m = &p->models[p->n_models++];
        m->line = it->line;
        m->column = it->col;
        m->public_since = PT_TIME_MAX;
        if (!v[0]) return perr(c, it, base, "missing 'id'");
        subpath(sub, sizeof sub, base, "id");
        if ((rc = get_id(c, v[0], sub, 0, &m->id))) return rc;
        for (size_t j = 0; j + 1 < p->n_models; j++)
            if (!strcmp(p->models[j].id, m->id))
                return perr(c, v[0], sub, "duplicate model id '%s' (first at line %d)", m->id, p->models[j].line);
        if (v[1]) {
            subpath(sub, sizeof sub, base, "name");
            if ((rc = get_str(c, v[1], sub, &m->name))) return rc;
        }
        if (v[2]) {
            subpath(sub, sizeof sub, base, "weights");
            if ((rc = get_str(c, v[2], sub, &m->weights))) return rc;
        }
        if (v[3]) {
            subpath(sub, sizeof sub, base, "variants");
            if ((rc = parse_variants(c, v[3], sub, m))) return rc;
        }
        if (!v[4]) return perr(c, it, base, "missing 'insider_since'");
        subpath(sub, sizeof sub, base, "insider_since");
        if ((rc = get_time(c, v[4], sub, &m->insider_since))) return rc;
        if (v[5]) {
            subpath(sub, sizeof sub, base, "public_since");
            if ((rc = get_time(c, v[5], sub, &m->public_since))) return rc;
            if (m->public_since < m->insider_since) return perr(c, v[5], sub, "public_since is before insider_since");
        }
        if (v[6]) {
            subpath(sub, sizeof sub, base, "analog_of");
            if ((rc = get_id(c, v[6], sub, 0, &m->analog_of))) return rc;
        }
    }
    /* analog_of refers to another model of the document. */
    for (size_t i = 0; i < n->n; i++) {
        pt_pmodel *m = &p->models[i];
        if (!m->analog_of) continue;
        const ynode *it = n->items[i], *an = NULL;
        for (size_t k = 0; k + 1 < it->n; k += 2)
            if (!strcmp(it->items[k]->str, "analog_of")) an = it->items[k + 1];
        char sub[64];
        snprintf(sub, sizeof sub, "models[%zu].analog_of", i);
        if (!strcmp(m->analog_of, m->id)) return perr(c, an, sub, "a model cannot be an analog of itself");
        if (!pt_policy_model(p, m->analog_of))
            return perr(c, an, sub, "unknown model '%s'", m->analog_of);
    }
    return PT_OK;
}

static int add_tier(pctx *c, const char *id, const char *desc, pt_capset caps, int predefined) {
    pt_policy *p = c->p;
    pt_tier *t = &p->tiers[p->n_tiers];
    t->id = strdup(id);
    t->description = desc ? strdup(desc) : NULL;
    if (!t->id || (desc && !t->description)) {
        free(t->id);
        free(t->description);
        return nomem(c);
    }
    t->caps = caps;
    t->predefined = predefined;
    p->n_tiers++;
    return PT_OK;
}

static int parse_tiers(pctx *c, const ynode *n) {
    pt_policy *p = c->p;
    int rc;
    size_t nt = 0;
    if (n) {
        if ((rc = seq_of(c, n, "tiers"))) return rc;
        nt = n->n;
    }
    p->tiers = calloc(nt + 3, sizeof *p->tiers);
    if (!p->tiers) return nomem(c);
    for (size_t i = 0; i < nt; i++) {
        static const char *const keys[] = {"id", "description", "capabilities", NULL};
        const ynode *v[3], *it = n->items[i];
        char base[64], sub[352];
        snprintf(base, sizeof base, "tiers[%zu]", i);
        if ((rc = get_map(c, it, base, keys, v))) return rc;
        if (!v[0]) return perr(c, it, base, "missing 'id'");
        if (!v[2]) return perr(c, it, base, "missing 'capabilities'");
        subpath(sub, sizeof sub, base, "id");
        char *id = NULL, *desc = NULL;
        pt_capset caps;
        if ((rc = get_id(c, v[0], sub, 0, &id))) return rc;
        for (size_t j = 0; j < p->n_tiers; j++)
            if (!strcmp(p->tiers[j].id, id)) {
                free(id);
                return perr(c, v[0], sub, "duplicate tier id '%s'", p->tiers[j].id);
            }
        subpath(sub, sizeof sub, base, "capabilities");
        if ((rc = get_caps(c, v[2], sub, &caps))) {
            free(id);
            return rc;
        }
        if (v[1]) {
            subpath(sub, sizeof sub, base, "description");
            if ((rc = get_str(c, v[1], sub, &desc))) {
                free(id);
                return rc;
            }
        }
        rc = add_tier(c, id, desc, caps, 0);
        free(id);
        free(desc);
        if (rc) return rc;
    }
    /* The predefined levels, unless the document redefines them. */
    for (size_t d = 0; d < 3; d++) {
        if (pt_policy_tier(p, default_tiers[d].id)) continue;
        if ((rc = add_tier(c, default_tiers[d].id, default_tiers[d].description, default_tiers[d].caps, 1))) return rc;
    }
    return PT_OK;
}

/* witnesses: {quorum: N, members: [{name, vkey, url}, ...]} */
static int parse_witnesses(pctx *c, const ynode *n) {
    if (!n) return PT_OK;
    static const char *const keys[] = {"quorum", "members", NULL};
    const ynode *v[2];
    int rc = get_map(c, n, "witnesses", keys, v);
    if (rc) return rc;
    if (!v[1]) return perr(c, n, "witnesses", "missing 'members'");
    if (!v[0]) return perr(c, n, "witnesses", "missing 'quorum'");
    if ((rc = seq_of(c, v[1], "witnesses.members"))) return rc;
    pt_policy *p = c->p;
    if (v[1]->n == 0 || v[1]->n > PT_MAX_WITNESSES)
        return perr(c, v[1], "witnesses.members", "expected 1 to %d witnesses, found %zu", PT_MAX_WITNESSES, v[1]->n);
    if ((rc = get_limit(c, v[0], "witnesses.quorum", &p->witness_quorum))) return rc;
    if (p->witness_quorum < 1 || p->witness_quorum > (int64_t)v[1]->n)
        return perr(c, v[0], "witnesses.quorum", "must be between 1 and the number of members (%zu)", v[1]->n);
    if (!(p->witnesses = calloc(v[1]->n, sizeof *p->witnesses))) return nomem(c);
    for (size_t i = 0; i < v[1]->n; i++) {
        static const char *const wkeys[] = {"name", "vkey", "url", NULL};
        const ynode *w[3], *it = v[1]->items[i];
        char base[64], sub[352];
        snprintf(base, sizeof base, "witnesses.members[%zu]", i);
        if ((rc = get_map(c, it, base, wkeys, w))) return rc;
        pt_witness *x = &p->witnesses[p->n_witnesses++];
        x->line = it->line;
        x->column = it->col;
        for (int k = 0; k < 3; k++)
            if (!w[k]) return perr(c, it, base, "missing '%s'", wkeys[k]);
        subpath(sub, sizeof sub, base, "name");
        if ((rc = get_str(c, w[0], sub, &x->name))) return rc;
        subpath(sub, sizeof sub, base, "vkey");
        if ((rc = get_str(c, w[1], sub, &x->vkey))) return rc;
        pt_err e;
        cosig_verifier cv;
        if (cosig_verifier_parse(x->vkey, &cv, &e)) return perr(c, w[1], sub, "%s", e.msg);
        if (strcmp(cv.name, x->name) != 0)
            return perr(c, w[1], sub, "the key is named '%s', not '%s'", cv.name, x->name);
        subpath(sub, sizeof sub, base, "url");
        if ((rc = get_str(c, w[2], sub, &x->url))) return rc;
        if (strncmp(x->url, "http://", 7) != 0 && strncmp(x->url, "https://", 8) != 0)
            return perr(c, w[2], sub, "expected an http:// or https:// URL");
        for (size_t j = 0; j + 1 < p->n_witnesses; j++)
            if (!strcmp(p->witnesses[j].name, x->name))
                return perr(c, w[0], base, "duplicate witness '%s' (first at line %d)", x->name, p->witnesses[j].line);
    }
    return PT_OK;
}

static int parse_orgs(pctx *c, const ynode *n) {
    int rc = seq_of(c, n, "organisations");
    if (rc) return rc;
    pt_policy *p = c->p;
    p->orgs = calloc(n->n ? n->n : 1, sizeof *p->orgs);
    if (!p->orgs) return nomem(c);
    for (size_t i = 0; i < n->n; i++) {
        static const char *const keys[] = {"id", "name", "kind", "public_usage", NULL};
        const ynode *v[4], *it = n->items[i];
        char base[64], sub[352];
        snprintf(base, sizeof base, "organisations[%zu]", i);
        if ((rc = get_map(c, it, base, keys, v))) return rc;
        pt_org *o = &p->orgs[p->n_orgs++];
        o->line = it->line;
        o->column = it->col;
        if (!v[0]) return perr(c, it, base, "missing 'id'");
        if (!v[1]) return perr(c, it, base, "missing 'name'");
        if (!v[2]) return perr(c, it, base, "missing 'kind'");
        subpath(sub, sizeof sub, base, "id");
        if ((rc = get_id(c, v[0], sub, 0, &o->id))) return rc;
        for (size_t j = 0; j + 1 < p->n_orgs; j++)
            if (!strcmp(p->orgs[j].id, o->id))
                return perr(c, v[0], sub, "duplicate organisation id '%s' (first at line %d)", o->id, p->orgs[j].line);
        subpath(sub, sizeof sub, base, "name");
        if ((rc = get_str(c, v[1], sub, &o->name))) return rc;
        subpath(sub, sizeof sub, base, "kind");
        if (v[2]->type != YN_SCALAR) return perr(c, v[2], sub, "expected a kind");
        int k;
        for (k = 0; k < 4; k++)
            if (!strcmp(v[2]->str, kind_names[k])) break;
        if (k == 4)
            return perr(c, v[2], sub, "unknown kind '%s' (one of insider, evaluator, researcher, public)", v[2]->str);
        o->kind = (pt_org_kind)k;
        if (v[3]) {
            subpath(sub, sizeof sub, base, "public_usage");
            if ((rc = get_bool(c, v[3], sub, &o->public_usage))) return rc;
        }
    }
    return PT_OK;
}

static int pattern_matches_any(const pt_policy *p, const char *pat) {
    for (size_t i = 0; i < p->n_models; i++)
        if (pt_policy_pattern_match(pat, p->models[i].id)) return 1;
    return 0;
}

static int check_unique_rule_id(pctx *c, const ynode *n, const char *sub, const char *kind, char **ids, size_t count,
                                const char *id) {
    for (size_t j = 0; j < count; j++)
        if (ids[j] && !strcmp(ids[j], id)) return perr(c, n, sub, "duplicate %s id '%s'", kind, id);
    return PT_OK;
}

static int parse_grants(pctx *c, const ynode *n) {
    pt_policy *p = c->p;
    int rc;
    size_t nn = 0;
    if (n) {
        if ((rc = seq_of(c, n, "grants"))) return rc;
        nn = n->n;
    }
    p->grants = calloc(nn ? nn : 1, sizeof *p->grants);
    char **ids = calloc(nn ? nn : 1, sizeof *ids);
    if (!p->grants || !ids) {
        free(ids);
        return nomem(c);
    }
    rc = PT_OK;
    for (size_t i = 0; i < nn && !rc; i++) {
        static const char *const keys[] = {"id", "organisation", "model", "tier", "capabilities", "window",
                                           "limits", "note", NULL};
        const ynode *v[8], *it = n->items[i];
        char base[64], sub[352];
        snprintf(base, sizeof base, "grants[%zu]", i);
        if ((rc = get_map(c, it, base, keys, v))) break;
        pt_grant *g = &p->grants[p->n_grants++];
        g->line = it->line;
        g->column = it->col;
        g->from = PT_TIME_MIN;
        g->until = PT_TIME_MAX;
        g->limits = (pt_limits){PT_UNLIMITED, PT_UNLIMITED, PT_UNLIMITED, PT_UNLIMITED};
        if (v[0]) {
            subpath(sub, sizeof sub, base, "id");
            if ((rc = get_id(c, v[0], sub, 0, &g->id))) break;
            if ((rc = check_unique_rule_id(c, v[0], sub, "grant", ids, i, g->id))) break;
            ids[i] = g->id;
            g->has_id = 1;
        } else if (!(g->id = strdup(base))) {
            rc = nomem(c);
            break;
        }
        if (!v[1]) { rc = perr(c, it, base, "missing 'organisation'"); break; }
        if (!v[2]) { rc = perr(c, it, base, "missing 'model'"); break; }
        if (!v[3] && !v[4]) { rc = perr(c, it, base, "a grant needs a 'tier' or 'capabilities'"); break; }
        subpath(sub, sizeof sub, base, "organisation");
        if ((rc = get_id(c, v[1], sub, 0, &g->org))) break;
        if (!pt_policy_org(p, g->org)) { rc = perr(c, v[1], sub, "unknown organisation '%s'", g->org); break; }
        subpath(sub, sizeof sub, base, "model");
        if ((rc = get_id(c, v[2], sub, 1, &g->model))) break;
        if (!pattern_matches_any(p, g->model)) {
            rc = strpbrk(g->model, "*?[") ? perr(c, v[2], sub, "pattern '%s' matches no model", g->model)
                                          : perr(c, v[2], sub, "unknown model '%s'", g->model);
            break;
        }
        if (v[3]) {
            subpath(sub, sizeof sub, base, "tier");
            if ((rc = get_id(c, v[3], sub, 0, &g->tier))) break;
            const pt_tier *t = pt_policy_tier(p, g->tier);
            if (!t) { rc = perr(c, v[3], sub, "unknown tier '%s'", g->tier); break; }
            g->caps = t->caps;
        }
        if (v[4]) {
            subpath(sub, sizeof sub, base, "capabilities");
            if ((rc = get_caps(c, v[4], sub, &g->extra))) break;
            if (!v[3] && !g->extra) { rc = perr(c, v[4], sub, "a grant without a tier needs at least one capability"); break; }
            g->caps |= g->extra;
        }
        if (v[5]) {
            subpath(sub, sizeof sub, base, "window");
            if ((rc = get_window(c, v[5], sub, &g->from, &g->until))) break;
        }
        if (v[6]) {
            subpath(sub, sizeof sub, base, "limits");
            if ((rc = get_limits(c, v[6], sub, &g->limits))) break;
        }
        if (v[7]) {
            subpath(sub, sizeof sub, base, "note");
            if ((rc = get_str(c, v[7], sub, &g->note))) break;
        }
    }
    free(ids);
    return rc;
}

static int parse_forbids(pctx *c, const ynode *n) {
    pt_policy *p = c->p;
    int rc;
    size_t nn = 0;
    if (n) {
        if ((rc = seq_of(c, n, "forbids"))) return rc;
        nn = n->n;
    }
    p->forbids = calloc(nn ? nn : 1, sizeof *p->forbids);
    char **ids = calloc(nn ? nn : 1, sizeof *ids);
    if (!p->forbids || !ids) {
        free(ids);
        return nomem(c);
    }
    rc = PT_OK;
    for (size_t i = 0; i < nn && !rc; i++) {
        static const char *const keys[] = {"id", "organisation", "model", "capabilities", "window", "reason", NULL};
        const ynode *v[6], *it = n->items[i];
        char base[64], sub[352];
        snprintf(base, sizeof base, "forbids[%zu]", i);
        if ((rc = get_map(c, it, base, keys, v))) break;
        pt_forbid *f = &p->forbids[p->n_forbids++];
        f->line = it->line;
        f->column = it->col;
        f->from = PT_TIME_MIN;
        f->until = PT_TIME_MAX;
        f->caps = PT_CAPS_ALL;
        if (v[0]) {
            subpath(sub, sizeof sub, base, "id");
            if ((rc = get_id(c, v[0], sub, 0, &f->id))) break;
            if ((rc = check_unique_rule_id(c, v[0], sub, "forbid", ids, i, f->id))) break;
            ids[i] = f->id;
            f->has_id = 1;
        } else if (!(f->id = strdup(base))) {
            rc = nomem(c);
            break;
        }
        if (!v[1] && !v[2]) { rc = perr(c, it, base, "a forbid needs an 'organisation' or a 'model'"); break; }
        if (v[1]) {
            subpath(sub, sizeof sub, base, "organisation");
            if ((rc = get_id(c, v[1], sub, 0, &f->org))) break;
            if (!pt_policy_org(p, f->org)) { rc = perr(c, v[1], sub, "unknown organisation '%s'", f->org); break; }
        }
        if (v[2]) {
            subpath(sub, sizeof sub, base, "model");
            if ((rc = get_id(c, v[2], sub, 1, &f->model))) break;
            if (!pattern_matches_any(p, f->model)) {
                rc = strpbrk(f->model, "*?[") ? perr(c, v[2], sub, "pattern '%s' matches no model", f->model)
                                              : perr(c, v[2], sub, "unknown model '%s'", f->model);
                break;
            }
        }
        if (v[3]) {
            subpath(sub, sizeof sub, base, "capabilities");
            if ((rc = get_caps(c, v[3], sub, &f->caps))) break;
            if (!f->caps) { rc = perr(c, v[3], sub, "an empty list forbids nothing (leave it out to forbid everything)"); break; }
        }
        if (v[4]) {
            subpath(sub, sizeof sub, base, "window");
            if ((rc = get_window(c, v[4], sub, &f->from, &f->until))) break;
        }
        if (v[5]) {
            subpath(sub, sizeof sub, base, "reason");
            if ((rc = get_str(c, v[5], sub, &f->reason))) break;
        }
    }
    free(ids);
    return rc;
}

pt_policy *pt_policy_parse(const char *text, size_t len, const char *what, pt_err *err) {
    ynode *root = ytree_parse(text, len, what, err);
    if (!root) return NULL;
    pt_policy *p = calloc(1, sizeof *p);
    if (!p) {
        ytree_free(root);
        pt_errf(err, PT_ENOMEM, "%s: out of memory", what);
        return NULL;
    }
    pctx c = {what, err, p};
    static const char *const keys[] = {"version", "lab", "models", "tiers", "organisations", "grants", "forbids", "witnesses", NULL};
    const ynode *v[8];
    int rc = get_map(&c, root, "", keys, v);
    if (!rc) {
        p->version = 1;
        if (v[0] && !(v[0]->type == YN_SCALAR && !strcmp(v[0]->str, "1")))
            rc = perr(&c, v[0], "version", "unsupported version (this build reads version 1)");
        else if (!v[1]) rc = perr(&c, root, "", "missing 'lab'");
        else if (!v[2]) rc = perr(&c, root, "", "missing 'models'");
        else if (!v[4]) rc = perr(&c, root, "", "missing 'organisations'");
    }
    if (!rc) rc = parse_lab(&c, v[1]);
    if (!rc) rc = parse_models(&c, v[2]);
    if (!rc) rc = parse_tiers(&c, v[3]);
    if (!rc) rc = parse_orgs(&c, v[4]);
    if (!rc) rc = parse_grants(&c, v[5]);
    if (!rc) rc = parse_forbids(&c, v[6]);
    if (!rc) rc = parse_witnesses(&c, v[7]);
    if (!rc) rc = pt_policy_build_index(p, err);
    ytree_free(root);
    if (rc) {
        pt_policy_free(p);
        return NULL;
    }
    return p;
}

pt_policy *pt_policy_load(const char *path, pt_err *err) {
    char *text;
    size_t len;
    if (pt_read_file(path, POLICY_MAX_FILE, &text, &len, err)) return NULL;
    pt_policy *p = pt_policy_parse(text, len, path, err);
    free(text);
    return p;
}

void pt_policy_free(pt_policy *p) {
    if (!p) return;
    free(p->lab_id);
    free(p->lab_name);
    free(p->lab_url);
    for (size_t i = 0; i < p->n_models; i++) {
        pt_pmodel *m = &p->models[i];
        free(m->id);
        free(m->name);
        free(m->weights);
        free(m->analog_of);
        for (size_t j = 0; j < m->n_variants; j++) {
            free(m->variants[j].id);
            free(m->variants[j].differs);
        }
        free(m->variants);
    }
    free(p->models);
    for (size_t i = 0; i < p->n_tiers; i++) {
        free(p->tiers[i].id);
        free(p->tiers[i].description);
    }
    free(p->tiers);
    for (size_t i = 0; i < p->n_orgs; i++) {
        free(p->orgs[i].id);
        free(p->orgs[i].name);
    }
    free(p->orgs);
    for (size_t i = 0; i < p->n_grants; i++) {
        pt_grant *g = &p->grants[i];
        free(g->id);
        free(g->org);
        free(g->model);
        free(g->tier);
        free(g->note);
    }
    free(p->grants);
    for (size_t i = 0; i < p->n_forbids; i++) {
        pt_forbid *f = &p->forbids[i];
        free(f->id);
        free(f->org);
        free(f->model);
        free(f->reason);
    }
    free(p->forbids);
    for (size_t i = 0; i < p->n_witnesses; i++) {
        free(p->witnesses[i].name);
        free(p->witnesses[i].vkey);
        free(p->witnesses[i].url);
    }
    free(p->witnesses);
    pt_policy_index_free(p->index);
    free(p);
}

/* Linear lookups are for parse time, before the index exists; afterwards the index answers. */
const pt_pmodel *pt_policy_model(const pt_policy *p, const char *id) {
    if (p->index) {
        long i = pt_policy_model_ix(p, id);
        return i < 0 ? NULL : &p->models[i];
    }
    for (size_t i = 0; i < p->n_models; i++)
        if (p->models[i].id && !strcmp(p->models[i].id, id)) return &p->models[i];
    return NULL;
}

const pt_org *pt_policy_org(const pt_policy *p, const char *id) {
    if (p->index) {
        long i = pt_policy_org_ix(p, id);
        return i < 0 ? NULL : &p->orgs[i];
    }
    for (size_t i = 0; i < p->n_orgs; i++)
        if (p->orgs[i].id && !strcmp(p->orgs[i].id, id)) return &p->orgs[i];
    return NULL;
}

const pt_tier *pt_policy_tier(const pt_policy *p, const char *id) {
    for (size_t i = 0; i < p->n_tiers; i++)
        if (!strcmp(p->tiers[i].id, id)) return &p->tiers[i];
    return NULL;
}

const pt_variant *pt_model_variant(const pt_pmodel *m, const char *id) {
    for (size_t i = 0; i < m->n_variants; i++)
        if (!strcmp(m->variants[i].id, id)) return &m->variants[i];
    return NULL;
}

int pt_policy_pattern_match(const char *pattern, const char *model) {
    return !pattern || fnmatch(pattern, model, 0) == 0;
}

/* ---- JSON form ---- */

static json_t *caps_json(pt_capset caps) {
    json_t *a = json_array();
    for (int i = 0; a && i < PT_CAP_COUNT; i++)
        if (caps & (1u << i)) json_array_append_new(a, json_string(cap_names[i]));
    return a;
}

static void set_time(json_t *o, const char *key, int64_t t) {
    char buf[21];
    json_object_set_new(o, key, json_string(pt_format_time(t, buf)));
}

static json_t *window_json(int64_t from, int64_t until) {
    if (from == PT_TIME_MIN && until == PT_TIME_MAX) return NULL;
    json_t *w = json_object();
    if (from != PT_TIME_MIN) set_time(w, "from", from);
    if (until != PT_TIME_MAX) set_time(w, "until", until);
    return w;
}

json_t *pt_policy_to_json(const pt_policy *p) {
    json_t *root = json_object();
    if (!root) return NULL;
    json_object_set_new(root, "version", json_integer(p->version));
    json_t *lab = json_object();
    json_object_set_new(lab, "id", json_string(p->lab_id));
    json_object_set_new(lab, "name", json_string(p->lab_name));
    if (p->lab_url) json_object_set_new(lab, "url", json_string(p->lab_url));
    json_object_set_new(root, "lab", lab);
    json_t *models = json_array();
    for (size_t i = 0; i < p->n_models; i++) {
        const pt_pmodel *m = &p->models[i];
        json_t *o = json_object();
        json_object_set_new(o, "id", json_string(m->id));
        if (m->name) json_object_set_new(o, "name", json_string(m->name));
        if (m->weights) json_object_set_new(o, "weights", json_string(m->weights));
        set_time(o, "insider_since", m->insider_since);
        if (m->public_since != PT_TIME_MAX) set_time(o, "public_since", m->public_since);
        if (m->analog_of) json_object_set_new(o, "analog_of", json_string(m->analog_of));
        if (m->n_variants) {
            json_t *vs = json_array();
            for (size_t j = 0; j < m->n_variants; j++) {
                json_t *v = json_object();
                json_object_set_new(v, "id", json_string(m->variants[j].id));
                if (m->variants[j].differs) json_object_set_new(v, "differs", json_string(m->variants[j].differs));
                json_object_set_new(v, "unmitigated", json_boolean(m->variants[j].unmitigated));
                json_array_append_new(vs, v);
            }
            json_object_set_new(o, "variants", vs);
        }
        json_array_append_new(models, o);
    }
    json_object_set_new(root, "models", models);
    json_t *tiers = json_array();
    for (size_t i = 0; i < p->n_tiers; i++) {
        json_t *o = json_object();
        json_object_set_new(o, "id", json_string(p->tiers[i].id));
        if (p->tiers[i].description) json_object_set_new(o, "description", json_string(p->tiers[i].description));
        json_object_set_new(o, "capabilities", caps_json(p->tiers[i].caps));
        json_array_append_new(tiers, o);
    }
    json_object_set_new(root, "tiers", tiers);
    json_t *orgs = json_array();
    for (size_t i = 0; i < p->n_orgs; i++) {
        json_t *o = json_object();
        json_object_set_new(o, "id", json_string(p->orgs[i].id));
        json_object_set_new(o, "name", json_string(p->orgs[i].name));
        json_object_set_new(o, "kind", json_string(kind_names[p->orgs[i].kind]));
        /* only when true: revisions written before the field keep their canonical form */
        if (p->orgs[i].public_usage) json_object_set_new(o, "public_usage", json_true());
        json_array_append_new(orgs, o);
    }
    json_object_set_new(root, "organisations", orgs);
    static const char *const lnames[] = {"requests_per_minute", "tokens_per_day", "concurrent_finetune_jobs",
                                         "logprobs_top_k"};
    json_t *grants = json_array();
    for (size_t i = 0; i < p->n_grants; i++) {
        const pt_grant *g = &p->grants[i];
        json_t *o = json_object();
        if (g->has_id) json_object_set_new(o, "id", json_string(g->id));
        json_object_set_new(o, "organisation", json_string(g->org));
        json_object_set_new(o, "model", json_string(g->model));
        if (g->tier) json_object_set_new(o, "tier", json_string(g->tier));
        if (g->extra) json_object_set_new(o, "capabilities", caps_json(g->extra));
        json_t *w = window_json(g->from, g->until);
        if (w) json_object_set_new(o, "window", w);
        const int64_t lv[4] = {g->limits.requests_per_minute, g->limits.tokens_per_day,
                               g->limits.concurrent_finetune_jobs, g->limits.logprobs_top_k};
        json_t *l = json_object();
        for (int k = 0; k < 4; k++)
            if (lv[k] != PT_UNLIMITED) json_object_set_new(l, lnames[k], json_integer(lv[k]));
        if (json_object_size(l)) json_object_set_new(o, "limits", l);
        else json_decref(l);
        if (g->note) json_object_set_new(o, "note", json_string(g->note));
        json_array_append_new(grants, o);
    }
    json_object_set_new(root, "grants", grants);
    json_t *forbids = json_array();
    for (size_t i = 0; i < p->n_forbids; i++) {
        const pt_forbid *f = &p->forbids[i];
        json_t *o = json_object();
        if (f->has_id) json_object_set_new(o, "id", json_string(f->id));
        if (f->org) json_object_set_new(o, "organisation", json_string(f->org));
        if (f->model) json_object_set_new(o, "model", json_string(f->model));
        if (f->caps != PT_CAPS_ALL) json_object_set_new(o, "capabilities", caps_json(f->caps));
        json_t *w = window_json(f->from, f->until);
        if (w) json_object_set_new(o, "window", w);
        if (f->reason) json_object_set_new(o, "reason", json_string(f->reason));
        json_array_append_new(forbids, o);
    }
    json_object_set_new(root, "forbids", forbids);
    if (p->n_witnesses) { /* only when named: older revisions keep their canonical form */
        json_t *w = json_object(), *ms = json_array();
        json_object_set_new(w, "quorum", json_integer(p->witness_quorum));
        for (size_t i = 0; i < p->n_witnesses; i++) {
            json_t *o = json_object();
            json_object_set_new(o, "name", json_string(p->witnesses[i].name));
            json_object_set_new(o, "vkey", json_string(p->witnesses[i].vkey));
            json_object_set_new(o, "url", json_string(p->witnesses[i].url));
            json_array_append_new(ms, o);
        }
        json_object_set_new(w, "members", ms);
        json_object_set_new(root, "witnesses", w);
    }
    return root;
}
