/* rng.c — xoshiro256** seeded by splitmix64. See rng.h. */
#include "common/rng.h"

#include <math.h>

void pt_rng_seed(pt_rng *r, uint64_t seed) {
    for (int i = 0; i < 4; i++) r->s[i] = pt_splitmix64_mix(seed += PT_SPLITMIX64_GAMMA);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t pt_rng_next(pt_rng *r) {
    uint64_t *s = r->s;
    uint64_t out = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return out;
}

double pt_rng_uniform(pt_rng *r) { return (double)(pt_rng_next(r) >> 11) * 0x1.0p-53; }

uint64_t pt_rng_below(pt_rng *r, uint64_t n) {
    uint64_t lim = -n % n; /* 2^64 mod n: reject the short last bucket */
    for (;;) {
        uint64_t x = pt_rng_next(r);
        if (x >= lim) return x % n;
    }
}

double pt_rng_normal(pt_rng *r) {
    double u1 = ((pt_rng_next(r) >> 11) + 1) * 0x1.0p-53, u2 = (pt_rng_next(r) >> 11) * 0x1.0p-53;
    return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}
