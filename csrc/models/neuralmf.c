/* neuralmf.c -- NeuralMF (SPEC 6): logit = w2 . dropout(relu(W1 [U[u]; I[i]] +
 * b1)) + b2, trained with mean BCE-with-logits on positives and uniform
 * negatives (the pairs source) and Adam, by the one loop (train/loop.c).
 *
 * The first layer's input is a concatenation, so W1 x = W1u U[u] + W1i I[i]
 * with W1u = W1[:, :D] and W1i = W1[:, D:].  A batch of 4,096 pairs holds
 * only ~2,400 distinct users and ~2,400 distinct items (ML-1M), so each
 * half is applied once per DISTINCT row (nn/embedding.c) instead of once
 * per pair, and the backward pass sums dpre per distinct row before the
 * products dW1half = G^T E and dE = G W1half.  Same maths, ~40% fewer
 * FLOPs.
 *
 * Determinism: every parallel loop writes disjoint outputs (rows, chunks),
 * every reduction runs in a fixed order over fixed-size chunks, and the
 * first layer's products run in fixed row parts, each one OpenBLAS call on
 * one thread (nn/dense.c), so training gives the same bits for the same
 * seed on any n_threads and any team size; no float atomics anywhere.
 * Scoring computes its first layer with exact row loops (nn.h). */
#include "models/model.h"

#include "nn/nn.h"
#include "rank/rank.h"
#include "runtime/runtime.h"

#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

/* Pairs per reduction chunk, fixed so sums never depend on n_threads; a
 * chunk's dropout rows come from one stream. */
#define CHUNK RMF_DROPOUT_ROWS
#define PARTS RMF_NN_PARTS
/* Below this many pairs a parallel region costs more than it saves. */
#define PAR_MIN_PAIRS 512

/* ------------------------------------------------------------------ */
/* Config and layout                                                   */
/* ------------------------------------------------------------------ */

typedef struct {
    rmf_config base;
    int32_t emb_dim;    /* D = 64 */
    int32_t hidden_dim; /* H = 128 */
    float dropout;      /* 0.1 on the hidden layer, training only */
} ncf_config;
_Static_assert(sizeof(ncf_config) <= RMF_CONFIG_MAX, "config too large");

static const rmf_field FIELDS[] = {
    RMF_FIELD(ncf_config, "emb_dim", 'i', emb_dim, "embedding size"),
    RMF_FIELD(ncf_config, "hidden_dim", 'i', hidden_dim, "hidden layer width"),
    RMF_FIELD(ncf_config, "dropout", 'f', dropout, "dropout on the hidden layer while training"),
    RMF_FIELD(ncf_config, "n_neg", 'i', base.train.n_neg, "uniform negatives per positive, per epoch"),
    {NULL, 0, 0, NULL},
};

static void defaults(void *cfg)
{
    ncf_config *c = cfg;
    c->emb_dim = 64;
    c->hidden_dim = 128;
    c->dropout = 0.1f;
}

static rmf_status check(const void *cfg, rmf_error *err)
{
    const ncf_config *c = cfg;
    if (c->emb_dim < 1)
        return rmf_fail(err, RMF_ERR_VALUE, "emb_dim must be >= 1, got %d", (int)c->emb_dim);
    if (c->hidden_dim < 1)
        return rmf_fail(err, RMF_ERR_VALUE, "hidden_dim must be >= 1, got %d", (int)c->hidden_dim);
    /* sgemm takes int dimensions; W1 is hidden_dim x 2 emb_dim. */
    if ((int64_t)c->emb_dim * 2 > INT32_MAX / 2)
        return rmf_fail(err, RMF_ERR_VALUE, "emb_dim is too large: %d", (int)c->emb_dim);
    if (!(c->dropout >= 0.0f && c->dropout < 1.0f))
        return rmf_fail(err, RMF_ERR_VALUE, "dropout must be in [0, 1)");
    return RMF_OK;
}

/* theta = [user_emb n_users x D | item_emb n_items x D | W1 H x 2D (row h =
 * [user half | item half]) | b1 H | w2 H | b2 1]: PyTorch's initialisation,
 * N(0, 0.01^2) embeddings and nn.Linear's U(+-1/sqrt(fan_in)). */
