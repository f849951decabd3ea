/* history.h — the access policy's revisions in the transparency log: applying a new revision,
 * reading the current one, and loading the verified history that the parity report takes.
 *
 * A revision is two things, written in this order:
 *   1. DATA/log/policy/revisions/<hex>.json — the policy's RFC 8785 canonical JSON, whose
 *      SHA-256 is <hex> (written atomically; published with the log's tiles, so anyone who can
 *      fetch the log can fetch every revision);
 *   2. a log entry (compact JSON, keys in this order)
 *        {"type":"policy_revision","seq":N,"digest":"sha256:<hex>","prev":"sha256:<hex>"|null,
 *         "time":"YYYY-MM-DDTHH:MM:SSZ","summary":["change line", ...]}
 *      seq counts revisions from 1; prev is the digest of revision N-1 (null for the first);
 *      time is when the revision takes effect; summary is the semantic diff from revision N-1,
 *      capped at PT_REVISION_SUMMARY_MAX bytes of JSON with a last line "... and K more".
 * The file is written before the entry, so every logged digest has its file (a crash between
 * the two leaves an unreferenced file, which the next apply of the same policy overwrites).
 *
 * The same log holds other entries (key bindings and revocations, see server/keys.h): they are
 * skipped. Entries that are not JSON objects with a string "type" are skipped too; an entry
 * whose type is "policy_revision" but is malformed is an error (PT_EFORMAT, naming its index).
 */
#ifndef PARITY_POLICY_HISTORY_H
#define PARITY_POLICY_HISTORY_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "common/err.h"
#include "policy/policy.h"
#include "tlog/tlog.h"

/* Largest summary array in an entry, as compact JSON (the entry stays far below 64 KiB). */
#define PT_REVISION_SUMMARY_MAX 32768
/* Largest revision file accepted (as for pt_policy_load). */
#define PT_REVISION_MAX (16u << 20)

/* What a policy_revision log entry says. */
typedef struct pt_revision_entry {
    uint64_t index;     /* its log index (as given to pt_revision_entry_parse) */
    int64_t seq;        /* >= 1 */
    char digest[72];    /* "sha256:<64 lower-case hex>" */
    char prev[72];      /* the same form, or "" for null */
    int64_t time;       /* when it takes effect */
} pt_revision_entry;

/* The moment revision e takes effect: what pt_policy_revision_in_force orders by, for the
 * server, the report and `policy explain` alike. Today the entry's time; the one place to change
 * when revisions get a witnessed time and a later effective time. */
int64_t pt_revision_in_force_from(const pt_revision_entry *e);

/* Reads one log entry (untrusted bytes). Returns 1 and fills *e for a policy_revision entry,
 * 0 for an entry of another kind (not touched), or PT_EFORMAT for a malformed policy_revision
 * (unknown key, bad seq/digest/prev/time/summary, or unparseable bytes that mention
 * "policy_revision"), the message starting "WHERE: entry INDEX: ". where may not be NULL. */
int pt_revision_entry_parse(const uint8_t *data, size_t len, uint64_t index, const char *where,
                            pt_revision_entry *e, pt_err *err);

typedef struct pt_apply_result {
    int changed;        /* 1: a revision was appended; 0: the policy is the current one (no-op) */
    uint64_t seq;       /* the new revision's seq; when unchanged, the current one's */
    char digest[72];    /* "sha256:<hex>" of the applied policy */
    char prev[72];      /* digest of the revision before it, "" when there is none */
    int64_t time;       /* the revision's time (when unchanged: the current revision's) */
    uint64_t index;     /* log index of the revision's entry (when unchanged: the current one's) */
    json_t *summary;    /* owned (pt_apply_result_free): the full list of change lines, not
                           capped (the logged one may be); an empty array when unchanged */
    char message[256];  /* one line for a person: "applied revision 3 ..." or "no change: ..." */
} pt_apply_result;

/* Frees what *r owns (r may be NULL or zeroed). */
void pt_apply_result_free(pt_apply_result *r);

/* Applies a new revision of the policy: parses and validates text (YAML or JSON; `what` names
 * it in messages), loads the current revision (see pt_policy_current), and unless the canonical
 * digests are equal, writes DATA/log/policy/revisions/<hex>.json and then appends the entry
 * described above to policy_log (which must be DATA/log/policy opened with tlog_open).
 * The revision's time is `now`, or the current revision's time if `now` is earlier (the
 * history stays in time order when a clock steps back).
 * Applies in one process are serialised (a process-wide mutex); other processes cannot open the
 * log while it is held (tlog's flock). On success *out is filled (pt_apply_result_free).
 * Errors: PT_EFORMAT (invalid policy: "WHAT:LINE:COLUMN: PATH: message"; a malformed entry),
 * PT_EVERIFY (the current revision's file does not hash to its logged digest), PT_ENOTFOUND
 * (the current revision's file is missing), PT_EIO, PT_ENOMEM. On error nothing is appended. */
