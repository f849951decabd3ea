/* Tests for the writable log (tlog.c) and the verifier (verify.c): appends and group commit
 * from many threads, reads, proofs checked by the RFC 9162 verifier, reopen and recovery,
 * verification of the published directory, and detection of tampering, truncation,
 * re-signing and forks. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <sodium.h>

#include "common/crc32c.h"
#include "common/fileio.h"
#include "tlog/merkle.h"
#include "tlog/note.h"
#include "tlog/tile.h"
#include "tlog/tlog.h"
#include "test.h"

static char data_dir[256];

static void rm_rf(const char *p) {
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", p);
    if (system(cmd) != 0) fprintf(stderr, "rm failed\n");
}

static int entry_text(uint64_t i, char *buf) { return sprintf(buf, "{\"type\":\"test\",\"seq\":%llu}", (unsigned long long)i); }

static int check_entry(void *ctx, uint64_t index, const uint8_t *data, size_t len) {
    uint64_t *count = ctx;
    char want[64];
    int n = entry_text(index, want);
    if (index != *count || len != (size_t)n || memcmp(data, want, len) != 0) return 1;
    (*count)++;
    return 0;
}

typedef struct {
    tlog *t;
    uint64_t next;
    int bad;
} walk;

/* tlog_entries' callback: each entry in order, equal to tlog_entry's bytes. */
static int same_as_entry(void *ctx, uint64_t index, const uint8_t *data, size_t len) {
    walk *w = ctx;
    uint8_t *d;
    size_t n;
    if (index != w->next++ || tlog_entry(w->t, index, &d, &n, NULL)) return w->bad = 1;
    if (n != len || memcmp(d, data, n)) w->bad++;
    free(d);
    return 0;
}

