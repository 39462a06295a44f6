/* loop.c -- the one epoch loop every mini-batch model trains with: check
 * the parameters, the config, the data and the optimizer state; draw the
 * epoch's examples from the model's data source and their order; then per
 * batch ask the stop hook, pace the team, fill the batch, take the model's
 * mean loss and gradient (models/model.h) and one Adam step routed by the
 * layout (layout.c).  A model brings its batch function; everything else
 * is here, once.
 *
 * Threads: the loop splits work by the logical count nt and never by the
 * team that runs it (csrc/README.md), so the pacer may run a batch on one
 * thread with the same numbers.  OpenBLAS stays at one thread for the
 * epoch: a batch function runs its products as one-thread calls on fixed
 * row parts (nn/dense.c). */
#include "train/train.h"

#include "data/data.h"
#include "runtime/runtime.h"

#include <stdlib.h>
#include <string.h>

/* Below this many examples a parallel region costs more than it saves. */
#define PAR_MIN 512

/* ------------------------------------------------------------------ */
/* Parameters and checks                                              */
/* ------------------------------------------------------------------ */

void rmf_train_default_params(rmf_train_params *p)
{
    p->batch_size = 4096;
    p->n_neg = 4;
    p->lazy_adam = 0;
    p->n_threads = 0;
    p->seed = 0;
    rmf_adam_default_params(&p->adam);
}

const char *rmf_train_check_params(const rmf_train_params *p)
{
    if (p->batch_size < 1)
        return "batch_size must be >= 1";
    if (p->n_neg < 1)
        return "n_neg must be >= 1";
    if (p->lazy_adam != 0 && p->lazy_adam != 1)
        return "lazy_adam must be 0 or 1";
    if (p->n_threads < 0)
        return "n_threads must be >= 0 (0 means all cores)";
    return rmf_adam_check_params(&p->adam);
}

rmf_status rmf_config_check(const rmf_model *m, const void *cfg, rmf_error *err)
{
    const rmf_config *c = cfg;
    if (cfg == NULL)
        return rmf_fail(err, RMF_ERR_VALUE, "config must not be NULL");
    if (c->n_users < 1)
        return rmf_fail(err, RMF_ERR_VALUE, "n_users must be >= 1, got %d", (int)c->n_users);
    if (c->n_items < 1)
        return rmf_fail(err, RMF_ERR_VALUE, "n_items must be >= 1, got %d", (int)c->n_items);
    const char *bad = m->minibatch ? rmf_train_check_params(&c->train) : NULL;
    if (bad != NULL)
        return rmf_fail(err, RMF_ERR_VALUE, "%s", bad);
    return m->check ? m->check(cfg, err) : RMF_OK;
}

rmf_status rmf_config_layout(const rmf_model *m, const void *cfg, rmf_layout *out, rmf_error *err)
{
    rmf_status st = rmf_config_check(m, cfg, err);
    if (st != RMF_OK)
        return st;
    memset(out, 0, sizeof *out);
    m->layout(cfg, out);
    return RMF_OK;
}

rmf_status rmf_check_data(int source, const rmf_config *c, const rmf_data *d, rmf_error *err)
{
    rmf_status st;
    switch (source) {
    case RMF_SOURCE_PAIRS:
    case RMF_SOURCE_MATRIX:
        if ((st = rmf_csr_check(d->positives, "train", c->n_users, c->n_items, err)) != RMF_OK)
            return st;
        /* A solver says itself what it makes of an empty matrix. */
        if (source == RMF_SOURCE_PAIRS && d->positives->indptr[d->positives->n_rows] == 0)
            return rmf_fail(err, RMF_ERR_VALUE, "train has no positive pairs");
        return RMF_OK;
    case RMF_SOURCE_TRIPLETS:
        if (d->n < 1)
            return rmf_fail(err, RMF_ERR_VALUE, "n_triplets must be >= 1, got %lld", (long long)d->n);
        if ((st = rmf_check_ids(d->u, d->n, c->n_users, "u", err)) != RMF_OK ||
            (st = rmf_check_ids(d->i, d->n, c->n_items, "i", err)) != RMF_OK)
            return st;
        return rmf_check_ids(d->j, d->n, c->n_items, "j", err);
    case RMF_SOURCE_SEQUENCES:
        if (d->seq == NULL)
            return rmf_fail(err, RMF_ERR_VALUE, "sequences must not be NULL");
        if ((st = rmf_check_seq(d->seq, err)) != RMF_OK)
            return st;
        if (d->seq->n_users != c->n_users || d->seq->n_items != c->n_items)
            return rmf_fail(err, RMF_ERR_VALUE, "the sequences are %d users x %d items, the model %d x %d",
                            d->seq->n_users, d->seq->n_items, c->n_users, c->n_items);
        return RMF_OK;
    default:
        return rmf_fail(err, RMF_ERR_VALUE, "this model has no data source in the core");
    }
}

