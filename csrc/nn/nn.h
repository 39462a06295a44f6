/*
 * nn.h -- the network layers the mini-batch models are built from, each
 * with its forward and backward pass:
 *
 *   embedding.c   the distinct rows of one side of a batch (rmf_group), their
 *                 rows gathered from a table, gradients summed per distinct
 *                 row and scattered back;
 *   dense.c       dense layers: products in fixed row parts, one OpenBLAS
 *                 call on one thread each, their weight gradient summed over
 *                 the parts in part order; and exact row-by-row products for
 *                 scoring;
 *   activation.c  ReLU, the dropout draw, and the one-hidden-layer head
 *                 (ReLU, dropout, a linear unit) NeuralMF ends with;
 *   losses        below, inline: BCE with logits and BPR.
 *
 * The threading rule every layer keeps: a result never depends on how many
 * threads compute it.  Work is split by fixed sizes (rows per part, entries
 * per chunk, one thread per output row where rows are summed), never by
 * omp_get_num_threads(); sums run in a fixed order; BLAS is called only as
 * one-thread calls on fixed row parts, between rmf_blas_single_begin/end
 * (OpenBLAS's threaded driver rounds a sum over many rows differently from
 * its one-thread driver).  So a region of nt logical threads may run on
 * fewer (the pacer, the fork fallback: runtime/threads.c) with the same
 * bits, and a model built from these layers trains bit-identically on any
 * n_threads.  Functions documented as orphaned worksharing loops ("omp for
 * nowait") are called inside a caller's parallel region, so several layers
 * share one fork/join; outside a region they run serially.
 */
#ifndef RECMF_NN_H
#define RECMF_NN_H

#include "recmf.h"
#include "runtime/runtime.h"

#include <math.h>

/* ------------------------------------------------------------------ */
/* Embedding: the distinct rows of one side of a batch (embedding.c)  */
/* ------------------------------------------------------------------ */

/* The distinct keys of one side of a batch in first-appearance order
 * (ids), each entry's slot in ids (slot_of), and the entries of each slot,
 * ascending, as a CSR: list[ptr[s] .. ptr[s+1]).  A layer applied to a
 * table row runs once per distinct row, not once per entry: a batch of
 * 4,096 pairs holds ~2,400 distinct users on ML-1M. */
typedef struct {
    int64_t n_distinct;
    int32_t *ids;     /* capacity min(cap_entries, n_keys) */
    int32_t *slot_of; /* capacity cap_entries */
    int64_t *ptr;     /* capacity min(cap_entries, n_keys) + 1 */
    int64_t *list;    /* capacity cap_entries */
    int32_t *table;   /* n_keys: key -> slot while building, -1 otherwise */
} rmf_group;

/* Allocates for up to cap_entries entries with keys in [0, n_keys); 0 when
 * out of memory (g is then still safe to rmf_group_free). */
int rmf_group_alloc(rmf_group *g, int64_t cap_entries, int32_t n_keys);
/* Frees g (fields may be NULL) and zeroes it. */
void rmf_group_free(rmf_group *g);
/* Builds g from keys[0..n), n <= cap_entries, keys in [0, n_keys):
 * sequential, so the first-appearance order never depends on threads. */
void rmf_group_build(rmf_group *g, const int32_t *keys, int64_t n);

/* Forward: E[r] = table[ids[r]] (rows of D floats) for the distinct rows
 * [r0, r1) of g.  Rows picked at random from a table beyond the cache are
 * asked for ahead (rmf_prefetch_row). */
void rmf_emb_gather(const rmf_group *g, const float *table, int D, int64_t r0,
                    int64_t r1, float *E);
/* Backward, step 1: G[s] = the sum of x's rows (H floats) over the
 * entries of slot s, in entry order -- one thread per output row, so no
 * atomics and no dependence on the team.  Orphaned "omp for nowait". */
void rmf_emb_sum_rows(const rmf_group *g, const float *x, int H, float *G);
/* Backward, step 2 (only where a dense gradient is wanted): the rows
 * ids[r] of grad_table (rows of D floats) = rows[r D], r < n.  Orphaned
 * "omp for nowait"; distinct ids, so no write races. */
void rmf_emb_scatter(const int32_t *ids, int64_t n, const float *rows, int D,
                     float *grad_table);

/* ------------------------------------------------------------------ */
/* Dense layers (dense.c)                                             */
/* ------------------------------------------------------------------ */

