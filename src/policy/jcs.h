/* jcs.h — RFC 8785 JSON Canonicalization Scheme over jansson values.
 *
 * Object members sorted by their names' UTF-16 code units; strings with the minimal escaping
 * of ECMAScript's JSON.stringify (\" \\ \b \f \n \r \t, other controls as \u00xx); numbers as
 * ECMAScript's Number.prototype.toString (shortest round-trip digits). NaN and infinities are
 * errors.
 *
 * One deliberate deviation from RFC 8785 §3.2.2.3: a JSON integer (jansson's int64) is written
 * as its exact decimal digits. Up to 2^53 in magnitude that is exactly what the RFC writes;
 * beyond, the RFC would write the nearest double (9223372036854775807 → 9223372036854776000),
 * changing the value — a stored policy would then hold a limit its own parser rejects.
 * Reals (with a fraction or exponent) follow the RFC.
 */
#ifndef PARITY_POLICY_JCS_H
#define PARITY_POLICY_JCS_H

#include <jansson.h>

#include "common/buf.h"
#include "common/err.h"

/* Appends the canonical form of j to out. PT_OK, PT_EFORMAT (NaN, bad UTF-8), PT_ENOMEM. */
int pt_jcs_write(const json_t *j, pt_buf *out, pt_err *err);
/* The canonical form into a new string (caller frees). NULL with err on failure. */
char *pt_jcs_dumps(const json_t *j, size_t *len, pt_err *err);
/* Writes the ECMAScript shortest form of a finite double into out (at least 32 bytes).
 * Returns PT_OK or PT_EFORMAT for NaN/infinity. */
int pt_jcs_number(double v, char out[32]);

#endif
