/* spd.c -- float32 Cholesky factor, inverse and solve (spd.h).
 *
 * Row-major and column-major: a row-major n x n buffer read column-major is
 * its transpose.  The upper triangle of a row-major symmetric matrix is the
 * lower triangle of the same matrix column-major, which is what LAPACK's
 * 'L' routines read.  For the solve, a row-major B read column-major is
 * B^T, and (A^-1 B)^T = B^T A^-1 = B^T L^-T L^-1 (A = L L^T symmetric):
 * two right-side triangular solves on the buffer as it lies. */
#include "runtime/spd.h"

rmf_status rmf_spd_factor(int32_t n, float *A, float l2, int nt, const char *what, rmf_error *err)
{
    for (int32_t i = 0; i < n; i++)
        A[(int64_t)i * n + i] += l2;
    int saved = rmf_blas_enter(nt);
    int info = rmf_spotrf_lower(n, A, n);
    rmf_blas_leave(saved);
    if (info != 0)
        return rmf_fail(err, RMF_ERR_VALUE,
                        "%s + l2 I is not positive definite in float32 (LAPACK info %d): l2 = %g is "
                        "too small for these data", what, info, (double)l2);
    return RMF_OK;
}

rmf_status rmf_spd_inverse(int32_t n, float *A, int nt, rmf_error *err)
{
    int saved = rmf_blas_enter(nt);
    int info = rmf_spotri_lower(n, A, n);
    rmf_blas_leave(saved);
    if (info != 0)
        return rmf_fail(err, RMF_ERR_VALUE, "the Cholesky factor is singular in float32 (LAPACK info %d)",
                        info);
    return RMF_OK;
}

void rmf_spd_solve(int32_t n, const float *A, float *B, int nt)
{
    int saved = rmf_blas_enter(nt);
    rmf_strsm_right_lower(1, n, n, A, n, B, n); /* B^T L^-T */
    rmf_strsm_right_lower(0, n, n, A, n, B, n); /* ... L^-1 */
    rmf_blas_leave(saved);
}