/* A layer's rows go in this many fixed parts: the unit of a team's BLAS
 * work, whatever the team's size. */
#define RMF_NN_PARTS 4

/* Rows [*r0, *r1) of part `part` of n rows in RMF_NN_PARTS parts. */
static inline void rmf_part_rows(int64_t n, int part, int64_t *r0, int64_t *r1)
{
    *r0 = n * part / RMF_NN_PARTS;
    *r1 = n * (part + 1) / RMF_NN_PARTS;
}

/* Forward: Y (n x out) = X (n x in) W^T, W out x in row-major with leading
 * dimension ldw (a column block of a wider matrix).  Backward to the
 * input: dX (n x in) = dY (n x out) W.  Backward to the weights: dW (out x
 * in, leading dimension in) = dY^T X, zero when n = 0.  Each one OpenBLAS
 * call on the calling thread: call them for fixed row parts between
 * rmf_blas_single_begin/end (a row range is computed exactly as the whole
 * product would be). */
void rmf_dense_forward(const float *X, int64_t n, int in, const float *W,
                       int64_t ldw, int out, float *Y);
void rmf_dense_backward_input(const float *dY, int64_t n, int out,
                              const float *W, int64_t ldw, int in, float *dX);
void rmf_dense_weight_part(const float *dY, const float *X, int64_t n,
                           int out, int in, float *dW);
/* dW[o][:in] (leading dimension ldw) = the sum of the n_parts partial
 * weight gradients parts + p stride (out x in each), in part order.
 * Orphaned "omp for nowait" over the out rows. */
void rmf_dense_sum_parts(const float *parts, int n_parts, int64_t stride,
                         int out, int in, float *dW, int64_t ldw);

/* Scoring computes dense layers with its own loops rather than sgemm:
 * OpenBLAS rounds a product differently depending on the matrix shape and
 * the thread count, and a score must be the same number whichever call
 * computes it. */
/* W^T (cols x rows) of a rows x cols matrix, malloc'd; NULL when out of
 * memory.  The row kernels read W transposed, with unit stride. */
float *rmf_transpose(const float *W, int rows, int cols);
/* y[o] = sum_k x[k] WT[k][o] (+ bias[o]), k ascending, for o < out; bias
 * may be NULL.  The result does not depend on the vector width. */
void rmf_dense_row_exact(const float *x, const float *WT, const float *bias,
                         int in, int out, float *y);
/* rmf_dense_row_exact for rows ids[0..n) of X (rows 0..n-1 when ids is
 * NULL) into Y (n x out).  Orphaned "omp for nowait". */
void rmf_dense_rows_exact(const float *X, const int32_t *ids, int64_t n,
                          const float *WT, const float *bias, int in, int out,
                          float *Y);

/* ------------------------------------------------------------------ */
/* Activations and dropout (activation.c)                             */
/* ------------------------------------------------------------------ */

/* Dropout as PyTorch draws it: keep with probability 1-p, kept units
 * scaled by 1/(1-p).  The masks of a batch come from the stream (seed,
 * RMF_STREAM_DROPOUT, epoch, batch), row k from its chunk's sub-stream
 * k / RMF_DROPOUT_ROWS: they depend on the seed only, never on threads,
 * and are drawn where they are used (no n x H mask array). */
#define RMF_DROPOUT_ROWS 256
typedef struct {
    uint64_t sub;    /* seed of the chunk streams */
    uint32_t hi, lo; /* thr = round((1-p) 2^24) = hi 2^16 + lo */
    float val[2];    /* {dropped, kept} values: a lookup, not a branch */
} rmf_dropout;

rmf_dropout rmf_dropout_setup(float p, uint64_t seed, uint64_t epoch,
                              uint64_t batch);
/* The stream of the rows of chunk c (rows c RMF_DROPOUT_ROWS onwards). */
static inline void rmf_dropout_chunk(rmf_rng *rng, const rmf_dropout *d,
                                     uint64_t c)
{
    rmf_rng_seed(rng, d->sub, c);
}
/* One row of H mask values (0 or 1/(1-p)), the next from rng. */
void rmf_dropout_row(rmf_rng *rng, const rmf_dropout *d, float *row, int H);
/* rmf_dropout_mask (recmf.h) gives the n x H mask a batch draws. */

