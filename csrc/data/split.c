/* split.c -- per-user temporal split (SPEC section 2). */
#include "data/data.h"

/* order[0..n): row positions sorted stably by (user, time), exactly as
 * pandas' sort_values(["user", "time"]).  part[k] is the part of row
 * order[k]: users with fewer than min_train + n_val + n_test rows go to
 * train; otherwise their last n_test rows go to test and the n_val before
 * them to val. */
rmf_status rmf_temporal_split(const int64_t *user, const int64_t *time,
                              int64_t n, int64_t n_val, int64_t n_test,
                              int64_t min_train, int64_t *order,
                              int8_t *part, rmf_error *err)
{
    if (n_val < 0)
        return rmf_fail(err, RMF_ERR_VALUE, "n_val must be >= 0, got %lld", (long long)n_val);
    if (n_test < 0)
        return rmf_fail(err, RMF_ERR_VALUE, "n_test must be >= 0, got %lld", (long long)n_test);
    if (min_train < 0)
        return rmf_fail(err, RMF_ERR_VALUE, "min_train must be >= 0, got %lld", (long long)min_train);

    rmf_status st;
    if (!rmf_argsort_pair_packed(user, time, n, order, &st, err)) {
        /* Spans too wide to pack.  LSD order: by time first, then stably
         * by user, gives rows sorted by (user, time) with ties in input
         * order -- pandas' stable lexsort. */
        for (int64_t r = 0; r < n; r++)
            order[r] = r;
        st = rmf_argsort_stable_i64(time, n, order, err);
        if (st == RMF_OK)
            st = rmf_argsort_stable_i64(user, n, order, err);
    }
    if (st != RMF_OK)
        return st;

    /* Saturating: absurdly large sizes mean "no user is eligible", not an
     * overflowed (negative) threshold. */
    const int64_t need = (n_val > INT64_MAX - n_test || min_train > INT64_MAX - n_val - n_test)
                             ? INT64_MAX
                             : min_train + n_val + n_test;
    int64_t start = 0;
    while (start < n) {
        int64_t end = start + 1;
        while (end < n && user[order[end]] == user[order[start]])
            end++;
        int64_t count = end - start;
        for (int64_t k = start; k < end; k++) {
            int64_t rank = k - start + 1; /* 1-based, as the notebook's cumcount + 1 */
            int8_t p = RMF_PART_TRAIN;
            if (count >= need) {
                if (rank > count - n_test)
                    p = RMF_PART_TEST;
                else if (rank > count - n_test - n_val)
                    p = RMF_PART_VAL;
            }
            part[k] = p;
        }
        start = end;
    }
    return RMF_OK;
}
