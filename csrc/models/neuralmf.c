/* neuralmf.c -- NeuralMF (SPEC 6): logit = w2 . dropout(relu(W1 [U[u]; I[i]] +
 * b1)) + b2, trained with mean BCE-with-logits and Adam.
 *
 * The first layer's input is a concatenation, so W1 x = W1u U[u] + W1i I[i]
 * with W1u = W1[:, :D] and W1i = W1[:, D:].  A batch of 4,096 pairs holds
 * only ~2,400 distinct users and ~2,400 distinct items (ML-1M), so we apply
 * each half once per DISTINCT row instead of once per pair, and in the
 * backward pass sum dpre per distinct row before the products
 * dW1half = G^T E and dE = G W1half.  Same maths, ~40% fewer FLOPs.
 *
 * Determinism: every parallel loop writes disjoint outputs (rows, chunks),
 * every reduction runs in a fixed order over fixed-size chunks, and the
 * first layer's products run in fixed row parts, each one OpenBLAS call on
 * one thread ("First layer on the team" below), so training gives the same
 * bits for the same seed on any n_threads and any team size (the pacer,
 * threads.c); no float atomics anywhere.  Scoring computes its first layer
 * with its own loops (see rmf_ncf_score_pairs).
 *
 * The batch plumbing (distinct-row groups, argument checks, epoch
 * bookkeeping) is train/batch.c's and lazy Adam optim/adam.c's, shared
 * with bprmf.c. */
#include "data/data.h"
#include "optim/optim.h"
#include "rank/rank.h"
#include "runtime/runtime.h"
#include "train/train.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Rows per reduction chunk: fixed so sums never depend on n_threads. */
#define CHUNK 256
/* Each side's distinct rows go in this many fixed parts: the unit of the
 * team's BLAS work (see "First layer on the team" below). */
#define PARTS 4

/* ------------------------------------------------------------------ */
/* Shape                                                               */
/* ------------------------------------------------------------------ */

rmf_status rmf_ncf_check_shape(const rmf_shape *s, rmf_error *err)
{
    rmf_status st = rmf_check_shape(s, err);
    if (st != RMF_OK)
        return st;
    if (s->hidden_dim < 1)
        return rmf_fail(err, RMF_ERR_VALUE, "hidden_dim must be >= 1, got %d", (int)s->hidden_dim);
    /* sgemm takes int dimensions; W1 is hidden_dim x 2 emb_dim. */
    if ((int64_t)s->emb_dim * 2 > INT32_MAX / 2)
        return rmf_fail(err, RMF_ERR_VALUE, "emb_dim is too large: %d", (int)s->emb_dim);
    return RMF_OK;
}

int64_t rmf_ncf_n_params(const rmf_shape *s)
{
    int64_t d = s->emb_dim, h = s->hidden_dim;
    return ((int64_t)s->n_users + s->n_items) * d + h * 2 * d + h + h + 1;
}

/* ------------------------------------------------------------------ */
/* Distinct rows of one side of a batch                                */
/* ------------------------------------------------------------------ */

/* One embedding table's share of a batch: its distinct rows, their
 * gathered embeddings E, first-layer half A = E W1half^T, summed upstream
 * gradient G and embedding gradient dE. */
typedef struct {
    rmf_group g;
    float *E, *A, *G, *dE;
    /* Dense-Adam epochs only (else NULL): row id -> slot in this batch, or
     * -1, so Adam reads dE where it is instead of a scattered copy. */
    int32_t *slot_of_row;
} side;

typedef struct {
    int64_t cap; /* pairs */
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
    free(sd->slot_of_row);
}

/* train = 0 (scoring) needs only the groups and A. */
static int side_alloc(side *sd, int64_t cap, int32_t n_keys, int D, int H,
                      int train)
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

static void ws_free(ncf_ws *w)
{
    side_free(&w->user);
    side_free(&w->item);
    free(w->rbuf);
    free(w->fpart);
    free(w->dpart);
    free(w->ones);
    free(w->mrow);
    free(w->wpart);
    memset(w, 0, sizeof *w);
}

static rmf_status ws_alloc(ncf_ws *w, const rmf_shape *s, int64_t cap,
                           int train, rmf_error *err)
{
    memset(w, 0, sizeof *w);
    w->cap = cap;
    w->D = s->emb_dim;
    w->H = s->hidden_dim;
    int64_t n_chunks = (cap + CHUNK - 1) / CHUNK;
    int ok = side_alloc(&w->user, cap, s->n_users, w->D, w->H, train);
    ok &= side_alloc(&w->item, cap, s->n_items, w->D, w->H, train);
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
        return rmf_fail(err, RMF_ERR_NOMEM,
                        "out of memory for a NeuralMF batch of %lld pairs",
                        (long long)cap);
    }
    for (int h = 0; h < w->H; h++)
        w->ones[h] = 1.0f;
    return RMF_OK;
}

/* ------------------------------------------------------------------ */
/* Small kernels                                                       */
/* ------------------------------------------------------------------ */

/* The side_* loops are orphaned worksharing loops ("omp for nowait"):
 * callers run the user and the item side inside ONE parallel region, so a
 * phase costs one fork/join -- and under CPU contention a join can cost a
 * scheduler time slice.  Called outside a region they run serially. */

/* ------------------------------------------------------------------ */
/* First layer on the team                                             */
/* ------------------------------------------------------------------ */
/* The first layer's products (A = E W1half^T forward; dE = G W1half and
 * gW1half = G^T E backward) are cut into PARTS fixed row ranges per side,
 * and the team's threads take the 2 PARTS (or 4 PARTS) pieces, each one
 * OpenBLAS call on one thread (the epoch keeps OpenBLAS at one thread).
 * Why not OpenBLAS's own threading: its threaded driver makes its jobs
 * wait for each other's packed panels (a stall whenever the scheduler
 * delays one thread) and rounds a sum over many rows differently from its
 * one-thread driver, so gW1, and every weight, depended on the thread
 * count.  Here a row range of A or dE is computed exactly as the whole
 * product would be, gW1half is the sum of the parts' G^T E in part order,
 * and a team of any size (the pacer's one thread included) gives the same
 * numbers.  One region also replaces two OpenBLAS fork/joins per product. */