/* The head of a one-hidden-layer MLP whose first layer arrives as two
 * halves a and b (one per input: W1 [x; y] = W1x x + W1y y): forward
 * r = relu((a + b1) + b) into r, and the logit sum_h (r mk)[h] w2[h] + b2
 * with 8 float lanes (lane = h mod 8) added in a fixed tree -- vectorizable
 * without fast-math and the same at any vector width.  mk is the dropout
 * mask row (ones for none: multiplying by 1 is exact). */
float rmf_mlp_head_forward(const float *a, const float *b, const float *b1,
                           const float *mk, const float *w2, float b2,
                           float *r, int H);
/* Backward from dl = d loss / d logit: dw2 += dl (r mk), r becomes
 * dpre = [r > 0] dl w2 mk (the gradient before the ReLU), db1 += dpre. */
void rmf_mlp_head_backward(float dl, const float *w2, const float *mk,
                           float *r, float *dw2, float *db1, int H);
/* The head in eval mode (no dropout) from a = W1x x + b1 and b = W1y y,
 * summed over h in ascending order: the same float operations as
 * rmf_mlp_head_tile, so a pair scores the same either way. */
static inline float rmf_mlp_head_eval(const float *a, const float *b,
                                      const float *w2, float b2, int H)
{
    float acc = 0.0f;
    for (int h = 0; h < H; h++) {
        float x = a[h] + b[h];
        acc += (x > 0.0f ? x : 0.0f) * w2[h];
    }
    return acc + b2;
}
/* A register tile of rmf_mlp_head_eval: S[q][i0 + l] for RMF_TILE_U rows
 * of A (H floats each) and RMF_TILE_I items starting at column i0 of Bt
 * (H x ldb, item-contiguous: vector lanes run over items, no horizontal
 * reduction); only the first n_cols columns are stored. */
#define RMF_TILE_U 4
#define RMF_TILE_I 16
void rmf_mlp_head_tile(const float *A, int H, const float *Bt, int64_t ldb,
                       int64_t i0, const float *w2, float b2, float *S,
                       int64_t lds, int n_cols);
/* S (row stride lds) = the tiles of n_rows rows of A (read up to whole
 * tiles of RMF_TILE_U rows: A must hold them) against n_cols items of Bt
 * (ldb a multiple of RMF_TILE_I), item tiles outer so each Bt tile is
 * reused by every row while it sits in L1.  An orphaned "omp for" (with
 * its barrier). */
void rmf_mlp_head_scores(const float *A, int64_t n_rows, int H, const float *Bt,
                         int64_t ldb, int32_t n_cols, const float *w2, float b2,
                         float *S, int64_t lds);

/* ------------------------------------------------------------------ */
/* Losses                                                             */
/* ------------------------------------------------------------------ */

static inline double rmf_sigmoid(double z)
{
    if (z >= 0.0)
        return 1.0 / (1.0 + exp(-z));
    double e = exp(z);
    return e / (1.0 + e);
}

/* log(1 + exp(x)) without overflow. */
static inline double rmf_softplus(double x)
{
    return (x > 0.0 ? x : 0.0) + log1p(exp(-fabs(x)));
}

/* Binary cross-entropy of logit z against label y, and *dz = d loss / dz
 * = sigmoid(z) - y, from one exp(-|z|). */
static inline double rmf_bce_logits(double z, double y, double *dz)
{
    double e = exp(-fabs(z));
    double loss = (z > 0.0 ? z : 0.0) - z * y + log1p(e);
    double sig = z >= 0.0 ? 1.0 / (1.0 + e) : e / (1.0 + e);
    *dz = sig - y;
    return loss;
}

/* BPR (Rendle et al., UAI 2009) of a score difference x = s_ui - s_uj:
 * loss = -log sigmoid(x) = softplus(-x), *dx = -sigmoid(-x). */
static inline double rmf_bpr_loss(double x, double *dx)
{
    *dx = -rmf_sigmoid(-x);
    return rmf_softplus(-x);
}


/* ================================================================== */
/* Sequence layers (SASRec): layernorm.c, ffn.c, attention.c,          */
/* softmax_ce.c                                                        */
/* ================================================================== */
/*
 * Layer norm, dense layers and the position-wise feed-forward block,
 * causal multi-head self-attention, the softmax cross-entropy of the next
 * item against an item table (full or over sampled negatives), and dropout
 * masks drawn from counter-based streams.  They keep the rule above in its
 * simplest form: every function works on the rows it is given on the
 * calling thread, BLAS as one-thread calls (the caller holds
 * rmf_blas_single_begin), sums over rows in row order; a model cuts a batch
 * into parts fixed by the data, runs each part on one thread into its own
 * gradient buffers and adds the parts in part order (models/sasrec.c).
 * Row-major float arrays; "accumulate" means += (parameter gradients are
 * summed over rows and calls), "write" means =.
 */