static void test_append_read_prove(void) {
    tlog *t;
    pt_err e;
    CHECK(tlog_open(data_dir, "policy", "example.org/parity/test", &t, &e) == 0);
    CHECK(tlog_size(t) == 0);
    CHECK(!strcmp(tlog_origin(t), "example.org/parity/test"));
    CHECK(!strncmp(tlog_vkey(t), "example.org/parity/test+", 24));
    char buf[64];
    uint64_t idx;
    for (uint64_t i = 0; i < 10; i++) {
        int n = entry_text(i, buf);
        CHECK(tlog_append(t, buf, (size_t)n, &idx, &e) == 0 && idx == i);
    }
    /* a batch crossing tile boundaries (256 and 512) */
    const void *ptrs[700];
    size_t lens[700];
    static char texts[700][64];
    for (int i = 0; i < 700; i++) {
        lens[i] = (size_t)entry_text(10 + (uint64_t)i, texts[i]);
        ptrs[i] = texts[i];
    }
    CHECK(tlog_append_batch(t, ptrs, lens, 700, &idx, &e) == 0 && idx == 10);
    CHECK(tlog_size(t) == 710);
    static char big[TLOG_MAX_ENTRY + 1];
    CHECK(tlog_append(t, big, sizeof big, &idx, &e) == PT_EINVAL);
    uint8_t *d;
    size_t len;
    CHECK(tlog_entry(t, 300, &d, &len, &e) == 0 && len == (size_t)entry_text(300, buf) && !memcmp(d, buf, len));
    free(d);
    CHECK(tlog_entry(t, 709, &d, &len, &e) == 0);
    free(d);
    CHECK(tlog_entry(t, 710, &d, &len, &e) == PT_ENOTFOUND);
    /* a range read bundle by bundle, across the 256 and 512 boundaries, the same bytes */
    walk w = {t, 250, 0};
    CHECK(tlog_entries(t, 250, 710, same_as_entry, &w, &e) == 0 && w.next == 710 && w.bad == 0);
    w = (walk){t, 700, 0};
    CHECK(tlog_entries(t, 700, 700, same_as_entry, &w, &e) == 0 && w.next == 700);
    CHECK(tlog_entries(t, 5, 711, same_as_entry, &w, &e) == PT_EINVAL);

    /* the checkpoint is a signed note over the current size and root */
    char *cp;
    size_t cplen, tlen;
    note_verifier v;
    checkpoint c;
    CHECK(tlog_checkpoint(t, &cp, &cplen, &e) == 0);
    CHECK(note_verifier_parse(tlog_vkey(t), &v, &e) == 0);
    CHECK(note_open(cp, cplen, &v, 1, &tlen, NULL, &e) == 0 && checkpoint_parse(cp, tlen, &c, &e) == 0);
    CHECK(c.size == 710);
    uint8_t root[32];
    CHECK(tlog_root(t, 710, root, &e) == 0 && !memcmp(root, c.root, 32));

    /* every proof produced verifies, for several tree sizes */
    int bad = 0;
    uint64_t sizes[] = {1, 2, 255, 256, 257, 511, 512, 513, 700, 710};
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        uint8_t r[32];
        bad += tlog_root(t, sizes[s], r, &e) != 0;
        for (uint64_t i = 0; i < sizes[s]; i += 13) {
            uint8_t proof[TLOG_MAX_PROOF][32], leaf[32], want[32];
            size_t n;
            int k = entry_text(i, buf);
            merkle_leaf_hash(buf, (size_t)k, want);
            bad += tlog_prove_inclusion(t, i, sizes[s], proof, &n, leaf, &e) != 0;
            bad += memcmp(leaf, want, 32) != 0;
            bad += merkle_verify_inclusion(i, sizes[s], leaf, (const merkle_hash *)proof, n, r, &e) != 0;
            uint8_t oldr[32];
            bad += tlog_root(t, i + 1, oldr, &e) != 0;
            bad += tlog_prove_consistency(t, i + 1, sizes[s], proof, &n, &e) != 0;
            bad += merkle_verify_consistency(i + 1, sizes[s], oldr, r, (const merkle_hash *)proof, n, &e) != 0;
        }
    }
    CHECK(bad == 0);
    uint8_t proof[TLOG_MAX_PROOF][32];
    size_t n;
    CHECK(tlog_prove_inclusion(t, 5, 711, proof, &n, NULL, &e) == PT_EINVAL);
    CHECK(tlog_prove_consistency(t, 0, 10, proof, &n, &e) == PT_EINVAL);

    /* a second process (here: a second open) cannot write the same log */
    tlog *t2;
    CHECK(tlog_open(data_dir, "policy", NULL, &t2, &e) == PT_ECONFLICT);
    tlog_close(t);

    /* reopen: same size, root, key; the origin comes from the key */
    CHECK(tlog_open(data_dir, "policy", NULL, &t, &e) == 0);
    CHECK(tlog_size(t) == 710 && !strcmp(tlog_origin(t), "example.org/parity/test"));
    uint8_t root2[32];
    CHECK(tlog_root(t, 710, root2, &e) == 0 && !memcmp(root, root2, 32));
    CHECK(tlog_append(t, "after reopen", 12, &idx, &e) == 0 && idx == 710);
    tlog_close(t);
    CHECK(tlog_open(data_dir, "policy", "another.origin", &t, &e) == PT_EINVAL);
    free(cp);

    /* the key is private */
    char kp[512];
    snprintf(kp, sizeof kp, "%s/keys/policy.key", data_dir);
    struct stat sb;
    CHECK(stat(kp, &sb) == 0 && (sb.st_mode & 0777) == 0600);
}

typedef struct worker {
    tlog *t;
    int id, n, failed;
    uint64_t *got;
} worker;

static void *work(void *p) {
    worker *w = p;
    for (int i = 0; i < w->n; i++) {
        char buf[64];
        int k = snprintf(buf, sizeof buf, "w%d-%d", w->id, i);
        pt_err e;
        if (tlog_append(w->t, buf, (size_t)k, &w->got[i], &e) != 0) w->failed++;
    }
    return NULL;
}

