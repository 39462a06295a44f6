/*
 * runtime.h -- what every part of the core runs on, and the glue does not
 * call: OpenMP regions and their team size, the floating-point mode of
 * recmf's threads, random streams, BLAS calls, the pacer of a training
 * loop, and small vector helpers.  Defined in the runtime/ files named in
 * each section.
 */
#ifndef RECMF_RUNTIME_H
#define RECMF_RUNTIME_H

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

/* ------------------------------------------------------------------ */
/* Ctrl-C in long calls (runtime/stop.c; the glue's side in recmf.h)  */
/* ------------------------------------------------------------------ */

/* The calling thread's stop context (NULL outside a call from the glue):
 * taken before a parallel region, polled inside it. */
rmf_stop *rmf_stop_here(void);
/* At a block boundary, from any thread: 1 when the call must stop (skip
 * the remaining blocks; the glue drops the outputs).  Cheap: two relaxed
 * loads unless a signal is pending.  rmf_stopped only reads the flag. */
int rmf_stopping(rmf_stop *s);
int rmf_stopped(rmf_stop *s);

/* OpenMP is optional: OMP(omp parallel for ...) is the pragma, or nothing
 * without OpenMP (every loop then runs on one thread, same results). */
#ifdef _OPENMP
#define OMP(x) _Pragma(#x)
#else
#define OMP(x)
#endif

/* ------------------------------------------------------------------ */
/* Threads (threads.c)                                                */
/* ------------------------------------------------------------------ */

/* The team size a parallel region of nt logical threads runs with: nt,
 * except 1 in a child of fork() whose OpenMP thread pool could not be
 * released before the fork (libgomp's pool does not survive fork(): a
 * team of more than one thread would wait forever for threads that do not
 * exist), and at most the cap a training loop's pacer sets for the calling
 * thread's current batch (threads.c).  Every region gets its size here
 * (RMF_PARALLEL). */
int rmf_team_size(int nt);
/* A point in a long call where no region or BLAS call is in flight (between
 * training batches): lets a waiting fork() through, and runs stop(stop_ctx)
 * (may be NULL) meanwhile; returns its answer. */
int rmf_work_yield(rmf_stop_fn stop, void *stop_ctx);

/* ------------------------------------------------------------------ */
/* Floating-point state (fpstate.c)                                   */
/* ------------------------------------------------------------------ */

/*
 * recmf's compute runs with subnormal floats flushed to zero (x86 MXCSR
 * FTZ + DAZ, AArch64 FPCR.FZ; nothing elsewhere) on every thread that does
 * its work, and gives each thread its own mode back afterwards
 * (TensorFlow's ScopedFlushDenormal): on Intel cores every operation on a
 * subnormal takes a microcode assist (~100x slower), and NeuralMF's
 * training drifts into them after a few epochs.  The user's threads keep
 * IEEE behaviour outside recmf's calls.
 *
 *   - The calling thread: rmf_fp_enter/rmf_fp_leave around a core call
 *     that computes floats (nesting is fine; rmf_blas_enter/leave do it).
 *   - Every OpenMP region: RMF_PARALLEL(nt, clauses) instead of
 *     "omp parallel", with RMF_TEAM_BEGIN first and RMF_TEAM_END last in
 *     its block: each team thread takes the calling thread's mode for the
 *     region and gets its own back at the end.
 *   - OpenBLAS's jobs: blas.c runs them inside such a region (or on plain
 *     threads that take the mode the same way).
 */

void rmf_fp_enter(void);
void rmf_fp_leave(void);

/* What a team thread needs to know about the thread that started its
 * region: bit 63 set when that thread computes in recmf's flushed mode,
 * its own mode (before recmf changed it) in the low bits. */
#define RMF_FP_ACTIVE ((uint64_t)1 << 63)
typedef struct {
    uint64_t saved; /* this thread's flush bits on entry */
    uint64_t word;  /* the starting thread's word (RMF_FP_ACTIVE | mode) */
    int managed;    /* 0: the region is outside recmf's compute, untouched */
} rmf_fp_token;
rmf_fp_token rmf_fp_team_begin(uint64_t word);
void rmf_fp_team_end(rmf_fp_token t);

/* The calling thread's word; copied into each team thread as the region
 * starts (OpenMP copyin: one value in the region's argument block, no
 * extra barrier). */
#ifdef _OPENMP
extern uint64_t rmf_fp_word;
#pragma omp threadprivate(rmf_fp_word)
#define RMF_PRAGMA(x) _Pragma(#x)
#define RMF_PARALLEL(nt, ...)                                                 \
    RMF_PRAGMA(omp parallel num_threads(rmf_team_size(nt)) copyin(rmf_fp_word) \
               __VA_ARGS__)