static rmf_status check_opt_state(const rmf_opt_state *st, int64_t n_params, rmf_error *err)
{
    if (st == NULL || st->theta == NULL || st->m == NULL || st->v == NULL)
        return rmf_fail(err, RMF_ERR_VALUE, "optimizer state must hold theta, m and v");
    if (st->n_params != n_params)
        return rmf_fail(err, RMF_ERR_VALUE, "optimizer state has %lld parameters, the model %lld",
                        (long long)st->n_params, (long long)n_params);
    if (st->step < 0)
        return rmf_fail(err, RMF_ERR_VALUE, "optimizer step must be >= 0");
    return RMF_OK;
}

/* The batch's examples must be in range (the loop's own batches are). */
static rmf_status check_batch(int source, const rmf_config *c, const rmf_batch *b, rmf_error *err)
{
    rmf_status st;
    if (b->n < 1)
        return rmf_fail(err, RMF_ERR_VALUE, "n must be >= 1, got %lld", (long long)b->n);
    switch (source) {
    case RMF_SOURCE_PAIRS:
        if (b->y == NULL)
            return rmf_fail(err, RMF_ERR_VALUE, "y must not be NULL");
        if ((st = rmf_check_ids(b->u, b->n, c->n_users, "u", err)) != RMF_OK)
            return st;
        return rmf_check_ids(b->i, b->n, c->n_items, "i", err);
    case RMF_SOURCE_TRIPLETS: {
        rmf_data d = {NULL, b->u, b->i, b->j, b->n, NULL};
        return rmf_check_data(source, c, &d, err);
    }
    case RMF_SOURCE_SEQUENCES: {
        rmf_data d = {NULL, NULL, NULL, NULL, 0, b->seq};
        if ((st = rmf_check_data(source, c, &d, err)) != RMF_OK)
            return st;
        return rmf_check_ids(b->rows, b->n, c->n_users, "rows", err);
    }
    default:
        return rmf_fail(err, RMF_ERR_VALUE, "this model has no batches");
    }
}

/* ------------------------------------------------------------------ */
/* Order and stop                                                     */
/* ------------------------------------------------------------------ */

void rmf_epoch_order(int64_t *perm, int64_t n, uint64_t seed, uint64_t epoch, int nt)
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

/* Asked between batches only (b > 0), as rmf_stop_fn promises: a stop that
 * is already pending still lets one batch train.  Between batches no
 * region or BLAS call is in flight: a pending fork() may go ahead. */
static rmf_status should_stop(rmf_stop_fn stop, void *stop_ctx, int64_t b, int64_t n_batches,
                              rmf_error *err)
{
    if (b > 0 && rmf_work_yield(stop, stop_ctx))
        return rmf_fail(err, RMF_ERR_INTERRUPTED, "interrupted after %lld of %lld batches", (long long)b,
                        (long long)n_batches);
    return RMF_OK;
}

/* ------------------------------------------------------------------ */
/* The data source of an epoch                                        */
/* ------------------------------------------------------------------ */

/* One epoch's examples.  Pairs: positives [0, nnz) in CSR order, then
 * negative r of positive q at nnz + q n_neg + r (negatives drawn for the
 * epoch); triplets as given; sequences: the rows of seq. */
typedef struct {
    int source;
    int64_t n;
    const rmf_data *d;
    int64_t nnz, n_neg;
    int32_t *neg, *row_of; /* pairs */
    int32_t *bu, *bi, *bj, *rows; /* the batch */
    float *by;
} epoch_source;

static void source_free(epoch_source *s)
{
    free(s->neg);
    free(s->row_of);
    free(s->bu);
    free(s->bi);
    free(s->bj);
    free(s->rows);
    free(s->by);
}

