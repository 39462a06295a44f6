/* nn/attention.c -- causal multi-head self-attention over one sequence
 * (Vaswani et al. 2017; torch.nn.functional.scaled_dot_product_attention
 * with is_causal and dropout_p), forward and backward.
 *
 * Per head, the n x n score, probability and gradient matrices are whole
 * sgemm products (the half above the diagonal is computed and zeroed:
 * simpler than triangular products, and attention is a small share of a
 * SASRec batch next to the output layer).  Probabilities are kept for the
 * backward; dropout masks are drawn again there (nn/seq.h). */
#include "nn/seq.h"

#include <math.h>
#include <string.h>

int64_t rmf_attention_scratch(int n) { return 2 * (int64_t)n * n; }

/* Row i of a causal softmax: p[0..i] = softmax(p[0..i]), p[i+1..n) = 0. */
static void causal_softmax_row(float *p, int i, int n)
{
    const int m = i + 1;
    const float inv = 1.0f / rmf_exp_shift_sum(p, m, rmf_max_lanes(p, m));
    for (int j = 0; j < m; j++)
        p[j] *= inv;
    memset(p + m, 0, (size_t)(n - m) * sizeof *p);
}

void rmf_attention_forward(const float *qkv, int n, int d, int H,
                           const rmf_drop *drop, uint64_t row0, float *probs,
                           float *out, float *scratch)
{
    if (n <= 0)
        return;
    const int dh = d / H;
    const int64_t ld = 3 * (int64_t)d, nn = (int64_t)n * n;
    const float alpha = 1.0f / sqrtf((float)dh);
    for (int h = 0; h < H; h++) {
        const float *Q = qkv + h * dh, *K = qkv + d + h * dh, *V = qkv + 2 * d + h * dh;
        float *P = probs + h * nn;
        rmf_sgemm(0, 1, n, n, dh, alpha, Q, ld, K, ld, 0.0f, P, n);
        for (int i = 0; i < n; i++)
            causal_softmax_row(P + (int64_t)i * n, i, n);
        const float *Pd = P;
        if (drop->key) {
            memcpy(scratch, P, (size_t)nn * sizeof *scratch);
            for (int i = 0; i < n; i++)
                rmf_drop_apply(drop, (row0 + (uint64_t)i) * (uint64_t)H + (uint64_t)h,
                               scratch + (int64_t)i * n, 1, i + 1, n);
            Pd = scratch;
        }
        rmf_sgemm(0, 0, n, dh, n, 1.0f, Pd, n, V, ld, 0.0f, out + h * dh, d);
    }
}

/* With A = drop(P) and dA = dO V^T:
 *   dV = A^T dO,  dP = drop(dA) (the same mask),
 *   dS_ij = P_ij (dP_ij - sum_k P_ik dP_ik) for j <= i (0 above),
 *   dQ = alpha dS K,  dK = alpha dS^T Q. */
void rmf_attention_backward(const float *qkv, int n, int d, int H,
                            const rmf_drop *drop, uint64_t row0,
                            const float *probs, const float *dout,
                            float *dqkv, float *scratch)
{
    if (n <= 0)
        return;
    const int dh = d / H;
    const int64_t ld = 3 * (int64_t)d, nn = (int64_t)n * n;
    const float alpha = 1.0f / sqrtf((float)dh);
    float *A = scratch, *G = scratch + nn;
    for (int h = 0; h < H; h++) {
        const float *Q = qkv + h * dh, *K = qkv + d + h * dh, *V = qkv + 2 * d + h * dh;
        const float *P = probs + h * nn, *dO = dout + h * dh;
        const float *Ad = P;
        if (drop->key) {
            memcpy(A, P, (size_t)nn * sizeof *A);
            for (int i = 0; i < n; i++)
                rmf_drop_apply(drop, (row0 + (uint64_t)i) * (uint64_t)H + (uint64_t)h,
                               A + (int64_t)i * n, 1, i + 1, n);
            Ad = A;
        }
        rmf_sgemm(1, 0, n, dh, n, 1.0f, Ad, n, dO, d, 0.0f, dqkv + 2 * d + h * dh, ld);
        rmf_sgemm(0, 1, n, n, dh, 1.0f, dO, d, V, ld, 0.0f, G, n);
        for (int i = 0; i < n; i++) {
            float *g = G + (int64_t)i * n;
            const float *p = P + (int64_t)i * n;
            const int m = i + 1;
            if (drop->key)
                rmf_drop_apply(drop, (row0 + (uint64_t)i) * (uint64_t)H + (uint64_t)h, g, 1, m,
                               n);
            const float s = rmf_dot_lanes(p, g, m);
            for (int j = 0; j < m; j++)
                g[j] = alpha * (p[j] * (g[j] - s));
            memset(g + m, 0, (size_t)(n - m) * sizeof *g);
        }
        rmf_sgemm(0, 0, n, dh, n, 1.0f, G, n, K, ld, 0.0f, dqkv + h * dh, ld);
        rmf_sgemm(1, 0, n, dh, n, 1.0f, G, n, Q, ld, 0.0f, dqkv + d + h * dh, ld);
    }
}
