/* parity log — the transparency log: keys, checkpoints, entries, proofs, verification. */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "common/buf.h"
#include "common/fileio.h"
#include "common/json.h"
#include "common/util.h"
#include "tlog/tlog.h"

const char cmd_log_summary[] = "the transparency log: checkpoint, entries, proofs, verify any tlog-tiles log";

static void usage(FILE *f) {
    fprintf(f,
            "usage: parity log SUBCOMMAND [--data DIR] [--log NAME] [OPTIONS]\n"
            "\n"
            "The log DATA/log/NAME is a C2SP tlog-tiles directory (checkpoint, tile/...) that any\n"
            "static web server can publish; its signing key is DATA/keys/NAME.key (made on first use).\n"
            "\n"
            "subcommands:\n"
            "  vkey                          print the verifier key (NAME+KEYID+BASE64)\n"
            "  checkpoint                    print the latest signed checkpoint\n"
            "  append [--lines FILE|-]       append each line of FILE (or stdin) as one entry, in one\n"
            "                                batch; prints the index of the first\n"
            "  entries [--from N] [--count N] print entries, one per line: INDEX<TAB>TEXT\n"
            "                                (entries that are not one line of UTF-8: base64:...)\n"
            "  prove --index N [--size S]    inclusion proof of entry N in the tree of size S\n"
            "  prove --old-size M [--size S] consistency proof from size M to size S\n"
            "                                (S defaults to the current size; JSON output)\n"
            "  verify --vkey VKEY DIR_OR_URL [--trusted OLD_CHECKPOINT_FILE]\n"
            "         [--witness WVKEY ... --quorum N]\n"
            "                                verify any C2SP tlog-tiles log: the signature, every tile\n"
            "                                and entry bundle, the root, and consistency with an older\n"
            "                                trusted checkpoint; then list every entry\n"
            "                                (policy revisions as seq, time, digest; log_recovery\n"
            "                                entries in full); with --witness (repeated) the checkpoint\n"
            "                                must carry valid cosignatures by at least N of them\n"
            "                                (default N: all), and the time they prove is printed\n"
            "  recover                       the writer refuses a log whose checkpoint is missing or\n"
            "                                older than the entries on disk; this re-derives it from\n"
            "                                the entries (every tile hash checked), signs it, and\n"
            "                                appends a log_recovery entry that says so"
            "\n"
            "options:\n"
            "  --data DIR     data directory (default ./data)\n"
            "  --log NAME     log name (default policy)\n"
            "  --origin NAME  checkpoint origin / key name for a new log (default parity/NAME)\n"
            "\n"
            "exit status: 0 success, 1 failure (verification failed, bad input), 2 usage error\n");
}

typedef struct opts {
    const char *data, *log, *origin, *vkey, *trusted, *source, *lines;
    const char *witnesses[TLOG_MAX_WITNESSES];
    size_t n_witnesses;
    uint64_t quorum;
    int has_quorum;
    uint64_t from, count, index, size, old_size;
    int has_from, has_count, has_index, has_size, has_old;
} opts;

static int parse_num(const char *opt, const char *v, uint64_t *out) {
    if (!v || pt_parse_u64(v, out) != 0) return cli_usage_error("log", "%s needs a non-negative integer", opt);
    return 0;
}

