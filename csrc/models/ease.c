/* ease.c -- EASE (Steck, "Embarrassingly Shallow Autoencoders for Sparse
 * Data", WWW 2019): closed-form item-item weights
 *
 *   P = (X^T X + l2 I)^-1,   B = I - P diag(1/diag(P)),  diag(B) = 0,
 *
 * i.e. B_ij = -P_ij / P_jj off the diagonal, and scores s_u = x_u B.
 *
 * Fit: the Gram matrix from the CSR by sparse accumulation (one item row
 * per task, through the transposed CSR: the row being written stays in
 * cache), l2 on the diagonal, then Cholesky (potrf) and its inverse
 * (potri) by OpenBLAS's LAPACK (runtime/spd.c, shared with SLIST), and B,
 * all in one n x n float buffer: the
 * fit needs n^2 floats plus O(nnz) scratch, nothing more.
 *
 * Why float32: with l2 > 0 the matrix is positive definite with smallest
 * eigenvalue >= l2; on ML-1M (3,525 items) at l2 = 250 its condition number
 * is 437, and B from spotrf/spotri agrees with NumPy's float64 inverse to
 * 2e-6 absolute (B's largest entry 0.34), changing one user's top-10 set
 * of 6,038 (a near-tie).  Double would double the memory (3.2 GB at 20k
 * items) and roughly the time.  Counts in the Gram matrix are exact in
 * float below 2^24 users per item.
 *
 * Scoring: blocks of users, each row s_u = sum_k w_k B[item_k, :] over the
 * user's history (w = 1, or recency weights), then rmf_topk_rows: a sparse
 * history times B costs nnz x n_items, far less than a dense sgemm of the
 * block (users x n_items^2) at MovieLens densities. */
#include "models/model.h"

#include "data/data.h"
#include "rank/rank.h"
#include "runtime/runtime.h"
#include "runtime/spd.h"

#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

/* Tile edge for the in-place B pass (64 x 64 floats = 16 KB per tile). */
enum { TILE = 64 };

/* The transposed CSR: item i's users are rows[colptr[i] .. colptr[i+1]). */
static rmf_status transpose(const rmf_csr *x, int64_t **colptr_out, int32_t **rows_out, rmf_error *err)
{
    const int64_t nnz = x->indptr[x->n_rows];
    int64_t *colptr = calloc((size_t)x->n_cols + 1, sizeof *colptr);
    int32_t *rows = malloc((size_t)(nnz > 0 ? nnz : 1) * sizeof *rows);
    int64_t *next = malloc((size_t)(x->n_cols > 0 ? x->n_cols : 1) * sizeof *next);
    if (!colptr || !rows || !next) {
        free(colptr);
        free(rows);
        free(next);
        return rmf_fail(err, RMF_ERR_NOMEM, "out of memory transposing %lld positives", (long long)nnz);
    }
    for (int64_t q = 0; q < nnz; q++)
        colptr[x->indices[q] + 1]++;
    for (int32_t i = 0; i < x->n_cols; i++)
        colptr[i + 1] += colptr[i];
    memcpy(next, colptr, (size_t)x->n_cols * sizeof *next);
    for (int32_t u = 0; u < x->n_rows; u++)
        for (int64_t q = x->indptr[u]; q < x->indptr[u + 1]; q++)
            rows[next[x->indices[q]]++] = u;
    free(next);
    *colptr_out = colptr;
    *rows_out = rows;
    return RMF_OK;
}

/* Upper triangle (j >= i, row-major) of X^T X for the 0/1 matrix x into
 * G (n_cols x n_cols); the strict lower triangle is zeroed. */
rmf_status rmf_ease_gram_upper(const rmf_csr *x, int n_threads, float *G, rmf_error *err)
{
    const int32_t n = x->n_cols;
    int64_t *colptr = NULL;
    int32_t *rows = NULL;
    /* The transpose counts by column and the rows search sorted columns:
     * an unsound CSR wrote outside the counts (tests/test_fuzz.py). */
    rmf_status st = rmf_csr_check(x, "the interaction matrix", -1, -1, err);
    if (st != RMF_OK)
        return st;
    st = transpose(x, &colptr, &rows, err);
    if (st != RMF_OK)
        return st;
    const int nt = rmf_resolve_threads(n_threads);
    (void)nt;
    rmf_stop *stop = rmf_stop_here();
    /* Row i of the upper triangle: G[i][j] (j >= i) = users holding both. */
    RMF_PARALLEL(nt)
    {
        RMF_TEAM_BEGIN;
        OMP(omp for schedule(dynamic, 16) nowait)
        for (int32_t i = 0; i < n; i++) {
            if (rmf_stopping(stop))
                continue;
            float *g = G + (int64_t)i * n;
            memset(g, 0, (size_t)n * sizeof *g);
            for (int64_t c = colptr[i]; c < colptr[i + 1]; c++) {
                const int32_t u = rows[c];
                const int64_t hi = x->indptr[u + 1];
                for (int64_t q = rmf_lower_bound_i32(x->indices, x->indptr[u], hi, i); q < hi; q++)
                    g[x->indices[q]] += 1.0f;
            }
        }
        RMF_TEAM_END;
    }
    free(colptr);
    free(rows);
    return RMF_OK;
}

