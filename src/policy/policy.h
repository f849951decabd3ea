/* policy.h — the access policy: parsing, validation, the deny-by-default decision,
 * canonical form (RFC 8785) and semantic diff.
 *
 * A policy document (YAML or JSON, one schema, see docs/policy.md) names the lab, its models
 * (with variants), tiers of capabilities, organisations, grants and forbids. pt_policy_parse()
 * validates it completely: unknown keys, bad dates, duplicate ids and dangling references are
 * errors whose message is "FILE:LINE:COLUMN: PATH: what is wrong", e.g.
 *     policy.yaml:41:12: grants[3].model: pattern 'gpt-*' matches no model
 *
 * The parsed policy is read-only and may be shared between threads once parsed; the structs
 * below are public so that the server and the parity report can read them, but only this
 * module creates or changes them.
 */
#ifndef PARITY_POLICY_POLICY_H
#define PARITY_POLICY_POLICY_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "common/err.h"

/* The fixed capability vocabulary. A set of capabilities is a bit mask (1u << PT_CAP_X). */
typedef enum {
    PT_CAP_SAMPLE = 0,
    PT_CAP_LOGPROBS,
    PT_CAP_PREFILL,
    PT_CAP_ACTIVATIONS,
    PT_CAP_INTERVENTIONS,
    PT_CAP_FINETUNE,
    PT_CAP_UNMITIGATED,
    PT_CAP_MODEL_INFO,
    PT_CAP_WEIGHTS,
    PT_CAP_COUNT
} pt_cap;
typedef uint32_t pt_capset;
#define PT_CAPS_ALL ((pt_capset)((1u << PT_CAP_COUNT) - 1))

/* "sample", "logprobs", ... ; NULL for an out-of-range value. */
const char *pt_cap_name(pt_cap c);
/* The capability named s, or -1. */
int pt_cap_parse(const char *s);

typedef enum { PT_ORG_INSIDER = 0, PT_ORG_EVALUATOR, PT_ORG_RESEARCHER, PT_ORG_PUBLIC } pt_org_kind;
const char *pt_org_kind_name(pt_org_kind k);

/* Times are seconds since the Unix epoch; these mark an open end. */
#define PT_TIME_MIN INT64_MIN
#define PT_TIME_MAX INT64_MAX
/* A limit that is not set (no limit). */
#define PT_UNLIMITED (-1)

typedef struct {
    int64_t requests_per_minute;      /* PT_UNLIMITED (not stated) or >= 0 */
    int64_t tokens_per_day;
    int64_t concurrent_finetune_jobs;
    int64_t logprobs_top_k;           /* the cap on top-k log-probs per position */
} pt_limits;

typedef struct {
    char *id;          /* e.g. "mitigated", "unmitigated" */
    char *differs;     /* what differs from the other variants (free text), may be NULL */
    int unmitigated;   /* 1: serving this variant needs the `unmitigated` capability */
} pt_variant;

typedef struct {
    char *id;
    char *name;        /* may be NULL */
    char *weights;     /* where the weights are (path or URL), may be NULL */
    pt_variant *variants;
    size_t n_variants;
    int64_t insider_since;
    int64_t public_since;  /* PT_TIME_MAX when not public */
    char *analog_of;       /* id of the frontier model this is an analog of, or NULL */
    int line, column;      /* where it was defined (1-based; 0 when built in code) */
} pt_pmodel; /* a model as the policy describes it (engine/model.h's pt_model is the loaded one) */

typedef struct {
    char *id;             /* "AL1", "AL2", "AL3" are predefined and may be redefined */
    char *description;    /* may be NULL */
    pt_capset caps;
    int predefined;       /* 1 if it comes from the built-in defaults, not the document */
} pt_tier;

typedef struct {
    char *id;
    char *name;
    pt_org_kind kind;
    int public_usage;     /* 1: its audit entries name it and its key ids (default 0: keyed pseudonyms) */
    int line, column;
} pt_org;

typedef struct {
    char *id;            /* from the document, or "grants[N]" when it has none */
    char *org;           /* organisation id (resolved) */
    char *model;         /* model id or glob pattern (fnmatch) */
    char *tier;          /* tier id or NULL */
    pt_capset extra;     /* capabilities named in the grant itself */
    pt_capset caps;      /* effective: tier's plus extra */
    int64_t from, until; /* window [from, until); PT_TIME_MIN / PT_TIME_MAX when open */
    pt_limits limits;
    char *note;          /* may be NULL */
    int has_id;          /* 1 if the document named it */
    int line, column;
} pt_grant;

typedef struct {
    char *id;            /* from the document, or "forbids[N]" */
    char *org;           /* organisation id, or NULL for every organisation */
    char *model;         /* glob, or NULL for every model */
    pt_capset caps;      /* PT_CAPS_ALL when the forbid names none */
    int64_t from, until;
    char *reason;        /* may be NULL */
    int has_id;
    int line, column;
} pt_forbid;

