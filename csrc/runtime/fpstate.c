/* fpstate.c -- subnormal flushing inside recmf's compute, and only there
 * (contract in recmf.h, "Floating-point state").  The one file that knows
 * how each architecture keeps the mode. */
#include "runtime/runtime.h"

#include <stdatomic.h>

#if defined(__x86_64__) || defined(_M_X64) || (defined(__i386__) && defined(__SSE2__))
#define RMF_FP_X86 1
#include <xmmintrin.h>
#elif defined(__aarch64__) && (defined(__GNUC__) || defined(__clang__))
#define RMF_FP_ARM64 1
#endif

#ifdef _OPENMP
#include <omp.h>
uint64_t rmf_fp_word = 0;
#else
_Thread_local uint64_t rmf_fp_word = 0;
#endif

/* ------------------------------------------------------------------ */
/* The control word and its flush bits                                */
/* ------------------------------------------------------------------ */

#if defined(RMF_FP_X86)
enum { FTZ = 1u << 15, DAZ = 1u << 6 };

static uint64_t fp_get(void) { return _mm_getcsr(); }
static void fp_set(uint64_t w) { _mm_setcsr((unsigned)w); }

/* DAZ is reserved on the first SSE2 CPUs and setting a reserved MXCSR bit
 * faults; every CPU with SSE3 has it (TensorFlow's rule). */
static uint64_t flush_bits(void)
{
#if defined(__SSE3__)
    return FTZ | DAZ;
#elif defined(__GNUC__) || defined(__clang__)
    static int daz = -1;
    if (daz < 0)
        daz = __builtin_cpu_supports("sse3") ? 1 : 0;
    return daz ? (FTZ | DAZ) : FTZ;
#else
    return FTZ;
#endif
}

static int mode_of(uint64_t w) { return ((w & FTZ) ? 1 : 0) | ((w & DAZ) ? 2 : 0); }
static uint64_t bits_of(int mode) { return ((mode & 1) ? FTZ : 0) | ((mode & 2) ? DAZ : 0); }

#elif defined(RMF_FP_ARM64)
/* FPCR.FZ flushes both subnormal inputs and results. */
enum { FZ = 1u << 24 };

static uint64_t fp_get(void)
{
    uint64_t w;
    __asm__ __volatile__("mrs %0, fpcr" : "=r"(w));
    return w;
}
static void fp_set(uint64_t w) { __asm__ __volatile__("msr fpcr, %0" : : "r"(w)); }
static uint64_t flush_bits(void) { return FZ; }
static int mode_of(uint64_t w) { return (w & FZ) ? 3 : 0; }
static uint64_t bits_of(int mode) { return mode ? FZ : 0; }

#else
static uint64_t fp_get(void) { return 0; }
static void fp_set(uint64_t w) { (void)w; }
static uint64_t flush_bits(void) { return 0; }
static int mode_of(uint64_t w) { (void)w; return 0; }
static uint64_t bits_of(int mode) { (void)mode; return 0; }
#endif

/* Sets the flush bits of the calling thread to `want` (a subset of
 * flush_bits()), leaving every other bit -- rounding, exception masks and
 * the sticky exception flags recmf's work raised -- as it is. */
static void put_bits(uint64_t want)
{
    uint64_t b = flush_bits(), w = fp_get();
    if ((w & b) != want)
        fp_set((w & ~b) | want);
}

/* 1 where the mode can be set (x86 with SSE, AArch64). */
int rmf_fp_supported(void) { return flush_bits() != 0; }

int rmf_fp_mode(void) { return mode_of(fp_get()); }

void rmf_fp_set_mode(int mode) { put_bits(bits_of(mode) & flush_bits()); }

static atomic_int exact_subnormals = 0;

void rmf_fp_set_exact(int exact) { atomic_store(&exact_subnormals, exact ? 1 : 0); }

int rmf_fp_get_exact(void) { return atomic_load(&exact_subnormals); }

/* ------------------------------------------------------------------ */
/* The calling thread                                                 */
/* ------------------------------------------------------------------ */

/* Nesting depth and the caller's flush bits of the outermost enter. */
static _Thread_local int depth = 0, flushed = 0;
static _Thread_local uint64_t caller_bits = 0;

