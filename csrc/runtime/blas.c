/* blas.c -- the only file that names BLAS symbols.  The default build links
 * the library of the scipy-openblas32 wheel (copied into recmf.libs/ under
 * recmf's own name, setup.py), whose symbols carry a "scipy_" prefix; a
 * system OpenBLAS has none.  setup.py defines RMF_BLAS_PREFIX accordingly. */
#include "runtime/runtime.h"

#include <stdatomic.h>
#include <stddef.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#ifndef RMF_BLAS_PREFIX
#define RMF_BLAS_PREFIX
#endif
#define RMF_CAT2(a, b) a##b
#define RMF_CAT(a, b) RMF_CAT2(a, b)
#define RMF_BLAS(name) RMF_CAT(RMF_BLAS_PREFIX, name)

/* Declared here rather than taken from cblas.h so the build does not depend
 * on which header a BLAS vendor ships; the enum values are the standard
 * CBLAS ones. */
enum { RMF_CBLAS_ROW_MAJOR = 101 };
enum { RMF_CBLAS_NO_TRANS = 111, RMF_CBLAS_TRANS = 112 };

void RMF_BLAS(cblas_sgemm)(int order, int transa, int transb, int m, int n,
                           int k, float alpha, const float *a, int lda,
                           const float *b, int ldb, float beta, float *c,
                           int ldc);
int RMF_BLAS(openblas_get_num_threads)(void);
void RMF_BLAS(openblas_set_num_threads)(int n);
char *RMF_BLAS(openblas_get_config)(void);

/* Caller-managed threading (OpenBLAS >= 0.3.27, cblas.h): OpenBLAS hands
 * its per-thread jobs to a callback instead of waking its own pthreads.
 * Weak, so a system OpenBLAS without it still links; then it is NULL. */
typedef void (*rmf_blas_dojob)(int thread_num, void *jobdata, int dojob_data);
typedef void (*rmf_blas_threads_fn)(int sync, rmf_blas_dojob dojob, int numjobs,
                                    size_t jobdata_elsize, void *jobdata,
                                    int dojob_data);
void RMF_BLAS(openblas_set_threads_callback_function)(rmf_blas_threads_fn fn)
    __attribute__((weak));

void rmf_sgemm(int trans_a, int trans_b, int64_t m, int64_t n, int64_t k,
               float alpha, const float *a, int64_t lda, const float *b,
               int64_t ldb, float beta, float *c, int64_t ldc)
{
    if (m == 0 || n == 0)
        return;
    /* The 32-bit-int BLAS: callers keep every dimension below 2^31 by
     * working in blocks. */
    RMF_BLAS(cblas_sgemm)(RMF_CBLAS_ROW_MAJOR,
                          trans_a ? RMF_CBLAS_TRANS : RMF_CBLAS_NO_TRANS,
                          trans_b ? RMF_CBLAS_TRANS : RMF_CBLAS_NO_TRANS,
                          (int)m, (int)n, (int)k, alpha, a, (int)lda, b,
                          (int)ldb, beta, c, (int)ldc);
}

/* OpenBLAS's thread count is one number for the whole process.  Results
 * never depend on it except where a caller asks for one-thread BLAS
 * (rmf_blas_single_begin: NeuralMF's weight gradient, models/neuralmf.c): so every
 * change of the count takes this lock, and a one-thread stretch holds it,
 * so a fit in another Python thread cannot raise the count under it. */
#ifdef _OPENMP
#include <pthread.h>
static pthread_mutex_t count_mu = PTHREAD_MUTEX_INITIALIZER;
static void count_lock(void) { pthread_mutex_lock(&count_mu); }
static void count_unlock(void) { pthread_mutex_unlock(&count_mu); }
#else
static void count_lock(void) {}
static void count_unlock(void) {}
#endif

/* Jobs OpenBLAS handed to the callback (tests check work was split). */
static atomic_llong jobs_run = 0;

long long rmf_blas_jobs_run(void) { return atomic_load(&jobs_run); }

#ifdef _OPENMP
#include <pthread.h>

/* Why: with OpenBLAS's own pthreads, a training batch alternates between
 * two thread pools that both busy-wait after their work (OpenBLAS for
 * ~2^28 cycles, libgomp for ~300k spins).  On 2 cores the idle pool's
 * spinners steal the cores from the busy one: a NeuralMF epoch took 3x
 * LONGER on 2 threads than on 1.  Running OpenBLAS's jobs on libgomp's
 * team leaves one pool that is either working or waiting for work.
 *
 * OpenBLAS's level-3 jobs wait for each other's packed panels, so every
 * job needs its own thread, all at once: one thread per job, never a loop
 * of jobs over a smaller team.  recmf asks for a team of numjobs (dynamic
 * adjustment off) and calls BLAS inside a parallel region only with
 * OpenBLAS on one thread (rmf_blas_single_begin: no jobs), but the
 * callback serves every caller of this OpenBLAS, and a team can come out
 * smaller (a nested region, OMP_THREAD_LIMIT): the jobs the team cannot
 * take then get plain threads of their own rather than deadlocking. */
