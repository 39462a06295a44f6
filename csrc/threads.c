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
    if (requested <= 0)
        return omp_get_num_procs();
    return requested;
#else
    (void)requested;
    return 1;
#endif
}
