/* transition.c -- ItemTransition: a Markov chain over each user's
 * positives in time order.  Counting builds the item x item CSR of "j
 * follows i" (directly, or within a window with a weight per gap); scoring sums the rows T[i] of a user's positives
 * weighted by 2^(-age / half_life) into a dense row, and recommend hands
 * blocks of those rows to rmf_topk_rows (rank/topk.c's heap), so seen items,
 * ties and padding follow the same rules as every other model.
 *
 * Determinism: each score row is summed by one thread, over the user's
 * history oldest first and each T row in column order, so scores never
 * depend on n_threads. */
#include "data/data.h"
#include "rank/rank.h"
#include "runtime/runtime.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* indptr starts at 0 and never decreases; items in [0, n_items). */
rmf_status rmf_check_seq(const rmf_seq *h, rmf_error *err)
{
    if (h == NULL || h->indptr == NULL)
        return rmf_fail(err, RMF_ERR_VALUE, "history must not be NULL");
    if (h->n_users < 0 || h->n_items < 0)
        return rmf_fail(err, RMF_ERR_VALUE, "history shape %d x %d is negative", h->n_users,
                        h->n_items);
    if (h->indptr[0] != 0)
        return rmf_fail(err, RMF_ERR_VALUE, "history indptr must start at 0");
    /* All of indptr first: a row that ends past the items and a later one
     * that comes back read outside them (tests/test_fuzz.py). */
    for (int32_t u = 0; u < h->n_users; u++)
        if (h->indptr[u + 1] < h->indptr[u])
            return rmf_fail(err, RMF_ERR_VALUE, "history indptr must be non-decreasing (row %d)", u);
    for (int32_t u = 0; u < h->n_users; u++) {
        for (int64_t q = h->indptr[u]; q < h->indptr[u + 1]; q++)
            if (h->items[q] < 0 || h->items[q] >= h->n_items)
                return rmf_fail(err, RMF_ERR_VALUE, "history item %d of user %d is outside [0, %d)",
                                h->items[q], u, h->n_items);
    }
    return RMF_OK;
}

/* Number of (i, j) pairs with j at most `window` entries after i in a row
 * of h: the capacity rmf_transition_counts needs for its outputs. */
int64_t rmf_transition_capacity(const rmf_seq *h, int32_t window)
{
    int64_t n = 0;
    for (int32_t u = 0; u < h->n_users; u++) {
        const int64_t len = h->indptr[u + 1] - h->indptr[u];
        for (int32_t g = 1; g <= window && g < len; g++)
            n += len - g;
    }
    return n;
}

/* Transition weights: W(i, j) = sum over rows of h and over the places
 * where item j comes g entries after item i (1 <= g <= window) of
 * gap_decay^(g - 1).  window = 1 counts how often j directly follows i (a
 * first-order Markov chain).  An n_items x n_items CSR with sorted
 * columns: out_indptr (n_items + 1), out_indices/out_weights (capacity
 * rmf_transition_capacity(h, window)); *nnz receives the number of
 * distinct pairs.  window in [1, RMF_TRANSITION_MAX_WINDOW], gap_decay in
 * (0, 1].  Each weight is summed in gap order: results do not depend on
 * n_threads. */