enum { USER, ITEM, W1, B1, W2, B2 };
static void layout(const void *cfg, rmf_layout *L)
{
    const ncf_config *c = cfg;
    const int64_t D = c->emb_dim, H = c->hidden_dim;
    rmf_layout_add(L, "user_emb", c->base.n_users, D, RMF_BLOCK_TABLE, RMF_INIT_NORMAL, 0.01);
    rmf_layout_add(L, "item_emb", c->base.n_items, D, RMF_BLOCK_TABLE, RMF_INIT_NORMAL, 0.01);
    rmf_layout_add(L, "W1", H, 2 * D, RMF_BLOCK_DENSE, RMF_INIT_UNIFORM, (double)(2 * D));
    rmf_layout_add(L, "b1", H, 0, RMF_BLOCK_DENSE, RMF_INIT_UNIFORM, (double)(2 * D));
    rmf_layout_add(L, "w2", H, 0, RMF_BLOCK_DENSE, RMF_INIT_UNIFORM, (double)H);
    rmf_layout_add(L, "b2", 1, 0, RMF_BLOCK_DENSE, RMF_INIT_UNIFORM, (double)H);
}

/* Offsets of the blocks in theta. */
typedef struct {
    int64_t user, item, W1, b1, w2, b2;
} offsets;

static offsets offsets_of(const ncf_config *c)
{
    rmf_layout L = {0};
    layout(c, &L);
    offsets o = {L.block[USER].offset, L.block[ITEM].offset, L.block[W1].offset,
                 L.block[B1].offset,   L.block[W2].offset,   L.block[B2].offset};
    return o;
}

/* ------------------------------------------------------------------ */
/* Workspace                                                           */
/* ------------------------------------------------------------------ */

/* One embedding table's share of a batch: its distinct rows, their
 * gathered embeddings E, first-layer half A = E W1half^T, summed upstream
 * gradient G and embedding gradient dE (the rows the loop's Adam reads). */
typedef struct {
    rmf_group g;
    float *E, *A, *G, *dE;
} side;

typedef struct {
    int D, H;
    side user, item;
    float *rbuf;   /* cap x H: relu output of each pair, then dpre */
    float *fpart;  /* per chunk: dw2[H], db1[H] */
    double *dpart; /* per chunk: db2, loss */
    float *ones;   /* H ones: the dropout mask of eval / no dropout */
    float *mrow;   /* per chunk: one drawn dropout-mask row */
    float *wpart;  /* 2 sides x PARTS partial G^T E, H x D each */
} ncf_ws;

static void side_free(side *sd)
{
    rmf_group_free(&sd->g);
    free(sd->E);
    free(sd->A);
    free(sd->G);
    free(sd->dE);
}

/* train = 0 (scoring) needs only the groups and A. */
static int side_alloc(side *sd, int64_t cap, int32_t n_keys, int D, int H, int train)
{
    int64_t cd = cap < n_keys ? cap : n_keys;
    int ok = rmf_group_alloc(&sd->g, cap, n_keys);
    sd->A = malloc((size_t)(cd * H) * sizeof(float));
    if (train) {
        sd->E = malloc((size_t)(cd * D) * sizeof(float));
        sd->G = malloc((size_t)(cd * H) * sizeof(float));
        sd->dE = malloc((size_t)(cd * D) * sizeof(float));
        ok = ok && sd->E && sd->G && sd->dE;
    }
    return ok && sd->A;
}

static void ws_free(void *p)
{
    ncf_ws *w = p;
    if (w == NULL)
        return;
    side_free(&w->user);
    side_free(&w->item);
    free(w->rbuf);
    free(w->fpart);
    free(w->dpart);
    free(w->ones);
    free(w->mrow);
    free(w->wpart);
    free(w);
}

