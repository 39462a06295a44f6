/*
 * recmf.h -- what the glue (py/) needs of the recmf C core: status codes,
 * the data core's entry points, top-k and metrics, the models' shapes,
 * parameters and table.  What the core's parts share beyond that sits in a
 * header beside them: runtime/runtime.h, data/data.h, rank/rank.h,
 * optim/optim.h, train/train.h.
 *
 * The core is plain C11 and never includes Python.h: py/ is the only
 * folder that talks to CPython/NumPy.  Conventions every file follows:
 *
 *   - The caller owns memory.  Inputs and outputs are borrowed pointers
 *     (NumPy arrays in practice); scratch memory is malloc/free'd here.
 *   - Every fallible function returns an rmf_status and, on failure, writes
 *     a one-line message naming the bad argument into *err (may be NULL).
 *     The core never prints, never exits, never aborts.
 *   - int64_t for offsets and counts, int32_t for dense ids, float for
 *     weights, double for accumulated losses and metrics.
 *   - Randomness comes from rmf_rng streams keyed by (seed, stream id), so a
 *     result depends only on the seed, never on which thread ran which shard.
 *   - BLAS (through RMF_BLAS) is never called inside an OpenMP region.
 */
#ifndef RECMF_H
#define RECMF_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------ */
/* Status and errors (runtime/errors.c)                               */
/* ------------------------------------------------------------------ */

typedef enum {
    RMF_OK = 0,
    RMF_ERR_NOMEM,       /* malloc failed                                 */
    RMF_ERR_VALUE,       /* a bad argument; the message names it         */
    RMF_ERR_PARSE,       /* malformed text input; the message has a line  */
    RMF_ERR_SATURATED,   /* a user has no candidate negative left         */
    RMF_ERR_INTERRUPTED  /* the stop callback asked to stop               */
} rmf_status;

#define RMF_ERR_MSG_LEN 256
typedef struct {
    char msg[RMF_ERR_MSG_LEN];
    /* The dense row (user index) a failure is about, so the caller can name
     * the user's original id; -1 (never a row) when it is about none.  Set
     * by every rmf_fail / rmf_fail_row. */
    int64_t row;
} rmf_error;

/* Formats a message into err (if non-NULL) and returns status. */
rmf_status rmf_fail(rmf_error *err, rmf_status status, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* rmf_fail for a failure about dense row `row` (>= 0): also sets err->row. */
rmf_status rmf_fail_row(rmf_error *err, rmf_status status, int64_t row, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 4, 5)))
#endif
    ;

/* Called between training batches; a non-zero return stops training after
 * the current batch with RMF_ERR_INTERRUPTED (weights stay consistent). */
typedef int (*rmf_stop_fn)(void *ctx);

/* ------------------------------------------------------------------ */
/* Stopping long calls (runtime/stop.c)                               */
/* ------------------------------------------------------------------ */

/* One call's stop context: fn(ctx) is asked, on the calling thread, after
 * a SIGINT (rmf_stop_signal); non-zero stops the call. */
typedef struct rmf_stop {
    rmf_stop_fn fn;
    void *ctx;
    _Atomic int stopped;
    struct rmf_stop *prev;
} rmf_stop;

/* Around a call, on its thread (the glue's RMF_NOGIL): fn may be NULL (the
 * call cannot be stopped).  end returns 1 when the call was stopped. */
void rmf_stop_begin(rmf_stop *s, rmf_stop_fn fn, void *ctx);
int rmf_stop_end(rmf_stop *s);
/* A SIGINT arrived (async-signal-safe; the glue's handler calls it). */
void rmf_stop_signal(void);
/* (The core's loops poll with rmf_stopping, runtime/runtime.h.)  Test hooks: the calling thread's next call raises SIGINT itself at its
 * poll-th poll (counted on the calling thread; 0 never), and how many
 * polls it has made since. */
void rmf_stop_interrupt_at(int64_t poll);
int64_t rmf_stop_polls(void);

/* ------------------------------------------------------------------ */
/* Threads (runtime/threads.c)                                        */
/* ------------------------------------------------------------------ */

/* Number of threads a call works with for a requested count (<= 0 means
 * "all cores"; at most max(256, cores)); 1 when built without OpenMP.  This is the logical count:
 * it fixes how work and BLAS jobs are split, so results do not depend on
 * how many threads a region really gets (rmf_team_size). */
