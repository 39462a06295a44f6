/* mf.c -- BPRMF (SPEC 7): score = dot(U[u], I[i]); loss = mean softplus(
 * -(s_ui - s_uj)) over triplets, Adam; and dot-product scoring/recommend.
 *
 * Determinism: gradients are scattered per DISTINCT row -- each output row
 * is summed by one thread over its batch entries in batch order -- so the
 * result depends on the seed only, never on n_threads, and needs no float
 * atomics.  BLAS (recommend only) runs outside every OpenMP region.
 *
 * The small helpers below (group, argument checks, lazy Adam)
 * mirror ncf.c's: each topic file is self-contained. */
#include "recmf.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#ifdef _OPENMP
#define OMP(x) _Pragma(#x)
#else
#define OMP(x)
#endif

/* Triplets per reduction chunk: fixed so sums never depend on n_threads. */
#define CHUNK 256
/* Below this many triplets a parallel region costs more than it saves. */
#define PAR_MIN_TRIPLETS 512

/* ------------------------------------------------------------------ */
/* Distinct rows of a batch                                            */
/* ------------------------------------------------------------------ */

/* The distinct keys of a batch in first-appearance order, each entry's
 * slot, and the entries of each slot (ascending) as a CSR. */
typedef struct {
    int64_t n_distinct;
    int32_t *ids;
    int32_t *slot_of;
    int64_t *ptr;
    int64_t *list;
    int32_t *table; /* key -> slot while building, -1 otherwise */
} group;

static void group_free(group *g)
{
    free(g->ids);
    free(g->slot_of);
    free(g->ptr);
    free(g->list);
    free(g->table);
}