static void test_concurrent_appends(void) {
    tlog *t;
    pt_err e;
    CHECK(tlog_open(data_dir, "audit", NULL, &t, &e) == 0);
    enum { W = 16, N = 60 };
    pthread_t th[W];
    worker ws[W];
    static uint64_t got[W][N];
    for (int i = 0; i < W; i++) {
        ws[i] = (worker){t, i, N, 0, got[i]};
        pthread_create(&th[i], NULL, work, &ws[i]);
    }
    int failed = 0;
    for (int i = 0; i < W; i++) {
        pthread_join(th[i], NULL);
        failed += ws[i].failed;
    }
    CHECK(failed == 0 && tlog_size(t) == W * N);
    /* every acknowledged index holds that worker's entry; no index was given twice */
    int bad = 0;
    static char seen[W * N];
    for (int i = 0; i < W; i++)
        for (int j = 0; j < N; j++) {
            uint8_t *d;
            size_t len;
            char want[64];
            int k = snprintf(want, sizeof want, "w%d-%d", i, j);
            if (got[i][j] >= W * N || seen[got[i][j]]++) bad++;
            else if (tlog_entry(t, got[i][j], &d, &len, &e) != 0) bad++;
            else {
                bad += len != (size_t)k || memcmp(d, want, len) != 0;
                free(d);
            }
        }
    CHECK(bad == 0);
    char *vk = strdup(tlog_vkey(t));
    tlog_close(t);
    char dir[512];
    snprintf(dir, sizeof dir, "%s/log/audit", data_dir);
    tlog_verified out;
    CHECK(tlog_verify(dir, vk, NULL, NULL, NULL, &out, &e) == 0 && out.size == W * N);
    free(vk);
}

static int write_file(const char *path, const void *d, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    fwrite(d, 1, n, f);
    return fclose(f);
}

static void test_verify_detects_tampering(void) {
    tlog *t;
    pt_err e;
    CHECK(tlog_open(data_dir, "v", "example.org/v", &t, &e) == 0);
    char buf[64];
    for (uint64_t i = 0; i < 300; i++) {
        int n = entry_text(i, buf);
        tlog_append(t, buf, (size_t)n, NULL, &e);
        if (i == 99) { /* keep the checkpoint at size 100 as the trusted one */
        }
    }
    char *cp300;
    tlog_checkpoint(t, &cp300, NULL, &e);
    char *vk = strdup(tlog_vkey(t));
    tlog_close(t);
    char dir[512], p[700];
    snprintf(dir, sizeof dir, "%s/log/v", data_dir);
    uint64_t count = 0;
    tlog_verified out;
    CHECK(tlog_verify(dir, vk, NULL, check_entry, &count, &out, &e) == 0 && count == 300 && out.size == 300);
    CHECK(tlog_verify(dir, vk, cp300, NULL, NULL, &out, &e) == 0 && out.trusted_size == 300);

    /* a checkpoint from a forked log (same key, different entries) is inconsistent */
    tlog *f;
    char fork_dir[300];
    snprintf(fork_dir, sizeof fork_dir, "%s/fork", data_dir);
    pt_mkdirs(fork_dir, 0, &e);
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "mkdir -p '%s/keys' && cp '%s/keys/v.key' '%s/keys/v.key'", fork_dir, data_dir, fork_dir);
    CHECK(system(cmd) == 0);
    CHECK(tlog_open(fork_dir, "v", NULL, &f, &e) == 0);
    for (uint64_t i = 0; i < 120; i++) {
        int n = entry_text(i == 50 ? 9999 : i, buf);
        tlog_append(f, buf, (size_t)n, NULL, &e);
    }
    char *forked;
    tlog_checkpoint(f, &forked, NULL, &e);
    tlog_close(f);
    CHECK(tlog_verify(dir, vk, forked, NULL, NULL, &out, &e) == PT_EVERIFY && strstr(e.msg, "not consistent"));
    free(forked);

    /* a verifier key that did not sign */
    char *sk2, *vk2;
    note_generate("example.org/v", &sk2, &vk2, &e);
    CHECK(tlog_verify(dir, vk2, NULL, NULL, NULL, &out, &e) == PT_EVERIFY);
    /* re-signed checkpoint: the same body signed by another key */
    note_signer s2;
    note_signer_parse(sk2, &s2, &e);
    char *resigned;
    size_t rlen;
    size_t tlen = (size_t)(strstr(cp300, "\n\n") - cp300) + 1;
    char *body = strndup(cp300, tlen);
    note_sign(body, tlen, &s2, &resigned, &rlen, &e);
    snprintf(p, sizeof p, "%s/checkpoint", dir);
    char *orig;
    size_t olen;
    pt_read_file(p, 1 << 20, &orig, &olen, &e);
    write_file(p, resigned, rlen);
    CHECK(tlog_verify(dir, vk, NULL, NULL, NULL, &out, &e) == PT_EVERIFY && strstr(e.msg, "no signature by a trusted key"));
    /* truncated checkpoint */
    write_file(p, orig, olen / 2);
    CHECK(tlog_verify(dir, vk, NULL, NULL, NULL, &out, &e) != 0);
    write_file(p, orig, olen);
    CHECK(tlog_verify(dir, vk, NULL, NULL, NULL, &out, &e) == 0);

    /* a truncated entry bundle, a flipped entry byte, a truncated and a flipped hash tile */
    const char *files[] = {"tile/entries/000", "tile/entries/001.p/44", "tile/0/000", "tile/1/000.p/1"};
    for (size_t i = 0; i < 4; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, files[i]);
        char *d;
        size_t n;
        CHECK(pt_read_file(p, 1 << 24, &d, &n, &e) == 0);
        write_file(p, d, n - 1);
        int rc = tlog_verify(dir, vk, NULL, NULL, NULL, &out, &e);
        CHECK(rc == PT_EFORMAT && strstr(e.msg, files[i]));
        d[n - 1] ^= 1;
        write_file(p, d, n);
        rc = tlog_verify(dir, vk, NULL, NULL, NULL, &out, &e);
        CHECK(rc == PT_EVERIFY);
        d[n - 1] ^= 1;
        write_file(p, d, n);
        free(d);
    }
    CHECK(tlog_verify(dir, vk, NULL, NULL, NULL, &out, &e) == 0);
    /* a missing tile */
    snprintf(p, sizeof p, "%s/tile/0/000", dir);
    char np[800];
    snprintf(np, sizeof np, "%s.moved", p);
    rename(p, np);
    CHECK(tlog_verify(dir, vk, NULL, NULL, NULL, &out, &e) == PT_ENOTFOUND);
    rename(np, p);
    free(orig);
    free(resigned);
    free(body);
    free(sk2);
    free(vk2);
    free(cp300);
    free(vk);
}

