/* activation.c -- activations and dropout: the dropout draw (masks from
 * counter-keyed streams, drawn where they are used), and the head of a
 * one-hidden-layer MLP (ReLU, dropout, a linear unit) with its backward
 * pass and its eval-mode tile for scoring many pairs.  See nn.h. */
#include "nn/nn.h"

#include <math.h>
#include <string.h>

/* ------------------------------------------------------------------ */
/* The MLP head                                                       */
/* ------------------------------------------------------------------ */

/* x where r > 0, else +0.  r is a ReLU output (+0 or positive), so its bits
 * are non-zero exactly when it is positive.  An integer mask keeps the loop
 * branch-free: a float select would not vectorize under -ftrapping-math. */
static inline float where_positive(float r, float x)
{
    uint32_t rb, xb;
    memcpy(&rb, &r, sizeof rb);
    memcpy(&xb, &x, sizeof xb);
    xb &= (uint32_t)0 - (uint32_t)(rb != 0);
    float out;
    memcpy(&out, &xb, sizeof out);
    return out;
}

/* One row's forward pass: r = relu((a + b1) + b) -- the order the eval
 * head's precomputed A = a + b1 uses -- and the logit sum_h (r mk)[h] w2[h] + b2 with 8
 * float lanes (lane = h mod 8) added in a fixed tree: vectorizable without
 * fast-math and the same result at any vector width. */
RMF_CLONES
float rmf_mlp_head_forward(const float *restrict a, const float *restrict b,
                           const float *restrict b1, const float *restrict mk,
                           const float *restrict w2, float b2,
                           float *restrict r, int H)
{
    for (int h = 0; h < H; h++) {
        float pre = (a[h] + b1[h]) + b[h];
        r[h] = pre > 0.0f ? pre : 0.0f;
    }
    float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int h = 0;
    for (; h + 8 <= H; h += 8)
        for (int l = 0; l < 8; l++)
            acc[l] += (r[h + l] * mk[h + l]) * w2[h + l];
    for (int l = 0; h < H; h++, l++)
        acc[l] += (r[h] * mk[h]) * w2[h];
    return (((acc[0] + acc[4]) + (acc[2] + acc[6])) +
            ((acc[1] + acc[5]) + (acc[3] + acc[7]))) + b2;
}

/* One row's backward pass from dl = d loss / d logit: dw2 += dl (r mk),
 * r becomes dpre = [r > 0] dl w2 mk, db1 += dpre. */
RMF_CLONES
void rmf_mlp_head_backward(float dl, const float *restrict w2,
                           const float *restrict mk, float *restrict r,
                           float *restrict dw2, float *restrict db1, int H)
{
    for (int h = 0; h < H; h++) {
        dw2[h] += dl * (r[h] * mk[h]);
        float d = where_positive(r[h], (dl * w2[h]) * mk[h]);
        r[h] = d;
        db1[h] += d;
    }
}

/* ------------------------------------------------------------------ */
/* Dropout                                                            */
/* ------------------------------------------------------------------ */

/* Dropout keep mask for the rows of one batch: keep with probability 1-p,
 * kept units scaled by 1/(1-p) (PyTorch: noise.bernoulli_(1 - p).div_(1 -
 * p)).  The keep probability is rounded to 24 bits, thr = round((1-p) 2^24)
 * = hi 2^16 + lo, and drawn a byte at a time: byte < hi keeps, byte > hi
 * drops, and only a tie (1 in 256) needs 16 more bits (keep if < lo).  So
 * P(keep) = thr / 2^24 exactly while a 64-bit draw decides ~8 units: the
 * mask was the costliest non-BLAS step with one draw per 2 units.  The
 * pair pass draws each row just before using it (no n x H mask array to
 * write and read back), from a stream per RMF_DROPOUT_ROWS rows derived from the
 * batch stream (seed, DROPOUT, epoch, batch): the mask depends on the seed
 * only, never on threads. */
rmf_dropout rmf_dropout_setup(float p, uint64_t seed, uint64_t epoch,
                              uint64_t batch)
{
    rmf_dropout d;
    rmf_rng base;
    rmf_rng_seed(&base, seed, rmf_stream_id(RMF_STREAM_DROPOUT, epoch, batch));
    d.sub = rmf_rng_next(&base);
    const double keep = 1.0 - (double)p;
    const uint32_t thr = (uint32_t)nearbyint(keep * 16777216.0);
    d.hi = thr >> 16; /* 256 when keep rounds to 1: every byte keeps */
    d.lo = thr & 0xFFFF;
    d.val[0] = 0.0f;
    d.val[1] = 1.0f / (float)keep;
    return d;
}

