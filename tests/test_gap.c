/* The parity report on a crafted three-revision history: each dimension's verdict, the
 * deployment lag taken from the history (not just the current revision), the per-model
 * scope and timeliness, the history of verdicts, and the Markdown rendering. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "gap/gap.h"
#include "gap/measure.h"
#include "policy/policy.h"
#include "test.h"

#define HEAD                                                                                    \
    "version: 1\nlab: {id: l, name: Lab}\n"                                                     \
    "models:\n  - {id: m, insider_since: 2026-01-05, variants: [{id: mitigated}, {id: unmitigated}]}\n" \
    "  - {id: secret, insider_since: 2026-01-05}\n"                                             \
    "organisations:\n  - {id: ins, name: Insiders, kind: insider}\n"                            \
    "  - {id: ev, name: Evaluator, kind: evaluator}\n  - {id: rs, name: Researcher, kind: researcher}\n" \
    "grants:\n  - {id: ins, organisation: ins, model: '*', tier: AL3, limits: {requests_per_minute: 600, tokens_per_day: 1000000}}\n"

static const char rev1[] = HEAD;
static const char rev2[] = HEAD
    "  - {id: ev1, organisation: ev, model: m, tier: AL2, window: {from: 2026-03-01, until: 2026-03-10},"
    " limits: {requests_per_minute: 100, tokens_per_day: 1000000}}\n"
    "  - {id: rs1, organisation: rs, model: m, tier: AL1, window: {from: 2026-02-20}}\n";
static const char rev3[] = HEAD
    "  - {id: ev2, organisation: ev, model: m, tier: AL3, window: {from: 2026-06-01, until: 2026-12-31},"
    " limits: {requests_per_minute: 600, tokens_per_day: 1000000}}\n"
    "  - {id: rs1, organisation: rs, model: m, tier: AL1, window: {from: 2026-02-20}}\n";

static int64_t T(const char *s) {
    int64_t t = 0;
    pt_parse_time(s, &t, NULL);
    return t;
}

static json_t *pair(json_t *rep, const char *model, const char *org) {
    json_t *ms = json_object_get(rep, "models");
    for (size_t i = 0; i < json_array_size(ms); i++) {
        json_t *m = json_array_get(ms, i);
        if (strcmp(json_string_value(json_object_get(m, "id")), model)) continue;
        if (!org) return m;
        json_t *os = json_object_get(m, "organisations");
        for (size_t j = 0; j < json_array_size(os); j++)
            if (!strcmp(json_string_value(json_object_get(json_array_get(os, j), "organisation")), org))
                return json_array_get(os, j);
    }
    return NULL;
}

static const char *verdict(json_t *pr, const char *dimension) {
    const char *s = json_string_value(json_object_get(json_object_get(json_object_get(pr, "dimensions"), dimension), "verdict"));
    return s ? s : "(missing)";
}

static json_int_t lag_days(json_t *pr) {
    return json_integer_value(json_object_get(json_object_get(json_object_get(pr, "dimensions"), "deployment_lag"), "days"));
}

static void test_business_days(void) {
    CHECK(pt_gap_business_days(T("2026-03-02"), T("2026-03-09")) == 5);  /* Monday to Monday */
    CHECK(pt_gap_business_days(T("2026-03-01"), T("2026-03-10")) == 6);  /* Sunday to Tuesday */
    CHECK(pt_gap_business_days(T("2026-03-07"), T("2026-03-09")) == 0);  /* a weekend */
    CHECK(pt_gap_business_days(T("2026-01-01"), T("2027-01-01")) == 261);
    CHECK(pt_gap_business_days(T("2026-03-10"), T("2026-03-01")) == 0);
}