/* A witness (C2SP tlog-witness) that cosigns the lab's log checkpoints (docs/tlog.md). */
typedef struct {
    char *name;          /* the name in its verifier key */
    char *vkey;          /* cosignature/v1 verifier key "name+hex8+base64(0x04 ‖ pub)" */
    char *url;           /* http(s):// prefix; checkpoints go to URL/add-checkpoint */
    int line, column;
} pt_witness;

#define PT_MAX_WITNESSES 16

typedef struct pt_policy_index pt_policy_index;

typedef struct pt_policy {
    int version;         /* schema version, 1 */
    char *lab_id, *lab_name, *lab_url;  /* lab_url may be NULL */
    pt_pmodel *models;   size_t n_models;
    pt_tier *tiers;     size_t n_tiers;
    pt_org *orgs;       size_t n_orgs;
    pt_grant *grants;   size_t n_grants;
    pt_forbid *forbids; size_t n_forbids;
    pt_witness *witnesses; size_t n_witnesses;
    int64_t witness_quorum; /* 0 when the policy names no witnesses, else 1..n_witnesses */
    pt_policy_index *index;  /* built by parse; lookups by organisation x model */
} pt_policy;

/* One revision of a policy history (policy/history.h loads them from the log; gap/gap.h
 * reports on them). */
typedef struct {
    int64_t time;              /* when the revision took effect (its log entry's time) */
    const pt_policy *policy;   /* borrowed */
    const char *digest;        /* "sha256:<hex>", may be NULL */
    uint64_t seq;              /* the revision's sequence number in the log */
    int witnessed;             /* 1: time is max(the stated time, when a quorum of witnesses had
                                  cosigned a checkpoint holding it) — pt_policy_history_witness */
    int64_t stated_time;       /* when witnessed: the time its log entry states */
} pt_policy_revision;

/* The one rule for which revision is in force at `at`, used by the server, the report, `parity
 * policy explain --data` and pt_policy_in_force (history.h): the last of revs (log order, times
 * not decreasing) whose time is <= at. Returns its index, or n when none is in force yet (at is
 * before the first). *next (may be NULL) gets the time of the first revision dated after at
 * (when the answer next changes), INT64_MAX if there is none. */
size_t pt_policy_revision_in_force(const pt_policy_revision *revs, size_t n, int64_t at, int64_t *next);

/* Parses and validates a policy from text. `what` names the source in messages (a file name).
 * Returns a new policy (pt_policy_free) or NULL with err filled (PT_EFORMAT for bad syntax or
 * schema, PT_ENOMEM). The text may be YAML or JSON; it need not be NUL-terminated. */
pt_policy *pt_policy_parse(const char *text, size_t len, const char *what, pt_err *err);
/* Reads and parses a file (at most 16 MiB). */
pt_policy *pt_policy_load(const char *path, pt_err *err);
void pt_policy_free(pt_policy *p);  /* NULL is a no-op */

/* Lookups: NULL if there is none. Borrowed pointers into p. */
const pt_pmodel *pt_policy_model(const pt_policy *p, const char *id);
const pt_org *pt_policy_org(const pt_policy *p, const char *id);
const pt_tier *pt_policy_tier(const pt_policy *p, const char *id);
const pt_variant *pt_model_variant(const pt_pmodel *m, const char *id);

/* ---- decision ---- */

/* What the caller has used so far; a field < 0 is not checked. */
typedef struct {
    int64_t requests_last_minute;  /* requests already made in the current minute */
    int64_t tokens_today;          /* tokens already used today (plus this request's, if known) */
    int64_t running_finetune_jobs; /* jobs already running (checked for `finetune`) */
    int64_t logprobs_top_k;        /* top-k asked for (checked for `logprobs`) */
} pt_usage;
/* Usage with every field "not checked". */
pt_usage pt_usage_none(void);

typedef enum {
    PT_ALLOW = 0,
    PT_DENY_UNKNOWN_ORG,       /* the organisation is not in the policy */
    PT_DENY_UNKNOWN_MODEL,     /* the model is not in the policy */
    PT_DENY_UNKNOWN_VARIANT,   /* the model has no such variant */
    PT_DENY_NO_GRANT,          /* no grant for this organisation covers this model */
    PT_DENY_NOT_YET_OPEN,      /* a grant covers it, but its window opens later */
    PT_DENY_EXPIRED,           /* a grant covered it, but its window has closed */
    PT_DENY_FORBIDDEN,         /* a forbid rule matches (overrides every grant) */
    PT_DENY_CAPABILITY,        /* grants in force, but none includes the capability */
    PT_DENY_LIMIT,             /* a grant includes it, but a limit is exceeded */
} pt_reason;
/* A short stable name: "allow", "unknown_organisation", "no_grant", "not_yet_open",
 * "expired", "forbidden", "capability_not_in_tier", "limit_exceeded", ... */
const char *pt_reason_name(pt_reason r);

typedef struct {
    int allow;                 /* 1 allow, 0 deny */
    pt_reason reason;
    const pt_grant *grant;     /* the grant that allowed it, or that got furthest (may be NULL) */
    const pt_forbid *forbid;   /* the forbid that matched, for PT_DENY_FORBIDDEN */
    char message[512];         /* one human-readable sentence */
} pt_decision;

