/* sample.h — choosing the next token from one row of logits, and text-level stop sequences.
 *
 * The generation loop owns one pt_sampler per sequence and calls pt_sampler_sample() once per
 * step. The sampler applies the logit bias, then, in Hugging Face's order:
 *   repetition penalty (positive logits of already-seen tokens divided by the penalty,
 *   negative ones multiplied) → temperature → top-k → top-p → min-p,
 * and draws from what is left with its own PRNG (common/rng.h: xoshiro256**, seeded through
 * splitmix64), so a seed gives the same tokens on every machine; temperature 0 is greedy
 * (argmax, lowest id on ties). Log-probs are taken from the log-softmax of the raw logits over
 * the whole vocabulary, before any of the transforms above (what OpenAI-style logprobs report).
 */
#ifndef PARITY_ENGINE_SAMPLE_H
#define PARITY_ENGINE_SAMPLE_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "common/rng.h"

#define PT_SAMPLE_MAX_TOP 20
#define PT_SAMPLE_MAX_BIAS 300 /* logit_bias entries (OpenAI's limit) */

typedef struct pt_sample_params {
    float temperature;        /* 0: greedy; default 1 */
    int32_t top_k;            /* 0: off */
    float top_p;              /* 1: off; in (0, 1] */
    float min_p;              /* 0: off; in [0, 1] */
    float repetition_penalty; /* 1: off; > 0 */
    uint64_t seed;
    /* OpenAI's logit_bias: bias[i] (in [-100, 100]) is added to token[i]'s logit before every
     * other transform; it changes what is drawn, never the reported log-probs (those stay the
     * raw logits', so a bias cannot pull tokens into a capped top-k). */
    size_t n_bias;
    int32_t bias_token[PT_SAMPLE_MAX_BIAS];
    float bias[PT_SAMPLE_MAX_BIAS];
} pt_sample_params;

/* temperature 1, top_k 0, top_p 1, min_p 0, repetition_penalty 1, seed 0, no bias. */
void pt_sample_params_default(pt_sample_params *p);
/* PT_OK, or PT_EINVAL with a message naming the bad parameter (pt_sampler_new also checks that
 * every biased token is in the vocabulary). */
int pt_sample_params_check(const pt_sample_params *p, pt_err *err);

typedef struct pt_sampler pt_sampler;

/* A sampler for a vocabulary of n_vocab logits. params are copied. *out is owned by the caller
 * (pt_sampler_free). */
int pt_sampler_new(const pt_sample_params *params, size_t n_vocab, pt_sampler **out, pt_err *err);
void pt_sampler_free(pt_sampler *s); /* NULL-safe */
/* Records a token as seen, for the repetition penalty: call it for each prompt token;
 * pt_sampler_sample() records the tokens it picks. Out-of-range ids are ignored. */
void pt_sampler_accept(pt_sampler *s, int32_t token);
/* Forgets the seen tokens (the PRNG goes on). */
void pt_sampler_clear_seen(pt_sampler *s);
/* Forgets the seen tokens and reseeds the PRNG with the params' seed. */
void pt_sampler_reset(pt_sampler *s);

typedef struct pt_token_logprob {
    int32_t token;
    float logprob;
} pt_token_logprob;

typedef struct pt_sample_result {
    int32_t token;  /* the chosen token */
    float logprob;  /* its log-prob under the raw logits */
    size_t n_top;   /* the n_top most likely tokens under the raw logits, most likely first */
    pt_token_logprob top[PT_SAMPLE_MAX_TOP];
} pt_sample_result;

/* Picks the next token from logits (n_vocab floats, borrowed) and records it as seen.
 * n_top (≤ PT_SAMPLE_MAX_TOP) alternatives are reported in res->top. NaN or +inf logits, or
 * a row whose every logit is -inf, are PT_EINVAL. */
int pt_sampler_sample(pt_sampler *s, const float *logits, size_t n_top, pt_sample_result *res, pt_err *err);

/* The distribution pt_sampler_sample() draws from (after penalty, temperature, top-k, top-p,
 * min-p): probs (n_vocab, caller's) sums to 1, removed tokens are exactly 0. Greedy puts 1 on
 * the argmax. Does not draw or record anything. */
int pt_sampler_probs(pt_sampler *s, const float *logits, float *probs, pt_err *err);

/* log-softmax over n values (max-subtracted, accumulated in double). out may equal logits. */
void pt_log_softmax(const float *logits, size_t n, float *out);

/* Stop sequences, checked on the decoded text (so a stop string split across tokens is found).
 * Given the whole text generated so far and the stop strings:
 *   stopped = 1 when some stop string occurs; stop_pos is where the earliest one begins (the
 *     text to return is text[0, stop_pos)), which its index;
 *   otherwise safe_len is how much of the text can be emitted to a stream now: it holds back a
 *     tail that is a proper prefix of some stop string (it might still become one) and an
 *     incomplete UTF-8 sequence at the end.
 * Empty stop strings are ignored. */
typedef struct pt_stop_result {
    int stopped;
    size_t stop_pos;
    size_t which;
    size_t safe_len;
} pt_stop_result;
void pt_stop_check(const char *text, size_t len, const char *const *stops, size_t n_stops, pt_stop_result *r);

#endif