static void part_rows(const side *sd, int part, int64_t *r0, int64_t *r1)
{
    const int64_t nd = sd->g.n_distinct;
    *r0 = nd * part / PARTS;
    *r1 = nd * (part + 1) / PARTS;
}

/* Rows [r0, r1) of E (the embeddings of the distinct ids) and of
 * A = E W1half^T; W1 is H x 2D row-major, the half starts at column off. */
static void side_forward_part(side *sd, const float *emb, const float *W1,
                              int off, int D, int H, int part)
{
    int64_t r0, r1;
    part_rows(sd, part, &r0, &r1);
    const int32_t *ids = sd->g.ids;
    for (int64_t r = r0; r < r1; r++) {
        if (r + RMF_PREFETCH_AHEAD < r1)
            rmf_prefetch_row(emb + (int64_t)ids[r + RMF_PREFETCH_AHEAD] * D, (size_t)D * sizeof(float));
        memcpy(sd->E + r * D, emb + (int64_t)ids[r] * D, (size_t)D * sizeof(float));
        if (sd->slot_of_row)
            sd->slot_of_row[ids[r]] = (int32_t)r;
    }
    rmf_sgemm(0, 1, r1 - r0, H, D, 1.0f, sd->E + r0 * D, D, W1 + off, 2 * D,
              0.0f, sd->A + r0 * H, H);
}

/* Task t of the backward pieces: t < 2 PARTS is part t % PARTS of side
 * t / PARTS's G^T E (into wpart), the rest the same part's rows of
 * dE = G W1half. */
static void backward_piece(ncf_ws *w, const float *W1, int D, int H, int t)
{
    const int64_t HD = (int64_t)H * D;
    const int wg = t < 2 * PARTS;
    const int k = wg ? t : t - 2 * PARTS;
    side *sd = k < PARTS ? &w->user : &w->item;
    const int off = k < PARTS ? 0 : D, part = k % PARTS;
    int64_t r0, r1;
    part_rows(sd, part, &r0, &r1);
    if (wg) {
        float *out = w->wpart + k * HD;
        if (r1 > r0)
            rmf_sgemm(1, 0, H, D, r1 - r0, 1.0f, sd->G + r0 * H, H,
                      sd->E + r0 * D, D, 0.0f, out, D);
        else
            memset(out, 0, (size_t)HD * sizeof *out);
    } else {
        rmf_sgemm(0, 0, r1 - r0, D, H, 1.0f, sd->G + r0 * H, H, W1 + off,
                  2 * D, 0.0f, sd->dE + r0 * D, D);
    }
}

/* gW1 = [sum of the user parts | sum of the item parts], in part order. */
static void sum_weight_parts(const ncf_ws *w, float *gW1, int D, int H)
{
    const int64_t HD = (int64_t)H * D;
    OMP(omp for schedule(static) nowait)
    for (int q = 0; q < 2 * H; q++) {
        const int half = q / H, h = q % H;
        const float *p = w->wpart + (int64_t)half * PARTS * HD + (int64_t)h * D;
        float *dst = gW1 + (int64_t)h * 2 * D + (int64_t)half * D;
        for (int d = 0; d < D; d++) {
            float acc = p[d];
            for (int k = 1; k < PARTS; k++)
                acc += p[k * HD + d];
            dst[d] = acc;
        }
    }
}

/* G[s] = sum of dpre over the entries of slot s, in entry order: one
 * thread per output row, so no atomics and no dependence on n_threads. */
static void side_sum_rows(side *sd, const float *dpre, int H)
{
    const rmf_group *g = &sd->g;
    float *G = sd->G;
    OMP(omp for schedule(dynamic, 64) nowait)
    for (int64_t s = 0; s < g->n_distinct; s++) {
        float *gs = G + s * H;
        const float *first = dpre + g->list[g->ptr[s]] * H;
        memcpy(gs, first, (size_t)H * sizeof(float));
        for (int64_t q = g->ptr[s] + 1; q < g->ptr[s + 1]; q++) {
            const float *row = dpre + g->list[q] * H;
            for (int h = 0; h < H; h++)
                gs[h] += row[h];
        }
    }
}

/* grad_emb rows of the distinct ids = dE (distinct, so no write races). */
static void side_scatter(const side *sd, float *gemb, int D)
{
    int64_t nd = sd->g.n_distinct;
    const int32_t *ids = sd->g.ids;
    const float *dE = sd->dE;
    OMP(omp for schedule(static) nowait)
    for (int64_t r = 0; r < nd; r++)
        memcpy(gemb + (int64_t)ids[r] * D, dE + r * D, (size_t)D * sizeof(float));
}

/* slot_of_row back to -1 at the rows of the group's last build. */
static void forget_slots(side *sd)
{
    const int32_t *ids = sd->g.ids;
    OMP(omp for schedule(static) nowait)
    for (int64_t r = 0; r < sd->g.n_distinct; r++)
        sd->slot_of_row[ids[r]] = -1;
}

/* Below this many pairs a parallel region costs more than it saves. */
#define PAR_MIN_PAIRS 512

/* x where r > 0, else +0.  r is a ReLU output (+0 or positive), so its bits
 * are non-zero exactly when it is positive.  An integer mask keeps the loop
 * branch-free: a float select would not vectorize under -ftrapping-math. */
static inline float where_positive(float r, float x)
{
    uint32_t rb, xb;
    memcpy(&rb, &r, sizeof rb);
    memcpy(&xb, &x, sizeof xb);
    xb &= (uint32_t)0 - (uint32_t)(rb != 0);
    float out;
    memcpy(&out, &xb, sizeof out);
    return out;
}

/* One pair's forward pass: r = relu((a + b1) + b) -- the order recommend's
 * precomputed A + b1 uses -- and the logit sum_h (r mk)[h] w2[h] + b2 with 8
 * float lanes (lane = h mod 8) added in a fixed tree: vectorizable without
 * fast-math and the same result at any vector width. */
