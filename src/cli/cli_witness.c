/* cli_witness.c — the CLI writers' side of witnessing (see cli.h). */
#include <stdio.h>
#include <stdlib.h>

#include "cli/cli.h"
#include "policy/history.h"
#include "tlog/tlog.h"

#define CLI_WITNESS_TIMEOUT_S 10.0

int cli_witness_policy(const pt_policy *p, tlog *t, const char *cmd) {
    if (!p || !p->n_witnesses) return 0;
    tlog_witness ws[TLOG_MAX_WITNESSES];
    size_t n = p->n_witnesses < TLOG_MAX_WITNESSES ? p->n_witnesses : TLOG_MAX_WITNESSES;
    for (size_t i = 0; i < n; i++) ws[i] = (tlog_witness){p->witnesses[i].vkey, p->witnesses[i].url};
    tlog_cosigning r;
    pt_err err;
    if (tlog_cosign(t, ws, n, (size_t)p->witness_quorum, CLI_WITNESS_TIMEOUT_S, &r, &err)) {
        fprintf(stderr, "parity %s: %s\n", cmd, err.msg);
        return 1;
    }
    if (!r.published)
        fprintf(stderr, "parity %s: warning: checkpoint %s size %llu has %zu of the %lld cosignatures its policy needs "
                "(%s); it stays published without them until a later checkpoint is cosigned\n", cmd, tlog_origin(t),
                (unsigned long long)r.size, r.cosigned, (long long)p->witness_quorum, r.problems);
    else if (r.problems[0])
        fprintf(stderr, "parity %s: note: %s\n", cmd, r.problems);
    return 0;
}

int cli_witness_sync(tlog *policy_log, const char *data, tlog *t, const char *cmd) {
    pt_policy *p;
    pt_err err;
    if (pt_policy_current(policy_log, data, &p, NULL, NULL, &err)) return cli_fail(&err);
    int rc = cli_witness_policy(p, t, cmd);
    pt_policy_free(p);
    return rc;
}
