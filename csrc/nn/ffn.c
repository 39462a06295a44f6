/* nn/ffn.c -- dense layers over rows, the position-wise feed-forward block
 * of a transformer, and the counter-based dropout they draw (nn/nn.h).
 *
 * Products are one OpenBLAS call each on the calling thread (the caller
 * holds rmf_blas_single_begin); bias gradients are column sums in row
 * order.  So a part of a batch gives the same bits whichever thread runs
 * it. */
#include "nn/nn.h"

#include <math.h>
#include <string.h>

/* ------------------------------------------------------------------ */
/* Dropout                                                             */
/* ------------------------------------------------------------------ */

rmf_drop rmf_drop_site(float p, uint64_t seed, uint64_t epoch, uint64_t batch,
                       uint64_t site)
{
    rmf_drop d = {0, 0, 1.0f};
    if (!(p > 0.0f))
        return d;
    rmf_rng base;
    rmf_rng_seed(&base, seed, rmf_stream_id(RMF_STREAM_DROPOUT, epoch, batch));
    d.key = rmf_mix64(rmf_rng_next(&base) ^ rmf_mix64(site + 0x5EC5EC5EC5EC5EC5ULL)) | 1u;
    const double keep = 1.0 - (double)p;
    const double thr = nearbyint(keep * 4294967296.0);
    d.thr = thr >= 4294967295.0 ? 0xFFFFFFFFu : (uint32_t)thr;
    d.scale = (float)(1.0 / keep);
    return d;
}

RMF_CLONES
void rmf_drop_apply(const rmf_drop *d, uint64_t row0, float *x, int64_t n_rows,
                    int n_cols, int64_t ldx)
{
    if (d->key == 0)
        return;
    const uint32_t thr = d->thr;
    const float scale = d->scale;
    for (int64_t r = 0; r < n_rows; r++) {
        const uint64_t rk = rmf_drop_row_key(d, row0 + (uint64_t)r);
        float *xr = x + r * ldx;
        for (int c = 0; c < n_cols; c++) {
            /* the factor is a select, the multiply unconditional: GCC does
             * not vectorize a conditional multiply (-ftrapping-math) */
            const float m = rmf_drop_bits(rk, (uint32_t)c) < thr ? scale : 0.0f;
            xr[c] *= m;
        }
    }
}

RMF_CLONES
void rmf_drop_keep(const rmf_drop *d, uint64_t row, uint8_t *keep, int n_cols)
{
    const uint64_t rk = rmf_drop_row_key(d, row);
    const uint32_t thr = d->thr;
    for (int c = 0; c < n_cols; c++)
        keep[c] = rmf_drop_bits(rk, (uint32_t)c) < thr;
}

void rmf_drop_mask(const rmf_drop *d, uint64_t row0, int64_t n_rows, int n_cols,
                   float *out)
{
    for (int64_t k = 0; k < n_rows * n_cols; k++)
        out[k] = 1.0f;
    rmf_drop_apply(d, row0, out, n_rows, n_cols, n_cols);
}

/* ------------------------------------------------------------------ */
/* Dense layers                                                        */
/* ------------------------------------------------------------------ */

void rmf_linear_forward(const float *x, int64_t ldx, int64_t n, int d_in,
                        const float *W, const float *b, int d_out, float *y,
                        int64_t ldy)
{
    if (n <= 0)
        return;
    rmf_sgemm(0, 1, n, d_out, d_in, 1.0f, x, ldx, W, d_in, 0.0f, y, ldy);
    if (b == NULL)
        return;
    for (int64_t r = 0; r < n; r++) {
        float *yr = y + r * ldy;
        for (int c = 0; c < d_out; c++)
            yr[c] += b[c];
    }
}

void rmf_linear_backward(const float *x, int64_t ldx, int64_t n, int d_in,
                         const float *W, int d_out, const float *dy,
                         int64_t lddy, float *dx, int64_t lddx, int dx_add,
                         float *dW, float *db)
{
    if (n <= 0)
        return;
    if (dx != NULL)
        rmf_sgemm(0, 0, n, d_in, d_out, 1.0f, dy, lddy, W, d_in, dx_add ? 1.0f : 0.0f, dx,
                  lddx);
    rmf_sgemm(1, 0, d_out, d_in, n, 1.0f, dy, lddy, x, ldx, 1.0f, dW, d_in);
    if (db == NULL)
        return;
    for (int64_t r = 0; r < n; r++) {
        const float *g = dy + r * lddy;
        for (int c = 0; c < d_out; c++)
            db[c] += g[c];
    }
}

/* ------------------------------------------------------------------ */
/* Feed-forward block                                                  */
/* ------------------------------------------------------------------ */

/* hid keeps drop1(relu(W1 x + b1)): a unit is > 0 there exactly when it
 * passed both the ReLU and the mask, so the backward needs neither the
 * pre-activation nor the first mask again. */
void rmf_ffn_forward(const rmf_ffn *f, const float *x, int64_t n, uint64_t row0,
                     float *hid, float *y)
{
    const int d = f->d, dff = f->dff;
    rmf_linear_forward(x, d, n, d, f->W1, f->b1, dff, hid, dff);
    for (int64_t k = 0; k < n * dff; k++)
        hid[k] = hid[k] > 0.0f ? hid[k] : 0.0f;
    rmf_drop_apply(&f->drop1, row0, hid, n, dff, dff);
    rmf_linear_forward(hid, dff, n, dff, f->W2, f->b2, d, y, d);
    rmf_drop_apply(&f->drop2, row0, y, n, d, d);
    for (int64_t k = 0; k < n * d; k++)
        y[k] += x[k];
}

void rmf_ffn_backward(const rmf_ffn *f, const float *x, int64_t n, uint64_t row0,
                      float *hid, const float *dy, float *dx, float *scratch)
{
    const int d = f->d, dff = f->dff;
    float *s = scratch, *g = scratch + n * d;
    memcpy(s, dy, (size_t)(n * d) * sizeof *s);
    rmf_drop_apply(&f->drop2, row0, s, n, d, d);
    /* s: gradient of W2 hid + b2 */
    rmf_linear_backward(hid, dff, n, dff, f->W2, d, s, d, g, dff, 0, f->dW2, f->db2);
    const float scale1 = f->drop1.key ? f->drop1.scale : 1.0f;
    for (int64_t k = 0; k < n * dff; k++)
        g[k] = hid[k] > 0.0f ? g[k] * scale1 : 0.0f;
    /* dx = g W1 + dy (the residual) */
    memcpy(dx, dy, (size_t)(n * d) * sizeof *dx);
    rmf_linear_backward(x, d, n, d, f->W1, dff, g, dff, dx, d, 1, f->dW1, f->db1);
}