RMF_CLONES
static float pair_forward(const float *restrict a, const float *restrict b,
                          const float *restrict b1, const float *restrict mk,
                          const float *restrict w2, float b2,
                          float *restrict r, int H)
{
    for (int h = 0; h < H; h++) {
        float pre = (a[h] + b1[h]) + b[h];
        r[h] = pre > 0.0f ? pre : 0.0f;
    }
    float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int h = 0;
    for (; h + 8 <= H; h += 8)
        for (int l = 0; l < 8; l++)
            acc[l] += (r[h + l] * mk[h + l]) * w2[h + l];
    for (int l = 0; h < H; h++, l++)
        acc[l] += (r[h] * mk[h]) * w2[h];
    return (((acc[0] + acc[4]) + (acc[2] + acc[6])) +
            ((acc[1] + acc[5]) + (acc[3] + acc[7]))) + b2;
}

/* One pair's backward pass from dl = d loss / d logit: dw2 += dl (r mk),
 * r becomes dpre = [r > 0] dl w2 mk, db1 += dpre. */
RMF_CLONES
static void pair_backward(float dl, const float *restrict w2,
                          const float *restrict mk, float *restrict r,
                          float *restrict pw2, float *restrict pb1, int H)
{
    for (int h = 0; h < H; h++) {
        pw2[h] += dl * (r[h] * mk[h]);
        float d = where_positive(r[h], (dl * w2[h]) * mk[h]);
        r[h] = d;
        pb1[h] += d;
    }
}

/* ------------------------------------------------------------------ */
/* One batch: loss and gradient                                        */
/* ------------------------------------------------------------------ */

/* Parameter block offsets in theta. */
typedef struct {
    int64_t user, item, W1, b1, w2, b2, n;
} ncf_layout;

static ncf_layout ncf_offsets(const rmf_shape *s)
{
    int64_t D = s->emb_dim, H = s->hidden_dim;
    ncf_layout o;
    o.user = 0;
    o.item = (int64_t)s->n_users * D;
    o.W1 = o.item + (int64_t)s->n_items * D;
    o.b1 = o.W1 + H * 2 * D;
    o.w2 = o.b1 + H;
    o.b2 = o.w2 + H;
    o.n = o.b2 + 1;
    return o;
}

/* Dropout keep mask for the rows of one batch: keep with probability 1-p,
 * kept units scaled by 1/(1-p) (PyTorch: noise.bernoulli_(1 - p).div_(1 -
 * p)).  The keep probability is rounded to 24 bits, thr = round((1-p) 2^24)
 * = hi 2^16 + lo, and drawn a byte at a time: byte < hi keeps, byte > hi
 * drops, and only a tie (1 in 256) needs 16 more bits (keep if < lo).  So
 * P(keep) = thr / 2^24 exactly while a 64-bit draw decides ~8 units: the
 * mask was the costliest non-BLAS step with one draw per 2 units.  The
 * pair pass draws each row just before using it (no n x H mask array to
 * write and read back), from a stream per CHUNK rows derived from the
 * batch stream (seed, DROPOUT, epoch, batch): the mask depends on the seed
 * only, never on threads. */
typedef struct {
    uint64_t sub;     /* seed of the chunk streams */
    uint32_t hi, lo;  /* thr = hi 2^16 + lo */
    float val[2];     /* {dropped, kept} values: a lookup, not a branch */
} dropout_draw;

static dropout_draw dropout_setup(float p, uint64_t seed, uint64_t epoch,
                                  uint64_t batch)
{
    dropout_draw d;
    rmf_rng base;
    rmf_rng_seed(&base, seed, rmf_stream_id(RMF_STREAM_DROPOUT, epoch, batch));
    d.sub = rmf_rng_next(&base);
    const double keep = 1.0 - (double)p;
    const uint32_t thr = (uint32_t)nearbyint(keep * 16777216.0);
    d.hi = thr >> 16; /* 256 when keep rounds to 1: every byte keeps */
    d.lo = thr & 0xFFFF;
    d.val[0] = 0.0f;
    d.val[1] = 1.0f / (float)keep;
    return d;
}

/* Eight 32-bit lanes (GCC/Clang vector extensions). */
typedef uint32_t u32x8 __attribute__((vector_size(32)));
typedef int32_t s32x8 __attribute__((vector_size(32)));

/* One row of H mask values from r, 32 units per block: the block's 4
 * draws come first, unit h0 + h decides on byte h of them (byte h % 8 of
 * draw h / 8, counted from the least significant), and ties (byte == hi)
 * are then settled in unit order with one more draw each.  Deciding a
 * block's units together lets the compare-and-select loop vectorize: the
 * unit-at-a-time version cost ~17 instructions per unit, this one ~7, most
 * of them the draws.  Locals: stores through row could otherwise alias d's
 * fields. */
RMF_CLONES
static void dropout_row(rmf_rng *rp, const dropout_draw *d, float *row, int H)
{
    rmf_rng g = *rp, *r = &g; /* a local: stores to row cannot touch it */
    const uint32_t hi = d->hi, lo = d->lo;
    const float val[2] = {d->val[0], d->val[1]};
    uint32_t kept_bits; /* val[0] is +0.0f: all bits clear */
    memcpy(&kept_bits, &val[1], sizeof kept_bits);
    /* Lane k of a draw's 8 units holds byte k (from the least significant):
     * the draw's low word in lanes 0-3, its high word in lanes 4-7, each
     * shifted right by 8 (k mod 4). */
    const u32x8 shift = {0, 8, 16, 24, 0, 8, 16, 24};
    for (int h0 = 0; h0 < H; h0 += 32) {
        const int n = H - h0 < 32 ? H - h0 : 32;
        uint64_t x[4] = {0, 0, 0, 0};
        for (int j = 0; j < (n + 7) / 8; j++)
            x[j] = rmf_rng_next(r);
        s32x8 any_tie = {0, 0, 0, 0, 0, 0, 0, 0};
        if (n == 32) {
            /* In registers: copying the draws to a byte array and reading
             * it back stalled on store forwarding (a quarter of the pair
             * pass's dropout time). */
            for (int j = 0; j < 4; j++) {
                const uint32_t w0 = (uint32_t)x[j], w1 = (uint32_t)(x[j] >> 32);
                const u32x8 b = ((u32x8){w0, w0, w0, w0, w1, w1, w1, w1} >> shift) & 0xFFu;
                const s32x8 bits = (s32x8)(b < hi) & (int32_t)kept_bits;
                any_tie |= (s32x8)(b == hi);
                memcpy(row + h0 + 8 * j, &bits, sizeof bits);
            }
        } else {
            for (int h = 0; h < n; h++) {
                const uint32_t b = (uint32_t)(x[h / 8] >> (8 * (h % 8))) & 0xFFu;
                row[h0 + h] = val[b < hi];
                any_tie[0] |= b == hi;
            }
        }
        int tied = 0;
        for (int k = 0; k < 8; k++)
            tied |= any_tie[k];
        if (!tied) /* a tie (byte == hi) comes 1 in 256 */
            continue;
        /* Ties are settled by 16 more bits each, in unit order. */
        for (int h = 0; h < n; h++)
            if (((x[h / 8] >> (8 * (h % 8))) & 0xFFu) == hi)
                row[h0 + h] = val[(uint32_t)(rmf_rng_next(r) & 0xFFFF) < lo];
    }
    *rp = g;
}