/* Eight 32-bit lanes (GCC/Clang vector extensions). */
typedef uint32_t u32x8 __attribute__((vector_size(32)));
typedef int32_t s32x8 __attribute__((vector_size(32)));

/* One row of H mask values from r, 32 units per block: the block's 4
 * draws come first, unit h0 + h decides on byte h of them (byte h % 8 of
 * draw h / 8, counted from the least significant), and ties (byte == hi)
 * are then settled in unit order with one more draw each.  Deciding a
 * block's units together lets the compare-and-select loop vectorize: the
 * unit-at-a-time version cost ~17 instructions per unit, this one ~7, most
 * of them the draws.  Locals: stores through row could otherwise alias d's
 * fields. */
RMF_CLONES
void rmf_dropout_row(rmf_rng *rp, const rmf_dropout *d, float *row, int H)
{
    rmf_rng g = *rp, *r = &g; /* a local: stores to row cannot touch it */
    const uint32_t hi = d->hi, lo = d->lo;
    const float val[2] = {d->val[0], d->val[1]};
    uint32_t kept_bits; /* val[0] is +0.0f: all bits clear */
    memcpy(&kept_bits, &val[1], sizeof kept_bits);
    /* Lane k of a draw's 8 units holds byte k (from the least significant):
     * the draw's low word in lanes 0-3, its high word in lanes 4-7, each
     * shifted right by 8 (k mod 4). */
    const u32x8 shift = {0, 8, 16, 24, 0, 8, 16, 24};
    for (int h0 = 0; h0 < H; h0 += 32) {
        const int n = H - h0 < 32 ? H - h0 : 32;
        uint64_t x[4] = {0, 0, 0, 0};
        for (int j = 0; j < (n + 7) / 8; j++)
            x[j] = rmf_rng_next(r);
        s32x8 any_tie = {0, 0, 0, 0, 0, 0, 0, 0};
        if (n == 32) {
            /* In registers: copying the draws to a byte array and reading
             * it back stalled on store forwarding (a quarter of the pair
             * pass's dropout time). */
            for (int j = 0; j < 4; j++) {
                const uint32_t w0 = (uint32_t)x[j], w1 = (uint32_t)(x[j] >> 32);
                const u32x8 b = ((u32x8){w0, w0, w0, w0, w1, w1, w1, w1} >> shift) & 0xFFu;
                const s32x8 bits = (s32x8)(b < hi) & (int32_t)kept_bits;
                any_tie |= (s32x8)(b == hi);
                memcpy(row + h0 + 8 * j, &bits, sizeof bits);
            }
        } else {
            for (int h = 0; h < n; h++) {
                const uint32_t b = (uint32_t)(x[h / 8] >> (8 * (h % 8))) & 0xFFu;
                row[h0 + h] = val[b < hi];
                any_tie[0] |= b == hi;
            }
        }
        int tied = 0;
        for (int k = 0; k < 8; k++)
            tied |= any_tie[k];
        if (!tied) /* a tie (byte == hi) comes 1 in 256 */
            continue;
        /* Ties are settled by 16 more bits each, in unit order. */
        for (int h = 0; h < n; h++)
            if (((x[h / 8] >> (8 * (h % 8))) & 0xFFu) == hi)
                row[h0 + h] = val[(uint32_t)(rmf_rng_next(r) & 0xFFFF) < lo];
    }
    *rp = g;
}

/* One epoch: the source's examples in the order rmf_epoch_order gives,
 * batches of the model's mean loss and gradient, one Adam step each.
 * *loss gets the mean loss per example over the batches done, *n_done the
 * number of examples trained; stop (may be NULL) is asked between batches
 * (RMF_ERR_INTERRUPTED: the weights are those after the last batch). */
rmf_status rmf_dropout_mask(float p, uint64_t seed, uint64_t epoch,
                            uint64_t batch, int64_t n, int H, float *out,
                            rmf_error *err)
{
    if (!(p > 0.0f && p < 1.0f))
        return rmf_fail(err, RMF_ERR_VALUE, "dropout must be in (0, 1), got %g", (double)p);
    if (n < 0 || H < 1)
        return rmf_fail(err, RMF_ERR_VALUE, "need n >= 0 rows of H >= 1 units");
    rmf_dropout d = rmf_dropout_setup(p, seed, epoch, batch);
    /* The pair pass's chunks, in order: chunk c's rows from stream c. */
    for (int64_t c = 0; c * RMF_DROPOUT_ROWS < n; c++) {
        rmf_rng rng;
        rmf_dropout_chunk(&rng, &d, (uint64_t)c);
        int64_t k1 = (c + 1) * RMF_DROPOUT_ROWS < n ? (c + 1) * RMF_DROPOUT_ROWS : n;
        for (int64_t k = c * RMF_DROPOUT_ROWS; k < k1; k++)
            rmf_dropout_row(&rng, &d, out + k * H, H);
    }
    return RMF_OK;
}

