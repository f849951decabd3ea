/* cli.h — what the subcommands of `parity` share.
 *
 * Each subcommand lives in src/cli/cmd_NAME.c and defines
 *     int cmd_NAME(int argc, char **argv);     argv[0] is "NAME"
 *     const char cmd_NAME_summary[];           one line for `parity --help`
 * The build generates the dispatch table from the file names. A command returns its exit
 * status: 0 success, 1 failure (message printed), 2 usage error. Every command answers
 * --help (and -h) with its own usage on stdout and exit status 0.
 */
#ifndef PARITY_CLI_CLI_H
#define PARITY_CLI_CLI_H

#include <stdatomic.h>
#include <sys/types.h>

#include "common/err.h"

/* Prints "parity: MESSAGE" to stderr and returns 1. */
int cli_fail(const pt_err *err);
/* Prints "parity NAME: printf-message" to stderr and returns 2 (usage error). */
int cli_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* 1 if argv has -h or --help before any "--". */
int cli_wants_help(int argc, char **argv);

/* For long-running commands (serve, demo): installs SIGTERM/SIGINT handlers that set the
 * returned flag (graceful shutdown) and ignores SIGPIPE. */
atomic_int *cli_stop_flag(void);

/* Witnessing by the CLI writers (docs/tlog.md, "Witnesses"): submits t's latest checkpoint to
 * the witnesses of policy p (synchronously, with a timeout; nothing when it names none) and
 * republishes it with their cosignatures. Problems with single witnesses are printed as
 * warnings; returns 1 (message printed) when the writer must stop: a witness has cosigned a
 * larger checkpoint of this log (rolled back or forked). cli_witness_sync takes the witnesses
 * of the current policy in policy_log (DATA/log/policy). */
struct pt_policy;
struct tlog;
int cli_witness_policy(const struct pt_policy *p, struct tlog *t, const char *cmd);
int cli_witness_sync(struct tlog *policy_log, const char *data, struct tlog *t, const char *cmd);
/* The same for any log t under data, with the witnesses of the latest revision in the
 * published policy log DATA/log/policy (verified first; nothing, with a note on stderr, when
 * it holds no valid policy history: `parity log append` is a generic tool). */
int cli_witness_any(const char *data, struct tlog *t, const char *cmd);

/* The demo world's two witnesses: makes DATA/witnesses/w1 and w2 (once; each with its own key)
 * configured for the logs policy and audit, and starts each as a separate `parity witness
 * serve` process on 127.0.0.1:base_port+1 and +2 (pids[]). *section (caller frees) is the
 * policy's witnesses section naming them, quorum 2. cli_demo_witnesses_stop ends them. */
int cli_demo_witnesses(const char *data, int base_port, pid_t pids[2], char **section, pt_err *err);
void cli_demo_witnesses_stop(pid_t pids[2]);

#endif
