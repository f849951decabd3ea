/* policy_internal.h — (module-internal) the lookup index built at parse time. */
#ifndef PARITY_POLICY_INTERNAL_H
#define PARITY_POLICY_INTERNAL_H

#include <stdint.h>

#include "policy/policy.h"

/* Grants by (organisation, model) and forbids by model, in CSR form: the grants of cell
 * c = org_index * n_models + model_index are grant_ix[grant_off[c] .. grant_off[c+1]), in
 * document order. Lookups by id go through the id-sorted permutations. */
struct pt_policy_index {
    size_t n_orgs, n_models;
    uint32_t *grant_off;  /* n_orgs * n_models + 1 */
    uint32_t *grant_ix;
    uint32_t *forbid_off; /* n_models + 1 */
    uint32_t *forbid_ix;
    uint32_t *org_sorted;   /* org indices sorted by id */
    uint32_t *model_sorted; /* model indices sorted by id */
};

int pt_policy_build_index(pt_policy *p, pt_err *err);
void pt_policy_index_free(pt_policy_index *ix);
/* Index of a model by id, or -1 (organisations: pt_policy_org_ix in policy.h). */
long pt_policy_model_ix(const pt_policy *p, const char *id);

#endif