static void test_recovery_ignores_torn_tiles(void) {
    tlog *t;
    pt_err e;
    CHECK(tlog_open(data_dir, "r", NULL, &t, &e) == 0);
    char buf[64];
    for (uint64_t i = 0; i < 40; i++) tlog_append(t, buf, (size_t)entry_text(i, buf), NULL, &e);
    tlog_close(t);
    /* what a crash mid-batch leaves behind: the batch's mark (written before its first tile),
     * tiles and bundles beyond the checkpoint, torn */
    char p[700];
    snprintf(p, sizeof p, "%s/log/r/pending", data_dir);
    write_file(p, "40 41\n", 6);
    snprintf(p, sizeof p, "%s/log/r/tile/0/000.p/41", data_dir);
    write_file(p, "garbage", 7);
    snprintf(p, sizeof p, "%s/log/r/tile/entries/000.p/41", data_dir);
    write_file(p, "\x00", 1);
    CHECK(tlog_open(data_dir, "r", NULL, &t, &e) == 0 && tlog_size(t) == 40);
    CHECK(tlog_append(t, buf, (size_t)entry_text(40, buf), NULL, &e) == 0);
    char *vk = strdup(tlog_vkey(t));
    tlog_close(t);
    snprintf(p, sizeof p, "%s/log/r", data_dir);
    uint64_t count = 0;
    CHECK(tlog_verify(p, vk, NULL, check_entry, &count, NULL, &e) == 0 && count == 41);
    /* but a damaged tile that the checkpoint covers is refused at open */
    snprintf(p, sizeof p, "%s/log/r/tile/0/000.p/41", data_dir);
    write_file(p, "garbage", 7);
    CHECK(tlog_open(data_dir, "r", NULL, &t, &e) == PT_EFORMAT);
    free(vk);
}

