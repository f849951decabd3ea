/* witness_client.c — a writer's side of C2SP tlog-witness (tlog_cosign), and a reader's
 * (tlog_witnessed_load, tlog_check_quorum). See tlog.h. */
#include <curl/curl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/util.h"
#include "tlog/cosig.h"
#include "tlog/merkle.h"
#include "tlog/note.h"
#include "tlog/tlog.h"

#define MAX_ANSWER 4096

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static void curl_init_once(void) { curl_global_init(CURL_GLOBAL_DEFAULT); }

static size_t on_body(char *p, size_t size, size_t n, void *ctx) {
    size_t len = size * n;
    return pt_buf_append(ctx, p, len) == 0 ? len : 0;
}

/* POSTs body to URL/add-checkpoint; *status and the answer in *ans. */
static int post(CURL *c, const char *url, const pt_buf *body, double timeout_s, long *status, pt_buf *ans,
                pt_err *err) {
    pt_buf u;
    pt_buf_init(&u, 8192);
    size_t ul = strlen(url);
    while (ul && url[ul - 1] == '/') ul--;
    if (pt_buf_append(&u, url, ul) || pt_buf_puts(&u, "/add-checkpoint")) {
        pt_buf_free(&u);
        return pt_errf(err, PT_EINVAL, "witness URL too long");
    }
    char ebuf[CURL_ERROR_SIZE] = "";
    pt_buf_reset(ans);
    curl_easy_setopt(c, CURLOPT_URL, u.data);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body->data);
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)body->len);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, ans);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, ebuf);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)(timeout_s * 1000));
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_USERAGENT, "parity-tlog-witness-client/0.1");
    CURLcode cc = curl_easy_perform(c);
    *status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, status);
    int rc = cc == CURLE_OK ? PT_OK : pt_errf(err, PT_EIO, "%s: %s", u.data, ebuf[0] ? ebuf : curl_easy_strerror(cc));
    pt_buf_free(&u);
    return rc;
}

/* The request body: "old N", the proof from N to the checkpoint's size, blank, the note. */
static int request(tlog *t, uint64_t old, uint64_t size, const char *cp, size_t cp_len, pt_buf *b, pt_err *err) {
    uint8_t proof[TLOG_MAX_PROOF][TLOG_HASH_SIZE];
    size_t np = 0;
    int rc = old && old < size ? tlog_prove_consistency(t, old, size, proof, &np, err) : PT_OK;
    if (rc) return rc;
    pt_buf_reset(b);
    pt_buf_printf(b, "old %llu\n", (unsigned long long)old);
    for (size_t i = 0; i < np; i++) {
        char *s = note_b64_encode(proof[i], TLOG_HASH_SIZE);
        if (!s) return pt_errf(err, PT_ENOMEM, "out of memory");
        pt_buf_printf(b, "%s\n", s);
        free(s);
    }
    pt_buf_puts(b, "\n");
    return pt_buf_append(b, cp, cp_len) ? pt_errf(err, PT_ENOMEM, "out of memory") : PT_OK;
}

/* Adds "who: detail" to r->problems (truncated when full). */
static void problem(tlog_cosigning *r, const char *who, const char *detail) {
    size_t n = strlen(r->problems);
    snprintf(r->problems + n, sizeof r->problems - n, "%s%s: %s", n ? "; " : "", who, detail);
}

/* One witness: submit (retrying once after its 409 with the size it holds); on success the
 * verified cosignature line is appended to lines and its time stored. PT_EVERIFY only for a
 * witness ahead of the log. */
