/* Tests of the access policy: the bad-policy table (tests/data/policy/bad/NAME.{yaml,json} and
 * the exact message in NAME.expect), a decision table covering every reason, effective
 * limits, the decision index against a brute-force reference, canonical round trips and
 * the semantic diff. */
#include <dirent.h>
#include <fnmatch.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/fileio.h"
#include "common/sha256.h"
#include "common/util.h"
#include "policy/policy.h"
#include "test.h"

static char *src_path(const char *rel) {
    const char *src = getenv("PARITY_SRC");
    return pt_path_join(src ? src : "..", rel);
}

static void test_bad_policy_table(void) {
    char *dir = src_path("tests/data/policy/bad");
    DIR *d = opendir(dir);
    CHECK(d != NULL);
    int n = 0;
    struct dirent *de;
    while (d && (de = readdir(d))) {
        const char *name = de->d_name;
        size_t len = strlen(name);
        if (!(len > 5 && (!strcmp(name + len - 5, ".yaml") || !strcmp(name + len - 5, ".json")))) continue;
        char *path = pt_path_join(dir, name), *text, *exp;
        char expname[512];
        snprintf(expname, sizeof expname, "%.*s.expect", (int)(len - 5), name);
        char *exppath = pt_path_join(dir, expname);
        size_t tlen, elen;
        pt_err err;
        CHECK(pt_read_file(path, 1 << 20, &text, &tlen, &err) == PT_OK);
        if (pt_read_file(exppath, 1 << 20, &exp, &elen, &err)) {
            fprintf(stderr, "%s: missing %s\n", name, expname);
            CHECK(0);
            free(text);
            free(path);
            free(exppath);
            continue;
        }
        while (elen && (exp[elen - 1] == '\n' || exp[elen - 1] == '\r')) exp[--elen] = 0;
        pt_err_clear(&err);
        pt_policy *p = pt_policy_parse(text, tlen, name, &err);
        CHECK(p == NULL);
        CHECK(err.code == PT_EFORMAT);
        if (strcmp(err.msg, exp)) fprintf(stderr, "%s:\n  got      %s\n  expected %s\n", name, err.msg, exp);
        CHECK(!strcmp(err.msg, exp));
        pt_policy_free(p);
        free(text);
        free(exp);
        free(path);
        free(exppath);
        n++;
    }
    if (d) closedir(d);
    free(dir);
    CHECK(n >= 30);
}

static pt_policy *parse_str(const char *s) {
    pt_err err;
    pt_policy *p = pt_policy_parse(s, strlen(s), "inline", &err);
    if (!p) fprintf(stderr, "inline policy: %s\n", err.msg);
    return p;
}

static const char decision_policy[] =
    "version: 1\n"
    "lab: {id: t, name: Test lab}\n"
    "models:\n"
    "  - id: alpha\n"
    "    insider_since: 2026-01-01\n"
    "    variants: [{id: mitigated}, {id: unmitigated}]\n"
    "  - {id: beta-1, insider_since: 2026-01-01}\n"
    "  - {id: beta-2, insider_since: 2026-01-01}\n"
    "organisations:\n"
    "  - {id: ins, name: Insiders, kind: insider}\n"
    "  - {id: ev, name: Evaluator, kind: evaluator}\n"
    "  - {id: rs, name: Researcher, kind: researcher}\n"
    "  - {id: nobody, name: Nobody, kind: public}\n"
    "grants:\n"
    "  - {id: ins-all, organisation: ins, model: '*', tier: AL3}\n"
    "  - {id: ev-al2, organisation: ev, model: alpha, tier: AL2, window: {from: 2026-02-01, until: 2026-05-01},\n"
    "     limits: {requests_per_minute: 10, tokens_per_day: 1000, logprobs_top_k: 5}}\n"
    "  - {id: ev-ft, organisation: ev, model: alpha, capabilities: [finetune],\n"
    "     window: {from: 2026-02-01, until: 2026-05-01}, limits: {concurrent_finetune_jobs: 1}}\n"
    "  - {id: rs-beta, organisation: rs, model: 'beta-*', tier: AL1, window: {from: 2026-06-01}}\n"
    "  - {id: rs-old, organisation: rs, model: alpha, tier: AL1, window: {until: 2026-02-01}}\n"
    "forbids:\n"
    "  - {id: no-prefill-march, organisation: ev, model: alpha, capabilities: [prefill],\n"
    "     window: {from: 2026-03-01, until: 2026-04-01}, reason: incident review}\n";

