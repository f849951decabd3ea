/* Fuzz target: the parity report's meter (gap/measure.h), which reads the entries of any audit
 * log a verifier is pointed at. The input is split at newlines into entries, fed in order, then
 * summarised and measured against a small policy. Checks the contract: no crash, every request
 * counted in exactly one outcome, percentiles ordered. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gap/measure.h"

static const char policy[] =
    "version: 1\nlab: {id: l, name: Lab}\nmodels:\n  - {id: m, insider_since: 2026-01-05}\n"
    "organisations:\n  - {id: ins, name: Insiders, kind: insider}\n  - {id: ev, name: Evaluator, kind: evaluator}\n"
    "grants:\n  - {id: ins, organisation: ins, model: '*', tier: AL3}\n"
    "  - {id: ev, organisation: ev, model: m, tier: AL2, limits: {requests_per_minute: 10, tokens_per_day: 1000}}\n";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static pt_policy *p;
    if (!p && !(p = pt_policy_parse(policy, sizeof policy - 1, "fuzz", NULL))) abort();
    pt_gap_meter *m = pt_gap_meter_new();
    if (!m) return 0;
    for (size_t i = 0; i < size;) {
        const uint8_t *nl = memchr(data + i, '\n', size - i);
        size_t n = nl ? (size_t)(nl - (data + i)) : size - i;
        if (pt_gap_meter_add(m, data + i, n) != PT_OK) break;
        i += n + 1;
    }
    pt_gap_summary *s = pt_gap_summarise(m);
    for (int cls = 0; s && cls < PT_GAP_CLASSES; cls++) {
        pt_gap_class c = pt_gap_summary_class(s, "m", cls);
        if (c.served + c.denied + c.rate_limited + c.unavailable + c.other != c.requests) abort();
        if (c.latency_p50 > c.latency_p99 || c.queue_p50 > c.queue_p99) abort();
    }
    json_t *j = s ? pt_gap_measured_json(s, pt_gap_meter_entries(m), p, 1775000000) : NULL;
    json_decref(j);
    pt_gap_summary_free(s);
    pt_gap_meter_free(m);
    return 0;
}