int rmf_resolve_threads(int requested);
/* 1 when the core was compiled with OpenMP. */
int rmf_has_openmp(void);
/* The file of the shared library that defines the function at fn, as the
 * dynamic loader found it, or NULL (build_info names the OpenBLAS and the
 * OpenMP runtime the core really runs on: a wheel's own copies, not another
 * package's).  rmf_openmp_library: NULL without OpenMP. */
const char *rmf_library_of(const void *fn);
const char *rmf_openmp_library(void);

/* Test hooks for the pacer that picks a training loop's team size batch
 * by batch (threads.c).  force: 0 measures (the default), 1 runs every
 * batch on one thread, 2 alternates one thread and the full team, 3
 * always takes the full team.  trace
 * runs the pacer's choice over n batches whose seconds per batch are
 * cost_one[b] on one thread and cost_full[b] on nt, writing each batch's
 * team size to sizes[b]. */
void rmf_pacer_force(int mode);
void rmf_pacer_trace(int nt, int64_t n, const double *cost_one,
                     const double *cost_full, int32_t *sizes);
/* Registers the fork handlers (once; called at import).  Before fork() in
 * a process whose OpenMP teams were used, the forking thread's thread pool
 * is released (omp_pause_resource_all), so the child starts a fresh one;
 * where that is refused, the child runs every region on one thread
 * (rmf_team_size) while BLAS jobs keep their split (blas.c).  0 on
 * success. */
int rmf_runtime_init(void);
/* Fork facts for build_info and tests: bit 0 = this process is a child of
 * fork() made after recmf used its threads; bit 1 = regions run on one
 * thread here (the pool could not be released). */
int rmf_fork_state(void);
/* 1 once after the first region that rmf_team_size shrank because of a
 * fork, else 0: the glue turns it into one warning. */
int rmf_fork_fallback_notice(void);
/* Test hook: 0 makes the fork handler skip the pool release (as if the
 * OpenMP runtime refused it), to exercise the one-thread fallback. */
void rmf_fork_set_release(int on);
/* Around every call into the core from a thread of its own (the glue does
 * it): fork() in another thread waits until no call is in flight, so the
 * child never inherits a lock that OpenBLAS or OpenMP holds for a thread
 * it does not have.  Calls that start during a fork wait for it. */
void rmf_work_begin(void);
void rmf_work_end(void);

/* ------------------------------------------------------------------ */
/* Floating-point state (runtime/fpstate.c): see runtime/runtime.h    */
/* ------------------------------------------------------------------ */

/* 1 where the mode can be set (x86 with SSE, AArch64). */
int rmf_fp_supported(void);
/* The calling thread's mode: bit 0 = results flushed (FTZ / FZ), bit 1 =
 * inputs flushed (DAZ / FZ). */
int rmf_fp_mode(void);
/* Test hook: sets the calling thread's mode bits (as rmf_fp_mode). */
void rmf_fp_set_mode(int mode);
/* Process-wide switch (default 0): 1 keeps IEEE subnormals in recmf's
 * compute too, for results bit for bit as without flushing. */
void rmf_fp_set_exact(int exact);
int rmf_fp_get_exact(void);

/* Test hooks.  probe_recmf does what fit does (rmf_blas_enter(nt), a
 * region, one sgemm C = A B of m x k and k x n row-major floats, or none
 * when a dimension is 0) and writes the mode of team thread t to modes[t]
 * (-1 when the team had no thread t; nt entries) and the calling thread's
 * to *caller_mode.  probe_plain runs a region that is not recmf's. */
void rmf_fp_probe_recmf(int nt, int32_t *modes, int32_t *caller_mode,
                        int64_t m, int64_t n, int64_t k, const float *a,
                        const float *b, float *c);
void rmf_fp_probe_plain(int nt, int32_t *modes);

/* ------------------------------------------------------------------ */
/* Text parsing (data/parse.c)                                        */
/* ------------------------------------------------------------------ */

/* Upper bound on the number of data rows in buf (count of line ends + 1). */
int64_t rmf_count_lines(const char *buf, int64_t len);

/* Parses "user SEP item SEP rating SEP timestamp" lines (any separator
 * string; LF or CRLF endings; lines of blanks skipped; the first skip_header
 * lines skipped).  Fields may be in double quotes and have blanks (space,
 * tab: unless the separator) around them, as pandas reads them.  Extra
 * trailing fields are an error.  Writes at most cap rows and the row count
 * to *n_rows. */
rmf_status rmf_parse_ratings(const char *buf, int64_t len, const char *sep,
                             int64_t skip_header, int64_t cap,
                             int64_t *user, int64_t *item, double *rating,
                             int64_t *timestamp, int64_t *n_rows,
                             rmf_error *err);

