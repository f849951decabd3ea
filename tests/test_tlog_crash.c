/* Crash test: a child process appends to the log from several threads and reports each
 * acknowledged (index, entry) on a pipe; the parent kills it with SIGKILL at a random moment,
 * reopens the log (recovery), verifies the whole published log from its tiles, and checks that
 * every acknowledged entry is there at its index. 120 rounds, each continuing the same log;
 * then 60 rounds on a second log written through the journal (tlog_journal_append, with
 * tlog_integrate now and then), where reopening must replay every acknowledged entry. */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tlog/tlog.h"
#include "test.h"

#define ROUNDS 120
#define THREADS 4

static char data_dir[256];
static int ack_fd;
static tlog *child_log;
static int child_round;
static int journal_mode; /* the child appends through the journal */
static const char *log_name = "crash";

static int child_append(const void *const *d, const size_t *l, size_t n, uint64_t *idx, pt_err *err) {
    return journal_mode ? tlog_journal_append(child_log, d, l, n, idx, err)
                        : tlog_append_batch(child_log, d, l, n, idx, err);
}

static void *child_thread(void *p) {
    int id = (int)(intptr_t)p;
    for (int i = 0;; i++) {
        char e[128];
        int n = snprintf(e, sizeof e, "round %d thread %d entry %d", child_round, id, i);
        uint64_t idx;
        pt_err err;
        if (i % 3 == 0) { /* a small batch now and then */
            char b2[128];
            int n2 = snprintf(b2, sizeof b2, "%s+", e);
            const void *d[2] = {e, b2};
            size_t l[2] = {(size_t)n, (size_t)n2};
            if (child_append(d, l, 2, &idx, &err) != 0) _exit(3);
            char line[300];
            int k = snprintf(line, sizeof line, "%llu %s\n%llu %s\n", (unsigned long long)idx, e,
                             (unsigned long long)idx + 1, b2);
            if (write(ack_fd, line, (size_t)k) != k) _exit(4);
        } else {
            const void *d[1] = {e};
            size_t l[1] = {(size_t)n};
            if (child_append(d, l, 1, &idx, &err) != 0) _exit(3);
            if (journal_mode && id == 0 && i % 7 == 6 && tlog_integrate(child_log, &err) != 0) _exit(5);
            char line[200];
            int k = snprintf(line, sizeof line, "%llu %s\n", (unsigned long long)idx, e);
            if (write(ack_fd, line, (size_t)k) != k) _exit(4);
        }
    }
    return NULL;
}

static void child(int round, int fd) {
    pt_err err;
    ack_fd = fd;
    child_round = round;
    if (tlog_open(data_dir, log_name, "example.org/crash", &child_log, &err) != 0) {
        fprintf(stderr, "child: %s\n", err.msg);
        _exit(2);
    }
    pthread_t th[THREADS];
    for (int i = 0; i < THREADS; i++) pthread_create(&th[i], NULL, child_thread, (void *)(intptr_t)i);
    pause();
    _exit(0);
}

typedef struct ack {
    uint64_t index;
    char entry[128];
} ack;

static ack *acks;
static size_t nacks, cap_acks;

/* Reads acknowledgements until EOF, or (until_one) until at least one more has arrived. */
static void read_acks(int fd, int until_one) {
    static char buf[1 << 16];
    static size_t have;
    size_t before = nacks;
    for (;;) {
        if (until_one && nacks > before) return;
        ssize_t n = read(fd, buf + have, sizeof buf - have - 1);
        if (n <= 0) break;
        have += (size_t)n;
        char *line = buf, *nl;
        while ((nl = memchr(line, '\n', have - (size_t)(line - buf)))) {
            *nl = 0;
            if (nacks == cap_acks) acks = realloc(acks, (cap_acks = cap_acks * 2 + 1024) * sizeof *acks);
            char *sp = strchr(line, ' ');
            acks[nacks].index = strtoull(line, NULL, 10);
            snprintf(acks[nacks].entry, sizeof acks[nacks].entry, "%s", sp ? sp + 1 : "");
            nacks++;
            line = nl + 1;
        }
        have -= (size_t)(line - buf);
        memmove(buf, line, have);
    }
    if (until_one) return; /* EOF: the child died before acknowledging anything */
    have = 0; /* a partial line from a killed child was never acknowledged in full */
}

typedef struct seen {
    char **entries;
    uint64_t n;
} seen;

static int collect(void *ctx, uint64_t index, const uint8_t *data, size_t len) {
    seen *s = ctx;
    if (index != s->n) return 1;
    s->entries = realloc(s->entries, (s->n + 1) * sizeof *s->entries);
    s->entries[s->n++] = strndup((const char *)data, len);
    return 0;
}

