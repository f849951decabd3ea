/* sample.c — next-token sampling and stop sequences. See sample.h. */
#include "engine/sample.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

struct pt_sampler {
    pt_sample_params p;
    size_t n;
    pt_rng rng;
    uint8_t *seen;  /* (n) 1 for tokens seen (repetition penalty) */
    float *work;    /* (n) transformed logits */
    int32_t *idx;   /* (n) sort scratch */
};

void pt_sample_params_default(pt_sample_params *p) {
    memset(p, 0, sizeof *p);
    p->temperature = 1.0f;
    p->top_p = 1.0f;
    p->repetition_penalty = 1.0f;
}

int pt_sample_params_check(const pt_sample_params *p, pt_err *err) {
    if (!(p->temperature >= 0) || isinf(p->temperature)) return pt_errf(err, PT_EINVAL, "temperature must be a finite number >= 0");
    if (p->top_k < 0) return pt_errf(err, PT_EINVAL, "top_k must be >= 0");
    if (!(p->top_p > 0 && p->top_p <= 1)) return pt_errf(err, PT_EINVAL, "top_p must be in (0, 1]");
    if (!(p->min_p >= 0 && p->min_p <= 1)) return pt_errf(err, PT_EINVAL, "min_p must be in [0, 1]");
    if (!(p->repetition_penalty > 0) || isinf(p->repetition_penalty)) return pt_errf(err, PT_EINVAL, "repetition_penalty must be a finite number > 0");
    if (p->n_bias > PT_SAMPLE_MAX_BIAS) return pt_errf(err, PT_EINVAL, "logit_bias has more than %d entries", PT_SAMPLE_MAX_BIAS);
    for (size_t i = 0; i < p->n_bias; i++) {
        if (p->bias_token[i] < 0) return pt_errf(err, PT_EINVAL, "logit_bias: token %d is negative", p->bias_token[i]);
        if (!(p->bias[i] >= -100 && p->bias[i] <= 100))
            return pt_errf(err, PT_EINVAL, "logit_bias: the bias of token %d must be in [-100, 100]", p->bias_token[i]);
    }
    return PT_OK;
}

/* ---- sampler ---- */

int pt_sampler_new(const pt_sample_params *params, size_t n_vocab, pt_sampler **out, pt_err *err) {
    *out = NULL;
    if (pt_sample_params_check(params, err)) return PT_EINVAL;
    if (!n_vocab || n_vocab > (1u << 26)) return pt_errf(err, PT_EINVAL, "vocabulary size %zu out of range", n_vocab);
    for (size_t i = 0; i < params->n_bias; i++)
        if ((size_t)params->bias_token[i] >= n_vocab)
            return pt_errf(err, PT_EINVAL, "logit_bias: token %d is not in the vocabulary of %zu", params->bias_token[i],
                           n_vocab);
    pt_sampler *s = calloc(1, sizeof *s);
    if (!s) return pt_errf(err, PT_ENOMEM, "out of memory");
    s->p = *params;
    s->n = n_vocab;
    s->seen = calloc(n_vocab, 1);
    s->work = malloc(n_vocab * sizeof *s->work);
    s->idx = malloc(n_vocab * sizeof *s->idx);
    if (!s->seen || !s->work || !s->idx) {
        pt_sampler_free(s);
        return pt_errf(err, PT_ENOMEM, "out of memory");
    }
    pt_rng_seed(&s->rng, params->seed);
    *out = s;
    return PT_OK;
}

void pt_sampler_free(pt_sampler *s) {
    if (!s) return;
    free(s->seen);
    free(s->work);
    free(s->idx);
    free(s);
}

void pt_sampler_accept(pt_sampler *s, int32_t token) {
    if (token >= 0 && (size_t)token < s->n) s->seen[token] = 1;
}

void pt_sampler_clear_seen(pt_sampler *s) { memset(s->seen, 0, s->n); }

void pt_sampler_reset(pt_sampler *s) {
    memset(s->seen, 0, s->n);
    pt_rng_seed(&s->rng, s->p.seed);
}

void pt_log_softmax(const float *logits, size_t n, float *out) {
    float mx = -INFINITY;
    for (size_t i = 0; i < n; i++)
        if (logits[i] > mx) mx = logits[i];
    double sum = 0;
    for (size_t i = 0; i < n; i++) sum += exp((double)logits[i] - mx);
    double lse = mx + log(sum);
    for (size_t i = 0; i < n; i++) out[i] = (float)((double)logits[i] - lse);
}

/* Sorts idx[0..m) by w descending, then ascending id: a total order, so the result never
 * depends on the sort algorithm. */
