/* nn/softmax_ce.c -- cross-entropy of the next item against an item table,
 * fused and chunked: RMF_CE_CHUNK rows' logits at a time (one sgemm), the
 * softmax and its gradient in place, then the two products back (dh and
 * dE) while the chunk is in cache.  The full rows x items logits matrix
 * (9.6k x 3.5k floats a batch on ML-1M: 135 MB, 4x the output layer's
 * weights) never exists.
 *
 * Full softmax is SASRec+ (Klenitskiy & Vasilev, RecSys 2023); the sampled
 * form scores the target against negatives shared by the rows of a batch
 * (as RecTools' sampled softmax and gSASRec's shared negatives), each
 * sequence's own items masked out of its negatives. */
#include "nn/seq.h"

#include <math.h>
#include <string.h>

/* ------------------------------------------------------------------ */
/* exp                                                                 */
/* ------------------------------------------------------------------ */

/* Cephes' expf (Moshier): n = round(x log2 e) by the 1.5 2^23 trick,
 * r = x - n ln2 in two pieces, a degree-6 polynomial, 2^n into the
 * exponent bits.  Written on 8-lane generic vectors (GCC does not
 * vectorize the scalar form under -ftrapping-math), the tail through one
 * padded vector: every element goes through the same lane arithmetic, no
 * contraction (C11 mode has no -ffp-contract=fast), so the bits do not
 * depend on the vector width.  Inputs below -87.3 (masked logits are
 * -inf) give 0. */
#if defined(__GNUC__)
typedef float v8f __attribute__((vector_size(32)));
typedef int32_t v8i __attribute__((vector_size(32)));

/* In place on p[0..8) (through memory: a vector argument or return value
 * would change the ABI between the clones). */
static inline __attribute__((always_inline)) void exp8(float *p)
{
    v8f v;
    memcpy(&v, p, sizeof v);
    const v8i low = v < -87.3f;
    v8f c = (v8f)(((v8i)v & ~low) | ((v8i)((v8f){0} - 87.3f) & low));
    const v8i high = c > 88.3f;
    c = (v8f)(((v8i)c & ~high) | ((v8i)((v8f){0} + 88.3f) & high));
    const v8f t = c * 1.44269504088896341f + 12582912.0f;
    const v8f k = t - 12582912.0f;
    v8f r = c - k * 0.693359375f;
    r = r - k * -2.12194440e-4f;
    const v8f z = r * r;
    v8f y = (v8f){0} + 1.9875691500e-4f;
    y = y * r + 1.3981999507e-3f;
    y = y * r + 8.3334519073e-3f;
    y = y * r + 4.1665795894e-2f;
    y = y * r + 1.6666665459e-1f;
    y = y * r + 5.0000001201e-1f;
    y = y * z + r + 1.0f;
    const v8i bits = (__builtin_convertvector(k, v8i) + 127) << 23;
    const v8f e = y * (v8f)bits;
    v = (v8f)((v8i)e & ~low);
    memcpy(p, &v, sizeof v);
}

RMF_CLONES
void rmf_exp_inplace(float *x, int64_t n)
{
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        exp8(x + i);
    if (i < n) {
        float t[8] = {0, 0, 0, 0, 0, 0, 0, 0};
        memcpy(t, x + i, (size_t)(n - i) * sizeof *x);
        exp8(t);
        memcpy(x + i, t, (size_t)(n - i) * sizeof *x);
    }
}

RMF_CLONES
float rmf_exp_shift_sum(float *x, int64_t n, float shift)
{
    v8f acc = {0, 0, 0, 0, 0, 0, 0, 0}, v;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        memcpy(&v, x + i, sizeof v);
        v -= shift;
        memcpy(x + i, &v, sizeof v);
        exp8(x + i);
        memcpy(&v, x + i, sizeof v);
        acc += v;
    }
    if (i < n) {
        /* padding lanes at -inf: exp gives 0, the sum is unchanged */
        float t[8] = {-INFINITY, -INFINITY, -INFINITY, -INFINITY,
                      -INFINITY, -INFINITY, -INFINITY, -INFINITY};
        for (int64_t k = i; k < n; k++)
            t[k - i] = x[k] - shift;
        exp8(t);
        memcpy(x + i, t, (size_t)(n - i) * sizeof *x);
        memcpy(&v, t, sizeof v);
        acc += v;
    }
    return rmf_lanes_tree_(&acc);
}
#else
void rmf_exp_inplace(float *x, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        x[i] = x[i] < -87.3f ? 0.0f : expf(x[i] > 88.3f ? 88.3f : x[i]);
}

