/* ncf.c -- NeuralMF (SPEC 6): logit = w2 . dropout(relu(W1 [U[u]; I[i]] + b1)) + b2,
 * trained with mean BCE-with-logits and Adam.
 *
 * The first layer's input is a concatenation, so W1 x = W1u U[u] + W1i I[i]
 * with W1u = W1[:, :D] and W1i = W1[:, D:].  A batch of 4,096 pairs holds
 * only ~2,500 distinct users and ~2,500 distinct items, so we apply each
 * half once per DISTINCT row (one sgemm per half) instead of once per pair,
 * and in the backward pass sum dpre per distinct row before the two sgemms
 * dW1half = G^T E and dE = G W1half.  Same maths, ~40% fewer FLOPs.
 *
 * Determinism: every parallel loop writes disjoint outputs (rows, chunks)
 * and every reduction runs in a fixed order over fixed-size chunks, so a
 * result depends on the seed only -- not on n_threads -- except through
 * OpenBLAS, whose sgemm splits the output (not the sum) across threads.
 * No float atomics anywhere.
 *
 * Phases alternate: OpenMP loop, then BLAS call outside any parallel
 * region, never BLAS inside one. */
#include "recmf.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#ifdef _OPENMP
#define OMP(x) _Pragma(#x)
#else
#define OMP(x)
#endif

/* Rows per reduction chunk: fixed so sums never depend on n_threads. */
#define CHUNK 256

/* ------------------------------------------------------------------ */
/* Distinct rows of one side of a batch                                */
/* ------------------------------------------------------------------ */

/* The distinct keys of a batch side in first-appearance order, each
 * entry's slot, and the entries of each slot (ascending) as a CSR. */
typedef struct {
    int64_t n_distinct;
    int32_t *ids;     /* distinct keys, capacity cap_distinct     */
    int32_t *slot_of; /* per entry: index into ids                 */
    int64_t *ptr;     /* entries of slot s: list[ptr[s] .. ptr[s+1]) */
    int64_t *list;
} group;

/* One embedding table's share of a batch: its distinct rows, their
 * gathered embeddings E, first-layer half A = E W1half^T, summed upstream
 * gradient G and embedding gradient dE. */
typedef struct {
    group g;
    int32_t *table; /* key -> slot while building, -1 otherwise */
    float *E, *A, *G, *dE;
} side;

typedef struct {
    int64_t cap; /* pairs */
    int D, H;
    side user, item;
    float *rbuf;   /* cap x H: relu output of each pair, then dpre */
    float *fpart;  /* per chunk: dw2[H], db1[H] */
    double *dpart; /* per chunk: db2, loss */
    float *ones;   /* H ones: the dropout mask of eval / no dropout */
} ncf_ws;

static void group_free(group *g)
{
    free(g->ids);
    free(g->slot_of);
    free(g->ptr);
    free(g->list);
}

static int group_alloc(group *g, int64_t cap_entries, int64_t cap_distinct)
{
    g->n_distinct = 0;
    g->ids = malloc((size_t)cap_distinct * sizeof *g->ids);
    g->slot_of = malloc((size_t)cap_entries * sizeof *g->slot_of);
    g->ptr = malloc((size_t)(cap_distinct + 1) * sizeof *g->ptr);
    g->list = malloc((size_t)cap_entries * sizeof *g->list);
    return g->ids && g->slot_of && g->ptr && g->list;
}

/* Builds g from keys[0..n).  table has one entry per possible key, all -1;
 * it is -1 again on return.  Sequential and O(n): a batch is small and the
 * first-appearance order must not depend on threads. */