/* Widest row (emb_dim, feed-forward width) the layers take: row scratch
 * lives on the stack. */
#define RMF_SEQ_MAX_DIM 512

/* ------------------------------------------------------------------ */
/* Dropout from counter-based streams                                 */
/* ------------------------------------------------------------------ */
/*
 * Whether unit (row, col) of a dropout site is kept is a pure function of
 * (key, row, col): a hash, not a stream that must be replayed in order.
 * So the backward pass regenerates the forward's mask instead of storing
 * it, any part of the rows can be drawn alone (by any thread, in any
 * order), and a site's mask depends only on the seed, epoch, batch, site
 * and the unit's row in the batch.  The row key is splitmix64 of the
 * site key and row; unit col of the row is kept when
 * fmix32(lo + col * golden) ^ hi < thr, with (lo, hi) the row key's
 * halves and thr = round((1 - p) 2^32): an exact keep probability to
 * 2^-32, one 32-bit multiply pair per unit (vectorizes without 64-bit
 * lane multiplies).  Kept units are scaled by 1/(1-p), as PyTorch.
 */
typedef struct {
    uint64_t key;   /* the site's key: 0 when the site drops nothing */
    uint32_t thr;   /* keep when the unit's 32 bits are below it */
    float scale;    /* 1 / (1 - p) */
} rmf_drop;

/* splitmix64's finaliser (Steele, Lea & Flood 2014). */
static inline uint64_t rmf_mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

/* MurmurHash3's 32-bit finaliser. */
static inline uint32_t rmf_mix32(uint32_t h)
{
    h ^= h >> 16;
    h *= 0x85EBCA6Bu;
    h ^= h >> 13;
    h *= 0xC2B2AE35u;
    h ^= h >> 16;
    return h;
}

/* The site `site` of batch `batch` of epoch `epoch`: p in [0, 1); p == 0
 * gives key 0 (nothing dropped, nothing drawn). */
rmf_drop rmf_drop_site(float p, uint64_t seed, uint64_t epoch, uint64_t batch,
                       uint64_t site);

/* The 32 bits of unit col of a row whose key is rk. */
static inline uint32_t rmf_drop_bits(uint64_t rk, uint32_t col)
{
    return rmf_mix32((uint32_t)rk + col * 0x9E3779B9u) ^ (uint32_t)(rk >> 32);
}
static inline uint64_t rmf_drop_row_key(const rmf_drop *d, uint64_t row)
{
    return rmf_mix64(d->key + (row + 1) * 0x9E3779B97F4A7C15ULL);
}

/* x[r * ldx + c] *= mask(row0 + r, c) for r < n_rows, c < n_cols: units
 * dropped become 0, kept ones are scaled.  The same call on a gradient is
 * the backward.  Nothing when d->key == 0. */
void rmf_drop_apply(const rmf_drop *d, uint64_t row0, float *x, int64_t n_rows,
                    int n_cols, int64_t ldx);
/* keep[c] = 1 when unit (row, c) is kept, c < n_cols (d->key != 0). */
void rmf_drop_keep(const rmf_drop *d, uint64_t row, uint8_t *keep, int n_cols);
/* The mask itself (0 or scale) for tests: out is n_rows x n_cols. */
void rmf_drop_mask(const rmf_drop *d, uint64_t row0, int64_t n_rows, int n_cols,
                   float *out);

/* ------------------------------------------------------------------ */
/* Layer norm (layernorm.c): Ba, Kiros & Hinton 2016                  */
/* ------------------------------------------------------------------ */

/* y = (x - mean) / sqrt(var + eps) * gamma + beta per row of d (var the
 * biased variance, as torch.nn.LayerNorm); stats (2 n floats) receives
 * each row's mean and 1/sqrt(var + eps) for the backward. */
void rmf_layernorm_forward(const float *x, int64_t n, int d, const float *gamma,
                           const float *beta, float eps, float *y, float *stats);
/* dx (written) from dy, and dgamma, dbeta accumulated. */
void rmf_layernorm_backward(const float *x, const float *dy, int64_t n, int d,
                            const float *gamma, const float *stats, float *dx,
                            float *dgamma, float *dbeta);