static int group_alloc(group *g, int64_t cap_entries, int32_t n_keys)
{
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

/* Builds g from keys[0..n).  Sequential and O(n): a batch is small and the
 * first-appearance order must not depend on threads. */
static void group_build(group *g, const int32_t *keys, int64_t n)
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

/* sum_h x[h] w[h] with 8 float lanes (lane = h mod 8) added in a fixed
 * tree: vectorizable without -ffast-math, same result at any width. */
static inline float dot_lanes(const float *x, const float *w, int n)
{
    float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int h = 0;
    for (; h + 8 <= n; h += 8)
        for (int l = 0; l < 8; l++)
            acc[l] += x[h + l] * w[h + l];
    for (int l = 0; h < n; h++, l++)
        acc[l] += x[h] * w[h];
    return ((acc[0] + acc[4]) + (acc[2] + acc[6])) +
           ((acc[1] + acc[5]) + (acc[3] + acc[7]));
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
/* Argument checks                                                     */
/* ------------------------------------------------------------------ */

static rmf_status check_shape(const rmf_shape *s, rmf_error *err)
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

static rmf_status check_ids(const int32_t *ids, int64_t n, int32_t limit,
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

/* ------------------------------------------------------------------ */
/* One batch: loss and gradient                                        */
/* ------------------------------------------------------------------ */

typedef struct {
    int64_t cap;
    group users, items;
    int32_t *ikeys; /* 2 cap: i then j, the item side's entries */
    float *c;       /* cap: d mean-loss / d (s_ui - s_uj)      */
    double *part;   /* per chunk loss                           */
} bpr_ws;

static void ws_free(bpr_ws *w)
{
    group_free(&w->users);
    group_free(&w->items);
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
    int ok = group_alloc(&w->users, cap, s->n_users);
    ok &= group_alloc(&w->items, 2 * cap, s->n_items);
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

/* Core of rmf_bpr_batch_grad.  Assumes grad is zero except, possibly, on
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

    OMP(omp parallel for num_threads(nt) schedule(static) if (n >= PAR_MIN_TRIPLETS))
    for (int64_t ch = 0; ch < n_chunks; ch++) {
        int64_t k1 = (ch + 1) * CHUNK < n ? (ch + 1) * CHUNK : n;
        double ploss = 0.0;
        for (int64_t k = ch * CHUNK; k < k1; k++) {
            const float *pu = U + (int64_t)u[k] * D;
            /* Two scores then their difference, as the reference model. */
            float x = dot_lanes(pu, I + (int64_t)i[k] * D, D) -
                      dot_lanes(pu, I + (int64_t)j[k] * D, D);
            ploss += softplus(-(double)x);
            c[k] = (float)(-sigmoid(-(double)x)) * inv_n;
        }
        w->part[ch] = ploss;
    }
    double sl = 0.0;
    for (int64_t ch = 0; ch < n_chunks; ch++)
        sl += w->part[ch];
    *loss = sl / (double)n;

    /* Entries of the item side: [0, n) are the i's, [n, 2n) the j's. */
    group *gu = &w->users, *gi = &w->items;
    group_build(gu, u, n);
    memcpy(w->ikeys, i, (size_t)n * sizeof *i);
    memcpy(w->ikeys + n, j, (size_t)n * sizeof *j);
    group_build(gi, w->ikeys, 2 * n);

    /* One thread per output row, entries in batch order: no atomics and
     * no dependence on n_threads.  Both sides share one parallel region. */
    OMP(omp parallel num_threads(nt) if (n >= PAR_MIN_TRIPLETS))
    {
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
    }
}

rmf_status rmf_bpr_batch_grad(const rmf_shape *s, const float *theta,
                              const int32_t *u, const int32_t *i,
                              const int32_t *j, int64_t n, int n_threads,
                              float *grad, double *loss, rmf_error *err)
{
    rmf_status st = check_shape(s, err);
    if (st != RMF_OK)
        return st;
    if (n < 1)
        return rmf_fail(err, RMF_ERR_VALUE, "n must be >= 1, got %lld", (long long)n);
    if (theta == NULL || grad == NULL || loss == NULL)
        return rmf_fail(err, RMF_ERR_VALUE, "theta, grad and loss must not be NULL");
    if ((st = check_ids(u, n, s->n_users, "u", err)) != RMF_OK)
        return st;
    if ((st = check_ids(i, n, s->n_items, "i", err)) != RMF_OK)
        return st;
    if ((st = check_ids(j, n, s->n_items, "j", err)) != RMF_OK)
        return st;
    bpr_ws w;
    if ((st = ws_alloc(&w, s, n, err)) != RMF_OK)
        return st;
    memset(grad, 0, (size_t)rmf_mf_n_params(s) * sizeof *grad);
    bpr_grad_core(&w, s, theta, u, i, j, n, rmf_resolve_threads(n_threads),
                  grad, loss);
    ws_free(&w);
    return RMF_OK;
}

/* ------------------------------------------------------------------ */
/* Training epoch                                                      */
/* ------------------------------------------------------------------ */

/* Lazy Adam (opt-in approximation of PyTorch's dense Adam): only the rows a
 * batch touched take a step; untouched rows keep their moments and skip
 * weight decay.  Rows are packed so rmf_adam_step does the arithmetic. */
typedef struct {
    float *t, *g, *m, *v;
} lazy_buf;

static void lazy_rows_step(const rmf_adam_params *ap, int64_t step,
                           rmf_opt_state *st, const float *grad, int64_t off,
                           const int32_t *ids, int64_t nr, int D,
                           lazy_buf *b, int nt)
{
    OMP(omp parallel for num_threads(nt) schedule(static) if (nr * D > 65536))
    for (int64_t r = 0; r < nr; r++) {
        int64_t src = off + (int64_t)ids[r] * D;
        size_t bytes = (size_t)D * sizeof(float);
        memcpy(b->t + r * D, st->theta + src, bytes);
        memcpy(b->g + r * D, grad + src, bytes);
        memcpy(b->m + r * D, st->m + src, bytes);
        memcpy(b->v + r * D, st->v + src, bytes);
    }
    rmf_adam_step(ap, step, b->t, b->g, b->m, b->v, nr * D, nt);
    OMP(omp parallel for num_threads(nt) schedule(static) if (nr * D > 65536))
    for (int64_t r = 0; r < nr; r++) {
        int64_t dst = off + (int64_t)ids[r] * D;
        size_t bytes = (size_t)D * sizeof(float);
        memcpy(st->theta + dst, b->t + r * D, bytes);
        memcpy(st->m + dst, b->m + r * D, bytes);
        memcpy(st->v + dst, b->v + r * D, bytes);
    }
}

/* Re-zeroes the gradient rows a batch wrote: an orphaned worksharing loop
 * so both sides share one parallel region. */
static void zero_rows(float *g, const group *gr, int D)
{
    int64_t nd = gr->n_distinct;
    OMP(omp for schedule(static) nowait)
    for (int64_t r = 0; r < nd; r++)
        memset(g + (int64_t)gr->ids[r] * D, 0, (size_t)D * sizeof(float));
}

rmf_status rmf_bpr_train_epoch(const rmf_train_params *p, const rmf_shape *s,
                               const int32_t *u, const int32_t *i,
                               const int32_t *j, int64_t n_triplets,
                               uint64_t epoch, rmf_opt_state *st,
                               rmf_stop_fn stop, void *stop_ctx, double *loss,
                               int64_t *n_done, rmf_error *err)
{
    rmf_status status;
    const char *bad;
    if (loss)
        *loss = 0.0;
    if (n_done)
        *n_done = 0;
    if (p == NULL)
        return rmf_fail(err, RMF_ERR_VALUE, "params must not be NULL");
    if ((bad = rmf_train_check_params(p)) != NULL)
        return rmf_fail(err, RMF_ERR_VALUE, "%s", bad);
    if ((status = check_shape(s, err)) != RMF_OK)
        return status;
    if (n_triplets < 1)
        return rmf_fail(err, RMF_ERR_VALUE, "n_triplets must be >= 1, got %lld",
                        (long long)n_triplets);
    if ((status = check_ids(u, n_triplets, s->n_users, "u", err)) != RMF_OK ||
        (status = check_ids(i, n_triplets, s->n_items, "i", err)) != RMF_OK ||
        (status = check_ids(j, n_triplets, s->n_items, "j", err)) != RMF_OK)
        return status;
    const int64_t n_params = rmf_mf_n_params(s);
    if (st == NULL || st->theta == NULL || st->m == NULL || st->v == NULL)
        return rmf_fail(err, RMF_ERR_VALUE, "optimizer state must hold theta, m and v");
    if (st->n_params != n_params)
        return rmf_fail(err, RMF_ERR_VALUE,
                        "optimizer state has %lld parameters, the model %lld",
                        (long long)st->n_params, (long long)n_params);
    if (st->step < 0)
        return rmf_fail(err, RMF_ERR_VALUE, "optimizer step must be >= 0");

    const int D = s->emb_dim;
    const int64_t off_items = (int64_t)s->n_users * D;
    const int nt = rmf_resolve_threads(p->n_threads);
    const int64_t bs = p->batch_size < n_triplets ? p->batch_size : n_triplets;

    int64_t *perm = NULL;
    int32_t *bu = NULL, *bi = NULL, *bj = NULL;
    float *grad = NULL;
    lazy_buf lb = {NULL, NULL, NULL, NULL};
    bpr_ws w;
    memset(&w, 0, sizeof w);
    double total = 0.0;
    int64_t done = 0;

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
    if (p->lazy_adam) {
        /* A batch touches at most bs users and 2 bs items. */
        size_t bytes = (size_t)(2 * bs * D) * sizeof(float);
        lb.t = malloc(bytes);
        lb.g = malloc(bytes);
        lb.m = malloc(bytes);
        lb.v = malloc(bytes);
        if (!lb.t || !lb.g || !lb.m || !lb.v) {
            status = rmf_fail(err, RMF_ERR_NOMEM, "out of memory for lazy Adam");
            goto cleanup;
        }
    }
    if ((status = ws_alloc(&w, s, bs, err)) != RMF_OK)
        goto cleanup;

    OMP(omp parallel for num_threads(nt) schedule(static))
    for (int64_t q = 0; q < n_triplets; q++)
        perm[q] = q;
    {
        rmf_rng rng;
        rmf_rng_seed(&rng, p->seed, rmf_stream_id(RMF_STREAM_SHUFFLE, epoch, 0));
        rmf_shuffle_i64(&rng, perm, n_triplets);
    }

    const int64_t n_batches = (n_triplets + bs - 1) / bs;
    for (int64_t b = 0; b < n_batches; b++) {
        if (b > 0 && stop != NULL && stop(stop_ctx)) {
            status = rmf_fail(err, RMF_ERR_INTERRUPTED,
                              "interrupted after %lld of %lld batches",
                              (long long)b, (long long)n_batches);
            goto cleanup;
        }
        const int64_t start = b * bs;
        const int64_t bn = start + bs <= n_triplets ? bs : n_triplets - start;
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
            lazy_rows_step(&p->adam, st->step, st, grad, 0, w.users.ids,
                           w.users.n_distinct, D, &lb, nt);
            lazy_rows_step(&p->adam, st->step, st, grad, off_items,
                           w.items.ids, w.items.n_distinct, D, &lb, nt);
        } else {
            rmf_adam_step(&p->adam, st->step, st->theta, grad, st->m, st->v,
                          n_params, nt);
        }
        OMP(omp parallel num_threads(nt) if (bn >= PAR_MIN_TRIPLETS))
        {
            zero_rows(grad, &w.users, D);
            zero_rows(grad + off_items, &w.items, D);
        }
        total += bl * (double)bn;
        done += bn;
    }
    status = RMF_OK;

cleanup:
    if (loss)
        *loss = done > 0 ? total / (double)done : 0.0;
    if (n_done)
        *n_done = done;
    ws_free(&w);
    free(perm);
    free(bu);
    free(bi);
    free(bj);
    free(grad);
    free(lb.t);
    free(lb.g);
    free(lb.m);
    free(lb.v);
    return status;
}

