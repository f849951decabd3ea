/* see distill.h */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/fileio.h"
#include "common/util.h"
#include "engine/engine.h"
#include "engine/sample.h"
#include "train/distill.h"
#include "train/tokfile.h"

/* ---- the loss ---------------------------------------------------------------------------- */

/* Reverse KL(p_T‖q_T) of one row, in double: with a = log p − log q it is KL = Σ p·a / Σ p, and
 * its gradient for logit k is (p_k / Σp)·(a_k − KL) / T. For a peaked student (the top token's
 * p is 1 − 1e-9) the top logit's a_k − KL is a difference of two nearly equal numbers; written
 * against Σp (not 1) it does not move with the rounding of the log-partition, and in double the
 * remaining cancellation is exact enough (float32 here cost 2%, 51–61% on q/k projections).
 * *S is Σp, for the gradient. */
static double reverse_kl(const float *z, int V, float mx, double T, double lsT, const float *lq, double *S) {
    double s = 0, a = 0;
    for (int k = 0; k < V; k++) {
        double lp = ((double)z[k] - mx) / T - lsT, p = exp(lp);
        if (p > 0) s += p, a += p * (lp - lq[k]); /* +inf where the teacher has no mass */
    }
    *S = s;
    return a / s;
}

/* Four passes over the row (max, the two partition sums, the KL, the gradient) so that the
 * gradient can overwrite the logits in place without a scratch row. */
double pt_distill_row(float *z, int V, int32_t target, const float *lq, const pt_distill_loss *dl, float scale,
                      int backward) {
    /* forward KL: expf in float, sums in double (the gradient check against float64 torch holds
     * to 1e-6); reverse KL: double throughout (see reverse_kl). */
    const float invT = 1.f / dl->temperature;
    const double T = dl->temperature, alpha = dl->alpha;
    const int hard = alpha > 0 && target != PT_IGNORE_INDEX, rev = dl->reverse;
    float mx = -INFINITY;
    for (int k = 0; k < V; k++) mx = fmaxf(mx, z[k]);
    double s1 = 0, sT = 0;
    if (hard)
        for (int k = 0; k < V; k++) s1 += expf(z[k] - mx);
    for (int k = 0; k < V; k++) sT += rev ? exp(((double)z[k] - mx) / T) : (double)expf((z[k] - mx) * invT);
    const float lse1 = (float)(mx + log(s1)), lseT = (float)((double)mx * invT + log(sT));
    const double lsT = log(sT);
    double kl = 0, S = 1;
    if (!rev) {
        for (int k = 0; k < V; k++)
            if (lq[k] > -INFINITY) kl += (double)expf(lq[k]) * (lq[k] - (z[k] * invT - lseT));
    } else
        kl = reverse_kl(z, V, mx, T, lsT, lq, &S);
    double loss = (1 - alpha) * T * T * kl + (hard ? alpha * ((double)lse1 - z[target]) : 0);
    if (!backward) return loss;
    const double g = (1 - alpha) * T * scale;
    const float gf = (float)g, ga = (float)(alpha * scale);
    for (int k = 0; k < V; k++) {
        float d;
        if (rev) {
            double lp = ((double)z[k] - mx) / T - lsT, p = exp(lp);
            d = p > 0 ? (float)(g * (p / S) * (lp - lq[k] - kl)) : 0.f;
        } else
            d = gf * (expf(z[k] * invT - lseT) - expf(lq[k])); /* expf(-inf) = 0 */
        if (hard) d += ga * expf(z[k] - lse1);
        z[k] = d;
    }
    if (hard) z[target] -= ga;
    return loss;
}

void pt_distill_temper(const float *lp, int V, float T, float *out) {
    const double invT = 1.0 / T;
    float mx = -INFINITY;
    for (int k = 0; k < V; k++) mx = fmaxf(mx, lp[k]);
    double s = 0;
    for (int k = 0; k < V; k++)
        if (lp[k] > -INFINITY) s += exp(((double)lp[k] - mx) * invT);
    const double lse = (double)mx * invT + log(s);
    for (int k = 0; k < V; k++) out[k] = lp[k] > -INFINITY ? (float)((double)lp[k] * invT - lse) : -INFINITY;
}

