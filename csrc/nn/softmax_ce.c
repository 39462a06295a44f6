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
#include "nn/nn.h"

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
typedef float v16f __attribute__((vector_size(64)));
typedef int32_t v16i __attribute__((vector_size(64)));

/* The lane arithmetic, for a vector v of type VF (lanes int VI), into e. */
#define EXP_LANES(VF, VI, v, e)                                                \
    do {                                                                       \
        const VI low_ = (v) < -87.3f;                                          \
        VF c_ = (VF)(((VI)(v) & ~low_) | ((VI)((VF){0} - 87.3f) & low_));       \
        const VI high_ = c_ > 88.3f;                                           \
        c_ = (VF)(((VI)c_ & ~high_) | ((VI)((VF){0} + 88.3f) & high_));         \
        const VF t_ = c_ * 1.44269504088896341f + 12582912.0f;                 \
        const VF k_ = t_ - 12582912.0f;                                        \
        VF r_ = c_ - k_ * 0.693359375f;                                        \
        r_ = r_ - k_ * -2.12194440e-4f;                                        \
        const VF z_ = r_ * r_;                                                 \
        VF y_ = (VF){0} + 1.9875691500e-4f;                                    \
        y_ = y_ * r_ + 1.3981999507e-3f;                                       \
        y_ = y_ * r_ + 8.3334519073e-3f;                                       \
        y_ = y_ * r_ + 4.1665795894e-2f;                                       \
        y_ = y_ * r_ + 1.6666665459e-1f;                                       \
        y_ = y_ * r_ + 5.0000001201e-1f;                                       \
        y_ = y_ * z_ + r_ + 1.0f;                                              \
        const VI bits_ = (__builtin_convertvector(k_, VI) + 127) << 23;        \
        (e) = (VF)((VI)(y_ * (VF)bits_) & ~low_);                              \
    } while (0)

/* In place on p[0..16), x - shift first (through memory: a vector
 * argument or return value would change the ABI between the clones).
 * 16 lanes fill AVX-512 registers and are two or four halves elsewhere:
 * the same bits per element either way. */
static inline __attribute__((always_inline)) void exp16(float *p, float shift)
{
    v16f v, e;
    memcpy(&v, p, sizeof v);
    v -= shift;
    EXP_LANES(v16f, v16i, v, e);
    memcpy(p, &e, sizeof e);
}

/* Widths up to 16 lanes: AVX-512 where the CPU has it (no result depends
 * on which clone runs: the work is elementwise and the sums are 8-lane). */
#if defined(__GNUC__) && defined(__x86_64__) && !defined(__clang__)
#define CLONES16 __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define CLONES16
#endif

/* x[i] = exp(x[i] - shift) over [0, n), returning their sum when sum.
 * The sum runs in 32 lanes (lane = index mod 32, two 16-lane
 * accumulators: one dependent add per accumulator every 32 elements, where
 * an 8-lane sum was bound by the adds' latency) combined in a fixed tree:
 * the same bits at any vector width. */
static inline __attribute__((always_inline)) float exp_pass(float *x, int64_t n, float shift,
                                                            int sum)
{
    v16f a0 = {0}, a1 = {0}, h;
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        exp16(x + i, shift);
        exp16(x + i + 16, shift);
        if (sum) {
            memcpy(&h, x + i, sizeof h);
            a0 += h;
            memcpy(&h, x + i + 16, sizeof h);
            a1 += h;
        }
    }
    if (i < n) {
        /* the tail through a padded block: padding at -inf gives 0 */
        float t[32];
        for (int k = 0; k < 32; k++)
            t[k] = i + k < n ? x[i + k] : -INFINITY;
        exp16(t, shift);
        exp16(t + 16, shift);
        memcpy(x + i, t, (size_t)(n - i) * sizeof *x);
        memcpy(&h, t, sizeof h);
        a0 += h;
        memcpy(&h, t + 16, sizeof h);
        a1 += h;
    }
    if (!sum)
        return 0.0f;
    float l[32];
    memcpy(l, &a0, sizeof a0);
    memcpy(l + 16, &a1, sizeof a1);
    for (int w = 16; w >= 1; w /= 2)
        for (int k = 0; k < w; k++)
            l[k] += l[k + w];
    return l[0];
}

CLONES16
void rmf_exp_inplace(float *x, int64_t n) { exp_pass(x, n, 0.0f, 0); }

/* max of x[0..n), n >= 1, 32 lanes at a time (a max is exact: any order
 * gives the same value). */
static inline __attribute__((always_inline)) float max16(const float *x, int64_t n)
{
    if (n < 32)
        return rmf_max_lanes(x, n);
    v16f m, m1, a;
    memcpy(&m, x, sizeof m);
    memcpy(&m1, x + 16, sizeof m1);
    int64_t i = 32;
    for (; i + 32 <= n; i += 32) {
        memcpy(&a, x + i, sizeof a);
        v16i gt = a > m;
        m = (v16f)(((v16i)a & gt) | ((v16i)m & ~gt));
        memcpy(&a, x + i + 16, sizeof a);
        gt = a > m1;
        m1 = (v16f)(((v16i)a & gt) | ((v16i)m1 & ~gt));
    }
    const v16i gt = m1 > m;
    m = (v16f)(((v16i)m1 & gt) | ((v16i)m & ~gt));
    float t[16];
    memcpy(t, &m, sizeof t);
    return rmf_max_finish_(t, 16, x, i, n);
}