/* ------------------------------------------------------------------ */
/* Scoring and recommend                                               */
/* ------------------------------------------------------------------ */

rmf_status rmf_mf_score_pairs(const rmf_shape *s, const float *theta,
                              const int32_t *u, const int32_t *i, int64_t n,
                              int n_threads, float *out, rmf_error *err)
{
    rmf_status st = check_shape(s, err);
    if (st != RMF_OK)
        return st;
    if (n < 0)
        return rmf_fail(err, RMF_ERR_VALUE, "n must be >= 0, got %lld", (long long)n);
    if (n == 0)
        return RMF_OK;
    if (theta == NULL || out == NULL)
        return rmf_fail(err, RMF_ERR_VALUE, "theta and out must not be NULL");
    if ((st = check_ids(u, n, s->n_users, "u", err)) != RMF_OK)
        return st;
    if ((st = check_ids(i, n, s->n_items, "i", err)) != RMF_OK)
        return st;
    const int D = s->emb_dim;
    const float *U = theta, *I = theta + (int64_t)s->n_users * D;
    const int nt = rmf_resolve_threads(n_threads);
    (void)nt; /* unused without OpenMP */
    OMP(omp parallel for num_threads(nt) schedule(static) if (n > 4096))
    for (int64_t k = 0; k < n; k++)
        out[k] = dot_lanes(U + (int64_t)u[k] * D, I + (int64_t)i[k] * D, D);
    return RMF_OK;
}