typedef struct hook_seen {
    char path[700];
    int calls;
    uint64_t first;
    long long size; /* the journal file's size when the hook ran */
} hook_seen;

static void on_written(void *ctx, uint64_t first) {
    hook_seen *h = ctx;
    struct stat st;
    h->calls++;
    h->first = first;
    h->size = stat(h->path, &st) == 0 ? (long long)st.st_size : -1;
}

/* The journal: entries acknowledged by tlog_journal_append survive a process that dies before
 * integrating them (replayed at open, at their acknowledged indices); a torn or corrupt tail
 * is ignored; tlog_integrate publishes; mixing in tlog_append while entries are pending is
 * refused. */
static void test_journal(void) {
    pt_err e;
    char buf[64], p[700];
    const void *d[3];
    size_t l[3];
    static char texts[3][64];
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) { /* journal 3 entries, publish none, die without closing */
        tlog *t;
        if (tlog_open(data_dir, "j", NULL, &t, &e) != 0) _exit(2);
        for (int i = 0; i < 3; i++) {
            l[i] = (size_t)entry_text((uint64_t)i, texts[i]);
            d[i] = texts[i];
        }
        uint64_t first = 99;
        if (tlog_journal_append(t, d, l, 3, &first, &e) != 0 || first != 0 || tlog_size(t) != 0 ||
            tlog_journaled_size(t) != 3 || tlog_journal_pending(t) != 3)
            _exit(3);
        _exit(0);
    }
    int status;
    waitpid(pid, &status, 0);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    /* what a crash mid-write leaves: a torn record after the acknowledged ones */
    snprintf(p, sizeof p, "%s/log/j/journal", data_dir);
    FILE *f = fopen(p, "ab");
    CHECK(f && fwrite("\0\0\0\0\0\0\0\3\0\40torn", 1, 14, f) == 14);
    if (f) fclose(f);
    tlog *t;
    CHECK(tlog_open(data_dir, "j", NULL, &t, &e) == 0 && tlog_size(t) == 3 && tlog_journal_pending(t) == 0);
    uint64_t idx = 0;
    int n = entry_text(3, buf);
    d[0] = buf;
    l[0] = (size_t)n;
    CHECK(tlog_journal_append(t, d, l, 1, &idx, &e) == 0 && idx == 3 && tlog_size(t) == 3);
    CHECK(tlog_append(t, buf, (size_t)n, NULL, &e) == 0); /* lands at 4, ahead of the pending 3 */
    CHECK(tlog_integrate(t, &e) == PT_EINTERNAL);          /* so the journal is refused */
    tlog_close(t);
    rm_rf(p);
    /* a clean run: journal, integrate, verify the published log */
    snprintf(p, sizeof p, "%s/log/j2", data_dir);
    CHECK(tlog_open(data_dir, "j2", NULL, &t, &e) == 0);
    for (uint64_t i = 0; i < 300; i++) {
        n = entry_text(i, buf);
        l[0] = (size_t)n;
        CHECK(tlog_journal_append(t, d, l, 1, &idx, &e) == 0 && idx == i);
        if (i == 100) CHECK(tlog_integrate(t, &e) == 0 && tlog_size(t) == 101);
    }
    CHECK(tlog_size(t) == 101 && tlog_journaled_size(t) == 300);
    CHECK(tlog_integrate(t, &e) == 0 && tlog_size(t) == 300 && tlog_journal_pending(t) == 0);
    /* the hook of tlog_journal_append_then: called once, with the first index, after the
     * records are in the journal file and before the call returns */
    l[0] = (size_t)entry_text(300, buf);
    hook_seen h = {0};
    snprintf(h.path, sizeof h.path, "%s/journal", p);
    CHECK(tlog_journal_append_then(t, d, l, 1, &idx, on_written, &h, &e) == 0 && idx == 300);
    CHECK(h.calls == 1 && h.first == 300 && h.size >= 10 + (long long)l[0] + 16);
    char *vk = strdup(tlog_vkey(t));
    tlog_close(t); /* integrates the pending entry */
    uint64_t count = 0;
    CHECK(tlog_verify(p, vk, NULL, check_entry, &count, NULL, &e) == 0 && count == 301);
    /* a corrupt record (bad checksum) ends the replay there: what follows it is not taken */
    fflush(NULL);
    if ((pid = fork()) == 0) {
        if (tlog_open(data_dir, "j2", NULL, &t, &e) != 0) _exit(2);
        for (int i = 0; i < 2; i++) {
            l[i] = (size_t)entry_text(301 + (uint64_t)i, texts[i]);
            d[i] = texts[i];
        }
        _exit(tlog_journal_append(t, d, l, 2, NULL, &e) != 0 ? 3 : 0);
    }
    waitpid(pid, &status, 0);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    snprintf(p, sizeof p, "%s/log/j2/journal", data_dir);
    f = fopen(p, "r+b");
    CHECK(f && fseek(f, 12, SEEK_SET) == 0 && fputc('X', f) != EOF); /* a byte of record 301's data */
    if (f) fclose(f);
    CHECK(tlog_open(data_dir, "j2", NULL, &t, &e) == 0 && tlog_size(t) == 301 && tlog_journaled_size(t) == 301);
    tlog_close(t);
    /* a journal left by a version that checked records with BLAKE2b-128 is replayed too */
    snprintf(p, sizeof p, "%s/log/j2/journal", data_dir);
    f = fopen(p, "wb");
    for (uint64_t i = 301; i < 303; i++) {
        uint8_t rec[10 + 64], sum[16];
        n = entry_text(i, (char *)rec + 10);
        for (int k = 0; k < 8; k++) rec[k] = (uint8_t)(i >> (56 - 8 * k));
        rec[8] = (uint8_t)(n >> 8), rec[9] = (uint8_t)n;
        crypto_generichash(sum, sizeof sum, rec, 10 + (size_t)n, NULL, 0);
        CHECK(f && fwrite(rec, 1, 10 + (size_t)n, f) == 10 + (size_t)n && fwrite(sum, 1, 16, f) == 16);
    }
    if (f) fclose(f);
    CHECK(tlog_open(data_dir, "j2", NULL, &t, &e) == 0 && tlog_size(t) == 303);
    tlog_close(t);
    count = 0;
    snprintf(p, sizeof p, "%s/log/j2", data_dir);
    CHECK(tlog_verify(p, vk, NULL, check_entry, &count, NULL, &e) == 0 && count == 303);
    free(vk);
}