rmf_status rmf_ncf_dropout_mask(float p, uint64_t seed, uint64_t epoch,
                                uint64_t batch, int64_t n, int H, float *out,
                                rmf_error *err)
{
    if (!(p > 0.0f && p < 1.0f))
        return rmf_fail(err, RMF_ERR_VALUE, "dropout must be in (0, 1), got %g", (double)p);
    if (n < 0 || H < 1)
        return rmf_fail(err, RMF_ERR_VALUE, "need n >= 0 rows of H >= 1 units");
    dropout_draw d = dropout_setup(p, seed, epoch, batch);
    /* The pair pass's chunks, in order: chunk c's rows from stream c. */
    for (int64_t c = 0; c * CHUNK < n; c++) {
        rmf_rng rng;
        rmf_rng_seed(&rng, d.sub, (uint64_t)c);
        int64_t k1 = (c + 1) * CHUNK < n ? (c + 1) * CHUNK : n;
        for (int64_t k = c * CHUNK; k < k1; k++)
            dropout_row(&rng, &d, out + k * H, H);
    }
    return RMF_OK;
}

/* Per pair: forward to the logit, loss, and dpre = d loss / d pre-ReLU
 * (written over the ReLU output in rbuf), plus per-chunk partial sums of
 * dw2, db1, db2 and the loss.  Dropout comes from mask (n x H) or, when
 * mask is NULL, is drawn from drop (NULL: no dropout). */
static void pair_pass(ncf_ws *w, const float *theta, const ncf_layout *o,
                      const float *y, int64_t n, const float *mask,
                      const dropout_draw *drop, int nt)
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
                rmf_rng_seed(&rng, drop->sub, (uint64_t)c);
            for (int64_t k = c * CHUNK; k < k1; k++) {
                const float *a = Au + (int64_t)su[k] * H;
                const float *b = Ai + (int64_t)si[k] * H;
                /* Mask: given, drawn now, or none -- multiplying by ones is
                 * exact and keeps one branch-free loop. */
                const float *mk = w->ones;
                if (mask) {
                    mk = mask + k * H;
                } else if (drop) {
                    dropout_row(&rng, drop, mrow, H);
                    mk = mrow;
                }
                float *r = w->rbuf + k * H;
                double z = (double)pair_forward(a, b, b1, mk, w2, b2, r, H);
                double yk = (double)y[k];
                /* BCE with logits and its derivative from one exp(-|z|):
                 * loss = max(z, 0) - z y + log1p(e), sigmoid(z) = 1/(1+e) or e/(1+e). */
                double e = exp(-fabs(z));
                ploss += (z > 0.0 ? z : 0.0) - z * yk + log1p(e);
                double sig = z >= 0.0 ? 1.0 / (1.0 + e) : e / (1.0 + e);
                float dl = (float)(sig - yk) * inv_n; /* d mean-loss / d logit */
                pb2 += dl;
                pair_backward(dl, w2, mk, r, pw2, pb1, H);
            }
            w->dpart[2 * c] = pb2;
            w->dpart[2 * c + 1] = ploss;
        }
        RMF_TEAM_END;
    }
}

/* Core of rmf_ncf_batch_grad and of a training batch.  Overwrites grad's
 * whole MLP block and, when scatter is set, the embedding rows this batch
 * touches (the caller zeroed the others: rmf_ncf_batch_grad).  Without
 * scatter (training) the embedding gradient stays in the sides' dE rows,
 * in slot order (see side.slot_of_row). */
