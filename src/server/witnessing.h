/* witnessing.h — the server's witnessing thread: every new checkpoint of the policy and audit
 * logs goes to the witnesses the current policy names (tlog_cosign), off the request path, and
 * is republished with the cosignatures gathered (docs/tlog.md, "Witnesses").
 *
 * pt_witnessing_start runs one round at once (so a server whose logs are older than what a
 * witness cosigned does not start: PT_EVERIFY with the witness and sizes), then a thread polls
 * both logs every 50 ms and submits the newest checkpoint of a log that grew (one without a
 * quorum of cosignatures is tried again every 2 s). A witness that is down or slow delays only
 * the cosignatures (each request times out after 5 s); a witness
 * that holds a larger checkpoint stops that log's writer (tlog_stop), and audited requests are
 * then refused with 503. */
#ifndef PARITY_SERVER_WITNESSING_H
#define PARITY_SERVER_WITNESSING_H

#include "common/err.h"
#include "tlog/tlog.h"

typedef struct pt_witnessing pt_witnessing;

int pt_witnessing_start(pt_witnessing **out, tlog *policy_log, tlog *audit_log, const char *data_dir, pt_err *err);
/* Stops the thread (waits for a round in progress); NULL is a no-op. */
void pt_witnessing_stop(pt_witnessing *w);

#endif
