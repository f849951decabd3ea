/* see policy.h — the lookup index and the deny-by-default decision.
 *
 * Why an index: a server decides on every request, and a policy may hold thousands of grants.
 * Grants are bucketed by (organisation, model) once at parse time (globs are expanded against
 * the fixed model list then), so a decision costs two binary searches over ids plus a walk of
 * the few grants of that one cell, independent of the policy's size. */
#include "policy/policy.h"
#include "policy/policy_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"

static int org_cmp(const void *a, const void *b, void *ctx) {
    const pt_policy *p = ctx;
    return strcmp(p->orgs[*(const uint32_t *)a].id, p->orgs[*(const uint32_t *)b].id);
}
static int model_cmp(const void *a, const void *b, void *ctx) {
    const pt_policy *p = ctx;
    return strcmp(p->models[*(const uint32_t *)a].id, p->models[*(const uint32_t *)b].id);
}

void pt_policy_index_free(pt_policy_index *ix) {
    if (!ix) return;
    free(ix->grant_off);
    free(ix->grant_ix);
    free(ix->forbid_off);
    free(ix->forbid_ix);
    free(ix->org_sorted);
    free(ix->model_sorted);
    free(ix);
}

static long linear_org(const pt_policy *p, const char *id) {
    for (size_t i = 0; i < p->n_orgs; i++)
        if (!strcmp(p->orgs[i].id, id)) return (long)i;
    return -1;
}

int pt_policy_build_index(pt_policy *p, pt_err *err) {
    size_t no = p->n_orgs, nm = p->n_models, cells;
    if (no > UINT32_MAX / 2 || nm > UINT32_MAX / 2 || pt_mul_size(no, nm, &cells) || cells > (size_t)1 << 28)
        return pt_errf(err, PT_ENOMEM, "policy: %zu organisations x %zu models is too many to index", no, nm);
    pt_policy_index *ix = calloc(1, sizeof *ix);
    if (!ix) return pt_errf(err, PT_ENOMEM, "policy: out of memory");
    ix->n_orgs = no;
    ix->n_models = nm;
    ix->grant_off = calloc(cells + 1, sizeof *ix->grant_off);
    ix->forbid_off = calloc(nm + 1, sizeof *ix->forbid_off);
    ix->org_sorted = malloc((no ? no : 1) * sizeof *ix->org_sorted);
    ix->model_sorted = malloc((nm ? nm : 1) * sizeof *ix->model_sorted);
    if (!ix->grant_off || !ix->forbid_off || !ix->org_sorted || !ix->model_sorted) goto nomem;
    /* Which models each grant covers: counted first, then filled (CSR). */
    size_t total = 0;
    long *gorg = malloc((p->n_grants ? p->n_grants : 1) * sizeof *gorg);
    if (!gorg) goto nomem;
    for (size_t g = 0; g < p->n_grants; g++) {
        gorg[g] = linear_org(p, p->grants[g].org);
        for (size_t m = 0; m < nm; m++)
            if (gorg[g] >= 0 && pt_policy_pattern_match(p->grants[g].model, p->models[m].id)) {
                ix->grant_off[(size_t)gorg[g] * nm + m + 1]++;
                total++;
            }
    }
    if (total > UINT32_MAX) {
        free(gorg);
        pt_policy_index_free(ix);
        return pt_errf(err, PT_ENOMEM, "policy: too many grant x model pairs to index");
    }
    for (size_t c = 0; c < cells; c++) ix->grant_off[c + 1] += ix->grant_off[c];
    ix->grant_ix = malloc((total ? total : 1) * sizeof *ix->grant_ix);
    uint32_t *fill = calloc(cells ? cells : 1, sizeof *fill);
    if (!ix->grant_ix || !fill) {
        free(gorg);
        free(fill);
        goto nomem;
    }
    for (size_t g = 0; g < p->n_grants; g++)
        for (size_t m = 0; m < nm; m++)
            if (gorg[g] >= 0 && pt_policy_pattern_match(p->grants[g].model, p->models[m].id)) {
                size_t c = (size_t)gorg[g] * nm + m;
                ix->grant_ix[ix->grant_off[c] + fill[c]++] = (uint32_t)g;
            }
    free(gorg);
    free(fill);
    /* Forbids by model. */
    size_t ftotal = 0;
    for (size_t f = 0; f < p->n_forbids; f++)
        for (size_t m = 0; m < nm; m++)
            if (pt_policy_pattern_match(p->forbids[f].model, p->models[m].id)) {
                ix->forbid_off[m + 1]++;
                ftotal++;
            }
    for (size_t m = 0; m < nm; m++) ix->forbid_off[m + 1] += ix->forbid_off[m];
    ix->forbid_ix = malloc((ftotal ? ftotal : 1) * sizeof *ix->forbid_ix);
    uint32_t *ffill = calloc(nm ? nm : 1, sizeof *ffill);
    if (!ix->forbid_ix || !ffill) {
        free(ffill);
        goto nomem;
    }
    for (size_t f = 0; f < p->n_forbids; f++)
        for (size_t m = 0; m < nm; m++)
            if (pt_policy_pattern_match(p->forbids[f].model, p->models[m].id))
                ix->forbid_ix[ix->forbid_off[m] + ffill[m]++] = (uint32_t)f;
    free(ffill);
    for (size_t i = 0; i < no; i++) ix->org_sorted[i] = (uint32_t)i;
    for (size_t i = 0; i < nm; i++) ix->model_sorted[i] = (uint32_t)i;
    qsort_r(ix->org_sorted, no, sizeof *ix->org_sorted, org_cmp, p);
    qsort_r(ix->model_sorted, nm, sizeof *ix->model_sorted, model_cmp, p);
    p->index = ix;
    return PT_OK;
nomem:
    pt_policy_index_free(ix);
    return pt_errf(err, PT_ENOMEM, "policy: out of memory building the index");
}