/* ---- the top-k cache file ---------------------------------------------------------------- */

static uint32_t rd32(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }
static uint64_t rd64(const uint8_t *p) { return (uint64_t)rd32(p) | (uint64_t)rd32(p + 4) << 32; }
static float rdf(const uint8_t *p) {
    uint32_t u = rd32(p);
    float f;
    memcpy(&f, &u, 4);
    return f;
}
static void wr32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static void wr64(uint8_t *p, uint64_t v) { wr32(p, (uint32_t)v), wr32(p + 4, (uint32_t)(v >> 32)); }

uint64_t pt_topk_hash(const uint32_t *ids, uint64_t n) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (uint64_t i = 0; i < n; i++)
        for (int b = 0; b < 4; b++) h = (h ^ ((ids[i] >> (8 * b)) & 0xff)) * 0x100000001b3ull;
    return h;
}

int pt_topk_parse(const uint8_t *data, size_t len, const char *what, pt_topk *c, pt_err *err) {
    memset(c, 0, sizeof *c);
    if (len < PT_TOPK_HEADER || memcmp(data, PT_TOPK_MAGIC, 8))
        return pt_errf(err, PT_EFORMAT, "%s: offset 0: not a top-k cache (magic PTTOPK, 64-byte header)", what);
    if (rd32(data + 8) != 1) return pt_errf(err, PT_EFORMAT, "%s: offset 8: unsupported version %u", what, rd32(data + 8));
    if (rd32(data + 12) != PT_TOPK_HEADER)
        return pt_errf(err, PT_EFORMAT, "%s: offset 12: header size %u (expected 64)", what, rd32(data + 12));
    if (rd32(data + 44)) return pt_errf(err, PT_EFORMAT, "%s: offset 44: flags %u (expected 0)", what, rd32(data + 44));
    if (rd64(data + 56)) return pt_errf(err, PT_EFORMAT, "%s: offset 56: reserved field is not 0", what);
    c->n_tokens = rd64(data + 16), c->tokens_hash = rd64(data + 24);
    c->seq_len = rd32(data + 32), c->k = rd32(data + 36), c->vocab_size = rd32(data + 40);
    c->n_windows = rd64(data + 48);
    if (!c->vocab_size || c->vocab_size > PT_TOPK_MAX_VOCAB)
        return pt_errf(err, PT_EFORMAT, "%s: offset 40: vocab_size %u (1..%u)", what, c->vocab_size, PT_TOPK_MAX_VOCAB);
    if (!c->k || c->k > c->vocab_size)
        return pt_errf(err, PT_EFORMAT, "%s: offset 36: k %u (1..vocab_size %u)", what, c->k, c->vocab_size);
    if (!c->seq_len) return pt_errf(err, PT_EFORMAT, "%s: offset 32: seq_len 0", what);
    if (c->n_tokens < 1 || c->n_windows != (c->n_tokens - 1) / c->seq_len)
        return pt_errf(err, PT_EFORMAT, "%s: offset 48: n_windows %llu is not (n_tokens %llu - 1) / seq_len %u", what,
                       (unsigned long long)c->n_windows, (unsigned long long)c->n_tokens, c->seq_len);
    size_t rec = (size_t)c->k * 8, nrec, body;
    if (pt_mul_size((size_t)c->n_windows, c->seq_len, &nrec) || pt_mul_size(nrec, rec, &body) ||
        len - PT_TOPK_HEADER != body)
        return pt_errf(err, PT_EFORMAT, "%s: offset %zu: the file is %zu bytes; the header implies 64 + %llu·%u·%zu", what,
                       len, len, (unsigned long long)c->n_windows, c->seq_len, rec);
    uint32_t *seen = calloc(c->vocab_size, sizeof *seen);
    if (!seen) return pt_errf(err, PT_ENOMEM, "out of memory");
    int rc = PT_OK;
    const uint8_t *p = data + PT_TOPK_HEADER;
    for (size_t r = 0; r < nrec && !rc; r++, p += rec) {
        size_t off = (size_t)(p - data);
        double mass = 0;
        float prev = INFINITY;
        for (uint32_t j = 0; j < c->k; j++) {
            uint32_t id = rd32(p + 4 * j);
            float lp = rdf(p + 4 * ((size_t)c->k + j));
            if (id >= c->vocab_size) {
                rc = pt_errf(err, PT_EFORMAT, "%s: offset %zu: token id %u is not below vocab_size %u", what, off + 4 * j,
                             id, c->vocab_size);
                break;
            }
            if (seen[id] == (uint32_t)r + 1) { /* stamps wrap after 4G records: a missed duplicate, never a false one */
                rc = pt_errf(err, PT_EFORMAT, "%s: offset %zu: token id %u appears twice in record %zu", what, off + 4 * j,
                             id, r);
                break;
            }
            seen[id] = (uint32_t)r + 1;
            size_t lo = off + 4 * ((size_t)c->k + j);
            if (!isfinite(lp) || lp > 1e-3f) {
                rc = pt_errf(err, PT_EFORMAT, "%s: offset %zu: log-probability %g is not a finite value <= 0", what, lo,
                             (double)lp);
                break;
            }
            if (lp > prev) {
                rc = pt_errf(err, PT_EFORMAT, "%s: offset %zu: log-probabilities are not in decreasing order", what, lo);
                break;
            }
            prev = lp;
            mass += exp((double)lp);
        }
        if (!rc && mass > 1 + 1e-3)
            rc = pt_errf(err, PT_EFORMAT, "%s: offset %zu: record %zu has total probability %g > 1", what, off, r, mass);
    }
    free(seen);
    if (!rc) c->records = data + PT_TOPK_HEADER;
    return rc;
}

