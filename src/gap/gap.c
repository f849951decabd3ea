/* see gap.h */
#include "gap/gap.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/util.h"
#include "gap/measure.h"

#define DAY 86400
#define CAP(x) (1u << PT_CAP_##x)
#define ELICITATION (CAP(FINETUNE) | CAP(ACTIVATIONS) | CAP(INTERVENTIONS) | CAP(WEIGHTS))

enum { V_NA = 0, V_PARITY, V_PARTIAL, V_GAP };
static const char *const vname[] = {"n/a", "parity", "partial", "gap"};
static const char *const dims[] = {"non_release", "deployment_lag", "safeguards", "rate_limits", "logprobs",
                                   "prefill", "elicitation", "information", "window", "uplift"};
enum { N_DIMS = 10 };

int64_t pt_gap_business_days(int64_t from, int64_t until) {
    if (until <= from) return 0;
    int64_t d0 = from / DAY - (from % DAY < 0), d1 = until / DAY - (until % DAY < 0);
    if (until % DAY) d1++; /* a partial last day counts */
    /* 1970-01-01 was a Thursday: weekday(d) = (d + 3) mod 7 with Monday = 0 */
    int64_t n = 0, full = (d1 - d0) / 7;
    n += full * 5;
    for (int64_t d = d0 + full * 7; d < d1; d++) {
        int64_t wd = ((d + 3) % 7 + 7) % 7;
        if (wd < 5) n++;
    }
    return n;
}

static const pt_policy *policy_at(const pt_policy_revision *revs, size_t n, int64_t t, size_t *ix) {
    size_t i = pt_policy_revision_in_force(revs, n, t, NULL);
    if (i == n) return NULL;
    if (ix) *ix = i;
    return revs[i].policy;
}

static json_t *caps_json(pt_capset caps) {
    json_t *a = json_array();
    for (int i = 0; i < PT_CAP_COUNT; i++)
        if (caps & (1u << i)) json_array_append_new(a, json_string(pt_cap_name((pt_cap)i)));
    return a;
}

static json_t *limit_json(int64_t v) { return v == PT_UNLIMITED ? json_null() : json_integer(v); }

static json_t *limits_json(const pt_limits *l) {
    json_t *o = json_object();
    json_object_set_new(o, "requests_per_minute", limit_json(l->requests_per_minute));
    json_object_set_new(o, "tokens_per_day", limit_json(l->tokens_per_day));
    json_object_set_new(o, "concurrent_finetune_jobs", limit_json(l->concurrent_finetune_jobs));
    json_object_set_new(o, "logprobs_top_k", limit_json(l->logprobs_top_k));
    return o;
}

static void set_time(json_t *o, const char *k, int64_t t) {
    char b[21];
    json_object_set_new(o, k, t == PT_TIME_MAX || t == PT_TIME_MIN ? json_null() : json_string(pt_format_time(t, b)));
}

/* The first moment <= at when org had a grant in force on model, over the history; or
 * PT_TIME_MAX. Within each revision's span the grants of that revision decide. */
static int64_t first_access(const pt_policy_revision *revs, size_t n, const char *org, const char *model, int64_t at) {
    for (size_t i = 0; i < n && revs[i].time <= at; i++) {
        int64_t start = revs[i].time, end = i + 1 < n && revs[i + 1].time <= at ? revs[i + 1].time : at + 1;
        const pt_policy *p = revs[i].policy;
        int64_t best = PT_TIME_MAX;
        for (size_t g = 0; g < p->n_grants; g++) {
            const pt_grant *gr = &p->grants[g];
            if (strcmp(gr->org, org) || !pt_policy_pattern_match(gr->model, model)) continue;
            int64_t s = gr->from > start ? gr->from : start;
            if (s < end && s < gr->until && s < best) best = s;
        }
        if (best != PT_TIME_MAX) return best;
    }
    return PT_TIME_MAX;
}

/* 1/r as a ratio of an outsider's limit to the insiders'. -1 means "no access". */
static double limit_ratio(int64_t outsider, int64_t insider) {
    if (insider == PT_UNLIMITED) return outsider == PT_UNLIMITED ? 1.0 : 0.0;
    if (outsider == PT_UNLIMITED) return 1.0;
    if (insider == 0) return 1.0;
    return (double)outsider / (double)insider;
}

