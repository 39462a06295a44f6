/* spd.h -- symmetric positive definite systems in float32, the linear
 * algebra the closed-form item-item models share (EASE, SLIST): factor
 * A + l2 I once, then invert it or solve with it. */
#ifndef RECMF_SPD_H
#define RECMF_SPD_H

#include "recmf.h"

/* Adds l2 to the diagonal of the n x n row-major matrix A (only its upper
 * triangle is read) and overwrites that triangle with its Cholesky factor
 * (LAPACK's column-major lower one), OpenBLAS on nt threads.  RMF_ERR_VALUE
 * when float32 finds A + l2 I not positive definite; the message says
 * "<what> + l2 I". */
rmf_status rmf_spd_factor(int32_t n, float *A, float l2, int nt, const char *what, rmf_error *err);

/* The upper triangle of the factored A becomes that of (A + l2 I)^-1
 * (spotri); the strict lower triangle is left as it was. */
rmf_status rmf_spd_inverse(int32_t n, float *A, int nt, rmf_error *err);

/* B = (A + l2 I)^-1 B for a row-major n x n B, from the factor: two
 * triangular solves (n^3 flops each), no inverse formed.
 *
 * All three poll Ctrl-C (runtime/stop.c) and return RMF_ERR_INTERRUPTED,
 * with the matrices incomplete, when the call is stopped. */
rmf_status rmf_spd_solve(int32_t n, const float *A, float *B, int nt, rmf_error *err);

#endif /* RECMF_SPD_H */
