/*
 * internal.h -- plumbing the core's topic files share; not part of the
 * contract module.c uses (recmf.h is).  Defined in batch.c unless a
 * declaration says otherwise.  One copy, so that a fix to, say, a check's
 * message or the first-appearance order of a batch group reaches every
 * model.
 */
#ifndef RECMF_INTERNAL_H
#define RECMF_INTERNAL_H

#include "recmf.h"
#include <string.h> /* memcpy in rmf_dot_lanes */

/* A hot loop compiled twice on x86-64 with GCC, for AVX2 and for the
 * baseline, picked at load time by the CPU (no host-specific build flag).
 * Without -ffp-contract (C11 mode) neither version fuses multiply-adds, so
 * both round alike. */
#if defined(__GNUC__) && defined(__x86_64__) && !defined(__clang__)
#define RMF_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define RMF_CLONES
#endif

/* Asks for the n_bytes at p to be fetched into cache (a hint, never a
 * fault: p may be anything).  For loops over rows picked at random from
 * tables larger than the cache -- an embedding row and its Adam moments --
 * where the hardware prefetcher cannot guess the next address. */
static inline void rmf_prefetch_row(const void *p, size_t n_bytes)
{
#if defined(__GNUC__)
    for (size_t b = 0; b < n_bytes; b += 64)
        __builtin_prefetch((const char *)p + b);
#else
    (void)p;
    (void)n_bytes;
#endif
}
/* How many rows ahead such loops ask for. */
#define RMF_PREFETCH_AHEAD 8

/* OpenMP is optional: OMP(omp parallel for ...) is the pragma, or nothing
 * without OpenMP (every loop then runs on one thread, same results). */
#ifdef _OPENMP
#define OMP(x) _Pragma(#x)
#else
#define OMP(x)
#endif

/* ------------------------------------------------------------------ */
/* Argument checks (one message each)                                 */
/* ------------------------------------------------------------------ */

/* n_users, n_items and emb_dim >= 1; a model's check_shape adds its own
 * fields (rmf_ncf_check_shape). */
rmf_status rmf_check_shape(const rmf_shape *s, rmf_error *err);
/* ids non-NULL and every ids[0..n) in [0, limit); the message names name. */
rmf_status rmf_check_ids(const int32_t *ids, int64_t n, int32_t limit,
                         const char *name, rmf_error *err);
/* m non-NULL and sound: indptr starts at 0 and never decreases, the
 * indices of each row are sorted, distinct and in [0, n_cols).  When
 * n_rows >= 0, m must also be n_rows x n_cols (a model's users x items).
 * Messages start with name.  Defined in index.c. */
rmf_status rmf_csr_check(const rmf_csr *m, const char *name, int32_t n_rows,
                         int32_t n_cols, rmf_error *err);
/* score_pairs arguments for a checked shape: n >= 0 and, when n > 0, theta
 * and out non-NULL and u, i in range. */
rmf_status rmf_check_pairs_args(const rmf_shape *s, const float *theta,
                                const int32_t *u, const int32_t *i, int64_t n,
                                const float *out, rmf_error *err);
/* recommend arguments for a checked shape: n >= 0, k >= 1, outputs
 * non-NULL, seen (may be NULL) a sound n_users x n_items CSR, users in
 * range. */
rmf_status rmf_check_recommend_args(const rmf_shape *s, const float *theta,
                                    const int32_t *users, int64_t n,
                                    const rmf_csr *seen, int32_t k,
                                    const int32_t *out_items,
                                    const float *out_scores,
                                    const int32_t *out_len, rmf_error *err);
/* st holds theta, m, v of n_params floats and a step >= 0. */
rmf_status rmf_check_opt_state(const rmf_opt_state *st, int64_t n_params,
                               rmf_error *err);

/* ------------------------------------------------------------------ */
/* Pacing a training loop's team size (threads.c)                     */
/* ------------------------------------------------------------------ */

/* Batch by batch, runs a loop's regions on the full team of nt threads or
 * on one, whichever is measured faster per unit of work; see threads.c for
 * why and how.  Usage, around each batch b of a loop whose work is split by
 * nt (never by the team's size):
 *
 *     rmf_pacer pc; rmf_pacer_init(&pc, nt);
 *     for (b...) { rmf_pacer_begin(&pc); ...; rmf_pacer_end(&pc, units); }
 *     rmf_pacer_finish(&pc);
 *
 * Regions inside keep asking for nt (RMF_PARALLEL(nt)): the pacer caps the
 * calling thread's teams (rmf_team_size), so results never change.  BLAS
 * calls inside must be one-thread ones run by the team (ncf.c): a threaded
 * OpenBLAS call would split its jobs by its own count. */
