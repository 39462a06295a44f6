/* batch.c -- pieces the mini-batch models (models/neuralmf.c,
 * models/bprmf.c) share: argument checks, the distinct rows of a batch
 * side, the re-zeroing of the gradient rows a batch wrote, and the epoch
 * loop's bookkeeping.  One copy so a fix to, say, the group's
 * first-appearance order or an error message reaches every model.
 * Contracts are in train.h. */
#include "train/train.h"
#include "data/data.h"
#include "runtime/runtime.h"

#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ */
/* Argument checks                                                     */
/* ------------------------------------------------------------------ */

rmf_status rmf_check_shape(const rmf_shape *s, rmf_error *err)
{
    if (s == NULL)
        return rmf_fail(err, RMF_ERR_VALUE, "shape must not be NULL");
    if (s->n_users < 1)
        return rmf_fail(err, RMF_ERR_VALUE, "n_users must be >= 1, got %d", (int)s->n_users);
    if (s->n_items < 1)
        return rmf_fail(err, RMF_ERR_VALUE, "n_items must be >= 1, got %d", (int)s->n_items);
    if (s->emb_dim < 1)
        return rmf_fail(err, RMF_ERR_VALUE, "emb_dim must be >= 1, got %d", (int)s->emb_dim);
    return RMF_OK;
}

rmf_status rmf_check_pairs_args(const rmf_shape *s, const float *theta,
                                const int32_t *u, const int32_t *i, int64_t n,
                                const float *out, rmf_error *err)
{
    rmf_status st;
    if (n < 0)
        return rmf_fail(err, RMF_ERR_VALUE, "n must be >= 0, got %lld", (long long)n);
    /* Nothing to score: NULL buffers of empty NumPy arrays are fine. */
    if (n == 0)
        return RMF_OK;
    if (theta == NULL || out == NULL)
        return rmf_fail(err, RMF_ERR_VALUE, "theta and out must not be NULL");
    if ((st = rmf_check_ids(u, n, s->n_users, "u", err)) != RMF_OK)
        return st;
    return rmf_check_ids(i, n, s->n_items, "i", err);
}

rmf_status rmf_check_recommend_args(const rmf_shape *s, const float *theta,
                                    const int32_t *users, int64_t n,
                                    const rmf_csr *seen, int32_t k,
                                    const int32_t *out_items,
                                    const float *out_scores,
                                    const int32_t *out_len, rmf_error *err)
{
    rmf_status st;
    if (n < 0)
        return rmf_fail(err, RMF_ERR_VALUE, "n must be >= 0, got %lld", (long long)n);
    if (k < 1)
        return rmf_fail(err, RMF_ERR_VALUE, "k must be >= 1, got %d", (int)k);
    if (theta == NULL || out_items == NULL || out_scores == NULL || out_len == NULL)
        return rmf_fail(err, RMF_ERR_VALUE, "theta and the outputs must not be NULL");
    if (seen != NULL &&
        (st = rmf_csr_check(seen, "seen", s->n_users, s->n_items, err)) != RMF_OK)
        return st;
    return rmf_check_ids(users, n, s->n_users, "users", err);
}

rmf_status rmf_check_opt_state(const rmf_opt_state *st, int64_t n_params,
                               rmf_error *err)
{
    if (st == NULL || st->theta == NULL || st->m == NULL || st->v == NULL)
        return rmf_fail(err, RMF_ERR_VALUE, "optimizer state must hold theta, m and v");
    if (st->n_params != n_params)
        return rmf_fail(err, RMF_ERR_VALUE,
                        "optimizer state has %lld parameters, the model %lld",
                        (long long)st->n_params, (long long)n_params);
    if (st->step < 0)
        return rmf_fail(err, RMF_ERR_VALUE, "optimizer step must be >= 0");
    return RMF_OK;
}

/* ------------------------------------------------------------------ */
/* Distinct rows of one side of a batch                                */
/* ------------------------------------------------------------------ */

void rmf_group_free(rmf_group *g)
{
    free(g->ids);
    free(g->slot_of);
    free(g->ptr);
    free(g->list);
    free(g->table);
    memset(g, 0, sizeof *g);
}

int rmf_group_alloc(rmf_group *g, int64_t cap_entries, int32_t n_keys)
{
    /* A side never holds more distinct rows than entries or keys. */
    int64_t cd = cap_entries < n_keys ? cap_entries : n_keys;
    g->n_distinct = 0;
    g->ids = malloc((size_t)cd * sizeof *g->ids);
    g->slot_of = malloc((size_t)cap_entries * sizeof *g->slot_of);
    g->ptr = malloc((size_t)(cd + 1) * sizeof *g->ptr);
    g->list = malloc((size_t)cap_entries * sizeof *g->list);
    g->table = malloc((size_t)n_keys * sizeof *g->table);
    if (!g->ids || !g->slot_of || !g->ptr || !g->list || !g->table)
        return 0;
    for (int32_t k = 0; k < n_keys; k++)
        g->table[k] = -1;
    return 1;
}