/* ------------------------------------------------------------------ */
/* Per-user temporal split (data/split.c)                             */
/* ------------------------------------------------------------------ */

enum { RMF_PART_TRAIN = 0, RMF_PART_VAL = 1, RMF_PART_TEST = 2 };

/* order[0..n): row positions sorted stably by (user, time), exactly as
 * pandas' sort_values(["user", "time"]).  part[k] is the part of row
 * order[k]: users with fewer than min_train + n_val + n_test rows go to
 * train; otherwise their last n_test rows go to test and the n_val before
 * them to val. */
rmf_status rmf_temporal_split(const int64_t *user, const int64_t *time,
                              int64_t n, int64_t n_val, int64_t n_test,
                              int64_t min_train, int64_t *order,
                              int8_t *part, rmf_error *err);

/* ------------------------------------------------------------------ */
/* Index: factorization and CSR (data/index.c)                        */
/* ------------------------------------------------------------------ */

/* A user x item 0/1 matrix: row u holds sorted, distinct item indices
 * indices[indptr[u] .. indptr[u+1]). */
typedef struct {
    const int64_t *indptr; /* n_rows + 1 */
    const int32_t *indices;
    int32_t n_rows;
    int32_t n_cols;
} rmf_csr;

/* codes[r] = rank of ids[r] among the distinct ids, ascending; uniques
 * (capacity n) receives the distinct ids ascending, *n_unique their count.
 * Fails if there are more than INT32_MAX distinct ids. */
rmf_status rmf_factorize(const int64_t *ids, int64_t n, int32_t *codes,
                         int64_t *uniques, int64_t *n_unique, rmf_error *err);

/* Builds a CSR of (rows[r], cols[r]) pairs; duplicated pairs are kept once.
 * indptr has n_rows + 1 entries, indices capacity n; *nnz receives the
 * number of distinct pairs. */
rmf_status rmf_build_csr(const int32_t *rows, const int32_t *cols, int64_t n,
                         int32_t n_rows, int32_t n_cols, int64_t *indptr,
                         int32_t *indices, int64_t *nnz, rmf_error *err);

/* ------------------------------------------------------------------ */
/* Popularity (data/popularity.c)                                     */
/* ------------------------------------------------------------------ */

/* counts[i] = number of rows of m (checked to be sound) holding item i. */
rmf_status rmf_item_counts(const rmf_csr *m, int64_t *counts, rmf_error *err);

/* order[0..n_items): item indices by descending count, ties by lower
 * index first. */
rmf_status rmf_popularity_order(const int64_t *counts, int32_t n_items,
                                int32_t *order, rmf_error *err);

/* ------------------------------------------------------------------ */
/* Negative sampling (data/sample.c)                                  */
/* ------------------------------------------------------------------ */

/* Uniform negatives: for positive p (CSR order, row u), out[p * n_neg + r]
 * is an item drawn uniformly from [0, n_cols), redrawn while it is a
 * positive of u.  Positives are cut into fixed shards with their own RNG
 * stream (seed, epoch, shard), so the result depends only on (seed, epoch),
 * never on n_threads.  A user whose row holds every item gives
 * RMF_ERR_SATURATED naming the user index (also in err->row). */
rmf_status rmf_sample_uniform(const rmf_csr *m, int32_t n_neg, uint64_t seed,
                              uint64_t epoch, int n_threads, int32_t *out,
                              rmf_error *err);

/* Popular-hard triplets: (u, i) drawn uniformly with replacement from the
 * positives of m; j drawn uniformly from candidates[0..n_cand), redrawn
 * while it is a positive of u.  A user holding every candidate gives
 * RMF_ERR_SATURATED (err->row: that user).  Same sharding/determinism as
 * above. */
rmf_status rmf_sample_triplets(const rmf_csr *m, const int32_t *candidates,
                               int32_t n_cand, int64_t n_triplets,
                               uint64_t seed, uint64_t epoch, int n_threads,
                               int32_t *u_out, int32_t *i_out, int32_t *j_out,
                               rmf_error *err);

/* ------------------------------------------------------------------ */
/* Top-K selection (rank/topk.c)                                      */
/* ------------------------------------------------------------------ */

/* For each row r of scores (n_rows x n_cols, row-major) pick the k best
 * columns, best first (higher score first, ties by lower column; NaN ranks
 * below everything), skipping the columns of seen row seen_rows[r] when
 * seen != NULL and seen_rows[r] >= 0.  out_items/out_scores are
 * n_rows x k; out_len[r] is how many were filled (< k when too few
 * columns remain); unfilled slots get -1 / -inf. */
