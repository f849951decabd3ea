/* gap.h — the parity report: how far outsiders' access is from insiders', per organisation
 * and model, measured from the history of the access policy.
 *
 * pt_gap_report() is a pure function of [(revision time, parsed policy)]: it does no I/O, so
 * it is tested on crafted histories; the CLI (`parity gap`) and the server feed it the
 * revisions of a verified transparency log. Its JSON is self-describing (it carries the
 * definitions of its dimensions, verdicts and thresholds) and is what /v1/parity serves.
 *
 * Dimensions, for each outside organisation (kind evaluator, researcher or public) x model,
 * against the union of the insiders' access in force at the same moment:
 *   non_release      any access at all                      parity | gap
 *   deployment_lag   days from insider_since to the org's first grant in force (from the
 *                    history; still counting when it has none)   <= 90 days parity, else gap
 *   safeguards       the unmitigated variant, when insiders have it        parity | gap | n/a
 *   rate_limits      requests/minute and tokens/day as a ratio to the insiders'
 *                    (>= 1/1.2 parity, > 0 partial, no access gap)
 *   elicitation      finetune, activations, interventions that insiders have: all parity,
 *                    some partial, none gap
 *   information      model_info when insiders have it                    parity | gap | n/a
 *   window           evaluators: the grant in force lasts >= 20 business days  (others n/a)
 * Per model: scope (outside organisations per access level, relative to what insiders can
 * reach) and timeliness (lag of the first outside organisation, <= 90 days).
 * Overall: gap if any dimension is a gap, partial if any is partial, else parity.
 */
#ifndef PARITY_GAP_GAP_H
#define PARITY_GAP_GAP_H

#include <stdint.h>

#include <jansson.h>

#include "common/err.h"
#include "policy/policy.h"

#define PT_GAP_MAX_LAG_DAYS 90
#define PT_GAP_PARITY_UPLIFT 1.2
#define PT_GAP_EVAL_WINDOW_BUSINESS_DAYS 20

typedef struct {
    int64_t time;              /* when the revision took effect (its log entry's time) */
    const pt_policy *policy;   /* borrowed */
    const char *digest;        /* "sha256:<hex>", may be NULL */
    uint64_t seq;              /* the revision's sequence number in the log */
} pt_gap_revision;

/* The one rule for which revision is in force at `at`, used by the report, `parity policy
 * explain --data` and pt_policy_in_force (history.h): the last of revs (log order, times not
 * decreasing) whose time is <= at. Returns its index, or n when none is in force yet (at is
 * before the first). *next (may be NULL) gets the time of the first revision dated after at
 * (when the answer next changes), INT64_MAX if there is none. */
size_t pt_gap_in_force(const pt_gap_revision *revs, size_t n, int64_t at, int64_t *next);

/* The report at time `at` from revisions sorted by time (ascending; PT_EINVAL otherwise).
 * Returns a new JSON object (json_decref) or NULL with err (PT_EINVAL: no revision in force
 * at `at`; PT_ENOMEM). */
json_t *pt_gap_report(const pt_gap_revision *revs, size_t n, int64_t at, pt_err *err);

/* Renders a report as Markdown (a new string, caller frees; NULL on allocation failure). */
char *pt_gap_markdown(const json_t *report);

/* Business days (Monday to Friday) in [from, until). */
int64_t pt_gap_business_days(int64_t from, int64_t until);

#endif