int pt_policy_apply(tlog *policy_log, const char *data_dir, const char *text, size_t len, const char *what,
                    int64_t now, pt_apply_result *out, pt_err *err);

/* The current policy: the latest policy_revision entry in policy_log, its file read from
 * DATA/log/policy/revisions/<hex>.json and checked against the logged SHA-256. *out is a new
 * policy (pt_policy_free); digest (may be NULL) gets its "sha256:<hex>", *seq (may be NULL) its
 * seq. When no revision was applied yet, *out is the empty policy (lab "none", no models, no
 * organisations, no grants: every decision is a deny), digest is "" and *seq is 0.
 * Errors: as for pt_policy_apply. */
int pt_policy_current(tlog *policy_log, const char *data_dir, pt_policy **out, char digest[72], int64_t *seq,
                      pt_err *err);

/* The revision in force at `at` (pt_policy_revision_in_force's rule: the last one dated at or before it),
 * its file checked as for pt_policy_current; before the first revision, the empty policy
 * (digest "", seq 0). *next (may be NULL) gets when the answer next changes: the time of the
 * first revision dated after `at`, INT64_MAX if none. pt_policy_current is the latest revision
 * whatever its date (what a new apply diffs against); what is enforced, reported and explained
 * at a moment is this one. Errors: as for pt_policy_current. */
int pt_policy_in_force(tlog *policy_log, const char *data_dir, int64_t at, pt_policy **out, char digest[72],
                       int64_t *seq, int64_t *next, pt_err *err);

/* A verified policy history: what pt_gap_report takes, plus where each revision is logged. */
typedef struct pt_policy_history {
    pt_policy_revision *revs; /* n revisions in log (= seq = time) order; policies and digests
                                 are owned by the history */
    size_t n;
    uint64_t *log_index;     /* n: the log index of each revision's entry */
    tlog_verified verified;  /* the checkpoint that was verified (origin, size, root) */
} pt_policy_history;

/* Loads the policy history from any copy of the log: `source` is the log's directory
 * (DATA/log/policy) or an http(s):// URL prefix that serves it. Verifies the log with
 * tlog_verify(source, vkey, trusted_checkpoint) (signature, every tile, and consistency with
 * trusted_checkpoint when not NULL), collects the policy_revision entries, fetches each
 * <source>/revisions/<hex>.json, checks its SHA-256 against the logged digest, and parses it.
 * The chain must hold: seq 1, 2, 3, ... in log order, each prev the digest before it, times
 * not decreasing. A log with no revision gives n = 0.
 * On success *out is new (pt_policy_history_free). Errors: PT_EVERIFY (a signature, tile,
 * root, consistency, revision digest or chain check failed — the message names the file and
 * entry), PT_EFORMAT (a malformed tile, entry or revision), PT_ENOTFOUND (a revision file is
 * missing), PT_EIO (fetching), PT_ENOMEM. */
int pt_policy_history_load(const char *source, const char *vkey, const char *trusted_checkpoint,
                           pt_policy_history **out, pt_err *err);
void pt_policy_history_free(pt_policy_history *h);  /* NULL is a no-op */

/* Honest time (docs/tlog.md, "Witnessed time"): dates every revision of h (loaded from `source`
 * with the log key vkey) by its witnessed time — the earliest quorum time of a checkpoint that
 * holds its entry, from <source>/cosigned/ (tlog_witnessed_load) and `latest` (the quorum-cosigned
 * checkpoint that was verified, may be NULL) — and sets each revision's time to the later of
 * that and the time its entry states (a backdated revision shows when it was witnessed; a
 * revision may still take effect later than witnessed). Revisions that no quorum-cosigned
 * checkpoint holds yet are dropped from h (they are not yet witnessed): *dropped gets how many.
 * Errors: as tlog_witnessed_load. */
int pt_policy_history_witness(pt_policy_history *h, const char *source, const char *vkey, const char *const *wvkeys,
                              size_t n, size_t quorum, const tlog_witnessed *latest, size_t *dropped, pt_err *err);

/* What `parity gap` and the server's report use: dates h by the witnesses wvkeys[0..n) with
 * quorum, or when n = 0 by those of h's latest revision (nothing changes when it names none:
 * the dates stay the lab's own, and the report says so). The published <source>/checkpoint
 * must carry a quorum of cosignatures (PT_EVERIFY "N of M witnesses cosigned ...") when
 * strict; otherwise a checkpoint not yet cosigned only means that the revisions after the last
 * cosigned one are left out (*dropped); PT_EVERIFY when that would leave none (nothing is
 * witnessed yet). */
int pt_policy_history_date(pt_policy_history *h, const char *source, const char *vkey, const char *const *wvkeys,
                           size_t n, size_t quorum, int strict, size_t *dropped, pt_err *err);

#endif