static void group_build(group *g, const int32_t *keys, int64_t n,
                        int32_t *table)
{
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

static void side_free(side *sd)
{
    group_free(&sd->g);
    free(sd->table);
    free(sd->E);
    free(sd->A);
    free(sd->G);
    free(sd->dE);
}

static int side_alloc(side *sd, int64_t cap, int32_t n_keys, int D, int H)
{
    int64_t cd = cap < n_keys ? cap : n_keys;
    int ok = group_alloc(&sd->g, cap, cd);
    sd->table = malloc((size_t)n_keys * sizeof *sd->table);
    sd->E = malloc((size_t)(cd * D) * sizeof(float));
    sd->A = malloc((size_t)(cd * H) * sizeof(float));
    sd->G = malloc((size_t)(cd * H) * sizeof(float));
    sd->dE = malloc((size_t)(cd * D) * sizeof(float));
    if (!ok || !sd->table || !sd->E || !sd->A || !sd->G || !sd->dE)
        return 0;
    for (int32_t k = 0; k < n_keys; k++)
        sd->table[k] = -1;
    return 1;
}

static void ws_free(ncf_ws *w)
{
    side_free(&w->user);
    side_free(&w->item);
    free(w->rbuf);
    free(w->fpart);
    free(w->dpart);
    free(w->ones);
    memset(w, 0, sizeof *w);
}

static rmf_status ws_alloc(ncf_ws *w, const rmf_shape *s, int64_t cap,
                           rmf_error *err)
{
    memset(w, 0, sizeof *w);
    w->cap = cap;
    w->D = s->emb_dim;
    w->H = s->hidden_dim;
    int64_t n_chunks = (cap + CHUNK - 1) / CHUNK;
    int ok = side_alloc(&w->user, cap, s->n_users, w->D, w->H);
    ok &= side_alloc(&w->item, cap, s->n_items, w->D, w->H);
    w->rbuf = malloc((size_t)(cap * w->H) * sizeof *w->rbuf);
    w->fpart = malloc((size_t)(n_chunks * 2 * w->H) * sizeof *w->fpart);
    w->dpart = malloc((size_t)(n_chunks * 2) * sizeof *w->dpart);
    w->ones = malloc((size_t)w->H * sizeof *w->ones);
    if (!ok || !w->rbuf || !w->fpart || !w->dpart || !w->ones) {
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

/* Copies the embedding rows of the distinct ids into E (nd x D). */
static void side_gather(side *sd, const float *emb, int D, int nt)
{
    int64_t nd = sd->g.n_distinct;
    const int32_t *ids = sd->g.ids;
    float *E = sd->E;
    OMP(omp parallel for num_threads(nt) schedule(static) if (nd * D > 65536))
    for (int64_t r = 0; r < nd; r++)
        memcpy(E + r * D, emb + (int64_t)ids[r] * D, (size_t)D * sizeof(float));
}

/* A = E W1half^T: W1 is H x 2D row-major, the half starts at column off. */
static void side_forward(side *sd, const float *W1, int off, int D, int H)
{
    rmf_sgemm(0, 1, sd->g.n_distinct, H, D, 1.0f, sd->E, D, W1 + off, 2 * D,
              0.0f, sd->A, H);
}

/* G[s] = sum of dpre over the entries of slot s, in entry order. */
static void side_sum_rows(side *sd, const float *dpre, int H, int nt)
{
    const group *g = &sd->g;
    float *G = sd->G;
    OMP(omp parallel for num_threads(nt) schedule(dynamic, 64) if (g->n_distinct > 64))
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

/* dW1half = G^T E into grad's W1 block, dE = G W1half. */
static void side_backward(side *sd, const float *W1, float *gW1, int off,
                          int D, int H)
{
    int64_t nd = sd->g.n_distinct;
    rmf_sgemm(1, 0, H, D, nd, 1.0f, sd->G, H, sd->E, D, 0.0f, gW1 + off,
              2 * D);
    rmf_sgemm(0, 0, nd, D, H, 1.0f, sd->G, H, W1 + off, 2 * D, 0.0f, sd->dE,
              D);
}

/* grad_emb rows of the distinct ids = dE (distinct, so no write races). */
static void side_scatter(const side *sd, float *gemb, int D, int nt)
{
    int64_t nd = sd->g.n_distinct;
    const int32_t *ids = sd->g.ids;
    const float *dE = sd->dE;
    OMP(omp parallel for num_threads(nt) schedule(static) if (nd * D > 65536))
    for (int64_t r = 0; r < nd; r++)
        memcpy(gemb + (int64_t)ids[r] * D, dE + r * D, (size_t)D * sizeof(float));
}

/* Zeroes the embedding-gradient rows a batch wrote, restoring the
 * all-zero state the next batch assumes (cheaper than a full memset). */
static void side_zero_grad(const side *sd, float *gemb, int D, int nt)
{
    int64_t nd = sd->g.n_distinct;
    const int32_t *ids = sd->g.ids;
    OMP(omp parallel for num_threads(nt) schedule(static) if (nd * D > 65536))
    for (int64_t r = 0; r < nd; r++)
        memset(gemb + (int64_t)ids[r] * D, 0, (size_t)D * sizeof(float));
}

#if defined(__GNUC__) && defined(__x86_64__) && !defined(__clang__)
#define RMF_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define RMF_CLONES
#endif

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
 * -ffast-math and the same result at any vector width. */
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

/* Per pair: forward to the logit, loss, and dpre = d loss / d pre-ReLU
 * (written over the ReLU output in rbuf), plus per-chunk partial sums of
 * dw2, db1, db2 and the loss. */
static void pair_pass(ncf_ws *w, const float *theta, const ncf_layout *o,
                      const float *y, int64_t n, const float *mask, int nt)
{
    const int H = w->H;
    const float *b1 = theta + o->b1, *w2 = theta + o->w2;
    const float b2 = theta[o->b2];
    const float *Au = w->user.A, *Ai = w->item.A;
    const int32_t *su = w->user.g.slot_of, *si = w->item.g.slot_of;
    const float inv_n = (float)(1.0 / (double)n);
    int64_t n_chunks = (n + CHUNK - 1) / CHUNK;

    OMP(omp parallel for num_threads(nt) schedule(static) if (n_chunks > 1))
    for (int64_t c = 0; c < n_chunks; c++) {
        /* float partials over <= CHUNK rows, summed across chunks in double */
        float *pw2 = w->fpart + c * 2 * H;
        float *pb1 = pw2 + H;
        double pb2 = 0.0, ploss = 0.0;
        memset(pw2, 0, (size_t)(2 * H) * sizeof(float));
        int64_t k1 = (c + 1) * CHUNK < n ? (c + 1) * CHUNK : n;
        for (int64_t k = c * CHUNK; k < k1; k++) {
            const float *a = Au + (int64_t)su[k] * H;
            const float *b = Ai + (int64_t)si[k] * H;
            /* No dropout multiplies by ones: exact, and one branch-free loop. */
            const float *mk = mask ? mask + k * H : w->ones;
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
}

/* Core of rmf_ncf_batch_grad.  Assumes the embedding part of grad is zero
 * except, possibly, on rows this batch touches: it overwrites those rows
 * and the whole MLP block.  The epoch loop relies on this to avoid a full
 * memset of grad every batch. */
static void ncf_grad_core(ncf_ws *w, const rmf_shape *s, const float *theta,
                          const int32_t *u, const int32_t *i, const float *y,
                          int64_t n, const float *mask, int nt, float *grad,
                          double *loss)
{
    const int D = w->D, H = w->H;
    ncf_layout o = ncf_offsets(s);
    const float *W1 = theta + o.W1;

    group_build(&w->user.g, u, n, w->user.table);
    group_build(&w->item.g, i, n, w->item.table);
    side_gather(&w->user, theta + o.user, D, nt);
    side_gather(&w->item, theta + o.item, D, nt);
    side_forward(&w->user, W1, 0, D, H);
    side_forward(&w->item, W1, D, D, H);

    pair_pass(w, theta, &o, y, n, mask, nt);

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

    side_sum_rows(&w->user, w->rbuf, H, nt);
    side_sum_rows(&w->item, w->rbuf, H, nt);
    side_backward(&w->user, W1, grad + o.W1, 0, D, H);
    side_backward(&w->item, W1, grad + o.W1, D, D, H);
    side_scatter(&w->user, grad + o.user, D, nt);
    side_scatter(&w->item, grad + o.item, D, nt);
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
    if (s->hidden_dim < 1)
        return rmf_fail(err, RMF_ERR_VALUE, "hidden_dim must be >= 1, got %d", (int)s->hidden_dim);
    /* sgemm takes int dimensions; W1 is hidden_dim x 2 emb_dim. */
    if ((int64_t)s->emb_dim * 2 > INT32_MAX / 2)
        return rmf_fail(err, RMF_ERR_VALUE, "emb_dim is too large: %d", (int)s->emb_dim);
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
/* Public: batch gradient                                              */
/* ------------------------------------------------------------------ */

rmf_status rmf_ncf_batch_grad(const rmf_shape *s, const float *theta,
                              const int32_t *u, const int32_t *i,
                              const float *y, int64_t n, const float *mask,
                              int n_threads, float *grad, double *loss,
                              rmf_error *err)
{
    rmf_status st = check_shape(s, err);
    if (st != RMF_OK)
        return st;
    if (n < 1)
        return rmf_fail(err, RMF_ERR_VALUE, "n must be >= 1, got %lld", (long long)n);
    if (theta == NULL || grad == NULL || y == NULL || loss == NULL)
        return rmf_fail(err, RMF_ERR_VALUE, "theta, y, grad and loss must not be NULL");
    if ((st = check_ids(u, n, s->n_users, "u", err)) != RMF_OK)
        return st;
    if ((st = check_ids(i, n, s->n_items, "i", err)) != RMF_OK)
        return st;

    ncf_ws w;
    if ((st = ws_alloc(&w, s, n, err)) != RMF_OK)
        return st;
    int nt = rmf_resolve_threads(n_threads);
    memset(grad, 0, (size_t)rmf_ncf_n_params(s) * sizeof *grad);
    ncf_grad_core(&w, s, theta, u, i, y, n, mask, nt, grad, loss);
    ws_free(&w);
    return RMF_OK;
}

/* ------------------------------------------------------------------ */
/* Training epoch                                                      */
/* ------------------------------------------------------------------ */

/* Dropout keep mask for the rows of one batch: keep with probability 1-p,
 * kept units scaled by 1/(1-p) (PyTorch: noise.bernoulli_(1 - p).div_(1 -
 * p)).  Each 64-bit draw gives four 16-bit uniforms, compared with
 * round((1-p) 2^16): the keep probability is rounded to a multiple of 2^-16
 * (0.9 -> 0.899994), far below a batch's own sampling noise (~4e-4), and
 * the mask costs a quarter of the draws.  Rows come in chunks with their
 * own stream derived from the batch stream (seed, DROPOUT, epoch, batch),
 * so the mask does not depend on threads. */
static void fill_dropout_mask(float *mask, int64_t n, int H, float p,
                              uint64_t seed, uint64_t epoch, uint64_t batch,
                              int nt)
{
    rmf_rng base;
    rmf_rng_seed(&base, seed, rmf_stream_id(RMF_STREAM_DROPOUT, epoch, batch));
    const uint64_t sub = rmf_rng_next(&base);
    const double keep = 1.0 - (double)p;
    const uint64_t thr = (uint64_t)nearbyint(keep * 65536.0);
    const float scale = 1.0f / (float)keep;
    /* A table lookup, not a branch: 10% drops would mispredict often. */
    const float val[2] = {0.0f, scale};
    int64_t n_chunks = (n + CHUNK - 1) / CHUNK;
    OMP(omp parallel for num_threads(nt) schedule(static) if (n_chunks > 1))
    for (int64_t c = 0; c < n_chunks; c++) {
        rmf_rng r;
        rmf_rng_seed(&r, sub, (uint64_t)c);
        int64_t k1 = (c + 1) * CHUNK < n ? (c + 1) * CHUNK : n;
        float *out = mask + c * CHUNK * H;
        int64_t m = (k1 - c * CHUNK) * H;
        int64_t q = 0;
        for (; q + 4 <= m; q += 4) {
            uint64_t x = rmf_rng_next(&r);
            for (int l = 0; l < 4; l++)
                out[q + l] = val[((x >> (16 * l)) & 0xFFFF) < thr];
        }
        uint64_t x = rmf_rng_next(&r);
        for (int l = 0; q < m; q++, l++)
            out[q] = val[((x >> (16 * l)) & 0xFFFF) < thr];
    }
}

/* Lazy Adam (an approximation of PyTorch's dense Adam, opt-in): only the
 * embedding rows a batch touched and the whole MLP are updated; untouched
 * rows skip the step, so their moments do not decay and weight decay does
 * not shrink them.  Rows are gathered into a packed buffer so the same
 * rmf_adam_step does the arithmetic. */
typedef struct {
    float *t, *g, *m, *v;
    int64_t cap_rows;
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

static rmf_status check_csr(const rmf_csr *m, const rmf_shape *s,
                            const char *name, rmf_error *err)
{
    if (m == NULL || m->indptr == NULL)
        return rmf_fail(err, RMF_ERR_VALUE, "%s must be a CSR matrix", name);
    if (m->n_rows != s->n_users || m->n_cols != s->n_items)
        return rmf_fail(err, RMF_ERR_VALUE,
                        "%s is %d x %d but the model has %d users x %d items",
                        name, (int)m->n_rows, (int)m->n_cols,
                        (int)s->n_users, (int)s->n_items);
    if (m->indices == NULL && m->indptr[m->n_rows] > 0)
        return rmf_fail(err, RMF_ERR_VALUE, "%s.indices must not be NULL", name);
    if (m->indptr[0] != 0)
        return rmf_fail(err, RMF_ERR_VALUE, "%s.indptr[0] must be 0", name);
    for (int32_t r = 0; r < m->n_rows; r++)
        if (m->indptr[r + 1] < m->indptr[r])
            return rmf_fail(err, RMF_ERR_VALUE, "%s.indptr decreases at row %d", name, (int)r);
    int64_t nnz = m->indptr[m->n_rows];
    for (int64_t q = 0; q < nnz; q++)
        if (m->indices[q] < 0 || m->indices[q] >= m->n_cols)
            return rmf_fail(err, RMF_ERR_VALUE,
                            "%s.indices[%lld] = %d is out of range [0, %d)", name,
                            (long long)q, (int)m->indices[q], (int)m->n_cols);
    return RMF_OK;
}

static rmf_status check_opt_state(const rmf_opt_state *st, int64_t n_params,
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

rmf_status rmf_ncf_train_epoch(const rmf_train_params *p, const rmf_shape *s,
                               const rmf_csr *train, uint64_t epoch,
                               rmf_opt_state *st, rmf_stop_fn stop,
                               void *stop_ctx, double *loss, int64_t *n_done,
                               rmf_error *err)
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
    if ((status = check_csr(train, s, "train", err)) != RMF_OK)
        return status;
    const ncf_layout o = ncf_offsets(s);
    if ((status = check_opt_state(st, o.n, err)) != RMF_OK)
        return status;
    const int64_t nnz = train->indptr[train->n_rows];
    if (nnz == 0)
        return rmf_fail(err, RMF_ERR_VALUE, "train has no positive pairs");

    const int D = s->emb_dim, H = s->hidden_dim;
    const int nt = rmf_resolve_threads(p->n_threads);
    const int64_t n_neg = p->n_neg;
    const int64_t n_pairs = nnz * (1 + n_neg);
    const int64_t bs = p->batch_size < n_pairs ? p->batch_size : n_pairs;
    const int use_mask = p->dropout > 0.0f;

    int32_t *neg = NULL, *row_of = NULL, *bu = NULL, *bi = NULL;
    int64_t *perm = NULL;
    float *by = NULL, *mask = NULL, *grad = NULL;
    lazy_buf lb = {NULL, NULL, NULL, NULL, 0};
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
    if (use_mask)
        mask = malloc((size_t)(bs * H) * sizeof *mask);
    if (!neg || !row_of || !perm || !bu || !bi || !by || !grad ||
        (use_mask && !mask)) {
        status = rmf_fail(err, RMF_ERR_NOMEM, "out of memory for a NeuralMF epoch of %lld pairs",
                          (long long)n_pairs);
        goto cleanup;
    }
    if (p->lazy_adam) {
        int64_t rows = 2 * bs;
        lb.t = malloc((size_t)(rows * D) * sizeof(float));
        lb.g = malloc((size_t)(rows * D) * sizeof(float));
        lb.m = malloc((size_t)(rows * D) * sizeof(float));
        lb.v = malloc((size_t)(rows * D) * sizeof(float));
        if (!lb.t || !lb.g || !lb.m || !lb.v) {
            status = rmf_fail(err, RMF_ERR_NOMEM, "out of memory for lazy Adam");
            goto cleanup;
        }
    }
    if ((status = ws_alloc(&w, s, bs, err)) != RMF_OK)
        goto cleanup;

    /* Negatives for every positive, then one shuffled order over all
     * pairs: positions [0, nnz) are positives, nnz + p*n_neg + r is the
     * r-th negative of positive p. */
    status = rmf_sample_uniform(train, p->n_neg, p->seed, epoch, nt, neg, err);
    if (status != RMF_OK)
        goto cleanup;
    OMP(omp parallel for num_threads(nt) schedule(dynamic, 256))
    for (int32_t r = 0; r < train->n_rows; r++)
        for (int64_t q = train->indptr[r]; q < train->indptr[r + 1]; q++)
            row_of[q] = r;
    OMP(omp parallel for num_threads(nt) schedule(static))
    for (int64_t q = 0; q < n_pairs; q++)
        perm[q] = q;
    {
        rmf_rng rng;
        rmf_rng_seed(&rng, p->seed, rmf_stream_id(RMF_STREAM_SHUFFLE, epoch, 0));
        rmf_shuffle_i64(&rng, perm, n_pairs);
    }

    blas_saved = rmf_blas_get_threads();
    rmf_blas_set_threads(nt);
    const int64_t n_batches = (n_pairs + bs - 1) / bs;
    for (int64_t b = 0; b < n_batches; b++) {
        if (b > 0 && stop != NULL && stop(stop_ctx)) {
            status = rmf_fail(err, RMF_ERR_INTERRUPTED,
                              "interrupted after %lld of %lld batches",
                              (long long)b, (long long)n_batches);
            goto cleanup;
        }
        const int64_t start = b * bs;
        const int64_t bn = start + bs <= n_pairs ? bs : n_pairs - start;
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
        if (use_mask)
            fill_dropout_mask(mask, bn, H, p->dropout, p->seed, epoch,
                              (uint64_t)b, nt);
        double bl;
        ncf_grad_core(&w, s, st->theta, bu, bi, by, bn, use_mask ? mask : NULL,
                      nt, grad, &bl);
        st->step++;
        if (p->lazy_adam) {
            lazy_rows_step(&p->adam, st->step, st, grad, o.user, w.user.g.ids,
                           w.user.g.n_distinct, D, &lb, nt);
            lazy_rows_step(&p->adam, st->step, st, grad, o.item, w.item.g.ids,
                           w.item.g.n_distinct, D, &lb, nt);
            rmf_adam_step(&p->adam, st->step, st->theta + o.W1, grad + o.W1,
                          st->m + o.W1, st->v + o.W1, o.n - o.W1, nt);
        } else {
            rmf_adam_step(&p->adam, st->step, st->theta, grad, st->m, st->v,
                          o.n, nt);
        }
        side_zero_grad(&w.user, grad + o.user, D, nt);
        side_zero_grad(&w.item, grad + o.item, D, nt);
        total += bl * (double)bn;
        done += bn;
    }
    status = RMF_OK;

cleanup:
    if (blas_saved > 0)
        rmf_blas_set_threads(blas_saved);
    if (loss)
        *loss = done > 0 ? total / (double)done : 0.0;
    if (n_done)
        *n_done = done;
    ws_free(&w);
    free(neg);
    free(row_of);
    free(perm);
    free(bu);
    free(bi);
    free(by);
    free(mask);
    free(grad);
    free(lb.t);
    free(lb.g);
    free(lb.m);
    free(lb.v);
    return status;
}

/* ------------------------------------------------------------------ */
/* Scoring                                                             */
/* ------------------------------------------------------------------ */

/* Eval-mode logit from a user row a = W1u U[u] + b1 and an item row
 * b = W1i I[i]: sum over h in ascending order, so rmf_ncf_score_pairs and
 * rmf_ncf_recommend give bit-identical scores. */
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

    const int D = s->emb_dim, H = s->hidden_dim;
    const ncf_layout o = ncf_offsets(s);
    const float *W1 = theta + o.W1, *b1 = theta + o.b1, *w2 = theta + o.w2;
    const float b2 = theta[o.b2];
    const int nt = rmf_resolve_threads(n_threads);
    const int64_t cap = n < SCORE_CHUNK ? n : SCORE_CHUNK;
    ncf_ws w;
    if ((st = ws_alloc(&w, s, cap, err)) != RMF_OK)
        return st;
    int blas_saved = rmf_blas_get_threads();
    rmf_blas_set_threads(nt);
    for (int64_t c0 = 0; c0 < n; c0 += cap) {
        int64_t cn = c0 + cap <= n ? cap : n - c0;
        group_build(&w.user.g, u + c0, cn, w.user.table);
        group_build(&w.item.g, i + c0, cn, w.item.table);
        side_gather(&w.user, theta + o.user, D, nt);
        side_gather(&w.item, theta + o.item, D, nt);
        side_forward(&w.user, W1, 0, D, H);
        side_forward(&w.item, W1, D, D, H);
        float *A = w.user.A;
        int64_t nu = w.user.g.n_distinct;
        OMP(omp parallel for num_threads(nt) schedule(static) if (nu * H > 65536))
        for (int64_t r = 0; r < nu; r++)
            for (int h = 0; h < H; h++)
                A[r * H + h] += b1[h];
        const int32_t *su = w.user.g.slot_of, *si = w.item.g.slot_of;
        const float *B = w.item.A;
        OMP(omp parallel for num_threads(nt) schedule(static) if (cn > 1024))
        for (int64_t k = 0; k < cn; k++)
            out[c0 + k] = logit_seq(A + (int64_t)su[k] * H,
                                    B + (int64_t)si[k] * H, w2, b2, H);
    }
    rmf_blas_set_threads(blas_saved);
    ws_free(&w);
    return RMF_OK;
}

/* ------------------------------------------------------------------ */
/* Recommend                                                           */
/* ------------------------------------------------------------------ */

/* Register tile of the scoring kernel: RU users x RI items. */
#define RU 4
#define RI 16

/* S[u][i] = sum_h relu(A[u][h] + Bt[h][i]) w2[h] + b2 for RU users and the
 * RI items starting at column i0 (Bt is H x ldb, item-contiguous so the
 * inner loop runs over items and needs no horizontal reduction; the sum
 * over h runs in ascending order exactly as logit_seq does). */
RMF_CLONES
static void score_tile(const float *restrict A, int H,
                       const float *restrict Bt, int64_t ldb, int64_t i0,
                       const float *restrict w2, float b2,
                       float *restrict S, int64_t lds, int n_cols)
{
    float acc[RU][RI];
    for (int q = 0; q < RU; q++)
        for (int l = 0; l < RI; l++)
            acc[q][l] = 0.0f;
    for (int h = 0; h < H; h++) {
        const float *bt = Bt + (int64_t)h * ldb + i0;
        const float wh = w2[h];
        for (int q = 0; q < RU; q++) {
            const float aq = A[(int64_t)q * H + h];
            for (int l = 0; l < RI; l++) {
                float x = aq + bt[l];
                acc[q][l] += (x > 0.0f ? x : 0.0f) * wh;
            }
        }
    }
    /* n_cols < RI on the last tile: its padding columns are not stored. */
    for (int q = 0; q < RU; q++)
        for (int l = 0; l < n_cols; l++)
            S[(int64_t)q * lds + i0 + l] = acc[q][l] + b2;
}

/* Users per recommend block: the block's score matrix (block x n_items
 * floats) stays a few MB however many users are asked for. */
static int64_t block_users(int32_t n_items)
{
    int64_t b = ((int64_t)1 << 20) / (n_items > 0 ? n_items : 1);
    if (b < 64)
        b = 64;
    return (b + RU - 1) / RU * RU;
}

static rmf_status check_recommend_args(const rmf_shape *s, const float *theta,
                                       const int32_t *users, int64_t n,
                                       const rmf_csr *seen, int32_t k,
                                       int32_t *out_items, float *out_scores,
                                       int32_t *out_len, rmf_error *err)
{
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
    return check_ids(users, n, s->n_users, "users", err);
}

rmf_status rmf_ncf_recommend(const rmf_shape *s, const float *theta,
                             const int32_t *users, int64_t n,
                             const rmf_csr *seen, int32_t k, int n_threads,
                             int32_t *out_items, float *out_scores,
                             int32_t *out_len, rmf_error *err)
{
    rmf_status st = check_shape(s, err);
    if (st != RMF_OK)
        return st;
    if ((st = check_recommend_args(s, theta, users, n, seen, k, out_items,
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
     * is n_items wide as rmf_topk_rows expects. */
    const int64_t ldb = (NI + RI - 1) / RI * RI;
    const int64_t nb = block_users(NI);
    const int64_t lds = NI;
    int blas_saved = -1;

    float *Bt = calloc((size_t)(H * ldb), sizeof *Bt);
    float *B = malloc((size_t)((int64_t)NI * H) * sizeof *B);
    float *E = malloc((size_t)(nb * D) * sizeof *E);
    float *A = calloc((size_t)(nb * H), sizeof *A);
    float *S = malloc((size_t)(nb * lds) * sizeof *S);
    if (!Bt || !B || !E || !A || !S) {
        st = rmf_fail(err, RMF_ERR_NOMEM, "out of memory scoring %d items", (int)NI);
        goto cleanup;
    }
    blas_saved = rmf_blas_get_threads();
    rmf_blas_set_threads(nt);
    /* B = I W1i^T once per call, by the same sgemm as score_pairs and
     * training (so scores match rmf_ncf_score_pairs bit for bit), then
     * transposed to Bt (H x n_items) for the item-contiguous kernel. */
    rmf_sgemm(0, 1, NI, H, D, 1.0f, theta + o.item, D, W1 + D, 2 * D, 0.0f,
              B, H);
    OMP(omp parallel for num_threads(nt) schedule(static))
    for (int h = 0; h < H; h++)
        for (int32_t i = 0; i < NI; i++)
            Bt[(int64_t)h * ldb + i] = B[(int64_t)i * H + h];
    for (int64_t u0 = 0; u0 < n && st == RMF_OK; u0 += nb) {
        const int64_t bn = u0 + nb <= n ? nb : n - u0;
        const int64_t bn_pad = (bn + RU - 1) / RU * RU;
        OMP(omp parallel for num_threads(nt) schedule(static))
        for (int64_t r = 0; r < bn; r++)
            memcpy(E + r * D, theta + o.user + (int64_t)users[u0 + r] * D,
                   (size_t)D * sizeof(float));
        /* A = E W1u^T, then + b1 in the (a + b1) + b order of training. */
        rmf_sgemm(0, 1, bn, H, D, 1.0f, E, D, W1, 2 * D, 0.0f, A, H);
        const int64_t n_ut = bn_pad / RU, n_it = ldb / RI;
        OMP(omp parallel num_threads(nt))
        {
            OMP(omp for schedule(static))
            for (int64_t r = 0; r < bn_pad; r++)
                for (int h = 0; h < H; h++)
                    A[r * H + h] = r < bn ? A[r * H + h] + b1[h] : 0.0f;
            /* Item tiles outer: each Bt tile (H x RI) is reused by every
             * user of the block while it sits in L1. */
            OMP(omp for schedule(static))
            for (int64_t it = 0; it < n_it; it++)
                for (int64_t ut = 0; ut < n_ut; ut++)
                    score_tile(A + ut * RU * H, H, Bt, ldb, it * RI, w2, b2,
                               S + ut * RU * lds, lds,
                               (int)(NI - it * RI < RI ? NI - it * RI : RI));
        }
        st = rmf_topk_rows(S, bn, NI, seen, users + u0, k, nt,
                           out_items + u0 * k, out_scores + u0 * k,
                           out_len + u0, err);
    }

cleanup:
    if (blas_saved > 0)
        rmf_blas_set_threads(blas_saved);
    free(Bt);
    free(B);
    free(E);
    free(A);
    free(S);
    return st;
}
