/* bprmf.c -- BPRMF (SPEC 7): score = dot(U[u], I[i]); loss = mean softplus(
 * -(s_ui - s_uj)) over given triplets (the triplets source), Adam, by the
 * one loop (train/loop.c); and dot-product scoring and recommend, shared
 * with ALS (whose factors have the same layout).
 *
 * Determinism: gradients are summed per DISTINCT row -- each output row
 * by one thread over its batch entries in batch order -- so the result
 * depends on the seed only, never on n_threads, and needs no float
 * atomics.  BLAS (recommend only) runs as one-thread calls on whole user
 * blocks. */
#include "models/model.h"

#include "nn/nn.h"
#include "rank/rank.h"
#include "runtime/runtime.h"

#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

/* Triplets per reduction chunk: fixed so sums never depend on n_threads. */
#define CHUNK 256
/* Below this many triplets a parallel region costs more than it saves. */
#define PAR_MIN_TRIPLETS 512

/* ------------------------------------------------------------------ */
/* Config and layout                                                   */
/* ------------------------------------------------------------------ */

/* emb_dim (D = 64) is rmf_dot_config's dim. */
typedef rmf_dot_config mf_config;
_Static_assert(sizeof(mf_config) <= RMF_CONFIG_MAX, "config too large");

static const rmf_field FIELDS[] = {
    RMF_FIELD(mf_config, "emb_dim", 'i', dim, "embedding size"),
    {NULL, 0, 0, NULL},
};

static void defaults(void *cfg)
{
    ((mf_config *)cfg)->dim = 64;
}

static rmf_status check(const void *cfg, rmf_error *err)
{
    const mf_config *c = cfg;
    if (c->dim < 1)
        return rmf_fail(err, RMF_ERR_VALUE, "emb_dim must be >= 1, got %d", (int)c->dim);
    return RMF_OK;
}

/* theta = [user_emb n_users x D | item_emb n_items x D], N(0, 0.01^2). */
enum { USER, ITEM };
static void layout(const void *cfg, rmf_layout *L)
{
    const mf_config *c = cfg;
    rmf_layout_add(L, "user_emb", c->base.n_users, c->dim, RMF_BLOCK_TABLE, RMF_INIT_NORMAL, 0.01);
    rmf_layout_add(L, "item_emb", c->base.n_items, c->dim, RMF_BLOCK_TABLE, RMF_INIT_NORMAL, 0.01);
}

/* ------------------------------------------------------------------ */
/* One batch: loss and gradient                                        */
/* ------------------------------------------------------------------ */

typedef struct {
    rmf_group users, items;
    int32_t *ikeys;      /* 2 cap: i then j, the item side's entries */
    float *c;            /* cap: d mean-loss / d (s_ui - s_uj)      */
    double *part;        /* per chunk loss                           */
    float *urows, *irows; /* the distinct rows' gradients, by slot   */
} bpr_ws;

static void ws_free(void *p)
{
    bpr_ws *w = p;
    if (w == NULL)
        return;
    rmf_group_free(&w->users);
    rmf_group_free(&w->items);
    free(w->ikeys);
    free(w->c);
    free(w->part);
    free(w->urows);
    free(w->irows);
    free(w);
}

static rmf_status ws_alloc(const void *cfg, int64_t cap, void **out, rmf_error *err)
{
    const mf_config *cf = cfg;
    const int64_t D = cf->dim;
    const int64_t nu = cap < cf->base.n_users ? cap : cf->base.n_users;
    const int64_t ni = 2 * cap < cf->base.n_items ? 2 * cap : cf->base.n_items;
    bpr_ws *w = calloc(1, sizeof *w);
    *out = NULL;
    if (w == NULL)
        return rmf_fail(err, RMF_ERR_NOMEM, "out of memory for a BPRMF batch");
    int ok = rmf_group_alloc(&w->users, cap, cf->base.n_users);
    ok &= rmf_group_alloc(&w->items, 2 * cap, cf->base.n_items);
    w->ikeys = malloc((size_t)(2 * cap) * sizeof *w->ikeys);
    w->c = malloc((size_t)cap * sizeof *w->c);
    w->part = malloc((size_t)((cap + CHUNK - 1) / CHUNK) * sizeof *w->part);
    w->urows = malloc((size_t)(nu * D) * sizeof *w->urows);
    w->irows = malloc((size_t)(ni * D) * sizeof *w->irows);
    if (!ok || !w->ikeys || !w->c || !w->part || !w->urows || !w->irows) {
        ws_free(w);
        return rmf_fail(err, RMF_ERR_NOMEM, "out of memory for a BPRMF batch of %lld triplets",
                        (long long)cap);
    }
    *out = w;
    return RMF_OK;
}