long pt_policy_org_ix(const pt_policy *p, const char *id) {
    const pt_policy_index *ix = p->index;
    size_t lo = 0, hi = ix->n_orgs;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = strcmp(id, p->orgs[ix->org_sorted[mid]].id);
        if (!c) return ix->org_sorted[mid];
        if (c < 0) hi = mid;
        else lo = mid + 1;
    }
    return -1;
}

long pt_policy_model_ix(const pt_policy *p, const char *id) {
    const pt_policy_index *ix = p->index;
    size_t lo = 0, hi = ix->n_models;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = strcmp(id, p->models[ix->model_sorted[mid]].id);
        if (!c) return ix->model_sorted[mid];
        if (c < 0) hi = mid;
        else lo = mid + 1;
    }
    return -1;
}

pt_usage pt_usage_none(void) { return (pt_usage){-1, -1, -1, -1}; }

const char *pt_reason_name(pt_reason r) {
    switch (r) {
    case PT_ALLOW: return "allow";
    case PT_DENY_UNKNOWN_ORG: return "unknown_organisation";
    case PT_DENY_UNKNOWN_MODEL: return "unknown_model";
    case PT_DENY_UNKNOWN_VARIANT: return "unknown_variant";
    case PT_DENY_NO_GRANT: return "no_grant";
    case PT_DENY_NOT_YET_OPEN: return "not_yet_open";
    case PT_DENY_EXPIRED: return "expired";
    case PT_DENY_FORBIDDEN: return "forbidden";
    case PT_DENY_CAPABILITY: return "capability_not_in_tier";
    case PT_DENY_LIMIT: return "limit_exceeded";
    }
    return "?";
}

/* How far a grant got: the reason with the highest rank is reported. */
static int rank(pt_reason r) {
    switch (r) {
    case PT_DENY_NO_GRANT: return 0;
    case PT_DENY_NOT_YET_OPEN:
    case PT_DENY_EXPIRED: return 1;
    case PT_DENY_CAPABILITY: return 2;
    case PT_DENY_LIMIT: return 3;
    default: return 4;
    }
}