int pt_topk_open(const char *path, pt_topk *c, pt_err *err) {
    pt_map m = {0};
    memset(c, 0, sizeof *c);
    int rc = pt_map_open(&m, path, err);
    if (rc) return rc;
    if ((rc = pt_topk_parse(m.data ? m.data : (const uint8_t *)"", m.len, path, c, err))) {
        pt_map_close(&m);
        return rc;
    }
    c->map = m;
    return PT_OK;
}

void pt_topk_close(pt_topk *c) {
    if (!c) return;
    pt_map_close(&c->map);
    memset(c, 0, sizeof *c);
}

void pt_topk_row(const pt_topk *c, uint64_t w, uint32_t i, int renorm, float *out) {
    const uint32_t V = c->vocab_size, k = c->k;
    const uint8_t *p = c->records + ((size_t)w * c->seq_len + i) * (size_t)k * 8;
    double mass = 0;
    for (uint32_t j = 0; j < k; j++) mass += exp((double)rdf(p + 4 * ((size_t)k + j)));
    float rest = -INFINITY;
    if (!renorm && k < V && mass < 1) rest = (float)log((1 - mass) / (double)(V - k));
    for (uint32_t v = 0; v < V; v++) out[v] = rest;
    if (renorm) { /* log of the scaled probabilities: lp − log Σ */
        double ls = log(mass);
        for (uint32_t j = 0; j < k; j++) out[rd32(p + 4 * j)] = (float)((double)rdf(p + 4 * ((size_t)k + j)) - ls);
    } else
        for (uint32_t j = 0; j < k; j++) out[rd32(p + 4 * j)] = rdf(p + 4 * ((size_t)k + j));
}

/* Indices of the k largest of row[0..V) in decreasing order (ties: lower index first), by a
 * size-k min-heap: O(V log k). heap has k slots. */
