/* popularity.c -- item popularity counts and ranking (SPEC section 4). */
#include "data/data.h"

#include <stdlib.h>
#include <string.h>

/* counts[i] = number of rows of m (checked to be sound) holding item i. */
rmf_status rmf_item_counts(const rmf_csr *m, int64_t *counts, rmf_error *err)
{
    rmf_status st = rmf_csr_check(m, "matrix", -1, -1, err);
    if (st != RMF_OK)
        return st;
    memset(counts, 0, (size_t)m->n_cols * sizeof *counts);
    int64_t nnz = m->indptr[m->n_rows];
    for (int64_t k = 0; k < nnz; k++)
        counts[m->indices[k]]++;
    return RMF_OK;
}

/* order[0..n_items): item indices by descending count, ties by lower
 * index first. */
rmf_status rmf_popularity_order(const int64_t *counts, int32_t n_items,
                                int32_t *order, rmf_error *err)
{
    /* Counts are >= 0 (and -INT64_MIN overflowed below: UBSan, found by
     * tests/test_fuzz.py). */
    for (int32_t i = 0; i < n_items; i++)
        if (counts[i] < 0)
            return rmf_fail(err, RMF_ERR_VALUE, "counts[%d] = %lld: counts must be >= 0", (int)i,
                            (long long)counts[i]);
    int64_t *neg = calloc((size_t)(n_items > 0 ? n_items : 1), sizeof *neg);
    int64_t *perm = malloc((size_t)(n_items > 0 ? n_items : 1) * sizeof *perm);
    if (neg == NULL || perm == NULL) {
        free(neg);
        free(perm);
        return rmf_fail(err, RMF_ERR_NOMEM, "out of memory ranking %d items", n_items);
    }
    /* A stable ascending sort of -count keeps equal counts in index order,
     * and indices ascend with the original ids: ties go to the lower id. */
    for (int32_t i = 0; i < n_items; i++) {
        neg[i] = -counts[i];
        perm[i] = i;
    }
    rmf_status st = rmf_argsort_stable_i64(neg, n_items, perm, err);
    if (st == RMF_OK)
        for (int32_t i = 0; i < n_items; i++)
            order[i] = (int32_t)perm[i];
    free(neg);
    free(perm);
    return st;
}