/* Sequential and O(n): a batch is small and the first-appearance order
 * must not depend on threads.  The table is reset only at the keys used,
 * so a build costs O(n), not O(n_keys). */
void rmf_group_build(rmf_group *g, const int32_t *keys, int64_t n)
{
    int32_t *table = g->table;
    int64_t nd = 0;
    for (int64_t e = 0; e < n; e++) {
        int32_t s = table[keys[e]];
        if (s < 0) {
            s = (int32_t)nd;
            table[keys[e]] = s;
            g->ids[nd++] = keys[e];
        }
        g->slot_of[e] = s;
    }
    /* Counting sort of entries by slot; entries stay ascending per slot. */
    memset(g->ptr, 0, (size_t)(nd + 1) * sizeof *g->ptr);
    for (int64_t e = 0; e < n; e++)
        g->ptr[g->slot_of[e] + 1]++;
    for (int64_t s = 0; s < nd; s++)
        g->ptr[s + 1] += g->ptr[s];
    for (int64_t e = 0; e < n; e++)
        g->list[g->ptr[g->slot_of[e]]++] = e;
    for (int64_t s = nd; s > 0; s--)
        g->ptr[s] = g->ptr[s - 1];
    g->ptr[0] = 0;
    for (int64_t s = 0; s < nd; s++)
        table[g->ids[s]] = -1;
    g->n_distinct = nd;
}

/* An orphaned worksharing loop so a caller can zero both sides inside one
 * parallel region (one fork/join); outside a region it runs serially. */
void rmf_zero_rows(float *grad, const rmf_group *g, int D)
{
    int64_t nd = g->n_distinct;
    const int32_t *ids = g->ids;
    OMP(omp for schedule(static) nowait)
    for (int64_t r = 0; r < nd; r++)
        memset(grad + (int64_t)ids[r] * D, 0, (size_t)D * sizeof(float));
}

/* ------------------------------------------------------------------ */
/* Epoch bookkeeping                                                   */
/* ------------------------------------------------------------------ */

rmf_status rmf_epoch_begin(const rmf_train_params *p, double *loss,
                           int64_t *n_done, rmf_error *err)
{
    const char *bad;
    /* Outputs first: an early failure still leaves them defined. */
    if (loss)
        *loss = 0.0;
    if (n_done)
        *n_done = 0;
    if (p == NULL)
        return rmf_fail(err, RMF_ERR_VALUE, "params must not be NULL");
    if ((bad = rmf_train_check_params(p)) != NULL)
        return rmf_fail(err, RMF_ERR_VALUE, "%s", bad);
    return RMF_OK;
}

void rmf_epoch_order(int64_t *perm, int64_t n, uint64_t seed, uint64_t epoch,
                     int nt)
{
    (void)nt; /* unused without OpenMP */
    RMF_PARALLEL(nt)
    {
        RMF_TEAM_BEGIN;
        OMP(omp for schedule(static) nowait)
        for (int64_t q = 0; q < n; q++)
            perm[q] = q;
        RMF_TEAM_END;
    }
    /* One sequential stream: the order depends on (seed, epoch) only. */
    rmf_rng rng;
    rmf_rng_seed(&rng, seed, rmf_stream_id(RMF_STREAM_SHUFFLE, epoch, 0));
    rmf_shuffle_i64(&rng, perm, n);
}

rmf_status rmf_epoch_should_stop(rmf_stop_fn stop, void *stop_ctx, int64_t b,
                                 int64_t n_batches, rmf_error *err)
{
    /* Asked between batches only (b > 0), as rmf_stop_fn promises: a
     * stop that is already pending still lets one batch train.  Between
     * batches no region or BLAS call is in flight: a pending fork() may
     * go ahead (threads.c). */
    if (b > 0 && rmf_work_yield(stop, stop_ctx))
        return rmf_fail(err, RMF_ERR_INTERRUPTED,
                        "interrupted after %lld of %lld batches",
                        (long long)b, (long long)n_batches);
    return RMF_OK;
}

void rmf_epoch_end(double total, int64_t done, double *loss, int64_t *n_done)
{
    if (loss)
        *loss = done > 0 ? total / (double)done : 0.0;
    if (n_done)
        *n_done = done;
}
