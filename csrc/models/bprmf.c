/* bprmf.c -- BPRMF (SPEC 7): score = dot(U[u], I[i]); loss = mean softplus(
 * -(s_ui - s_uj)) over triplets, Adam; and dot-product scoring/recommend.
 *
 * Determinism: gradients are scattered per DISTINCT row -- each output row
 * is summed by one thread over its batch entries in batch order -- so the
 * result depends on the seed only, never on n_threads, and needs no float
 * atomics.  BLAS (recommend only) runs outside every OpenMP region.
 *
 * The batch plumbing (distinct-row groups, argument checks, epoch
 * bookkeeping) is train/batch.c's and lazy Adam optim/adam.c's, shared
 * with neuralmf.c. */
#include "data/data.h"
#include "optim/optim.h"
#include "rank/rank.h"
#include "runtime/runtime.h"
#include "train/train.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

/* Triplets per reduction chunk: fixed so sums never depend on n_threads. */
#define CHUNK 256
/* Below this many triplets a parallel region costs more than it saves. */
#define PAR_MIN_TRIPLETS 512


rmf_status rmf_mf_check_shape(const rmf_shape *s, rmf_error *err)
{
    return rmf_check_shape(s, err); /* hidden_dim is not used */
}

int64_t rmf_mf_n_params(const rmf_shape *s)
{
    return ((int64_t)s->n_users + s->n_items) * s->emb_dim;
}

static double sigmoid(double z)
{
    if (z >= 0.0)
        return 1.0 / (1.0 + exp(-z));
    double e = exp(z);
    return e / (1.0 + e);
}

/* log(1 + exp(x)) without overflow. */
static double softplus(double x)
{
    return (x > 0.0 ? x : 0.0) + log1p(exp(-fabs(x)));
}

/* ------------------------------------------------------------------ */
/* One batch: loss and gradient                                        */
/* ------------------------------------------------------------------ */

typedef struct {
    int64_t cap;
    rmf_group users, items;
    int32_t *ikeys; /* 2 cap: i then j, the item side's entries */
    float *c;       /* cap: d mean-loss / d (s_ui - s_uj)      */
    double *part;   /* per chunk loss                           */
} bpr_ws;

static void ws_free(bpr_ws *w)
{
    rmf_group_free(&w->users);
    rmf_group_free(&w->items);
    free(w->ikeys);
    free(w->c);
    free(w->part);
    memset(w, 0, sizeof *w);
}

static rmf_status ws_alloc(bpr_ws *w, const rmf_shape *s, int64_t cap,
                           rmf_error *err)
{
    memset(w, 0, sizeof *w);
    w->cap = cap;
    int ok = rmf_group_alloc(&w->users, cap, s->n_users);
    ok &= rmf_group_alloc(&w->items, 2 * cap, s->n_items);
    w->ikeys = malloc((size_t)(2 * cap) * sizeof *w->ikeys);
    w->c = malloc((size_t)cap * sizeof *w->c);
    w->part = malloc((size_t)((cap + CHUNK - 1) / CHUNK) * sizeof *w->part);
    if (!ok || !w->ikeys || !w->c || !w->part) {
        ws_free(w);
        return rmf_fail(err, RMF_ERR_NOMEM,
                        "out of memory for a BPRMF batch of %lld triplets",
                        (long long)cap);
    }
    return RMF_OK;
}

/* Core of rmf_mf_batch_grad.  Assumes grad is zero except, possibly, on
 * the rows this batch touches, which it overwrites; the epoch loop then
 * only re-zeroes those rows instead of all of grad. */