static void test_report_on_history(void) {
    pt_err err;
    pt_policy *p1 = pt_policy_parse(rev1, strlen(rev1), "rev1", &err);
    pt_policy *p2 = pt_policy_parse(rev2, strlen(rev2), "rev2", &err);
    pt_policy *p3 = pt_policy_parse(rev3, strlen(rev3), "rev3", &err);
    CHECK(p1 && p2 && p3);
    if (!p1 || !p2 || !p3) {
        fprintf(stderr, "%s\n", err.msg);
        return;
    }
    pt_policy_revision revs[3] = {{T("2026-01-05"), p1, "sha256:1", 0, 0, 0}, {T("2026-02-20"), p2, "sha256:2", 1, 0, 0},
                               {T("2026-06-01"), p3, "sha256:3", 2, 0, 0}};
    /* In March, under revision 2: the evaluator has a short grey-box window. */
    json_t *mar = pt_gap_report(revs, 3, T("2026-03-05"), &err);
    CHECK(mar != NULL);
    json_t *ev = pair(mar, "m", "ev");
    CHECK(ev != NULL);
    CHECK(!strcmp(verdict(ev, "non_release"), "parity"));
    CHECK(!strcmp(verdict(ev, "deployment_lag"), "parity"));
    CHECK(lag_days(ev) == 55);
    CHECK(!strcmp(verdict(ev, "safeguards"), "parity"));
    CHECK(!strcmp(verdict(ev, "rate_limits"), "partial")); /* 100/600 requests per minute */
    CHECK(!strcmp(verdict(ev, "elicitation"), "gap"));
    CHECK(!strcmp(verdict(ev, "information"), "parity"));
    CHECK(!strcmp(verdict(ev, "window"), "gap"));           /* 6 business days */
    CHECK(json_integer_value(json_object_get(json_object_get(json_object_get(ev, "dimensions"), "window"), "business_days")) == 6);
    CHECK(!strcmp(json_string_value(json_object_get(ev, "overall")), "gap"));
    CHECK(!strcmp(json_string_value(json_object_get(ev, "level")), "AL2"));
    json_decref(mar);

    /* In July, under revision 3. */
    json_t *rep = pt_gap_report(revs, 3, T("2026-07-01"), &err);
    CHECK(rep != NULL);
    if (!rep) return;
    ev = pair(rep, "m", "ev");
    json_t *rs = pair(rep, "m", "rs");
    CHECK(ev && rs);
    for (int k = 0; ev && k < 10; k++) {
        static const char *d[] = {"non_release", "deployment_lag", "safeguards", "rate_limits", "logprobs",
                                  "prefill",     "elicitation",    "information", "window",     "uplift"};
        if (strcmp(verdict(ev, d[k]), "parity")) fprintf(stderr, "ev %s: %s\n", d[k], verdict(ev, d[k]));
        CHECK(!strcmp(verdict(ev, d[k]), "parity"));
    }
    /* the lag comes from the history: first access was on 1 March, under revision 2 */
    CHECK(lag_days(ev) == 55);
    CHECK(!strcmp(json_string_value(json_object_get(ev, "level")), "AL3"));
    CHECK(!strcmp(verdict(rs, "non_release"), "parity"));
    CHECK(lag_days(rs) == 46);
    CHECK(!strcmp(verdict(rs, "safeguards"), "gap"));
    CHECK(!strcmp(verdict(rs, "elicitation"), "gap"));
    CHECK(!strcmp(verdict(rs, "window"), "n/a"));
    CHECK(!strcmp(verdict(rs, "rate_limits"), "parity")); /* no limit stated: not below the insiders' */
    CHECK(!strcmp(json_string_value(json_object_get(rs, "overall")), "gap"));
    /* history of the evaluator: no access (rev 0), then parity (rev 2); rev 1 changed no verdict */
    json_t *h = json_object_get(ev, "history");
    CHECK(json_array_size(h) == 2);
    CHECK(json_integer_value(json_object_get(json_array_get(h, 0), "revision")) == 0);
    CHECK(json_integer_value(json_object_get(json_array_get(h, 1), "revision")) == 2);
    CHECK(!strcmp(json_string_value(json_object_get(json_object_get(json_array_get(h, 0), "verdicts"), "non_release")), "gap"));
    /* the model nobody outside may use */
    json_t *sec = pair(rep, "secret", NULL);
    CHECK(sec != NULL);
    CHECK(!strcmp(json_string_value(json_object_get(json_object_get(sec, "timeliness"), "verdict")), "gap"));
    CHECK(json_integer_value(json_object_get(json_object_get(sec, "timeliness"), "days")) == 177);
    CHECK(!strcmp(json_string_value(json_object_get(json_object_get(sec, "scope"), "verdict")), "gap"));
    CHECK(!strcmp(verdict(pair(rep, "secret", "ev"), "non_release"), "gap"));
    json_t *m = pair(rep, "m", NULL);
    CHECK(!strcmp(json_string_value(json_object_get(json_object_get(m, "scope"), "verdict")), "parity"));
    CHECK(json_integer_value(json_object_get(json_object_get(json_object_get(m, "scope"), "organisations_per_level"), "AL3")) == 1);
    CHECK(json_integer_value(json_object_get(json_object_get(json_object_get(m, "scope"), "organisations_per_level"), "AL1")) == 1);
    CHECK(json_integer_value(json_object_get(json_object_get(m, "timeliness"), "days")) == 46);
    json_t *sum = json_object_get(rep, "summary");
    CHECK(json_integer_value(json_object_get(sum, "pairs")) == 4);
    CHECK(json_integer_value(json_object_get(sum, "parity")) == 1);
    CHECK(json_array_size(json_object_get(rep, "revisions")) == 3);
    CHECK(json_object_get(json_object_get(rep, "dimensions"), "deployment_lag") != NULL);
    /* crafted (unwitnessed) dates are the lab's own, and the report says so */
    CHECK(!strncmp(json_string_value(json_object_get(rep, "time_source")), "lab:", 4));
    CHECK(!strcmp(json_string_value(json_object_get(json_array_get(json_object_get(rep, "revisions"), 0), "time_source")), "lab"));
    char *md = pt_gap_markdown(rep);
    CHECK(md && strstr(md, "Dates: lab:"));
    CHECK(md && strstr(md, "| ev | evaluator | AL3 | parity | parity (55 d) |"));
    CHECK(md && strstr(md, "revision 2: ev:"));
    free(md);
    json_decref(rep);
    /* before the first revision there is nothing to report; out-of-order input is refused */
    CHECK(pt_gap_report(revs, 3, T("2025-12-01"), &err) == NULL && err.code == PT_EINVAL);
    pt_policy_revision bad[2] = {revs[1], revs[0]};
    CHECK(pt_gap_report(bad, 2, T("2026-07-01"), &err) == NULL && err.code == PT_EINVAL);
    /* witnessed dates: revision 2 stated 20 February but was witnessed on 10 April; the lag of
     * the evaluator's first access (a grant of revision 2) is measured from the witnessed date */
    pt_policy_revision wr[3] = {revs[0], revs[1], revs[2]};
    for (int i = 0; i < 3; i++) wr[i].witnessed = 1, wr[i].stated_time = wr[i].time;
    wr[1].time = T("2026-04-10");
    json_t *wrep = pt_gap_report(wr, 3, T("2026-07-01"), &err);
    CHECK(wrep != NULL);
    if (wrep) {
        CHECK(!strncmp(json_string_value(json_object_get(wrep, "time_source")), "witnesses", 9));
        json_t *r1 = json_array_get(json_object_get(wrep, "revisions"), 1);
        CHECK(!strcmp(json_string_value(json_object_get(r1, "time")), "2026-04-10T00:00:00Z"));
        CHECK(!strcmp(json_string_value(json_object_get(r1, "stated_time")), "2026-02-20T00:00:00Z"));
        CHECK(lag_days(pair(wrep, "m", "ev")) > 55);
        json_decref(wrep);
    }
    pt_policy_free(p1);
    pt_policy_free(p2);
    pt_policy_free(p3);
}