void rmf_fp_enter(void)
{
    if (depth++ > 0)
        return;
    const uint64_t b = flush_bits();
    const uint64_t w = fp_get();
    caller_bits = w & b;
    /* Read once per call: a switch flipped meanwhile by another thread
     * takes effect at the next call, never halfway through this one. */
    flushed = b != 0 && !atomic_load_explicit(&exact_subnormals, memory_order_relaxed);
    rmf_fp_word = flushed ? RMF_FP_ACTIVE | (w & b) : 0;
    if (flushed)
        put_bits(b);
}

void rmf_fp_leave(void)
{
    if (depth <= 0 || --depth > 0)
        return;
    if (flushed)
        put_bits(caller_bits);
    flushed = 0;
    rmf_fp_word = 0;
}

/* ------------------------------------------------------------------ */
/* Team threads                                                       */
/* ------------------------------------------------------------------ */

#ifdef _OPENMP
/* 0 until this thread has finished one region of recmf's as a team
 * member: its flush bits on entry are then its own. */
static _Thread_local int team_seen = 0;
#endif

rmf_fp_token rmf_fp_team_begin(uint64_t word)
{
    rmf_fp_token t = {0, word, 0};
    if (!(word & RMF_FP_ACTIVE))
        return t;
    const uint64_t b = flush_bits();
    t.saved = fp_get() & b;
    t.managed = 1;
    put_bits(b);
    return t;
}

void rmf_fp_team_end(rmf_fp_token t)
{
    if (!t.managed)
        return;
    uint64_t want = t.saved;
#ifdef _OPENMP
    /* A thread is born with the mode of the thread that creates it (POSIX),
     * so a pool thread that OpenMP starts for this region, from a calling
     * thread that is already flushed, enters flushed without having chosen
     * to.  Such a thread (never seen in a region before) is given the
     * calling thread's own mode instead, the one it would have been born
     * with had recmf not been computing; that also leaves the pool as the
     * next OpenMP user of this thread expects. */
    if (omp_get_thread_num() != 0) {
        if (!team_seen)
            want = t.word & flush_bits();
        team_seen = 1;
    }
#endif
    put_bits(want);
}

/* ------------------------------------------------------------------ */
/* Test hooks (tests/test_fpstate.py; not used by recmf itself)       */
/* ------------------------------------------------------------------ */

void rmf_fp_probe_recmf(int nt, int32_t *modes, int32_t *caller_mode,
                        int64_t m, int64_t n, int64_t k, const float *a,
                        const float *b, float *c)
{
    for (int t = 0; t < nt; t++)
        modes[t] = -1;
    /* What fit does: BLAS bracket, a region, a threaded sgemm. */
    int saved = rmf_blas_enter(nt);
    *caller_mode = rmf_fp_mode();
    RMF_PARALLEL(nt)
    {
        RMF_TEAM_BEGIN;
#ifdef _OPENMP
        modes[omp_get_thread_num()] = rmf_fp_mode();
#else
        modes[0] = rmf_fp_mode();
#endif
        RMF_TEAM_END;
    }
    if (m > 0 && n > 0 && k > 0)
        rmf_sgemm(0, 0, m, n, k, 1.0f, a, k, b, n, 0.0f, c, n);
    rmf_blas_leave(saved);
}

/* Test hooks.  probe_recmf does what fit does (rmf_blas_enter(nt), a
 * region, one sgemm C = A B of m x k and k x n row-major floats, or none
 * when a dimension is 0) and writes the mode of team thread t to modes[t]
 * (-1 when the team had no thread t; nt entries) and the calling thread's
 * to *caller_mode.  probe_plain runs a region that is not recmf's. */
void rmf_fp_probe_plain(int nt, int32_t *modes)
{
    for (int t = 0; t < nt; t++)
        modes[t] = -1;
    /* A plain region, as any other OpenMP user of the pool runs one: the
     * mode it shows is the one recmf left behind (RMF_PLAIN_REGION). */
#ifdef _OPENMP
#pragma omp parallel num_threads(nt)
    modes[omp_get_thread_num()] = rmf_fp_mode();
#else
    modes[0] = rmf_fp_mode();
#endif
}