/* ------------------------------------------------------------------ */
/* The head scored over a tile of rows and items                      */
/* ------------------------------------------------------------------ */

/* S[u][i] = sum_h relu(A[u][h] + Bt[h][i]) w2[h] + b2 for RMF_TILE_U users and the
 * RMF_TILE_I items starting at column i0.  Bt is H x ldb, item-contiguous, so the
 * vector lanes run over items and need no horizontal reduction; the sum
 * over h runs in ascending order with the same float operations as
 * rmf_mlp_head_eval, so a pair scores the same bits either way. */
#if defined(__GNUC__)
/* GCC/Clang vector extensions: 8 floats per vector whatever the target;
 * the avx2 clone turns each into one ymm register, the default one into
 * two SSE registers.  Auto-vectorization of the plain loop nest spilled
 * the accumulators to the stack and ran 10x slower. */
typedef float v8sf __attribute__((vector_size(32)));
typedef int32_t v8si __attribute__((vector_size(32)));

/* x > 0 ? x : +0 lane by lane (NaN -> +0), as the scalar ReLU.  Macros,
 * not functions: a function passing 32-byte vectors draws -Wpsabi. */
#define RELU8(x) ((v8sf)((v8si)(x) & ((x) > (v8sf){0, 0, 0, 0, 0, 0, 0, 0})))

RMF_CLONES
void rmf_mlp_head_tile(const float *restrict A, int H,
                       const float *restrict Bt, int64_t ldb, int64_t i0,
                       const float *restrict w2, float b2,
                       float *restrict S, int64_t lds, int n_cols)
{
    v8sf acc[RMF_TILE_U][RMF_TILE_I / 8];
    for (int q = 0; q < RMF_TILE_U; q++)
        for (int l = 0; l < RMF_TILE_I / 8; l++)
            acc[q][l] = (v8sf){0, 0, 0, 0, 0, 0, 0, 0};
    for (int h = 0; h < H; h++) {
        const float *bt = Bt + (int64_t)h * ldb + i0;
        v8sf b0, b1;
        memcpy(&b0, bt, sizeof b0);
        memcpy(&b1, bt + 8, sizeof b1);
        const float wh = w2[h];
        for (int q = 0; q < RMF_TILE_U; q++) {
            const float aq = A[(int64_t)q * H + h];
            const v8sf x0 = aq + b0, x1 = aq + b1;
            acc[q][0] += RELU8(x0) * wh;
            acc[q][1] += RELU8(x1) * wh;
        }
    }
    /* n_cols < RMF_TILE_I on the last tile: its padding columns are not stored. */
    for (int q = 0; q < RMF_TILE_U; q++) {
        float out[RMF_TILE_I];
        memcpy(out, acc[q], sizeof out);
        for (int l = 0; l < n_cols; l++)
            S[(int64_t)q * lds + i0 + l] = out[l] + b2;
    }
}
#else
void rmf_mlp_head_tile(const float *restrict A, int H,
                       const float *restrict Bt, int64_t ldb, int64_t i0,
                       const float *restrict w2, float b2,
                       float *restrict S, int64_t lds, int n_cols)
{
    float acc[RMF_TILE_U][RMF_TILE_I] = {{0}};
    for (int h = 0; h < H; h++) {
        const float *bt = Bt + (int64_t)h * ldb + i0;
        for (int q = 0; q < RMF_TILE_U; q++) {
            const float aq = A[(int64_t)q * H + h];
            for (int l = 0; l < RMF_TILE_I; l++) {
                float x = aq + bt[l];
                acc[q][l] += (x > 0.0f ? x : 0.0f) * w2[h];
            }
        }
    }
    for (int q = 0; q < RMF_TILE_U; q++)
        for (int l = 0; l < n_cols; l++)
            S[(int64_t)q * lds + i0 + l] = acc[q][l] + b2;
}
#endif

void rmf_mlp_head_scores(const float *A, int64_t n_rows, int H, const float *Bt, int64_t ldb, int32_t n_cols,
                         const float *w2, float b2, float *S, int64_t lds)
{
    const int RU = RMF_TILE_U, RI = RMF_TILE_I;
    const int64_t n_ut = (n_rows + RU - 1) / RU, n_it = ldb / RI;
    OMP(omp for schedule(static))
    for (int64_t it = 0; it < n_it; it++)
        for (int64_t ut = 0; ut < n_ut; ut++)
            rmf_mlp_head_tile(A + ut * RU * H, H, Bt, ldb, it * RI, w2, b2, S + ut * RU * lds, lds,
                              (int)(n_cols - it * RI < RI ? n_cols - it * RI : RI));
}