typedef struct {
    const char *org, *model, *variant, *cap, *at;
    int64_t rpm_used, tokens_used, jobs, topk;
    pt_reason want;
    const char *grant;   /* expected grant (allowed by / got furthest), or NULL */
    const char *msg_has; /* a piece of the message */
} decision_case;

static void test_decision_table(void) {
    pt_policy *p = parse_str(decision_policy);
    CHECK(p != NULL);
    if (!p) return;
    static const decision_case cases[] = {
        {"ev", "alpha", NULL, "sample", "2026-03-15", -1, -1, -1, -1, PT_ALLOW, "ev-al2", "allowed by grant ev-al2, tier AL2"},
        {"ev", "alpha", NULL, "logprobs", "2026-03-15", -1, -1, -1, 5, PT_ALLOW, "ev-al2", NULL},
        {"ev", "alpha", NULL, "logprobs", "2026-03-15", -1, -1, -1, 6, PT_DENY_LIMIT, "ev-al2", "logprobs_top_k is capped at 5 (6 asked)"},
        {"ev", "alpha", NULL, "sample", "2026-03-15", 9, -1, -1, -1, PT_ALLOW, "ev-al2", NULL},
        {"ev", "alpha", NULL, "sample", "2026-03-15", 10, -1, -1, -1, PT_DENY_LIMIT, "ev-al2", "requests_per_minute limit 10 reached"},
        {"ev", "alpha", NULL, "sample", "2026-03-15", -1, 1000, -1, -1, PT_DENY_LIMIT, "ev-al2", "tokens_per_day limit 1000"},
        {"ev", "alpha", NULL, "finetune", "2026-03-15", -1, -1, 0, -1, PT_ALLOW, "ev-ft", NULL},
        {"ev", "alpha", NULL, "finetune", "2026-03-15", -1, -1, 1, -1, PT_DENY_LIMIT, "ev-ft", "concurrent_finetune_jobs limit 1"},
        {"ev", "alpha", NULL, "activations", "2026-03-15", -1, -1, -1, -1, PT_DENY_CAPABILITY, "ev-al2",
         "capability 'activations' is not in grant ev-al2 (tier AL2: sample, logprobs, prefill, unmitigated, model_info)"},
        {"ev", "alpha", NULL, "prefill", "2026-03-15", -1, -1, -1, -1, PT_DENY_FORBIDDEN, NULL,
         "forbidden by rule no-prefill-march: incident review"},
        {"ev", "alpha", NULL, "prefill", "2026-04-01", -1, -1, -1, -1, PT_ALLOW, "ev-al2", NULL},
        {"ev", "alpha", NULL, "sample", "2026-01-15", -1, -1, -1, -1, PT_DENY_NOT_YET_OPEN, "ev-al2", "opens at 2026-02-01T00:00:00Z"},
        {"ev", "alpha", NULL, "sample", "2026-05-01", -1, -1, -1, -1, PT_DENY_EXPIRED, "ev-al2", "expired at 2026-05-01T00:00:00Z"},
        {"ev", "alpha", NULL, "sample", "2026-04-30T23:59:59Z", -1, -1, -1, -1, PT_ALLOW, "ev-al2", NULL},
        {"ev", "beta-1", NULL, "sample", "2026-03-15", -1, -1, -1, -1, PT_DENY_NO_GRANT, NULL,
         "no grant gives organisation 'ev' access to model 'beta-1'"},
        {"nobody", "alpha", NULL, "model_info", "2026-03-15", -1, -1, -1, -1, PT_DENY_NO_GRANT, NULL, NULL},
        {"rs", "beta-2", NULL, "sample", "2026-05-31T23:59:59Z", -1, -1, -1, -1, PT_DENY_NOT_YET_OPEN, "rs-beta", NULL},
        {"rs", "beta-2", NULL, "sample", "2026-06-01", -1, -1, -1, -1, PT_ALLOW, "rs-beta", NULL},
        {"rs", "alpha", NULL, "sample", "2026-03-01", -1, -1, -1, -1, PT_DENY_EXPIRED, "rs-old", "expired at 2026-02-01"},
        {"rs", "alpha", "unmitigated", "sample", "2026-01-15", -1, -1, -1, -1, PT_DENY_CAPABILITY, "rs-old",
         "capability 'unmitigated' is not in grant rs-old"},
        {"rs", "alpha", "mitigated", "sample", "2026-01-15", -1, -1, -1, -1, PT_ALLOW, "rs-old", NULL},
        {"ev", "alpha", "unmitigated", "sample", "2026-03-15", -1, -1, -1, -1, PT_ALLOW, "ev-al2", NULL},
        {"ev", "alpha", "distilled", "sample", "2026-03-15", -1, -1, -1, -1, PT_DENY_UNKNOWN_VARIANT, NULL,
         "model 'alpha' has no variant 'distilled'"},
        {"ghost", "alpha", NULL, "sample", "2026-03-15", -1, -1, -1, -1, PT_DENY_UNKNOWN_ORG, NULL, "organisation 'ghost'"},
        {"ev", "gamma", NULL, "sample", "2026-03-15", -1, -1, -1, -1, PT_DENY_UNKNOWN_MODEL, NULL, "model 'gamma'"},
        {"ins", "beta-2", NULL, "weights", "2020-01-01", -1, -1, -1, -1, PT_ALLOW, "ins-all", "window always to open-ended"},
    };
    int seen[PT_DENY_LIMIT + 1] = {0};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const decision_case *c = &cases[i];
        int64_t at;
        CHECK(pt_parse_time(c->at, &at, NULL) == PT_OK);
        pt_usage u = {c->rpm_used, c->tokens_used, c->jobs, c->topk};
        pt_decision d;
        pt_policy_decide(p, c->org, c->model, c->variant, (pt_cap)pt_cap_parse(c->cap), at, &u, &d);
        int ok = d.reason == c->want && d.allow == (c->want == PT_ALLOW) &&
                 (c->grant ? d.grant && !strcmp(d.grant->id, c->grant) : d.grant == NULL) &&
                 (!c->msg_has || strstr(d.message, c->msg_has));
        if (!ok)
            fprintf(stderr, "case %zu (%s %s %s %s): got %s grant=%s msg=%s\n", i, c->org, c->model, c->cap, c->at,
                    pt_reason_name(d.reason), d.grant ? d.grant->id : "-", d.message);
        CHECK(ok);
        if (c->want == PT_DENY_FORBIDDEN) CHECK(d.forbid && !strcmp(d.forbid->id, "no-prefill-march"));
        seen[c->want] = 1;
    }
    for (int r = 0; r <= PT_DENY_LIMIT; r++) {
        if (!seen[r]) fprintf(stderr, "reason %s not covered\n", pt_reason_name((pt_reason)r));
        CHECK(seen[r]);
    }
    pt_policy_free(p);
}