static void run(int rounds) {
    nacks = 0;
    int failures = 0, verified_rounds = 0, full_verifies = 0;
    uint64_t last_size = 0;
    for (int round = 0; round < rounds; round++) {
        size_t round_start = nacks;
        int p[2];
        if (pipe(p) != 0) abort();
        fflush(NULL);
        pid_t pid = fork();
        if (pid == 0) {
            close(p[0]);
            child(round, p[1]);
        }
        close(p[1]);
        /* Kill only once the child is acknowledging entries, at a random moment after that,
         * so every round cuts into appends in flight whatever the machine's load. */
        read_acks(p[0], 1);
        struct timespec ts = {0, (long)(rand() % 25000) * 1000}; /* 0–25 ms */
        nanosleep(&ts, NULL);
        kill(pid, SIGKILL);
        int status;
        waitpid(pid, &status, 0);
        if (!WIFSIGNALED(status)) {
            fprintf(stderr, "round %d: child exited with %d before the kill\n", round, WEXITSTATUS(status));
            failures++;
        }
        read_acks(p[0], 0);
        close(p[0]);

        /* Recover (open recomputes the right edge against the signed root), check this round's
         * acknowledged entries are at their indices; every 10th round and the last, verify
         * the whole log from its tiles and check every acknowledgement so far. (Verifying the
         * whole, growing log every round made the test quadratic: minutes under ASan.) */
        tlog *t;
        pt_err err;
        if (tlog_open(data_dir, log_name, "example.org/crash", &t, &err) != 0) {
            fprintf(stderr, "round %d: reopen failed: %s\n", round, err.msg);
            failures++;
            break;
        }
        uint64_t size = tlog_size(t);
        for (size_t i = round_start; i < nacks; i++) {
            uint8_t *d;
            size_t len;
            if (acks[i].index >= size || tlog_entry(t, acks[i].index, &d, &len, &err) != 0) {
                fprintf(stderr, "round %d: acknowledged entry %llu (%s) is missing\n", round,
                        (unsigned long long)acks[i].index, acks[i].entry);
                failures++;
                break;
            }
            if (len != strlen(acks[i].entry) || memcmp(d, acks[i].entry, len) != 0) {
                fprintf(stderr, "round %d: entry %llu is not what was acknowledged\n", round, (unsigned long long)acks[i].index);
                failures++;
            }
            free(d);
        }
        char *vk = strdup(tlog_vkey(t));
        tlog_close(t);
        if (size < last_size) {
            fprintf(stderr, "round %d: the log shrank from %llu to %llu\n", round, (unsigned long long)last_size,
                    (unsigned long long)size);
            failures++;
        }
        last_size = size;
        verified_rounds++;
        if (round % 10 == 9 || round == rounds - 1) {
            char dir[400];
            snprintf(dir, sizeof dir, "%s/log/%s", data_dir, log_name);
            seen s = {0};
            tlog_verified out;
            if (tlog_verify(dir, vk, NULL, collect, &s, &out, &err) != 0 || out.size != size) {
                fprintf(stderr, "round %d: verify failed: %s\n", round, err.msg);
                failures++;
            } else {
                full_verifies++;
            }
            for (size_t i = 0; i < nacks; i++)
                if (acks[i].index >= s.n || strcmp(s.entries[acks[i].index], acks[i].entry) != 0) {
                    fprintf(stderr, "round %d: acknowledged entry %llu (%s) is missing\n", round,
                            (unsigned long long)acks[i].index, acks[i].entry);
                    failures++;
                    break;
                }
            for (uint64_t i = 0; i < s.n; i++) free(s.entries[i]);
            free(s.entries);
        }
        free(vk);
    }
    printf("crash test (%s): %d full verifications, ", journal_mode ? "journal" : "group commit", full_verifies);
    printf("%d rounds, %zu acknowledged entries, final size %llu\n", verified_rounds, nacks,
           (unsigned long long)last_size);
    CHECK(failures == 0);
    CHECK(verified_rounds == rounds);
    CHECK(full_verifies == rounds / 10);
    CHECK(nacks > 100); /* the kills did land while entries were being acknowledged */
}

int main(void) {
    snprintf(data_dir, sizeof data_dir, "%s/parity-test-tlog-crash-%d",
             access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp", (int)getpid());
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", data_dir);
    if (system(cmd) != 0) return 1;
    srand((unsigned)time(NULL));
    run(ROUNDS);
    journal_mode = 1;
    log_name = "jcrash";
    run(ROUNDS / 2);
    free(acks);
    if (system(cmd) != 0) return 1;
    return test_summary("tlog_crash");
}