/* Issue 14's example: an outsider with everything but log-probs and prefill, a top-k cap of 1
 * and no concurrent fine-tuning job showed parity on every dimension. And a granted model the
 * server does not serve (its audit log's models_served entry does not list it) is not released. */
static const char example[] =
    "version: 1\nlab: {id: l, name: Lab}\n"
    "models:\n  - {id: m, insider_since: 2026-01-05, variants: [{id: mitigated}, {id: unmitigated}]}\n"
    "  - {id: ghost, insider_since: 2026-01-05}\n"
    "tiers:\n  - {id: no-lp, capabilities: [sample, activations, interventions, finetune, unmitigated, model_info]}\n"
    "organisations:\n  - {id: ins, name: Insiders, kind: insider}\n  - {id: ev, name: Evaluator, kind: evaluator}\n"
    "grants:\n  - {id: ins, organisation: ins, model: '*', tier: AL3}\n"
    "  - {id: ev, organisation: ev, model: '*', tier: no-lp, window: {from: 2026-01-05},"
    " limits: {logprobs_top_k: 1, concurrent_finetune_jobs: 0}}\n";

static void test_issue_example(void) {
    pt_err err;
    pt_policy *p = pt_policy_parse(example, strlen(example), "example", &err);
    CHECK(p != NULL);
    if (!p) {
        fprintf(stderr, "%s\n", err.msg);
        return;
    }
    pt_policy_revision revs[1] = {{T("2026-01-05"), p, "sha256:1", 1, 0, 0}};
    json_t *rep = pt_gap_report(revs, 1, T("2026-03-01"), &err);
    json_t *ev = pair(rep, "m", "ev");
    CHECK(ev != NULL);
    CHECK(!strcmp(verdict(ev, "logprobs"), "gap"));
    CHECK(!strcmp(verdict(ev, "prefill"), "gap"));
    CHECK(!strcmp(verdict(ev, "elicitation"), "partial")); /* finetune with 0 concurrent jobs */
    CHECK(!strcmp(json_string_value(json_object_get(ev, "overall")), "gap"));
    CHECK(!strcmp(verdict(pair(rep, "ghost", "ev"), "non_release"), "parity")); /* nothing measured: granted */
    CHECK(json_is_null(json_object_get(rep, "measured")));
    json_decref(rep);

    pt_gap_meter *m = pt_gap_meter_new();
    static const char *const entries[] = {
        "{\"type\":\"models_served\",\"time\":\"2026-01-05T00:00:00Z\",\"models\":[\"m\"]}",
        "{\"type\":\"request\",\"time\":\"2026-01-06T10:00:00Z\",\"org_class\":\"insider\",\"decision\":\"allow\","
        "\"model\":\"m\",\"capabilities\":[\"sample\"],\"status\":200,\"prompt_tokens\":10,\"completion_tokens\":10,"
        "\"latency_ms\":100,\"queue_ms\":0}",
        "{\"type\":\"request\",\"time\":\"2026-01-20T10:00:00Z\",\"org_class\":\"outsider\",\"decision\":\"allow\","
        "\"model\":\"m\",\"capabilities\":[\"sample\"],\"status\":200,\"prompt_tokens\":10,\"completion_tokens\":10,"
        "\"latency_ms\":300,\"queue_ms\":200}",
        "{\"type\":\"request\",\"time\":\"2026-01-20T10:01:00Z\",\"org_class\":\"outsider\",\"decision\":\"deny\","
        "\"model\":\"m\",\"capabilities\":[\"logprobs\"],\"reason\":\"capability_not_in_tier\",\"status\":403}",
        "{\"type\":\"request\",\"time\":\"2026-01-20T10:02:00Z\",\"org_class\":\"outsider\",\"decision\":\"deny\","
        "\"model\":\"m\",\"capabilities\":[\"sample\"],\"reason\":\"limit_exceeded\",\"status\":429}",
        "{\"type\":\"lost\",\"index\":5}", "not json"};
    for (size_t i = 0; m && i < sizeof entries / sizeof *entries; i++)
        CHECK(pt_gap_meter_add(m, (const uint8_t *)entries[i], strlen(entries[i])) == PT_OK);
    rep = m ? pt_gap_report_measured(revs, 1, T("2026-03-01"), m, &err) : NULL;
    CHECK(rep != NULL);
    CHECK(!strcmp(verdict(pair(rep, "ghost", "ev"), "non_release"), "gap")); /* granted, not served */
    CHECK(!strcmp(verdict(pair(rep, "m", "ev"), "non_release"), "parity"));
    json_t *meas = json_object_get(rep, "measured"), *mm = json_array_get(json_object_get(meas, "models"), 0);
    json_t *out = json_object_get(mm, "outsiders"), *in = json_object_get(mm, "insiders");
    CHECK(json_integer_value(json_object_get(meas, "entries")) == 7);
    CHECK(json_integer_value(json_object_get(out, "requests")) == 3 && json_integer_value(json_object_get(out, "served")) == 1);
    CHECK(json_integer_value(json_object_get(out, "denied")) == 1 && json_integer_value(json_object_get(out, "rate_limited")) == 1);
    CHECK(json_integer_value(json_object_get(json_object_get(out, "latency_ms"), "p50")) == 300);
    CHECK(json_integer_value(json_object_get(json_object_get(out, "queue_ms"), "p99")) == 200);
    CHECK(json_integer_value(json_object_get(out, "days_from_insider_since")) == 15);
    CHECK(json_integer_value(json_object_get(json_object_get(in, "tokens_per_day"), "max")) == 20);
    CHECK(json_integer_value(json_object_get(json_object_get(in, "capabilities_used"), "sample")) == 1);
    /* insiders 600 served/minute (100 ms, all served), outsiders 200 x 1/3 served: 9x */
    json_t *u = json_object_get(mm, "uplift");
    CHECK(json_is_real(json_object_get(u, "ratio")) && fabs(json_real_value(json_object_get(u, "ratio")) - 9.0) < 1e-9);
    CHECK(!strcmp(json_string_value(json_object_get(u, "verdict")), "gap"));
    CHECK(!strcmp(verdict(pair(rep, "m", "ev"), "uplift"), "gap"));
    json_t *ghost = json_array_get(json_object_get(meas, "models"), 1);
    CHECK(json_is_false(json_object_get(ghost, "served")));
    char *md = pt_gap_markdown(rep);
    CHECK(md && strstr(md, "| outsiders | 3 | 1 | 1 | 1 | 0 | 300 / 300 | 200 / 200 |"));
    free(md);
    json_decref(rep);
    pt_gap_meter_free(m);
    pt_policy_free(p);
}