static void bpr_grad_core(bpr_ws *w, const rmf_shape *s, const float *theta,
                          const int32_t *u, const int32_t *i, const int32_t *j,
                          int64_t n, int nt, float *grad, double *loss)
{
    const int D = s->emb_dim;
    const float *U = theta, *I = theta + (int64_t)s->n_users * D;
    float *gU = grad, *gI = grad + (int64_t)s->n_users * D;
    const float inv_n = (float)(1.0 / (double)n);
    const int64_t n_chunks = (n + CHUNK - 1) / CHUNK;
    float *c = w->c;

    RMF_PARALLEL(nt, if (n >= PAR_MIN_TRIPLETS))
    {
        RMF_TEAM_BEGIN;
        OMP(omp for schedule(static) nowait)
        for (int64_t ch = 0; ch < n_chunks; ch++) {
            int64_t k1 = (ch + 1) * CHUNK < n ? (ch + 1) * CHUNK : n;
            double ploss = 0.0;
            for (int64_t k = ch * CHUNK; k < k1; k++) {
                const float *pu = U + (int64_t)u[k] * D;
                /* Two scores then their difference, as the reference model. */
                float x = rmf_dot_lanes(pu, I + (int64_t)i[k] * D, D) -
                          rmf_dot_lanes(pu, I + (int64_t)j[k] * D, D);
                ploss += softplus(-(double)x);
                c[k] = (float)(-sigmoid(-(double)x)) * inv_n;
            }
            w->part[ch] = ploss;
        }
        RMF_TEAM_END;
    }
    double sl = 0.0;
    for (int64_t ch = 0; ch < n_chunks; ch++)
        sl += w->part[ch];
    *loss = sl / (double)n;

    /* Entries of the item side: [0, n) are the i's, [n, 2n) the j's. */
    rmf_group *gu = &w->users, *gi = &w->items;
    rmf_group_build(gu, u, n);
    memcpy(w->ikeys, i, (size_t)n * sizeof *i);
    memcpy(w->ikeys + n, j, (size_t)n * sizeof *j);
    rmf_group_build(gi, w->ikeys, 2 * n);

    /* One thread per output row, entries in batch order: no atomics and
     * no dependence on n_threads.  Both sides share one parallel region. */
    RMF_PARALLEL(nt, if (n >= PAR_MIN_TRIPLETS))
    {
        RMF_TEAM_BEGIN;
        /* dU[u] = sum over its triplets of c (I[i] - I[j]). */
        OMP(omp for schedule(dynamic, 64) nowait)
        for (int64_t r = 0; r < gu->n_distinct; r++) {
            float *out = gU + (int64_t)gu->ids[r] * D;
            memset(out, 0, (size_t)D * sizeof(float));
            for (int64_t q = gu->ptr[r]; q < gu->ptr[r + 1]; q++) {
                int64_t k = gu->list[q];
                const float *qi = I + (int64_t)i[k] * D, *qj = I + (int64_t)j[k] * D;
                for (int d = 0; d < D; d++)
                    out[d] += c[k] * (qi[d] - qj[d]);
            }
        }
        /* dI[x] = sum of c U[u] over triplets with i = x, minus the same
         * over triplets with j = x. */
        OMP(omp for schedule(dynamic, 64) nowait)
        for (int64_t r = 0; r < gi->n_distinct; r++) {
            float *out = gI + (int64_t)gi->ids[r] * D;
            memset(out, 0, (size_t)D * sizeof(float));
            for (int64_t q = gi->ptr[r]; q < gi->ptr[r + 1]; q++) {
                int64_t e = gi->list[q];
                int64_t k = e < n ? e : e - n;
                float ck = e < n ? c[k] : -c[k];
                const float *pu = U + (int64_t)u[k] * D;
                for (int d = 0; d < D; d++)
                    out[d] += ck * pu[d];
            }
        }
        RMF_TEAM_END;
    }
}

rmf_status rmf_mf_batch_grad(const rmf_shape *s, const float *theta,
                             const int32_t *u, const int32_t *i,
                             const int32_t *j, int64_t n, int n_threads,
                             float *grad, double *loss, rmf_error *err)
{
    rmf_status st = rmf_mf_check_shape(s, err);
    if (st != RMF_OK)
        return st;
    if (n < 1)
        return rmf_fail(err, RMF_ERR_VALUE, "n must be >= 1, got %lld", (long long)n);
    if (theta == NULL || grad == NULL || loss == NULL)
        return rmf_fail(err, RMF_ERR_VALUE, "theta, grad and loss must not be NULL");
    if ((st = rmf_check_ids(u, n, s->n_users, "u", err)) != RMF_OK)
        return st;
    if ((st = rmf_check_ids(i, n, s->n_items, "i", err)) != RMF_OK)
        return st;
    if ((st = rmf_check_ids(j, n, s->n_items, "j", err)) != RMF_OK)
        return st;
    bpr_ws w;
    if ((st = ws_alloc(&w, s, n, err)) != RMF_OK)
        return st;
    memset(grad, 0, (size_t)rmf_mf_n_params(s) * sizeof *grad);
    rmf_fp_enter();
    bpr_grad_core(&w, s, theta, u, i, j, n, rmf_resolve_threads(n_threads),
                  grad, loss);
    rmf_fp_leave();
    ws_free(&w);
    return RMF_OK;
}

/* ------------------------------------------------------------------ */
/* Training epoch                                                      */
/* ------------------------------------------------------------------ */

/* Lazy Adam and the re-zeroing of grad visit only the rows the batch
 * touched (the groups bpr_grad_core built): both sides, users at offset 0
 * and items after them. */