static int parse_opts(int argc, char **argv, opts *o) {
    memset(o, 0, sizeof *o);
    o->data = "data";
    o->log = "policy";
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int rc = 0;
#define TAKE_STR(name, field)                                                          \
    if (!strcmp(a, name)) {                                                            \
        if (!v) return cli_usage_error("log", "%s needs a value", name);               \
        o->field = v;                                                                  \
        i++;                                                                           \
        continue;                                                                      \
    }
#define TAKE_NUM(name, field, flag)                                                    \
    if (!strcmp(a, name)) {                                                            \
        if ((rc = parse_num(name, v, &o->field))) return rc;                           \
        o->flag = 1;                                                                   \
        i++;                                                                           \
        continue;                                                                      \
    }
        TAKE_STR("--data", data)
        TAKE_STR("--log", log)
        TAKE_STR("--origin", origin)
        TAKE_STR("--vkey", vkey)
        TAKE_STR("--trusted", trusted)
        TAKE_STR("--lines", lines)
        TAKE_NUM("--from", from, has_from)
        TAKE_NUM("--count", count, has_count)
        TAKE_NUM("--index", index, has_index)
        TAKE_NUM("--size", size, has_size)
        TAKE_NUM("--old-size", old_size, has_old)
        TAKE_NUM("--quorum", quorum, has_quorum)
        if (!strcmp(a, "--witness")) {
            if (!v) return cli_usage_error("log", "--witness needs a witness verifier key");
            if (o->n_witnesses == TLOG_MAX_WITNESSES) return cli_usage_error("log", "at most %d witnesses", TLOG_MAX_WITNESSES);
            o->witnesses[o->n_witnesses++] = v;
            i++;
            continue;
        }
        if (a[0] == '-' && a[1]) return cli_usage_error("log", "unknown option '%s'", a);
        if (o->source) return cli_usage_error("log", "unexpected argument '%s'", a);
        o->source = a;
    }
    return 0;
}

static int open_log(const opts *o, tlog **t) {
    pt_err err;
    if (tlog_open(o->data, o->log, o->origin, t, &err) != 0) return cli_fail(&err);
    return 0;
}

static char *b64(const uint8_t *p, size_t n) {
    size_t cap = sodium_base64_encoded_len(n, sodium_base64_VARIANT_ORIGINAL);
    char *s = malloc(cap);
    if (s) sodium_bin2base64(s, cap, p, n, sodium_base64_VARIANT_ORIGINAL);
    return s;
}

/* One line of printable UTF-8 is shown as is; anything else as base64:... */
static int printable(const uint8_t *d, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (d[i] < 0x20 || d[i] == 0x7F) return 0;
    json_t *v = json_stringn((const char *)d, n); /* NULL if not valid UTF-8 */
    int ok = v != NULL;
    json_decref(v);
    return ok;
}

static void print_entry(pt_buf *out, uint64_t i, const uint8_t *d, size_t n) {
    if (printable(d, n)) {
        pt_buf_printf(out, "%llu\t%.*s\n", (unsigned long long)i, (int)n, (const char *)d);
    } else {
        char *s = b64(d, n);
        pt_buf_printf(out, "%llu\tbase64:%s\n", (unsigned long long)i, s ? s : "");
        free(s);
    }
}

static int cmd_append(const opts *o) {
    pt_err err;
    pt_buf in;
    pt_buf_init(&in, (size_t)1 << 30);
    FILE *f = !o->lines || !strcmp(o->lines, "-") ? stdin : fopen(o->lines, "rb");
    if (!f) {
        pt_errf(&err, PT_EIO, "%s: cannot open", o->lines);
        return cli_fail(&err);
    }
    char chunk[65536];
    size_t k;
    while ((k = fread(chunk, 1, sizeof chunk, f)) > 0)
        if (pt_buf_append(&in, chunk, k)) {
            pt_errf(&err, PT_ENOMEM, "input larger than 1 GiB");
            if (f != stdin) fclose(f);
            pt_buf_free(&in);
            return cli_fail(&err);
        }
    if (f != stdin) fclose(f);
    size_t n = 0, cap = 0;
    const void **data = NULL;
    size_t *lens = NULL;
    for (size_t p = 0; p < in.len;) {
        char *nl = memchr(in.data + p, '\n', in.len - p);
        size_t e = nl ? (size_t)(nl - in.data) : in.len;
        if (n == cap) {
            cap = cap * 2 + 64;
            data = realloc(data, cap * sizeof *data);
            lens = realloc(lens, cap * sizeof *lens);
            if (!data || !lens) return 1;
        }
        data[n] = in.data + p;
        lens[n++] = e - p;
        p = e + 1;
    }
    tlog *t;
    int rc = open_log(o, &t);
    uint64_t first = 0;
    /* witnessed logs: stop before appending to a rolled-back log; publish the new one cosigned */
    if (!rc) rc = cli_witness_any(o->data, t, "log append");
    if (!rc && tlog_append_batch(t, data, lens, n, &first, &err) != 0) rc = cli_fail(&err);
    if (!rc) printf("%llu\n", (unsigned long long)first);
    if (!rc) rc = cli_witness_any(o->data, t, "log append");
    tlog_close(t);
    free(data);
    free(lens);
    pt_buf_free(&in);
    return rc;
}

