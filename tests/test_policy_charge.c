/* The table of what each use of a model is charged (policy.h's pt_policy_charge, the table in
 * docs/policy.md), and the decisions it leads to under a grant with a log-probs cap. */
#include <string.h>

#include "policy/policy.h"
#include "test.h"

/* The capabilities a use is charged, as a set, and the top-k it charges logprobs with. */
static pt_capset caps_of(pt_use u, int64_t k, int64_t *k_out) {
    pt_charge rows[PT_CHARGE_MAX];
    int n = pt_policy_charge(u, k, rows);
    pt_capset cs = 0;
    *k_out = -1;
    for (int i = 0; i < n; i++) {
        cs |= 1u << rows[i].cap;
        if (rows[i].logprobs_top_k >= 0) *k_out = rows[i].logprobs_top_k;
    }
    return cs;
}

#define CAP(c) (1u << PT_CAP_##c)

static void test_table(void) {
    int64_t k;
    CHECK(caps_of(PT_USE_CHAT, -1, &k) == CAP(SAMPLE) && k == -1);
    CHECK(caps_of(PT_USE_COMPLETION, -1, &k) == (CAP(SAMPLE) | CAP(PREFILL)) && k == -1);
    CHECK(caps_of(PT_USE_TOP_LOGPROBS, 5, &k) == CAP(LOGPROBS) && k == 5);
    CHECK(caps_of(PT_USE_READ, -1, &k) == CAP(ACTIVATIONS) && k == -1);
    CHECK(caps_of(PT_USE_READ_LOGITS, 4096, &k) == (CAP(ACTIVATIONS) | CAP(PREFILL) | CAP(LOGPROBS)) && k == 4096);
    CHECK(caps_of(PT_USE_WRITE, -1, &k) == CAP(INTERVENTIONS) && k == -1);
    pt_charge rows[PT_CHARGE_MAX];
    CHECK(pt_policy_charge(PT_USE_COUNT, 1, rows) == 0);
    CHECK(pt_policy_hook_use("logits", 0) == PT_USE_READ_LOGITS);
    CHECK(pt_policy_hook_use("logits", 1) == PT_USE_WRITE);
    CHECK(pt_policy_hook_use("blocks.0.hook_resid_post", 0) == PT_USE_READ);
    CHECK(pt_policy_hook_use("ln_final.hook_normalized", 0) == PT_USE_READ);
    CHECK(!strcmp(pt_use_name(PT_USE_READ_LOGITS), "read_logits") && pt_use_name(PT_USE_COUNT) == NULL);
}

/* Every row of a use allowed, the way the server decides (srv_decide_use). */
static int allowed(const pt_policy *p, const char *org, pt_use u, int64_t k, pt_decision *d) {
    pt_charge rows[PT_CHARGE_MAX];
    int n = pt_policy_charge(u, k, rows);
    for (int i = 0; i < n; i++) {
        pt_usage us = pt_usage_none();
        us.logprobs_top_k = rows[i].logprobs_top_k;
        pt_policy_decide(p, org, "m", NULL, rows[i].cap, 0, &us, d);
        if (!d->allow) return 0;
    }
    return 1;
}

static void test_decisions(void) {
    static const char doc[] =
        "lab: {id: l, name: L}\n"
        "models: [{id: m, insider_since: 2026-01-01}]\n"
        "tiers: [{id: t, capabilities: [sample, logprobs, prefill, activations]},\n"
        "        {id: np, capabilities: [sample, activations]}]\n"
        "organisations: [{id: capped, name: C, kind: researcher}, {id: free, name: F, kind: evaluator},\n"
        "                {id: noprefill, name: N, kind: researcher}]\n"
        "grants:\n"
        "  - {organisation: capped, model: m, tier: t, limits: {logprobs_top_k: 3}}\n"
        "  - {organisation: free, model: m, tier: AL3}\n"
        "  - {organisation: noprefill, model: m, tier: np}\n";
    pt_err err;
    pt_policy *p = pt_policy_parse(doc, sizeof doc - 1, "charge.yaml", &err);
    CHECK(p != NULL);
    if (!p) return;
    pt_decision d;
    CHECK(allowed(p, "capped", PT_USE_TOP_LOGPROBS, 3, &d));
    CHECK(!allowed(p, "capped", PT_USE_TOP_LOGPROBS, 4, &d) && d.reason == PT_DENY_LIMIT);
    /* the logits hook is the whole vector: top-k = the vocabulary, over the cap */
    CHECK(!allowed(p, "capped", PT_USE_READ_LOGITS, 4096, &d) && d.reason == PT_DENY_LIMIT);
    CHECK(allowed(p, "capped", PT_USE_READ, -1, &d));
    CHECK(allowed(p, "free", PT_USE_READ_LOGITS, 4096, &d));
    /* a completion (or trace's generate) of raw text needs prefill */
    CHECK(allowed(p, "noprefill", PT_USE_CHAT, -1, &d));
    CHECK(!allowed(p, "noprefill", PT_USE_COMPLETION, -1, &d) && d.reason == PT_DENY_CAPABILITY);
    CHECK(!allowed(p, "noprefill", PT_USE_READ_LOGITS, 10, &d) && d.reason == PT_DENY_CAPABILITY);
    pt_policy_free(p);
}

int main(void) {
    test_table();
    test_decisions();
    return test_summary("test_policy_charge");
}