static void test_effective_limits(void) {
    pt_policy *p = parse_str(decision_policy);
    if (!p) { CHECK(0); return; }
    int64_t at;
    pt_parse_time("2026-03-15", &at, NULL);
    pt_capset caps;
    pt_limits l;
    CHECK(pt_policy_effective(p, "ev", "alpha", at, &caps, &l) == 1);
    /* AL2 + finetune, minus prefill (forbidden in March). */
    pt_capset want = (1u << PT_CAP_SAMPLE) | (1u << PT_CAP_LOGPROBS) | (1u << PT_CAP_UNMITIGATED) |
                     (1u << PT_CAP_MODEL_INFO) | (1u << PT_CAP_FINETUNE);
    CHECK(caps == want);
    /* ev-ft states no rate limit: it does not lift ev-al2's. */
    CHECK(l.requests_per_minute == 10);
    CHECK(l.tokens_per_day == 1000);
    CHECK(l.concurrent_finetune_jobs == 1);
    CHECK(l.logprobs_top_k == 5);
    CHECK(pt_policy_effective(p, "ev", "beta-1", at, &caps, &l) == 0);
    CHECK(caps == 0);
    CHECK(pt_policy_effective(p, "ins", "beta-1", at, &caps, &l) == 1);
    CHECK(l.requests_per_minute == PT_UNLIMITED);
    CHECK(pt_policy_effective(p, "ghost", "alpha", at, NULL, NULL) == 0);
    pt_policy_free(p);
}

