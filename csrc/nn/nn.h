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

#endif /* RECMF_NN_H */
