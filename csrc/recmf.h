/*
 * recmf.h -- what the glue (py/) needs of the recmf C core: status codes,
 * the data core, top-k and metrics, the model table, the training loop and
 * the solver entries outside the table.  Each function's full contract is
 * at its definition, in the file its section names; what the core's parts
 * share beyond this sits in a header beside them (runtime/runtime.h,
 * data/data.h, rank/rank.h, nn/nn.h, optim/optim.h, train/train.h,
 * models/model.h).
 *
 * The core is plain C11 and never includes Python.h.  Conventions: the
 * caller owns memory (inputs and outputs are borrowed pointers; scratch is
 * malloc'd here); every fallible function returns an rmf_status and writes
 * a one-line message naming the bad argument into *err (may be NULL); the
 * core never prints, exits or aborts; int64_t for offsets and counts,
 * int32_t for dense ids, float for weights, double for accumulated sums;
 * randomness from rmf_rng streams keyed by (seed, stream id); BLAS never
 * inside an OpenMP region except as one-thread calls (nn/nn.h).
 */
#ifndef RECMF_H
#define RECMF_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- Status and errors (runtime/errors.c) ----------------------------- */

typedef enum {
    RMF_OK = 0,
    RMF_ERR_NOMEM,      /* malloc failed */
    RMF_ERR_VALUE,      /* a bad argument; the message names it */
    RMF_ERR_PARSE,      /* malformed text input; the message has a line */
    RMF_ERR_SATURATED,  /* a user has no candidate negative left */
    RMF_ERR_INTERRUPTED /* the stop callback asked to stop */
} rmf_status;

#define RMF_ERR_MSG_LEN 256
typedef struct {
    char msg[RMF_ERR_MSG_LEN];
    int64_t row; /* the dense row (user) a failure is about, or -1 */
} rmf_error;

#if defined(__GNUC__)
#define RMF_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define RMF_PRINTF(f, a)
#endif
/* A message into err (if non-NULL); returns status.  _row also sets row. */
rmf_status rmf_fail(rmf_error *err, rmf_status status, const char *fmt, ...) RMF_PRINTF(3, 4);
rmf_status rmf_fail_row(rmf_error *err, rmf_status status, int64_t row, const char *fmt, ...)
    RMF_PRINTF(4, 5);

/* Asked between training batches; non-zero stops after the current batch
 * with RMF_ERR_INTERRUPTED (the weights stay consistent). */
typedef int (*rmf_stop_fn)(void *ctx);

/* ---- Runtime: threads, fork, floating point, BLAS (runtime/) ---------- */

/* Stopping long calls (runtime/stop.c).  One call's stop context: fn(ctx)
 * is asked, on the calling thread, after a SIGINT (rmf_stop_signal);
 * non-zero stops the call.  begin/end go around a call, on its thread (the
 * glue's RMF_NOGIL; fn may be NULL: the call cannot be stopped); end
 * returns 1 when the call was stopped.  rmf_stop_signal is
 * async-signal-safe (the glue's SIGINT handler calls it).  The core's
 * loops poll with rmf_stopping (runtime/runtime.h).  Test hooks: the
 * calling thread's next call raises SIGINT itself at its poll-th poll (0
 * never), and how many polls it has made since. */
typedef struct rmf_stop {
    rmf_stop_fn fn;
    void *ctx;
    _Atomic int stopped;
    struct rmf_stop *prev;
} rmf_stop;
void rmf_stop_begin(rmf_stop *s, rmf_stop_fn fn, void *ctx);
int rmf_stop_end(rmf_stop *s);
void rmf_stop_signal(void);
void rmf_stop_interrupt_at(int64_t poll);
int64_t rmf_stop_polls(void);

/* The logical thread count of a call (<= 0: all cores; at most
 * max(256, cores); 1 without OpenMP): it fixes how work is split, so
 * results never depend on the team size. */