static int one_witness(CURL *c, tlog *t, const tlog_witness *w, const cosig_verifier *v, const char *cp, size_t cp_len,
                       uint64_t size, double timeout_s, uint64_t *time, pt_buf *lines, tlog_cosigning *r, pt_err *err) {
    pt_buf body, ans;
    pt_buf_init(&body, (size_t)1 << 21);
    pt_buf_init(&ans, MAX_ANSWER);
    uint64_t old = tlog_cosigned_size(t);
    if (old > size) old = 0;
    int rc = PT_OK;
    for (int attempt = 0; attempt < 2; attempt++) {
        long status;
        pt_err e;
        if ((rc = request(t, old, size, cp, cp_len, &body, err))) break;
        if (post(c, w->url, &body, timeout_s, &status, &ans, &e)) {
            problem(r, v->name, e.msg);
            break;
        }
        if (status == 409 && attempt == 0) {
            uint64_t held;
            char num[24];
            size_t k = ans.len < sizeof num - 1 ? ans.len : sizeof num - 1;
            memcpy(num, ans.data ? ans.data : "", k);
            num[k] = 0;
            while (k && (num[k - 1] == '\n' || num[k - 1] == '\r')) num[--k] = 0;
            if (pt_parse_u64(num, &held)) {
                problem(r, v->name, "409 without a size");
                break;
            }
            if (held > size) {
                rc = pt_errf(err, PT_EVERIFY, "witness %s has cosigned size %llu of %s, beyond this log's checkpoint of "
                             "size %llu: the checkpoint is older than what a witness cosigned (rolled back or forked); "
                             "the writer stops", v->name, (unsigned long long)held, tlog_origin(t),
                             (unsigned long long)size);
                break;
            }
            old = held;
            continue;
        }
        if (status != 200) {
            char msg[300];
            snprintf(msg, sizeof msg, "HTTP %ld: %.*s", status, (int)(ans.len > 200 ? 200 : ans.len), ans.data ? ans.data : "");
            problem(r, v->name, msg);
            break;
        }
        /* Check the line before counting it: the cosigned note is what readers verify. */
        pt_buf note;
        pt_buf_init(&note, (size_t)1 << 21);
        size_t tl = cosig_text_len(cp, cp_len);
        uint64_t tm = 0;
        pt_buf_append(&note, cp, tl);
        pt_buf_puts(&note, "\n");
        pt_buf_append(&note, ans.data, ans.len);
        int frc = ans.len > 1 ? cosig_find(note.data, note.len, v, 1, &tm, NULL, &e) : PT_EFORMAT;
        if (frc == PT_OK && tm) {
            /* keep only this witness's line */
            const char *p = ans.data, *end = ans.data + ans.len;
            while (p < end) {
                const char *nl = memchr(p, '\n', (size_t)(end - p));
                if (!nl) break;
                size_t nn = strlen(v->name);
                if ((size_t)(nl - p) > 4 + nn && !memcmp(p + 4, v->name, nn) && p[4 + nn] == ' ')
                    pt_buf_append(lines, p, (size_t)(nl + 1 - p));
                p = nl + 1;
            }
            *time = tm;
        } else {
            problem(r, v->name, frc == PT_OK || ans.len <= 1 ? "no cosignature by its key in the answer" : e.msg);
        }
        pt_buf_free(&note);
        break;
    }
    pt_buf_free(&body);
    pt_buf_free(&ans);
    return rc;
}

/* One witness's submission, run on its own thread: the witnesses are asked at once. */
typedef struct job {
    tlog *t;
    const tlog_witness *w;
    const cosig_verifier *v;
    const char *cp;
    size_t cp_len;
    uint64_t size;
    double timeout_s;
    uint64_t time;
    pt_buf lines;
    tlog_cosigning r;   /* only its problems are used */
    pt_err err;
    int rc;
} job;

static void *run_job(void *arg) {
    job *j = arg;
    CURL *curl = curl_easy_init();
    if (!curl) {
        j->rc = pt_errf(&j->err, PT_EINTERNAL, "curl_easy_init failed");
        return NULL;
    }
    j->rc = one_witness(curl, j->t, j->w, j->v, j->cp, j->cp_len, j->size, j->timeout_s, &j->time, &j->lines, &j->r,
                        &j->err);
    curl_easy_cleanup(curl);
    return NULL;
}

