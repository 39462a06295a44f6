/* spd.c -- float32 Cholesky factor, inverse and solve (spd.h).
 *
 * Row-major and column-major: a row-major n x n buffer read column-major is
 * its transpose.  The upper triangle of a row-major symmetric matrix is the
 * lower triangle of the same matrix column-major, which is what LAPACK's
 * 'L' routines read.  For the solve, a row-major B read column-major is
 * B^T, and (A^-1 B)^T = B^T A^-1 = B^T L^-T L^-1 (A = L L^T symmetric):
 * two right-side triangular solves on the buffer as it lies. */
#include "runtime/runtime.h"
#include "runtime/spd.h"

rmf_status rmf_spd_factor(int32_t n, float *A, float l2, int nt, const char *what, rmf_error *err)
{
    rmf_stop *stop = rmf_stop_here();
    if (rmf_stopping(stop)) /* between the phases: Ctrl-C (runtime/stop.c) */
        return rmf_fail(err, RMF_ERR_INTERRUPTED, "interrupted");
    for (int32_t i = 0; i < n; i++)
        A[(int64_t)i * n + i] += l2;
    int saved = rmf_blas_enter(nt);
    int info = rmf_spotrf_lower(n, A, n); /* polls between its blocks */
    rmf_blas_leave(saved);
    if (rmf_stopping(stop))
        return rmf_fail(err, RMF_ERR_INTERRUPTED, "interrupted");
    if (info != 0)
        return rmf_fail(err, RMF_ERR_VALUE,
                        "%s + l2 I is not positive definite in float32 (LAPACK info %d): l2 = %g is "
                        "too small for these data", what, info, (double)l2);
    return RMF_OK;
}

rmf_status rmf_spd_inverse(int32_t n, float *A, int nt, rmf_error *err)
{
    if (rmf_stopping(rmf_stop_here())) /* spotri is one LAPACK call: poll before it */
        return rmf_fail(err, RMF_ERR_INTERRUPTED, "interrupted");
    int saved = rmf_blas_enter(nt);
    int info = rmf_spotri_lower(n, A, n);
    rmf_blas_leave(saved);
    if (info != 0)
        return rmf_fail(err, RMF_ERR_VALUE, "the Cholesky factor is singular in float32 (LAPACK info %d)",
                        info);
    return RMF_OK;
}

/* Each row of B^T (column-major) is solved on its own, so the rows are cut
 * into fixed parts, one single-threaded OpenBLAS call pair per part on the
 * team: OpenBLAS's strsm runs on one thread even when asked for more (at
 * n = 3,525 both solves took 3x the time of its threaded sgemm's flops). */
enum { SOLVE_PARTS_PER_THREAD = 2 };

rmf_status rmf_spd_solve(int32_t n, const float *A, float *B, int nt, rmf_error *err)
{
    const int parts = nt * SOLVE_PARTS_PER_THREAD;
    rmf_stop *stop = rmf_stop_here();
    rmf_fp_enter();
    int blas_threads = rmf_blas_single_begin();
    RMF_PARALLEL(nt)
    {
        RMF_TEAM_BEGIN;
        OMP(omp for schedule(dynamic, 1) nowait)
        for (int p = 0; p < parts; p++) {
            if (rmf_stopping(stop))
                continue;
            const int32_t r0 = (int32_t)((int64_t)n * p / parts), r1 = (int32_t)((int64_t)n * (p + 1) / parts);
            rmf_strsm_right_lower(1, r1 - r0, n, A, n, B + r0, n); /* B^T L^-T */
            rmf_strsm_right_lower(0, r1 - r0, n, A, n, B + r0, n); /* ... L^-1 */
        }
        RMF_TEAM_END;
    }
    rmf_blas_single_end(blas_threads);
    rmf_fp_leave();
    if (rmf_stopped(stop))
        return rmf_fail(err, RMF_ERR_INTERRUPTED, "interrupted");
    return RMF_OK;
}