static void ncf_grad_core(ncf_ws *w, const rmf_shape *s, const float *theta,
                          const int32_t *u, const int32_t *i, const float *y,
                          int64_t n, const float *mask,
                          const dropout_draw *drop, int nt, int scatter,
                          float *grad, double *loss)
{
    const int D = w->D, H = w->H;
    ncf_layout o = ncf_offsets(s);
    const float *W1 = theta + o.W1;

    /* The two group builds are serial each but independent: one thread
     * takes each; then the team gathers and multiplies the parts, on one
     * BLAS thread each (the count locked: see "First layer on the team"). */
    int blas_threads = rmf_blas_single_begin();
    RMF_PARALLEL(nt, if (n >= PAR_MIN_PAIRS))
    {
        RMF_TEAM_BEGIN;
        OMP(omp single nowait)
        rmf_group_build(&w->user.g, u, n);
        OMP(omp single)
        rmf_group_build(&w->item.g, i, n);
        /* the second single's barrier: both groups are built */
        OMP(omp for schedule(dynamic, 1) nowait)
        for (int t = 0; t < 2 * PARTS; t++) {
            if (t < PARTS)
                side_forward_part(&w->user, theta + o.user, W1, 0, D, H, t);
            else
                side_forward_part(&w->item, theta + o.item, W1, D, D, H, t - PARTS);
        }
        RMF_TEAM_END;
    }
    rmf_blas_single_end(blas_threads);

    pair_pass(w, theta, &o, y, n, mask, drop, nt);

    /* Chunk partials, summed in chunk order. */
    int64_t n_chunks = (n + CHUNK - 1) / CHUNK;
    double sb2 = 0.0, sloss = 0.0;
    for (int h = 0; h < H; h++) {
        double sw = 0.0, sb = 0.0;
        for (int64_t c = 0; c < n_chunks; c++) {
            sw += w->fpart[c * 2 * H + h];
            sb += w->fpart[c * 2 * H + H + h];
        }
        grad[o.w2 + h] = (float)sw;
        grad[o.b1 + h] = (float)sb;
    }
    for (int64_t c = 0; c < n_chunks; c++) {
        sb2 += w->dpart[2 * c];
        sloss += w->dpart[2 * c + 1];
    }
    grad[o.b2] = (float)sb2;
    *loss = sloss / (double)n;

    blas_threads = rmf_blas_single_begin();
    RMF_PARALLEL(nt, if (n >= PAR_MIN_PAIRS))
    {
        RMF_TEAM_BEGIN;
        side_sum_rows(&w->user, w->rbuf, H);
        side_sum_rows(&w->item, w->rbuf, H);
        OMP(omp barrier)
        OMP(omp for schedule(dynamic, 1))
        for (int t = 0; t < 4 * PARTS; t++)
            backward_piece(w, W1, D, H, t);
        /* the loop's barrier: every part of gW1 is done */
        sum_weight_parts(w, grad + o.W1, D, H);
        RMF_TEAM_END;
    }
    rmf_blas_single_end(blas_threads);
    if (!scatter)
        return;
    RMF_PARALLEL(nt, if (n >= PAR_MIN_PAIRS))
    {
        RMF_TEAM_BEGIN;
        side_scatter(&w->user, grad + o.user, D);
        side_scatter(&w->item, grad + o.item, D);
        RMF_TEAM_END;
    }
}

/* ------------------------------------------------------------------ */
/* Public: batch gradient                                              */
/* ------------------------------------------------------------------ */

rmf_status rmf_ncf_batch_grad(const rmf_shape *s, const float *theta,
                              const int32_t *u, const int32_t *i,
                              const float *y, int64_t n, const float *mask,
                              int n_threads, float *grad, double *loss,
                              rmf_error *err)
{
    rmf_status st = rmf_ncf_check_shape(s, err);
    if (st != RMF_OK)
        return st;
    if (n < 1)
        return rmf_fail(err, RMF_ERR_VALUE, "n must be >= 1, got %lld", (long long)n);
    if (theta == NULL || grad == NULL || y == NULL || loss == NULL)
        return rmf_fail(err, RMF_ERR_VALUE, "theta, y, grad and loss must not be NULL");
    if ((st = rmf_check_ids(u, n, s->n_users, "u", err)) != RMF_OK)
        return st;
    if ((st = rmf_check_ids(i, n, s->n_items, "i", err)) != RMF_OK)
        return st;

    ncf_ws w;
    if ((st = ws_alloc(&w, s, n, 1, err)) != RMF_OK)
        return st;
    int nt = rmf_resolve_threads(n_threads);
    memset(grad, 0, (size_t)rmf_ncf_n_params(s) * sizeof *grad);
    rmf_fp_enter();
    ncf_grad_core(&w, s, theta, u, i, y, n, mask, NULL, nt, 1, grad, loss);
    rmf_fp_leave();
    ws_free(&w);
    return RMF_OK;
}

/* ------------------------------------------------------------------ */
/* Training epoch                                                      */
/* ------------------------------------------------------------------ */