static int in_window(int64_t at, int64_t from, int64_t until) { return at >= from && at < until; }

static void fmt_caps(pt_capset caps, char *out, size_t cap) {
    size_t n = 0;
    out[0] = 0;
    for (int i = 0; i < PT_CAP_COUNT; i++)
        if (caps & (1u << i)) n += (size_t)snprintf(out + n, n < cap ? cap - n : 0, "%s%s", n ? ", " : "", pt_cap_name((pt_cap)i));
    if (!caps) snprintf(out, cap, "nothing");
}

/* Checks usage against the effective limits; on failure writes which one into msg. */
static int limits_hold(const pt_limits *l, pt_cap cap, const pt_usage *u, char *msg, size_t mcap) {
    if (!u) return 1;
    if (l->requests_per_minute != PT_UNLIMITED && u->requests_last_minute >= 0 &&
        u->requests_last_minute >= l->requests_per_minute) {
        snprintf(msg, mcap, "requests_per_minute limit %lld reached (%lld this minute)",
                 (long long)l->requests_per_minute, (long long)u->requests_last_minute);
        return 0;
    }
    if (l->tokens_per_day != PT_UNLIMITED && u->tokens_today >= 0 && u->tokens_today >= l->tokens_per_day) {
        snprintf(msg, mcap, "tokens_per_day limit %lld reached (%lld today)", (long long)l->tokens_per_day,
                 (long long)u->tokens_today);
        return 0;
    }
    if (cap == PT_CAP_FINETUNE && l->concurrent_finetune_jobs != PT_UNLIMITED && u->running_finetune_jobs >= 0 &&
        u->running_finetune_jobs >= l->concurrent_finetune_jobs) {
        snprintf(msg, mcap, "concurrent_finetune_jobs limit %lld reached (%lld running)",
                 (long long)l->concurrent_finetune_jobs, (long long)u->running_finetune_jobs);
        return 0;
    }
    if (cap == PT_CAP_LOGPROBS && l->logprobs_top_k != PT_UNLIMITED && u->logprobs_top_k >= 0 &&
        u->logprobs_top_k > l->logprobs_top_k) {
        snprintf(msg, mcap, "logprobs_top_k is capped at %lld (%lld asked)", (long long)l->logprobs_top_k,
                 (long long)u->logprobs_top_k);
        return 0;
    }
    return 1;
}