typedef struct {
    int nt;            /* the logical count */
    int size, last_size; /* the cap of this batch and of the last one */
    int which, best;   /* 0 = one thread, 1 = nt */
    int team_now;      /* threads this batch's regions run with */
    int64_t step, next_probe, gap, n_in_use, probe_n;
    double recent[5];  /* seconds per unit of the size in use, last batches */
    double in_use;     /* their median */
    double chosen;     /* in_use when the size was last confirmed */
    double probe_sum, team_sum, t0;
} rmf_pacer;
void rmf_pacer_init(rmf_pacer *pc, int nt);
int rmf_pacer_next(rmf_pacer *pc);
void rmf_pacer_record(rmf_pacer *pc, double seconds, double units);
int rmf_pacer_begin(rmf_pacer *pc);
void rmf_pacer_end(rmf_pacer *pc, double units);
void rmf_pacer_finish(rmf_pacer *pc);
/* The mean team size of the batches paced so far. */
double rmf_pacer_mean_team(const rmf_pacer *pc);
/* Seconds on a monotonic clock. */
double rmf_now(void);
/* blas.c: OpenBLAS on one thread from begin to end (and the count locked:
 * no other thread of the process changes it meanwhile); end takes begin's
 * return value.  For products whose rounding must not depend on the thread
 * count, called from the threads of a team at once. */
int rmf_blas_single_begin(void);
void rmf_blas_single_end(int saved);

/* ------------------------------------------------------------------ */
/* Search and blocks                                                  */
/* ------------------------------------------------------------------ */

/* First position q in [lo, hi) with a[q] >= x (hi if none); a ascending. */
#define RMF_LOWER_BOUND(name, type)                                           \
    static inline int64_t name(const type *a, int64_t lo, int64_t hi, type x) \
    {                                                                         \
        while (lo < hi) {                                                     \
            int64_t mid = lo + (hi - lo) / 2;                                 \
            if (a[mid] < x)                                                   \
                lo = mid + 1;                                                 \
            else                                                              \
                hi = mid;                                                     \
        }                                                                     \
        return lo;                                                            \
    }
RMF_LOWER_BOUND(rmf_lower_bound_i32, int32_t)
RMF_LOWER_BOUND(rmf_lower_bound_i64, int64_t)

/* sum_h x[h] w[h] with 8 float lanes (lane = h mod 8) added in a fixed
 * tree: the same result at any vector width.  GCC's generic vectors keep
 * the 8 lanes in registers (one ymm under AVX2, two xmm otherwise); the
 * plain-array form spilled them to the stack.  One copy for BPRMF's
 * scoring and training (mf.c) and ALS's solvers (als.c). */