static int cmd_entries(const opts *o) {
    tlog *t;
    int rc = open_log(o, &t);
    if (rc) return rc;
    uint64_t size = tlog_size(t), end = size;
    if (o->has_count && o->from + o->count < end) end = o->from + o->count;
    pt_buf out;
    pt_buf_init(&out, 1 << 20);
    for (uint64_t i = o->from; i < end; i++) {
        uint8_t *d;
        size_t n;
        pt_err err;
        if (tlog_entry(t, i, &d, &n, &err) != 0) {
            tlog_close(t);
            return cli_fail(&err);
        }
        print_entry(&out, i, d, n);
        free(d);
        fwrite(out.data, 1, out.len, stdout);
        pt_buf_reset(&out);
    }
    pt_buf_free(&out);
    tlog_close(t);
    return 0;
}

static json_t *hashes_json(uint8_t (*h)[32], size_t n) {
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++) {
        char *s = b64(h[i], 32);
        json_array_append_new(a, json_string(s));
        free(s);
    }
    return a;
}

static json_t *hash_json(const uint8_t h[32]) {
    char *s = b64(h, 32);
    json_t *j = json_string(s);
    free(s);
    return j;
}

static int cmd_prove(const opts *o) {
    if (o->has_index == o->has_old)
        return cli_usage_error("log", "prove needs exactly one of --index N (inclusion) or --old-size M (consistency)");
    tlog *t;
    int rc = open_log(o, &t);
    if (rc) return rc;
    uint64_t size = o->has_size ? o->size : tlog_size(t);
    uint8_t proof[TLOG_MAX_PROOF][32], root[32], leaf[32], old_root[32];
    size_t n;
    pt_err err;
    json_t *j = json_object();
    if (o->has_index) {
        rc = tlog_prove_inclusion(t, o->index, size, proof, &n, leaf, &err);
        if (!rc) rc = tlog_root(t, size, root, &err);
        if (!rc) {
            json_object_set_new(j, "leafIdx", json_integer((json_int_t)o->index));
            json_object_set_new(j, "treeSize", json_integer((json_int_t)size));
            json_object_set_new(j, "root", hash_json(root));
            json_object_set_new(j, "leafHash", hash_json(leaf));
            json_object_set_new(j, "proof", hashes_json(proof, n));
        }
    } else {
        rc = tlog_prove_consistency(t, o->old_size, size, proof, &n, &err);
        if (!rc) rc = tlog_root(t, o->old_size, old_root, &err);
        if (!rc) rc = tlog_root(t, size, root, &err);
        if (!rc) {
            json_object_set_new(j, "size1", json_integer((json_int_t)o->old_size));
            json_object_set_new(j, "size2", json_integer((json_int_t)size));
            json_object_set_new(j, "root1", hash_json(old_root));
            json_object_set_new(j, "root2", hash_json(root));
            json_object_set_new(j, "proof", hashes_json(proof, n));
        }
    }
    tlog_close(t);
    if (rc) {
        json_decref(j);
        return cli_fail(&err);
    }
    char *s = json_dumps(j, JSON_INDENT(2));
    printf("%s\n", s);
    free(s);
    json_decref(j);
    return 0;
}