void pt_policy_decide(const pt_policy *p, const char *org, const char *model, const char *variant, pt_cap cap,
                      int64_t at, const pt_usage *usage, pt_decision *d) {
    d->allow = 0;
    d->grant = NULL;
    d->forbid = NULL;
    d->message[0] = 0;
    char tbuf[21];
    if ((unsigned)cap >= PT_CAP_COUNT) {
        d->reason = PT_DENY_CAPABILITY;
        snprintf(d->message, sizeof d->message, "unknown capability");
        return;
    }
    long o = pt_policy_org_ix(p, org);
    if (o < 0) {
        d->reason = PT_DENY_UNKNOWN_ORG;
        snprintf(d->message, sizeof d->message, "organisation '%s' is not in the policy", org);
        return;
    }
    long m = pt_policy_model_ix(p, model);
    if (m < 0) {
        d->reason = PT_DENY_UNKNOWN_MODEL;
        snprintf(d->message, sizeof d->message, "model '%s' is not in the policy", model);
        return;
    }
    pt_capset need = 1u << cap;
    if (variant) {
        const pt_variant *v = pt_model_variant(&p->models[m], variant);
        if (!v) {
            d->reason = PT_DENY_UNKNOWN_VARIANT;
            snprintf(d->message, sizeof d->message, "model '%s' has no variant '%s'", model, variant);
            return;
        }
        if (v->unmitigated) need |= 1u << PT_CAP_UNMITIGATED;
    }
    const pt_policy_index *ix = p->index;
    for (uint32_t k = ix->forbid_off[m]; k < ix->forbid_off[m + 1]; k++) {
        const pt_forbid *f = &p->forbids[ix->forbid_ix[k]];
        if (f->org && strcmp(f->org, org)) continue;
        if (!(f->caps & need) || !in_window(at, f->from, f->until)) continue;
        d->reason = PT_DENY_FORBIDDEN;
        d->forbid = f;
        snprintf(d->message, sizeof d->message, "forbidden by rule %s%s%s", f->id, f->reason ? ": " : "",
                 f->reason ? f->reason : "");
        return;
    }
    size_t c = (size_t)o * ix->n_models + (size_t)m;
    pt_reason best = PT_DENY_NO_GRANT;
    const pt_grant *bestg = NULL;
    char msg[sizeof d->message];
    snprintf(d->message, sizeof d->message, "no grant gives organisation '%s' access to model '%s'", org, model);
    for (uint32_t k = ix->grant_off[c]; k < ix->grant_off[c + 1]; k++) {
        const pt_grant *g = &p->grants[ix->grant_ix[k]];
        pt_reason r;
        if (at < g->from) {
            r = PT_DENY_NOT_YET_OPEN;
            snprintf(msg, sizeof msg, "grant %s opens at %s", g->id, pt_format_time(g->from, tbuf));
        } else if (at >= g->until) {
            r = PT_DENY_EXPIRED;
            snprintf(msg, sizeof msg, "grant %s expired at %s", g->id, pt_format_time(g->until, tbuf));
        } else if ((g->caps & need) != need) {
            char have[256];
            fmt_caps(g->caps, have, sizeof have);
            r = PT_DENY_CAPABILITY;
            snprintf(msg, sizeof msg, "capability '%s' is not in grant %s (%s%s%s%s)",
                     pt_cap_name((g->caps & (1u << cap)) ? PT_CAP_UNMITIGATED : cap), g->id, g->tier ? "tier " : "",
                     g->tier ? g->tier : "", g->tier ? ": " : "", have);
        } else {
            /* Limits are budgets of (organisation, model), shared by all its grants in force. */
            pt_limits l;
            pt_policy_effective(p, org, model, at, NULL, &l);
            char lm[400];
            if (!limits_hold(&l, cap, usage, lm, sizeof lm)) {
                d->reason = PT_DENY_LIMIT;
                d->grant = g;
                snprintf(d->message, sizeof d->message, "grant %s allows it, but the %s", g->id, lm);
                return;
            }
            d->allow = 1;
            d->reason = PT_ALLOW;
            d->grant = g;
            char f[21], u[21];
            snprintf(d->message, sizeof d->message, "allowed by grant %s%s%s (window %s to %s)", g->id,
                     g->tier ? ", tier " : "", g->tier ? g->tier : "",
                     g->from == PT_TIME_MIN ? "always" : pt_format_time(g->from, f),
                     g->until == PT_TIME_MAX ? "open-ended" : pt_format_time(g->until, u));
            return;
        }
        if (rank(r) > rank(best)) {
            best = r;
            bestg = g;
            memcpy(d->message, msg, sizeof msg);
        }
    }
    d->reason = best;
    d->grant = bestg;
}

/* The most generous limit stated; a grant that states none does not lift the others'. */
static int64_t max_limit(int64_t a, int64_t b) {
    if (a == PT_UNLIMITED) return b;
    if (b == PT_UNLIMITED) return a;
    return a > b ? a : b;
}

static void later(int64_t t, int64_t at, int64_t *next) {
    if (t > at && t < *next) *next = t;
}

int64_t pt_policy_next_change(const pt_policy *p, int64_t at) {
    int64_t next = PT_TIME_MAX;
    for (size_t i = 0; i < p->n_grants; i++) later(p->grants[i].from, at, &next), later(p->grants[i].until, at, &next);
    for (size_t i = 0; i < p->n_forbids; i++) later(p->forbids[i].from, at, &next), later(p->forbids[i].until, at, &next);
    return next;
}