/* The meter reads the server's entries with a strict scanner and gives up to jansson on anything
 * else: the same entries read either way (each also with an escaped string appended, which sends
 * it to jansson) give the same measurement, odd and hostile ones included. */
static void test_meter_readers(void) {
    static const char *const entries[] = {
        "{\"type\":\"request\",\"time\":\"2026-01-06T10:00:00Z\",\"org_class\":\"insider\",\"decision\":\"allow\","
        "\"model\":\"m\",\"capabilities\":[\"sample\",\"logprobs\",\"nope\"],\"status\":200,\"prompt_tokens\":7,"
        "\"completion_tokens\":3,\"latency_ms\":120,\"queue_ms\":5,\"x\":[1,{\"y\":[true,false,null,-0]}]}",
        " { \"type\" : \"request\" , \"org_class\":\"outsider\",\"decision\":\"deny\",\"model\":\"m\",\"status\":403 } ",
        "{\"type\":\"request\",\"org_class\":\"outsider\",\"decision\":\"allow\",\"model\":\"m\",\"status\":200.0}",
        "{\"type\":\"request\",\"org_class\":\"outsider\",\"decision\":\"allow\",\"model\":\"m\",\"status\":\"200\"}",
        "{\"type\":\"request\",\"org_class\":\"outsider\",\"model\":\"m\",\"model\":\"n\",\"decision\":\"allow\",\"status\":200}",
        "{\"type\":\"request\",\"org_class\":\"insider\",\"decision\":\"allow\",\"model\":\"m\",\"status\":200,"
        "\"latency_ms\":99999999999999999999}",
        "{\"type\":\"request\",\"org_class\":\"insider\",\"decision\":\"allow\",\"model\":\"m\",\"status\":200,"
        "\"capabilities\":null,\"latency_ms\":-4}",
        "{\"type\":\"request\",\"org_class\":\"insider\",\"decision\":\"allow\",\"model\":\"m\",\"status\":200} trailing",
        "{\"type\":\"request\",\"org_class\":\"insider\",\"decision\":\"allow\",\"model\":\"m\",\"status\":012}",
        "{\"type\":\"request\",\"org_class\":\"insider\",\"model\":\"m\u00e9\",\"decision\":\"allow\",\"status\":200}",
        "{\"type\":\"models_served\",\"models\":[\"m\"]}", "[1,2]", "{\"a\":[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]}",
        "{\"type\":\"request\"", ""};
    pt_gap_meter *a = pt_gap_meter_new(), *b = pt_gap_meter_new();
    CHECK(a && b);
    for (size_t i = 0; a && b && i < sizeof entries / sizeof *entries; i++) {
        const char *e = entries[i];
        size_t n = strlen(e);
        char slow[1024];
        const char *close = strrchr(e, '}');
        /* the same entry with an escaped member added before its last brace */
        int k = close && n < 900 ? snprintf(slow, sizeof slow, "%.*s,\"z\":\"\\u0041\"%s", (int)(close - e), e, close)
                                  : snprintf(slow, sizeof slow, "%s", e);
        CHECK(pt_gap_meter_add(a, (const uint8_t *)e, n) == PT_OK);
        CHECK(pt_gap_meter_add(b, (const uint8_t *)slow, (size_t)k) == PT_OK);
    }
    pt_err err;
    pt_policy *p = pt_policy_parse(example, strlen(example), "example", &err);
    pt_gap_summary *sa = a ? pt_gap_summarise(a) : NULL, *sb = b ? pt_gap_summarise(b) : NULL;
    json_t *ja = p && sa ? pt_gap_measured_json(sa, pt_gap_meter_entries(a), p, T("2026-03-01")) : NULL;
    json_t *jb = p && sb ? pt_gap_measured_json(sb, pt_gap_meter_entries(b), p, T("2026-03-01")) : NULL;
    CHECK(ja && jb && json_equal(ja, jb));
    json_t *in = json_object_get(json_array_get(json_object_get(ja, "models"), 0), "insiders");
    CHECK(json_integer_value(json_object_get(in, "served")) == 2); /* the first and the -4 ms one (jansson refuses a 20-digit integer, 012, trailing bytes) */
    CHECK(json_integer_value(json_object_get(json_object_get(in, "capabilities_used"), "logprobs")) == 1);
    if (ja && jb && !json_equal(ja, jb)) {
        char *x = json_dumps(ja, JSON_COMPACT), *y = json_dumps(jb, JSON_COMPACT);
        fprintf(stderr, "fast: %s\njansson: %s\n", x, y);
        free(x);
        free(y);
    }
    json_decref(ja);
    json_decref(jb);
    pt_gap_summary_free(sa);
    pt_gap_summary_free(sb);
    pt_gap_meter_free(a);
    pt_gap_meter_free(b);
    pt_policy_free(p);
}

int main(void) {
    test_business_days();
    test_meter_readers();
    test_report_on_history();
    test_issue_example();
    return test_summary("test_gap");
}