/* ------------------------------------------------------------------ */
/* Dense layers and the feed-forward block (ffn.c)                    */
/* ------------------------------------------------------------------ */

/* y = x W^T + b (b may be NULL): x n x d_in (row stride ldx), W d_out x
 * d_in, y n x d_out (row stride ldy), written. */
void rmf_linear_forward(const float *x, int64_t ldx, int64_t n, int d_in,
                        const float *W, const float *b, int d_out, float *y,
                        int64_t ldy);
/* From dy (n x d_out, stride lddy): dx = dy W (written, or added when
 * dx_add; skipped when dx is NULL), dW += dy^T x, db += column sums of dy
 * (db may be NULL). */
void rmf_linear_backward(const float *x, int64_t ldx, int64_t n, int d_in,
                         const float *W, int d_out, const float *dy,
                         int64_t lddy, float *dx, int64_t lddx, int dx_add,
                         float *dW, float *db);

/* The SASRec feed-forward block with its residual:
 *   y = f + drop2(W2 drop1(relu(W1 f + b1)) + b2),  W1 dff x d, W2 d x dff.
 * Rows are rows row0.. of the batch (the dropout masks' rows).  hid (n x
 * dff) keeps relu(W1 f + b1) for the backward. */
typedef struct {
    const float *W1, *b1, *W2, *b2;
    float *dW1, *db1, *dW2, *db2; /* accumulated by the backward */
    int d, dff;
    rmf_drop drop1, drop2;
} rmf_ffn;
void rmf_ffn_forward(const rmf_ffn *f, const float *x, int64_t n, uint64_t row0,
                     float *hid, float *y);
/* dx (written) from dy; scratch: n x (d + dff) floats. */
void rmf_ffn_backward(const rmf_ffn *f, const float *x, int64_t n, uint64_t row0,
                      float *hid, const float *dy, float *dx, float *scratch);

/* ------------------------------------------------------------------ */
/* Causal multi-head self-attention (attention.c)                     */
/* ------------------------------------------------------------------ */
/*
 * One sequence of n tokens: qkv is n x 3d (row stride 3d) holding Q, K, V
 * side by side; head h uses columns [h dh, (h+1) dh) of each, dh = d / H.
 * P_h = softmax(Q_h K_h^T / sqrt(dh)) with token i seeing tokens j <= i;
 * out_h = drop(P_h) V_h, written into columns [h dh, (h+1) dh) of out
 * (n x d).  probs (H n n floats) keeps P for the backward: row i is
 * valid up to the end of its block of query rows (0 past i), the rest is
 * scratch.  The dropout rows of head h, query i are (row0 + i) H + h.
 * Scratch: rmf_attention_scratch(n) floats, either pass.
 */
void rmf_attention_forward(const float *qkv, int n, int d, int H,
                           const rmf_drop *drop, uint64_t row0, float *probs,
                           float *out, float *scratch);
int64_t rmf_attention_scratch(int n);
/* dqkv (n x 3d, written) from dout (n x d). */
void rmf_attention_backward(const float *qkv, int n, int d, int H,
                            const rmf_drop *drop, uint64_t row0,
                            const float *probs, const float *dout,
                            float *dqkv, float *scratch);

/* ------------------------------------------------------------------ */
/* Softmax cross-entropy of the next item (softmax_ce.c)              */
/* ------------------------------------------------------------------ */
/*
 * Rows h (n x d) against the item table E (n_items x d); row r's target
 * is target[r].  Full softmax: loss_r = logsumexp_j(h_r . E_j) - h_r .
 * E_target, computed RMF_CE_CHUNK rows at a time so the n x n_items logits
 * never exist at once.  Sampled: the candidates are the target and the
 * shared negatives neg[0..n_neg), a negative masked out (-inf) for row r
 * when it is among the items of row r's sequence (own).  Both write
 * dh = scale d loss / d h and accumulate dE += scale d loss / d E, and
 * return the sum of the rows' losses (double).
 */
#define RMF_CE_CHUNK 128

/* Scratch floats rmf_softmax_ce needs for n_items candidates. */
int64_t rmf_softmax_ce_scratch(int32_t n_items);
double rmf_softmax_ce(const float *h, int64_t n, int d, const float *E,
                      int32_t n_items, const int32_t *target, float scale,
                      float *dh, float *dE, float *scratch);

