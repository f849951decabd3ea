/* Sampler unit tests: PRNG known values and determinism, greedy ties, repetition-penalty
 * semantics, raw log-probs, parameter checks, and the stop-sequence helper. The distributions
 * themselves are checked against PyTorch in test_sample_torch.py. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "engine/sample.h"
#include "test.h"

static void test_rng_is_xoshiro256ss_from_splitmix64(void) {
    /* splitmix64 from seed 0 gives e220a8397b1dcdaf as its first output (the reference
     * implementation's published first value); xoshiro's first output follows from the state. */
    pt_rng r;
    pt_rng_seed(&r, 0);
    CHECK(r.s[0] == 0xe220a8397b1dcdafull);
    uint64_t s1 = r.s[1];
    uint64_t want = ((s1 * 5) << 7 | (s1 * 5) >> 57) * 9;
    CHECK(pt_rng_next(&r) == want);
    pt_rng a, b;
    pt_rng_seed(&a, 7);
    pt_rng_seed(&b, 7);
    int same = 1;
    for (int i = 0; i < 1000; i++) same &= pt_rng_next(&a) == pt_rng_next(&b);
    CHECK(same);
    double u = pt_rng_uniform(&a);
    CHECK(u >= 0 && u < 1);
}

static void test_same_seed_same_tokens(void) {
    pt_sample_params p;
    pt_sample_params_default(&p);
    p.seed = 99;
    p.top_p = 0.95f;
    float logits[64];
    for (int i = 0; i < 64; i++) logits[i] = sinf((float)i) * 2;
    pt_sampler *a, *b;
    CHECK(pt_sampler_new(&p, 64, &a, NULL) == PT_OK);
    CHECK(pt_sampler_new(&p, 64, &b, NULL) == PT_OK);
    int same = 1, distinct = 0, last = -1;
    for (int i = 0; i < 200; i++) {
        pt_sample_result ra, rb;
        CHECK(pt_sampler_sample(a, logits, 3, &ra, NULL) == PT_OK);
        CHECK(pt_sampler_sample(b, logits, 3, &rb, NULL) == PT_OK);
        same &= ra.token == rb.token;
        distinct += ra.token != last;
        last = ra.token;
    }
    CHECK(same);
    CHECK(distinct > 10); /* it really samples */
    pt_sampler_free(a);
    pt_sampler_free(b);
}

static void test_greedy_takes_lowest_id_on_ties_and_reports_raw_logprobs(void) {
    pt_sample_params p;
    pt_sample_params_default(&p);
    p.temperature = 0;
    float logits[5] = {1, 3, 3, -2, 0};
    pt_sampler *s;
    CHECK(pt_sampler_new(&p, 5, &s, NULL) == PT_OK);
    pt_sample_result r;
    CHECK(pt_sampler_sample(s, logits, 3, &r, NULL) == PT_OK);
    CHECK(r.token == 1);
    double lse = log(exp(1) + 2 * exp(3) + exp(-2) + exp(0));
    CHECK(fabs(r.logprob - (3 - lse)) < 1e-6);
    CHECK(r.n_top == 3 && r.top[0].token == 1 && r.top[1].token == 2 && r.top[2].token == 0);
    CHECK(fabs(r.top[2].logprob - (1 - lse)) < 1e-6);
    pt_sampler_free(s);
}

static void test_repetition_penalty_divides_positive_multiplies_negative(void) {
    pt_sample_params p;
    pt_sample_params_default(&p);
    p.temperature = 0;
    p.repetition_penalty = 2;
    /* token 0: 4 → 2 once seen, so token 1 (3) wins; token 2: -1 → -2 */
    float logits[3] = {4, 3, -1};
    pt_sampler *s;
    CHECK(pt_sampler_new(&p, 3, &s, NULL) == PT_OK);
    pt_sample_result r;
    CHECK(pt_sampler_sample(s, logits, 0, &r, NULL) == PT_OK && r.token == 0);
    CHECK(pt_sampler_sample(s, logits, 0, &r, NULL) == PT_OK && r.token == 1); /* 0 was recorded */
    float probs[3];
    p.temperature = 1;
    pt_sampler *t;
    CHECK(pt_sampler_new(&p, 3, &t, NULL) == PT_OK);
    pt_sampler_accept(t, 0);
    pt_sampler_accept(t, 2);
    pt_sampler_accept(t, 12345); /* out of range: ignored */
    CHECK(pt_sampler_probs(t, logits, probs, NULL) == PT_OK);
    double z = exp(2) + exp(3) + exp(-2);
    CHECK(fabs(probs[0] - exp(2) / z) < 1e-6 && fabs(probs[2] - exp(-2) / z) < 1e-6);
    pt_sampler_free(s);
    pt_sampler_free(t);
}