static int cmp_desc_r(const void *a, const void *b, void *ctx) {
    const float *w = ctx;
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    if (w[x] != w[y]) return w[x] > w[y] ? -1 : 1;
    return (x > y) - (x < y);
}
static void sort_desc(int32_t *idx, size_t m, const float *w) {
    qsort_r(idx, m, sizeof *idx, cmp_desc_r, (void *)w);
}

/* Transforms s->work in place (after the caller copied logits there); removed tokens become
 * -inf. Returns the argmax id for greedy (temperature 0), else -1. */
static int32_t transform(pt_sampler *s) {
    float *w = s->work;
    size_t n = s->n;
    const pt_sample_params *p = &s->p;
    for (size_t i = 0; i < p->n_bias; i++) w[p->bias_token[i]] += p->bias[i];
    if (p->repetition_penalty != 1.0f)
        for (size_t i = 0; i < n; i++)
            if (s->seen[i]) w[i] = w[i] < 0 ? w[i] * p->repetition_penalty : w[i] / p->repetition_penalty;
    if (p->temperature == 0) {
        int32_t best = 0;
        for (size_t i = 1; i < n; i++)
            if (w[i] > w[best]) best = (int32_t)i;
        return best;
    }
    if (p->temperature != 1.0f)
        for (size_t i = 0; i < n; i++) w[i] /= p->temperature;
    /* top-k: remove logits below the k-th largest (ties with it stay, as in HF) */
    size_t m = n; /* candidates: idx[0..m) sorted descending once sorted */
    int sorted = 0;
    if (p->top_k > 0 && (size_t)p->top_k < n) {
        for (size_t i = 0; i < n; i++) s->idx[i] = (int32_t)i;
        sort_desc(s->idx, n, w);
        sorted = 1;
        float kth = w[s->idx[p->top_k - 1]];
        m = (size_t)p->top_k;
        while (m < n && w[s->idx[m]] >= kth) m++;
        for (size_t i = m; i < n; i++) w[s->idx[i]] = -INFINITY;
    }
    if (p->top_p < 1.0f || p->min_p > 0) {
        float mx = -INFINITY;
        for (size_t i = 0; i < m; i++) {
            float v = sorted ? w[s->idx[i]] : w[i];
            if (v > mx) mx = v;
        }
        double z = 0;
        for (size_t i = 0; i < n; i++) z += exp((double)w[i] - mx);
        /* Only tokens that can survive need sorting. top-p: every token with probability below
         * (1 - top_p)/n is removed (they are the least likely and their total mass is below
         * 1 - top_p), so their mass starts the cumulative sum. min-p alone: below
         * min_p * p_max. Both cuts are exact, and make a 128k-vocabulary step cheap. */
        double cut = p->top_p < 1.0f ? log((1.0 - (double)p->top_p) / (double)n) + log(z) + mx
                                     : log((double)p->min_p) + mx;
        double dropped = 0;
        size_t c = 0;
        for (size_t i = 0; i < n; i++) {
            if (w[i] == -INFINITY) continue;
            if ((double)w[i] < cut) {
                dropped += exp((double)w[i] - mx) / z;
                w[i] = -INFINITY;
            } else {
                s->idx[c++] = (int32_t)i;
            }
        }
        sort_desc(s->idx, c, w);
        m = c;
        if (p->top_p < 1.0f) {
            /* HF: ascending cumulative probability; drop tokens whose cumulative mass, counted
             * from the least likely, is <= 1 - top_p; the most likely token always stays. */
            double cum = dropped, limit = 1.0 - (double)p->top_p;
            size_t keep = m;
            for (size_t i = m; i-- > 1;) {
                cum += exp((double)w[s->idx[i]] - mx) / z;
                if (cum <= limit) keep = i;
                else break;
            }
            for (size_t i = keep; i < m; i++) w[s->idx[i]] = -INFINITY;
            m = keep;
        }
        if (p->min_p > 0) {
            /* p_i < min_p * p_max  <=>  w_i - w_max < log(min_p) */
            double lim = log((double)p->min_p);
            size_t keep = m;
            for (size_t i = 1; i < m; i++)
                if ((double)w[s->idx[i]] - mx < lim) {
                    keep = i;
                    break;
                }
            for (size_t i = keep; i < m; i++) w[s->idx[i]] = -INFINITY;
        }
    }
    return -1;
}

static int check_row(const pt_sampler *s, const float *logits, pt_err *err) {
    int any = 0;
    for (size_t i = 0; i < s->n; i++) {
        float v = logits[i];
        if (isnan(v) || v == INFINITY) return pt_errf(err, PT_EINVAL, "logit %zu is %s", i, isnan(v) ? "NaN" : "+inf");
        any |= v != -INFINITY;
    }
    if (!any) return pt_errf(err, PT_EINVAL, "every logit is -inf");
    return PT_OK;
}