rmf_status rmf_mf_train_epoch(const rmf_train_params *p, const rmf_shape *s,
                              const int32_t *u, const int32_t *i,
                              const int32_t *j, int64_t n_triplets,
                              uint64_t epoch, rmf_opt_state *st,
                              rmf_stop_fn stop, void *stop_ctx, double *loss,
                              int64_t *n_done, rmf_error *err)
{
    rmf_status status;
    if ((status = rmf_epoch_begin(p, loss, n_done, err)) != RMF_OK ||
        (status = rmf_mf_check_shape(s, err)) != RMF_OK)
        return status;
    if (n_triplets < 1)
        return rmf_fail(err, RMF_ERR_VALUE, "n_triplets must be >= 1, got %lld",
                        (long long)n_triplets);
    if ((status = rmf_check_ids(u, n_triplets, s->n_users, "u", err)) != RMF_OK ||
        (status = rmf_check_ids(i, n_triplets, s->n_items, "i", err)) != RMF_OK ||
        (status = rmf_check_ids(j, n_triplets, s->n_items, "j", err)) != RMF_OK)
        return status;
    const int64_t n_params = rmf_mf_n_params(s);
    if ((status = rmf_check_opt_state(st, n_params, err)) != RMF_OK)
        return status;

    const int D = s->emb_dim;
    const int64_t off_items = (int64_t)s->n_users * D;
    const int nt = rmf_resolve_threads(p->n_threads);
    const int64_t bs = p->batch_size < n_triplets ? p->batch_size : n_triplets;
    rmf_pacer pace;
    rmf_pacer_init(&pace, nt);

    int64_t *perm = NULL;
    int32_t *bu = NULL, *bi = NULL, *bj = NULL;
    float *grad = NULL;
    bpr_ws w;
    memset(&w, 0, sizeof w);
    double total = 0.0;
    int64_t done = 0;

    rmf_fp_enter();
    perm = malloc((size_t)n_triplets * sizeof *perm);
    bu = malloc((size_t)bs * sizeof *bu);
    bi = malloc((size_t)bs * sizeof *bi);
    bj = malloc((size_t)bs * sizeof *bj);
    grad = calloc((size_t)n_params, sizeof *grad);
    if (!perm || !bu || !bi || !bj || !grad) {
        status = rmf_fail(err, RMF_ERR_NOMEM,
                          "out of memory for a BPRMF epoch of %lld triplets",
                          (long long)n_triplets);
        goto cleanup;
    }
    if ((status = ws_alloc(&w, s, bs, err)) != RMF_OK)
        goto cleanup;

    rmf_epoch_order(perm, n_triplets, p->seed, epoch, nt);

    const int64_t n_batches = (n_triplets + bs - 1) / bs;
    for (int64_t b = 0; b < n_batches; b++) {
        status = rmf_epoch_should_stop(stop, stop_ctx, b, n_batches, err);
        if (status != RMF_OK)
            goto cleanup;
        const int64_t start = b * bs;
        const int64_t bn = start + bs <= n_triplets ? bs : n_triplets - start;
        rmf_pacer_begin(&pace);
        for (int64_t t = 0; t < bn; t++) {
            int64_t q = perm[start + t];
            bu[t] = u[q];
            bi[t] = i[q];
            bj[t] = j[q];
        }
        double bl;
        bpr_grad_core(&w, s, st->theta, bu, bi, bj, bn, nt, grad, &bl);
        st->step++;
        if (p->lazy_adam) {
            rmf_lazy_rows_step(&p->adam, st->step, st, grad, 0, 0, w.users.ids,
                               w.users.n_distinct, D, nt);
            rmf_lazy_rows_step(&p->adam, st->step, st, grad, 0, off_items,
                               w.items.ids, w.items.n_distinct, D, nt);
        } else {
            rmf_adam_step(&p->adam, st->step, st->theta, grad, st->m, st->v,
                          n_params, nt);
        }
        RMF_PARALLEL(nt, if (bn >= PAR_MIN_TRIPLETS))
        {
            RMF_TEAM_BEGIN;
            rmf_zero_rows(grad, &w.users, D);
            rmf_zero_rows(grad + off_items, &w.items, D);
            RMF_TEAM_END;
        }
        rmf_pacer_end(&pace, (double)bn);
        total += bl * (double)bn;
        done += bn;
    }
    status = RMF_OK;

cleanup:
    st->team_threads = rmf_pacer_mean_team(&pace);
    rmf_pacer_finish(&pace);
    rmf_fp_leave();
    rmf_epoch_end(total, done, loss, n_done);
    ws_free(&w);
    free(perm);
    free(bu);
    free(bi);
    free(bj);
    free(grad);
    return status;
}

/* ------------------------------------------------------------------ */
/* Scoring and recommend                                               */
/* ------------------------------------------------------------------ */