static int worse(const float *row, int32_t a, int32_t b) { return row[a] < row[b] || (row[a] == row[b] && a > b); }
static void topk_select(const float *row, int V, int k, int32_t *heap) {
    int n = 0;
    for (int32_t v = 0; v < V; v++) {
        if (n < k) {
            int i = n++;
            heap[i] = v;
            while (i && worse(row, heap[i], heap[(i - 1) / 2])) {
                int32_t t = heap[i];
                heap[i] = heap[(i - 1) / 2], heap[(i - 1) / 2] = t, i = (i - 1) / 2;
            }
        } else if (worse(row, heap[0], v)) {
            heap[0] = v;
            for (int i = 0;;) {
                int l = 2 * i + 1, r = l + 1, m = i;
                if (l < n && worse(row, heap[l], heap[m])) m = l;
                if (r < n && worse(row, heap[r], heap[m])) m = r;
                if (m == i) break;
                int32_t t = heap[i];
                heap[i] = heap[m], heap[m] = t, i = m;
            }
        }
    }
    /* heap sort out: repeatedly move the worst to the end */
    for (int end = n - 1; end > 0; end--) {
        int32_t t = heap[0];
        heap[0] = heap[end], heap[end] = t;
        for (int i = 0;;) {
            int l = 2 * i + 1, r = l + 1, m = i;
            if (l < end && worse(row, heap[l], heap[m])) m = l;
            if (r < end && worse(row, heap[r], heap[m])) m = r;
            if (m == i) break;
            int32_t u = heap[i];
            heap[i] = heap[m], heap[m] = u, i = m;
        }
    }
}

/* The teacher on windows: B sequences of T tokens through the engine, every position's
 * log-softmax (T = 1) into lp (B·T·V). Shared by the cache writer and on-the-fly distillation
 * so that the two see the same numbers. */
typedef struct teacher {
    pt_engine *e;
    pt_seq **seqs;
    pt_step *steps;
    int max_b, T, V;
} teacher;

static void teacher_free(teacher *t) {
    if (t->seqs)
        for (int b = 0; b < t->max_b; b++) pt_seq_free(t->seqs[b]);
    free(t->seqs), free(t->steps);
    pt_engine_free(t->e);
    memset(t, 0, sizeof *t);
}

static int teacher_open(teacher *t, const char *path, int threads, int max_b, int T, int V, pt_err *err) {
    memset(t, 0, sizeof *t);
    int rc = pt_engine_open(path, threads, &t->e, err);
    if (rc) return rc;
    const pt_config *c = pt_engine_config(t->e);
    if (V && c->vocab_size != V)
        rc = pt_errf(err, PT_EINVAL, "%s: the teacher's vocabulary (%d) differs from the student's (%d)", path,
                     c->vocab_size, V);
    else if (c->max_pos < T)
        rc = pt_errf(err, PT_EINVAL, "%s: the teacher's context (%d) is shorter than seq_len %d", path, c->max_pos, T);
    t->max_b = max_b, t->T = T, t->V = c->vocab_size;
    if (!rc && (!(t->seqs = calloc((size_t)max_b, sizeof *t->seqs)) || !(t->steps = calloc((size_t)max_b, sizeof *t->steps))))
        rc = pt_errf(err, PT_ENOMEM, "out of memory");
    for (int b = 0; !rc && b < max_b; b++)
        if (!(t->seqs[b] = pt_seq_new(t->e, T))) rc = pt_errf(err, PT_ENOMEM, "out of memory");
    if (rc) teacher_free(t);
    return rc;
}

static int teacher_run(teacher *t, const int32_t *tokens, int B, float *lp, pt_err *err) {
    const size_t TV = (size_t)t->T * (size_t)t->V;
    for (int b = 0; b < B; b++) {
        pt_seq_reset(t->seqs[b]);
        t->steps[b] = (pt_step){t->seqs[b], tokens + (size_t)b * t->T, t->T, 1, lp + (size_t)b * TV};
    }
    int rc = pt_engine_forward(t->e, t->steps, B, err);
    if (rc) return rc;
    for (size_t r = 0; r < (size_t)B * t->T; r++) pt_log_softmax(lp + r * t->V, (size_t)t->V, lp + r * t->V);
    return PT_OK;
}