rmf_status rmf_topk_rows(const float *scores, int64_t n_rows, int32_t n_cols,
                         const rmf_csr *seen, const int32_t *seen_rows,
                         int32_t k, int n_threads, int32_t *out_items,
                         float *out_scores, int32_t *out_len,
                         rmf_error *err);

/* Same rule for a fixed ranking (best first) shared by every row:
 * popularity recommendation. */
rmf_status rmf_topk_ranked(const int32_t *ranking, int32_t n_rank,
                           const rmf_csr *seen, const int32_t *users,
                           int64_t n_users, int32_t k, int32_t *out_items,
                           int32_t *out_len, rmf_error *err);

/* ------------------------------------------------------------------ */
/* Item transitions (models/transition.c)                             */
/* ------------------------------------------------------------------ */

/* Each user's positives in time order: row u is items[indptr[u] ..
 * indptr[u+1]), oldest first (NOT sorted by item, unlike rmf_csr).  The
 * age of entry q of row u is the number of entries after it
 * (indptr[u+1] - 1 - q): 0 for the most recent positive. */
typedef struct {
    const int64_t *indptr; /* n_users + 1 */
    const int32_t *items;
    int32_t n_users;
    int32_t n_items;
} rmf_seq;

/* indptr starts at 0 and never decreases; items in [0, n_items). */
rmf_status rmf_check_seq(const rmf_seq *h, rmf_error *err);

/* Largest window rmf_transition_counts accepts. */
#define RMF_TRANSITION_MAX_WINDOW 64

/* Number of (i, j) pairs with j at most `window` entries after i in a row
 * of h: the capacity rmf_transition_counts needs for its outputs. */
int64_t rmf_transition_capacity(const rmf_seq *h, int32_t window);

/* Transition weights: W(i, j) = sum over rows of h and over the places
 * where item j comes g entries after item i (1 <= g <= window) of
 * gap_decay^(g - 1).  window = 1 counts how often j directly follows i (a
 * first-order Markov chain).  An n_items x n_items CSR with sorted
 * columns: out_indptr (n_items + 1), out_indices/out_weights (capacity
 * rmf_transition_capacity(h, window)); *nnz receives the number of
 * distinct pairs.  window in [1, RMF_TRANSITION_MAX_WINDOW], gap_decay in
 * (0, 1].  Each weight is summed in gap order: results do not depend on
 * n_threads. */
rmf_status rmf_transition_counts(const rmf_seq *h, int32_t window, double gap_decay,
                                 int n_threads, int64_t *out_indptr, int32_t *out_indices,
                                 double *out_weights, int64_t *nnz, rmf_error *err);

/* out (n x n_items, row-major): for user users[r],
 * out[r][j] = sum over the user's positives i at age a of
 * 2^(-a / half_life) * probs[T(i, j)], where trans (n_items x n_items,
 * sorted columns) holds the structure of T and probs its values.
 * half_life > 0; INFINITY weighs every positive 1.  Each row is summed by
 * one thread in a fixed order: results do not depend on n_threads. */
rmf_status rmf_transition_scores(const rmf_csr *trans, const float *probs, const rmf_seq *h,
                                 const int32_t *users, int64_t n, double half_life,
                                 int n_threads, float *out, rmf_error *err);

/* Top-k of those rows (rules and outputs of rmf_topk_rows); seen may be
 * NULL, else n_users x n_items. */
rmf_status rmf_transition_recommend(const rmf_csr *trans, const float *probs, const rmf_seq *h,
                                    const int32_t *users, int64_t n, double half_life,
                                    const rmf_csr *seen, int32_t k, int n_threads,
                                    int32_t *out_items, float *out_scores, int32_t *out_len,
                                    rmf_error *err);

/* ------------------------------------------------------------------ */
/* EASE (models/ease.c): closed-form item-item model, Steck WWW 2019  */
/* ------------------------------------------------------------------ */

/* Upper triangle (j >= i, row-major) of X^T X for the 0/1 matrix x into
 * G (n_cols x n_cols); the strict lower triangle is zeroed. */
rmf_status rmf_ease_gram_upper(const rmf_csr *x, int n_threads, float *G,
                               rmf_error *err);

