/* nn/attention.c -- causal multi-head self-attention over one sequence
 * (Vaswani et al. 2017; torch.nn.functional.scaled_dot_product_attention
 * with is_causal and dropout_p), forward and backward.
 *
 * Per head, blocks of query rows against the keys they may see, each an
 * sgemm.  Probabilities are kept for the backward (row i valid on [0, end
 * of its block), zero past i); dropout masks are drawn again there
 * (nn/nn.h), once per row for both products that need them. */
#include "nn/nn.h"

#include <math.h>
#include <string.h>

/* Query rows per block: a block of rows [i0, i1) only meets keys [0, i1),
 * so the products skip most of the masked upper triangle (on a window of
 * 200 tokens, 27% of the work) while each sgemm stays large enough for
 * OpenBLAS's kernels. */
#define RB 64

static int block_rows(int n) { return n < RB ? n : RB; }

/* A and G (rows x n floats each) and a row of keep bytes per block row. */
int64_t rmf_attention_scratch(int n) { return (int64_t)block_rows(n) * n * 3; }

/* Row i of a causal softmax over p[0..i]; p[i+1..end) = 0. */
static void causal_softmax_row(float *p, int i, int end)
{
    const int m = i + 1;
    const float inv = 1.0f / rmf_exp_shift_sum(p, m, rmf_max_lanes(p, m));
    for (int j = 0; j < m; j++)
        p[j] *= inv;
    memset(p + m, 0, (size_t)(end - m) * sizeof *p);
}

/* The dropout row of query i of head h. */
static uint64_t drop_row(uint64_t row0, int i, int H, int h)
{
    return (row0 + (uint64_t)i) * (uint64_t)H + (uint64_t)h;
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
        for (int i0 = 0; i0 < n; i0 += RB) {
            const int i1 = i0 + RB < n ? i0 + RB : n, rb = i1 - i0;
            float *Pb = P + (int64_t)i0 * n;
            rmf_sgemm(0, 1, rb, i1, dh, alpha, Q + i0 * ld, ld, K, ld, 0.0f, Pb, n);
            for (int i = i0; i < i1; i++)
                causal_softmax_row(P + (int64_t)i * n, i, i1);
            const float *A = Pb;
            int64_t lda = n;
            if (drop->key) {
                float *S = scratch;
                for (int i = i0; i < i1; i++) {
                    memcpy(S + (int64_t)(i - i0) * i1, P + (int64_t)i * n, (size_t)i1 * sizeof *S);
                    rmf_drop_apply(drop, drop_row(row0, i, H, h), S + (int64_t)(i - i0) * i1, 1,
                                   i + 1, i1);
                }
                A = S;
                lda = i1;
            }
            rmf_sgemm(0, 0, rb, dh, i1, 1.0f, A, lda, V, ld, 0.0f, out + (int64_t)i0 * d + h * dh,
                      d);
        }
    }
}

/* With A = drop(P) and dA = dO V^T, block by block of query rows:
 *   dV += A^T dO,  dP = drop(dA) (the same mask, drawn once per row),
 *   dS_ij = P_ij (dP_ij - sum_k P_ik dP_ik) for j <= i (0 above),
 *   dQ = alpha dS K,  dK += alpha dS^T Q
 * (dK and dV summed over blocks in block order). */
void rmf_attention_backward(const float *qkv, int n, int d, int H,
                            const rmf_drop *drop, uint64_t row0,
                            const float *probs, const float *dout,
                            float *dqkv, float *scratch)
{
    if (n <= 0)
        return;
    const int dh = d / H, br = block_rows(n);
    const int64_t ld = 3 * (int64_t)d, nn = (int64_t)n * n;
    const float alpha = 1.0f / sqrtf((float)dh);
    float *A = scratch, *G = scratch + (int64_t)br * n;
    uint8_t *keep = (uint8_t *)(scratch + 2 * (int64_t)br * n);
    const float scale = drop->key ? drop->scale : 1.0f;
    for (int h = 0; h < H; h++) {
        const float *Q = qkv + h * dh, *K = qkv + d + h * dh, *V = qkv + 2 * d + h * dh;
        const float *P = probs + h * nn;
        float *dQ = dqkv + h * dh, *dK = dqkv + d + h * dh, *dV = dqkv + 2 * d + h * dh;
        for (int i = 0; i < n; i++) {
            memset(dK + i * ld, 0, (size_t)dh * sizeof *dK);
            memset(dV + i * ld, 0, (size_t)dh * sizeof *dV);
        }
        for (int i0 = 0; i0 < n; i0 += RB) {
            const int i1 = i0 + RB < n ? i0 + RB : n, rb = i1 - i0;
            const float *dO = dout + (int64_t)i0 * d + h * dh;
            const float *Ab = P + (int64_t)i0 * n;
            int64_t lda = n;
            if (drop->key) {
                for (int i = i0; i < i1; i++) {
                    const float *p = P + (int64_t)i * n;
                    float *a = A + (int64_t)(i - i0) * i1;
                    uint8_t *k = keep + (int64_t)(i - i0) * i1;
                    rmf_drop_keep(drop, drop_row(row0, i, H, h), k, i + 1);
                    for (int j = 0; j <= i; j++)
                        a[j] = p[j] * (k[j] ? scale : 0.0f); /* a select, not a branch */
                    memset(a + i + 1, 0, (size_t)(i1 - i - 1) * sizeof *a);
                }
                Ab = A;
                lda = i1;
            }
            rmf_sgemm(1, 0, i1, dh, rb, 1.0f, Ab, lda, dO, d, 1.0f, dV, ld);
            rmf_sgemm(0, 1, rb, i1, dh, 1.0f, dO, d, V, ld, 0.0f, G, i1);
            for (int i = i0; i < i1; i++) {
                float *g = G + (int64_t)(i - i0) * i1;
                const float *p = P + (int64_t)i * n;
                const int m = i + 1;
                if (drop->key) {
                    const uint8_t *k = keep + (int64_t)(i - i0) * i1;
                    for (int j = 0; j < m; j++)
                        g[j] *= k[j] ? scale : 0.0f;
                }
                const float s = rmf_dot_lanes(p, g, m);
                for (int j = 0; j < m; j++)
                    g[j] = alpha * (p[j] * (g[j] - s));
                memset(g + m, 0, (size_t)(i1 - m) * sizeof *g);
            }
            rmf_sgemm(0, 0, rb, dh, i1, 1.0f, G, i1, K, ld, 0.0f, dQ + (int64_t)i0 * ld, ld);
            rmf_sgemm(1, 0, i1, dh, rb, 1.0f, G, i1, Q + (int64_t)i0 * ld, ld, 1.0f, dK, ld);
        }
    }
}