/* B (x->n_cols squared, row-major, caller-owned: all the fit needs besides
 * O(nnz) scratch, so callers check n_cols^2 floats fit before allocating).
 * float32 Cholesky (potrf/potri); RMF_ERR_VALUE when x is empty or float32
 * finds the matrix not positive definite. */
static rmf_status fit_B(const rmf_csr *x, float l2, int n_threads, float *B, rmf_error *err)
{
    if (x->n_cols < 1 || x->n_rows < 1 || x->indptr[x->n_rows] < 1)
        return rmf_fail(err, RMF_ERR_VALUE, "the interaction matrix is empty (%d x %d, %lld positives)",
                        x->n_rows, x->n_cols, (long long)x->indptr[x->n_rows]);
    const int32_t n = x->n_cols;
    const int nt = rmf_resolve_threads(n_threads);
    (void)nt;
    rmf_stop *stop = rmf_stop_here();
    rmf_status st = rmf_ease_gram_upper(x, n_threads, B, err);
    if (st == RMF_OK)
        st = rmf_spd_factor(n, B, l2, nt, "X^T X", err);
    if (st == RMF_OK)
        st = rmf_spd_inverse(n, B, nt, err);
    if (st != RMF_OK)
        return st;

    float *inv_d = malloc((size_t)n * sizeof *inv_d);
    if (inv_d == NULL)
        return rmf_fail(err, RMF_ERR_NOMEM, "out of memory for %d diagonal entries", n);
    rmf_fp_enter(); /* B = -P diag(1/diag P) computed with subnormals flushed too */
    int bad = -1;
    for (int32_t j = 0; j < n; j++) {
        const float d = B[(int64_t)j * n + j];
        if (!(d > 0.0f) || !isfinite(d)) {
            bad = j;
            break;
        }
        inv_d[j] = 1.0f / d;
    }
    if (bad >= 0) {
        rmf_fp_leave();
        free(inv_d);
        return rmf_fail(err, RMF_ERR_VALUE, "the inverse has a non-positive diagonal at item %d: l2 = %g "
                        "is too small for float32", bad, (double)l2);
    }
    /* B_ij = -P_ij / P_jj from the upper triangle of P, in place: tile row
     * I reads and rewrites its upper tiles (I, J >= I) and writes the mirror
     * tiles (J, I), which no other tile row touches. */
    const int32_t n_tiles = (n + TILE - 1) / TILE;
    RMF_PARALLEL(nt)
    {
        RMF_TEAM_BEGIN;
        OMP(omp for schedule(dynamic, 1) nowait)
        for (int32_t ti = 0; ti < n_tiles; ti++) {
            if (rmf_stopping(stop))
                continue;
            const int32_t i0 = ti * TILE, i1 = i0 + TILE < n ? i0 + TILE : n;
            for (int32_t tj = ti; tj < n_tiles; tj++) {
                const int32_t j0 = tj * TILE, j1 = j0 + TILE < n ? j0 + TILE : n;
                for (int32_t i = i0; i < i1; i++) {
                    float *row = B + (int64_t)i * n;
                    for (int32_t j = (j0 > i + 1 ? j0 : i + 1); j < j1; j++) {
                        const float p = row[j];
                        row[j] = -p * inv_d[j];
                        B[(int64_t)j * n + i] = -p * inv_d[i];
                    }
                }
            }
            for (int32_t i = i0; i < i1; i++)
                B[(int64_t)i * n + i] = 0.0f;
        }
        RMF_TEAM_END;
    }
    rmf_fp_leave();
    free(inv_d);
    return RMF_OK;
}

/* ------------------------------------------------------------------ */
/* The descriptor                                                     */
/* ------------------------------------------------------------------ */