/* The reference decision: a linear scan of every grant with fnmatch, written independently
 * of the index (no limits). Compared on a generated policy with overlapping globs. */
static pt_reason reference_decide(const pt_policy *p, const char *org, const char *model, pt_cap cap, int64_t at) {
    if (!pt_policy_org(p, org)) return PT_DENY_UNKNOWN_ORG;
    if (!pt_policy_model(p, model)) return PT_DENY_UNKNOWN_MODEL;
    for (size_t i = 0; i < p->n_forbids; i++) {
        const pt_forbid *f = &p->forbids[i];
        if ((!f->org || !strcmp(f->org, org)) && (!f->model || !fnmatch(f->model, model, 0)) &&
            (f->caps & (1u << cap)) && at >= f->from && at < f->until)
            return PT_DENY_FORBIDDEN;
    }
    int best = 0; /* 0 none, 1 window, 2 capability */
    pt_reason br = PT_DENY_NO_GRANT;
    for (size_t i = 0; i < p->n_grants; i++) {
        const pt_grant *g = &p->grants[i];
        if (strcmp(g->org, org) || fnmatch(g->model, model, 0)) continue;
        if (at < g->from || at >= g->until) {
            if (best < 1) { best = 1; br = at < g->from ? PT_DENY_NOT_YET_OPEN : PT_DENY_EXPIRED; }
        } else if (!(g->caps & (1u << cap))) {
            if (best < 2) { best = 2; br = PT_DENY_CAPABILITY; }
        } else {
            return PT_ALLOW;
        }
    }
    return br;
}

static void test_index_matches_reference(void) {
    pt_buf b;
    pt_buf_init(&b, 1 << 24);
    pt_buf_puts(&b, "version: 1\nlab: {id: t, name: T}\nmodels:\n");
    for (int m = 0; m < 12; m++) pt_buf_printf(&b, "  - {id: fam%d-m%d, insider_since: 2026-01-01}\n", m % 3, m);
    pt_buf_puts(&b, "organisations:\n");
    for (int o = 0; o < 9; o++) pt_buf_printf(&b, "  - {id: org%d, name: O%d, kind: researcher}\n", o, o);
    pt_buf_puts(&b, "grants:\n");
    static const char *tiers[] = {"AL1", "AL2", "AL3"};
    unsigned seed = 12345;
    for (int g = 0; g < 300; g++) {
        seed = seed * 1103515245u + 12345u;
        unsigned r = seed >> 8;
        char model[32];
        if (r % 3 == 0) snprintf(model, sizeof model, "fam%u-*", (r >> 3) % 3);
        else if (r % 3 == 1) snprintf(model, sizeof model, "fam%u-m%u", ((r >> 5) % 12) % 3, (r >> 5) % 12);
        else snprintf(model, sizeof model, "*m%u", (r >> 7) % 10);
        pt_buf_printf(&b, "  - {organisation: org%u, model: '%s', tier: %s, window: {from: 2026-%02u-01, until: 2026-%02u-15}}\n",
                      (r >> 11) % 9, model, tiers[(r >> 14) % 3], 1 + (r >> 16) % 6, 6 + (r >> 19) % 6);
    }
    pt_buf_puts(&b, "forbids:\n  - {organisation: org3, model: 'fam1-*', capabilities: [logprobs]}\n  - {model: fam2-m5, window: {from: 2026-04-01, until: 2026-05-01}}\n");
    pt_policy *p = parse_str(b.data);
    pt_buf_free(&b);
    CHECK(p != NULL);
    if (!p) return;
    int mismatches = 0, allows = 0, total = 0;
    for (size_t o = 0; o < p->n_orgs; o++)
        for (size_t m = 0; m < p->n_models; m++)
            for (int c = 0; c < PT_CAP_COUNT; c++)
                for (int month = 1; month <= 12; month++) {
                    int64_t at;
                    char ts[16];
                    snprintf(ts, sizeof ts, "2026-%02d-10", month);
                    pt_parse_time(ts, &at, NULL);
                    pt_decision d;
                    pt_policy_decide(p, p->orgs[o].id, p->models[m].id, NULL, (pt_cap)c, at, NULL, &d);
                    pt_reason ref = reference_decide(p, p->orgs[o].id, p->models[m].id, (pt_cap)c, at);
                    /* the reference cannot tell which window reason comes first; compare classes */
                    int same = d.reason == ref || ((d.reason == PT_DENY_NOT_YET_OPEN || d.reason == PT_DENY_EXPIRED) &&
                                                   (ref == PT_DENY_NOT_YET_OPEN || ref == PT_DENY_EXPIRED));
                    mismatches += !same;
                    allows += d.allow;
                    total++;
                }
    CHECK(mismatches == 0);
    CHECK(allows > total / 20 && allows < total);
    pt_policy_free(p);
}