int pt_topk_write(const char *teacher_path, const char *data_bin, const char *out, uint32_t seq_len, uint32_t k,
                  int threads, int quiet, pt_err *err) {
    pt_tokfile tf = {0};
    teacher t = {0};
    FILE *f = NULL;
    float *lp = NULL;
    int32_t *tok = NULL, *heap = NULL;
    uint8_t *rec = NULL;
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", out, (long)getpid());
    int rc = pt_tokfile_open(data_bin, &tf, err);
    if (rc) return rc;
    const int B = 8;
    uint64_t nw = seq_len ? (tf.n_tokens ? (tf.n_tokens - 1) / seq_len : 0) : 0;
    if (!seq_len || seq_len > (1u << 20)) rc = pt_errf(err, PT_EINVAL, "seq_len must be 1..1048576");
    else if (!nw)
        rc = pt_errf(err, PT_EINVAL, "%s: %llu tokens do not make one window of seq_len %u (+1)", data_bin,
                     (unsigned long long)tf.n_tokens, seq_len);
    if (!rc) rc = teacher_open(&t, teacher_path, threads, B, (int)seq_len, 0, err);
    if (!rc && tf.vocab_size > (uint32_t)t.V)
        rc = pt_errf(err, PT_EINVAL, "%s: the dataset's vocabulary of %u is larger than the teacher's %d", data_bin,
                     tf.vocab_size, t.V);
    if (!rc && (!k || k > (uint32_t)t.V)) rc = pt_errf(err, PT_EINVAL, "k must be 1..%d (the teacher's vocabulary)", t.V);
    if (!rc && (uint32_t)t.V > PT_TOPK_MAX_VOCAB) rc = pt_errf(err, PT_EINVAL, "vocabulary %d is too large", t.V);
    const size_t TV = (size_t)seq_len * (size_t)t.V;
    if (!rc && (!(lp = malloc((size_t)B * TV * sizeof *lp)) || !(tok = malloc((size_t)B * seq_len * sizeof *tok)) ||
                !(heap = malloc(k * sizeof *heap)) || !(rec = malloc((size_t)k * 8))))
        rc = pt_errf(err, PT_ENOMEM, "out of memory");
    if (!rc && !(f = fopen(tmp, "wb"))) rc = pt_errf(err, PT_EIO, "%s: %s", tmp, strerror(errno));
    if (!rc) {
        uint8_t h[PT_TOPK_HEADER] = {0};
        memcpy(h, PT_TOPK_MAGIC, 8);
        wr32(h + 8, 1), wr32(h + 12, PT_TOPK_HEADER), wr64(h + 16, tf.n_tokens);
        wr64(h + 24, pt_topk_hash(tf.tokens, tf.n_tokens));
        wr32(h + 32, seq_len), wr32(h + 36, k), wr32(h + 40, (uint32_t)t.V), wr64(h + 48, nw);
        if (fwrite(h, 1, sizeof h, f) != sizeof h) rc = pt_errf(err, PT_EIO, "%s: write failed", tmp);
    }
    pt_progress pg;
    if (!rc && !quiet) pt_progress_start(&pg, "teacher top-k", nw);
    for (uint64_t w0 = 0; !rc && w0 < nw; w0 += B) {
        int nb = nw - w0 < (uint64_t)B ? (int)(nw - w0) : B;
        for (int b = 0; b < nb; b++)
            for (uint32_t i = 0; i < seq_len; i++) tok[(size_t)b * seq_len + i] = (int32_t)tf.tokens[(w0 + b) * seq_len + i];
        if ((rc = teacher_run(&t, tok, nb, lp, err))) break;
        for (size_t r = 0; r < (size_t)nb * seq_len && !rc; r++) {
            const float *row = lp + r * t.V;
            topk_select(row, t.V, (int)k, heap);
            for (uint32_t j = 0; j < k; j++) {
                wr32(rec + 4 * j, (uint32_t)heap[j]);
                float v = row[heap[j]];
                uint32_t u;
                memcpy(&u, &v, 4);
                wr32(rec + 4 * ((size_t)k + j), u);
            }
            if (fwrite(rec, 1, (size_t)k * 8, f) != (size_t)k * 8) rc = pt_errf(err, PT_EIO, "%s: write failed", tmp);
        }
        if (!quiet) pt_progress_update(&pg, w0 + (uint64_t)nb, NULL);
    }
    if (!quiet && !rc) pt_progress_finish(&pg);
    if (f) {
        if (!rc && (fflush(f) || fsync(fileno(f)))) rc = pt_errf(err, PT_EIO, "%s: %s", tmp, strerror(errno));
        if (fclose(f) && !rc) rc = pt_errf(err, PT_EIO, "%s: %s", tmp, strerror(errno));
        if (!rc && rename(tmp, out)) rc = pt_errf(err, PT_EIO, "%s: rename: %s", out, strerror(errno));
        if (!rc) rc = pt_fsync_dir_of(out, err);
        if (rc) unlink(tmp);
    }
    free(lp), free(tok), free(heap), free(rec);
    teacher_free(&t);
    pt_tokfile_close(&tf);
    return rc;
}