#else
extern _Thread_local uint64_t rmf_fp_word;
#define RMF_PARALLEL(nt, ...)
#endif
#define RMF_TEAM_BEGIN rmf_fp_token rmf_team_fp_ = rmf_fp_team_begin(rmf_fp_word)
#define RMF_TEAM_END rmf_fp_team_end(rmf_team_fp_)

/* ------------------------------------------------------------------ */
/* Random numbers (rng.c): xoshiro256** seeded by splitmix64          */
/* ------------------------------------------------------------------ */

typedef struct {
    uint64_t s[4];
} rmf_rng;

/* Independent stream for (seed, stream); streams with different ids do not
 * overlap in practice.  Callers build stream ids with rmf_stream_id. */
void rmf_rng_seed(rmf_rng *rng, uint64_t seed, uint64_t stream);
uint64_t rmf_stream_id(uint64_t purpose, uint64_t epoch, uint64_t shard);

/* The next 64 bits.  Inline (it was an out-of-line call through the PLT
 * in the hottest loops -- dropout masks, negative sampling -- which made
 * the caller spill its vector registers around every draw). */
static inline uint64_t rmf_rotl64_(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
static inline uint64_t rmf_rng_next(rmf_rng *rng)
{
    uint64_t *s = rng->s;
    const uint64_t result = rmf_rotl64_(s[1] * 5, 7) * 9;
    const uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rmf_rotl64_(s[3], 45);
    return result;
}

/* Unbiased integer in [0, n), n >= 1: Lemire, "Fast random integer
 * generation in an interval" (2019), one multiplication in the common
 * case.  The rare rejection loop is out of line. */
uint32_t rmf_rng_below_slow_(rmf_rng *rng, uint64_t m, uint32_t n);
static inline uint32_t rmf_rng_below(rmf_rng *rng, uint32_t n)
{
    uint64_t m = (uint64_t)(uint32_t)(rmf_rng_next(rng) >> 32) * n;
    if ((uint32_t)m < n)
        return rmf_rng_below_slow_(rng, m, n);
    return (uint32_t)(m >> 32);
}
uint64_t rmf_rng_below64(rmf_rng *rng, uint64_t n);
/* In-place Fisher-Yates shuffle of a permutation of int64 positions. */
void rmf_shuffle_i64(rmf_rng *rng, int64_t *a, int64_t n);

/* Stream purposes: one id per use so no two uses share random numbers. */
enum {
    RMF_STREAM_UNIFORM_NEG = 1,
    RMF_STREAM_TRIPLETS = 2,
    RMF_STREAM_SHUFFLE = 3,
    RMF_STREAM_DROPOUT = 4
};

/* ------------------------------------------------------------------ */
/* BLAS (blas.c)                                                      */
/* ------------------------------------------------------------------ */

/* C = alpha * op(A) op(B) + beta * C, row-major, op = transpose when the
 * flag is non-zero. */
void rmf_sgemm(int trans_a, int trans_b, int64_t m, int64_t n, int64_t k,
               float alpha, const float *a, int64_t lda, const float *b,
               int64_t ldb, float beta, float *c, int64_t ldc);
/* LAPACK Cholesky (spotrf) and inverse from it (spotri) of the lower
 * triangle of the column-major n x n matrix a (= the upper triangle of a
 * row-major one), in place; return LAPACK's info (0 = success). */
int rmf_spotrf_lower(int n, float *a, int lda);
int rmf_spotri_lower(int n, float *a, int lda);
/* b = b op(a)^-1, column-major: a is n x n lower triangular (the factor
 * rmf_spotrf_lower leaves), b is m x n; op = transpose when trans != 0. */
void rmf_strsm_right_lower(int trans, int m, int n, const float *a, int lda, float *b, int ldb);
/* Around work that alternates BLAS calls with OpenMP loops of nt threads:
 * enter sets OpenBLAS's thread count (nt when its jobs run on OpenMP's
 * team, else 1) and returns the caller's count; leave restores it.  They
 * also enter and leave recmf's floating-point mode (rmf_fp_enter). */
int rmf_blas_enter(int nt);
void rmf_blas_leave(int saved);

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
 * calls inside must be one-thread ones run by the team (models/neuralmf.c): a threaded
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
/* Vector helpers                                                     */
/* ------------------------------------------------------------------ */

/* sum_h x[h] w[h] with 8 float lanes (lane = h mod 8) added in a fixed
 * tree: the same result at any vector width.  GCC's generic vectors keep
 * the 8 lanes in registers (one ymm under AVX2, two xmm otherwise); the
 * plain-array form spilled them to the stack.  One copy for BPRMF's
 * scoring and training (models/bprmf.c) and ALS's solvers (models/als.c). */
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

#endif /* RECMF_RUNTIME_H */
