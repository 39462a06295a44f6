/* slist.c -- SLIST (Choi, Kim, Lee, Shim & Lee, "Session-aware Linear
 * Item-Similarity/Transition Model for session-based recommendation",
 * WWW 2021; the authors' code is jin530/SLIST) on users' sequences.
 *
 * Each user's items in time order form one session of length L.  X has one
 * row per user (its items, weight 1); for every position t < L - 1 the
 * pair of rows S_t (the items up to t, item j weighted r^(t - j)) and T_t
 * (the items after t, item j weighted r^(j - t - 1)), r = exp(-1 /
 * position_decay), both cut to `window` items.  One solve:
 *
 *   B = (A + l2 I)^-1 R,   A = alpha X^T X + (1 - alpha) S^T S,
 *                          R = alpha X^T X + (1 - alpha) S^T T.
 *
 * S and T are never built.  Within one session the weight S^T S gives the
 * items at places a <= b is a sum over the rows that hold both,
 *
 *   sum_{t = b}^{min(a + w - 1, L - 2)} r^(t - a) r^(t - b) = r^(b - a) G2[K],
 *   G2[K] = sum_{k < K} r^(2k),  K = min(a + w - 1, L - 2) - b + 1,
 *
 * and S^T T gives the items at a < c the same r^(c - a - 1) from each of
 * the K = min(c - 1, a + w - 1) - max(a, c - w) + 1 rows t that hold a in
 * S and c in T.  So row i of A and R is summed from each place item i
 * holds in a session: 2w - 1 neighbours on each side, plus X's whole row.
 * Rows are summed in double, one item row per task in a fixed order (the
 * result does not depend on the thread count), and written as float32.
 *
 * The solve reuses EASE's float32 Cholesky (runtime/spd.c): A + l2 I is
 * factored in place in `A`, and R, in B, goes through two triangular
 * solves, 2n^2 floats in all (theta is B; fit allocates A).  SLIST has no zero-diagonal constraint for
 * alpha < 1 (the authors add one only at alpha = 1, pure SLIS): an item
 * the user holds may score high for itself, and recommendation removes it
 * with the seen items. */
#include "models/model.h"

#include "runtime/runtime.h"
#include "runtime/spd.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

typedef struct {
    rmf_config base;
    float alpha;          /* weight of X^T X (SLIS) against S's terms (SLIT), [0, 1] */
    float l2;             /* ridge on B, finite and > 0 */
    float position_decay; /* r = exp(-1 / position_decay) per place; INFINITY: 1 */
    int32_t window;       /* items S and T hold on each side of a place, >= 1 */
} slist_config;
_Static_assert(sizeof(slist_config) <= RMF_CONFIG_MAX, "config too large");

/* Where each item occurs: the k-th occurrence of item i is user occ_user[k]
 * at place occ_pos[k] of their row, k in [occ_ptr[i], occ_ptr[i + 1]),
 * users ascending. */
typedef struct {
    int64_t *ptr;
    int32_t *user;
    int32_t *pos;
} occurrences;

static void occ_free(occurrences *o)
{
    free(o->ptr);
    free(o->user);
    free(o->pos);
}

static rmf_status occ_build(const rmf_seq *h, occurrences *o, rmf_error *err)
{
    const int64_t nnz = h->indptr[h->n_users];
    o->ptr = calloc((size_t)h->n_items + 1, sizeof *o->ptr);
    o->user = malloc((size_t)(nnz > 0 ? nnz : 1) * sizeof *o->user);
    o->pos = malloc((size_t)(nnz > 0 ? nnz : 1) * sizeof *o->pos);
    int64_t *next = malloc((size_t)(h->n_items > 0 ? h->n_items : 1) * sizeof *next);
    if (!o->ptr || !o->user || !o->pos || !next) {
        occ_free(o);
        free(next);
        return rmf_fail(err, RMF_ERR_NOMEM, "out of memory indexing %lld sequence entries", (long long)nnz);
    }
    for (int64_t q = 0; q < nnz; q++)
        o->ptr[h->items[q] + 1]++;
    for (int32_t i = 0; i < h->n_items; i++)
        o->ptr[i + 1] += o->ptr[i];
    memcpy(next, o->ptr, (size_t)h->n_items * sizeof *next);
    for (int32_t u = 0; u < h->n_users; u++)
        for (int64_t q = h->indptr[u]; q < h->indptr[u + 1]; q++) {
            const int64_t k = next[h->items[q]]++;
            o->user[k] = u;
            o->pos[k] = (int32_t)(q - h->indptr[u]);
        }
    free(next);
    return RMF_OK;
}