static void test_bad_params_and_rows(void) {
    pt_sample_params p;
    pt_sample_params_default(&p);
    pt_err err;
    p.top_p = 0;
    CHECK(pt_sample_params_check(&p, &err) == PT_EINVAL && strstr(err.msg, "top_p"));
    pt_sample_params_default(&p);
    p.temperature = NAN;
    pt_sampler *s;
    CHECK(pt_sampler_new(&p, 3, &s, &err) == PT_EINVAL && s == NULL);
    pt_sample_params_default(&p);
    CHECK(pt_sampler_new(&p, 3, &s, &err) == PT_OK);
    pt_sample_result r;
    float nan_row[3] = {0, NAN, 1}, inf_row[3] = {-INFINITY, -INFINITY, -INFINITY};
    CHECK(pt_sampler_sample(s, nan_row, 0, &r, &err) == PT_EINVAL && strstr(err.msg, "logit 1"));
    CHECK(pt_sampler_sample(s, inf_row, 0, &r, &err) == PT_EINVAL);
    float masked[3] = {-INFINITY, 0, -INFINITY}; /* -inf masks a token out */
    CHECK(pt_sampler_sample(s, masked, 0, &r, &err) == PT_OK && r.token == 1);
    pt_sampler_free(s);
    pt_sampler_free(NULL);
}

static void test_stop_strings(void) {
    const char *stops[] = {"</end>", "\n\nUser:", ""};
    pt_stop_result r;
    const char *t1 = "Hello there</end> and more";
    pt_stop_check(t1, strlen(t1), stops, 3, &r);
    CHECK(r.stopped && r.stop_pos == 11 && r.which == 0 && r.safe_len == 11);
    const char *t2 = "Hello\n\nUs"; /* might become "\n\nUser:" */
    pt_stop_check(t2, strlen(t2), stops, 3, &r);
    CHECK(!r.stopped && r.safe_len == 5);
    const char *t3 = "Hello </e";
    pt_stop_check(t3, strlen(t3), stops, 3, &r);
    CHECK(!r.stopped && r.safe_len == 6);
    const char *t4 = "plain text";
    pt_stop_check(t4, strlen(t4), stops, 3, &r);
    CHECK(!r.stopped && r.safe_len == strlen(t4));
    /* the earliest stop wins */
    const char *t5 = "a\n\nUser: b</end>";
    pt_stop_check(t5, strlen(t5), stops, 3, &r);
    CHECK(r.stopped && r.stop_pos == 1 && r.which == 1);
    /* an incomplete UTF-8 character at the end is held back */
    const char t6[] = "caf\xc3";
    pt_stop_check(t6, 4, stops, 2, &r);
    CHECK(!r.stopped && r.safe_len == 3);
    const char t7[] = "caf\xc3\xa9";
    pt_stop_check(t7, 5, stops, 2, &r);
    CHECK(r.safe_len == 5);
    const char t8[] = "x\xf0\x9f\x98";
    pt_stop_check(t8, 4, NULL, 0, &r);
    CHECK(r.safe_len == 1);
}

int main(void) {
    test_rng_is_xoshiro256ss_from_splitmix64();
    test_same_seed_same_tokens();
    test_greedy_takes_lowest_id_on_ties_and_reports_raw_logprobs();
    test_repetition_penalty_divides_positive_multiplies_negative();
    test_bad_params_and_rows();
    test_stop_strings();
    return test_summary("sample");
}
