/* cli_witness.c — the CLI writers' side of witnessing (see cli.h). */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli/cli.h"
#include "common/buf.h"
#include "common/fileio.h"
#include "policy/history.h"
#include "tlog/tlog.h"
#include "tlog/witness.h"

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

int cli_witness_any(const char *data, tlog *t, const char *cmd) {
    char *vkey = NULL, *src = pt_path_join(data, "log/policy");
    pt_err err;
    int rc = 0;
    pt_policy_history *h = NULL;
    if (src && pt_exists(src) && tlog_read_vkey(data, "policy", &vkey, NULL) == PT_OK) {
        /* a generic tool: a policy log that is no valid history (raw entries) names no witnesses */
        if (pt_policy_history_load(src, vkey, NULL, &h, &err))
            fprintf(stderr, "parity %s: note: no witnesses: the policy log gives no current policy (%s)\n", cmd, err.msg);
        else if (h->n) rc = cli_witness_policy(h->revs[h->n - 1].policy, t, cmd);
    }
    pt_policy_history_free(h);
    free(vkey);
    free(src);
    return rc;
}

/* ---- the demo world's two witnesses ------------------------------------------------------ */

/* Makes the witness in dir (once) and tells it about the logs policy and audit of data. */
static int demo_witness_setup(const char *data, const char *dir, const char *name, pt_err *err) {
    char *kp = pt_path_join(dir, "witness.key");
    int rc = kp && pt_exists(kp) ? PT_OK : witness_init(dir, name, NULL, err);
    free(kp);
    static const char *const logs[] = {"policy", "audit"};
    for (int i = 0; i < 2 && !rc; i++) {
        char *vk = NULL;
        if (tlog_read_vkey(data, logs[i], &vk, NULL) != PT_OK) { /* a new world: make the log and its key */
            tlog *t;
            if ((rc = tlog_open(data, logs[i], NULL, &t, err))) break;
            tlog_close(t);
            if ((rc = tlog_read_vkey(data, logs[i], &vk, err))) break;
        }
        char *plus = strchr(vk, '+'), *origin = strndup(vk, (size_t)(plus - vk));
        rc = origin ? witness_add_log(dir, origin, vk, err) : pt_errf(err, PT_ENOMEM, "out of memory");
        free(origin);
        free(vk);
    }
    return rc;
}

/* Waits (up to 5 s) until 127.0.0.1:port accepts a connection. */
static void wait_listening(int port) {
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    for (int i = 0; i < 100; i++) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), ok = fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof a) == 0;
        if (fd >= 0) close(fd);
        if (ok) return;
        usleep(50000);
    }
}

int cli_demo_witnesses(const char *data, int base_port, pid_t pids[2], char **section, pt_err *err) {
    pids[0] = pids[1] = 0;
    *section = NULL;
    pt_buf yaml;
    pt_buf_init(&yaml, 1 << 16);
    pt_buf_puts(&yaml, "\n# Added by parity demo: two witnesses, separate processes with their own keys and\n"
                       "# directories (DATA/witnesses/w1, w2), cosign every checkpoint of both logs.\n"
                       "witnesses:\n  quorum: 2\n  members:\n");
    int rc = PT_OK;
    for (int i = 0; i < 2 && !rc; i++) {
        char rel[32], name[64], port[16];
        snprintf(rel, sizeof rel, "witnesses/w%d", i + 1);
        snprintf(name, sizeof name, "witness-%d.demo.parity", i + 1);
        snprintf(port, sizeof port, "%d", base_port + 1 + i);
        char *dir = pt_path_join(data, rel), *vk = NULL, listen[64];
        if (!dir) return pt_errf(err, PT_ENOMEM, "out of memory");
        if (!(rc = demo_witness_setup(data, dir, name, err)) && !(rc = witness_read_vkey(dir, &vk, err))) {
            snprintf(listen, sizeof listen, "127.0.0.1:%s", port);
            pt_buf_printf(&yaml, "    - {name: %s, vkey: \"%s\", url: \"http://127.0.0.1:%s\"}\n", name, vk, port);
            pid_t pid = fork();
            if (pid == 0) { /* the witness: its own process, gone with the demo */
                prctl(PR_SET_PDEATHSIG, SIGTERM);
                execl("/proc/self/exe", "parity", "witness", "serve", "--data", dir, "--listen", listen, (char *)NULL);
                _exit(127);
            }
            if (pid < 0) rc = pt_errf(err, PT_EIO, "fork: cannot start witness %d", i + 1);
            pids[i] = pid > 0 ? pid : 0;
            if (!rc) wait_listening(base_port + 1 + i);
        }
        free(vk);
        free(dir);
    }
    if (rc) {
        cli_demo_witnesses_stop(pids);
        pt_buf_free(&yaml);
        return rc;
    }
    *section = pt_buf_steal(&yaml, NULL);
    return PT_OK;
}

void cli_demo_witnesses_stop(pid_t pids[2]) {
    for (int i = 0; i < 2; i++)
        if (pids[i] > 0) {
            kill(pids[i], SIGTERM);
            waitpid(pids[i], NULL, 0);
            pids[i] = 0;
        }
}
