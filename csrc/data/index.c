/* index.c -- id factorization and the CSR of positives (SPEC section 3). */
#include "data/data.h"
#include "runtime/runtime.h"

#include <stdlib.h>
#include <string.h>

/* Ids spanning a range this small (relative to n) are factorized through
 * a lookup table over the range: three linear passes instead of a sort.
 * MovieLens ids span ~1-2x their count. */
#define DENSE_RANGE_PER_ID 4
#define DENSE_RANGE_MIN (1 << 16)
#define DENSE_RANGE_MAX (1 << 26)

/* The table path: slot[id - lo] marks presence, then becomes the code. */
static rmf_status factorize_dense(const int64_t *ids, int64_t n, int64_t lo,
                                  uint64_t span, int32_t *codes,
                                  int64_t *uniques, int64_t *n_unique,
                                  rmf_error *err)
{
    int32_t *slot = calloc((size_t)span, sizeof *slot);
    if (slot == NULL)
        return rmf_fail(err, RMF_ERR_NOMEM, "out of memory factorizing %lld ids", (long long)n);
    for (int64_t r = 0; r < n; r++)
        slot[(uint64_t)ids[r] - (uint64_t)lo] = 1;
    int32_t u = 0; /* span <= 2^26: the count fits */
    for (uint64_t k = 0; k < span; k++)
        if (slot[k]) {
            uniques[u] = (int64_t)((uint64_t)lo + k);
            slot[k] = u++;
        }
    for (int64_t r = 0; r < n; r++)
        codes[r] = slot[(uint64_t)ids[r] - (uint64_t)lo];
    *n_unique = u;
    free(slot);
    return RMF_OK;
}

/* codes[r] = rank of ids[r] among the distinct ids, ascending; uniques
 * (capacity n) receives the distinct ids ascending, *n_unique their count.
 * Fails if there are more than INT32_MAX distinct ids. */
rmf_status rmf_factorize(const int64_t *ids, int64_t n, int32_t *codes,
                         int64_t *uniques, int64_t *n_unique, rmf_error *err)
{
    if (n > 0) {
        int64_t lo;
        uint64_t span = rmf_span_i64(ids, n, &lo) + 1; /* 0 when all of int64 */
        uint64_t limit = (uint64_t)n * DENSE_RANGE_PER_ID;
        if (limit < DENSE_RANGE_MIN) limit = DENSE_RANGE_MIN;
        if (limit > DENSE_RANGE_MAX) limit = DENSE_RANGE_MAX;
        if (span != 0 && span <= limit)
            return factorize_dense(ids, n, lo, span, codes, uniques, n_unique, err);
    }
    int64_t *perm = malloc((size_t)(n > 0 ? n : 1) * sizeof *perm);
    if (perm == NULL)
        return rmf_fail(err, RMF_ERR_NOMEM, "out of memory factorizing %lld ids", (long long)n);
    for (int64_t r = 0; r < n; r++)
        perm[r] = r;
    rmf_status st = rmf_argsort_stable_i64(ids, n, perm, err);
    if (st != RMF_OK) {
        free(perm);
        return st;
    }
    int64_t u = 0;
    for (int64_t k = 0; k < n; k++) {
        int64_t id = ids[perm[k]];
        if (k == 0 || id != uniques[u - 1]) {
            if (u == INT32_MAX) {
                free(perm);
                return rmf_fail(err, RMF_ERR_VALUE, "more than %d distinct ids", INT32_MAX);
            }
            uniques[u++] = id;
        }
        codes[perm[k]] = (int32_t)(u - 1);
    }
    *n_unique = u;
    free(perm);
    return RMF_OK;
}

/* Builds a CSR of (rows[r], cols[r]) pairs; duplicated pairs are kept once.
 * indptr has n_rows + 1 entries, indices capacity n; *nnz receives the
 * number of distinct pairs. */
