/*
 * data.h -- what the data core's files (data/) share with the rest of the
 * core but the glue does not call: soundness checks of ids and CSR
 * matrices, sorting, binary search.  The data core's entry points are in
 * recmf.h.
 */
#ifndef RECMF_DATA_H
#define RECMF_DATA_H

#include "recmf.h"

/* ------------------------------------------------------------------ */
/* Checks (index.c)                                                   */
/* ------------------------------------------------------------------ */

/* ids non-NULL and every ids[0..n) in [0, limit); the message names name.
 * Defined in index.c. */
rmf_status rmf_check_ids(const int32_t *ids, int64_t n, int32_t limit,
                         const char *name, rmf_error *err);
/* m non-NULL and sound: indptr starts at 0 and never decreases, the
 * indices of each row are sorted, distinct and in [0, n_cols).  When
 * n_rows >= 0, m must also be n_rows x n_cols (a model's users x items).
 * Messages start with name.  Defined in index.c. */
rmf_status rmf_csr_check(const rmf_csr *m, const char *name, int32_t n_rows,
                         int32_t n_cols, rmf_error *err);

/* 1 if item is in row u of m (binary search). */
int rmf_csr_contains(const rmf_csr *m, int32_t u, int32_t item);

/* ------------------------------------------------------------------ */
/* Sorting (sort.c)                                                   */
/* ------------------------------------------------------------------ */

/* Stable LSD radix sort: reorders perm[0..n) (a permutation of row
 * positions, e.g. 0..n-1) so keys[perm[.]] is ascending; equal keys keep
 * their order in perm.  Byte passes where all keys agree are skipped. */
rmf_status rmf_argsort_stable_i64(const int64_t *keys, int64_t n,
                                  int64_t *perm, rmf_error *err);

/* max(v) - min(v) over v[0..n), n >= 1, as an unsigned number (it can
 * exceed INT64_MAX); *lo receives min(v). */
uint64_t rmf_span_i64(const int64_t *v, int64_t n, int64_t *lo);

/* perm[0..n) = row positions sorted stably by (major, minor), when both
 * value spans and the row number pack into one 64-bit key (as user ids,
 * timestamps and a million rows do): one radix sort of 8-byte keys, about
 * a third of the two sorts by rmf_argsort_stable_i64.  Returns 0 without
 * touching perm when they do not fit; otherwise 1, with *status RMF_OK or
 * RMF_ERR_NOMEM. */
int rmf_argsort_pair_packed(const int64_t *major, const int64_t *minor,
                            int64_t n, int64_t *perm, rmf_status *status,
                            rmf_error *err);

/* ------------------------------------------------------------------ */
/* Search                                                             */
/* ------------------------------------------------------------------ */

/* First position q in [lo, hi) with a[q] >= x (hi if none); a ascending. */
#define RMF_LOWER_BOUND(name, type)                                           \
    static inline int64_t name(const type *a, int64_t lo, int64_t hi, type x) \
    {                                                                         \
        while (lo < hi) {                                                     \
            int64_t mid = lo + (hi - lo) / 2;                                 \
            if (a[mid] < x)                                                   \
                lo = mid + 1;                                                 \
            else                                                              \
                hi = mid;                                                     \
        }                                                                     \
        return lo;                                                            \
    }
RMF_LOWER_BOUND(rmf_lower_bound_i32, int32_t)
RMF_LOWER_BOUND(rmf_lower_bound_i64, int64_t)

/* Row of m holding CSR position p (0 <= p < nnz): the last r with
 * indptr[r] <= p. */
static inline int32_t rmf_csr_row_of(const rmf_csr *m, int64_t p)
{
    int32_t lo = 0, hi = m->n_rows; /* indptr[lo] <= p < indptr[hi] */
    while (hi - lo > 1) {
        int32_t mid = lo + (hi - lo) / 2;
        if (m->indptr[mid] <= p)
            lo = mid;
        else
            hi = mid;
    }
    return lo;
}

#endif /* RECMF_DATA_H */