int rmf_resolve_threads(int requested);
int rmf_has_openmp(void);
/* The file of the shared library that defines the function at fn, as the
 * dynamic loader found it, or NULL (build_info names the OpenBLAS and the
 * OpenMP runtime the core really runs on: a wheel's own copies, not another
 * package's).  rmf_openmp_library: NULL without OpenMP. */
const char *rmf_library_of(const void *fn);
const char *rmf_openmp_library(void);
/* Registers the fork handlers (once, at import); 0 on success. */
int rmf_runtime_init(void);
/* Around every call into the core from a thread of its own: fork() in
 * another thread waits until no call is in flight. */
void rmf_work_begin(void);
void rmf_work_end(void);
/* bit 0: a child of fork() after recmf used its threads; bit 1: regions
 * run on one thread here.  notice: 1 once after the first such region. */
int rmf_fork_state(void);
int rmf_fork_fallback_notice(void);

/* Subnormals are flushed in recmf's compute (runtime/fpstate.c): whether
 * that is possible here; the process-wide switch that keeps IEEE results
 * instead (default 0). */
int rmf_fp_supported(void);
void rmf_fp_set_exact(int exact);
int rmf_fp_get_exact(void);

/* OpenBLAS: its thread count, its build, whether its jobs run on OpenMP's
 * threads (1: installed at import), Cholesky in blocks of order <=
 * direct_max (LAPACK info). */
int rmf_blas_get_threads(void);
void rmf_blas_set_threads(int n);
const char *rmf_blas_config(void);
/* The file of the OpenBLAS library rmf_sgemm calls (rmf_library_of). */
const char *rmf_blas_library(void);
int rmf_blas_use_openmp_threads(void);
int rmf_spotrf_lower_blocked(int n, float *a, int lda, int direct_max);

/* Test hooks.  fp: the calling thread's flush bits (bit 0 FTZ, bit 1 DAZ),
 * and what team threads see in a region of recmf's (a sgemm of m x k by
 * k x n) or of someone else's.  pacer: 0 measures, 1 one thread, 2
 * alternates, 3 full team; trace: the team size it picks per batch from
 * given costs.  fork: 0 skips the pool release (the one-thread fallback).
 * jobs: OpenBLAS jobs run on OpenMP's threads so far. */
int rmf_fp_mode(void);
void rmf_fp_set_mode(int mode);
void rmf_fp_probe_recmf(int nt, int32_t *modes, int32_t *caller_mode, int64_t m, int64_t n,
                        int64_t k, const float *a, const float *b, float *c);
void rmf_fp_probe_plain(int nt, int32_t *modes);
void rmf_pacer_force(int mode);
void rmf_pacer_trace(int nt, int64_t n, const double *cost_one, const double *cost_full,
                     int32_t *sizes);
void rmf_fork_set_release(int on);
long long rmf_blas_jobs_run(void);

/* ---- The data core (data/) -------------------------------------------- */

/* A users x items 0/1 matrix: row u holds sorted, distinct item indices
 * indices[indptr[u] .. indptr[u+1]). */
typedef struct {
    const int64_t *indptr; /* n_rows + 1 */
    const int32_t *indices;
    int32_t n_rows, n_cols;
} rmf_csr;

/* Rows of items in an order that matters (each user's items in time
 * order, oldest first; or a history whose entries a model sums in turn):
 * row u is items[indptr[u] .. indptr[u+1]), not sorted by item. */
typedef struct {
    const int64_t *indptr; /* n_users + 1 */
    const int32_t *items;
    int32_t n_users, n_items;
} rmf_seq;
/* indptr starts at 0 and never decreases; items in [0, n_items). */
rmf_status rmf_check_seq(const rmf_seq *h, rmf_error *err);

/* parse.c: an upper bound on the rows of buf; "user SEP item SEP rating
 * SEP timestamp" lines read as pandas reads them, at most cap rows. */
int64_t rmf_count_lines(const char *buf, int64_t len);
rmf_status rmf_parse_ratings(const char *buf, int64_t len, const char *sep, int64_t skip_header,
                             int64_t cap, int64_t *user, int64_t *item, double *rating,
                             int64_t *timestamp, int64_t *n_rows, rmf_error *err);