/* Counts the epoch's examples; allocates the batch arrays for bs. */
static rmf_status source_begin(epoch_source *s, int source, const rmf_data *d, const rmf_train_params *p,
                               rmf_error *err)
{
    memset(s, 0, sizeof *s);
    s->source = source;
    s->d = d;
    if (source == RMF_SOURCE_PAIRS) {
        s->nnz = d->positives->indptr[d->positives->n_rows];
        s->n_neg = p->n_neg;
        s->n = s->nnz * (1 + s->n_neg);
    } else {
        s->n = source == RMF_SOURCE_TRIPLETS ? d->n : d->seq->n_users;
    }
    const int64_t bs = p->batch_size < s->n ? p->batch_size : s->n;
    int ok = 1;
    if (source == RMF_SOURCE_SEQUENCES) {
        ok = (s->rows = malloc((size_t)bs * sizeof *s->rows)) != NULL;
    } else {
        s->bu = malloc((size_t)bs * sizeof *s->bu);
        s->bi = malloc((size_t)bs * sizeof *s->bi);
        if (source == RMF_SOURCE_PAIRS)
            s->by = malloc((size_t)bs * sizeof *s->by);
        else
            s->bj = malloc((size_t)bs * sizeof *s->bj);
        ok = s->bu && s->bi && (s->by || s->bj);
    }
    if (!ok)
        return rmf_fail(err, RMF_ERR_NOMEM, "out of memory for a batch of %lld examples", (long long)bs);
    return RMF_OK;
}

/* The epoch's random draws: a pairs source's negatives (uniform, per
 * positive: rmf_sample_uniform) and each positive's row. */
static rmf_status source_draw(epoch_source *s, uint64_t seed, uint64_t epoch, int nt, rmf_error *err)
{
    if (s->source != RMF_SOURCE_PAIRS)
        return RMF_OK;
    const rmf_csr *train = s->d->positives;
    s->neg = malloc((size_t)(s->nnz * s->n_neg) * sizeof *s->neg);
    s->row_of = malloc((size_t)s->nnz * sizeof *s->row_of);
    if (!s->neg || !s->row_of)
        return rmf_fail(err, RMF_ERR_NOMEM, "out of memory for an epoch of %lld pairs", (long long)s->n);
    rmf_status st = rmf_sample_uniform(train, (int32_t)s->n_neg, seed, epoch, nt, s->neg, err);
    if (st != RMF_OK)
        return st;
    int32_t *row_of = s->row_of;
    RMF_PARALLEL(nt)
    {
        RMF_TEAM_BEGIN;
        OMP(omp for schedule(dynamic, 256) nowait)
        for (int32_t r = 0; r < train->n_rows; r++)
            for (int64_t q = train->indptr[r]; q < train->indptr[r + 1]; q++)
                row_of[q] = r;
        RMF_TEAM_END;
    }
    return RMF_OK;
}

/* Example q of the epoch into slot t of the batch.  An orphaned loop's
 * body: slots are disjoint. */
static inline void source_fill(epoch_source *s, int64_t t, int64_t q)
{
    const rmf_data *d = s->d;
    switch (s->source) {
    case RMF_SOURCE_PAIRS:
        if (q < s->nnz) {
            s->bu[t] = s->row_of[q];
            s->bi[t] = d->positives->indices[q];
            s->by[t] = 1.0f;
        } else {
            s->bu[t] = s->row_of[(q - s->nnz) / s->n_neg];
            s->bi[t] = s->neg[q - s->nnz];
            s->by[t] = 0.0f;
        }
        break;
    case RMF_SOURCE_TRIPLETS:
        s->bu[t] = d->u[q];
        s->bi[t] = d->i[q];
        s->bj[t] = d->j[q];
        break;
    default:
        s->rows[t] = (int32_t)q;
    }
}

/* ------------------------------------------------------------------ */
/* The epoch                                                          */
/* ------------------------------------------------------------------ */