typedef struct {
    rmf_config base;
    float l2; /* lambda, > 0 */
} ease_config;
_Static_assert(sizeof(ease_config) <= RMF_CONFIG_MAX, "config too large");

static const rmf_field FIELDS[] = {
    RMF_FIELD(ease_config, "l2", 'f', l2, "L2 regularisation (lambda)"),
    {NULL, 0, 0, NULL},
};

static void defaults(void *cfg)
{
    ((ease_config *)cfg)->l2 = 250.0f;
}

static rmf_status check(const void *cfg, rmf_error *err)
{
    const float l2 = ((const ease_config *)cfg)->l2;
    if (!(l2 > 0.0f) || !isfinite(l2))
        return rmf_fail(err, RMF_ERR_VALUE, "l2 must be a finite number > 0, got %g", (double)l2);
    return RMF_OK;
}

/* theta = B, n_items x n_items (filled by fit, not initialised): the
 * layout of the item-item models, EASE and SLIST. */
void rmf_item_item_layout(const void *cfg, rmf_layout *L)
{
    const rmf_config *c = cfg;
    rmf_layout_add(L, "B", c->n_items, c->n_items, RMF_BLOCK_DENSE, RMF_INIT_ZERO, 0.0);
}

static rmf_status fit(const void *cfg, const rmf_data *data, int n_threads, float *theta, rmf_error *err)
{
    return fit_B(data->positives, ((const ease_config *)cfg)->l2, n_threads, theta, err);
}

/* Top-k of s = sum_q w_q B[item_q, :] over the history row of each user
 * (w from q->weights, aligned with the history's items, or 1), in blocks
 * of users.  The item-item models (EASE, SLIST) have no per-user
 * parameters: every query is a history (the training rows for the model's
 * own users). */
rmf_status rmf_item_item_recommend(const void *cfg, const float *B, const rmf_query *q, int32_t k,
                                   int n_threads, int32_t *out_items, float *out_scores, int32_t *out_len,
                                   rmf_error *err)
{
    const int32_t n_items = ((const rmf_config *)cfg)->n_items;
    const rmf_seq *hist = q->history;
    const float *weights = q->weights;
    const int32_t *rows = q->users;
    const int64_t n = q->n;
    if (hist == NULL)
        return rmf_fail(err, RMF_ERR_VALUE, "an item-item model recommends from a history: pass the users' "
                        "rows");
    const int nt = rmf_resolve_threads(n_threads);
    (void)nt;
    const int64_t nb = rmf_block_users(n_items) < n ? rmf_block_users(n_items) : n;
    float *S = malloc((size_t)(nb * n_items) * sizeof *S);
    if (S == NULL)
        return rmf_fail(err, RMF_ERR_NOMEM, "out of memory scoring %d items", n_items);
    rmf_stop *stop = rmf_stop_here();
    rmf_fp_enter(); /* subnormals flushed in recmf's compute (fpstate.c) */
    rmf_status st = RMF_OK;
    for (int64_t u0 = 0; u0 < n && st == RMF_OK && !rmf_stopping(stop); u0 += nb) {
        const int64_t bn = u0 + nb <= n ? nb : n - u0;
        RMF_PARALLEL(nt)
        {
            RMF_TEAM_BEGIN;
            OMP(omp for schedule(dynamic, 4) nowait)
            for (int64_t r = 0; r < bn; r++) {
                float *s = S + r * n_items;
                memset(s, 0, (size_t)n_items * sizeof *s);
                const int32_t u = rows[u0 + r];
                for (int64_t e = hist->indptr[u]; e < hist->indptr[u + 1]; e++) {
                    const float w = weights ? weights[e] : 1.0f;
                    const float *b = B + (int64_t)hist->items[e] * n_items;
                    for (int32_t j = 0; j < n_items; j++)
                        s[j] += w * b[j];
                }
            }
            RMF_TEAM_END;
        }
        st = rmf_topk_select(S, bn, n_items, q->seen, rows + u0, q->allowed, k, nt, out_items + u0 * k,
                             out_scores + u0 * k, out_len + u0, err);
    }
    rmf_fp_leave();
    free(S);
    return st;
}

const rmf_model rmf_ease = {
    .kind = "ease",
    .source = RMF_SOURCE_MATRIX,
    .minibatch = 0,
    .takes_history = 1,
    .config_size = sizeof(ease_config),
    .fields = FIELDS,
    .defaults = defaults,
    .check = check,
    .layout = rmf_item_item_layout,
    .fit = fit,
    .recommend = rmf_item_item_recommend,
};
