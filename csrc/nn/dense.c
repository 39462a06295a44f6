/* dense.c -- dense layers.  Training runs a layer's products in fixed row
 * parts (RMF_NN_PARTS), each one OpenBLAS call on one thread, taken by the
 * threads of a team: OpenBLAS's own threading makes its jobs wait for each
 * other's packed panels (a stall whenever the scheduler delays one thread)
 * and rounds a sum over many rows differently from its one-thread driver,
 * so a weight gradient, and every weight after it, would depend on the
 * thread count.  Here a row range of the output is computed exactly as the
 * whole product would be, a weight gradient is the sum of the parts' in
 * part order, and a team of any size gives the same numbers.  Scoring uses
 * exact row loops instead (rmf_dense_row_exact): see nn.h. */
#include "nn/nn.h"

#include <stdlib.h>
#include <string.h>

void rmf_dense_forward(const float *X, int64_t n, int in, const float *W,
                       int64_t ldw, int out, float *Y)
{
    rmf_sgemm(0, 1, n, out, in, 1.0f, X, in, W, ldw, 0.0f, Y, out);
}

void rmf_dense_backward_input(const float *dY, int64_t n, int out,
                              const float *W, int64_t ldw, int in, float *dX)
{
    rmf_sgemm(0, 0, n, in, out, 1.0f, dY, out, W, ldw, 0.0f, dX, in);
}

void rmf_dense_weight_part(const float *dY, const float *X, int64_t n,
                           int out, int in, float *dW)
{
    if (n > 0)
        rmf_sgemm(1, 0, out, in, n, 1.0f, dY, out, X, in, 0.0f, dW, in);
    else
        memset(dW, 0, (size_t)out * (size_t)in * sizeof *dW);
}

void rmf_dense_sum_parts(const float *parts, int n_parts, int64_t stride,
                         int out, int in, float *dW, int64_t ldw)
{
    OMP(omp for schedule(static) nowait)
    for (int o = 0; o < out; o++) {
        const float *p = parts + (int64_t)o * in;
        float *dst = dW + (int64_t)o * ldw;
        for (int d = 0; d < in; d++) {
            float acc = p[d];
            for (int k = 1; k < n_parts; k++)
                acc += p[k * stride + d];
            dst[d] = acc;
        }
    }
}

/* ------------------------------------------------------------------ */
/* Exact rows (scoring)                                               */
/* ------------------------------------------------------------------ */

float *rmf_transpose(const float *W, int rows, int cols)
{
    float *WT = malloc((size_t)rows * (size_t)cols * sizeof *WT);
    if (WT == NULL)
        return NULL;
    for (int r = 0; r < rows; r++)
        for (int c = 0; c < cols; c++)
            WT[(int64_t)c * rows + r] = W[(int64_t)r * cols + c];
    return WT;
}

/* The inner loop runs over the outputs: it vectorizes with no reduction,
 * and the result does not depend on the vector width. */
RMF_CLONES
void rmf_dense_row_exact(const float *restrict x, const float *restrict WT,
                         const float *restrict bias, int in, int out,
                         float *restrict y)
{
    for (int o = 0; o < out; o++)
        y[o] = 0.0f;
    for (int k = 0; k < in; k++) {
        const float xk = x[k];
        const float *wt = WT + (int64_t)k * out;
        for (int o = 0; o < out; o++)
            y[o] += xk * wt[o];
    }
    if (bias)
        for (int o = 0; o < out; o++)
            y[o] += bias[o];
}

void rmf_dense_rows_exact(const float *X, const int32_t *ids, int64_t n,
                          const float *WT, const float *bias, int in, int out,
                          float *Y)
{
    OMP(omp for schedule(static) nowait)
    for (int64_t r = 0; r < n; r++)
        rmf_dense_row_exact(X + (int64_t)(ids ? ids[r] : r) * in, WT, bias, in, out, Y + r * out);
}