static rmf_status ws_make(const ncf_config *c, int64_t cap, int train, ncf_ws **out, rmf_error *err)
{
    ncf_ws *w = calloc(1, sizeof *w);
    *out = NULL;
    if (w == NULL)
        return rmf_fail(err, RMF_ERR_NOMEM, "out of memory for a NeuralMF batch");
    w->D = c->emb_dim;
    w->H = c->hidden_dim;
    int64_t n_chunks = (cap + CHUNK - 1) / CHUNK;
    int ok = side_alloc(&w->user, cap, c->base.n_users, w->D, w->H, train);
    ok &= side_alloc(&w->item, cap, c->base.n_items, w->D, w->H, train);
    w->ones = malloc((size_t)w->H * sizeof *w->ones);
    if (train) {
        w->rbuf = malloc((size_t)(cap * w->H) * sizeof *w->rbuf);
        w->fpart = malloc((size_t)(n_chunks * 2 * w->H) * sizeof *w->fpart);
        w->dpart = malloc((size_t)(n_chunks * 2) * sizeof *w->dpart);
        w->mrow = malloc((size_t)(n_chunks * w->H) * sizeof *w->mrow);
        w->wpart = malloc((size_t)2 * PARTS * (size_t)w->H * (size_t)w->D * sizeof *w->wpart);
        ok = ok && w->rbuf && w->fpart && w->dpart && w->mrow && w->wpart;
    }
    if (!ok || !w->ones) {
        ws_free(w);
        return rmf_fail(err, RMF_ERR_NOMEM, "out of memory for a NeuralMF batch of %lld pairs",
                        (long long)cap);
    }
    for (int h = 0; h < w->H; h++)
        w->ones[h] = 1.0f;
    *out = w;
    return RMF_OK;
}

static rmf_status ws_alloc(const void *cfg, int64_t cap, void **ws, rmf_error *err)
{
    return ws_make(cfg, cap, 1, (ncf_ws **)ws, err);
}

/* ------------------------------------------------------------------ */
/* One batch: loss and gradient                                        */
/* ------------------------------------------------------------------ */

/* Per pair: forward to the logit, loss, and dpre = d loss / d pre-ReLU
 * (written over the ReLU output in rbuf), plus per-chunk partial sums of
 * dw2, db1, db2 and the loss.  Dropout comes from mask (n x H) or, when
 * mask is NULL, is drawn from drop (NULL: no dropout). */
static void pair_pass(ncf_ws *w, const float *theta, const offsets *o, const float *y, int64_t n,
                      const float *mask, const rmf_dropout *drop, int nt)
{
    const int H = w->H;
    const float *b1 = theta + o->b1, *w2 = theta + o->w2;
    const float b2 = theta[o->b2];
    const float *Au = w->user.A, *Ai = w->item.A;
    const int32_t *su = w->user.g.slot_of, *si = w->item.g.slot_of;
    const float inv_n = (float)(1.0 / (double)n);
    int64_t n_chunks = (n + CHUNK - 1) / CHUNK;

    RMF_PARALLEL(nt, if (n >= PAR_MIN_PAIRS))
    {
        RMF_TEAM_BEGIN;
        OMP(omp for schedule(static) nowait)
        for (int64_t c = 0; c < n_chunks; c++) {
            /* float partials over <= CHUNK rows, summed across chunks in double */
            float *pw2 = w->fpart + c * 2 * H;
            float *pb1 = pw2 + H;
            double pb2 = 0.0, ploss = 0.0;
            memset(pw2, 0, (size_t)(2 * H) * sizeof(float));
            int64_t k1 = (c + 1) * CHUNK < n ? (c + 1) * CHUNK : n;
            rmf_rng rng;
            float *mrow = w->mrow + c * H;
            if (drop)
                rmf_dropout_chunk(&rng, drop, (uint64_t)c);
            for (int64_t k = c * CHUNK; k < k1; k++) {
                const float *a = Au + (int64_t)su[k] * H;
                const float *b = Ai + (int64_t)si[k] * H;
                /* Mask: given, drawn now, or none -- multiplying by ones is
                 * exact and keeps one branch-free loop. */
                const float *mk = w->ones;
                if (mask) {
                    mk = mask + k * H;
                } else if (drop) {
                    rmf_dropout_row(&rng, drop, mrow, H);
                    mk = mrow;
                }
                float *r = w->rbuf + k * H;
                double z = (double)rmf_mlp_head_forward(a, b, b1, mk, w2, b2, r, H);
                double dz;
                ploss += rmf_bce_logits(z, (double)y[k], &dz);
                float dl = (float)dz * inv_n; /* d mean-loss / d logit */
                pb2 += dl;
                rmf_mlp_head_backward(dl, w2, mk, r, pw2, pb1, H);
            }
            w->dpart[2 * c] = pb2;
            w->dpart[2 * c + 1] = ploss;
        }
        RMF_TEAM_END;
    }
}