float rmf_exp_shift_sum(float *x, int64_t n, float shift)
{
    for (int64_t i = 0; i < n; i++)
        x[i] -= shift;
    rmf_exp_inplace(x, n);
    return rmf_sum_lanes(x, n);
}
#endif

/* ------------------------------------------------------------------ */
/* Full softmax                                                        */
/* ------------------------------------------------------------------ */

int64_t rmf_softmax_ce_scratch(int32_t n_items) { return (int64_t)RMF_CE_CHUNK * n_items; }

/* Row of logits l (n_cand) whose target is column t: in place, the
 * gradient scale (softmax - onehot(t)); returns the row's loss. */
RMF_CLONES
static double softmax_row(float *l, int32_t n_cand, int32_t t, float scale)
{
    const float mx = rmf_max_lanes(l, n_cand);
    const float lt = l[t] - mx;
    const float s = rmf_exp_shift_sum(l, n_cand, mx);
    const float k = scale / s;
    for (int32_t j = 0; j < n_cand; j++)
        l[j] *= k;
    l[t] -= scale;
    return log((double)s) - (double)lt;
}

double rmf_softmax_ce(const float *h, int64_t n, int d, const float *E,
                      int32_t n_items, const int32_t *target, float scale,
                      float *dh, float *dE, float *scratch)
{
    double loss = 0.0;
    for (int64_t r0 = 0; r0 < n; r0 += RMF_CE_CHUNK) {
        const int64_t c = n - r0 < RMF_CE_CHUNK ? n - r0 : RMF_CE_CHUNK;
        const float *hc = h + r0 * d;
        rmf_sgemm(0, 1, c, n_items, d, 1.0f, hc, d, E, d, 0.0f, scratch, n_items);
        for (int64_t r = 0; r < c; r++)
            loss += softmax_row(scratch + r * n_items, n_items, target[r0 + r], scale);
        rmf_sgemm(0, 0, c, d, n_items, 1.0f, scratch, n_items, E, d, 0.0f, dh + r0 * d, d);
        rmf_sgemm(1, 0, n_items, d, c, 1.0f, scratch, n_items, hc, d, 1.0f, dE, d);
    }
    return loss;
}

/* ------------------------------------------------------------------ */
/* Sampled softmax                                                     */
/* ------------------------------------------------------------------ */

int64_t rmf_sampled_ce_scratch(int32_t n_neg)
{
    return (int64_t)RMF_CE_CHUNK * (n_neg + 1);
}

/* Candidates of row r: column 0 the target, columns 1.. the negatives. */
double rmf_sampled_ce(const float *h, int64_t n, int d, const float *E,
                      const int32_t *target, const int32_t *target_slot,
                      const float *Eneg, int32_t n_neg, const uint8_t *negmask,
                      const int32_t *seq_of_row, float scale, float *dh,
                      float *dE, float *dEneg, float *scratch)
{
    if (target_slot == NULL)
        target_slot = target;
    const int32_t w = n_neg + 1;
    double loss = 0.0;
    for (int64_t r0 = 0; r0 < n; r0 += RMF_CE_CHUNK) {
        const int64_t c = n - r0 < RMF_CE_CHUNK ? n - r0 : RMF_CE_CHUNK;
        const float *hc = h + r0 * d;
        /* negatives' logits in columns 1.. of each row */
        rmf_sgemm(0, 1, c, n_neg, d, 1.0f, hc, d, Eneg, d, 0.0f, scratch + 1, w);
        for (int64_t r = 0; r < c; r++) {
            float *l = scratch + r * w;
            const float *hr = hc + r * d;
            l[0] = rmf_dot_lanes(hr, E + (int64_t)target[r0 + r] * d, d);
            const uint8_t *mk = negmask + (int64_t)seq_of_row[r0 + r] * n_neg;
            for (int32_t j = 0; j < n_neg; j++)
                l[1 + j] = mk[j] ? -INFINITY : l[1 + j];
            loss += softmax_row(l, w, 0, scale);
        }
        rmf_sgemm(0, 0, c, d, n_neg, 1.0f, scratch + 1, w, Eneg, d, 0.0f, dh + r0 * d, d);
        rmf_sgemm(1, 0, n_neg, d, c, 1.0f, scratch + 1, w, hc, d, 1.0f, dEneg, d);
        for (int64_t r = 0; r < c; r++) {
            const float g = scratch[r * w];
            const float *Et = E + (int64_t)target[r0 + r] * d;
            float *dhr = dh + (r0 + r) * d, *dEt = dE + (int64_t)target_slot[r0 + r] * d;
            const float *hr = hc + r * d;
            for (int k = 0; k < d; k++) {
                dhr[k] += g * Et[k];
                dEt[k] += g * hr[k];
            }
        }
    }
    return loss;
}