typedef struct vctx {
    pt_buf out;
    uint64_t revisions;
} vctx;

static int on_entry(void *ctx, uint64_t index, const uint8_t *data, size_t len) {
    vctx *v = ctx;
    json_t *j = NULL;
    if (len && data[0] == '{') j = json_loadb((const char *)data, len, JSON_REJECT_DUPLICATES, NULL);
    const char *type = j ? json_string_value(json_object_get(j, "type")) : NULL;
    int rc;
    if (type && !strcmp(type, "policy_revision")) {
        json_t *seq = json_object_get(j, "seq");
        const char *time = json_string_value(json_object_get(j, "time"));
        const char *digest = json_string_value(json_object_get(j, "digest"));
        rc = pt_buf_printf(&v->out, "%llu\tpolicy_revision seq=%lld time=%s digest=%s\n", (unsigned long long)index,
                           json_is_integer(seq) ? (long long)json_integer_value(seq) : -1LL, time ? time : "?",
                           digest ? digest : "?");
        v->revisions++;
    } else if (type && !strcmp(type, "log_recovery")) {
        rc = pt_buf_printf(&v->out, "%llu\t%.*s\n", (unsigned long long)index, (int)len, (const char *)data);
    } else if (type) {
        rc = pt_buf_printf(&v->out, "%llu\t%s (%zu bytes)\n", (unsigned long long)index, type, len);
    } else {
        size_t before = v->out.len;
        print_entry(&v->out, index, data, len);
        rc = v->out.len > before ? 0 : PT_ENOMEM;
    }
    json_decref(j);
    return rc != 0; /* stop if the listing outgrows its buffer */
}

static int cmd_verify(const opts *o) {
    if (!o->vkey) return cli_usage_error("log", "verify needs --vkey VKEY");
    if (!o->source) return cli_usage_error("log", "verify needs a directory or URL");
    pt_err err;
    char *trusted = NULL;
    size_t tlen;
    if (o->trusted && pt_read_file(o->trusted, TLOG_MAX_CHECKPOINT, &trusted, &tlen, &err) != 0) return cli_fail(&err);
    if (o->has_quorum && (!o->n_witnesses || o->quorum < 1 || o->quorum > o->n_witnesses))
        return cli_usage_error("log", "--quorum must be between 1 and the number of --witness keys");
    /* A quorum of witnesses must have cosigned the checkpoint that is verified: it is checked
     * first, and then the log must be consistent with it (it becomes the trusted checkpoint
     * when none is given). */
    char *witnessed = NULL;
    uint64_t wtime = 0;
    if (o->n_witnesses) {
        uint8_t *cp = NULL;
        size_t cplen;
        size_t q = o->has_quorum ? (size_t)o->quorum : o->n_witnesses;
        if (tlog_fetch(o->source, "checkpoint", TLOG_MAX_CHECKPOINT, &cp, &cplen, &err) ||
            tlog_check_quorum((const char *)cp, cplen, o->witnesses, o->n_witnesses, q, NULL, &wtime, &err)) {
            free(cp);
            free(trusted);
            fprintf(stderr, "parity log verify: FAILED: %s/checkpoint: %s\n", o->source, err.msg);
            return 1;
        }
        witnessed = (char *)cp;
        if (!trusted) trusted = witnessed, witnessed = NULL;
    }
    vctx v = {0};
    pt_buf_init(&v.out, (size_t)1 << 31);
    tlog_verified r;
    /* The listing is printed only once everything verified: entries are not to be trusted
     * before the root over all of them matched. */
    int rc = tlog_verify(o->source, o->vkey, trusted, on_entry, &v, &r, &err);
    free(trusted);
    free(witnessed);
    if (rc) {
        pt_buf_free(&v.out);
        fprintf(stderr, "parity log verify: FAILED: %s\n", err.msg);
        return 1;
    }
    if (v.out.len) fwrite(v.out.data, 1, v.out.len, stdout);
    pt_buf_free(&v.out);
    char *root = b64(r.root, 32);
    printf("verified: origin %s, size %llu, root %s", r.origin, (unsigned long long)r.size, root);
    if (o->trusted) printf(", consistent with the trusted checkpoint of size %llu", (unsigned long long)r.trusted_size);
    printf(" (%llu policy revisions)\n", (unsigned long long)v.revisions);
    if (o->n_witnesses) {
        char tb[21];
        printf("witnessed: a quorum of %llu of the %zu witnesses given had cosigned the checkpoint by %s\n",
               (unsigned long long)(o->has_quorum ? o->quorum : o->n_witnesses), o->n_witnesses,
               pt_format_time((int64_t)wtime, tb));
    }
    free(root);
    return 0;
}