/* Task t of the backward pieces: t < 2 PARTS is part t % PARTS of side
 * t / PARTS's G^T E (into wpart), the rest the same part's rows of
 * dE = G W1half. */
static void backward_piece(ncf_ws *w, const float *W1p, int D, int H, int t)
{
    const int64_t HD = (int64_t)H * D;
    const int wg = t < 2 * PARTS;
    const int k = wg ? t : t - 2 * PARTS;
    side *sd = k < PARTS ? &w->user : &w->item;
    const int off = k < PARTS ? 0 : D;
    int64_t r0, r1;
    rmf_part_rows(sd->g.n_distinct, k % PARTS, &r0, &r1);
    if (wg)
        rmf_dense_weight_part(sd->G + r0 * H, sd->E + r0 * D, r1 - r0, H, D, w->wpart + k * HD);
    else
        rmf_dense_backward_input(sd->G + r0 * H, r1 - r0, H, W1p + off, 2 * D, D, sd->dE + r0 * D);
}

static void batch(void *wsp, const void *cfg, const float *theta, const rmf_batch *bt, int nt, rmf_grads *g)
{
    ncf_ws *w = wsp;
    const ncf_config *c = cfg;
    const int D = w->D, H = w->H;
    const int64_t n = bt->n, HD = (int64_t)H * D;
    const offsets o = offsets_of(c);
    const float *W1p = theta + o.W1;
    float *grad = g->grad;

    /* The two group builds are serial each but independent: one thread
     * takes each; then the team gathers and multiplies the parts, on one
     * BLAS thread each (the count locked: nn/dense.c). */
    int blas_threads = rmf_blas_single_begin();
    RMF_PARALLEL(nt, if (n >= PAR_MIN_PAIRS))
    {
        RMF_TEAM_BEGIN;
        OMP(omp single nowait)
        rmf_group_build(&w->user.g, bt->u, n);
        OMP(omp single)
        rmf_group_build(&w->item.g, bt->i, n);
        /* the second single's barrier: both groups are built */
        OMP(omp for schedule(dynamic, 1) nowait)
        for (int t = 0; t < 2 * PARTS; t++) {
            side *sd = t < PARTS ? &w->user : &w->item;
            const float *emb = theta + (t < PARTS ? o.user : o.item);
            int64_t r0, r1;
            rmf_part_rows(sd->g.n_distinct, t % PARTS, &r0, &r1);
            rmf_emb_gather(&sd->g, emb, D, r0, r1, sd->E);
            rmf_dense_forward(sd->E + r0 * D, r1 - r0, D, W1p + (t < PARTS ? 0 : D), 2 * D, H,
                              sd->A + r0 * H);
        }
        RMF_TEAM_END;
    }
    rmf_blas_single_end(blas_threads);

    rmf_dropout drop;
    const int draw = bt->train && bt->mask == NULL && c->dropout > 0.0f;
    if (draw)
        drop = rmf_dropout_setup(c->dropout, bt->seed, bt->epoch, bt->index);
    pair_pass(w, theta, &o, bt->y, n, bt->mask, draw ? &drop : NULL, nt);

    /* Chunk partials, summed in chunk order. */
    int64_t n_chunks = (n + CHUNK - 1) / CHUNK;
    double sb2 = 0.0, sloss = 0.0;
    for (int h = 0; h < H; h++) {
        double sw = 0.0, sb = 0.0;
        for (int64_t k = 0; k < n_chunks; k++) {
            sw += w->fpart[k * 2 * H + h];
            sb += w->fpart[k * 2 * H + H + h];
        }
        grad[o.w2 + h] = (float)sw;
        grad[o.b1 + h] = (float)sb;
    }
    for (int64_t k = 0; k < n_chunks; k++) {
        sb2 += w->dpart[2 * k];
        sloss += w->dpart[2 * k + 1];
    }
    grad[o.b2] = (float)sb2;
    g->loss = sloss / (double)n;

    blas_threads = rmf_blas_single_begin();
    RMF_PARALLEL(nt, if (n >= PAR_MIN_PAIRS))
    {
        RMF_TEAM_BEGIN;
        rmf_emb_sum_rows(&w->user.g, w->rbuf, H, w->user.G);
        rmf_emb_sum_rows(&w->item.g, w->rbuf, H, w->item.G);
        OMP(omp barrier)
        OMP(omp for schedule(dynamic, 1))
        for (int t = 0; t < 4 * PARTS; t++)
            backward_piece(w, W1p, D, H, t);
        /* the loop's barrier: every part of gW1 is done; gW1 = [user parts
         * | item parts], each summed in part order */
        rmf_dense_sum_parts(w->wpart, PARTS, HD, H, D, grad + o.W1, 2 * D);
        rmf_dense_sum_parts(w->wpart + PARTS * HD, PARTS, HD, H, D, grad + o.W1 + D, 2 * D);
        RMF_TEAM_END;
    }
    rmf_blas_single_end(blas_threads);
    /* The embedding gradient stays in the sides' dE rows, by slot. */
    g->table[USER].ids = w->user.g.ids;
    g->table[USER].n = w->user.g.n_distinct;
    g->table[USER].rows = w->user.dE;
    g->table[ITEM].ids = w->item.g.ids;
    g->table[ITEM].n = w->item.g.n_distinct;
    g->table[ITEM].rows = w->item.dE;
}