rmf_status rmf_train_epoch(const rmf_model *m, const void *cfg, const rmf_data *data, uint64_t epoch,
                           rmf_opt_state *st, rmf_stop_fn stop, void *stop_ctx, double *loss,
                           int64_t *n_done, rmf_error *err)
{
    /* Outputs first: an early failure still leaves them defined. */
    if (loss)
        *loss = 0.0;
    if (n_done)
        *n_done = 0;
    const rmf_config *c = cfg;
    rmf_layout L;
    rmf_status status;
    if (!m->minibatch)
        return rmf_fail(err, RMF_ERR_VALUE, "%s is not trained by batches", m->kind);
    if ((status = rmf_config_layout(m, cfg, &L, err)) != RMF_OK ||
        (status = rmf_check_data(m->source, c, data, err)) != RMF_OK ||
        (status = check_opt_state(st, L.n_params, err)) != RMF_OK)
        return status;

    const rmf_train_params *p = &c->train;
    const int nt = rmf_resolve_threads(p->n_threads);
    const int dense_tables = !p->lazy_adam;
    rmf_pacer pace;
    rmf_pacer_init(&pace, nt);
    epoch_source src;
    rmf_slots slots;
    memset(&slots, 0, sizeof slots);
    rmf_grads g;
    memset(&g, 0, sizeof g);
    void *ws = NULL;
    int64_t *perm = NULL;
    int blas_saved = -1;
    double total = 0.0;
    int64_t done = 0;

    if ((status = source_begin(&src, m->source, data, p, err)) != RMF_OK)
        goto cleanup;
    const int64_t n = src.n;
    const int64_t bs = p->batch_size < n ? p->batch_size : n;
    perm = malloc((size_t)n * sizeof *perm);
    g.grad = calloc((size_t)L.n_params, sizeof *g.grad);
    if (!perm || !g.grad) {
        status = rmf_fail(err, RMF_ERR_NOMEM, "out of memory for a %s epoch of %lld examples", m->kind,
                          (long long)n);
        goto cleanup;
    }
    if ((status = m->ws_alloc(cfg, bs, &ws, err)) != RMF_OK ||
        (dense_tables && (status = rmf_slots_alloc(&L, &slots, err)) != RMF_OK) ||
        (status = source_draw(&src, p->seed, epoch, nt, err)) != RMF_OK)
        goto cleanup;
    rmf_epoch_order(perm, n, p->seed, epoch, nt);

    blas_saved = rmf_blas_enter(1);
    const int64_t n_batches = (n + bs - 1) / bs;
    for (int64_t b = 0; b < n_batches; b++) {
        if ((status = should_stop(stop, stop_ctx, b, n_batches, err)) != RMF_OK)
            goto cleanup;
        const int64_t start = b * bs;
        const int64_t bn = start + bs <= n ? bs : n - start;
        rmf_pacer_begin(&pace);
        /* Forget the last batch's table rows (its Adam step is done) while
         * filling this batch. */
        RMF_PARALLEL(nt, if (bn >= PAR_MIN))
        {
            RMF_TEAM_BEGIN;
            if (dense_tables)
                rmf_slots_forget(&L, &slots, &g);
            OMP(omp for schedule(static) nowait)
            for (int64_t t = 0; t < bn; t++)
                source_fill(&src, t, perm[start + t]);
            RMF_TEAM_END;
        }
        rmf_batch batch = {.n = bn, .u = src.bu, .i = src.bi, .j = src.bj, .rows = src.rows, .y = src.by,
                           .seq = data->seq, .seed = p->seed, .epoch = epoch, .index = (uint64_t)b,
                           .train = 1};
        m->batch(ws, cfg, st->theta, &batch, nt, &g);
        st->step++;
        rmf_layout_adam(&L, &g, &slots, p, st, nt);
        rmf_pacer_end(&pace, (double)bn);
        total += g.loss * (double)bn;
        done += bn;
    }
    status = RMF_OK;

cleanup:
    st->team_threads = rmf_pacer_mean_team(&pace);
    rmf_pacer_finish(&pace);
    if (blas_saved >= 0)
        rmf_blas_leave(blas_saved);
    if (loss)
        *loss = done > 0 ? total / (double)done : 0.0;
    if (n_done)
        *n_done = done;
    if (ws)
        m->ws_free(ws);
    rmf_slots_free(&slots);
    source_free(&src);
    free(perm);
    free(g.grad);
    return status;
}

rmf_status rmf_train_batch_grad(const rmf_model *m, const void *cfg, const float *theta, const rmf_batch *b,
                                int n_threads, float *grad, double *loss, rmf_error *err)
{
    const rmf_config *c = cfg;
    rmf_layout L;
    rmf_status st;
    if (!m->minibatch)
        return rmf_fail(err, RMF_ERR_VALUE, "%s is not trained by batches", m->kind);
    if ((st = rmf_config_layout(m, cfg, &L, err)) != RMF_OK)
        return st;
    if (theta == NULL || grad == NULL || loss == NULL)
        return rmf_fail(err, RMF_ERR_VALUE, "theta, grad and loss must not be NULL");
    if ((st = check_batch(m->source, c, b, err)) != RMF_OK)
        return st;
    void *ws = NULL;
    if ((st = m->ws_alloc(cfg, b->n, &ws, err)) != RMF_OK)
        return st;
    const int nt = rmf_resolve_threads(n_threads);
    rmf_grads g;
    memset(&g, 0, sizeof g);
    memset(grad, 0, (size_t)L.n_params * sizeof *grad);
    g.grad = grad;
    rmf_fp_enter();
    m->batch(ws, cfg, theta, b, nt, &g);
    rmf_layout_scatter(&L, &g, grad, nt);
    rmf_fp_leave();
    *loss = g.loss;
    m->ws_free(ws);
    return RMF_OK;
}