int pt_policy_effective(const pt_policy *p, const char *org, const char *model, int64_t at, pt_capset *caps,
                        pt_limits *limits) {
    pt_capset cs = 0;
    pt_limits l = {0, 0, 0, 0};
    int any = 0;
    long o = pt_policy_org_ix(p, org), m = pt_policy_model_ix(p, model);
    if (o >= 0 && m >= 0) {
        const pt_policy_index *ix = p->index;
        pt_capset forbidden = 0;
        for (uint32_t k = ix->forbid_off[m]; k < ix->forbid_off[m + 1]; k++) {
            const pt_forbid *f = &p->forbids[ix->forbid_ix[k]];
            if ((!f->org || !strcmp(f->org, org)) && in_window(at, f->from, f->until)) forbidden |= f->caps;
        }
        size_t c = (size_t)o * ix->n_models + (size_t)m;
        for (uint32_t k = ix->grant_off[c]; k < ix->grant_off[c + 1]; k++) {
            const pt_grant *g = &p->grants[ix->grant_ix[k]];
            if (!in_window(at, g->from, g->until) || !(g->caps & ~forbidden)) continue;
            cs |= g->caps & ~forbidden;
            if (!any) l = g->limits;
            else {
                l.requests_per_minute = max_limit(l.requests_per_minute, g->limits.requests_per_minute);
                l.tokens_per_day = max_limit(l.tokens_per_day, g->limits.tokens_per_day);
                l.concurrent_finetune_jobs = max_limit(l.concurrent_finetune_jobs, g->limits.concurrent_finetune_jobs);
                l.logprobs_top_k = max_limit(l.logprobs_top_k, g->limits.logprobs_top_k);
            }
            any = 1;
        }
    }
    if (caps) *caps = cs;
    if (limits) *limits = l;
    return any;
}

/* What each use is charged (docs/policy.md has the same table; tests/test_policy.c checks it).
 * k_from_request: the row is charged the request's k (the top-k asked, or the vocabulary size). */
static const struct {
    const char *name;
    int n;
    struct { pt_cap cap; int k_from_request; } rows[3];
} charges[PT_USE_COUNT] = {
    [PT_USE_CHAT] = {"chat", 1, {{PT_CAP_SAMPLE, 0}}},
    [PT_USE_COMPLETION] = {"completion", 2, {{PT_CAP_SAMPLE, 0}, {PT_CAP_PREFILL, 0}}},
    [PT_USE_TOP_LOGPROBS] = {"top_logprobs", 1, {{PT_CAP_LOGPROBS, 1}}},
    [PT_USE_READ] = {"read", 1, {{PT_CAP_ACTIVATIONS, 0}}},
    [PT_USE_READ_LOGITS] = {"read_logits", 3, {{PT_CAP_ACTIVATIONS, 0}, {PT_CAP_PREFILL, 0}, {PT_CAP_LOGPROBS, 1}}},
    [PT_USE_WRITE] = {"write", 1, {{PT_CAP_INTERVENTIONS, 0}}},
};

int pt_policy_charge(pt_use use, int64_t k, pt_charge out[PT_CHARGE_MAX]) {
    if ((unsigned)use >= PT_USE_COUNT) return 0;
    int n = charges[use].n;
    for (int i = 0; i < n; i++)
        out[i] = (pt_charge){charges[use].rows[i].cap, charges[use].rows[i].k_from_request ? k : -1};
    return n;
}

pt_use pt_policy_hook_use(const char *hook, int write) {
    if (write) return PT_USE_WRITE;
    return !strcmp(hook, "logits") ? PT_USE_READ_LOGITS : PT_USE_READ;
}

const char *pt_use_name(pt_use use) { return (unsigned)use < PT_USE_COUNT ? charges[use].name : NULL; }