/* ------------------------------------------------------------------ */
/* Scoring                                                             */
/* ------------------------------------------------------------------ */

/* Pairs per scoring chunk: bounds the scratch memory of score. */
#define SCORE_CHUNK 65536

static rmf_status score(const void *cfg, const float *theta, const int32_t *u, const int32_t *i, int64_t n,
                        const rmf_seq *history, int n_threads, float *out, rmf_error *err)
{
    const ncf_config *c = cfg;
    const int D = c->emb_dim, H = c->hidden_dim;
    const offsets o = offsets_of(c);
    const float *b1 = theta + o.b1, *w2 = theta + o.w2;
    const float b2 = theta[o.b2];
    const int nt = rmf_resolve_threads(n_threads);
    (void)nt; /* unused without OpenMP */
    (void)history;
    const int64_t cap = n < SCORE_CHUNK ? n : SCORE_CHUNK;
    /* W1's halves transposed, [2][D][H], for the exact row loops. */
    float *WT = rmf_transpose(theta + o.W1, H, 2 * D);
    if (WT == NULL)
        return rmf_fail(err, RMF_ERR_NOMEM, "out of memory for the first layer");
    ncf_ws *w;
    rmf_status st = ws_make(c, cap, 0, &w, err);
    if (st != RMF_OK) {
        free(WT);
        return st;
    }
    rmf_stop *stop = rmf_stop_here();
    rmf_fp_enter();
    for (int64_t c0 = 0; c0 < n && !rmf_stopping(stop); c0 += cap) {
        int64_t cn = c0 + cap <= n ? cap : n - c0;
        rmf_group_build(&w->user.g, u + c0, cn);
        rmf_group_build(&w->item.g, i + c0, cn);
        RMF_PARALLEL(nt, if (cn >= PAR_MIN_PAIRS))
        {
            RMF_TEAM_BEGIN;
            rmf_dense_rows_exact(theta + o.user, w->user.g.ids, w->user.g.n_distinct, WT, b1, D, H,
                                 w->user.A);
            rmf_dense_rows_exact(theta + o.item, w->item.g.ids, w->item.g.n_distinct,
                                 WT + (int64_t)D * H, NULL, D, H, w->item.A);
            RMF_TEAM_END;
        }
        const float *A = w->user.A, *B = w->item.A;
        const int32_t *su = w->user.g.slot_of, *si = w->item.g.slot_of;
        RMF_PARALLEL(nt, if (cn > 1024))
        {
            RMF_TEAM_BEGIN;
            OMP(omp for schedule(static) nowait)
            for (int64_t k = 0; k < cn; k++)
                out[c0 + k] = rmf_mlp_head_eval(A + (int64_t)su[k] * H, B + (int64_t)si[k] * H, w2, b2, H);
            RMF_TEAM_END;
        }
    }
    rmf_fp_leave();
    ws_free(w);
    free(WT);
    return RMF_OK;
}