int pt_sampler_probs(pt_sampler *s, const float *logits, float *probs, pt_err *err) {
    if (check_row(s, logits, err)) return PT_EINVAL;
    memcpy(s->work, logits, s->n * sizeof *logits);
    int32_t g = transform(s);
    if (g >= 0) {
        memset(probs, 0, s->n * sizeof *probs);
        probs[g] = 1;
        return PT_OK;
    }
    float mx = -INFINITY;
    for (size_t i = 0; i < s->n; i++)
        if (s->work[i] > mx) mx = s->work[i];
    double z = 0;
    for (size_t i = 0; i < s->n; i++) z += exp((double)s->work[i] - mx);
    for (size_t i = 0; i < s->n; i++) probs[i] = (float)(exp((double)s->work[i] - mx) / z);
    return PT_OK;
}

int pt_sampler_sample(pt_sampler *s, const float *logits, size_t n_top, pt_sample_result *res, pt_err *err) {
    if (check_row(s, logits, err)) return PT_EINVAL;
    if (n_top > PT_SAMPLE_MAX_TOP) n_top = PT_SAMPLE_MAX_TOP;
    if (n_top > s->n) n_top = s->n;
    memcpy(s->work, logits, s->n * sizeof *logits);
    int32_t tok = transform(s);
    if (tok < 0) {
        float mx = -INFINITY;
        for (size_t i = 0; i < s->n; i++)
            if (s->work[i] > mx) mx = s->work[i];
        double z = 0;
        for (size_t i = 0; i < s->n; i++) z += exp((double)s->work[i] - mx);
        double u = pt_rng_uniform(&s->rng) * z, acc = 0;
        tok = -1;
        for (size_t i = 0; i < s->n; i++) {
            if (s->work[i] == -INFINITY) continue;
            tok = (int32_t)i; /* the last kept token absorbs rounding at the top end */
            acc += exp((double)s->work[i] - mx);
            if (u < acc) break;
        }
    }
    /* log-probs under the raw logits */
    float mx = -INFINITY;
    for (size_t i = 0; i < s->n; i++)
        if (logits[i] > mx) mx = logits[i];
    double z = 0;
    for (size_t i = 0; i < s->n; i++) z += exp((double)logits[i] - mx);
    double lse = mx + log(z);
    res->token = tok;
    res->logprob = (float)((double)logits[tok] - lse);
    res->n_top = n_top;
    /* top n_top by partial insertion: O(n * n_top), n_top <= 20 */
    size_t have = 0;
    for (size_t i = 0; i < s->n && n_top; i++) {
        float v = logits[i];
        if (have == n_top && v <= res->top[have - 1].logprob) continue;
        size_t j = have < n_top ? have++ : have - 1;
        while (j > 0 && res->top[j - 1].logprob < v) {
            res->top[j] = res->top[j - 1];
            j--;
        }
        res->top[j].token = (int32_t)i;
        res->top[j].logprob = v;
    }
    for (size_t i = 0; i < n_top; i++) res->top[i].logprob = (float)((double)res->top[i].logprob - lse);
    pt_sampler_accept(s, tok);
    return PT_OK;
}

/* ---- stop sequences ---- */

void pt_stop_check(const char *text, size_t len, const char *const *stops, size_t n_stops, pt_stop_result *r) {
    memset(r, 0, sizeof *r);
    r->stop_pos = len;
    for (size_t k = 0; k < n_stops; k++) {
        size_t sl = stops[k] ? strlen(stops[k]) : 0;
        if (!sl || sl > len) continue;
        const char *hit = memmem(text, len, stops[k], sl);
        if (hit && (size_t)(hit - text) < r->stop_pos) {
            r->stopped = 1;
            r->stop_pos = (size_t)(hit - text);
            r->which = k;
        }
    }
    if (r->stopped) {
        r->safe_len = r->stop_pos;
        return;
    }
    /* hold back the longest tail that is a proper prefix of a stop string */
    size_t hold = 0;
    for (size_t k = 0; k < n_stops; k++) {
        size_t sl = stops[k] ? strlen(stops[k]) : 0;
        for (size_t t = sl ? sl - 1 : 0; t > hold; t--)
            if (t <= len && !memcmp(text + len - t, stops[k], t)) {
                hold = t;
                break;
            }
    }
    size_t safe = len - hold;
    /* and an incomplete UTF-8 sequence: back up over continuation bytes to a lead byte */
    size_t i = safe, back = 0;
    while (i > 0 && back < 4 && ((unsigned char)text[i - 1] & 0xC0) == 0x80) i--, back++;
    if (i > 0) {
        unsigned char c = (unsigned char)text[i - 1];
        size_t need = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
        if (need > back + 1) safe = i - 1;
    }
    r->safe_len = safe;
}