/* B (x->n_cols squared, row-major, caller-owned: all the fit needs besides
 * O(nnz) scratch, so callers check n_cols^2 floats fit before allocating)
 * = I - P diag(1/diag(P)),
 * P = (X^T X + l2 I)^-1, diag(B) = 0: B[i][j] is how much a history
 * holding item i raises item j's score.  float32 Cholesky (potrf/potri);
 * l2 must be finite and > 0 and x non-empty (RMF_ERR_VALUE otherwise, also
 * when float32 finds the matrix not positive definite). */
rmf_status rmf_ease_fit(const rmf_csr *x, float l2, int n_threads, float *B,
                        rmf_error *err);

/* Top-k of s = sum_q w_q B[item_q, :] over row rows[r] of hist (w from
 * weights, aligned with hist->indices, or 1 when weights is NULL), for
 * r in [0, n), in blocks of users; seen/seen_rows as rmf_topk_rows.  Out
 * as rmf_topk_rows. */
rmf_status rmf_ease_recommend(const float *B, int32_t n_items,
                              const rmf_csr *hist, const float *weights,
                              const int32_t *rows, int64_t n,
                              const rmf_csr *seen, const int32_t *seen_rows,
                              int32_t k, int n_threads, int32_t *out_items,
                              float *out_scores, int32_t *out_len,
                              rmf_error *err);

/* ------------------------------------------------------------------ */
/* SLIST (models/slist.c): Choi et al., WWW 2021, on users' sequences  */
/* ------------------------------------------------------------------ */

typedef struct {
    double alpha;          /* weight of X^T X (SLIS) against S's terms (SLIT), [0, 1] */
    double l2;             /* ridge on B, finite and > 0 */
    double position_decay; /* r = exp(-1 / position_decay) per place; INFINITY: 1 */
    int32_t window;        /* items S and T hold on each side of a place, >= 1 */
} rmf_slist_params;

/* RMF_OK, or RMF_ERR_VALUE naming the bad field. */
rmf_status rmf_slist_check_params(const rmf_slist_params *p, rmf_error *err);

/* B = (alpha X^T X + (1 - alpha) S^T S + l2 I)^-1 (alpha X^T X + (1 - alpha)
 * S^T T) from the sequences h (each row one session, oldest first, items
 * distinct within a row): X's rows are the sessions with entry q weighing
 * x_weights[q] (NULL: 1), S and T the prefix/suffix rows of every place
 * (see slist.c).  B and A are caller-owned n_items x n_items float32
 * row-major buffers; A is scratch (its upper triangle ends as the Cholesky
 * factor).  Results do not depend on n_threads up to BLAS rounding. */
rmf_status rmf_slist_fit(const rmf_seq *h, const float *x_weights, const rmf_slist_params *p,
                         int n_threads, float *B, float *A, rmf_error *err);

/* ------------------------------------------------------------------ */
/* Metrics (rank/metrics.c)                                           */
/* ------------------------------------------------------------------ */

/* Per-user ranking metrics (SPEC section 9).  recs is n_users x k of item
 * ids with rec_len[u] valid entries; the relevant items of user u are
 * rel_items[rel_indptr[u] .. rel_indptr[u+1]), sorted ascending, distinct.
 * Users with no relevant item or an empty list are skipped: their row of
 * per_user (n_users x 4: recall, ndcg, mrr, hit) is NaN.  means[0..4) gets
 * the means over evaluated users and *n_eval their count. */
rmf_status rmf_ranking_metrics(const int64_t *recs, const int32_t *rec_len,
                               int64_t n_users, int32_t k,
                               const int64_t *rel_indptr,
                               const int64_t *rel_items, double *per_user,
                               double *means, int64_t *n_eval,
                               rmf_error *err);

/* coverage = |distinct recommended ids that are in the catalogue| /
 * n_catalog: catalog[0..n_catalog) sorted ascending and distinct, n_catalog
 * >= 1; a recommended id outside it covers nothing (coverage <= 1).
 * avg_pop = mean over all (row, slot) recommendations of the item's
 * popularity (pop_ids sorted ascending and distinct, with pop_values; 0 when
 * an id is absent; NaN when there is no recommendation).  *n_pairs gets the
 * number of recommendations averaged. */
rmf_status rmf_coverage_popularity(const int64_t *recs, const int32_t *rec_len,
                                   int64_t n_rows, int32_t k,
                                   const int64_t *catalog, int64_t n_catalog,
                                   const int64_t *pop_ids, const double *pop_values,
                                   int64_t n_pop, double *coverage, double *avg_pop,
                                   int64_t *n_pairs, rmf_error *err);