#if defined(__GNUC__)
typedef float rmf_v8f __attribute__((vector_size(32)));
static inline float rmf_dot_lanes(const float *x, const float *w, int n)
{
    rmf_v8f acc = {0, 0, 0, 0, 0, 0, 0, 0};
    int h = 0;
    for (; h + 8 <= n; h += 8) {
        rmf_v8f a, b;
        memcpy(&a, x + h, sizeof a);
        memcpy(&b, w + h, sizeof b);
        acc += a * b;
    }
    float l[8];
    memcpy(l, &acc, sizeof l);
    for (int k = 0; h < n; h++, k++)
        l[k] += x[h] * w[h];
    return ((l[0] + l[4]) + (l[2] + l[6])) + ((l[1] + l[5]) + (l[3] + l[7]));
}
#else
static inline float rmf_dot_lanes(const float *x, const float *w, int n)
{
    float l[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int h = 0;
    for (; h + 8 <= n; h += 8)
        for (int k = 0; k < 8; k++)
            l[k] += x[h + k] * w[h + k];
    for (int k = 0; h < n; h++, k++)
        l[k] += x[h] * w[h];
    return ((l[0] + l[4]) + (l[2] + l[6])) + ((l[1] + l[5]) + (l[3] + l[7]));
}
#endif

/* Row of m holding CSR position p (0 <= p < nnz): the last r with
 * indptr[r] <= p. */
static inline int32_t rmf_csr_row_of(const rmf_csr *m, int64_t p)
{
    int32_t lo = 0, hi = m->n_rows; /* indptr[lo] <= p < indptr[hi] */
    while (hi - lo > 1) {
        int32_t mid = lo + (hi - lo) / 2;
        if (m->indptr[mid] <= p)
            lo = mid;
        else
            hi = mid;
    }
    return lo;
}

/* Users per recommend block: the block's score matrix (block x n_items
 * floats) stays ~4 MB however many users are asked for, and its sgemm or
 * tile loop stays large. */
static inline int64_t rmf_block_users(int32_t n_items)
{
    int64_t b = ((int64_t)1 << 20) / (n_items > 0 ? n_items : 1);
    return b < 64 ? 64 : b;
}

/* rmf_topk_select's work on one thread: rows [0, n_rows) of scores, with
 * heap of rmf_topk_heap_bytes(k) bytes as scratch.  Defined in topk.c. */
void rmf_topk_block(const float *scores, int64_t n_rows, int32_t n_cols,
                    const rmf_csr *seen, const int32_t *seen_rows, int32_t k,
                    void *heap, int32_t *out_items, float *out_scores,
                    int32_t *out_len);
size_t rmf_topk_heap_bytes(int32_t k);
/* rmf_topk_rows without its argument checks, for recommend functions that
 * checked k, seen and the users once for all their blocks.  Defined in
 * topk.c. */
rmf_status rmf_topk_select(const float *scores, int64_t n_rows,
                           int32_t n_cols, const rmf_csr *seen,
                           const int32_t *seen_rows, int32_t k, int n_threads,
                           int32_t *out_items, float *out_scores,
                           int32_t *out_len, rmf_error *err);

/* ------------------------------------------------------------------ */
/* Batches: the distinct rows of one side                             */
/* ------------------------------------------------------------------ */

/* The distinct keys of one side of a batch in first-appearance order
 * (ids), each entry's slot in ids (slot_of), and the entries of each slot,
 * ascending, as a CSR: list[ptr[s] .. ptr[s+1]). */
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
/* Builds g from keys[0..n), n <= cap_entries, keys in [0, n_keys). */
void rmf_group_build(rmf_group *g, const int32_t *keys, int64_t n);
/* Zeroes rows g->ids[0..n_distinct) of grad (rows of D floats).  An
 * orphaned "omp for nowait": call it inside a parallel region (or outside,
 * serially). */
void rmf_zero_rows(float *grad, const rmf_group *g, int D);

/* ------------------------------------------------------------------ */
/* Adam on embedding tables                                           */
/* ------------------------------------------------------------------ */

/* Dense Adam (rmf_adam_step) on an n_rows x D embedding table whose
 * gradient is zero except on the rows with slot_of_row[r] >= 0, whose
 * gradient is row_grad + slot_of_row[r] * D: the batch's few gradient rows
 * are read where they were computed instead of being scattered into a
 * mostly-zero array.  Called inside a parallel region, each thread updates
 * its contiguous share of the rows (no barrier); outside one, all rows.
 * Defined in adam.c. */
void rmf_adam_table_share(const rmf_adam_params *p, int64_t step,
                          float *theta, float *m, float *v, int64_t n_rows,
                          int D, const int32_t *slot_of_row,
                          const float *row_grad);

/* Lazy Adam (opt-in approximation of PyTorch's dense Adam): only the rows
 * a batch touched take a step; untouched rows keep their moments and skip
 * weight decay. */
/* One Adam step, element by element as rmf_adam_step, on the distinct rows
 * ids[0..nr) of D floats of the block starting at offset off of st's
 * theta/m/v, in place.  Row ids[r]'s gradient is grad + r D when by_slot
 * (a batch's per-distinct-row gradient), else laid out as theta (grad +
 * off + ids[r] D).  Defined in adam.c. */
void rmf_lazy_rows_step(const rmf_adam_params *ap, int64_t step,
                        rmf_opt_state *st, const float *grad, int by_slot,
                        int64_t off, const int32_t *ids, int64_t nr, int D,
                        int nt);

/* ------------------------------------------------------------------ */
/* Epoch bookkeeping                                                  */
/* ------------------------------------------------------------------ */

/* Epoch start: zeroes *loss and *n_done (either may be NULL), then checks
 * p (rmf_train_check_params).  The trainer checks its shape next. */
rmf_status rmf_epoch_begin(const rmf_train_params *p, double *loss,
                           int64_t *n_done, rmf_error *err);
/* Before batch b of n_batches: RMF_ERR_INTERRUPTED when b > 0 and stop
 * (may be NULL) asks to stop, else RMF_OK. */
rmf_status rmf_epoch_should_stop(rmf_stop_fn stop, void *stop_ctx, int64_t b,
                                 int64_t n_batches, rmf_error *err);
/* *loss = total / done (0 when done == 0), *n_done = done; either may be
 * NULL. */
void rmf_epoch_end(double total, int64_t done, double *loss, int64_t *n_done);

#endif /* RECMF_INTERNAL_H */
