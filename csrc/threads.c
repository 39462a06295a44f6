/* threads.c -- OpenMP is optional: builds without it run every parallel
 * loop on one thread and give the same results. */
#include "recmf.h"

#ifdef _OPENMP
#include <omp.h>
#endif

int rmf_has_openmp(void)
{
#ifdef _OPENMP
    return 1;
#else
    return 0;
#endif
}

int rmf_resolve_threads(int requested)
{
#ifdef _OPENMP
    int n = requested > 0 ? requested : omp_get_num_procs();
    /* OpenBLAS's jobs need a full team each (blas.c), and OpenMP never
     * gives more threads than its limit (OMP_THREAD_LIMIT). */
    int limit = omp_get_thread_limit();
    return n < limit ? n : limit;
#else
    (void)requested;
    return 1;
#endif
}