rmf_status rmf_mf_score_pairs(const rmf_shape *s, const float *theta,
                              const int32_t *u, const int32_t *i, int64_t n,
                              int n_threads, float *out, rmf_error *err)
{
    rmf_status st;
    if ((st = rmf_mf_check_shape(s, err)) != RMF_OK ||
        (st = rmf_check_pairs_args(s, theta, u, i, n, out, err)) != RMF_OK)
        return st;
    if (n == 0)
        return RMF_OK;
    const int D = s->emb_dim;
    const float *U = theta, *I = theta + (int64_t)s->n_users * D;
    const int nt = rmf_resolve_threads(n_threads);
    (void)nt; /* unused without OpenMP */
    rmf_stop *stop = rmf_stop_here();
    const int64_t n_blocks = (n + 65535) / 65536;
    rmf_fp_enter();
    RMF_PARALLEL(nt, if (n > 4096))
    {
        RMF_TEAM_BEGIN;
        OMP(omp for schedule(static) nowait)
        for (int64_t b = 0; b < n_blocks; b++) {
            if (rmf_stopping(stop))
                continue;
            const int64_t end = (b + 1) * 65536 < n ? (b + 1) * 65536 : n;
            for (int64_t k = b * 65536; k < end; k++)
                out[k] = rmf_dot_lanes(U + (int64_t)u[k] * D, I + (int64_t)i[k] * D, D);
        }
        RMF_TEAM_END;
    }
    rmf_fp_leave();
    return RMF_OK;
}

rmf_status rmf_mf_recommend(const rmf_shape *s, const float *theta,
                            const int32_t *users, int64_t n,
                            const rmf_csr *seen, int32_t k, int n_threads,
                            int32_t *out_items, float *out_scores,
                            int32_t *out_len, rmf_error *err)
{
    rmf_status st;
    if ((st = rmf_mf_check_shape(s, err)) != RMF_OK ||
        (st = rmf_check_recommend_args(s, theta, users, n, seen, k, out_items,
                                       out_scores, out_len, err)) != RMF_OK)
        return st;
    if (n == 0)
        return RMF_OK;

    const int D = s->emb_dim;
    const int32_t NI = s->n_items;
    const float *U = theta, *I = theta + (int64_t)s->n_users * D;
    const int nt = rmf_resolve_threads(n_threads);
    const int64_t nb = rmf_block_users(NI) < n ? rmf_block_users(NI) : n;
    const int64_t n_blocks = (n + nb - 1) / nb;
    /* Each thread takes whole blocks of users: gathers their rows, scores
     * them with one OpenBLAS call on one thread into its own S, and selects
     * their top k while S is still in cache.  One region for the call, no
     * OpenBLAS jobs waiting on each other, no second pass over S from
     * memory; a block's numbers are what the whole product gives (a row of
     * S is the same sum on any split). */
    size_t per_thread = (size_t)(nb * D + nb * NI) * sizeof(float) + rmf_topk_heap_bytes(k);
    per_thread = (per_thread + 63) / 64 * 64; /* each thread's share on its own cache lines */
    char *buf = malloc(per_thread * (size_t)nt);
    if (!buf)
        return rmf_fail(err, RMF_ERR_NOMEM, "out of memory scoring %d items", (int)NI);
    rmf_stop *stop = rmf_stop_here();
    rmf_fp_enter();
    const int blas_threads = rmf_blas_single_begin();
    RMF_PARALLEL(nt, if (n_blocks > 1))
    {
        RMF_TEAM_BEGIN;
        int t = 0;
#ifdef _OPENMP
        t = omp_get_thread_num();
#endif
        float *E = (float *)(buf + per_thread * (size_t)t);
        float *S = E + nb * D;
        void *heap = S + nb * NI;
        OMP(omp for schedule(dynamic, 1) nowait)
        for (int64_t b = 0; b < n_blocks; b++) {
            if (rmf_stopping(stop))
                continue;
            const int64_t u0 = b * nb;
            const int64_t bn = u0 + nb <= n ? nb : n - u0;
            for (int64_t r = 0; r < bn; r++)
                memcpy(E + r * D, U + (int64_t)users[u0 + r] * D, (size_t)D * sizeof(float));
            rmf_sgemm(0, 1, bn, NI, D, 1.0f, E, D, I, D, 0.0f, S, NI);
            rmf_topk_block(S, bn, NI, seen, users + u0, k, heap, out_items + u0 * k,
                           out_scores + u0 * k, out_len + u0);
        }
        RMF_TEAM_END;
    }
    rmf_blas_single_end(blas_threads);
    rmf_fp_leave();
    free(buf);
    return RMF_OK;
}
