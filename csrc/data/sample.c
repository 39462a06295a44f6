/* sample.c -- negative sampling (SPEC section 5).
 *
 * Work is cut into fixed shards of SHARD draws, each with its own RNG
 * stream (seed, purpose, epoch, shard).  Threads pick up whole shards, so
 * the output depends only on (seed, epoch), never on the thread count. */
#include "data/data.h"
#include "runtime/runtime.h"

#include <stdlib.h>

#define SHARD 65536

static rmf_status check_csr(const rmf_csr *m, rmf_error *err)
{
    rmf_status st = rmf_csr_check(m, "positives", -1, -1, err);
    if (st != RMF_OK)
        return st;
    if (m->n_rows <= 0 || m->n_cols <= 0)
        return rmf_fail(err, RMF_ERR_VALUE, "the interaction matrix is empty (%d x %d)",
                        m->n_rows, m->n_cols);
    if (m->indptr[m->n_rows] <= 0)
        return rmf_fail(err, RMF_ERR_VALUE, "the interaction matrix has no positives");
    return RMF_OK;
}

/* Uniform negatives: for positive p (CSR order, row u), out[p * n_neg + r]
 * is an item drawn uniformly from [0, n_cols), redrawn while it is a
 * positive of u.  Positives are cut into fixed shards with their own RNG
 * stream (seed, epoch, shard), so the result depends only on (seed, epoch),
 * never on n_threads.  A user whose row holds every item gives
 * RMF_ERR_SATURATED naming the user index (also in err->row). */
rmf_status rmf_sample_uniform(const rmf_csr *m, int32_t n_neg, uint64_t seed,
                              uint64_t epoch, int n_threads, int32_t *out,
                              rmf_error *err)
{
    rmf_status st = check_csr(m, err);
    if (st != RMF_OK)
        return st;
    if (n_neg < 1)
        return rmf_fail(err, RMF_ERR_VALUE, "n_neg must be >= 1, got %d", n_neg);
    /* Rejection sampling only terminates if every user has a non-positive. */
    for (int32_t u = 0; u < m->n_rows; u++)
        if (m->indptr[u + 1] - m->indptr[u] >= m->n_cols)
            return rmf_fail_row(err, RMF_ERR_SATURATED, u,
                                "user index %d has every one of the %d items as a positive: "
                                "no negative can be drawn for it",
                                u, m->n_cols);

    const int64_t nnz = m->indptr[m->n_rows];
    const int64_t n_shards = (nnz + SHARD - 1) / SHARD;
    (void)n_threads;
    rmf_stop *stop = rmf_stop_here();
    RMF_PARALLEL(rmf_resolve_threads(n_threads))
    {
        RMF_TEAM_BEGIN;
#ifdef _OPENMP
#pragma omp for schedule(dynamic, 1) nowait
#endif
        for (int64_t s = 0; s < n_shards; s++) {
            if (rmf_stopping(stop))
                continue;
            rmf_rng rng;
            rmf_rng_seed(&rng, seed, rmf_stream_id(RMF_STREAM_UNIFORM_NEG, epoch, (uint64_t)s));
            int64_t begin = s * SHARD, end = begin + SHARD < nnz ? begin + SHARD : nnz;
            int32_t u = rmf_csr_row_of(m, begin);
            for (int64_t p = begin; p < end; p++) {
                while (m->indptr[u + 1] <= p)
                    u++;
                for (int32_t r = 0; r < n_neg; r++) {
                    int32_t j;
                    do {
                        j = (int32_t)rmf_rng_below(&rng, (uint32_t)m->n_cols);
                    } while (rmf_csr_contains(m, u, j));
                    out[p * n_neg + r] = j;
                }
            }
        }
        RMF_TEAM_END;
    }
    return RMF_OK;
}

/* Popular-hard triplets: (u, i) drawn uniformly with replacement from the
 * positives of m; j drawn uniformly from candidates[0..n_cand), redrawn
 * while it is a positive of u.  A user holding every candidate gives
 * RMF_ERR_SATURATED (err->row: that user).  Same sharding/determinism as
 * above. */
rmf_status rmf_sample_triplets(const rmf_csr *m, const int32_t *candidates,
                               int32_t n_cand, int64_t n_triplets,
                               uint64_t seed, uint64_t epoch, int n_threads,
                               int32_t *u_out, int32_t *i_out, int32_t *j_out,
                               rmf_error *err)
{
    rmf_status st = check_csr(m, err);
    if (st != RMF_OK)
        return st;
    if (n_cand < 1)
        return rmf_fail(err, RMF_ERR_VALUE, "top_n must leave at least one candidate item, got %d", n_cand);
    if (n_triplets < 0)
        return rmf_fail(err, RMF_ERR_VALUE, "triplets_per_epoch must be >= 0, got %lld",
                        (long long)n_triplets);
    for (int32_t c = 0; c < n_cand; c++)
        if (candidates[c] < 0 || candidates[c] >= m->n_cols)
            return rmf_fail(err, RMF_ERR_VALUE, "candidate %d at position %d is outside [0, %d)",
                            candidates[c], c, m->n_cols);

    /* A user whose positives cover every candidate would loop forever:
     * count, per user, the positives that are candidates. */
    unsigned char *is_cand = calloc((size_t)m->n_cols, 1);
    if (is_cand == NULL)
        return rmf_fail(err, RMF_ERR_NOMEM, "out of memory marking %d candidates", n_cand);
    int32_t n_distinct = 0;
    for (int32_t c = 0; c < n_cand; c++) {
        n_distinct += !is_cand[candidates[c]];
        is_cand[candidates[c]] = 1;
    }
    for (int32_t u = 0; u < m->n_rows; u++) {
        int64_t covered = 0;
        for (int64_t k = m->indptr[u]; k < m->indptr[u + 1]; k++)
            covered += is_cand[m->indices[k]];
        if (covered == n_distinct && m->indptr[u + 1] > m->indptr[u]) {
            free(is_cand);
            return rmf_fail_row(err, RMF_ERR_SATURATED, u,
                                "user index %d has every one of the %d candidate items as a positive: "
                                "no negative can be drawn for it (raise top_n)",
                                u, n_distinct);
        }
    }
    free(is_cand);

    const int64_t nnz = m->indptr[m->n_rows];
    const int64_t n_shards = (n_triplets + SHARD - 1) / SHARD;
    (void)n_threads;
    rmf_stop *stop = rmf_stop_here();
    RMF_PARALLEL(rmf_resolve_threads(n_threads))
    {
        RMF_TEAM_BEGIN;
#ifdef _OPENMP
#pragma omp for schedule(dynamic, 1) nowait
#endif
        for (int64_t s = 0; s < n_shards; s++) {
            if (rmf_stopping(stop))
                continue;
            rmf_rng rng;
            rmf_rng_seed(&rng, seed, rmf_stream_id(RMF_STREAM_TRIPLETS, epoch, (uint64_t)s));
            int64_t begin = s * SHARD, end = begin + SHARD < n_triplets ? begin + SHARD : n_triplets;
            for (int64_t t = begin; t < end; t++) {
                int64_t p = (int64_t)rmf_rng_below64(&rng, (uint64_t)nnz);
                int32_t u = rmf_csr_row_of(m, p);
                int32_t j;
                do {
                    j = candidates[rmf_rng_below(&rng, (uint32_t)n_cand)];
                } while (rmf_csr_contains(m, u, j));
                u_out[t] = u;
                i_out[t] = m->indices[p];
                j_out[t] = j;
            }
        }
        RMF_TEAM_END;
    }
    return RMF_OK;
}