static int cmd_recover(const opts *o) {
    pt_err err;
    tlog_recovery r;
    if (tlog_recover(o->data, o->log, &r, &err) != 0) return cli_fail(&err);
    tlog *t; /* the recovered checkpoint goes to the witnesses: one behind what they hold stops here */
    if (tlog_open(o->data, o->log, NULL, &t, &err) != 0) return cli_fail(&err);
    int rc = cli_witness_any(o->data, t, "log recover");
    tlog_close(t);
    if (rc) return rc;
    char prev[64];
    if (r.previous == TLOG_CP_VALID) snprintf(prev, sizeof prev, "size %llu", (unsigned long long)r.previous_size);
    else snprintf(prev, sizeof prev, "%s", r.previous == TLOG_CP_MISSING ? "missing" : "unreadable");
    printf("recovered %s/log/%s: the checkpoint was %s; re-derived size %llu from the entries on disk; "
           "recorded as log_recovery entry %llu\n", o->data, o->log, prev, (unsigned long long)r.size,
           (unsigned long long)r.entry_index);
    return 0;
}

int cmd_log(int argc, char **argv) {
    if (cli_wants_help(argc, argv)) {
        usage(stdout);
        return 0;
    }
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    opts o;
    int rc = parse_opts(argc, argv, &o);
    if (rc) return rc;
    const char *sub = argv[1];
    if (!strcmp(sub, "verify")) return cmd_verify(&o);
    if (o.source) return cli_usage_error("log", "unexpected argument '%s'", o.source);
    if (!strcmp(sub, "entries")) return cmd_entries(&o);
    if (!strcmp(sub, "append")) return cmd_append(&o);
    if (!strcmp(sub, "prove")) return cmd_prove(&o);
    if (!strcmp(sub, "recover")) return cmd_recover(&o);
    if (strcmp(sub, "vkey") && strcmp(sub, "checkpoint")) return cli_usage_error("log", "unknown subcommand '%s'", sub);
    /* Both read what is published, without the writer's lock, so they work while a server
     * holds the log. A log that does not exist yet is created (with its key) by the writer. */
    pt_err err;
    char *vk = NULL;
    if (tlog_read_vkey(o.data, o.log, &vk, &err) != PT_OK) {
        tlog *t;
        if ((rc = open_log(&o, &t))) return rc;
        tlog_close(t);
        if (tlog_read_vkey(o.data, o.log, &vk, &err) != PT_OK) return cli_fail(&err);
    }
    if (!strcmp(sub, "vkey")) {
        printf("%s\n", vk);
    } else {
        char rel[300], *path, *cp;
        size_t len;
        snprintf(rel, sizeof rel, "log/%s/checkpoint", o.log);
        path = pt_path_join(o.data, rel);
        rc = pt_read_file(path, TLOG_MAX_CHECKPOINT, &cp, &len, &err);
        free(path);
        if (rc) {
            free(vk);
            return cli_fail(&err);
        }
        fwrite(cp, 1, len, stdout);
        free(cp);
    }
    free(vk);
    return 0;
}