static void test_example_and_canonical_round_trip(void) {
    char *path = src_path("examples/policy.yaml");
    pt_err err;
    pt_policy *p = pt_policy_load(path, &err);
    if (!p) fprintf(stderr, "%s\n", err.msg);
    CHECK(p != NULL);
    free(path);
    if (!p) return;
    CHECK(pt_policy_model(p, "parity-demo") && pt_policy_model(p, "parity-demo-analog"));
    CHECK(!strcmp(pt_policy_model(p, "parity-demo-analog")->analog_of, "parity-demo"));
    char *c1, *c2, d1[72], d2[72];
    size_t n1, n2;
    CHECK(pt_policy_canonical(p, &c1, &n1, d1, &err) == PT_OK);
    /* The canonical JSON is itself a valid policy with the same canonical form. */
    pt_policy *q = pt_policy_parse(c1, n1, "canonical", &err);
    CHECK(q != NULL);
    if (q) {
        CHECK(pt_policy_canonical(q, &c2, &n2, d2, &err) == PT_OK);
        CHECK(n1 == n2 && !memcmp(c1, c2, n1));
        CHECK(!strcmp(d1, d2));
        json_t *diff = pt_policy_diff(p, q);
        CHECK(json_array_size(diff) == 0);
        json_decref(diff);
        free(c2);
        pt_policy_free(q);
    }
    CHECK(!strncmp(d1, "sha256:", 7) && strlen(d1) == 71);
    /* the digest is the SHA-256 of the canonical bytes */
    uint8_t h[32];
    char hex[65];
    pt_sha256(c1, n1, h);
    CHECK(!strcmp(d1 + 7, pt_hex(h, 32, hex)));
    free(c1);
    pt_policy_free(p);
}

static void test_yaml_and_json_same_digest(void) {
    const char *y = "# comment\nversion: 1\nlab: {name: L, id: l}\nmodels:\n  - id: m\n    insider_since: 2026-01-01T00:00:00+00:00\n"
                    "organisations:\n  - {id: o, name: O, kind: evaluator}\ngrants:\n  - organisation: o\n    model: m\n"
                    "    capabilities: [sample, logprobs]\n    limits: {requests_per_minute: 60}\n";
    const char *j = "{\"organisations\":[{\"kind\":\"evaluator\",\"name\":\"O\",\"id\":\"o\"}],\"version\":1,"
                    "\"models\":[{\"id\":\"m\",\"insider_since\":\"2026-01-01\"}],\"lab\":{\"id\":\"l\",\"name\":\"L\"},"
                    "\"grants\":[{\"limits\":{\"requests_per_minute\":60},\"capabilities\":[\"logprobs\",\"sample\"],"
                    "\"organisation\":\"o\",\"model\":\"m\"}]}";
    pt_policy *a = parse_str(y), *b = parse_str(j);
    CHECK(a && b);
    if (a && b) {
        char da[72], db[72];
        CHECK(pt_policy_canonical(a, NULL, NULL, da, NULL) == PT_OK);
        CHECK(pt_policy_canonical(b, NULL, NULL, db, NULL) == PT_OK);
        CHECK(!strcmp(da, db));
    }
    pt_policy_free(a);
    pt_policy_free(b);
}

static int has_line(json_t *lines, const char *want) {
    for (size_t i = 0; i < json_array_size(lines); i++)
        if (!strcmp(json_string_value(json_array_get(lines, i)), want)) return 1;
    fprintf(stderr, "missing diff line: %s\n  got:\n", want);
    for (size_t i = 0; i < json_array_size(lines); i++) fprintf(stderr, "    %s\n", json_string_value(json_array_get(lines, i)));
    return 0;
}