/* ---- the run ----------------------------------------------------------------------------- */

typedef struct dctx {
    const pt_distill_conf *dc;
    teacher t;       /* on the fly */
    pt_topk cache;   /* or cached */
    int V;
    float *lq;       /* (B·T, V) teacher log q_T */
} dctx;

static int hook_targets(void *ctx, const int32_t *tokens, const uint64_t *starts, int B, int T, pt_distill_loss *dl,
                        pt_err *err) {
    dctx *d = ctx;
    const size_t V = (size_t)d->V;
    if (d->cache.records) {
        for (int b = 0; b < B; b++)
            for (int i = 0; i < T; i++)
                pt_topk_row(&d->cache, starts[b] / (uint64_t)T, (uint32_t)i, d->dc->topk_renorm,
                            d->lq + ((size_t)b * T + i) * V);
    } else {
        int rc = teacher_run(&d->t, tokens, B, d->lq, err);
        if (rc) return rc;
    }
    for (size_t r = 0; r < (size_t)B * T; r++) pt_distill_temper(d->lq + r * V, (int)V, d->dc->temperature, d->lq + r * V);
    *dl = (pt_distill_loss){d->lq, d->dc->temperature, d->dc->alpha, d->dc->reverse};
    return PT_OK;
}

int pt_distill_run(const pt_train_conf *tc, int resume, int quiet, pt_train_result *res, pt_err *err) {
    const pt_distill_conf *dc = &tc->distill;
    dctx d = {.dc = dc, .V = tc->model.vocab_size};
    char p[4200];
    int rc = PT_OK;
    if (!dc->teacher) return pt_errf(err, PT_EINVAL, "no teacher: give --teacher DIR or distill: teacher:");
    if (dc->cache) {
        pt_tokfile tf = {0};
        snprintf(p, sizeof p, "%s/train.bin", tc->data);
        if ((rc = pt_tokfile_open(p, &tf, err))) return rc;
        snprintf(p, sizeof p, "%s/train.topk.bin", tc->data);
        rc = pt_topk_open(p, &d.cache, err);
        if (rc == PT_ENOTFOUND)
            rc = pt_errf(err, PT_ENOTFOUND, "%s: no teacher cache; write it with `parity distill cache`", p);
        if (!rc && (d.cache.n_tokens != tf.n_tokens || d.cache.tokens_hash != pt_topk_hash(tf.tokens, tf.n_tokens)))
            rc = pt_errf(err, PT_EINVAL, "%s: was computed from a different token file than %s/train.bin", p, tc->data);
        else if (!rc && d.cache.seq_len != (uint32_t)tc->seq_len)
            rc = pt_errf(err, PT_EINVAL, "%s: was computed with seq_len %u; the config says %d", p, d.cache.seq_len,
                         tc->seq_len);
        else if (!rc && d.cache.vocab_size != (uint32_t)d.V)
            rc = pt_errf(err, PT_EINVAL, "%s: the teacher's vocabulary (%u) differs from the student's (%d)", p,
                         d.cache.vocab_size, d.V);
        pt_tokfile_close(&tf);
    } else
        rc = teacher_open(&d.t, dc->teacher, dc->teacher_threads ? dc->teacher_threads : tc->threads, tc->batch_size,
                          tc->seq_len, d.V, err);
    size_t n;
    if (!rc && (pt_mul_size((size_t)tc->batch_size * (size_t)tc->seq_len, (size_t)d.V * sizeof(float), &n) ||
                !(d.lq = malloc(n))))
        rc = pt_errf(err, PT_ENOMEM, "out of memory for the teacher's distributions");
    if (!rc) {
        pt_train_hook h = {hook_targets, &d};
        rc = pt_train_run_hook(tc, &h, resume, quiet, res, err);
    }
    free(d.lq);
    pt_topk_close(&d.cache);
    if (d.t.e) teacher_free(&d.t);
    return rc;
}