/* ------------------------------------------------------------------ */
/* Optimisation (optim/adam.c)                                        */
/* ------------------------------------------------------------------ */

typedef struct {
    float lr;           /* 1e-3 */
    float beta1;        /* 0.9 */
    float beta2;        /* 0.999 */
    float eps;          /* 1e-8 */
    float weight_decay; /* 1e-6, L2 added to the gradient (not AdamW) */
} rmf_adam_params;

void rmf_adam_default_params(rmf_adam_params *p);
const char *rmf_adam_check_params(const rmf_adam_params *p);
/* RMF_OK when p is valid and step >= 1 (rmf_adam_step's contract), else
 * RMF_ERR_VALUE naming the bad value. */
rmf_status rmf_adam_check_step(const rmf_adam_params *p, int64_t step,
                               rmf_error *err);

/* One PyTorch-equivalent Adam step (torch.optim.Adam, amsgrad=False,
 * maximize=False) over theta[0..n): step is the 1-based step count after
 * this update.  g is the gradient without weight decay. */
void rmf_adam_step(const rmf_adam_params *p, int64_t step, float *theta,
                   const float *g, float *m, float *v, int64_t n,
                   int n_threads);

/* ------------------------------------------------------------------ */
/* Models: shapes and training (optim/adam.c, train/batch.c)          */
/* ------------------------------------------------------------------ */
/*
 * A model's parameters live in ONE float array theta (owned by Python);
 * Adam moments m and v have the same length.  Each model's block below
 * gives its layout.
 */

typedef struct {
    int32_t n_users, n_items;
    int32_t emb_dim;    /* D = 64 */
    int32_t hidden_dim; /* H = 128 (NeuralMF only) */
} rmf_shape;

typedef struct {
    float dropout;      /* 0.1, NeuralMF only */
    int32_t batch_size; /* 4096 */
    int32_t n_neg;      /* 4, NeuralMF uniform negatives per positive */
    int lazy_adam;      /* 0: dense Adam as PyTorch; 1: only rows in batch */
    uint64_t seed;
    int n_threads;
    rmf_adam_params adam;
} rmf_train_params;

/* optim/adam.c */
void rmf_train_default_params(rmf_train_params *p);
const char *rmf_train_check_params(const rmf_train_params *p);

/* Adam state carried across epochs. */
typedef struct {
    float *theta, *m, *v;
    int64_t n_params;
    int64_t step; /* Adam steps done so far */
    /* Out: the mean team size of the last epoch's batches -- the logical
     * n_threads, or less where the pacer ran batches on one thread because
     * that was faster (another program busy on a core; threads.c). */
    double team_threads;
} rmf_opt_state;

/* train/batch.c: the order in which a training epoch visits its pairs:
 * perm[0..n) = 0..n-1 shuffled with stream (seed, SHUFFLE, epoch), the
 * same for any nt.  NeuralMF numbers its pairs positives first (CSR order), then
 * negative r of positive q at nnz + q n_neg + r; batch b is
 * perm[b bs, (b+1) bs). */
void rmf_epoch_order(int64_t *perm, int64_t n, uint64_t seed, uint64_t epoch,
                     int nt);

/* What every model the glue scores provides (one row of the model table,
 * models/registry.c; csrc/README.md):
 *   check_shape  RMF_OK when s suits the model, else a message;
 *   n_params     the length of theta for a checked shape;
 *   score_pairs  out[k] = score of (u[k], i[k]), k < n;
 *   recommend    top-k items of users[0..n), best first (higher score
 *                first, ties to the lower item), skipping the items of the
 *                user's row of seen when seen != NULL; outputs as
 *                rmf_topk_rows.
 * Each function checks its own arguments (shape, ids, k, seen). */
typedef rmf_status (*rmf_check_shape_fn)(const rmf_shape *s, rmf_error *err);
typedef int64_t (*rmf_n_params_fn)(const rmf_shape *s);
typedef rmf_status (*rmf_score_pairs_fn)(const rmf_shape *s,
                                         const float *theta, const int32_t *u,
                                         const int32_t *i, int64_t n,
                                         int n_threads, float *out,
                                         rmf_error *err);
typedef rmf_status (*rmf_recommend_fn)(const rmf_shape *s, const float *theta,
                                       const int32_t *users, int64_t n,
                                       const rmf_csr *seen, int32_t k,
                                       int n_threads, int32_t *out_items,
                                       float *out_scores, int32_t *out_len,
                                       rmf_error *err);