rmf_status rmf_transition_counts(const rmf_seq *h, int32_t window, double gap_decay,
                                 int n_threads, int64_t *out_indptr, int32_t *out_indices,
                                 double *out_weights, int64_t *nnz, rmf_error *err)
{
    rmf_status st = rmf_check_seq(h, err);
    if (st != RMF_OK)
        return st;
    if (window < 1 || window > RMF_TRANSITION_MAX_WINDOW)
        return rmf_fail(err, RMF_ERR_VALUE, "window must be in [1, %d], got %d",
                        RMF_TRANSITION_MAX_WINDOW, window);
    if (!(gap_decay > 0.0 && gap_decay <= 1.0)) /* also rejects NaN */
        return rmf_fail(err, RMF_ERR_VALUE, "gap_decay must be in (0, 1], got %g", gap_decay);
    const int32_t NI = h->n_items;
    const int64_t cap = rmf_transition_capacity(h, window);
    /* key[start[i] .. start[i+1]): every (j, gap) with j gap positions
     * after i, packed as j * window + gap - 1; sorted per source item, so
     * equal j are adjacent and summed in gap order (the same float sum
     * whatever the thread count), then run-length coded. */
    int64_t *start = calloc((size_t)NI + 2, sizeof *start);
    int64_t *key = malloc((size_t)(cap > 0 ? cap : 1) * sizeof *key);
    double *gap_w = malloc((size_t)window * sizeof *gap_w);
    if (start == NULL || key == NULL || gap_w == NULL) {
        free(start);
        free(key);
        free(gap_w);
        return rmf_fail(err, RMF_ERR_NOMEM, "out of memory counting %lld transitions",
                        (long long)cap);
    }
    gap_w[0] = 1.0;
    for (int32_t g = 1; g < window; g++)
        gap_w[g] = gap_w[g - 1] * gap_decay;
    /* Indices in int64: item + 2 overflowed int32 for n_items near 2^31
     * (a write before `start`, found by tests/test_fuzz.py). */
    for (int32_t u = 0; u < h->n_users; u++)
        for (int64_t q = h->indptr[u]; q < h->indptr[u + 1]; q++)
            for (int32_t g = 1; g <= window && q + g < h->indptr[u + 1]; g++)
                start[(int64_t)h->items[q] + 2]++;
    for (int64_t i = 0; i < NI; i++)
        start[i + 2] += start[i + 1];
    /* start[i + 1] is now the fill cursor of source i. */
    for (int32_t u = 0; u < h->n_users; u++)
        for (int64_t q = h->indptr[u]; q < h->indptr[u + 1]; q++)
            for (int32_t g = 1; g <= window && q + g < h->indptr[u + 1]; g++)
                key[start[(int64_t)h->items[q] + 1]++] = (int64_t)h->items[q + g] * window + (g - 1);
    const int nt = rmf_resolve_threads(n_threads);
    (void)nt;
    rmf_stop *stop = rmf_stop_here();
    RMF_PARALLEL(nt, if (cap > 65536))
    {
        RMF_TEAM_BEGIN;
        OMP(omp for schedule(dynamic, 64) nowait)
        for (int32_t i = 0; i < NI; i++)
            if (!rmf_stopping(stop))
                qsort(key + start[i], (size_t)(start[i + 1] - start[i]), sizeof *key, cmp_i64);
        RMF_TEAM_END;
    }
    if (rmf_stopped(stop)) {
        free(start);
        free(key);
        free(gap_w);
        return rmf_fail(err, RMF_ERR_INTERRUPTED, "interrupted");
    }
    int64_t n = 0;
    out_indptr[0] = 0;
    for (int64_t i = 0; i < NI; i++) {
        for (int64_t q = start[i]; q < start[i + 1]; q++) {
            const int32_t j = (int32_t)(key[q] / window);
            const double w = gap_w[key[q] % window];
            if (q > start[i] && key[q - 1] / window == j) {
                out_weights[n - 1] += w;
                continue;
            }
            out_indices[n] = j;
            out_weights[n++] = w;
        }
        out_indptr[i + 1] = n;
    }
    *nnz = n;
    free(start);
    free(key);
    free(gap_w);
    return RMF_OK;
}

static rmf_status check_scoring_args(const rmf_csr *trans, const float *probs, const rmf_seq *h,
                                     const int32_t *users, int64_t n, double half_life,
                                     rmf_error *err)
{
    if (trans == NULL || probs == NULL)
        return rmf_fail(err, RMF_ERR_VALUE, "the transition matrix must not be NULL");
    if (trans->n_rows != trans->n_cols || trans->n_rows != h->n_items)
        return rmf_fail(err, RMF_ERR_VALUE,
                        "the transition matrix is %d x %d but the history has %d items",
                        trans->n_rows, trans->n_cols, h->n_items);
    rmf_status st = rmf_csr_check(trans, "the transition matrix", h->n_items, h->n_items, err);
    if (st != RMF_OK)
        return st;
    if (!(half_life > 0.0)) /* also rejects NaN */
        return rmf_fail(err, RMF_ERR_VALUE, "half_life must be > 0 (inf: no decay), got %g",
                        half_life);
    if (n < 0)
        return rmf_fail(err, RMF_ERR_VALUE, "n must be >= 0, got %lld", (long long)n);
    return rmf_check_ids(users, n, h->n_users, "users", err);
}

/* The dense row of one user: out[j] = sum over the user's positives (oldest
 * first) of w(age) T[i][j], w(age) = 2^(-age / half_life). */