/* Decides whether org may use capability cap on model (variant may be NULL) at time `at` with
 * the given usage (NULL: not checked). Deny by default. Never fails; fills *d.
 * Order of checks: organisation, model, variant known; forbids (they override grants); then
 * among the organisation's grants whose pattern matches the model, in document order, the
 * first that is in force and includes the capability (and `unmitigated` for an unmitigated
 * variant) allows it, if the usage is within the effective limits of (org, model) (see
 * pt_policy_effective; else PT_DENY_LIMIT). Otherwise the reason is the furthest any grant
 * got: no grant < not yet open / expired < capability not in tier. */
void pt_policy_decide(const pt_policy *p, const char *org, const char *model, const char *variant,
                      pt_cap cap, int64_t at, const pt_usage *usage, pt_decision *d);

/* The effective limits and capabilities for (org, model) at time `at`: over the grants in force
 * (and not wholly forbidden), capabilities are united (minus forbidden ones) and each limit is
 * the largest number any of them states (PT_UNLIMITED only when none states one: a grant
 * that states no rate limit does not lift another's). Returns 1 if any grant is in force,
 * else 0 (and *caps = 0, limits all 0). Either output pointer may be NULL. The server uses
 * these for rate limiting and the log-probs cap; pt_policy_decide checks usage against them. */
int pt_policy_effective(const pt_policy *p, const char *org, const char *model, int64_t at,
                        pt_capset *caps, pt_limits *limits);
/* The first time after `at` at which a grant or forbid starts or ends: what any decision or
 * pt_policy_effective answer depends on is the same for every time in [at, that). PT_TIME_MAX
 * when nothing changes after at. (Caches of per-organisation answers key on it.) */
int64_t pt_policy_next_change(const pt_policy *p, int64_t at);
/* Index of an organisation in p->orgs, or -1. */
long pt_policy_org_ix(const pt_policy *p, const char *id);
/* Does model id match pattern (a grant's or forbid's model glob; NULL matches everything)? */
int pt_policy_pattern_match(const char *pattern, const char *model);

/* ---- what each use of a model is charged ----
 *
 * One table (docs/policy.md, "What each use is charged") says which capabilities, and which
 * limits, every way of getting something from a model costs; every route decides through it, so
 * the same effect costs the same on every route. A use is charged all of its rows. */
typedef enum {
    PT_USE_CHAT = 0,      /* sampled text from a conversation in the model's chat template */
    PT_USE_COMPLETION,    /* sampled text continuing caller-chosen raw text or token ids
                           * (/v1/completions, and trace's "generate") */
    PT_USE_TOP_LOGPROBS,  /* the top-k log-probs of each position (k asked) */
    PT_USE_READ,          /* an activation hook's values on the caller's input */
    PT_USE_READ_LOGITS,   /* the "logits" hook: the whole log-probability vector of every position
                           * of the caller's input, i.e. top-k log-probs with k = the vocabulary */
    PT_USE_WRITE,         /* an intervention at a hook */
    PT_USE_COUNT
} pt_use;

/* One row: a capability, and the log-probs top-k it is charged with (-1: none). */
typedef struct {
    pt_cap cap;
    int64_t logprobs_top_k;
} pt_charge;
#define PT_CHARGE_MAX 4

/* The rows use is charged into out[PT_CHARGE_MAX]; k is the top-k asked (PT_USE_TOP_LOGPROBS)
 * or the vocabulary size (PT_USE_READ_LOGITS), unused otherwise. Returns how many rows (0 for an
 * out-of-range use). */
int pt_policy_charge(pt_use use, int64_t k, pt_charge out[PT_CHARGE_MAX]);
/* What reading (write = 0) or writing (write = 1) the hook named `hook` is: PT_USE_READ_LOGITS
 * for reading "logits", else PT_USE_READ or PT_USE_WRITE. */
pt_use pt_policy_hook_use(const char *hook, int write);
/* "chat", "completion", "top_logprobs", "read", "read_logits", "write"; NULL when out of range. */
const char *pt_use_name(pt_use use);

/* ---- canonical form ---- */

/* The policy as a JSON value in the document schema (a new reference), with every tier
 * spelt out (predefined ones too) and times as "YYYY-MM-DDTHH:MM:SSZ". Parsing this JSON gives
 * back an equal policy. NULL only on allocation failure. */
json_t *pt_policy_to_json(const pt_policy *p);

/* RFC 8785 JSON Canonicalization Scheme of p's JSON form into a new NUL-terminated string
 * (caller frees), and its digest "sha256:<64 hex>" into digest (72 bytes). */
int pt_policy_canonical(const pt_policy *p, char **out, size_t *len, char digest[72], pt_err *err);

/* ---- semantic diff ---- */

/* Human-readable change lines from a to b (a may be NULL: everything is "added"), e.g.
 *   "organisation evals-inc: grant g-evals on parity-demo widened: +logprobs; until 2026-06-01 -> 2026-09-01"
 * Returns a new JSON array of strings (empty when the policies mean the same). */
json_t *pt_policy_diff(const pt_policy *a, const pt_policy *b);

#endif