rmf_status rmf_mf_recommend(const rmf_shape *s, const float *theta,
                            const int32_t *users, int64_t n,
                            const rmf_csr *seen, int32_t k, int n_threads,
                            int32_t *out_items, float *out_scores,
                            int32_t *out_len, rmf_error *err)
{
    rmf_status st = check_shape(s, err);
    if (st != RMF_OK)
        return st;
    if (n < 0)
        return rmf_fail(err, RMF_ERR_VALUE, "n must be >= 0, got %lld", (long long)n);
    if (k < 1)
        return rmf_fail(err, RMF_ERR_VALUE, "k must be >= 1, got %d", (int)k);
    if (theta == NULL || out_items == NULL || out_scores == NULL || out_len == NULL)
        return rmf_fail(err, RMF_ERR_VALUE, "theta and the outputs must not be NULL");
    if (seen != NULL && (seen->n_rows != s->n_users || seen->n_cols != s->n_items))
        return rmf_fail(err, RMF_ERR_VALUE,
                        "seen is %d x %d but the model has %d users x %d items",
                        (int)seen->n_rows, (int)seen->n_cols, (int)s->n_users,
                        (int)s->n_items);
    if ((st = check_ids(users, n, s->n_users, "users", err)) != RMF_OK)
        return st;
    if (n == 0)
        return RMF_OK;

    const int D = s->emb_dim;
    const int32_t NI = s->n_items;
    const float *U = theta, *I = theta + (int64_t)s->n_users * D;
    const int nt = rmf_resolve_threads(n_threads);
    /* Users per block: the block's scores (block x n_items) stay ~4 MB
     * however many users are asked for, and the sgemm stays large. */
    int64_t nb = ((int64_t)1 << 20) / NI;
    if (nb < 64)
        nb = 64;
    if (nb > n)
        nb = n;
    float *E = malloc((size_t)(nb * D) * sizeof *E);
    float *S = malloc((size_t)(nb * NI) * sizeof *S);
    if (!E || !S) {
        free(E);
        free(S);
        return rmf_fail(err, RMF_ERR_NOMEM, "out of memory scoring %d items", (int)NI);
    }
    int blas_saved = rmf_blas_get_threads();
    rmf_blas_set_threads(nt);
    for (int64_t u0 = 0; u0 < n && st == RMF_OK; u0 += nb) {
        const int64_t bn = u0 + nb <= n ? nb : n - u0;
        OMP(omp parallel for num_threads(nt) schedule(static) if (bn * D > 65536))
        for (int64_t r = 0; r < bn; r++)
            memcpy(E + r * D, U + (int64_t)users[u0 + r] * D, (size_t)D * sizeof(float));
        rmf_sgemm(0, 1, bn, NI, D, 1.0f, E, D, I, D, 0.0f, S, NI);
        st = rmf_topk_rows(S, bn, NI, seen, users + u0, k, nt, out_items + u0 * k,
                           out_scores + u0 * k, out_len + u0, err);
    }
    rmf_blas_set_threads(blas_saved);
    free(E);
    free(S);
    return st;
}