int tlog_cosign(tlog *t, const tlog_witness *ws, size_t n, size_t quorum, double timeout_s, tlog_cosigning *r,
                pt_err *err) {
    memset(r, 0, sizeof *r);
    if (n > TLOG_MAX_WITNESSES) return pt_errf(err, PT_EINVAL, "more than %d witnesses", TLOG_MAX_WITNESSES);
    cosig_verifier vs[TLOG_MAX_WITNESSES];
    for (size_t i = 0; i < n; i++)
        if (cosig_verifier_parse(ws[i].vkey, &vs[i], err)) return PT_EINVAL;
    char *cp;
    size_t cp_len;
    int rc = tlog_checkpoint(t, &cp, &cp_len, err);
    if (rc) return rc;
    size_t tl = cosig_text_len(cp, cp_len);
    checkpoint c;
    if (!tl || (rc = checkpoint_parse(cp, tl, &c, err))) {
        free(cp);
        return rc ? rc : pt_errf(err, PT_EINTERNAL, "checkpoint without signatures");
    }
    r->size = c.size;
    pthread_once(&curl_once, curl_init_once);
    job *jobs = calloc(n ? n : 1, sizeof *jobs);
    pthread_t th[TLOG_MAX_WITNESSES];
    int started[TLOG_MAX_WITNESSES] = {0};
    if (!jobs) {
        free(cp);
        return pt_errf(err, PT_ENOMEM, "out of memory");
    }
    for (size_t i = 0; i < n; i++) {
        jobs[i] = (job){.t = t, .w = &ws[i], .v = &vs[i], .cp = cp, .cp_len = cp_len, .size = c.size,
                        .timeout_s = timeout_s};
        pt_buf_init(&jobs[i].lines, (size_t)1 << 16);
        started[i] = pthread_create(&th[i], NULL, run_job, &jobs[i]) == 0;
        if (!started[i]) run_job(&jobs[i]);
    }
    pt_buf lines;
    pt_buf_init(&lines, (size_t)1 << 16);
    for (size_t i = 0; i < n; i++) { /* in the policy's order */
        if (started[i]) pthread_join(th[i], NULL);
        if (jobs[i].rc && !rc) {
            rc = jobs[i].rc;
            if (err) *err = jobs[i].err;
        }
        if (jobs[i].time) {
            r->times[i] = jobs[i].time;
            r->cosigned++;
            pt_buf_append(&lines, jobs[i].lines.data, jobs[i].lines.len);
        }
        if (jobs[i].r.problems[0]) {
            size_t k = strlen(r->problems);
            snprintf(r->problems + k, sizeof r->problems - k, "%s%s", k ? "; " : "", jobs[i].r.problems);
        }
        pt_buf_free(&jobs[i].lines);
    }
    free(jobs);
    free(cp);
    if (rc == PT_EVERIFY) tlog_stop(t, err ? err->msg : "a witness is ahead of the log");
    if (!rc && quorum && r->cosigned >= quorum) {
        pt_err e;
        int prc = tlog_publish_cosigned(t, c.size, lines.data, lines.len, &e);
        if (prc == PT_OK) r->published = 1;
        else if (prc != PT_ECONFLICT) { /* (moved on: the next round cosigns the newer one) */
            rc = prc;
            if (err) *err = e;
        }
    }
    pt_buf_free(&lines);
    return rc;
}

static int parse_wkeys(const char *const *wvkeys, size_t n, cosig_verifier *vs, pt_err *err) {
    if (n > TLOG_MAX_WITNESSES) return pt_errf(err, PT_EINVAL, "more than %d witnesses", TLOG_MAX_WITNESSES);
    for (size_t i = 0; i < n; i++)
        if (cosig_verifier_parse(wvkeys[i], &vs[i], err)) return PT_EFORMAT;
    return PT_OK;
}

