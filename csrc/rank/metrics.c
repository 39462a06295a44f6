/* metrics.c -- ranking metrics of SPEC section 9, from top-K lists. */
#include "data/data.h"
#include "runtime/runtime.h"

#include <math.h>
#include <stdlib.h>

/* Position of x in the ascending a[0..n), or -1 when absent. */
static int64_t find_sorted(const int64_t *a, int64_t n, int64_t x)
{
    int64_t q = rmf_lower_bound_i64(a, 0, n, x);
    return q < n && a[q] == x ? q : -1;
}

static rmf_status check_sorted_distinct(const int64_t *a, int64_t n, const char *name, rmf_error *err)
{
    for (int64_t q = 1; q < n; q++)
        if (a[q] <= a[q - 1])
            return rmf_fail(err, RMF_ERR_VALUE, "%s must be sorted ascending and distinct", name);
    return RMF_OK;
}

/* Per-user ranking metrics (SPEC section 9).  recs is n_users x k of item
 * ids with rec_len[u] valid entries; the relevant items of user u are
 * rel_items[rel_indptr[u] .. rel_indptr[u+1]), sorted ascending, distinct.
 * Users with no relevant item or an empty list are skipped: their row of
 * per_user (n_users x 4: recall, ndcg, mrr, hit) is NaN.  means[0..4) gets
 * the means over evaluated users and *n_eval their count. */
rmf_status rmf_ranking_metrics(const int64_t *recs, const int32_t *rec_len,
                               int64_t n_users, int32_t k,
                               const int64_t *rel_indptr,
                               const int64_t *rel_items, double *per_user,
                               double *means, int64_t *n_eval,
                               rmf_error *err)
{
    if (k < 1)
        return rmf_fail(err, RMF_ERR_VALUE, "k must be >= 1, got %d", k);
    if (rel_indptr[0] != 0)
        return rmf_fail(err, RMF_ERR_VALUE, "rel_indptr must start at 0");
    for (int64_t u = 0; u < n_users; u++)
        if (rel_indptr[u + 1] < rel_indptr[u])
            return rmf_fail(err, RMF_ERR_VALUE, "rel_indptr must be non-decreasing");
    double sums[4] = {0, 0, 0, 0};
    int64_t evaluated = 0;
    for (int64_t u = 0; u < n_users; u++) {
        const int64_t *rel = rel_items + rel_indptr[u];
        int64_t n_rel = rel_indptr[u + 1] - rel_indptr[u];
        int32_t len = rec_len[u] < k ? rec_len[u] : k;
        double *row = per_user + 4 * u;
        if (n_rel == 0 || len <= 0) {
            row[0] = row[1] = row[2] = row[3] = NAN;
            continue;
        }
        const int64_t *r = recs + u * (int64_t)k;
        int64_t hits = 0;
        double dcg = 0.0, rr = 0.0;
        for (int32_t p = 0; p < len; p++) {
            /* A list repeating an item would count it twice; a hit is a
             * distinct relevant item, as in the set-based definition. */
            int dup = 0;
            for (int32_t q = 0; q < p && !dup; q++)
                dup = r[q] == r[p];
            if (dup || find_sorted(rel, n_rel, r[p]) < 0)
                continue;
            hits++;
            dcg += 1.0 / log2((double)p + 2.0);
            if (rr == 0.0)
                rr = 1.0 / (double)(p + 1);
        }
        double idcg = 0.0;
        int64_t ideal = n_rel < k ? n_rel : k;
        for (int64_t p = 1; p <= ideal; p++)
            idcg += 1.0 / log2((double)p + 1.0);
        row[0] = (double)hits / (double)n_rel;
        row[1] = dcg / idcg;
        row[2] = rr;
        row[3] = hits > 0 ? 1.0 : 0.0;
        for (int m = 0; m < 4; m++)
            sums[m] += row[m];
        evaluated++;
    }
    for (int m = 0; m < 4; m++)
        means[m] = evaluated > 0 ? sums[m] / (double)evaluated : NAN;
    *n_eval = evaluated;
    return RMF_OK;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* coverage = |distinct recommended ids that are in the catalogue| /
 * n_catalog: catalog[0..n_catalog) sorted ascending and distinct, n_catalog
 * >= 1; a recommended id outside it covers nothing (coverage <= 1).
 * avg_pop = mean over all (row, slot) recommendations of the item's
 * popularity (pop_ids sorted ascending and distinct, with pop_values; 0 when
 * an id is absent; NaN when there is no recommendation).  *n_pairs gets the
 * number of recommendations averaged. */
rmf_status rmf_coverage_popularity(const int64_t *recs, const int32_t *rec_len,
                                   int64_t n_rows, int32_t k,
                                   const int64_t *catalog, int64_t n_catalog,
                                   const int64_t *pop_ids, const double *pop_values,
                                   int64_t n_pop, double *coverage, double *avg_pop,
                                   int64_t *n_pairs, rmf_error *err)
{
    if (n_catalog < 1)
        return rmf_fail(err, RMF_ERR_VALUE, "catalog must hold at least one item");
    rmf_status st;
    if ((st = check_sorted_distinct(catalog, n_catalog, "catalog", err)) != RMF_OK ||
        (st = check_sorted_distinct(pop_ids, n_pop, "pop_ids", err)) != RMF_OK)
        return st;
    /* Lengths are clamped to [0, k] here and below, so a bad rec_len can
     * neither shrink the buffer nor read past a row. */
    int64_t total = 0;
    for (int64_t r = 0; r < n_rows; r++)
        total += rec_len[r] < 0 ? 0 : rec_len[r] < k ? rec_len[r] : k;
    int64_t *in_catalog = malloc((size_t)(total > 0 ? total : 1) * sizeof *in_catalog);
    if (in_catalog == NULL)
        return rmf_fail(err, RMF_ERR_NOMEM, "out of memory for %lld recommendations", (long long)total);
    int64_t n = 0, n_in = 0;
    double pop_sum = 0.0;
    for (int64_t r = 0; r < n_rows; r++) {
        int32_t len = rec_len[r] < 0 ? 0 : rec_len[r] < k ? rec_len[r] : k;
        for (int32_t p = 0; p < len; p++) {
            int64_t id = recs[r * (int64_t)k + p];
            n++;
            /* Coverage is a share of the catalogue: an item outside it
             * covers nothing (recmetrics#40: coverage above 100%). */
            if (find_sorted(catalog, n_catalog, id) >= 0)
                in_catalog[n_in++] = id;
            int64_t at = find_sorted(pop_ids, n_pop, id);
            if (at >= 0)
                pop_sum += pop_values[at];
        }
    }
    qsort(in_catalog, (size_t)n_in, sizeof *in_catalog, cmp_i64);
    int64_t distinct = 0;
    for (int64_t q = 0; q < n_in; q++)
        distinct += q == 0 || in_catalog[q] != in_catalog[q - 1];
    free(in_catalog);
    *coverage = (double)distinct / (double)n_catalog;
    *avg_pop = n > 0 ? pop_sum / (double)n : NAN;
    *n_pairs = n;
    return RMF_OK;
}