/* split.c: order = rows sorted stably by (user, time); part[k] of row
 * order[k]: each user's last n_test rows test, the n_val before them val
 * (users with fewer than min_train + n_val + n_test rows: all train). */
enum { RMF_PART_TRAIN = 0, RMF_PART_VAL = 1, RMF_PART_TEST = 2 };
rmf_status rmf_temporal_split(const int64_t *user, const int64_t *time, int64_t n, int64_t n_val,
                              int64_t n_test, int64_t min_train, int64_t *order, int8_t *part,
                              rmf_error *err);

/* index.c: ids to dense codes (uniques ascending); the CSR of (row, col)
 * pairs, duplicates kept once (*nnz distinct pairs). */
rmf_status rmf_factorize(const int64_t *ids, int64_t n, int32_t *codes, int64_t *uniques,
                         int64_t *n_unique, rmf_error *err);
rmf_status rmf_build_csr(const int32_t *rows, const int32_t *cols, int64_t n, int32_t n_rows,
                         int32_t n_cols, int64_t *indptr, int32_t *indices, int64_t *nnz,
                         rmf_error *err);

/* popularity.c: positives per item; items by descending count, ties to the
 * lower index. */
rmf_status rmf_item_counts(const rmf_csr *m, int64_t *counts, rmf_error *err);
rmf_status rmf_popularity_order(const int64_t *counts, int32_t n_items, int32_t *order,
                                rmf_error *err);

/* sample.c: out[p n_neg + r] = a uniform non-positive item of positive p's
 * row; triplets (u, i) uniform over the positives, j a non-positive of u
 * from candidates.  Results depend on (seed, epoch) only; a user with no
 * candidate left: RMF_ERR_SATURATED (err->row). */
rmf_status rmf_sample_uniform(const rmf_csr *m, int32_t n_neg, uint64_t seed, uint64_t epoch,
                              int n_threads, int32_t *out, rmf_error *err);
rmf_status rmf_sample_triplets(const rmf_csr *m, const int32_t *candidates, int32_t n_cand,
                               int64_t n_triplets, uint64_t seed, uint64_t epoch, int n_threads,
                               int32_t *u_out, int32_t *i_out, int32_t *j_out, rmf_error *err);

/* ---- Ranking (rank/) -------------------------------------------------- */

/* topk.c: the k best columns of each row (higher score first, ties to the
 * lower column, NaN last), without the columns of seen row seen_rows[r]
 * (when seen and seen_rows[r] >= 0) and, when allowed (n_cols flags) is
 * given, without the unflagged ones: candidates are filtered inside the
 * selection, so a list is k long while k remain.  out_items/out_scores n_rows
 * x k, out_len[r] filled (-1 / -inf after).  ranked: the same for one
 * ranking shared by every row (popularity; allowed: n_allowed flags). */
rmf_status rmf_topk_rows(const float *scores, int64_t n_rows, int32_t n_cols, const rmf_csr *seen,
                         const int32_t *seen_rows, const uint8_t *allowed, int32_t k, int n_threads,
                         int32_t *out_items, float *out_scores, int32_t *out_len, rmf_error *err);
rmf_status rmf_topk_ranked(const int32_t *ranking, int32_t n_rank, const rmf_csr *seen,
                           const int32_t *users, int64_t n_users, const uint8_t *allowed,
                           int32_t n_allowed, int32_t k, int32_t *out_items, int32_t *out_len,
                           rmf_error *err);

/* metrics.c (SPEC 9): per-user recall, ndcg, mrr, hit of top-k lists
 * against sorted relevant items (NaN rows: skipped users), their means;
 * coverage of a catalogue and the mean popularity of the recommended pairs. */
rmf_status rmf_ranking_metrics(const int64_t *recs, const int32_t *rec_len, int64_t n_users, int32_t k,
                               const int64_t *rel_indptr, const int64_t *rel_items, double *per_user,
                               double *means, int64_t *n_eval, rmf_error *err);