static json_t *dim(int verdict, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static json_t *dim(int verdict, const char *fmt, ...) {
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    json_t *o = json_object();
    json_object_set_new(o, "verdict", json_string(vname[verdict]));
    json_object_set_new(o, "detail", json_string(buf));
    return o;
}

static int verdict_of(json_t *d) {
    const char *s = json_string_value(json_object_get(d, "verdict"));
    for (int v = 0; v < 4; v++)
        if (s && !strcmp(s, vname[v])) return v;
    return V_NA;
}

/* The highest predefined access level the capabilities reach, counting only what insiders
 * themselves can reach (a capability nobody has cannot be a gap). */
static const char *level_of(const pt_policy *p, pt_capset caps, pt_capset insider_caps, int any) {
    if (!any || !caps) return "none";
    static const char *const levels[] = {"AL3", "AL2", "AL1"};
    for (int i = 0; i < 3; i++) {
        const pt_tier *t = pt_policy_tier(p, levels[i]);
        if (t && ((t->caps & insider_caps) & ~caps) == 0) return levels[i];
    }
    return "below_AL1";
}

/* One organisation x model at time at. */
/* logprobs (the capability and its top-k cap) and prefill, against the insiders'. */
static void logprobs_prefill(json_t *d, pt_capset caps, const pt_limits *l, pt_capset icaps, const pt_limits *ilim) {
    if (!(icaps & CAP(LOGPROBS))) json_object_set_new(d, "logprobs", dim(V_NA, "insiders have no log-probs"));
    else if (!(caps & CAP(LOGPROBS))) json_object_set_new(d, "logprobs", dim(V_GAP, "no log-probs; insiders have them"));
    else {
        double r = limit_ratio(l->logprobs_top_k, ilim->logprobs_top_k);
        json_t *x = dim(r >= 1.0 / PT_GAP_PARITY_UPLIFT - 1e-12 ? V_PARITY : V_PARTIAL,
                        "log-probs, top-k cap %.2fx the insiders'%s", r,
                        ilim->logprobs_top_k == PT_UNLIMITED && l->logprobs_top_k != PT_UNLIMITED ? " (insiders have no cap)" : "");
        json_object_set_new(x, "top_k_ratio", json_real(r));
        json_object_set_new(d, "logprobs", x);
    }
    if (!(icaps & CAP(PREFILL))) json_object_set_new(d, "prefill", dim(V_NA, "insiders have no prefill"));
    else json_object_set_new(d, "prefill", caps & CAP(PREFILL) ? dim(V_PARITY, "prefill (raw prompts, completions)")
                                                                : dim(V_GAP, "no prefill; insiders have it"));
}

/* The uplift estimate for one outside organisation: insiders' effective serial speed over its
 * own (its limits, the outsiders' measured latency and denials; measure.h's pt_gap_speed). */
static json_t *uplift_dim(const pt_gap_summary *ms, const char *model, int any, const pt_limits *l, int iany,
                          const pt_limits *ilim) {
    double tpr = pt_gap_summary_tokens_per_request(ms, model);
    pt_gap_class ci = pt_gap_summary_class(ms, model, PT_GAP_INSIDERS), co = pt_gap_summary_class(ms, model, PT_GAP_OUTSIDERS);
    json_t *u = pt_gap_uplift_json(pt_gap_speed(iany, ilim, &ci, tpr), pt_gap_speed(any, l, &co, tpr));
    const char *v = json_string_value(json_object_get(u, "verdict"));
    json_t *r = json_object_get(u, "ratio");
    char detail[200];
    if (!strcmp(v, "n/a")) snprintf(detail, sizeof detail, "insiders have no access either");
    else if (json_is_real(r))
        snprintf(detail, sizeof detail, "insiders %.2fx as fast in series (parity below %.1fx)%s", json_real_value(r),
                 PT_GAP_PARITY_UPLIFT, ms ? "" : "; from limits only: no audit log measured");
    else snprintf(detail, sizeof detail, "%s", any ? "insiders unbounded, this organisation bounded" : "no access");
    json_object_set_new(u, "detail", json_string(detail));
    return u;
}

static json_t *pair_report(const pt_policy_revision *revs, size_t n, const pt_policy *p, const pt_org *o, const pt_pmodel *m,
                           int64_t at, pt_capset icaps, const pt_limits *ilim, const pt_gap_summary *ms,
                           int64_t *lag_days_out) {
    pt_capset caps;
    pt_limits l;
    int granted = pt_policy_effective(p, o->id, m->id, at, &caps, &l), served = pt_gap_summary_served(ms, m->id);
    int any = granted && served != 0, iany = icaps != 0 && served != 0;
    json_t *r = json_object(), *d = json_object();
    json_object_set_new(r, "organisation", json_string(o->id));
    json_object_set_new(r, "name", json_string(o->name));
    json_object_set_new(r, "kind", json_string(pt_org_kind_name(o->kind)));
    json_object_set_new(r, "access", json_boolean(any));
    json_object_set_new(r, "level", json_string(level_of(p, caps, icaps, any)));
    json_object_set_new(r, "capabilities", caps_json(caps));
    json_object_set_new(r, "limits", any ? limits_json(&l) : json_null());
    /* non-release */
    json_object_set_new(d, "non_release", any        ? dim(V_PARITY, served > 0 ? "has access; the server serves it" : "has access")
                                          : granted ? dim(V_GAP, "granted, but the server does not serve it (its models_served)")
                                                    : dim(V_GAP, "no grant in force"));
    /* deployment lag */
    int64_t first = first_access(revs, n, o->id, m->id, at);
    json_t *lag;
    int64_t lag_days;
    if (m->insider_since > at) {
        lag = dim(V_NA, "the model is not yet in use inside");
        lag_days = -1;
    } else if (first == PT_TIME_MAX) {
        lag_days = (at - m->insider_since) / DAY;
        lag = dim(lag_days <= PT_GAP_MAX_LAG_DAYS ? V_PARTIAL : V_GAP, "no access yet, %lld days after insiders",
                  (long long)lag_days);
        json_object_set_new(lag, "ongoing", json_true());
    } else {
        lag_days = first > m->insider_since ? (first - m->insider_since) / DAY : 0;
        lag = dim(lag_days <= PT_GAP_MAX_LAG_DAYS ? V_PARITY : V_GAP, "first access %lld days after insiders",
                  (long long)lag_days);
        json_object_set_new(lag, "ongoing", json_false());
        set_time(lag, "first_access", first);
    }
    json_object_set_new(lag, "days", lag_days >= 0 ? json_integer(lag_days) : json_null());
    json_object_set_new(d, "deployment_lag", lag);
    if (lag_days_out) *lag_days_out = first == PT_TIME_MAX ? -1 : lag_days;
    /* safeguards */
    if (!(icaps & CAP(UNMITIGATED))) json_object_set_new(d, "safeguards", dim(V_NA, "insiders do not use the unmitigated variant"));
    else if (caps & CAP(UNMITIGATED)) json_object_set_new(d, "safeguards", dim(V_PARITY, "unmitigated variant granted"));
    else json_object_set_new(d, "safeguards", dim(V_GAP, "only the mitigated variant; insiders have the unmitigated one"));
    /* rate limits */
    if (!any) {
        json_object_set_new(d, "rate_limits", dim(V_GAP, "no access"));
    } else {
        double rr = limit_ratio(l.requests_per_minute, ilim->requests_per_minute);
        double rt = limit_ratio(l.tokens_per_day, ilim->tokens_per_day);
        double rf = caps & icaps & CAP(FINETUNE) ? limit_ratio(l.concurrent_finetune_jobs, ilim->concurrent_finetune_jobs) : 1;
        double worst = rr < rt ? rr : rt;
        if (rf < worst) worst = rf;
        int v = worst >= 1.0 / PT_GAP_PARITY_UPLIFT - 1e-12 ? V_PARITY : worst > 0 ? V_PARTIAL : V_GAP;
        json_t *x = dim(v, "%.2fx the insiders' requests/minute, %.2fx their tokens/day%s", rr, rt,
                        (ilim->requests_per_minute == PT_UNLIMITED && l.requests_per_minute != PT_UNLIMITED) ||
                                (ilim->tokens_per_day == PT_UNLIMITED && l.tokens_per_day != PT_UNLIMITED)
                            ? " (insiders have no limit)"
                            : "");
        json_object_set_new(x, "requests_per_minute_ratio", json_real(rr));
        json_object_set_new(x, "tokens_per_day_ratio", json_real(rt));
        json_object_set_new(x, "concurrent_finetune_jobs_ratio", json_real(rf));
        json_object_set_new(d, "rate_limits", x);
    }
    logprobs_prefill(d, caps, &l, icaps, ilim);
    /* elicitation (fine-tuning with no concurrent job allowed is no fine-tuning) */
    pt_capset want = icaps & ELICITATION, missing = want & ~caps;
    if (l.concurrent_finetune_jobs == 0) missing |= want & CAP(FINETUNE);
    if (!want) json_object_set_new(d, "elicitation", dim(V_NA, "insiders use no elicitation technique"));
    else {
        pt_buf b;
        pt_buf_init(&b, 4096);
        for (int i = 0; i < PT_CAP_COUNT; i++)
            if (missing & (1u << i)) pt_buf_printf(&b, "%s%s", b.len ? ", " : "", pt_cap_name((pt_cap)i));
        json_t *x = !missing ? dim(V_PARITY, "all of the insiders' techniques")
                    : missing == want ? dim(V_GAP, "missing %s", b.data)
                                      : dim(V_PARTIAL, "missing %s", b.data);
        json_object_set_new(x, "missing", caps_json(missing));
        pt_buf_free(&b);
        json_object_set_new(d, "elicitation", x);
    }
    /* information */
    if (!(icaps & CAP(MODEL_INFO))) json_object_set_new(d, "information", dim(V_NA, "insiders have no model information"));
    else json_object_set_new(d, "information", caps & CAP(MODEL_INFO) ? dim(V_PARITY, "model card and data description")
                                                                          : dim(V_GAP, "no model information"));
    /* window (evaluators) */
    if (o->kind != PT_ORG_EVALUATOR) {
        json_object_set_new(d, "window", dim(V_NA, "only evaluators need a minimum window"));
    } else {
        int64_t best = -1;
        for (size_t g = 0; g < p->n_grants; g++) {
            const pt_grant *gr = &p->grants[g];
            if (strcmp(gr->org, o->id) || !pt_policy_pattern_match(gr->model, m->id)) continue;
            if (at < gr->from || at >= gr->until) continue;
            int64_t bd = gr->until == PT_TIME_MAX ? INT64_MAX
                                                  : pt_gap_business_days(gr->from == PT_TIME_MIN ? at : gr->from, gr->until);
            if (bd > best) best = bd;
        }
        json_t *x;
        if (best < 0) x = dim(V_GAP, "no grant in force");
        else if (best == INT64_MAX) x = dim(V_PARITY, "open-ended window");
        else x = dim(best >= PT_GAP_EVAL_WINDOW_BUSINESS_DAYS ? V_PARITY : V_GAP, "%lld business days (at least %d needed)",
                     (long long)best, PT_GAP_EVAL_WINDOW_BUSINESS_DAYS);
        json_object_set_new(x, "business_days", best < 0 ? json_null() : best == INT64_MAX ? json_null() : json_integer(best));
        json_object_set_new(d, "window", x);
    }
    json_t *u = uplift_dim(ms, m->id, any, &l, iany, ilim);
    const char *uv = json_string_value(json_object_get(u, "verdict"));
    json_object_set_new(u, "verdict", json_string(!strcmp(uv, "parity") ? vname[V_PARITY] : !strcmp(uv, "gap") ? vname[V_GAP] : vname[V_NA]));
    json_object_set_new(d, "uplift", u);
    int overall = V_PARITY;
    for (int k = 0; k < N_DIMS; k++) {
        int v = verdict_of(json_object_get(d, dims[k]));
        if (v > overall) overall = v;
    }
    json_object_set_new(r, "dimensions", d);
    json_object_set_new(r, "overall", json_string(vname[overall]));
    return r;
}

/* The snapshot at time t: per model, insiders, scope, timeliness and one entry per outside org. */
static json_t *snapshot(const pt_policy_revision *revs, size_t n, int64_t t, const pt_gap_summary *ms) {
    const pt_policy *p = policy_at(revs, n, t, NULL);
    json_t *models = json_array();
    if (!p) return models;
    for (size_t mi = 0; mi < p->n_models; mi++) {
        const pt_pmodel *m = &p->models[mi];
        pt_capset icaps;
        pt_limits ilim;
        int iany = pt_gap_class_access(p, m->id, t, PT_GAP_INSIDERS, &icaps, &ilim);
        json_t *mo = json_object(), *orgs = json_array(), *ins = json_object();
        json_object_set_new(mo, "id", json_string(m->id));
        set_time(mo, "insider_since", m->insider_since);
        set_time(mo, "public_since", m->public_since);
        json_object_set_new(mo, "analog_of", m->analog_of ? json_string(m->analog_of) : json_null());
        json_object_set_new(ins, "access", json_boolean(iany));
        json_object_set_new(ins, "capabilities", caps_json(icaps));
        json_object_set_new(ins, "limits", iany ? limits_json(&ilim) : json_null());
        json_object_set_new(mo, "insiders", ins);
        int counts[5] = {0}; /* AL3 AL2 AL1 below none */
        int64_t first_lag = -1;
        for (size_t oi = 0; oi < p->n_orgs; oi++) {
            const pt_org *o = &p->orgs[oi];
            if (o->kind == PT_ORG_INSIDER) continue;
            int64_t lag;
            json_t *pr = pair_report(revs, n, p, o, m, t, icaps, &ilim, ms, &lag);
            const char *lv = json_string_value(json_object_get(pr, "level"));
            counts[!strcmp(lv, "AL3") ? 0 : !strcmp(lv, "AL2") ? 1 : !strcmp(lv, "AL1") ? 2 : !strcmp(lv, "below_AL1") ? 3 : 4]++;
            if (lag >= 0 && (first_lag < 0 || lag < first_lag)) first_lag = lag;
            json_array_append_new(orgs, pr);
        }
        /* scope: does some outside organisation reach the insiders' own level? */
        const char *ilevel = level_of(p, icaps, icaps, iany);
        int reach = !strcmp(ilevel, "AL3") ? counts[0] : !strcmp(ilevel, "AL2") ? counts[0] + counts[1]
                                                       : !strcmp(ilevel, "AL1") ? counts[0] + counts[1] + counts[2] : 0;
        int with_access = counts[0] + counts[1] + counts[2] + counts[3];
        json_t *scope = dim(!iany ? V_NA : reach ? V_PARITY : with_access ? V_PARTIAL : V_GAP,
                            "%d outside organisations at the insiders' level (%s), %d with any access", reach, ilevel,
                            with_access);
        json_t *per = json_object();
        json_object_set_new(per, "AL3", json_integer(counts[0]));
        json_object_set_new(per, "AL2", json_integer(counts[1]));
        json_object_set_new(per, "AL1", json_integer(counts[2]));
        json_object_set_new(per, "below_AL1", json_integer(counts[3]));
        json_object_set_new(per, "none", json_integer(counts[4]));
        json_object_set_new(scope, "organisations_per_level", per);
        json_object_set_new(scope, "insiders_level", json_string(ilevel));
        json_object_set_new(mo, "scope", scope);
        json_t *tl;
        if (m->insider_since > t) tl = dim(V_NA, "the model is not yet in use inside");
        else if (first_lag < 0) {
            int64_t days = (t - m->insider_since) / DAY;
            tl = dim(days <= PT_GAP_MAX_LAG_DAYS ? V_PARTIAL : V_GAP, "no outside access yet, %lld days after insiders",
                     (long long)days);
            json_object_set_new(tl, "days", json_integer(days));
        } else {
            tl = dim(first_lag <= PT_GAP_MAX_LAG_DAYS ? V_PARITY : V_GAP,
                     "first outside access %lld days after insiders (goal: at most %d)", (long long)first_lag,
                     PT_GAP_MAX_LAG_DAYS);
            json_object_set_new(tl, "days", json_integer(first_lag));
        }
        json_object_set_new(mo, "timeliness", tl);
        json_object_set_new(mo, "organisations", orgs);
        json_array_append_new(models, mo);
    }
    return models;
}

static json_t *find_by(json_t *arr, const char *key, const char *val) {
    for (size_t i = 0; i < json_array_size(arr); i++) {
        json_t *x = json_array_get(arr, i);
        const char *s = json_string_value(json_object_get(x, key));
        if (s && !strcmp(s, val)) return x;
    }
    return NULL;
}

/* The verdicts of one organisation entry (or a model's scope/timeliness) as a flat object. */
static json_t *verdicts_of_pair(json_t *pr) {
    json_t *v = json_object(), *d = json_object_get(pr, "dimensions");
    for (int k = 0; k < N_DIMS; k++)
        json_object_set(v, dims[k], json_object_get(json_object_get(d, dims[k]), "verdict"));
    json_object_set(v, "overall", json_object_get(pr, "overall"));
    return v;
}

static json_t *verdicts_of_model(json_t *mo) {
    json_t *v = json_object();
    json_object_set(v, "scope", json_object_get(json_object_get(mo, "scope"), "verdict"));
    json_object_set(v, "timeliness", json_object_get(json_object_get(mo, "timeliness"), "verdict"));
    return v;
}

/* Appends {time, revision, verdicts, changed} to hist when verdicts differ from *last. */
static void push_history(json_t *hist, json_t **last, json_t *verdicts, int64_t t, const pt_policy_revision *rev) {
    if (*last && json_equal(*last, verdicts)) {
        json_decref(verdicts);
        return;
    }
    json_t *e = json_object(), *changed = json_array();
    set_time(e, "time", t);
    json_object_set_new(e, "revision", json_integer((json_int_t)rev->seq));
    json_object_set_new(e, "digest", rev->digest ? json_string(rev->digest) : json_null());
    const char *k;
    json_t *v;
    json_object_foreach(verdicts, k, v) {
        json_t *old = *last ? json_object_get(*last, k) : NULL;
        if (!old || !json_equal(old, v)) {
            char buf[160];
            snprintf(buf, sizeof buf, "%s: %s -> %s", k, old ? json_string_value(old) : "(none)", json_string_value(v));
            json_array_append_new(changed, json_string(buf));
        }
    }
    json_object_set(e, "verdicts", verdicts);
    json_object_set_new(e, "changed", changed);
    json_array_append_new(hist, e);
    json_decref(*last);
    *last = verdicts;
}

json_t *pt_gap_report(const pt_policy_revision *revs, size_t n, int64_t at, pt_err *err) {
    return pt_gap_report_measured(revs, n, at, NULL, err);
}

static json_t *report_at(const pt_policy_revision *revs, size_t n, int64_t at, const pt_gap_summary *ms, pt_err *err);

json_t *pt_gap_report_measured(const pt_policy_revision *revs, size_t n, int64_t at, const pt_gap_meter *audit,
                               pt_err *err) {
    pt_gap_summary *ms = NULL;
    if (audit && !(ms = pt_gap_summarise(audit))) {
        pt_errf(err, PT_ENOMEM, "gap: out of memory summarising the audit log");
        return NULL;
    }
    json_t *rep = report_at(revs, n, at, ms, err);
    if (rep && ms) {
        size_t cur = pt_policy_revision_in_force(revs, n, at, NULL);
        json_t *mj = pt_gap_measured_json(ms, pt_gap_meter_entries(audit), revs[cur].policy, at);
        json_object_set_new(rep, "measured", mj ? mj : json_null());
    } else if (rep) {
        json_object_set_new(rep, "measured", json_null());
    }
    pt_gap_summary_free(ms);
    return rep;
}

static json_t *report_at(const pt_policy_revision *revs, size_t n, int64_t at, const pt_gap_summary *ms, pt_err *err) {
    for (size_t i = 1; i < n; i++)
        if (revs[i].time < revs[i - 1].time) {
            pt_errf(err, PT_EINVAL, "gap: revisions are not in time order (revision %zu)", i);
            return NULL;
        }
    size_t cur;
    const pt_policy *p = policy_at(revs, n, at, &cur);
    if (!p) {
        pt_errf(err, PT_EINVAL, "gap: no policy revision is in force at the requested time");
        return NULL;
    }
    json_t *rep = json_object();
    char tb[21];
    json_object_set_new(rep, "report", json_string("parity-gap"));
    json_object_set_new(rep, "version", json_integer(1));
    json_object_set_new(rep, "at", json_string(pt_format_time(at, tb)));
    json_t *lab = json_object();
    json_object_set_new(lab, "id", json_string(p->lab_id));
    json_object_set_new(lab, "name", json_string(p->lab_name));
    json_object_set_new(rep, "lab", lab);
    json_t *revj = json_array();
    for (size_t i = 0; i < n && revs[i].time <= at; i++) {
        json_t *r = json_object();
        json_object_set_new(r, "seq", json_integer((json_int_t)revs[i].seq));
        set_time(r, "time", revs[i].time);
        /* the time source: witnesses' timestamps, or the lab's own clock */
        json_object_set_new(r, "time_source", json_string(revs[i].witnessed ? "witnesses" : "lab"));
        if (revs[i].witnessed && revs[i].stated_time != revs[i].time) set_time(r, "stated_time", revs[i].stated_time);
        json_object_set_new(r, "digest", revs[i].digest ? json_string(revs[i].digest) : json_null());
        json_array_append_new(revj, r);
    }
    json_object_set_new(rep, "revisions", revj);
    int all_witnessed = n > 0;
    for (size_t i = 0; i < n; i++) all_witnessed &= revs[i].witnessed;
    json_object_set_new(rep, "time_source",
                        json_string(all_witnessed ? "witnesses: each revision dated when a quorum of the policy's "
                                                    "witnesses had cosigned a checkpoint holding it"
                                                  : "lab: the times the lab's own log entries state (not witnessed)"));
    json_object_set_new(rep, "revision_in_force", json_integer((json_int_t)revs[cur].seq));
    json_t *th = json_object();
    json_object_set_new(th, "max_deployment_lag_days", json_integer(PT_GAP_MAX_LAG_DAYS));
    json_object_set_new(th, "parity_uplift", json_real(PT_GAP_PARITY_UPLIFT));
    json_object_set_new(th, "min_rate_limit_ratio", json_real(1.0 / PT_GAP_PARITY_UPLIFT));
    json_object_set_new(th, "min_evaluator_window_business_days", json_integer(PT_GAP_EVAL_WINDOW_BUSINESS_DAYS));
    json_object_set_new(rep, "thresholds", th);
    json_t *defs = json_object();
    json_object_set_new(defs, "non_release", json_string("the organisation has any access to the model at all, and the server serves it (the audit log's latest models_served entry, when measured)"));
    json_object_set_new(defs, "deployment_lag", json_string("days from the model's insider_since to the organisation's first grant in force, from the policy history"));
    json_object_set_new(defs, "safeguards", json_string("the unmitigated variant is granted when insiders use it"));
    json_object_set_new(defs, "rate_limits", json_string("requests per minute, tokens per day and concurrent fine-tuning jobs as a ratio to the insiders' (parity at >= 1/1.2)"));
    json_object_set_new(defs, "elicitation", json_string("fine-tuning (with at least one concurrent job), activations, interventions and weights that insiders have"));
    json_object_set_new(defs, "logprobs", json_string("log-probs when insiders have them, and their top-k cap as a ratio to the insiders' (parity at >= 1/1.2)"));
    json_object_set_new(defs, "prefill", json_string("prefill (raw prompts and completions) when insiders have it"));
    json_object_set_new(defs, "uplift", json_string("insiders' effective serial speed over the organisation's: f * min(60000 / p50 latency ms, requests_per_minute, tokens_per_day / 1440 / tokens per request), f the served share of the class's requests (docs/policy.md); parity below 1.2x"));
    json_object_set_new(defs, "information", json_string("model information (card, training data description) when insiders have it"));
    json_object_set_new(defs, "window", json_string("evaluators: the grant in force lasts at least 20 business days"));
    json_object_set_new(defs, "scope", json_string("per model: outside organisations per access level, relative to what insiders can reach"));
    json_object_set_new(defs, "timeliness", json_string("per model: lag of the first outside organisation (goal <= 90 days)"));
    json_object_set_new(rep, "dimensions", defs);
    json_t *vd = json_object();
    json_object_set_new(vd, "parity", json_string("outsiders' access matches the insiders' on this dimension"));
    json_object_set_new(vd, "partial", json_string("some access, short of the insiders'"));
    json_object_set_new(vd, "gap", json_string("outsiders lack what insiders have"));
    json_object_set_new(vd, "n/a", json_string("does not apply (insiders do not have it either, or not an evaluator)"));
    json_object_set_new(rep, "verdicts", vd);

    json_t *models = snapshot(revs, n, at, ms);
    /* History: the verdicts at every revision up to `at`, and at `at`, recorded when they change. */
    size_t nt = 0;
    while (nt < n && revs[nt].time <= at) nt++;
    json_t **snaps = calloc(nt + 1, sizeof *snaps);
    for (size_t i = 0; snaps && i < nt; i++) snaps[i] = snapshot(revs, n, revs[i].time, ms);
    int counts[4] = {0};
    for (size_t mi = 0; mi < json_array_size(models); mi++) {
        json_t *mo = json_array_get(models, mi);
        const char *mid = json_string_value(json_object_get(mo, "id"));
        json_t *mh = json_array(), *mlast = NULL;
        json_t *orgs = json_object_get(mo, "organisations");
        json_t **olast = calloc(json_array_size(orgs) + 1, sizeof *olast);
        json_t **ohist = calloc(json_array_size(orgs) + 1, sizeof *ohist);
        for (size_t oi = 0; oi < json_array_size(orgs); oi++) ohist[oi] = json_array();
        for (size_t s = 0; s <= nt; s++) {
            json_t *sm = s < nt ? (snaps ? find_by(snaps[s], "id", mid) : NULL) : mo;
            int64_t t = s < nt ? revs[s].time : at;
            const pt_policy_revision *rv = s < nt ? &revs[s] : &revs[cur];
            if (!sm) continue;
            push_history(mh, &mlast, verdicts_of_model(sm), t, rv);
            for (size_t oi = 0; oi < json_array_size(orgs); oi++) {
                const char *oid = json_string_value(json_object_get(json_array_get(orgs, oi), "organisation"));
                json_t *pr = find_by(json_object_get(sm, "organisations"), "organisation", oid);
                if (pr) push_history(ohist[oi], &olast[oi], verdicts_of_pair(pr), t, rv);
            }
        }
        for (size_t oi = 0; oi < json_array_size(orgs); oi++) {
            json_t *pr = json_array_get(orgs, oi);
            json_object_set_new(pr, "history", ohist[oi]);
            json_decref(olast[oi]);
            const char *ov = json_string_value(json_object_get(pr, "overall"));
            for (int v = 0; v < 4; v++)
                if (!strcmp(ov, vname[v])) counts[v]++;
        }
        free(olast);
        free(ohist);
        json_decref(mlast);
        json_object_set_new(mo, "history", mh);
    }
    for (size_t i = 0; snaps && i < nt; i++) json_decref(snaps[i]);
    free(snaps);
    json_object_set_new(rep, "models", models);
    json_t *sum = json_object();
    json_object_set_new(sum, "pairs", json_integer(counts[1] + counts[2] + counts[3]));
    json_object_set_new(sum, "parity", json_integer(counts[1]));
    json_object_set_new(sum, "partial", json_integer(counts[2]));
    json_object_set_new(sum, "gap", json_integer(counts[3]));
    json_object_set_new(rep, "summary", sum);
    return rep;
}

/* ---- Markdown ---- */

static const char *jstr(json_t *o, const char *k) {
    const char *s = json_string_value(json_object_get(o, k));
    return s ? s : "";
}

static void pct_cell(pt_buf *b, json_t *o) {
    json_t *p50 = json_object_get(o, "p50"), *p99 = json_object_get(o, "p99");
    if (json_is_integer(p50)) pt_buf_printf(b, " %lld / %lld |", (long long)json_integer_value(p50), (long long)json_integer_value(p99));
    else pt_buf_puts(b, " - |");
}

/* The measured section's table for one model. */
static void measured_markdown(pt_buf *b, json_t *meas, const char *model) {
    json_t *mo = find_by(json_object_get(meas, "models"), "id", model);
    if (!mo) return;
    json_t *served = json_object_get(mo, "served"), *u = json_object_get(mo, "uplift");
    pt_buf_printf(b, "Measured from the audit log (%lld entries): %s.\n\n",
                  (long long)json_integer_value(json_object_get(meas, "entries")),
                  json_is_null(served) ? "no models_served declaration" : json_is_true(served) ? "served" : "**not served**");
    pt_buf_puts(b, "| class | requests | served | denied | rate-limited | unavailable | latency p50 / p99 ms | queue p50 / p99 ms | tokens/day max (limit) | first served (days after insiders) | capabilities used |\n");
    pt_buf_puts(b, "|---|---|---|---|---|---|---|---|---|---|---|\n");
    static const char *const cls[] = {"insiders", "outsiders"};
    for (int i = 0; i < 2; i++) {
        json_t *c = json_object_get(mo, cls[i]), *td = json_object_get(c, "tokens_per_day");
        pt_buf_printf(b, "| %s | %lld | %lld | %lld | %lld | %lld |", cls[i], (long long)json_integer_value(json_object_get(c, "requests")),
                      (long long)json_integer_value(json_object_get(c, "served")), (long long)json_integer_value(json_object_get(c, "denied")),
                      (long long)json_integer_value(json_object_get(c, "rate_limited")),
                      (long long)json_integer_value(json_object_get(c, "unavailable")));
        pct_cell(b, json_object_get(c, "latency_ms"));
        pct_cell(b, json_object_get(c, "queue_ms"));
        pt_buf_printf(b, " %lld", (long long)json_integer_value(json_object_get(td, "max")));
        if (json_is_integer(json_object_get(td, "limit"))) pt_buf_printf(b, " (%lld)", (long long)json_integer_value(json_object_get(td, "limit")));
        json_t *fd = json_object_get(c, "days_from_insider_since");
        if (json_is_integer(fd)) pt_buf_printf(b, " | %s (%lld) |", jstr(c, "first_served"), (long long)json_integer_value(fd));
        else pt_buf_puts(b, " | - |");
        const char *k;
        json_t *v;
        int first = 1;
        json_object_foreach(json_object_get(c, "capabilities_used"), k, v) {
            pt_buf_printf(b, "%s %s %lld", first ? "" : ",", k, (long long)json_integer_value(v));
            first = 0;
        }
        pt_buf_puts(b, " |\n");
    }
    json_t *r = json_object_get(u, "ratio");
    if (json_is_real(r)) pt_buf_printf(b, "\nUplift estimate: insiders %.2fx as fast in series as the best outsider: **%s**.\n\n", json_real_value(r), jstr(u, "verdict"));
    else pt_buf_printf(b, "\nUplift estimate: %s: **%s**.\n\n", json_is_string(r) ? "outsiders have no served access" : "insiders have no access", jstr(u, "verdict"));
}

char *pt_gap_markdown(const json_t *report) {
    json_t *r = (json_t *)report;
    pt_buf b;
    pt_buf_init(&b, (size_t)1 << 28);
    json_t *lab = json_object_get(r, "lab"), *sum = json_object_get(r, "summary");
    pt_buf_printf(&b, "# Model access parity report: %s\n\n", jstr(lab, "name"));
    pt_buf_printf(&b, "At %s, policy revision %lld of %zu. Outside organisation x model pairs: %lld at parity, %lld partial, %lld with a gap.\n\n",
                  jstr(r, "at"), (long long)json_integer_value(json_object_get(r, "revision_in_force")),
                  json_array_size(json_object_get(r, "revisions")), (long long)json_integer_value(json_object_get(sum, "parity")),
                  (long long)json_integer_value(json_object_get(sum, "partial")),
                  (long long)json_integer_value(json_object_get(sum, "gap")));
    if (json_is_string(json_object_get(r, "time_source"))) pt_buf_printf(&b, "Dates: %s.\n\n", jstr(r, "time_source"));
    json_t *models = json_object_get(r, "models");
    for (size_t mi = 0; mi < json_array_size(models); mi++) {
        json_t *mo = json_array_get(models, mi);
        pt_buf_printf(&b, "## %s\n\n", jstr(mo, "id"));
        if (json_is_string(json_object_get(mo, "analog_of"))) pt_buf_printf(&b, "Analog of %s. ", jstr(mo, "analog_of"));
        pt_buf_printf(&b, "Insiders since %s.\n\n", jstr(mo, "insider_since"));
        json_t *sc = json_object_get(mo, "scope"), *tl = json_object_get(mo, "timeliness");
        pt_buf_printf(&b, "- **Scope**: %s — %s\n- **Timeliness**: %s — %s\n\n", jstr(sc, "verdict"), jstr(sc, "detail"),
                      jstr(tl, "verdict"), jstr(tl, "detail"));
        pt_buf_puts(&b, "| organisation | kind | level | non-release | lag | safeguards | rate limits | log-probs | prefill | elicitation | information | window | uplift | overall |\n");
        pt_buf_puts(&b, "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
        json_t *orgs = json_object_get(mo, "organisations");
        for (size_t oi = 0; oi < json_array_size(orgs); oi++) {
            json_t *pr = json_array_get(orgs, oi), *d = json_object_get(pr, "dimensions");
            pt_buf_printf(&b, "| %s | %s | %s |", jstr(pr, "organisation"), jstr(pr, "kind"), jstr(pr, "level"));
            for (int k = 0; k < N_DIMS; k++) {
                json_t *x = json_object_get(d, dims[k]);
                if (k == N_DIMS - 1 && json_is_real(json_object_get(x, "ratio")))
                    pt_buf_printf(&b, " %s (%.2fx) |", jstr(x, "verdict"), json_real_value(json_object_get(x, "ratio")));
                else if (k == 1 && json_is_integer(json_object_get(x, "days")))
                    pt_buf_printf(&b, " %s (%lld d) |", jstr(x, "verdict"), (long long)json_integer_value(json_object_get(x, "days")));
                else pt_buf_printf(&b, " %s |", jstr(x, "verdict"));
            }
            pt_buf_printf(&b, " **%s** |\n", jstr(pr, "overall"));
        }
        pt_buf_puts(&b, "\nChanges across revisions:\n\n");
        for (size_t oi = 0; oi < json_array_size(orgs); oi++) {
            json_t *pr = json_array_get(orgs, oi), *h = json_object_get(pr, "history");
            for (size_t i = 0; i < json_array_size(h); i++) {
                json_t *e = json_array_get(h, i), *ch = json_object_get(e, "changed");
                if (i == 0) continue; /* the first entry is the starting point */
                pt_buf_printf(&b, "- %s, revision %lld: %s:", jstr(e, "time"), (long long)json_integer_value(json_object_get(e, "revision")),
                              jstr(pr, "organisation"));
                for (size_t c = 0; c < json_array_size(ch); c++)
                    pt_buf_printf(&b, "%s %s", c ? ";" : "", json_string_value(json_array_get(ch, c)));
                pt_buf_puts(&b, "\n");
            }
        }
        pt_buf_puts(&b, "\n");
        measured_markdown(&b, json_object_get(r, "measured"), jstr(mo, "id"));
    }
    return pt_buf_steal(&b, NULL);
}
