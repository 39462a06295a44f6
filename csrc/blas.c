/* blas.c -- the only file that names BLAS symbols.  The default build links
 * the scipy-openblas32 wheel, whose symbols carry a "scipy_" prefix; a
 * system OpenBLAS has none.  setup.py defines RMF_BLAS_PREFIX accordingly. */
#include "recmf.h"

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

int rmf_blas_get_threads(void) { return RMF_BLAS(openblas_get_num_threads)(); }

void rmf_blas_set_threads(int n) { RMF_BLAS(openblas_set_num_threads)(n); }

const char *rmf_blas_config(void) { return RMF_BLAS(openblas_get_config)(); }