rmf_status rmf_coverage_popularity(const int64_t *recs, const int32_t *rec_len, int64_t n_rows, int32_t k,
                                   const int64_t *catalog, int64_t n_catalog, const int64_t *pop_ids,
                                   const double *pop_values, int64_t n_pop, double *coverage,
                                   double *avg_pop, int64_t *n_pairs, rmf_error *err);

/* ---- Adam (optim/adam.c) ---------------------------------------------- */

typedef struct {
    float lr, beta1, beta2, eps; /* 1e-3, 0.9, 0.999, 1e-8 */
    float weight_decay;          /* 1e-6, L2 added to the gradient (not AdamW) */
} rmf_adam_params;

void rmf_adam_default_params(rmf_adam_params *p);
const char *rmf_adam_check_params(const rmf_adam_params *p); /* NULL or a message */
rmf_status rmf_adam_check_step(const rmf_adam_params *p, int64_t step, rmf_error *err);
/* torch.optim.Adam's step `step` (1-based) over theta[0..n), g without
 * weight decay. */
void rmf_adam_step(const rmf_adam_params *p, int64_t step, float *theta, const float *g, float *m,
                   float *v, int64_t n, int n_threads);

/* ---- Models (models/): configs, layouts, the table -------------------- */
/*
 * Every model the core trains or scores is one descriptor in one file of
 * models/ (models/model.h says what it holds), listed once in
 * models/registry.c.  The glue knows a model only through these functions
 * -- config from keywords by the field table, theta sized by the layout,
 * trained by rmf_train_epoch or rmf_model_fit, scored by rmf_model_score /
 * rmf_model_recommend -- so it does not change when a model is added.
 * Parameters live in ONE float array theta; Adam's m and v likewise.
 */
typedef struct rmf_model rmf_model;

/* The training loop's parameters (train/loop.c), in every config. */
typedef struct {
    int32_t batch_size, n_neg; /* 4096; 4 negatives per positive (pairs) */
    int32_t lazy_adam;         /* 0: dense Adam as PyTorch; 1: only rows in batch */
    int32_t n_threads;         /* 0: all cores */
    uint64_t seed;
    rmf_adam_params adam;
} rmf_train_params;

/* Every config starts with this; the model's own fields follow, in
 * RMF_CONFIG_MAX bytes at most. */
typedef struct {
    int32_t n_users, n_items; /* the model's data */
    rmf_train_params train;
} rmf_config;
#define RMF_CONFIG_MAX 512

/* A config keyword: type 'f' float, 'i' int32, 'u' uint64 (modulo 2^64);
 * offset in the config; help, one line for docs and flags. */
typedef struct {
    const char *name;
    char type;
    size_t offset;
    const char *help;
} rmf_field;

/* The model of kind (Model.kind in Python) or NULL; the table in order
 * (NULL past the end); a model's kind, source and whether the loop
 * trains it. */
const rmf_model *rmf_model_find(const char *kind);
const rmf_model *rmf_model_at(int index);
const char *rmf_model_name(const rmf_model *m);
int rmf_model_source(const rmf_model *m);
int rmf_model_minibatch(const rmf_model *m);
/* Defaults into cfg (RMF_CONFIG_MAX bytes, aligned as rmf_config); field q
 * (the sizes, the loop's for mini-batch models, then the model's own;
 * NULL past the end); the field called name; the loop's field called name;
 * RMF_OK or a message naming the bad field. */
void rmf_model_defaults(const rmf_model *m, void *cfg);
const rmf_field *rmf_model_field_at(const rmf_model *m, int q);
const rmf_field *rmf_model_field(const rmf_model *m, const char *name);
const rmf_field *rmf_train_field(const char *name);
rmf_status rmf_model_check(const rmf_model *m, const void *cfg, rmf_error *err);

