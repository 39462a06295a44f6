/* nn/layernorm.c -- layer norm over rows (Ba, Kiros & Hinton 2016), as
 * torch.nn.LayerNorm computes it: biased variance, eps inside the root.
 * Row sums run in 8 lanes in a fixed tree (rmf_sum_lanes, rmf_dot_lanes),
 * so a row's result does not depend on the vector width the CPU picks. */
#include "nn/nn.h"

#include <math.h>

RMF_CLONES
void rmf_layernorm_forward(const float *x, int64_t n, int d, const float *gamma,
                           const float *beta, float eps, float *y, float *stats)
{
    const float inv_d = 1.0f / (float)d;
    for (int64_t r = 0; r < n; r++) {
        const float *xr = x + r * d;
        float *yr = y + r * d;
        const float mean = rmf_sum_lanes(xr, d) * inv_d;
        /* centred values first (yr as scratch): the two-pass variance */
        for (int c = 0; c < d; c++)
            yr[c] = xr[c] - mean;
        const float var = rmf_dot_lanes(yr, yr, d) * inv_d;
        const float rstd = 1.0f / sqrtf(var + eps);
        for (int c = 0; c < d; c++)
            yr[c] = yr[c] * rstd * gamma[c] + beta[c];
        stats[2 * r] = mean;
        stats[2 * r + 1] = rstd;
    }
}

/* With xhat = (x - mean) rstd and g = dy gamma:
 *   dx = rstd (g - mean(g) - xhat mean(g xhat)),
 *   dgamma += dy xhat, dbeta += dy (summed over rows in row order). */
RMF_CLONES
void rmf_layernorm_backward(const float *x, const float *dy, int64_t n, int d,
                            const float *gamma, const float *stats, float *dx,
                            float *dgamma, float *dbeta)
{
    const float inv_d = 1.0f / (float)d;
    for (int64_t r = 0; r < n; r++) {
        const float *xr = x + r * d, *gr = dy + r * d;
        float *dxr = dx + r * d;
        const float mean = stats[2 * r], rstd = stats[2 * r + 1];
        float xh[RMF_SEQ_MAX_DIM], g[RMF_SEQ_MAX_DIM]; /* d checked by the model */
        for (int c = 0; c < d; c++) {
            xh[c] = (xr[c] - mean) * rstd;
            g[c] = gr[c] * gamma[c];
            dgamma[c] += gr[c] * xh[c];
            dbeta[c] += gr[c];
        }
        const float mg = rmf_sum_lanes(g, d) * inv_d;
        const float mgx = rmf_dot_lanes(g, xh, d) * inv_d;
        for (int c = 0; c < d; c++)
            dxr[c] = rstd * (g[c] - mg - xh[c] * mgx);
    }
}