static void batch(void *wsp, const void *cfg, const float *theta, const rmf_batch *bt, int nt, rmf_grads *g)
{
    bpr_ws *w = wsp;
    const mf_config *cf = cfg;
    const int D = cf->dim;
    const int64_t n = bt->n;
    const int32_t *u = bt->u, *i = bt->i, *j = bt->j;
    const float *U = theta, *I = theta + (int64_t)cf->base.n_users * D;
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
                double dx;
                ploss += rmf_bpr_loss((double)x, &dx);
                c[k] = (float)dx * inv_n;
            }
            w->part[ch] = ploss;
        }
        RMF_TEAM_END;
    }
    double sl = 0.0;
    for (int64_t ch = 0; ch < n_chunks; ch++)
        sl += w->part[ch];
    g->loss = sl / (double)n;

    /* Entries of the item side: [0, n) are the i's, [n, 2n) the j's. */
    rmf_group *gu = &w->users, *gi = &w->items;
    rmf_group_build(gu, u, n);
    memcpy(w->ikeys, i, (size_t)n * sizeof *i);
    memcpy(w->ikeys + n, j, (size_t)n * sizeof *j);
    rmf_group_build(gi, w->ikeys, 2 * n);

    /* One thread per output row, entries in batch order: no atomics and
     * no dependence on n_threads.  Both sides share one parallel region. */
    float *urows = w->urows, *irows = w->irows;
    RMF_PARALLEL(nt, if (n >= PAR_MIN_TRIPLETS))
    {
        RMF_TEAM_BEGIN;
        /* dU[u] = sum over its triplets of c (I[i] - I[j]). */
        OMP(omp for schedule(dynamic, 64) nowait)
        for (int64_t r = 0; r < gu->n_distinct; r++) {
            float *out = urows + r * D;
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
            float *out = irows + r * D;
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
    g->table[USER].ids = gu->ids;
    g->table[USER].n = gu->n_distinct;
    g->table[USER].rows = urows;
    g->table[ITEM].ids = gi->ids;
    g->table[ITEM].n = gi->n_distinct;
    g->table[ITEM].rows = irows;
}

/* ------------------------------------------------------------------ */
/* Scoring and recommend (BPRMF and ALS)                               */
/* ------------------------------------------------------------------ */

rmf_status rmf_dot_score(const void *cfg, const float *theta, const int32_t *u, const int32_t *i, int64_t n,
                         const rmf_seq *history, int n_threads, float *out, rmf_error *err)
{
    const mf_config *cf = cfg;
    const int D = cf->dim;
    const float *U = theta, *I = theta + (int64_t)cf->base.n_users * D;
    const int nt = rmf_resolve_threads(n_threads);
    (void)nt; /* unused without OpenMP */
    (void)history;
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

rmf_status rmf_dot_recommend(const void *cfg, const float *theta, const rmf_query *q, int32_t k,
                             int n_threads, int32_t *out_items, float *out_scores, int32_t *out_len,
                             rmf_error *err)
{
    const mf_config *cf = cfg;
    const int D = cf->dim;
    const int32_t NI = cf->base.n_items;
    const float *U = theta, *I = theta + (int64_t)cf->base.n_users * D;
    const int32_t *users = q->users;
    const rmf_csr *seen = q->seen;
    const int64_t n = q->n;
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
            rmf_topk_block(S, bn, NI, seen, users + u0, q->allowed, k, heap, out_items + u0 * k,
                           out_scores + u0 * k, out_len + u0);
        }
        RMF_TEAM_END;
    }
    rmf_blas_single_end(blas_threads);
    rmf_fp_leave();
    free(buf);
    return RMF_OK;
}

const rmf_model rmf_bprmf = {
    .kind = "bprmf",
    .source = RMF_SOURCE_TRIPLETS,
    .minibatch = 1,
    .takes_history = 0,
    .config_size = sizeof(mf_config),
    .fields = FIELDS,
    .defaults = defaults,
    .check = check,
    .layout = layout,
    .ws_alloc = ws_alloc,
    .ws_free = ws_free,
    .batch = batch,
    .score = rmf_dot_score,
    .recommend = rmf_dot_recommend,
};