typedef struct {
    rmf_blas_dojob dojob;
    int job, dojob_data;
    void *jobdata;
    uint64_t fp_word; /* the calling thread's, as a team thread gets it */
} blas_job;

static void *run_blas_job(void *arg)
{
    blas_job *b = arg;
    rmf_fp_token fp = rmf_fp_team_begin(b->fp_word);
    b->dojob(b->job, b->jobdata, b->dojob_data);
    rmf_fp_team_end(fp);
    return NULL;
}

/* Starts jobs [first, numjobs) on new threads; returns how many started
 * (the rest, if creation fails, are run by the caller after its own). */
static int start_extra_jobs(blas_job *extra, pthread_t *tid, int first,
                            int numjobs, rmf_blas_dojob dojob, char *jobdata,
                            size_t elsize, int dojob_data)
{
    int started = 0;
    for (int j = first; j < numjobs; j++, started++) {
        extra[started] = (blas_job){dojob, j, dojob_data, jobdata + (size_t)j * elsize,
                                    rmf_fp_word};
        if (pthread_create(&tid[started], NULL, run_blas_job, &extra[started]) != 0)
            break;
    }
    return started;
}

static void blas_jobs_on_openmp(int sync, rmf_blas_dojob dojob, int numjobs,
                                size_t jobdata_elsize, void *jobdata,
                                int dojob_data)
{
    (void)sync; /* we join before returning: always synchronous */
    atomic_fetch_add_explicit(&jobs_run, numjobs, memory_order_relaxed);
    char *base = jobdata;
    if (numjobs == 1) {
        dojob(0, base, dojob_data);
        return;
    }
    /* At most OpenBLAS's MAX_THREADS jobs (64 in the wheel). */
    enum { MAX_EXTRA = 256 };
    blas_job extra[MAX_EXTRA];
    pthread_t tid[MAX_EXTRA];
    int n_extra = 0, team = numjobs;
    int dynamic = omp_get_dynamic();
    omp_set_dynamic(0);
    /* A region like every other (recmf.h): the jobs compute in the
     * calling thread's floating-point mode, flushed when recmf called. */
    RMF_PARALLEL(numjobs)
    {
        RMF_TEAM_BEGIN;
        int j = omp_get_thread_num();
        if (j == 0) {
            team = omp_get_num_threads();
            if (team < numjobs && numjobs - team <= MAX_EXTRA)
                n_extra = start_extra_jobs(extra, tid, team, numjobs, dojob, base,
                                           jobdata_elsize, dojob_data);
        }
        dojob(j, base + (size_t)j * jobdata_elsize, dojob_data);
        RMF_TEAM_END;
    }
    omp_set_dynamic(dynamic);
    for (int k = 0; k < n_extra; k++)
        pthread_join(tid[k], NULL);
    /* Only if thread creation failed: run what is left here, last resort
     * (in the calling thread's mode already). */
    for (int j = team + n_extra; j < numjobs; j++)
        dojob(j, base + (size_t)j * jobdata_elsize, dojob_data);
}
#endif

/* Whether rmf_blas_use_openmp_threads installed the callback. */
static int jobs_on_openmp = 0;

int rmf_blas_use_openmp_threads(void)
{
#ifdef _OPENMP
    if (!jobs_on_openmp && RMF_BLAS(openblas_set_threads_callback_function) != NULL) {
        RMF_BLAS(openblas_set_threads_callback_function)(blas_jobs_on_openmp);
        jobs_on_openmp = 1;
    }
#endif
    return jobs_on_openmp;
}

/* Calls between rmf_blas_enter and rmf_blas_leave, in all threads, and
 * the user's count from before the first of them (under count_mu): calls
 * from several Python threads at once neither save each other's counts
 * nor put back one in the wrong order; the last to leave restores the
 * user's. */
static int enter_depth = 0, user_count = 1;

int rmf_blas_enter(int nt)
{
    /* Work bracketed for BLAS is float work: flush subnormals for it. */
    rmf_fp_enter();
    count_lock();
    if (enter_depth++ == 0)
        user_count = RMF_BLAS(openblas_get_num_threads)();
    /* Without the callback (an OpenBLAS older than 0.3.27), OpenBLAS's own
     * spinning pthreads and the OpenMP team would share the cores: a
     * NeuralMF epoch on 2 threads took 11.9 s against 5.8 s with BLAS on
     * one thread, so BLAS then runs on the calling thread alone. */
    RMF_BLAS(openblas_set_num_threads)(jobs_on_openmp ? nt : 1);
    const int saved = user_count > 0 ? user_count : 1;
    count_unlock();
    return saved;
}

int rmf_blas_single_begin(void)
{
    count_lock();
    int saved = RMF_BLAS(openblas_get_num_threads)();
    if (saved != 1)
        RMF_BLAS(openblas_set_num_threads)(1);
    return saved;
}

void rmf_blas_single_end(int saved)
{
    if (saved != 1)
        RMF_BLAS(openblas_set_num_threads)(saved);
    count_unlock();
}