rmf_status rmf_ncf_train_epoch(const rmf_train_params *p, const rmf_shape *s,
                               const rmf_csr *train, uint64_t epoch,
                               rmf_opt_state *st, rmf_stop_fn stop,
                               void *stop_ctx, double *loss, int64_t *n_done,
                               rmf_error *err)
{
    rmf_status status;
    if ((status = rmf_epoch_begin(p, loss, n_done, err)) != RMF_OK ||
        (status = rmf_ncf_check_shape(s, err)) != RMF_OK ||
        (status = rmf_csr_check(train, "train", s->n_users, s->n_items, err)) != RMF_OK)
        return status;
    const ncf_layout o = ncf_offsets(s);
    if ((status = rmf_check_opt_state(st, o.n, err)) != RMF_OK)
        return status;
    const int64_t nnz = train->indptr[train->n_rows];
    if (nnz == 0)
        return rmf_fail(err, RMF_ERR_VALUE, "train has no positive pairs");

    const int D = s->emb_dim;
    const int nt = rmf_resolve_threads(p->n_threads);
    const int64_t n_neg = p->n_neg;
    const int64_t n_pairs = nnz * (1 + n_neg);
    const int64_t bs = p->batch_size < n_pairs ? p->batch_size : n_pairs;
    const int use_mask = p->dropout > 0.0f;
    rmf_pacer pace;
    rmf_pacer_init(&pace, nt);

    int32_t *neg = NULL, *row_of = NULL, *bu = NULL, *bi = NULL;
    int64_t *perm = NULL;
    float *by = NULL, *grad = NULL;
    ncf_ws w;
    memset(&w, 0, sizeof w);
    int blas_saved = -1;
    double total = 0.0;
    int64_t done = 0;

    neg = malloc((size_t)(nnz * n_neg) * sizeof *neg);
    row_of = malloc((size_t)nnz * sizeof *row_of);
    perm = malloc((size_t)n_pairs * sizeof *perm);
    bu = malloc((size_t)bs * sizeof *bu);
    bi = malloc((size_t)bs * sizeof *bi);
    by = malloc((size_t)bs * sizeof *by);
    grad = calloc((size_t)o.n, sizeof *grad);
    if (!neg || !row_of || !perm || !bu || !bi || !by || !grad) {
        status = rmf_fail(err, RMF_ERR_NOMEM, "out of memory for a NeuralMF epoch of %lld pairs",
                          (long long)n_pairs);
        goto cleanup;
    }
    if ((status = ws_alloc(&w, s, bs, 1, err)) != RMF_OK)
        goto cleanup;
    const int fused = !p->lazy_adam; /* dense Adam reads dE in place */
    if (fused) {
        w.user.slot_of_row = malloc((size_t)s->n_users * sizeof(int32_t));
        w.item.slot_of_row = malloc((size_t)s->n_items * sizeof(int32_t));
        if (!w.user.slot_of_row || !w.item.slot_of_row) {
            status = rmf_fail(err, RMF_ERR_NOMEM, "out of memory for a NeuralMF epoch");
            goto cleanup;
        }
        memset(w.user.slot_of_row, 0xFF, (size_t)s->n_users * sizeof(int32_t)); /* all -1 */
        memset(w.item.slot_of_row, 0xFF, (size_t)s->n_items * sizeof(int32_t));
    }

    /* Negatives for every positive, then one shuffled order over all
     * pairs: positions [0, nnz) are positives, nnz + p*n_neg + r is the
     * r-th negative of positive p. */
    status = rmf_sample_uniform(train, p->n_neg, p->seed, epoch, nt, neg, err);
    if (status != RMF_OK)
        goto cleanup;
    RMF_PARALLEL(nt)
    {
        RMF_TEAM_BEGIN;
        OMP(omp for schedule(dynamic, 256) nowait)
        for (int32_t r = 0; r < train->n_rows; r++)
            for (int64_t q = train->indptr[r]; q < train->indptr[r + 1]; q++)
                row_of[q] = r;
        RMF_TEAM_END;
    }
    rmf_epoch_order(perm, n_pairs, p->seed, epoch, nt);

    /* OpenBLAS on one thread: the team runs the pieces (ncf_grad_core). */
    blas_saved = rmf_blas_enter(1);
    const int64_t n_batches = (n_pairs + bs - 1) / bs;
    for (int64_t b = 0; b < n_batches; b++) {
        status = rmf_epoch_should_stop(stop, stop_ctx, b, n_batches, err);
        if (status != RMF_OK)
            goto cleanup;
        const int64_t start = b * bs;
        const int64_t bn = start + bs <= n_pairs ? bs : n_pairs - start;
        rmf_pacer_begin(&pace);
        /* Forget the previous batch's rows (its Adam step is done) while
         * filling this batch's pairs. */
        RMF_PARALLEL(nt, if (bn >= PAR_MIN_PAIRS))
        {
            RMF_TEAM_BEGIN;
            if (fused) {
                forget_slots(&w.user);
                forget_slots(&w.item);
            }
            OMP(omp for schedule(static) nowait)
            for (int64_t t = 0; t < bn; t++) {
                int64_t q = perm[start + t];
                if (q < nnz) {
                    bu[t] = row_of[q];
                    bi[t] = train->indices[q];
                    by[t] = 1.0f;
                } else {
                    bu[t] = row_of[(q - nnz) / n_neg];
                    bi[t] = neg[q - nnz];
                    by[t] = 0.0f;
                }
            }
            RMF_TEAM_END;
        }
        dropout_draw dd = dropout_setup(p->dropout, p->seed, epoch, (uint64_t)b);
        double bl;
        /* The embedding gradient stays in the sides' dE rows (no scatter):
         * dense Adam finds them through slot_of_row, lazy Adam by slot. */
        ncf_grad_core(&w, s, st->theta, bu, bi, by, bn, NULL,
                      use_mask ? &dd : NULL, nt, 0, grad, &bl);
        st->step++;
        if (p->lazy_adam) {
            /* Embedding rows the batch touched; the MLP is dense in every
             * batch, so it always takes a full step. */
            rmf_lazy_rows_step(&p->adam, st->step, st, w.user.dE, 1, o.user,
                               w.user.g.ids, w.user.g.n_distinct, D, nt);
            rmf_lazy_rows_step(&p->adam, st->step, st, w.item.dE, 1, o.item,
                               w.item.g.ids, w.item.g.n_distinct, D, nt);
            rmf_adam_step(&p->adam, st->step, st->theta + o.W1, grad + o.W1,
                          st->m + o.W1, st->v + o.W1, o.n - o.W1, nt);
        } else {
            RMF_PARALLEL(nt)
            {
                RMF_TEAM_BEGIN;
                rmf_adam_table_share(&p->adam, st->step, st->theta + o.user,
                                     st->m + o.user, st->v + o.user,
                                     s->n_users, D, w.user.slot_of_row,
                                     w.user.dE);
                rmf_adam_table_share(&p->adam, st->step, st->theta + o.item,
                                     st->m + o.item, st->v + o.item,
                                     s->n_items, D, w.item.slot_of_row,
                                     w.item.dE);
                RMF_TEAM_END;
            }
            rmf_adam_step(&p->adam, st->step, st->theta + o.W1, grad + o.W1,
                          st->m + o.W1, st->v + o.W1, o.n - o.W1, nt);
        }
        rmf_pacer_end(&pace, (double)bn);
        total += bl * (double)bn;
        done += bn;
    }
    status = RMF_OK;

cleanup:
    st->team_threads = rmf_pacer_mean_team(&pace);
    rmf_pacer_finish(&pace);
    rmf_blas_leave(blas_saved);
    rmf_epoch_end(total, done, loss, n_done);
    ws_free(&w);
    free(neg);
    free(row_of);
    free(perm);
    free(bu);
    free(bi);
    free(by);
    free(grad);
    return status;
}

/* ------------------------------------------------------------------ */
/* Scoring                                                             */
/* ------------------------------------------------------------------ */

/* Scoring computes the first layer with its own loops rather than sgemm:
 * OpenBLAS rounds a product differently depending on the matrix shape and
 * the thread count, and scoring must give the same number for a pair
 * whichever call computes it.  The cost is small (n_users + n_items rows
 * of D x H multiply-adds, ~0.16 GFLOP on ML-1M). */

/* W1's halves transposed, [2][D][H]: the user half W1u^T then the item
 * half W1i^T, so a row's H outputs accumulate with unit stride. */
