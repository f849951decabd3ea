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
 *   rate_limits      requests/minute, tokens/day, concurrent fine-tuning jobs as a ratio to the insiders'
 *                    (>= 1/1.2 parity, > 0 partial, no access gap)
 *   logprobs         log-probs when insiders have them; top-k cap ratio (>= 1/1.2 parity)
 *   prefill          prefill when insiders have it                        parity | gap | n/a
 *   elicitation      finetune (with >= 1 concurrent job), activations, interventions, weights
 *                    that insiders have: all parity, some partial, none gap
 *   uplift           insiders' effective serial speed over the organisation's (measure.h):
 *                    < 1.2x parity, else gap
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

/* The report at time `at` from revisions sorted by time (ascending; PT_EINVAL otherwise).
 * Returns a new JSON object (json_decref) or NULL with err (PT_EINVAL: no revision in force
 * at `at`; PT_ENOMEM). */
json_t *pt_gap_report(const pt_policy_revision *revs, size_t n, int64_t at, pt_err *err);

/* The same report with its measured section ("measured": measure.h's pt_gap_measured_json)
 * from the audit log fed to audit (NULL: "measured" is null, and no model counts as unserved):
 * the served-models declaration enters non_release, the measured latency and denials enter
 * uplift. */
struct pt_gap_meter;
json_t *pt_gap_report_measured(const pt_policy_revision *revs, size_t n, int64_t at, const struct pt_gap_meter *audit,
                               pt_err *err);

/* Renders a report as Markdown (a new string, caller frees; NULL on allocation failure). */
char *pt_gap_markdown(const json_t *report);

/* Business days (Monday to Friday) in [from, until). */
int64_t pt_gap_business_days(int64_t from, int64_t until);

#endif
