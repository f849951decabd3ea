/* see policy.h — the semantic diff between two policies: what a reader of the transparency
 * log needs to know about a revision, one line per change, grouped per organisation. */
#include "policy/policy.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/util.h"

static void add(json_t *lines, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void add(json_t *lines, const char *fmt, ...) {
    char buf[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    json_array_append_new(lines, json_string(buf));
}

static int streq(const char *a, const char *b) { return (!a && !b) || (a && b && !strcmp(a, b)); }
static const char *orn(const char *s) { return s ? s : "(none)"; }

static const char *tstr(int64_t t, char buf[21], int is_until) {
    if (t == PT_TIME_MIN) return "always";
    if (t == PT_TIME_MAX) return is_until ? "open-ended" : "never";
    return pt_format_time(t, buf);
}

static void caps_delta(pt_buf *b, pt_capset from, pt_capset to, int *wider, int *narrower) {
    for (int i = 0; i < PT_CAP_COUNT; i++) {
        pt_capset bit = 1u << i;
        if ((to & bit) && !(from & bit)) {
            pt_buf_printf(b, "%s+%s", b->len ? ", " : "", pt_cap_name((pt_cap)i));
            if (wider) *wider = 1;
        }
        if ((from & bit) && !(to & bit)) {
            pt_buf_printf(b, "%s-%s", b->len ? ", " : "", pt_cap_name((pt_cap)i));
            if (narrower) *narrower = 1;
        }
    }
}

static void caps_list(pt_buf *b, pt_capset caps) {
    int first = 1;
    for (int i = 0; i < PT_CAP_COUNT; i++)
        if (caps & (1u << i)) {
            pt_buf_printf(b, "%s%s", first ? "" : ", ", pt_cap_name((pt_cap)i));
            first = 0;
        }
    if (first) pt_buf_puts(b, "nothing");
}

static const char *const limit_names[4] = {"requests_per_minute", "tokens_per_day", "concurrent_finetune_jobs",
                                           "logprobs_top_k"};
static int64_t limit_at(const pt_limits *l, int i) {
    return i == 0 ? l->requests_per_minute : i == 1 ? l->tokens_per_day : i == 2 ? l->concurrent_finetune_jobs : l->logprobs_top_k;
}
static void limit_str(int64_t v, char *out, size_t cap) {
    if (v == PT_UNLIMITED) snprintf(out, cap, "unlimited");
    else snprintf(out, cap, "%lld", (long long)v);
}
/* 1 if b is more generous than a. */
static int limit_wider(int64_t a, int64_t b) { return a != PT_UNLIMITED && (b == PT_UNLIMITED || b > a); }

static void grant_desc(pt_buf *b, const pt_grant *g) {
    char t1[21], t2[21];
    pt_buf_printf(b, "%s", g->tier ? g->tier : "");
    if (g->extra) {
        pt_buf_puts(b, g->tier ? " + " : "");
        caps_list(b, g->extra);
    }
    pt_buf_printf(b, "; window %s to %s", tstr(g->from, t1, 0), tstr(g->until, t2, 1));
    for (int i = 0; i < 4; i++) {
        int64_t v = limit_at(&g->limits, i);
        if (v != PT_UNLIMITED) pt_buf_printf(b, "; %s %lld", limit_names[i], (long long)v);
    }
}

/* The key that matches a grant (or forbid) across revisions: its id, or for an unnamed one
 * its organisation, model pattern and its rank among unnamed rules with those two. */
static char *rule_key(int has_id, const char *id, const char *org, const char *model, int occurrence) {
    char buf[600];
    if (has_id) snprintf(buf, sizeof buf, "id:%s", id);
    else snprintf(buf, sizeof buf, "%s|%s|%d", org ? org : "*", model ? model : "*", occurrence);
    return strdup(buf);
}

static char **grant_keys(const pt_policy *p) {
    char **k = calloc(p->n_grants ? p->n_grants : 1, sizeof *k);
    for (size_t i = 0; k && i < p->n_grants; i++) {
        int occ = 0;
        const pt_grant *g = &p->grants[i];
        for (size_t j = 0; j < i; j++)
            if (!p->grants[j].has_id && !g->has_id && !strcmp(p->grants[j].org, g->org) &&
                !strcmp(p->grants[j].model, g->model))
                occ++;
        k[i] = rule_key(g->has_id, g->id, g->org, g->model, occ);
    }
    return k;
}

static char **forbid_keys(const pt_policy *p) {
    char **k = calloc(p->n_forbids ? p->n_forbids : 1, sizeof *k);
    for (size_t i = 0; k && i < p->n_forbids; i++) {
        int occ = 0;
        const pt_forbid *f = &p->forbids[i];
        for (size_t j = 0; j < i; j++)
            if (!p->forbids[j].has_id && !f->has_id && streq(p->forbids[j].org, f->org) &&
                streq(p->forbids[j].model, f->model))
                occ++;
        k[i] = rule_key(f->has_id, f->id, f->org, f->model, occ);
    }
    return k;
}

static void free_keys(char **k, size_t n) {
    for (size_t i = 0; k && i < n; i++) free(k[i]);
    free(k);
}

static long find_key(char **keys, size_t n, const char *key) {
    for (size_t i = 0; i < n; i++)
        if (keys[i] && !strcmp(keys[i], key)) return (long)i;
    return -1;
}

static void diff_grant(json_t *lines, const pt_grant *a, const pt_grant *b) {
    pt_buf d;
    pt_buf_init(&d, 1 << 16);
    int wider = 0, narrower = 0, other = 0;
    char t1[21], t2[21];
    caps_delta(&d, a->caps, b->caps, &wider, &narrower);
    if (!streq(a->model, b->model)) {
        pt_buf_printf(&d, "%smodel %s -> %s", d.len ? "; " : "", a->model, b->model);
        other = 1;
    }
    if (!streq(a->tier, b->tier)) {
        pt_buf_printf(&d, "%stier %s -> %s", d.len ? "; " : "", orn(a->tier), orn(b->tier));
        if (a->caps == b->caps) other = 1;
    }
    if (a->from != b->from) {
        pt_buf_printf(&d, "%sfrom %s -> %s", d.len ? "; " : "", tstr(a->from, t1, 0), tstr(b->from, t2, 0));
        if (b->from < a->from) wider = 1;
        else narrower = 1;
    }
    if (a->until != b->until) {
        pt_buf_printf(&d, "%suntil %s -> %s", d.len ? "; " : "", tstr(a->until, t1, 1), tstr(b->until, t2, 1));
        if (b->until > a->until) wider = 1;
        else narrower = 1;
    }
    for (int i = 0; i < 4; i++) {
        int64_t x = limit_at(&a->limits, i), y = limit_at(&b->limits, i);
        if (x == y) continue;
        char s1[24], s2[24];
        limit_str(x, s1, sizeof s1);
        limit_str(y, s2, sizeof s2);
        pt_buf_printf(&d, "%s%s %s -> %s", d.len ? "; " : "", limit_names[i], s1, s2);
        if (limit_wider(x, y)) wider = 1;
        else narrower = 1;
    }
    if (!streq(a->note, b->note)) {
        pt_buf_printf(&d, "%snote changed", d.len ? "; " : "");
        other = 1;
    }
    if (d.len) {
        const char *how = wider && !narrower && !other ? "widened" : narrower && !wider && !other ? "narrowed" : "changed";
        add(lines, "organisation %s: grant %s on %s %s: %s", b->org, b->id, b->model, how, d.data);
    }
    pt_buf_free(&d);
}

static void forbid_desc(pt_buf *b, const pt_forbid *f) {
    char t1[21], t2[21];
    pt_buf_printf(b, "%s on %s: ", f->org ? f->org : "every organisation", f->model ? f->model : "every model");
    if (f->caps == PT_CAPS_ALL) pt_buf_puts(b, "everything");
    else caps_list(b, f->caps);
    if (f->from != PT_TIME_MIN || f->until != PT_TIME_MAX)
        pt_buf_printf(b, "; window %s to %s", tstr(f->from, t1, 0), tstr(f->until, t2, 1));
    if (f->reason) pt_buf_printf(b, " (%s)", f->reason);
}

/* "quorum Q of name (url), ..." or "none" */
static void witnesses_desc(pt_buf *b, const pt_policy *p) {
    if (!p->n_witnesses) {
        pt_buf_puts(b, "none");
        return;
    }
    pt_buf_printf(b, "quorum %lld of ", (long long)p->witness_quorum);
    for (size_t i = 0; i < p->n_witnesses; i++)
        pt_buf_printf(b, "%s%s (%s)", i ? ", " : "", p->witnesses[i].vkey, p->witnesses[i].url);
}

static void diff_witnesses(json_t *lines, const pt_policy *a, const pt_policy *b) {
    pt_buf x, y;
    pt_buf_init(&x, 1 << 16);
    pt_buf_init(&y, 1 << 16);
    if (a) witnesses_desc(&x, a);
    witnesses_desc(&y, b);
    if (a ? x.len != y.len || memcmp(x.data, y.data, x.len) != 0 : b->n_witnesses != 0)
        add(lines, "witnesses %s -> %.*s", a ? x.data : "none", (int)y.len, y.data);
    pt_buf_free(&x);
    pt_buf_free(&y);
}

json_t *pt_policy_diff(const pt_policy *a, const pt_policy *b) {
    json_t *lines = json_array();
    if (!lines) return NULL;
    char t1[21], t2[21];
    pt_buf d;
    pt_buf_init(&d, 1 << 16);
    if (!a) {
        add(lines, "first policy of lab %s (%s): %zu models, %zu organisations, %zu grants, %zu forbids", b->lab_id,
            b->lab_name, b->n_models, b->n_orgs, b->n_grants, b->n_forbids);
    } else {
        if (!streq(a->lab_id, b->lab_id)) add(lines, "lab id %s -> %s", a->lab_id, b->lab_id);
        if (!streq(a->lab_name, b->lab_name)) add(lines, "lab name '%s' -> '%s'", a->lab_name, b->lab_name);
        if (!streq(a->lab_url, b->lab_url)) add(lines, "lab url %s -> %s", orn(a->lab_url), orn(b->lab_url));
    }
    diff_witnesses(lines, a, b);
    /* models */
    for (size_t i = 0; a && i < b->n_models; i++) {
        const pt_pmodel *m = &b->models[i], *o = NULL;
        for (size_t j = 0; a && j < a->n_models; j++)
            if (!strcmp(a->models[j].id, m->id)) o = &a->models[j];
        if (!o) {
            add(lines, "model %s added (insider since %s%s%s)", m->id, pt_format_time(m->insider_since, t1),
                m->analog_of ? ", analog of " : "", m->analog_of ? m->analog_of : "");
            continue;
        }
        if (o->insider_since != m->insider_since)
            add(lines, "model %s: insider_since %s -> %s", m->id, pt_format_time(o->insider_since, t1),
                pt_format_time(m->insider_since, t2));
        if (o->public_since != m->public_since)
            add(lines, "model %s: public_since %s -> %s", m->id, tstr(o->public_since, t1, 0), tstr(m->public_since, t2, 0));
        if (!streq(o->analog_of, m->analog_of))
            add(lines, "model %s: analog_of %s -> %s", m->id, orn(o->analog_of), orn(m->analog_of));
        if (!streq(o->weights, m->weights)) add(lines, "model %s: weights %s -> %s", m->id, orn(o->weights), orn(m->weights));
        if (!streq(o->name, m->name)) add(lines, "model %s: name '%s' -> '%s'", m->id, orn(o->name), orn(m->name));
        for (size_t v = 0; v < m->n_variants; v++) {
            const pt_variant *nv = &m->variants[v], *ov = pt_model_variant(o, nv->id);
            if (!ov) add(lines, "model %s: variant %s added%s", m->id, nv->id, nv->unmitigated ? " (unmitigated)" : "");
            else if (ov->unmitigated != nv->unmitigated || !streq(ov->differs, nv->differs))
                add(lines, "model %s: variant %s changed", m->id, nv->id);
        }
        for (size_t v = 0; v < o->n_variants; v++)
            if (!pt_model_variant(m, o->variants[v].id)) add(lines, "model %s: variant %s removed", m->id, o->variants[v].id);
    }
    for (size_t j = 0; a && j < a->n_models; j++) {
        int found = 0;
        for (size_t i = 0; i < b->n_models; i++) found |= !strcmp(a->models[j].id, b->models[i].id);
        if (!found) add(lines, "model %s removed", a->models[j].id);
    }
    /* tiers */
    for (size_t i = 0; a && i < b->n_tiers; i++) {
        const pt_tier *t = &b->tiers[i], *o = pt_policy_tier(a, t->id);
        pt_buf_reset(&d);
        if (!o) {
            caps_list(&d, t->caps);
            add(lines, "tier %s added: %s", t->id, d.data);
        } else if (o->caps != t->caps) {
            int w = 0, n = 0;
            caps_delta(&d, o->caps, t->caps, &w, &n);
            add(lines, "tier %s %s: %s", t->id, w && !n ? "widened" : n && !w ? "narrowed" : "changed", d.data);
        }
    }
    for (size_t j = 0; a && j < a->n_tiers; j++)
        if (!pt_policy_tier(b, a->tiers[j].id)) add(lines, "tier %s removed", a->tiers[j].id);
    /* organisations */
    for (size_t i = 0; a && i < b->n_orgs; i++) {
        const pt_org *g = &b->orgs[i], *o = pt_policy_org(a, g->id);
        if (!o) add(lines, "organisation %s added (%s, %s%s)", g->id, pt_org_kind_name(g->kind), g->name,
                    g->public_usage ? ", public usage" : "");
        else {
            if (o->kind != g->kind)
                add(lines, "organisation %s: kind %s -> %s", g->id, pt_org_kind_name(o->kind), pt_org_kind_name(g->kind));
            if (!streq(o->name, g->name)) add(lines, "organisation %s: name '%s' -> '%s'", g->id, o->name, g->name);
            if (o->public_usage != g->public_usage)
                add(lines, "organisation %s: usage %s -> %s", g->id, o->public_usage ? "public" : "pseudonymous",
                    g->public_usage ? "public" : "pseudonymous");
        }
    }
    for (size_t j = 0; a && j < a->n_orgs; j++)
        if (!pt_policy_org(b, a->orgs[j].id)) add(lines, "organisation %s removed", a->orgs[j].id);
    /* grants, per organisation (organisations of b in order, then those only in a) */
    char **ka = a ? grant_keys(a) : NULL, **kb = grant_keys(b);
    size_t norgs = b->n_orgs + (a ? a->n_orgs : 0);
    for (size_t oi = 0; oi < norgs; oi++) {
        const char *org = oi < b->n_orgs ? b->orgs[oi].id : a->orgs[oi - b->n_orgs].id;
        if (oi >= b->n_orgs && pt_policy_org(b, org)) continue;
        for (size_t i = 0; i < b->n_grants; i++) {
            const pt_grant *g = &b->grants[i];
            if (strcmp(g->org, org)) continue;
            long j = a && kb && kb[i] ? find_key(ka, a->n_grants, kb[i]) : -1;
            if (j >= 0 && strcmp(a->grants[j].org, org)) j = -1;
            if (j < 0) {
                if (!a) continue;
                pt_buf_reset(&d);
                grant_desc(&d, g);
                add(lines, "organisation %s: grant %s on %s added (%s)", org, g->id, g->model, d.data);
            } else {
                diff_grant(lines, &a->grants[j], g);
            }
        }
        for (size_t j = 0; a && j < a->n_grants; j++) {
            const pt_grant *g = &a->grants[j];
            if (strcmp(g->org, org)) continue;
            long i = ka && ka[j] ? find_key(kb, b->n_grants, ka[j]) : -1;
            if (i >= 0 && !strcmp(b->grants[i].org, org)) continue;
            add(lines, "organisation %s: grant %s on %s removed", org, g->id, g->model);
        }
    }
    free_keys(ka, a ? a->n_grants : 0);
    free_keys(kb, b->n_grants);
    /* forbids */
    if (a) {
        char **fa = forbid_keys(a), **fb = forbid_keys(b);
        for (size_t i = 0; i < b->n_forbids; i++) {
            long j = fb && fb[i] ? find_key(fa, a->n_forbids, fb[i]) : -1;
            const pt_forbid *f = &b->forbids[i];
            pt_buf_reset(&d);
            forbid_desc(&d, f);
            if (j < 0) {
                add(lines, "forbid %s added: %s", f->id, d.data);
            } else {
                const pt_forbid *o = &a->forbids[j];
                if (o->caps != f->caps || o->from != f->from || o->until != f->until || !streq(o->reason, f->reason) ||
                    !streq(o->org, f->org) || !streq(o->model, f->model))
                    add(lines, "forbid %s changed: now %s", f->id, d.data);
            }
        }
        for (size_t j = 0; j < a->n_forbids; j++)
            if (!fa || !fa[j] || find_key(fb, b->n_forbids, fa[j]) < 0) add(lines, "forbid %s removed", a->forbids[j].id);
        free_keys(fa, a->n_forbids);
        free_keys(fb, b->n_forbids);
    }
    pt_buf_free(&d);
    return lines;
}
