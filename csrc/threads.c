/* threads.c -- OpenMP is optional: builds without it run every parallel
 * loop on one thread and give the same results.  Also the process
 * lifecycle: what a child of fork() may do with recmf's threads. */
#include "internal.h"

#include <stdatomic.h>
#include <string.h>
#include <time.h>

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

/* The pacer's cap on this thread's regions (0: none). */
static _Thread_local int team_cap = 0;

int rmf_team_size(int nt)
{
    if (nt <= 1)
        return 1;
    if (team_cap > 0 && team_cap < nt)
        nt = team_cap;
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

/* ------------------------------------------------------------------ */
/* Pacing: the team size, batch by batch                              */
/* ------------------------------------------------------------------ */
/* Why: when another program keeps a core busy, a team of two threads on
 * two cores is slower than one thread -- every barrier and every
 * OpenBLAS job waits for the thread the scheduler put behind the
 * neighbour, a time slice at a time (issue 8: a NeuralMF epoch took 7.0 s
 * on 2 threads against 3.4 s on 1).  No spin setting fixes both sides
 * (benchmarks/contention.py: passive waiting costs a quarter of the idle
 * speed).  So a training loop measures: it runs its batches on the full
 * team, tries one thread now and then, and keeps whichever took less time
 * per unit of work, re-trying the other at growing intervals (16 to 128
 * batches) so a neighbour that comes or goes is noticed.  The work is split
 * by the logical count either way (rmf_resolve_threads), so the team size
 * changes the time, never the results. */

/* A probe runs PACE_PROBE batches and keeps the cheapest: its first batch
 * after a stretch on one thread pays for waking the other threads (and,
 * in a virtual machine, their halted vCPUs), which would make the full
 * team look dearer than it is. */
enum { PACE_FIRST_PROBE = 2, PACE_PROBE = 2, PACE_MIN_GAP = 16, PACE_MAX_GAP = 128 };

/* Test hook: 0 = measure; 1 = always one thread; 2 = alternate one thread
 * and the full team, batch by batch; 3 = always the full team (no pacing,
 * for benchmarks/contention.py). */
static atomic_int pace_forced = 0;

void rmf_pacer_force(int mode) { atomic_store(&pace_forced, mode); }

void rmf_pacer_init(rmf_pacer *pc, int nt)
{
    memset(pc, 0, sizeof *pc);
    pc->nt = nt < 1 ? 1 : nt;
    pc->size = pc->nt;
    pc->best = 1;
    pc->next_probe = PACE_FIRST_PROBE;
    pc->gap = PACE_MIN_GAP;
}

int rmf_pacer_next(rmf_pacer *pc)
{
    if (pc->nt <= 1)
        return pc->size = 1;
    int forced = atomic_load_explicit(&pace_forced, memory_order_relaxed);
    int which;
    if (forced == 1)
        which = 0;
    else if (forced == 2)
        which = (int)(pc->step & 1);
    else if (forced == 3)
        which = 1;
    else if (pc->step >= pc->next_probe && pc->step < pc->next_probe + PACE_PROBE)
        which = 1 - pc->best; /* the probe: the other size, briefly */
    else
        which = pc->best;
    pc->which = which;
    return pc->size = which ? pc->nt : 1;
}

void rmf_pacer_record(rmf_pacer *pc, double seconds, double units)
{
    const int64_t step = pc->step++;
    if (pc->size == pc->nt)
        pc->full_steps++;
    if (pc->nt <= 1 || step == 0 || !(units > 0.0) || !(seconds >= 0.0))
        return; /* the first batch pays for the team's start: not counted */
    const int w = pc->which;
    const double c = seconds / units;
    if (step >= pc->next_probe && step < pc->next_probe + PACE_PROBE) {
        /* A probe replaces the old estimate of the size it tried (that one
         * may be far out of date) with its cheapest batch. */
        pc->probe_min = step == pc->next_probe || c < pc->probe_min ? c : pc->probe_min;
        if (step < pc->next_probe + PACE_PROBE - 1)
            return;
        pc->cost[w] = pc->probe_min;
        pc->seen[w] = 1;
        int was = pc->best;
        if (pc->seen[1 - w])
            pc->best = pc->cost[0] < pc->cost[1] ? 0 : 1;
        pc->gap = pc->best != was ? PACE_MIN_GAP
                  : (pc->gap * 2 < PACE_MAX_GAP ? pc->gap * 2 : PACE_MAX_GAP);
        pc->next_probe = step + pc->gap;
    } else {
        pc->cost[w] = pc->seen[w] ? 0.75 * pc->cost[w] + 0.25 * c : c;
        pc->seen[w] = 1;
        if (pc->seen[1 - w] && pc->cost[w] > pc->cost[1 - w]) {
            /* The size in use got dearer than the other's last figure:
             * switch now, and check the choice soon. */
            pc->best = 1 - w;
            pc->gap = PACE_MIN_GAP;
            pc->next_probe = step + pc->gap;
        }
    }
}

double rmf_now(void)
{
#ifdef _OPENMP
    return omp_get_wtime();
#else
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
#endif
}

int rmf_pacer_begin(rmf_pacer *pc)
{
    int size = rmf_pacer_next(pc);
    team_cap = size;
    pc->t0 = rmf_now();
    return size;
}

void rmf_pacer_end(rmf_pacer *pc, double units)
{
    rmf_pacer_record(pc, rmf_now() - pc->t0, units);
}

double rmf_pacer_mean_team(const rmf_pacer *pc)
{
    if (pc->step == 0 || pc->nt <= 1)
        return (double)pc->nt;
    return ((double)pc->full_steps * pc->nt + (double)(pc->step - pc->full_steps)) / (double)pc->step;
}

void rmf_pacer_finish(rmf_pacer *pc)
{
    (void)pc;
    team_cap = 0;
}

void rmf_pacer_trace(int nt, int64_t n, const double *cost_one,
                     const double *cost_full, int32_t *sizes)
{
    rmf_pacer pc;
    rmf_pacer_init(&pc, nt);
    for (int64_t b = 0; b < n; b++) {
        int size = rmf_pacer_next(&pc);
        sizes[b] = size;
        rmf_pacer_record(&pc, size == 1 && nt > 1 ? cost_one[b] : cost_full[b], 1.0);
    }
}
