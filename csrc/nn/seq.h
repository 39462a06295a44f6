/*
 * nn/seq.h -- the layers of a self-attentive sequence model (SASRec), each
 * with its forward and backward: layer norm (layernorm.c), dense layers and
 * the position-wise feed-forward block (ffn.c), causal multi-head
 * self-attention (attention.c), the softmax cross-entropy of the next item
 * against an item table, full or over sampled negatives (softmax_ce.c), and
 * dropout masks drawn from counter-based streams (here).
 *
 * The threading rule these layers keep: every function works on the rows
 * it is given on the calling thread, with BLAS on one thread (the caller
 * holds rmf_blas_single_begin), and sums over rows in row order.  A model
 * cuts a batch into parts fixed by the data (never by the team's size),
 * runs each part's layers on one thread into the part's own gradient
 * buffer, and adds the parts in part order: the weights a seed gives are
 * then bit-identical on any thread count.
 *
 * Row-major float arrays throughout; "accumulate" means += (gradients of
 * parameters are summed over rows and over calls), "write" means =.
 */
#ifndef RECMF_NN_SEQ_H
#define RECMF_NN_SEQ_H

#include "internal.h"

/* Widest row (emb_dim, feed-forward width) the layers take: row scratch
 * lives on the stack. */
#define RMF_SEQ_MAX_DIM 512

/* ------------------------------------------------------------------ */
/* Dropout from counter-based streams                                 */
/* ------------------------------------------------------------------ */
/*
 * Whether unit (row, col) of a dropout site is kept is a pure function of
 * (key, row, col): a hash, not a stream that must be replayed in order.
 * So the backward pass regenerates the forward's mask instead of storing
 * it, any part of the rows can be drawn alone (by any thread, in any
 * order), and a site's mask depends only on the seed, epoch, batch, site
 * and the unit's row in the batch.  The row key is splitmix64 of the
 * site key and row; unit col of the row is kept when
 * fmix32(lo + col * golden) ^ hi < thr, with (lo, hi) the row key's
 * halves and thr = round((1 - p) 2^32): an exact keep probability to
 * 2^-32, one 32-bit multiply pair per unit (vectorizes without 64-bit
 * lane multiplies).  Kept units are scaled by 1/(1-p), as PyTorch.
 */
typedef struct {
    uint64_t key;   /* the site's key: 0 when the site drops nothing */
    uint32_t thr;   /* keep when the unit's 32 bits are below it */
    float scale;    /* 1 / (1 - p) */
} rmf_drop;

/* splitmix64's finaliser (Steele, Lea & Flood 2014). */
static inline uint64_t rmf_mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

/* MurmurHash3's 32-bit finaliser. */
static inline uint32_t rmf_mix32(uint32_t h)
{
    h ^= h >> 16;
    h *= 0x85EBCA6Bu;
    h ^= h >> 13;
    h *= 0xC2B2AE35u;
    h ^= h >> 16;
    return h;
}

/* The site `site` of batch `batch` of epoch `epoch`: p in [0, 1); p == 0
 * gives key 0 (nothing dropped, nothing drawn). */
rmf_drop rmf_drop_site(float p, uint64_t seed, uint64_t epoch, uint64_t batch,
                       uint64_t site);

/* The 32 bits of unit col of a row whose key is rk. */
static inline uint32_t rmf_drop_bits(uint64_t rk, uint32_t col)
{
    return rmf_mix32((uint32_t)rk + col * 0x9E3779B9u) ^ (uint32_t)(rk >> 32);
}
static inline uint64_t rmf_drop_row_key(const rmf_drop *d, uint64_t row)
{
    return rmf_mix64(d->key + (row + 1) * 0x9E3779B97F4A7C15ULL);
}

/* x[r * ldx + c] *= mask(row0 + r, c) for r < n_rows, c < n_cols: units
 * dropped become 0, kept ones are scaled.  The same call on a gradient is
 * the backward.  Nothing when d->key == 0. */
void rmf_drop_apply(const rmf_drop *d, uint64_t row0, float *x, int64_t n_rows,
                    int n_cols, int64_t ldx);
/* keep[c] = 1 when unit (row, c) is kept, c < n_cols (d->key != 0). */
void rmf_drop_keep(const rmf_drop *d, uint64_t row, uint8_t *keep, int n_cols);
/* The mask itself (0 or scale) for tests: out is n_rows x n_cols. */
void rmf_drop_mask(const rmf_drop *d, uint64_t row0, int64_t n_rows, int n_cols,
                   float *out);

