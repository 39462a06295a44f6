/* threads.c -- OpenMP is optional: builds without it run every parallel
 * loop on one thread and give the same results.  Also the process
 * lifecycle: what a child of fork() may do with recmf's threads. */
#include "recmf.h"

#include <stdatomic.h>

#ifdef _OPENMP
#include <omp.h>
#endif
#if defined(_OPENMP) && defined(__unix__)
#include <pthread.h>
#define RMF_HAVE_ATFORK 1
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

/* ------------------------------------------------------------------ */
/* fork()                                                             */
/* ------------------------------------------------------------------ */
/* libgomp keeps a pool of threads per thread that starts regions, and
 * fork() copies only the forking thread: in the child the pool's threads
 * are gone but libgomp still counts on them, so the first region of two
 * threads or more waits forever (GCC PR 60035; OpenBLAS #294 and
 * faiss #5206 are the same hang).  OpenBLAS's jobs run on those teams
 * (blas.c), so BLAS hangs too.
 *
 * Before the fork, the forking thread's pool is released with OpenMP 5's
 * omp_pause_resource_all (libgomp frees the calling thread's pool, after
 * joining its threads, and starts a new one at the next region; proposed
 * for OpenBLAS's own fork handler in OpenBLAS PR 4080): the child then runs
 * every region with all its threads and gives the parent's results.  Only
 * when teams were used, so a fork in a process that never ran recmf's
 * threads (a multiprocessing forkserver, say) costs nothing.  If the
 * release is refused (a forking thread inside a parallel region), or the
 * runtime is not libgomp (LLVM's libomp pauses every thread of the process,
 * not only the forking one's), the child runs every region on one thread
 * instead: rmf_team_size, with BLAS jobs on plain threads (blas.c), so the
 * work is split exactly as in the parent and results stay equal. */

/* Work in flight.  fork() copies only the forking thread, and a lock that
 * another thread holds at that moment stays locked in the child forever:
 * OpenBLAS's server_lock (taken to change its thread count) and allocation
 * lock, libgomp's team locks.  So fork() waits until no recmf call is
 * running in another thread (new ones wait until the fork is done), and a
 * training loop lets a waiting fork() through between batches, where it
 * holds no lock (rmf_work_yield): a fork waits for at most one batch, one
 * recommend or one score call. */
#ifdef RMF_HAVE_ATFORK
static pthread_mutex_t work_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t work_cv = PTHREAD_COND_INITIALIZER;
static int work_active = 0, forking = 0;
static _Thread_local int my_work = 0;
#endif

void rmf_work_begin(void)
{
#ifdef RMF_HAVE_ATFORK
    pthread_mutex_lock(&work_mu);
    while (forking)
        pthread_cond_wait(&work_cv, &work_mu);
    work_active++;
    my_work++;
    pthread_mutex_unlock(&work_mu);
#endif
}

void rmf_work_end(void)
{
#ifdef RMF_HAVE_ATFORK
    if (my_work <= 0)
        return;
    pthread_mutex_lock(&work_mu);
    my_work--;
    work_active--;
    if (forking) /* before_fork waits for the count to drop */
        pthread_cond_broadcast(&work_cv);
    pthread_mutex_unlock(&work_mu);
#endif
}

int rmf_work_yield(rmf_stop_fn stop, void *stop_ctx)
{
    /* The stop hook takes the GIL, which a thread calling os.fork() holds:
     * it must not run while this thread keeps a fork waiting. */
#ifdef RMF_HAVE_ATFORK
    int held = my_work > 0;
    if (held)
        rmf_work_end();
#endif
    int stopped = stop != NULL && stop(stop_ctx);
#ifdef RMF_HAVE_ATFORK
    if (held)
        rmf_work_begin();
#endif
    return stopped;
}

static atomic_int teams_used = 0;    /* a region asked for > 1 thread */
static atomic_int fork_child = 0;    /* bit 0 / bit 1 of rmf_fork_state */
static atomic_int release_on = 1;    /* test hook */
#ifdef RMF_HAVE_ATFORK
static atomic_int released = 0;      /* the last prepare released the pool */
#endif
static atomic_int fallback_note = 0; /* 0 none, 1 pending, 2 reported */

int rmf_team_size(int nt)
{
    if (nt <= 1)
        return 1;
    if (atomic_load_explicit(&fork_child, memory_order_relaxed) & 2) {
        int none = 0;
        atomic_compare_exchange_strong(&fallback_note, &none, 1);
        return 1;
    }
    if (!atomic_load_explicit(&teams_used, memory_order_relaxed))
        atomic_store(&teams_used, 1);
    return nt;
}

#ifdef RMF_HAVE_ATFORK
static void before_fork(void)
{
    /* Held until the fork is done (after_fork_*): no recmf call starts. */
    pthread_mutex_lock(&work_mu);
    forking = 1;
    while (work_active > my_work)
        pthread_cond_wait(&work_cv, &work_mu);
    int ok = 0;
#if defined(__GNUC__) && !defined(__clang__)
    /* Never in a child that runs on one thread: its pool's threads are
     * gone, and releasing the pool would wait for them forever. */
    if (atomic_load(&teams_used) && atomic_load(&release_on) &&
        !(atomic_load(&fork_child) & 2))
        ok = omp_pause_resource_all(omp_pause_soft) == 0;
#endif
    atomic_store(&released, ok);
}

static void after_fork_parent(void)
{
    forking = 0;
    pthread_cond_broadcast(&work_cv);
    pthread_mutex_unlock(&work_mu);
}

static void after_fork_child(void)
{
    /* The threads that waited on work_cv do not exist here. */
    pthread_cond_init(&work_cv, NULL);
    forking = 0;
    work_active = my_work;
    pthread_mutex_unlock(&work_mu);
    if (!atomic_load(&teams_used))
        return;
    int state = 1 | (atomic_load(&released) ? 0 : 2);
    atomic_fetch_or(&fork_child, state);
}
#endif

int rmf_runtime_init(void)
{
#ifdef RMF_HAVE_ATFORK
    static atomic_int done = 0;
    if (atomic_exchange(&done, 1))
        return 0;
    return pthread_atfork(before_fork, after_fork_parent, after_fork_child);
#else
    return 0;
#endif
}

int rmf_fork_state(void) { return atomic_load(&fork_child); }

int rmf_fork_fallback_notice(void)
{
    int pending = 1;
    return atomic_compare_exchange_strong(&fallback_note, &pending, 2);
}

void rmf_fork_set_release(int on) { atomic_store(&release_on, on ? 1 : 0); }