rmf_status rmf_build_csr(const int32_t *rows, const int32_t *cols, int64_t n,
                         int32_t n_rows, int32_t n_cols, int64_t *indptr,
                         int32_t *indices, int64_t *nnz, rmf_error *err)
{
    if (n_rows < 0 || n_cols < 0)
        return rmf_fail(err, RMF_ERR_VALUE, "matrix shape must be >= 0, got %d x %d", n_rows, n_cols);
    for (int64_t r = 0; r < n; r++) {
        if (rows[r] < 0 || rows[r] >= n_rows)
            return rmf_fail(err, RMF_ERR_VALUE, "row index %d at position %lld is outside [0, %d)",
                            rows[r], (long long)r, n_rows);
        if (cols[r] < 0 || cols[r] >= n_cols)
            return rmf_fail(err, RMF_ERR_VALUE, "column index %d at position %lld is outside [0, %d)",
                            cols[r], (long long)r, n_cols);
    }
    int64_t *col_start = calloc((size_t)n_cols + 1, sizeof *col_start);
    int64_t *by_col = malloc((size_t)(n > 0 ? n : 1) * sizeof *by_col);
    if (col_start == NULL || by_col == NULL) {
        free(col_start);
        free(by_col);
        return rmf_fail(err, RMF_ERR_NOMEM, "out of memory building a CSR of %lld entries", (long long)n);
    }
    /* Two counting sorts: by column, then stably by row, so every row comes
     * out with sorted columns and duplicates side by side -- linear time. */
    for (int64_t r = 0; r < n; r++)
        col_start[cols[r] + 1]++;
    for (int32_t c = 0; c < n_cols; c++)
        col_start[c + 1] += col_start[c];
    for (int64_t r = 0; r < n; r++)
        by_col[col_start[cols[r]]++] = r;

    memset(indptr, 0, ((size_t)n_rows + 1) * sizeof *indptr);
    for (int64_t r = 0; r < n; r++)
        indptr[rows[r] + 1]++;
    for (int32_t u = 0; u < n_rows; u++)
        indptr[u + 1] += indptr[u];
    /* fill[u] is the next free slot of row u. */
    int64_t *fill = malloc(((size_t)n_rows + 1) * sizeof *fill);
    if (fill == NULL) {
        free(col_start);
        free(by_col);
        return rmf_fail(err, RMF_ERR_NOMEM, "out of memory building a CSR of %d rows", n_rows);
    }
    memcpy(fill, indptr, ((size_t)n_rows + 1) * sizeof *fill);
    for (int64_t k = 0; k < n; k++) {
        int64_t r = by_col[k];
        indices[fill[rows[r]]++] = cols[r];
    }
    /* Drop repeated (row, col) pairs in place: the matrix is 0/1. */
    int64_t out = 0;
    for (int32_t u = 0; u < n_rows; u++) {
        int64_t begin = indptr[u], end = indptr[u + 1];
        indptr[u] = out;
        for (int64_t k = begin; k < end; k++) {
            if (k > begin && indices[k] == indices[k - 1])
                continue;
            indices[out++] = indices[k];
        }
    }
    indptr[n_rows] = out;
    *nnz = out;
    free(fill);
    free(col_start);
    free(by_col);
    return RMF_OK;
}

int rmf_csr_contains(const rmf_csr *m, int32_t u, int32_t item)
{
    int64_t end = m->indptr[u + 1];
    int64_t q = rmf_lower_bound_i32(m->indices, m->indptr[u], end, item);
    return q < end && m->indices[q] == item;
}

rmf_status rmf_check_ids(const int32_t *ids, int64_t n, int32_t limit,
                         const char *name, rmf_error *err)
{
    if (ids == NULL)
        return rmf_fail(err, RMF_ERR_VALUE, "%s must not be NULL", name);
    for (int64_t k = 0; k < n; k++)
        if (ids[k] < 0 || ids[k] >= limit)
            return rmf_fail(err, RMF_ERR_VALUE,
                            "%s[%lld] = %d is out of range [0, %d)", name,
                            (long long)k, (int)ids[k], (int)limit);
    return RMF_OK;
}

rmf_status rmf_csr_check(const rmf_csr *m, const char *name, int32_t n_rows,
                         int32_t n_cols, rmf_error *err)
{
    if (m == NULL || m->indptr == NULL || m->n_rows < 0 || m->n_cols < 0)
        return rmf_fail(err, RMF_ERR_VALUE, "%s must be a CSR matrix", name);
    if (n_rows >= 0 && (m->n_rows != n_rows || m->n_cols != n_cols))
        return rmf_fail(err, RMF_ERR_VALUE, "%s is %d x %d but the model has %d users x %d items", name,
                        (int)m->n_rows, (int)m->n_cols, (int)n_rows, (int)n_cols);
    const int64_t *p = m->indptr;
    /* All of indptr first: the index loop below must stay inside indices. */
    if (p[0] != 0)
        return rmf_fail(err, RMF_ERR_VALUE, "%s: indptr must start at 0", name);
    for (int32_t u = 0; u < m->n_rows; u++)
        if (p[u + 1] < p[u])
            return rmf_fail(err, RMF_ERR_VALUE, "%s: indptr must be non-decreasing (row %d)", name, (int)u);
    if (m->indices == NULL && p[m->n_rows] > 0)
        return rmf_fail(err, RMF_ERR_VALUE, "%s: indices must not be NULL", name);
    for (int32_t u = 0; u < m->n_rows; u++)
        for (int64_t k = p[u]; k < p[u + 1]; k++)
            if (m->indices[k] < 0 || m->indices[k] >= m->n_cols || (k > p[u] && m->indices[k] <= m->indices[k - 1]))
                return rmf_fail(err, RMF_ERR_VALUE, "%s: indices of row %d must be sorted, distinct and in [0, %d)",
                                name, (int)u, (int)m->n_cols);
    return RMF_OK;
}