static float *transpose_halves(const float *W1, int D, int H)
{
    float *WT = malloc((size_t)(2 * D) * (size_t)H * sizeof *WT);
    if (WT == NULL)
        return NULL;
    for (int h = 0; h < H; h++)
        for (int d = 0; d < 2 * D; d++)
            WT[(int64_t)d * H + h] = W1[(int64_t)h * 2 * D + d];
    return WT;
}

/* out[h] = sum_d e[d] WT[d][h] (+ bias[h]), d ascending.  The inner loop
 * runs over h: it vectorizes with no reduction, and the result does not
 * depend on the vector width. */
RMF_CLONES
static void row_times(const float *restrict e, const float *restrict WT,
                      const float *restrict bias, int D, int H,
                      float *restrict out)
{
    for (int h = 0; h < H; h++)
        out[h] = 0.0f;
    for (int d = 0; d < D; d++) {
        const float ed = e[d];
        const float *wt = WT + (int64_t)d * H;
        for (int h = 0; h < H; h++)
            out[h] += ed * wt[h];
    }
    if (bias)
        for (int h = 0; h < H; h++)
            out[h] += bias[h];
}

/* First-layer half for rows ids[0..n) of emb (rows 0..n-1 when ids is
 * NULL); bias may be NULL.  An orphaned worksharing loop. */
static void first_layer(const float *emb, const int32_t *ids, int64_t n,
                        const float *WT, const float *bias, int D, int H,
                        float *out)
{
    OMP(omp for schedule(static) nowait)
    for (int64_t r = 0; r < n; r++)
        row_times(emb + (int64_t)(ids ? ids[r] : r) * D, WT, bias, D, H,
                  out + r * H);
}

/* Eval-mode logit from a user row a = W1u U[u] + b1 and an item row
 * b = W1i I[i], summed over h in ascending order with the same float
 * operations as score_tile: rmf_ncf_score_pairs and rmf_ncf_recommend give
 * bit-identical scores, for any n_threads. */
static inline float logit_seq(const float *a, const float *b, const float *w2,
                              float b2, int H)
{
    float acc = 0.0f;
    for (int h = 0; h < H; h++) {
        float x = a[h] + b[h];
        acc += (x > 0.0f ? x : 0.0f) * w2[h];
    }
    return acc + b2;
}

/* Pairs per scoring chunk: bounds the scratch memory of score_pairs. */
#define SCORE_CHUNK 65536

rmf_status rmf_ncf_score_pairs(const rmf_shape *s, const float *theta,
                               const int32_t *u, const int32_t *i, int64_t n,
                               int n_threads, float *out, rmf_error *err)
{
    rmf_status st;
    if ((st = rmf_ncf_check_shape(s, err)) != RMF_OK ||
        (st = rmf_check_pairs_args(s, theta, u, i, n, out, err)) != RMF_OK)
        return st;
    if (n == 0)
        return RMF_OK;

    const int D = s->emb_dim, H = s->hidden_dim;
    const ncf_layout o = ncf_offsets(s);
    const float *W1 = theta + o.W1, *b1 = theta + o.b1, *w2 = theta + o.w2;
    const float b2 = theta[o.b2];
    const int nt = rmf_resolve_threads(n_threads);
    (void)nt; /* unused without OpenMP */
    const int64_t cap = n < SCORE_CHUNK ? n : SCORE_CHUNK;
    float *WT = transpose_halves(W1, D, H);
    if (WT == NULL)
        return rmf_fail(err, RMF_ERR_NOMEM, "out of memory for the first layer");
    ncf_ws w;
    if ((st = ws_alloc(&w, s, cap, 0, err)) != RMF_OK) {
        free(WT);
        return st;
    }
    rmf_stop *stop = rmf_stop_here();
    rmf_fp_enter();
    for (int64_t c0 = 0; c0 < n && !rmf_stopping(stop); c0 += cap) {
        int64_t cn = c0 + cap <= n ? cap : n - c0;
        rmf_group_build(&w.user.g, u + c0, cn);
        rmf_group_build(&w.item.g, i + c0, cn);
        RMF_PARALLEL(nt, if (cn >= PAR_MIN_PAIRS))
        {
            RMF_TEAM_BEGIN;
            first_layer(theta + o.user, w.user.g.ids, w.user.g.n_distinct, WT,
                        b1, D, H, w.user.A);
            first_layer(theta + o.item, w.item.g.ids, w.item.g.n_distinct,
                        WT + (int64_t)D * H, NULL, D, H, w.item.A);
            RMF_TEAM_END;
        }
        const float *A = w.user.A;
        const int32_t *su = w.user.g.slot_of, *si = w.item.g.slot_of;
        const float *B = w.item.A;
        RMF_PARALLEL(nt, if (cn > 1024))
        {
            RMF_TEAM_BEGIN;
            OMP(omp for schedule(static) nowait)
            for (int64_t k = 0; k < cn; k++)
                out[c0 + k] = logit_seq(A + (int64_t)su[k] * H,
                                        B + (int64_t)si[k] * H, w2, b2, H);
            RMF_TEAM_END;
        }
    }
    rmf_fp_leave();
    ws_free(&w);
    free(WT);
    return RMF_OK;
}

/* ------------------------------------------------------------------ */
/* Recommend                                                           */
/* ------------------------------------------------------------------ */

/* Register tile of the scoring kernel: RU users x RI items. */
#define RU 4
#define RI 16

/* S[u][i] = sum_h relu(A[u][h] + Bt[h][i]) w2[h] + b2 for RU users and the
 * RI items starting at column i0.  Bt is H x ldb, item-contiguous, so the
 * vector lanes run over items and need no horizontal reduction; the sum
 * over h runs in ascending order with the same float operations as
 * logit_seq, so the scores are bit-identical to rmf_ncf_score_pairs. */
#if defined(__GNUC__)
/* GCC/Clang vector extensions: 8 floats per vector whatever the target;
 * the avx2 clone turns each into one ymm register, the default one into
 * two SSE registers.  Auto-vectorization of the plain loop nest spilled
 * the accumulators to the stack and ran 10x slower. */
typedef float v8sf __attribute__((vector_size(32)));
typedef int32_t v8si __attribute__((vector_size(32)));