/* ------------------------------------------------------------------ */
/* Layer norm (layernorm.c): Ba, Kiros & Hinton 2016                  */
/* ------------------------------------------------------------------ */

/* y = (x - mean) / sqrt(var + eps) * gamma + beta per row of d (var the
 * biased variance, as torch.nn.LayerNorm); stats (2 n floats) receives
 * each row's mean and 1/sqrt(var + eps) for the backward. */
void rmf_layernorm_forward(const float *x, int64_t n, int d, const float *gamma,
                           const float *beta, float eps, float *y, float *stats);
/* dx (written) from dy, and dgamma, dbeta accumulated. */
void rmf_layernorm_backward(const float *x, const float *dy, int64_t n, int d,
                            const float *gamma, const float *stats, float *dx,
                            float *dgamma, float *dbeta);

/* ------------------------------------------------------------------ */
/* Dense layers and the feed-forward block (ffn.c)                    */
/* ------------------------------------------------------------------ */

/* y = x W^T + b (b may be NULL): x n x d_in (row stride ldx), W d_out x
 * d_in, y n x d_out (row stride ldy), written. */
void rmf_linear_forward(const float *x, int64_t ldx, int64_t n, int d_in,
                        const float *W, const float *b, int d_out, float *y,
                        int64_t ldy);
/* From dy (n x d_out, stride lddy): dx = dy W (written, or added when
 * dx_add; skipped when dx is NULL), dW += dy^T x, db += column sums of dy
 * (db may be NULL). */
void rmf_linear_backward(const float *x, int64_t ldx, int64_t n, int d_in,
                         const float *W, int d_out, const float *dy,
                         int64_t lddy, float *dx, int64_t lddx, int dx_add,
                         float *dW, float *db);

/* The SASRec feed-forward block with its residual:
 *   y = f + drop2(W2 drop1(relu(W1 f + b1)) + b2),  W1 dff x d, W2 d x dff.
 * Rows are rows row0.. of the batch (the dropout masks' rows).  hid (n x
 * dff) keeps relu(W1 f + b1) for the backward. */
typedef struct {
    const float *W1, *b1, *W2, *b2;
    float *dW1, *db1, *dW2, *db2; /* accumulated by the backward */
    int d, dff;
    rmf_drop drop1, drop2;
} rmf_ffn;
void rmf_ffn_forward(const rmf_ffn *f, const float *x, int64_t n, uint64_t row0,
                     float *hid, float *y);
/* dx (written) from dy; scratch: n x (d + dff) floats. */
void rmf_ffn_backward(const rmf_ffn *f, const float *x, int64_t n, uint64_t row0,
                      float *hid, const float *dy, float *dx, float *scratch);

/* ------------------------------------------------------------------ */
/* Causal multi-head self-attention (attention.c)                     */
/* ------------------------------------------------------------------ */
/*
 * One sequence of n tokens: qkv is n x 3d (row stride 3d) holding Q, K, V
 * side by side; head h uses columns [h dh, (h+1) dh) of each, dh = d / H.
 * P_h = softmax(Q_h K_h^T / sqrt(dh)) with token i seeing tokens j <= i;
 * out_h = drop(P_h) V_h, written into columns [h dh, (h+1) dh) of out
 * (n x d).  probs (H n n floats) keeps P for the backward: row i is
 * valid up to the end of its block of query rows (0 past i), the rest is
 * scratch.  The dropout rows of head h, query i are (row0 + i) H + h.
 * Scratch: rmf_attention_scratch(n) floats, either pass.
 */
void rmf_attention_forward(const float *qkv, int n, int d, int H,
                           const rmf_drop *drop, uint64_t row0, float *probs,
                           float *out, float *scratch);
int64_t rmf_attention_scratch(int n);
/* dqkv (n x 3d, written) from dout (n x d). */
void rmf_attention_backward(const float *qkv, int n, int d, int H,
                            const rmf_drop *drop, uint64_t row0,
                            const float *probs, const float *dout,
                            float *dqkv, float *scratch);

/* ------------------------------------------------------------------ */
/* Softmax cross-entropy of the next item (softmax_ce.c)              */
/* ------------------------------------------------------------------ */
/*
 * Rows h (n x d) against the item table E (n_items x d); row r's target
 * is target[r].  Full softmax: loss_r = logsumexp_j(h_r . E_j) - h_r .
 * E_target, computed RMF_CE_CHUNK rows at a time so the n x n_items logits
 * never exist at once.  Sampled: the candidates are the target and the
 * shared negatives neg[0..n_neg), a negative masked out (-inf) for row r
 * when it is among the items of row r's sequence (own).  Both write
 * dh = scale d loss / d h and accumulate dE += scale d loss / d E, and
 * return the sum of the rows' losses (double).
 */
