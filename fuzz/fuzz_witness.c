/* Fuzz target: a witness's add-checkpoint handler (what `parity witness serve` reads from the
 * network: the "old" line, proof lines, the signed note) and cosignature parsing (what a
 * writer reads from a witness's answer, and every verifier from a checkpoint). The witness
 * lives in a temporary directory, configured for the log PeterNeumann (the Go note test key,
 * whose private key is public: seeds can carry valid checkpoints, which then reach the proof
 * check and the state write). */
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tlog/cosig.h"
#include "tlog/witness.h"

static witness *w;
static cosig_verifier cv;
static char tmpl[] = "/tmp/parity-fuzz-witness-XXXXXX";

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

static void cleanup(void) {
    witness_close(w);
    nftw(tmpl, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static void init(void) {
    char *dir = mkdtemp(tmpl);
    pt_err err;
    char *vk = NULL;
    if (!dir || witness_init(dir, "fuzz.witness", &vk, &err) ||
        witness_add_log(dir, "PeterNeumann", "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", &err) ||
        witness_open(dir, NULL, &w, &err) || cosig_verifier_parse(vk, &cv, &err)) {
        fprintf(stderr, "fuzz_witness: %s\n", err.msg);
        abort();
    }
    free(vk);
    atexit(cleanup);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!w) init();
    witness_answer a;
    witness_add_checkpoint(w, (const char *)data, size, 1700000000, &a);
    if (a.status == 200 && (!a.body || strncmp(a.body, "\xE2\x80\x94 fuzz.witness ", 17) != 0)) abort(); /* a line */
    witness_answer_free(&a);
    uint64_t t;
    size_t found;
    pt_err err;
    cosig_find((const char *)data, size, &cv, 1, &t, &found, &err);
    uint64_t times[3] = {size, 0, (uint64_t)size * 7};
    cosig_quorum_time(times, 3, size % 4, &t, &err);
    return 0;
}