/* Adds row `item` of X^T X, S^T S and S^T T into xx, ss, st (n_items
 * doubles each). */
static void sum_row(const rmf_seq *h, const occurrences *o, int32_t item, int32_t w, const double *rpow,
                    const double *g2, double *xx, double *ss, double *st)
{
    for (int64_t k = o->ptr[item]; k < o->ptr[item + 1]; k++) {
        const int64_t s0 = h->indptr[o->user[k]];
        const int32_t L = (int32_t)(h->indptr[o->user[k] + 1] - s0);
        const int32_t a = o->pos[k];
        const int32_t *seq = h->items + s0;
        for (int32_t j = 0; j < L; j++)
            xx[seq[j]] += 1.0;
        if (a > L - 2) /* the last item is in no S row */
            continue;
        const int32_t b_lo = a - w + 1 > 0 ? a - w + 1 : 0;
        const int32_t b_hi = a + w - 1 < L - 2 ? a + w - 1 : L - 2;
        for (int32_t b = b_lo; b <= b_hi; b++) {
            const int32_t lo = a > b ? a : b, mn = a < b ? a : b;
            const int32_t hi = mn + w - 1 < L - 2 ? mn + w - 1 : L - 2;
            if (hi >= lo)
                ss[seq[b]] += rpow[a > b ? a - b : b - a] * g2[hi - lo + 1];
        }
        const int32_t c_hi = a + 2 * w - 1 < L - 1 ? a + 2 * w - 1 : L - 1;
        for (int32_t c = a + 1; c <= c_hi; c++) {
            const int32_t lo = a > c - w ? a : c - w;
            const int32_t hi = c - 1 < a + w - 1 ? c - 1 : a + w - 1;
            if (hi >= lo)
                st[seq[c]] += rpow[c - a - 1] * (double)(hi - lo + 1);
        }
    }
}

/* B = (A + l2 I)^-1 R (see the top of the file) from the sequences h,
 * one session per row, oldest first; A is n x n float scratch. */
static rmf_status solve(const rmf_seq *h, const slist_config *p, int n_threads, float *B, float *A,
                        rmf_error *err)
{
    const int32_t n = h->n_items;
    if (n < 1 || h->indptr[h->n_users] < 1)
        return rmf_fail(err, RMF_ERR_VALUE, "the sequences are empty (%d users, %d items, %lld entries)",
                        h->n_users, n, (long long)h->indptr[h->n_users]);
    int32_t longest = 1;
    for (int32_t u = 0; u < h->n_users; u++)
        if (h->indptr[u + 1] - h->indptr[u] > longest)
            longest = (int32_t)(h->indptr[u + 1] - h->indptr[u]);
    /* A window past the longest session changes nothing. */
    const int32_t w = p->window < longest ? p->window : longest;
    const int nt = rmf_resolve_threads(n_threads);
    occurrences o = {NULL, NULL, NULL};
    rmf_status st = occ_build(h, &o, err);
    if (st != RMF_OK)
        return st;
    double *rpow = malloc((size_t)2 * (size_t)w * sizeof *rpow);
    double *g2 = malloc(((size_t)w + 1) * sizeof *g2);
    double *acc = calloc((size_t)nt * 3 * (size_t)n, sizeof *acc);
    if (!rpow || !g2 || !acc) {
        occ_free(&o);
        free(rpow);
        free(g2);
        free(acc);
        return rmf_fail(err, RMF_ERR_NOMEM, "out of memory for SLIST's row sums (%d items, %d threads)", n, nt);
    }
    for (int32_t d = 0; d < 2 * w; d++)
        rpow[d] = exp(-(double)d / (double)p->position_decay);
    g2[0] = 0.0;
    for (int32_t k = 0; k < w; k++)
        g2[k + 1] = g2[k] + rpow[k] * rpow[k];
    const double alpha = p->alpha, beta = 1.0 - (double)p->alpha;
    rmf_stop *stop = rmf_stop_here();
    rmf_fp_enter();
    RMF_PARALLEL(nt)
    {
        RMF_TEAM_BEGIN;
#ifdef _OPENMP
        double *xx = acc + (size_t)omp_get_thread_num() * 3 * (size_t)n;
#else
        double *xx = acc;
#endif
        double *ss = xx + n, *sT = ss + n;
        OMP(omp for schedule(dynamic, 16) nowait)
        for (int32_t i = 0; i < n; i++) {
            if (rmf_stopping(stop)) /* Ctrl-C (runtime/stop.c): skip the remaining rows */
                continue;
            sum_row(h, &o, i, w, rpow, g2, xx, ss, sT);
            float *a_row = A + (int64_t)i * n, *b_row = B + (int64_t)i * n;
            for (int32_t j = 0; j < n; j++) {
                if (j >= i) /* the factor reads the upper triangle only */
                    a_row[j] = (float)(alpha * xx[j] + beta * ss[j]);
                b_row[j] = (float)(alpha * xx[j] + beta * sT[j]);
                xx[j] = ss[j] = sT[j] = 0.0;
            }
        }
        RMF_TEAM_END;
    }
    rmf_fp_leave();
    occ_free(&o);
    free(rpow);
    free(g2);
    free(acc);
    st = rmf_spd_factor(n, A, p->l2, nt, "alpha X^T X + (1 - alpha) S^T S", err);
    if (st != RMF_OK)
        return st;
    return rmf_spd_solve(n, A, B, nt, err);
}