CLONES16
float rmf_exp_shift_sum(float *x, int64_t n, float shift) { return exp_pass(x, n, shift, 1); }
#else
void rmf_exp_inplace(float *x, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        x[i] = x[i] < -87.3f ? 0.0f : expf(x[i] > 88.3f ? 88.3f : x[i]);
}

float rmf_exp_shift_sum(float *x, int64_t n, float shift)
{
    float l[32] = {0};
    for (int64_t i = 0; i < n; i++) {
        x[i] -= shift;
        rmf_exp_inplace(x + i, 1);
        l[i % 32] += x[i];
    }
    for (int w = 16; w >= 1; w /= 2)
        for (int k = 0; k < w; k++)
            l[k] += l[k + w];
    return l[0];
}

#define CLONES16
#define max16 rmf_max_lanes
static float exp_pass(float *x, int64_t n, float shift, int sum)
{
    float s = rmf_exp_shift_sum(x, n, shift);
    return sum ? s : 0.0f;
}
#endif

/* ------------------------------------------------------------------ */
/* Full softmax                                                        */
/* ------------------------------------------------------------------ */

/* Logits chunk, then per row its softmax factor and the rows scaled by it. */
int64_t rmf_softmax_ce_scratch(int32_t n_items)
{
    return (int64_t)RMF_CE_CHUNK * n_items + (int64_t)RMF_CE_CHUNK * (RMF_SEQ_MAX_DIM + 1);
}

/* Row of logits l (n_cand) whose target is column t: in place, the
 * gradient scale (softmax - onehot(t)); returns the row's loss.  For the
 * sampled form (few candidates). */
CLONES16
static double softmax_row(float *l, int32_t n_cand, int32_t t, float scale)
{
    const float mx = max16(l, n_cand);
    const float lt = l[t] - mx;
    const float s = exp_pass(l, n_cand, mx, 1);
    const float k = scale / s;
    for (int32_t j = 0; j < n_cand; j++)
        l[j] *= k;
    l[t] -= scale;
    return log((double)s) - (double)lt;
}

/* exp(l - shift) in place and its sum, shift = |h| max_j |E_j| >= every
 * logit (Cauchy-Schwarz): no exp overflows, and the row's max -- a whole
 * pass over the row -- is not needed.  A shift far above the row's max
 * would leave a sum too small to trust; then the row is computed again
 * from its dot products and shifted by its max.  *lt receives l[t] - the
 * shift used. */
CLONES16
static float exp_row_bounded(float *l, int32_t n, int32_t t, const float *h, const float *E,
                             int d, float shift, float *lt)
{
    *lt = l[t] - shift;
    float s = exp_pass(l, n, shift, 1);
    if (s >= 1e-30f)
        return s;
    for (int32_t j = 0; j < n; j++)
        l[j] = rmf_dot_lanes(h, E + (int64_t)j * d, d);
    const float mx = max16(l, n);
    *lt = l[t] - mx;
    return exp_pass(l, n, mx, 1);
}

/* Per row r of a chunk, with e_r = exp(l_r - shift_r) and s_r its sum,
 * dl_r = k_r e_r - scale onehot(t_r), k_r = scale / s_r.  The per-row
 * factor and the one-hot go around the two products instead of through
 * the logits (a read-modify-write pass over every row saved):
 *   dh_r = k_r (e E)_r - scale E[t_r],
 *   dE  += e^T (k h) - scale sum_r onehot(t_r)^T h_r. */
double rmf_softmax_ce(const float *h, int64_t n, int d, const float *E,
                      int32_t n_items, const int32_t *target, float scale,
                      float *dh, float *dE, float *scratch)
{
    float *L = scratch, *kh = scratch + (int64_t)RMF_CE_CHUNK * n_items;
    float *k = kh + (int64_t)RMF_CE_CHUNK * d;
    float emax = 0.0f;
    for (int32_t j = 0; j < n_items; j++) {
        const float *e = E + (int64_t)j * d;
        const float nj = rmf_dot_lanes(e, e, d);
        emax = nj > emax ? nj : emax;
    }
    emax = sqrtf(emax);
    double loss = 0.0;
    for (int64_t r0 = 0; r0 < n; r0 += RMF_CE_CHUNK) {
        const int64_t c = n - r0 < RMF_CE_CHUNK ? n - r0 : RMF_CE_CHUNK;
        const float *hc = h + r0 * d;
        rmf_sgemm(0, 1, c, n_items, d, 1.0f, hc, d, E, d, 0.0f, L, n_items);
        for (int64_t r = 0; r < c; r++) {
            const float *hr = hc + r * d;
            const float shift = sqrtf(rmf_dot_lanes(hr, hr, d)) * emax;
            float lt;
            const float s = exp_row_bounded(L + r * n_items, n_items, target[r0 + r], hr, E, d,
                                            shift, &lt);
            k[r] = scale / s;
            loss += log((double)s) - (double)lt;
            for (int q = 0; q < d; q++)
                kh[r * d + q] = k[r] * hr[q];
        }
        rmf_sgemm(0, 0, c, d, n_items, 1.0f, L, n_items, E, d, 0.0f, dh + r0 * d, d);
        rmf_sgemm(1, 0, n_items, d, c, 1.0f, L, n_items, kh, d, 1.0f, dE, d);
        for (int64_t r = 0; r < c; r++) {
            float *dhr = dh + (r0 + r) * d, *dEt = dE + (int64_t)target[r0 + r] * d;
            const float *Et = E + (int64_t)target[r0 + r] * d, *hr = hc + r * d;
            for (int q = 0; q < d; q++) {
                dhr[q] = k[r] * dhr[q] - scale * Et[q];
                dEt[q] -= scale * hr[q];
            }
        }
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