void rmf_blas_leave(int saved)
{
    /* saved <= 0: rmf_blas_enter was not called (an early exit). */
    if (saved > 0) {
        count_lock();
        if (--enter_depth == 0)
            RMF_BLAS(openblas_set_num_threads)(user_count);
        count_unlock();
        rmf_fp_leave();
    }
}

int rmf_blas_get_threads(void) { return RMF_BLAS(openblas_get_num_threads)(); }

void rmf_blas_set_threads(int n)
{
    count_lock();
    RMF_BLAS(openblas_set_num_threads)(n);
    count_unlock();
}

const char *rmf_blas_config(void) { return RMF_BLAS(openblas_get_config)(); }

const char *rmf_blas_library(void) { return rmf_library_of((const void *)&RMF_BLAS(cblas_sgemm)); }

/* LAPACK from the same OpenBLAS: the wheel exports scipy_spotrf_ and
 * scipy_spotri_, Debian 12's libopenblas0 (0.3.21) spotrf_ and spotri_
 * but no LAPACKE_*, hence the Fortran interface.  The trailing length of
 * the character argument is what gfortran-compiled LAPACK expects and is
 * ignored by OpenBLAS's own C implementations. */
void RMF_BLAS(spotrf_)(const char *uplo, const int *n, float *a, const int *lda, int *info,
                       size_t uplo_len);
void RMF_BLAS(spotri_)(const char *uplo, const int *n, float *a, const int *lda, int *info,
                       size_t uplo_len);

void RMF_BLAS(cblas_strsm)(int order, int side, int uplo, int transa, int diag, int m, int n,
                           float alpha, const float *a, int lda, float *b, int ldb);
void RMF_BLAS(cblas_ssyrk)(int order, int uplo, int trans, int n, int k, float alpha,
                           const float *a, int lda, float beta, float *c, int ldc);
enum { RMF_CBLAS_COL_MAJOR = 102, RMF_CBLAS_LOWER = 122, RMF_CBLAS_RIGHT = 142,
       RMF_CBLAS_NON_UNIT = 131 };

/* Orders above this go through the recursion below, not OpenBLAS's
 * spotrf: the scipy-openblas32 wheel (0.3.34, SkylakeX kernels) crashes
 * inside spotrf_L_single (sgemm_otcopy) at n = 20000, also in a plain C
 * program; n = 8000 works. */
enum { RMF_POTRF_DIRECT_MAX = 4096 };

int rmf_spotrf_lower(int n, float *a, int lda)
{
    return rmf_spotrf_lower_blocked(n, a, lda, RMF_POTRF_DIRECT_MAX);
}

int rmf_spotrf_lower_blocked(int n, float *a, int lda, int direct_max)
{
    int info = 0;
    if (n <= direct_max || direct_max < 1) {
        RMF_BLAS(spotrf_)("L", &n, a, &lda, &info, 1);
        return info;
    }
    /* [A11 . ; A21 A22] = [L11 0; L21 L22] [L11 0; L21 L22]^T, column-major
     * lower: L11 = chol(A11), L21 = A21 L11^-T, L22 = chol(A22 - L21 L21^T).
     * Same flops as spotrf, all in level-3 BLAS. */
    const int align = direct_max >= 256 ? 256 : 1;
    const int n1 = (n / 2 + align - 1) / align * align, n2 = n - n1;
    float *a21 = a + n1, *a22 = a + n1 + (size_t)n1 * (size_t)lda;
    info = rmf_spotrf_lower_blocked(n1, a, lda, direct_max);
    /* Ctrl-C between blocks (runtime/stop.c): the caller drops a stopped result */
    if (info != 0 || rmf_stopping(rmf_stop_here()))
        return info;
    RMF_BLAS(cblas_strsm)(RMF_CBLAS_COL_MAJOR, RMF_CBLAS_RIGHT, RMF_CBLAS_LOWER, RMF_CBLAS_TRANS,
                          RMF_CBLAS_NON_UNIT, n2, n1, 1.0f, a, lda, a21, lda);
    RMF_BLAS(cblas_ssyrk)(RMF_CBLAS_COL_MAJOR, RMF_CBLAS_LOWER, RMF_CBLAS_NO_TRANS, n2, n1, -1.0f,
                          a21, lda, 1.0f, a22, lda);
    info = rmf_spotrf_lower_blocked(n2, a22, lda, direct_max);
    return info != 0 ? info + n1 : 0;
}

void rmf_strsm_right_lower(int trans, int m, int n, const float *a, int lda, float *b, int ldb)
{
    if (m == 0 || n == 0)
        return;
    RMF_BLAS(cblas_strsm)(RMF_CBLAS_COL_MAJOR, RMF_CBLAS_RIGHT, RMF_CBLAS_LOWER,
                          trans ? RMF_CBLAS_TRANS : RMF_CBLAS_NO_TRANS, RMF_CBLAS_NON_UNIT, m, n,
                          1.0f, a, lda, b, ldb);
}

int rmf_spotri_lower(int n, float *a, int lda)
{
    int info = 0;
    RMF_BLAS(spotri_)("L", &n, a, &lda, &info, 1);
    return info;
}