static void score_row(const rmf_csr *trans, const float *probs, const rmf_seq *h, int32_t u,
                      double decay, float *out)
{
    memset(out, 0, (size_t)trans->n_cols * sizeof *out);
    const int64_t b = h->indptr[u], e = h->indptr[u + 1];
    for (int64_t q = b; q < e; q++) {
        const float w = (float)exp(-(double)(e - 1 - q) * decay);
        const int32_t i = h->items[q];
        for (int64_t t = trans->indptr[i]; t < trans->indptr[i + 1]; t++)
            out[trans->indices[t]] += w * probs[t];
    }
}

/* Rows for users[0..n) into out (n x n_items); arguments checked. */
static void score_block(const rmf_csr *trans, const float *probs, const rmf_seq *h,
                        const int32_t *users, int64_t n, double half_life, int nt, float *out)
{
    const double decay = log(2.0) / half_life; /* 0 for an infinite half-life */
    (void)nt;
    rmf_stop *stop = rmf_stop_here();
    RMF_PARALLEL(nt, if (n > 64))
    {
        RMF_TEAM_BEGIN;
        OMP(omp for schedule(dynamic, 16) nowait)
        for (int64_t r = 0; r < n; r++)
            if (!rmf_stopping(stop))
                score_row(trans, probs, h, users[r], decay, out + r * (int64_t)trans->n_cols);
        RMF_TEAM_END;
    }
}

/* out (n x n_items, row-major): for user users[r],
 * out[r][j] = sum over the user's positives i at age a of
 * 2^(-a / half_life) * probs[T(i, j)], where trans (n_items x n_items,
 * sorted columns) holds the structure of T and probs its values.
 * half_life > 0; INFINITY weighs every positive 1.  Each row is summed by
 * one thread in a fixed order: results do not depend on n_threads. */
rmf_status rmf_transition_scores(const rmf_csr *trans, const float *probs, const rmf_seq *h,
                                 const int32_t *users, int64_t n, double half_life,
                                 int n_threads, float *out, rmf_error *err)
{
    rmf_status st = rmf_check_seq(h, err);
    if (st == RMF_OK)
        st = check_scoring_args(trans, probs, h, users, n, half_life, err);
    if (st != RMF_OK)
        return st;
    rmf_fp_enter();
    score_block(trans, probs, h, users, n, half_life, rmf_resolve_threads(n_threads), out);
    rmf_fp_leave();
    return RMF_OK;
}

/* Top-k of those rows (rules and outputs of rmf_topk_rows); seen may be
 * NULL, else n_users x n_items; allowed NULL or n_items candidate flags. */
rmf_status rmf_transition_recommend(const rmf_csr *trans, const float *probs, const rmf_seq *h,
                                    const int32_t *users, int64_t n, double half_life,
                                    const rmf_csr *seen, const uint8_t *allowed, int32_t k,
                                    int n_threads,
                                    int32_t *out_items, float *out_scores, int32_t *out_len,
                                    rmf_error *err)
{
    rmf_status st = rmf_check_seq(h, err);
    if (st == RMF_OK)
        st = check_scoring_args(trans, probs, h, users, n, half_life, err);
    if (st != RMF_OK)
        return st;
    if (k < 1)
        return rmf_fail(err, RMF_ERR_VALUE, "k must be >= 1, got %d", k);
    if (seen != NULL && (seen->n_rows != h->n_users || seen->n_cols != h->n_items))
        return rmf_fail(err, RMF_ERR_VALUE, "seen matrix is %d x %d but the model is %d x %d",
                        seen->n_rows, seen->n_cols, h->n_users, h->n_items);
    if (n == 0)
        return RMF_OK;
    const int32_t NI = h->n_items;
    const int nt = rmf_resolve_threads(n_threads);
    const int64_t nb = rmf_block_users(NI) < n ? rmf_block_users(NI) : n;
    float *S = malloc((size_t)(nb * (NI > 0 ? NI : 1)) * sizeof *S);
    if (S == NULL)
        return rmf_fail(err, RMF_ERR_NOMEM, "out of memory scoring %d items", (int)NI);
    rmf_stop *stop = rmf_stop_here();
    rmf_fp_enter();
    for (int64_t u0 = 0; u0 < n && st == RMF_OK && !rmf_stopping(stop); u0 += nb) {
        const int64_t bn = u0 + nb <= n ? nb : n - u0;
        score_block(trans, probs, h, users + u0, bn, half_life, nt, S);
        st = rmf_topk_rows(S, bn, NI, seen, users + u0, allowed, k, nt, out_items + u0 * k,
                           out_scores + u0 * k, out_len + u0, err);
    }
    rmf_fp_leave();
    free(S);
    return st;
}
