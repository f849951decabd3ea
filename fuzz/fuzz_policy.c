/* Fuzz target: the policy parser and validator (YAML and JSON), then everything that reads a
 * parsed policy: canonical form, re-parse of the canonical JSON, diff, a decision. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "policy/policy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    pt_err err;
    pt_policy *p = pt_policy_parse((const char *)data, size, "fuzz", &err);
    if (!p) return 0;
    char *c, digest[72];
    size_t n;
    if (pt_policy_canonical(p, &c, &n, digest, &err) == PT_OK) {
        pt_policy *q = pt_policy_parse(c, n, "canonical", &err);
        /* the canonical form of a valid policy must itself be valid */
        if (!q) abort();
        json_t *d = pt_policy_diff(p, q);
        if (json_array_size(d) != 0) abort();
        json_decref(d);
        pt_policy_free(q);
        free(c);
    }
    if (p->n_orgs && p->n_models) {
        pt_decision dec;
        pt_usage u = pt_usage_none();
        pt_policy_decide(p, p->orgs[0].id, p->models[0].id, NULL, PT_CAP_SAMPLE, 1770000000, &u, &dec);
        pt_policy_effective(p, p->orgs[0].id, p->models[0].id, 1770000000, NULL, NULL);
    }
    pt_policy_free(p);
    return 0;
}
