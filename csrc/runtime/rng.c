/* rng.c -- xoshiro256** (Blackman & Vigna) seeded through splitmix64.
 * Every use draws from its own stream keyed by (seed, purpose, epoch,
 * shard), so results never depend on how work was spread over threads. */
#include "runtime/runtime.h"

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

void rmf_rng_seed(rmf_rng *rng, uint64_t seed, uint64_t stream)
{
    /* Mixing the stream through splitmix64 before combining keeps nearby
     * (seed, stream) pairs far apart in state space. */
    uint64_t x = seed;
    uint64_t y = stream;
    x ^= splitmix64(&y);
    for (int k = 0; k < 4; k++)
        rng->s[k] = splitmix64(&x);
    if ((rng->s[0] | rng->s[1] | rng->s[2] | rng->s[3]) == 0)
        rng->s[0] = 1; /* the all-zero state is a fixed point */
}

uint64_t rmf_stream_id(uint64_t purpose, uint64_t epoch, uint64_t shard)
{
    /* purpose: 8 bits, epoch: 24 bits, shard: 32 bits */
    return (purpose << 56) ^ ((epoch & 0xFFFFFFULL) << 32) ^ (shard & 0xFFFFFFFFULL);
}

/* rmf_rng_below's rare case (low bits of m below n): reject while they
 * are below 2^32 mod n (Lemire 2019). */
uint32_t rmf_rng_below_slow_(rmf_rng *rng, uint64_t m, uint32_t n)
{
    uint32_t low = (uint32_t)m;
    uint32_t threshold = (uint32_t)(-n) % n;
    while (low < threshold) {
        m = (uint64_t)(uint32_t)(rmf_rng_next(rng) >> 32) * n;
        low = (uint32_t)m;
    }
    return (uint32_t)(m >> 32);
}

uint64_t rmf_rng_below64(rmf_rng *rng, uint64_t n)
{
    if (n <= UINT32_MAX)
        return rmf_rng_below(rng, (uint32_t)n);
    /* Rejection on the smallest power-of-two mask covering n - 1. */
    uint64_t mask = n - 1;
    mask |= mask >> 1; mask |= mask >> 2; mask |= mask >> 4;
    mask |= mask >> 8; mask |= mask >> 16; mask |= mask >> 32;
    uint64_t x;
    do {
        x = rmf_rng_next(rng) & mask;
    } while (x >= n);
    return x;
}

void rmf_shuffle_i64(rmf_rng *rng, int64_t *a, int64_t n)
{
    for (int64_t k = n - 1; k > 0; k--) {
        int64_t r = (int64_t)rmf_rng_below64(rng, (uint64_t)k + 1);
        int64_t t = a[k];
        a[k] = a[r];
        a[r] = t;
    }
}