static void test_diff_cases(void) {
    const char *base = "version: 1\nlab: {id: l, name: L}\nmodels:\n  - {id: m, insider_since: 2026-01-01}\n"
                       "  - {id: n, insider_since: 2026-02-01}\n"
                       "organisations:\n  - {id: ev, name: E, kind: evaluator}\n  - {id: rs, name: R, kind: researcher}\n"
                       "grants:\n"
                       "  - {id: g1, organisation: ev, model: m, tier: AL1, window: {from: 2026-02-01, until: 2026-04-01},"
                       " limits: {requests_per_minute: 60}}\n"
                       "  - {organisation: rs, model: m, tier: AL2}\n"
                       "  - {id: g3, organisation: rs, model: n, tier: AL3}\n";
    const char *next = "version: 1\nlab: {id: l, name: L}\nmodels:\n  - {id: m, insider_since: 2026-01-01}\n"
                       "  - {id: k, insider_since: 2026-03-01, analog_of: m}\n"
                       "tiers:\n  - {id: AL1, capabilities: [sample, model_info, logprobs]}\n"
                       "organisations:\n  - {id: ev, name: E, kind: evaluator}\n  - {id: rs, name: R, kind: researcher}\n"
                       "  - {id: pub, name: Public, kind: public}\n"
                       "grants:\n"
                       "  - {id: g1, organisation: ev, model: m, tier: AL2, window: {from: 2026-02-01, until: 2026-06-01},"
                       " limits: {requests_per_minute: 120}}\n"
                       "  - {organisation: rs, model: m, tier: AL1}\n"
                       "  - {id: g4, organisation: pub, model: k, tier: AL1}\n"
                       "forbids:\n  - {id: f1, organisation: rs, capabilities: [prefill], model: m, reason: audit}\n";
    pt_policy *a = parse_str(base), *b = parse_str(next);
    CHECK(a && b);
    if (!a || !b) {
        pt_policy_free(a);
        pt_policy_free(b);
        return;
    }
    json_t *l = pt_policy_diff(a, b);
    CHECK(has_line(l, "model k added (insider since 2026-03-01T00:00:00Z, analog of m)"));
    CHECK(has_line(l, "model n removed"));
    CHECK(has_line(l, "tier AL1 widened: +logprobs"));
    CHECK(has_line(l, "organisation pub added (public, Public)"));
    CHECK(has_line(l, "organisation ev: grant g1 on m widened: +logprobs, +prefill, +unmitigated; tier AL1 -> AL2; "
                      "until 2026-04-01T00:00:00Z -> 2026-06-01T00:00:00Z; requests_per_minute 60 -> 120"));
    CHECK(has_line(l, "organisation rs: grant grants[1] on m narrowed: -prefill, -unmitigated; tier AL2 -> AL1"));
    CHECK(has_line(l, "organisation rs: grant g3 on n removed"));
    CHECK(has_line(l, "organisation pub: grant g4 on k added (AL1; window always to open-ended)"));
    CHECK(has_line(l, "forbid f1 added: rs on m: prefill (audit)"));
    json_t *r = pt_policy_diff(b, a);
    CHECK(has_line(r, "organisation ev: grant g1 on m narrowed: -logprobs, -prefill, -unmitigated; tier AL2 -> AL1; "
                      "until 2026-06-01T00:00:00Z -> 2026-04-01T00:00:00Z; requests_per_minute 120 -> 60"));
    CHECK(has_line(r, "forbid f1 removed"));
    CHECK(has_line(r, "organisation pub removed"));
    json_t *same = pt_policy_diff(a, a);
    CHECK(json_array_size(same) == 0);
    json_t *first = pt_policy_diff(NULL, a);
    CHECK(json_array_size(first) == 1);
    json_decref(l);
    json_decref(r);
    json_decref(same);
    json_decref(first);
    pt_policy_free(a);
    pt_policy_free(b);
}

int main(void) {
    test_bad_policy_table();
    test_decision_table();
    test_effective_limits();
    test_index_matches_reference();
    test_example_and_canonical_round_trip();
    test_yaml_and_json_same_digest();
    test_diff_cases();
    return test_summary("test_policy");
}