/* theta's named blocks: TABLE blocks hold a row per user or item (a batch
 * touches a few: Adam steps them sparsely), DENSE blocks every batch;
 * init NORMAL N(0, arg^2), UNIFORM U(+-1/sqrt(arg)) (PyTorch's Linear, arg
 * = fan-in) or ZERO, drawn by Python in block order. */
enum { RMF_BLOCK_DENSE = 0, RMF_BLOCK_TABLE = 1 };
enum { RMF_INIT_ZERO = 0, RMF_INIT_NORMAL = 1, RMF_INIT_UNIFORM = 2 };
#define RMF_MAX_BLOCKS 64
typedef struct {
    const char *name; /* Python's view is name + "_" */
    int64_t offset, rows, cols; /* cols = 0: a vector of rows */
    int role, init;
    double init_arg;
} rmf_block;
typedef struct {
    int n_blocks;
    rmf_block block[RMF_MAX_BLOCKS];
    int64_t n_params;
} rmf_layout;
rmf_status rmf_model_layout(const rmf_model *m, const void *cfg, rmf_layout *out, rmf_error *err);

/* What a model learns from. */
enum {
    RMF_SOURCE_NONE = 0,  /* trained outside the core's loop (ALS) */
    RMF_SOURCE_PAIRS,     /* positives; n_neg uniform negatives each, per epoch */
    RMF_SOURCE_TRIPLETS,  /* given (user, positive, negative) triplets */
    RMF_SOURCE_SEQUENCES, /* each user's items in time order */
    RMF_SOURCE_MATRIX     /* the users x items positives, for a solver */
};
typedef struct {
    const rmf_csr *positives; /* PAIRS, MATRIX */
    const int32_t *u, *i, *j; /* TRIPLETS, n of them */
    int64_t n;
    const rmf_seq *seq;       /* SEQUENCES: n_users rows */
} rmf_data;

/* One batch: pairs (u, i) with labels y, triplets (u, i, j), or rows[0..n)
 * of seq; index = the batch's number in its epoch (random streams are
 * (seed, epoch, index)); train 1 draws dropout; mask (tests) replaces it. */
typedef struct {
    int64_t n;
    const int32_t *u, *i, *j, *rows;
    const float *y, *mask;
    const rmf_seq *seq;
    uint64_t seed, epoch, index;
    int train;
} rmf_batch;

/* Whom to recommend for: users[0..n), the model's users or, when history
 * is given, its rows (fold-in and sequence models score from it; weights
 * may weigh its entries); seen (rows as users) drops items; allowed
 * (n_items flags) keeps only the flagged ones, inside the selection. */
typedef struct {
    const int32_t *users;
    int64_t n;
    const rmf_seq *history;
    const float *weights;
    const rmf_csr *seen;
    const uint8_t *allowed;
} rmf_query;

/* score: out[k] = the score of (u[k], i[k]).  recommend: top-k as
 * rmf_topk_rows.  fit: a closed-form model's theta from its data.  Each
 * checks the arguments every model shares (registry.c) first. */
rmf_status rmf_model_score(const rmf_model *m, const void *cfg, const float *theta, const int32_t *u,
                           const int32_t *i, int64_t n, const rmf_seq *history, int n_threads,
                           float *out, rmf_error *err);
rmf_status rmf_model_recommend(const rmf_model *m, const void *cfg, const float *theta, const rmf_query *q,
                               int32_t k, int n_threads, int32_t *out_items, float *out_scores,
                               int32_t *out_len, rmf_error *err);
rmf_status rmf_model_fit(const rmf_model *m, const void *cfg, const rmf_data *data, int n_threads,
                         float *theta, rmf_error *err);

/* ---- Training (train/loop.c): the one epoch loop of mini-batch models - */

/* Adam's state across epochs; team_threads (out): the last epoch's mean
 * team size (less than n_threads where the pacer ran batches on one). */
typedef struct {
    float *theta, *m, *v;
    int64_t n_params, step; /* step: Adam steps done so far */
    double team_threads;
} rmf_opt_state;