/* x > 0 ? x : +0 lane by lane (NaN -> +0), as the scalar ReLU.  Macros,
 * not functions: a function passing 32-byte vectors draws -Wpsabi. */
#define RELU8(x) ((v8sf)((v8si)(x) & ((x) > (v8sf){0, 0, 0, 0, 0, 0, 0, 0})))

RMF_CLONES
static void score_tile(const float *restrict A, int H,
                       const float *restrict Bt, int64_t ldb, int64_t i0,
                       const float *restrict w2, float b2,
                       float *restrict S, int64_t lds, int n_cols)
{
    v8sf acc[RU][RI / 8];
    for (int q = 0; q < RU; q++)
        for (int l = 0; l < RI / 8; l++)
            acc[q][l] = (v8sf){0, 0, 0, 0, 0, 0, 0, 0};
    for (int h = 0; h < H; h++) {
        const float *bt = Bt + (int64_t)h * ldb + i0;
        v8sf b0, b1;
        memcpy(&b0, bt, sizeof b0);
        memcpy(&b1, bt + 8, sizeof b1);
        const float wh = w2[h];
        for (int q = 0; q < RU; q++) {
            const float aq = A[(int64_t)q * H + h];
            const v8sf x0 = aq + b0, x1 = aq + b1;
            acc[q][0] += RELU8(x0) * wh;
            acc[q][1] += RELU8(x1) * wh;
        }
    }
    /* n_cols < RI on the last tile: its padding columns are not stored. */
    for (int q = 0; q < RU; q++) {
        float out[RI];
        memcpy(out, acc[q], sizeof out);
        for (int l = 0; l < n_cols; l++)
            S[(int64_t)q * lds + i0 + l] = out[l] + b2;
    }
}
#else
static void score_tile(const float *restrict A, int H,
                       const float *restrict Bt, int64_t ldb, int64_t i0,
                       const float *restrict w2, float b2,
                       float *restrict S, int64_t lds, int n_cols)
{
    float acc[RU][RI] = {{0}};
    for (int h = 0; h < H; h++) {
        const float *bt = Bt + (int64_t)h * ldb + i0;
        for (int q = 0; q < RU; q++) {
            const float aq = A[(int64_t)q * H + h];
            for (int l = 0; l < RI; l++) {
                float x = aq + bt[l];
                acc[q][l] += (x > 0.0f ? x : 0.0f) * w2[h];
            }
        }
    }
    for (int q = 0; q < RU; q++)
        for (int l = 0; l < n_cols; l++)
            S[(int64_t)q * lds + i0 + l] = acc[q][l] + b2;
}
#endif

rmf_status rmf_ncf_recommend(const rmf_shape *s, const float *theta,
                             const int32_t *users, int64_t n,
                             const rmf_csr *seen, int32_t k, int n_threads,
                             int32_t *out_items, float *out_scores,
                             int32_t *out_len, rmf_error *err)
{
    rmf_status st;
    if ((st = rmf_ncf_check_shape(s, err)) != RMF_OK ||
        (st = rmf_check_recommend_args(s, theta, users, n, seen, k, out_items,
                                       out_scores, out_len, err)) != RMF_OK)
        return st;
    if (n == 0)
        return RMF_OK;

    const int D = s->emb_dim, H = s->hidden_dim;
    const int32_t NI = s->n_items;
    const ncf_layout o = ncf_offsets(s);
    const float *W1 = theta + o.W1, *b1 = theta + o.b1, *w2 = theta + o.w2;
    const float b2 = theta[o.b2];
    const int nt = rmf_resolve_threads(n_threads);
    /* Bt's rows are padded to a multiple of RI items so every tile loads
     * full vectors; the zero padding is computed but never stored, and S
     * is n_items wide as rmf_topk_select expects. */
    const int64_t ldb = (NI + RI - 1) / RI * RI;
    const int64_t nb = (rmf_block_users(NI) + RU - 1) / RU * RU; /* whole user tiles */
    const int64_t lds = NI;

    rmf_fp_enter();
    float *Bt = calloc((size_t)(H * ldb), sizeof *Bt);
    float *B = malloc((size_t)((int64_t)NI * H) * sizeof *B);
    float *A = calloc((size_t)(nb * H), sizeof *A);
    float *S = malloc((size_t)(nb * lds) * sizeof *S);
    float *WT = transpose_halves(W1, D, H);
    if (!Bt || !B || !A || !S || !WT) {
        st = rmf_fail(err, RMF_ERR_NOMEM, "out of memory scoring %d items", (int)NI);
        goto cleanup;
    }
    /* B = I W1i^T once per call, then transposed to Bt (H x n_items) for
     * the item-contiguous kernel. */
    RMF_PARALLEL(nt)
    {
        RMF_TEAM_BEGIN;
        first_layer(theta + o.item, NULL, NI, WT + (int64_t)D * H, NULL, D, H, B);
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
        const int64_t n_ut = (bn + RU - 1) / RU, n_it = ldb / RI;
        RMF_PARALLEL(nt)
        {
            RMF_TEAM_BEGIN;
            /* A = W1u U[u] + b1 for the block's users.  The last user tile
             * may read rows past bn (stale but finite: A is calloc'ed); their
             * scores land in rows of S that rmf_topk_select never reads. */
            first_layer(theta + o.user, users + u0, bn, WT, b1, D, H, A);
            OMP(omp barrier)
            /* Item tiles outer: each Bt tile (H x RI) is reused by every
             * user of the block while it sits in L1. */
            OMP(omp for schedule(static))
            for (int64_t it = 0; it < n_it; it++)
                for (int64_t ut = 0; ut < n_ut; ut++)
                    score_tile(A + ut * RU * H, H, Bt, ldb, it * RI, w2, b2,
                               S + ut * RU * lds, lds,
                               (int)(NI - it * RI < RI ? NI - it * RI : RI));
            RMF_TEAM_END;
        }
        st = rmf_topk_select(S, bn, NI, seen, users + u0, k, nt,
                           out_items + u0 * k, out_scores + u0 * k,
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