/* One row of the model table, found by the exact kind name of the model's
 * Python class (Model.kind). */
typedef struct {
    const char *kind;
    rmf_check_shape_fn check_shape;
    rmf_n_params_fn n_params;
    rmf_score_pairs_fn score_pairs;
    rmf_recommend_fn recommend;
} rmf_model;

/* The row of kind, or NULL when the table has none (models/registry.c). */
const rmf_model *rmf_model_find(const char *kind);

/* ------------------------------------------------------------------ */
/* NeuralMF (models/neuralmf.c)                                       */
/* ------------------------------------------------------------------ */
/*
 * theta = [user_emb n_users*D | item_emb n_items*D | W1 H*(2D)
 *          (row h = [user half D | item half D]) | b1 H | w2 H | b2 1]
 */

/* Also hidden_dim >= 1 and 2 emb_dim small enough for sgemm. */
rmf_status rmf_ncf_check_shape(const rmf_shape *s, rmf_error *err);
int64_t rmf_ncf_n_params(const rmf_shape *s);

/* One epoch (SPEC 6): uniform negatives (n_neg per positive), shuffle,
 * batches of BCE-with-logits, Adam.  *loss gets the mean loss per pair
 * over the batches done; *n_done the number of pairs trained. */
rmf_status rmf_ncf_train_epoch(const rmf_train_params *p, const rmf_shape *s,
                               const rmf_csr *train, uint64_t epoch,
                               rmf_opt_state *st, rmf_stop_fn stop,
                               void *stop_ctx, double *loss, int64_t *n_done,
                               rmf_error *err);

/* The dropout mask (n x H scale factors, 0 or 1/(1-p)) that training
 * draws for the first n pairs of batch `batch` of epoch `epoch`: exposed so
 * tests can check its distribution and determinism. */
rmf_status rmf_ncf_dropout_mask(float p, uint64_t seed, uint64_t epoch,
                                uint64_t batch, int64_t n, int H, float *out,
                                rmf_error *err);

/* One batch's mean loss and its gradient (without weight decay) with
 * respect to every parameter, written densely into grad[0..n_params)
 * (overwritten, not accumulated); y are 0/1 labels; mask is n x H of
 * dropout scale factors, or NULL for no dropout.  The kernel the epoch
 * uses; tests compare it with a NumPy reference. */
rmf_status rmf_ncf_batch_grad(const rmf_shape *s, const float *theta,
                              const int32_t *u, const int32_t *i,
                              const float *y, int64_t n, const float *mask,
                              int n_threads, float *grad, double *loss,
                              rmf_error *err);

/* Logits of given (user, item) index pairs, and batched top-K. */
rmf_status rmf_ncf_score_pairs(const rmf_shape *s, const float *theta,
                               const int32_t *u, const int32_t *i, int64_t n,
                               int n_threads, float *out, rmf_error *err);
rmf_status rmf_ncf_recommend(const rmf_shape *s, const float *theta,
                             const int32_t *users, int64_t n,
                             const rmf_csr *seen, int32_t k, int n_threads,
                             int32_t *out_items, float *out_scores,
                             int32_t *out_len, rmf_error *err);

/* ------------------------------------------------------------------ */
/* BPRMF (models/bprmf.c)                                             */
/* ------------------------------------------------------------------ */
/*
 * theta = [user_emb n_users*D | item_emb n_items*D]; score = dot product.
 * hidden_dim is ignored (Python passes 0).
 */

rmf_status rmf_mf_check_shape(const rmf_shape *s, rmf_error *err);
int64_t rmf_mf_n_params(const rmf_shape *s);

/* One epoch (SPEC 7) over given triplets (sampled by rmf_sample_triplets),
 * shuffled with stream (seed, epoch). */
rmf_status rmf_mf_train_epoch(const rmf_train_params *p, const rmf_shape *s,
                              const int32_t *u, const int32_t *i,
                              const int32_t *j, int64_t n_triplets,
                              uint64_t epoch, rmf_opt_state *st,
                              rmf_stop_fn stop, void *stop_ctx, double *loss,
                              int64_t *n_done, rmf_error *err);

/* As rmf_ncf_batch_grad, for BPR triplets. */
rmf_status rmf_mf_batch_grad(const rmf_shape *s, const float *theta,
                             const int32_t *u, const int32_t *i,
                             const int32_t *j, int64_t n, int n_threads,
                             float *grad, double *loss, rmf_error *err);