/* CRC-32C (the journal's record check): the standard check value, and the instruction-based
 * path against the table-based one over every length and split. */
static void test_crc32c(void) {
    CHECK(pt_crc32c(0, "123456789", 9) == 0xE3069283u);
    CHECK(pt_crc32c_portable(0, "123456789", 9) == 0xE3069283u);
    CHECK(pt_crc32c(0, "", 0) == 0);
    uint8_t b[100];
    for (int i = 0; i < 100; i++) b[i] = (uint8_t)(i * 37 + 11);
    int bad = 0;
    for (size_t n = 0; n <= sizeof b; n++)
        for (size_t cut = 0; cut <= n; cut += 7)
            bad += pt_crc32c(pt_crc32c(0, b, cut), b + cut, n - cut) != pt_crc32c_portable(0, b, n);
    CHECK(bad == 0);
}

int main(void) {
    /* tmpfs when there is one: fsync is what makes the log durable against power loss, and
     * these tests are about the format and the logic, not the disk (see bench_tlog). */
    snprintf(data_dir, sizeof data_dir, "%s/parity-test-tlog-%d", access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp",
             (int)getpid());
    rm_rf(data_dir);
    test_append_read_prove();
    test_concurrent_appends();
    test_verify_detects_tampering();
    test_recovery_ignores_torn_tiles();
    test_journal();
    test_crc32c();
    rm_rf(data_dir);
    return test_summary("tlog");
}