static rmf_status recommend(const void *cfg, const float *theta, const rmf_query *q, int32_t k,
                            int n_threads, int32_t *out_items, float *out_scores, int32_t *out_len,
                            rmf_error *err)
{
    const ncf_config *c = cfg;
    const int D = c->emb_dim, H = c->hidden_dim;
    const int32_t NI = c->base.n_items;
    const offsets o = offsets_of(c);
    const float *b1 = theta + o.b1, *w2 = theta + o.w2;
    const float b2 = theta[o.b2];
    const int nt = rmf_resolve_threads(n_threads);
    const int32_t *users = q->users;
    const int64_t n = q->n;
    const int RU = RMF_TILE_U, RI = RMF_TILE_I;
    /* Bt's rows are padded to a multiple of RI items so every tile loads
     * full vectors; the zero padding is computed but never stored, and S
     * is n_items wide as rmf_topk_select expects. */
    const int64_t ldb = (NI + RI - 1) / RI * RI;
    const int64_t nb = (rmf_block_users(NI) + RU - 1) / RU * RU; /* whole user tiles */
    const int64_t lds = NI;
    rmf_status st = RMF_OK;

    rmf_fp_enter();
    float *Bt = calloc((size_t)(H * ldb), sizeof *Bt);
    float *B = malloc((size_t)((int64_t)NI * H) * sizeof *B);
    float *A = calloc((size_t)(nb * H), sizeof *A);
    float *S = malloc((size_t)(nb * lds) * sizeof *S);
    float *WT = rmf_transpose(theta + o.W1, H, 2 * D);
    if (!Bt || !B || !A || !S || !WT) {
        st = rmf_fail(err, RMF_ERR_NOMEM, "out of memory scoring %d items", (int)NI);
        goto cleanup;
    }
    /* B = I W1i^T once per call, then transposed to Bt (H x n_items) for
     * the item-contiguous tiles. */
    RMF_PARALLEL(nt)
    {
        RMF_TEAM_BEGIN;
        rmf_dense_rows_exact(theta + o.item, NULL, NI, WT + (int64_t)D * H, NULL, D, H, B);
        OMP(omp barrier)
        OMP(omp for schedule(static))
        for (int h = 0; h < H; h++)
            for (int32_t i = 0; i < NI; i++)
                Bt[(int64_t)h * ldb + i] = B[(int64_t)i * H + h];
        RMF_TEAM_END;
    }
    rmf_stop *stop = rmf_stop_here();
    for (int64_t u0 = 0; u0 < n && st == RMF_OK && !rmf_stopping(stop); u0 += nb) {
        const int64_t bn = u0 + nb <= n ? nb : n - u0;
        RMF_PARALLEL(nt)
        {
            RMF_TEAM_BEGIN;
            /* A = W1u U[u] + b1 for the block's users.  The last user tile
             * may read rows past bn (stale but finite: A is calloc'ed); their
             * scores land in rows of S that rmf_topk_select never reads. */
            rmf_dense_rows_exact(theta + o.user, users + u0, bn, WT, b1, D, H, A);
            OMP(omp barrier)
            rmf_mlp_head_scores(A, bn, H, Bt, ldb, NI, w2, b2, S, lds);
            RMF_TEAM_END;
        }
        st = rmf_topk_select(S, bn, NI, q->seen, users + u0, q->allowed, k, nt, out_items + u0 * k, out_scores + u0 * k,
                             out_len + u0, err);
    }

cleanup:
    rmf_fp_leave();
    free(WT);
    free(Bt);
    free(B);
    free(A);
    free(S);
    return st;
}

const rmf_model rmf_neuralmf = {
    .kind = "neuralmf",
    .source = RMF_SOURCE_PAIRS,
    .minibatch = 1,
    .takes_history = 0,
    .config_size = sizeof(ncf_config),
    .fields = FIELDS,
    .defaults = defaults,
    .check = check,
    .layout = layout,
    .ws_alloc = ws_alloc,
    .ws_free = ws_free,
    .batch = batch,
    .score = score,
    .recommend = recommend,
};
