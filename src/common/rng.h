/* rng.h — the one deterministic PRNG: xoshiro256** with its state seeded by splitmix64(seed),
 * so a seed gives the same sequence on every machine. The sampler (engine/sample.h), weight
 * and adapter initialisation, data order and dropout masks (train/) all draw from it; the
 * whole state is 4 words (training checkpoints save it).
 */
#ifndef PARITY_COMMON_RNG_H
#define PARITY_COMMON_RNG_H

#include <stdint.h>

typedef struct pt_rng {
    uint64_t s[4];
} pt_rng;

void pt_rng_seed(pt_rng *r, uint64_t seed);
uint64_t pt_rng_next(pt_rng *r);
double pt_rng_uniform(pt_rng *r); /* [0, 1), 53 random bits */
/* Uniform in [0, n) (n > 0), without modulo bias. */
uint64_t pt_rng_below(pt_rng *r, uint64_t n);
/* Standard normal (Box-Muller; consumes two words). */
double pt_rng_normal(pt_rng *r);

/* splitmix64's output function of a counter z: the generator pt_rng_seed steps (z += γ
 * before each call), and a counter-based stream where any element is drawn on its own
 * (train's dropout masks: pt_splitmix64_mix(seed + i·γ)). */
#define PT_SPLITMIX64_GAMMA 0x9E3779B97F4A7C15ull
static inline uint64_t pt_splitmix64_mix(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

#endif