/* One epoch of the model's source in rmf_epoch_order's order, a batch's
 * mean loss and gradient and one Adam step per batch; *loss = the mean loss
 * per example, *n_done = examples trained; stop (may be NULL) asked
 * between batches.  batch_grad: one batch's loss and dense gradient (the
 * kernel the epoch uses, for tests).  order: perm = 0..n-1 shuffled by
 * (seed, epoch) (pairs: positives in CSR order, then negative r of
 * positive q at nnz + q n_neg + r).  dropout_mask: the n x H mask batch
 * `batch` draws (nn/activation.c). */
rmf_status rmf_train_epoch(const rmf_model *m, const void *cfg, const rmf_data *data, uint64_t epoch,
                           rmf_opt_state *st, rmf_stop_fn stop, void *stop_ctx, double *loss,
                           int64_t *n_done, rmf_error *err);
rmf_status rmf_train_batch_grad(const rmf_model *m, const void *cfg, const float *theta,
                                const rmf_batch *b, int n_threads, float *grad, double *loss,
                                rmf_error *err);
void rmf_epoch_order(int64_t *perm, int64_t n, uint64_t seed, uint64_t epoch, int nt);
rmf_status rmf_dropout_mask(float p, uint64_t seed, uint64_t epoch, uint64_t batch, int64_t n, int H,
                            float *out, rmf_error *err);

/* ---- Solver entries outside the table, openly ------------------------- */

/* models/als.c: one half-sweep of implicit ALS rewrites every row of X
 * (m->n_rows x D) against the fixed Y (m->n_cols x D); *loss (may be NULL)
 * the objective at the new X.  Python alternates the halves. */
enum { RMF_ALS_CG = 0, RMF_ALS_CHOLESKY = 1 };
typedef struct {
    float regularization, alpha; /* >= 0; confidence 1 + alpha r */
    int32_t solver, cg_steps;    /* RMF_ALS_CG or _CHOLESKY; >= 1 (3 as implicit) */
    int n_threads;               /* <= 0: all cores */
} rmf_als_params;
void rmf_als_default_params(rmf_als_params *p);
const char *rmf_als_check_params(const rmf_als_params *p); /* NULL or a message */
rmf_status rmf_als_solve(const rmf_als_params *p, const rmf_csr *m, const float *values, const float *Y,
                         int32_t D, float *X, double *loss, rmf_error *err);

/* models/transition.c: item transitions of each user's sequence within a
 * window (gap_decay^(g-1) for a gap g) as a sorted CSR (capacity: as many
 * pairs as the window holds); users' score rows sum_i 2^(-age/half_life)
 * probs[T(i, .)] over their items (half_life INFINITY: weight 1); their
 * top-k as rmf_topk_rows. */
#define RMF_TRANSITION_MAX_WINDOW 64
int64_t rmf_transition_capacity(const rmf_seq *h, int32_t window);
rmf_status rmf_transition_counts(const rmf_seq *h, int32_t window, double gap_decay, int n_threads,
                                 int64_t *out_indptr, int32_t *out_indices, double *out_weights,
                                 int64_t *nnz, rmf_error *err);
rmf_status rmf_transition_scores(const rmf_csr *trans, const float *probs, const rmf_seq *h,
                                 const int32_t *users, int64_t n, double half_life, int n_threads,
                                 float *out, rmf_error *err);
rmf_status rmf_transition_recommend(const rmf_csr *trans, const float *probs, const rmf_seq *h,
                                    const int32_t *users, int64_t n, double half_life, const rmf_csr *seen,
                                    const uint8_t *allowed, int32_t k, int n_threads, int32_t *out_items,
                                    float *out_scores, int32_t *out_len, rmf_error *err);

/* models/ease.c, for tests: the upper triangle of X^T X (lower zeroed). */
rmf_status rmf_ease_gram_upper(const rmf_csr *x, int n_threads, float *G, rmf_error *err);

#ifdef __cplusplus
}
#endif
#endif /* RECMF_H */