int tlog_check_quorum(const char *note, size_t len, const char *const *wvkeys, size_t n, size_t quorum,
                      uint64_t *size, uint64_t *time, pt_err *err) {
    cosig_verifier vs[TLOG_MAX_WITNESSES];
    uint64_t times[TLOG_MAX_WITNESSES], t = 0;
    checkpoint c;
    size_t tl = cosig_text_len(note, len);
    int rc = parse_wkeys(wvkeys, n, vs, err);
    if (!rc && !tl) rc = pt_errf(err, PT_EFORMAT, "checkpoint: no signature lines");
    if (!rc) rc = checkpoint_parse(note, tl, &c, err);
    if (!rc) rc = cosig_find(note, len, vs, n, times, NULL, err);
    if (!rc) rc = cosig_quorum_time(times, n, quorum, &t, err);
    if (!rc && time) *time = t;
    if (!rc && size) *size = c.size;
    return rc;
}

int tlog_witnessed_load(const char *source, const char *vkey, const char *const *wvkeys, size_t n, size_t quorum,
                        uint64_t max_size, tlog_witnessed **out, size_t *nout, pt_err *err) {
    *out = NULL;
    *nout = 0;
    note_verifier lv;
    int rc = note_verifier_parse(vkey, &lv, err);
    if (rc) return rc;
    uint8_t *index;
    size_t ilen;
    rc = tlog_fetch(source, "cosigned/index", (size_t)1 << 26, &index, &ilen, err);
    if (rc == PT_ENOTFOUND) return PT_OK;
    if (rc) return rc;
    size_t cap = 0;
    tlog_witnessed *w = NULL;
    uint64_t last = 0;
    for (char *p = (char *)index, *nl; !rc && (nl = memchr(p, '\n', ilen - (size_t)(p - (char *)index))); p = nl + 1) {
        *nl = 0;
        uint64_t size;
        if (pt_parse_u64(p, &size)) {
            rc = pt_errf(err, PT_EFORMAT, "%s/cosigned/index: '%s' is not a size", source, p);
            break;
        }
        if (size > max_size || size <= last) continue; /* beyond the verified tree, or a repeat */
        char rel[64];
        snprintf(rel, sizeof rel, "cosigned/%llu", (unsigned long long)size);
        uint8_t *note;
        size_t len, tl;
        if ((rc = tlog_fetch(source, rel, TLOG_MAX_CHECKPOINT, &note, &len, err))) break;
        checkpoint c;
        uint64_t t = 0;
        pt_err e;
        if ((rc = note_open((char *)note, len, &lv, 1, &tl, NULL, err)) || (rc = checkpoint_parse((char *)note, tl, &c, err)))
            pt_err_prefix(err, "%s/%s", source, rel);
        else if (c.size != size)
            rc = pt_errf(err, PT_EVERIFY, "%s/%s: holds a checkpoint of size %llu", source, rel, (unsigned long long)c.size);
        else if ((rc = tlog_check_quorum((char *)note, len, wvkeys, n, quorum, NULL, &t, &e)) == PT_EVERIFY && !strstr(e.msg, "invalid"))
            rc = PT_OK, t = 0; /* without quorum: not a witnessed moment */
        else if (rc)
            rc = pt_errf(err, rc, "%s/%s: %s", source, rel, e.msg);
        free(note);
        if (rc || !t) continue;
        if (*nout == cap) {
            cap = cap * 2 + 16;
            tlog_witnessed *nw = realloc(w, cap * sizeof *w);
            if (!nw) {
                rc = pt_errf(err, PT_ENOMEM, "out of memory");
                break;
            }
            w = nw;
        }
        w[(*nout)++] = (tlog_witnessed){size, t};
        last = size;
    }
    free(index);
    if (rc) {
        free(w);
        *nout = 0;
        return rc;
    }
    *out = w;
    return PT_OK;
}

uint64_t tlog_witnessed_time(const tlog_witnessed *w, size_t n, uint64_t index) {
    uint64_t best = 0;
    for (size_t i = 0; i < n; i++)
        if (w[i].size > index && (!best || w[i].time < best)) best = w[i].time;
    return best;
}