/* ------------------------------------------------------------------ */
/* The descriptor                                                     */
/* ------------------------------------------------------------------ */

static const rmf_field FIELDS[] = {
    RMF_FIELD(slist_config, "alpha", 'f', alpha, "weight of the similarity term X^T X, in [0, 1]"),
    RMF_FIELD(slist_config, "l2", 'f', l2, "L2 regularisation of B (lambda), > 0"),
    RMF_FIELD(slist_config, "position_decay", 'f', position_decay,
              "places over which S and T's weights fall by e (inf: no decay)"),
    RMF_FIELD(slist_config, "window", 'i', window, "items S and T hold on each side of a place"),
    {NULL, 0, 0, NULL},
};

static void defaults(void *cfg)
{
    slist_config *c = cfg;
    c->alpha = 0.2f;
    c->l2 = 300.0f;
    c->position_decay = 8.0f;
    c->window = 10;
}

static rmf_status check(const void *cfg, rmf_error *err)
{
    const slist_config *p = cfg;
    if (!(p->alpha >= 0.0f && p->alpha <= 1.0f))
        return rmf_fail(err, RMF_ERR_VALUE, "alpha must be in [0, 1], got %g", (double)p->alpha);
    if (!(p->l2 > 0.0f) || !isfinite(p->l2))
        return rmf_fail(err, RMF_ERR_VALUE, "l2 must be a finite number > 0, got %g", (double)p->l2);
    if (!(p->position_decay > 0.0f)) /* INFINITY: no decay */
        return rmf_fail(err, RMF_ERR_VALUE, "position_decay must be > 0, got %g", (double)p->position_decay);
    if (p->window < 1)
        return rmf_fail(err, RMF_ERR_VALUE, "window must be >= 1, got %d", p->window);
    return RMF_OK;
}

static rmf_status fit(const void *cfg, const rmf_data *data, int n_threads, float *theta, rmf_error *err)
{
    const int32_t n = ((const slist_config *)cfg)->base.n_items;
    float *A = malloc((size_t)n * (size_t)n * sizeof *A);
    if (A == NULL)
        return rmf_fail(err, RMF_ERR_NOMEM, "out of memory for SLIST's %d x %d factor (%.2f GiB)", n, n,
                        4.0 * (double)n * (double)n / 1073741824.0);
    rmf_status st = solve(data->seq, cfg, n_threads, theta, A, err);
    free(A);
    return st;
}

const rmf_model rmf_slist = {
    .kind = "slist",
    .source = RMF_SOURCE_SEQUENCES,
    .minibatch = 0,
    .takes_history = 1,
    .config_size = sizeof(slist_config),
    .fields = FIELDS,
    .defaults = defaults,
    .check = check,
    .layout = rmf_item_item_layout, /* theta = B */
    .fit = fit,
    .recommend = rmf_item_item_recommend,
};