rmf_status rmf_mf_score_pairs(const rmf_shape *s, const float *theta,
                              const int32_t *u, const int32_t *i, int64_t n,
                              int n_threads, float *out, rmf_error *err);
rmf_status rmf_mf_recommend(const rmf_shape *s, const float *theta,
                            const int32_t *users, int64_t n,
                            const rmf_csr *seen, int32_t k, int n_threads,
                            int32_t *out_items, float *out_scores,
                            int32_t *out_len, rmf_error *err);

/* ------------------------------------------------------------------ */
/* Implicit ALS (models/als.c)                                        */
/* ------------------------------------------------------------------ */
/*
 * Hu, Koren & Volinsky (ICDM 2008): minimise over X (rows x D) and Y
 * (cols x D)
 *
 *   sum_{u,i} c_ui (p_ui - x_u . y_i)^2 + reg (|X|^2 + |Y|^2),
 *   p_ui = 1 on the CSR's entries (0 elsewhere), c_ui = 1 + alpha r_ui
 *   (r_ui = the entry's value, 1 when no values are given; 1 off the CSR).
 *
 * With Y fixed, row u solves (YtY + Y^T (C_u - I) Y + reg I) x_u = Y^T C_u p_u.
 * RMF_ALS_CHOLESKY solves it exactly (double precision, per row);
 * RMF_ALS_CG takes cg_steps conjugate-gradient steps from the current x_u
 * (Takacs, Pilaszy & Tikk, RecSys 2011; benfred/implicit's cg solver),
 * never forming the D x D matrix.  Alternating the two halves is one ALS
 * iteration; the item half uses the transposed CSR.
 */
enum { RMF_ALS_CG = 0, RMF_ALS_CHOLESKY = 1 };

typedef struct {
    float regularization; /* reg >= 0 (> 0 keeps every system definite)  */
    float alpha;          /* >= 0: confidence 1 + alpha r                  */
    int32_t solver;       /* RMF_ALS_CG or RMF_ALS_CHOLESKY                */
    int32_t cg_steps;     /* >= 1, RMF_ALS_CG only (3 as implicit)         */
    int n_threads;        /* <= 0: all cores                               */
} rmf_als_params;

void rmf_als_default_params(rmf_als_params *p);
/* NULL when p is valid, else a message naming the bad field. */
const char *rmf_als_check_params(const rmf_als_params *p);

/* One half-sweep: rewrites every row of X (m->n_rows x D, row-major)
 * against the fixed Y (m->n_cols x D).  values (may be NULL: all 1) holds
 * r for each CSR entry, finite and >= 0.  A row without entries gets x = 0
 * (its optimum).  When loss is not NULL, *loss receives the objective above
 * (not normalised) at the new X and the given Y.  Phases: Y^T Y by one
 * single-threaded sgemm, then an OpenMP loop over rows; every row is
 * solved by one thread in a fixed order, so X and the loss depend only on
 * the inputs, not on the thread count.  A system that is not positive
 * definite (reg = 0 and too few entries) gives RMF_ERR_VALUE naming the
 * row. */
rmf_status rmf_als_solve(const rmf_als_params *p, const rmf_csr *m,
                         const float *values, const float *Y, int32_t D,
                         float *X, double *loss, rmf_error *err);

/* ------------------------------------------------------------------ */
/* BLAS (runtime/blas.c): the one place that knows the symbol prefix  */
/* ------------------------------------------------------------------ */

int rmf_blas_get_threads(void);
void rmf_blas_set_threads(int n);
const char *rmf_blas_config(void);
/* The file of the OpenBLAS library rmf_sgemm calls (rmf_library_of). */
const char *rmf_blas_library(void);
/* Routes OpenBLAS's threaded jobs onto OpenMP's threads (one thread pool
 * instead of two competing ones).  Returns 1 when done, 0 when this BLAS
 * or build cannot (OpenBLAS < 0.3.27, no OpenMP): then OpenBLAS keeps its
 * own threads.  Installs on the first call (at import); later calls only
 * report. */
int rmf_blas_use_openmp_threads(void);
/* rmf_spotrf_lower with OpenBLAS's spotrf only on blocks of order <=
 * direct_max (larger ones are split recursively with strsm/ssyrk). */
int rmf_spotrf_lower_blocked(int n, float *a, int lda, int direct_max);
/* How many jobs OpenBLAS has handed to rmf_blas_use_openmp_threads's
 * callback so far (for tests). */
long long rmf_blas_jobs_run(void);

#ifdef __cplusplus
}
#endif
#endif /* RECMF_H */