/* Sampled form.  negmask (n_seq x n_neg bytes, 1 = masked) gives each
 * sequence's masked negatives, seq_of_row[r] the row's sequence; Eneg
 * (n_neg x d) holds the negatives' rows of E, dEneg (n_neg x d) and dE
 * receive the gradient (accumulated): row r's target's gradient goes to
 * row target_slot[r] of dE (target[r] when target_slot is NULL: a model
 * may keep the batch's item gradients by slot instead of by item).
 * Scratch: rmf_sampled_ce_scratch(n_neg) floats. */
int64_t rmf_sampled_ce_scratch(int32_t n_neg);
double rmf_sampled_ce(const float *h, int64_t n, int d, const float *E,
                      const int32_t *target, const int32_t *target_slot,
                      const float *Eneg, int32_t n_neg, const uint8_t *negmask,
                      const int32_t *seq_of_row, float scale, float *dh,
                      float *dE, float *dEneg, float *scratch);

/* Reductions in 8 lanes (lane = index mod 8) combined in a fixed tree:
 * the same result at any vector width.  Generic vectors keep the lanes in
 * registers (the plain-array form is not vectorized).  n >= 1 for max. */
/* The max of a vector max's lanes t[0..lanes) and of the tail x[i..n)
 * (a max is exact: any order gives the same value). */
static inline float rmf_max_finish_(const float *t, int lanes, const float *x, int64_t i,
                                    int64_t n)
{
    float r = t[0];
    for (int k = 1; k < lanes; k++)
        r = t[k] > r ? t[k] : r;
    for (; i < n; i++)
        r = x[i] > r ? x[i] : r;
    return r;
}

#if defined(__GNUC__)
typedef float rmf_v8f_ __attribute__((vector_size(32)));
typedef int32_t rmf_v8i_ __attribute__((vector_size(32)));
/* (a pointer: a vector argument would change the ABI between clones) */
static inline float rmf_lanes_tree_(const void *acc)
{
    float l[8];
    memcpy(l, acc, sizeof l);
    return ((l[0] + l[4]) + (l[2] + l[6])) + ((l[1] + l[5]) + (l[3] + l[7]));
}
static inline float rmf_sum_lanes(const float *x, int64_t n)
{
    rmf_v8f_ acc = {0, 0, 0, 0, 0, 0, 0, 0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        rmf_v8f_ a;
        memcpy(&a, x + i, sizeof a);
        acc += a;
    }
    float t[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    memcpy(t, x + i, (size_t)(n - i) * sizeof *x);
    rmf_v8f_ a;
    memcpy(&a, t, sizeof a);
    acc += a;
    return rmf_lanes_tree_(&acc);
}
static inline float rmf_max_lanes(const float *x, int64_t n)
{
    rmf_v8f_ m;
    float t[8];
    for (int k = 0; k < 8; k++)
        t[k] = x[0];
    memcpy(&m, t, sizeof m);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        rmf_v8f_ a;
        memcpy(&a, x + i, sizeof a);
        const rmf_v8i_ gt = a > m;
        m = (rmf_v8f_)(((rmf_v8i_)a & gt) | ((rmf_v8i_)m & ~gt));
    }
    memcpy(t, &m, sizeof t);
    return rmf_max_finish_(t, 8, x, i, n);
}
#else
static inline float rmf_sum_lanes(const float *x, int64_t n)
{
    float l[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; k++)
            l[k] += x[i + k];
    for (int k = 0; i < n; i++, k++)
        l[k] += x[i];
    return ((l[0] + l[4]) + (l[2] + l[6])) + ((l[1] + l[5]) + (l[3] + l[7]));
}
static inline float rmf_max_lanes(const float *x, int64_t n)
{
    float r = x[0];
    for (int64_t i = 1; i < n; i++)
        r = x[i] > r ? x[i] : r;
    return r;
}
#endif

/* x[i] = exp(x[i] - shift) for i < n, returning their sum in 32 lanes
 * (lane = index mod 32) combined in a fixed tree: the softmax's middle pass
 * in one sweep. */
float rmf_exp_shift_sum(float *x, int64_t n, float shift);

/* exp of every x[0..n) in place (our vector form: libm's expf does not
 * vectorize without -ffast-math); within 2 ulp of expf, the same bits at
 * every vector width. */
void rmf_exp_inplace(float *x, int64_t n);


#endif /* RECMF_NN_H */