#define RMF_CE_CHUNK 128

/* Scratch floats rmf_softmax_ce needs for n_items candidates. */
int64_t rmf_softmax_ce_scratch(int32_t n_items);
double rmf_softmax_ce(const float *h, int64_t n, int d, const float *E,
                      int32_t n_items, const int32_t *target, float scale,
                      float *dh, float *dE, float *scratch);

/* Sampled form.  negmask (n_seq x n_neg bytes, 1 = masked) gives each
 * sequence's masked negatives, seq_of_row[r] the row's sequence; Eneg
 * (n_neg x d) holds the negatives' rows of E, dEneg (n_neg x d) and dE
 * receive the gradient (accumulated): row r's target's gradient goes to
 * row target_slot[r] of dE (target[r] when target_slot is NULL: a model
 * may keep the batch's item gradients by slot instead of by item).
 * Scratch: rmf_sampled_ce_scratch(n_neg) floats. */
int64_t rmf_sampled_ce_scratch(int32_t n_neg);
double rmf_sampled_ce(const float *h, int64_t n, int d, const float *E,
                      const int32_t *target, const int32_t *target_slot,
                      const float *Eneg, int32_t n_neg, const uint8_t *negmask,
                      const int32_t *seq_of_row, float scale, float *dh,
                      float *dE, float *dEneg, float *scratch);

/* Reductions in 8 lanes (lane = index mod 8) combined in a fixed tree:
 * the same result at any vector width.  Generic vectors keep the lanes in
 * registers (the plain-array form is not vectorized).  n >= 1 for max. */
#if defined(__GNUC__)
typedef float rmf_v8f_ __attribute__((vector_size(32)));
typedef int32_t rmf_v8i_ __attribute__((vector_size(32)));
/* (a pointer: a vector argument would change the ABI between clones) */
static inline float rmf_lanes_tree_(const void *acc)
{
    float l[8];
    memcpy(l, acc, sizeof l);
    return ((l[0] + l[4]) + (l[2] + l[6])) + ((l[1] + l[5]) + (l[3] + l[7]));
}
static inline float rmf_sum_lanes(const float *x, int64_t n)
{
    rmf_v8f_ acc = {0, 0, 0, 0, 0, 0, 0, 0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        rmf_v8f_ a;
        memcpy(&a, x + i, sizeof a);
        acc += a;
    }
    float t[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    memcpy(t, x + i, (size_t)(n - i) * sizeof *x);
    rmf_v8f_ a;
    memcpy(&a, t, sizeof a);
    acc += a;
    return rmf_lanes_tree_(&acc);
}
static inline float rmf_max_lanes(const float *x, int64_t n)
{
    rmf_v8f_ m;
    float t[8];
    for (int k = 0; k < 8; k++)
        t[k] = x[0];
    memcpy(&m, t, sizeof m);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        rmf_v8f_ a;
        memcpy(&a, x + i, sizeof a);
        const rmf_v8i_ gt = a > m;
        m = (rmf_v8f_)(((rmf_v8i_)a & gt) | ((rmf_v8i_)m & ~gt));
    }
    memcpy(t, &m, sizeof t);
    float r = t[0];
    for (int k = 1; k < 8; k++)
        r = t[k] > r ? t[k] : r;
    for (; i < n; i++)
        r = x[i] > r ? x[i] : r;
    return r;
}
#else
static inline float rmf_sum_lanes(const float *x, int64_t n)
{
    float l[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; k++)
            l[k] += x[i + k];
    for (int k = 0; i < n; i++, k++)
        l[k] += x[i];
    return ((l[0] + l[4]) + (l[2] + l[6])) + ((l[1] + l[5]) + (l[3] + l[7]));
}
static inline float rmf_max_lanes(const float *x, int64_t n)
{
    float r = x[0];
    for (int64_t i = 1; i < n; i++)
        r = x[i] > r ? x[i] : r;
    return r;
}
#endif

/* x[i] = exp(x[i] - shift) for i < n, returning their sum in 32 lanes
 * (lane = index mod 32) combined in a fixed tree: the softmax's middle pass
 * in one sweep. */
float rmf_exp_shift_sum(float *x, int64_t n, float shift);

/* exp of every x[0..n) in place (our vector form: libm's expf does not
 * vectorize without -ffast-math); within 2 ulp of expf, the same bits at
 * every vector width. */
void rmf_exp_inplace(float *x, int64_t n);

#endif /* RECMF_NN_SEQ_H */
