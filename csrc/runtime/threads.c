/* threads.c -- OpenMP is optional: builds without it run every parallel
 * loop on one thread and give the same results.  Also the process
 * lifecycle: what a child of fork() may do with recmf's threads. */
#define _GNU_SOURCE /* dladdr */
#include "runtime/runtime.h"

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
#ifdef __unix__
#include <dlfcn.h>
#endif

int rmf_has_openmp(void)
{
#ifdef _OPENMP
    return 1;
#else
    return 0;
#endif
}

const char *rmf_library_of(const void *fn)
{
#ifdef __unix__
    Dl_info info;
    if (fn != NULL && dladdr(fn, &info) != 0 && info.dli_fname != NULL && info.dli_fname[0] != '\0')
        return info.dli_fname;
#endif
    (void)fn;
    return NULL;
}

const char *rmf_openmp_library(void)
{
#ifdef _OPENMP
    return rmf_library_of((const void *)&omp_get_max_threads);
#else
    return NULL;
#endif
}

/* The most threads a call asks for unless the machine has more cores: a
 * bigger team only oversubscribes the cores, and libgomp keeps a team's
 * bookkeeping on the caller's stack (one alloca entry per thread), so
 * n_threads=100000 overflowed it and crashed the process (issue 20). */
#define RMF_MAX_THREADS 256

/* Number of threads a call works with for a requested count (<= 0 means
 * "all cores"); 1 when built without OpenMP.  This is the logical count:
 * it fixes how work and BLAS jobs are split, so results do not depend on
 * how many threads a region really gets (rmf_team_size). */
int rmf_resolve_threads(int requested)
{
#ifdef _OPENMP
    int procs = omp_get_num_procs();
    int n = requested > 0 ? requested : procs;
    int cap = procs > RMF_MAX_THREADS ? procs : RMF_MAX_THREADS;
    if (n > cap)
        n = cap;
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
 * two cores is slower than one thread -- every barrier waits for the
 * thread the scheduler put behind the neighbour, a time slice at a time
 * (issue 8: a NeuralMF epoch took 7.0 s on 2 threads against 3.4 s on 1).
 * No spin setting fixes both sides (benchmarks/contention.py: passive
 * waiting costs a quarter of the idle speed).  So a training loop
 * measures: it runs its batches on the full team, now and then runs a few
 * on the other size (a probe), and keeps whichever costs less time per
 * unit of work.  The work is split by the logical count either way
 * (rmf_resolve_threads), so the team size changes the time, never the
 * results.
 *
 * The rules, each from a way a first version went wrong on an idle 2-vCPU
 * virtual machine (it ran 11% of its batches on one thread, 11% slower):
 *   - The first batch after the size changes pays for waking threads (in
 *     a VM, halted vCPUs) and is not measured.
 *   - Like is compared with like: the probe's mean against the mean of the
 *     size in use, and a switch needs a 10% gain, so noise between two
 *     close sizes does not flip them back and forth.
 *   - Decisions are made at the end of a probe only.  Probes come at gaps
 *     that double from PACE_MIN_GAP to PACE_MAX_GAP while the choice
 *     holds; a size in use that gets much dearer than it was when chosen
 *     (a neighbour arrived) asks for a probe PACE_SETTLE batches later. */

enum {
    PACE_FIRST_PROBE = 8, /* the first probe: after 7 measured batches */
    PACE_PROBE = 3,       /* batches per probe, the first not measured */
    PACE_MIN_GAP = 32,
    PACE_MAX_GAP = 256,
    PACE_SETTLE = 3,      /* batches from an alarm to its probe */
};
#define PACE_GAIN 0.90   /* switch when the probe costs < 90% */
#define PACE_ALARM 1.60  /* probe now when the size in use costs 1.6x */

/* Test hook: 0 = measure; 1 = always one thread; 2 = alternate one thread
 * and the full team, batch by batch; 3 = always the full team (no pacing,
 * for benchmarks/contention.py). */
static atomic_int pace_forced = 0;

/* Test hooks for the pacer that picks a training loop's team size batch
 * by batch (threads.c).  force: 0 measures (the default), 1 runs every
 * batch on one thread, 2 alternates one thread and the full team, 3
 * always takes the full team.  trace
 * runs the pacer's choice over n batches whose seconds per batch are
 * cost_one[b] on one thread and cost_full[b] on nt, writing each batch's
 * team size to sizes[b]. */
void rmf_pacer_force(int mode) { atomic_store(&pace_forced, mode); }

void rmf_pacer_init(rmf_pacer *pc, int nt)
{
    memset(pc, 0, sizeof *pc);
    pc->nt = nt < 1 ? 1 : nt;
    pc->size = pc->last_size = pc->nt;
    pc->best = 1;
    pc->next_probe = PACE_FIRST_PROBE;
    pc->gap = PACE_MIN_GAP;
}

static double median_recent(const rmf_pacer *pc)
{
    const int n = pc->n_in_use < 5 ? (int)pc->n_in_use : 5;
    double v[5];
    memcpy(v, pc->recent, sizeof v);
    for (int a = 1; a < n; a++) /* insertion sort of at most 5 */
        for (int b = a; b > 0 && v[b - 1] > v[b]; b--) {
            double t = v[b];
            v[b] = v[b - 1];
            v[b - 1] = t;
        }
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static int in_probe(const rmf_pacer *pc, int64_t step)
{
    return step >= pc->next_probe && step < pc->next_probe + PACE_PROBE;
}

int rmf_pacer_next(rmf_pacer *pc)
{
    if (pc->nt <= 1)
        return pc->size = pc->team_now = 1;
    int forced = atomic_load_explicit(&pace_forced, memory_order_relaxed);
    int which;
    if (forced == 1)
        which = 0;
    else if (forced == 2)
        which = (int)(pc->step & 1);
    else if (forced == 3)
        which = 1;
    else if (in_probe(pc, pc->step))
        which = 1 - pc->best; /* the probe: the other size, briefly */
    else
        which = pc->best;
    pc->which = which;
    pc->size = which ? pc->nt : 1;
    pc->team_now = pc->size;
    return pc->size;
}

void rmf_pacer_record(rmf_pacer *pc, double seconds, double units)
{
    const int64_t step = pc->step++;
    const int fresh = pc->size != pc->last_size || step == 0;
    pc->last_size = pc->size;
    pc->team_sum += pc->team_now;
    if (pc->nt <= 1 || !(units > 0.0) || !(seconds >= 0.0))
        return;
    const double c = seconds / units;
    if (in_probe(pc, step)) {
        if (!fresh) {
            pc->probe_sum += c;
            pc->probe_n++;
        }
        if (step < pc->next_probe + PACE_PROBE - 1)
            return;
        /* The probe is over: compare its mean with the size in use. */
        const double probe = pc->probe_n ? pc->probe_sum / pc->probe_n : c;
        pc->probe_sum = 0.0;
        pc->probe_n = 0;
        if (pc->n_in_use > 0 && probe < PACE_GAIN * pc->in_use) {
            pc->best = 1 - pc->best;
            pc->in_use = pc->recent[0] = probe;
            pc->n_in_use = 1;
            pc->gap = PACE_MIN_GAP;
        } else {
            pc->gap = pc->gap * 2 < PACE_MAX_GAP ? pc->gap * 2 : PACE_MAX_GAP;
        }
        pc->chosen = pc->in_use;
        pc->next_probe = step + pc->gap;
        return;
    }
    if (fresh)
        return;
    /* The size in use: the median of its last 5 batches, so one batch the
     * machine delayed moves nothing, and a new level shows in 3. */
    pc->recent[pc->n_in_use++ % 5] = c;
    pc->in_use = median_recent(pc);
    if (pc->chosen <= 0.0 && pc->n_in_use >= 4)
        pc->chosen = pc->in_use;
    if (pc->chosen > 0.0 && pc->in_use > PACE_ALARM * pc->chosen &&
        pc->next_probe > step + PACE_SETTLE)
        /* Much dearer than when chosen: probe soon, once the median has
         * caught up with the new level (it is what the probe is compared
         * with). */
        pc->next_probe = step + PACE_SETTLE;
}

double rmf_pacer_mean_team(const rmf_pacer *pc)
{
    return pc->step > 0 ? pc->team_sum / (double)pc->step : (double)pc->nt;
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
    /* What the regions really get (one thread in a fork() fallback). */
    pc->team_now = rmf_team_size(pc->nt);
    pc->t0 = rmf_now();
    return size;
}

void rmf_pacer_end(rmf_pacer *pc, double units)
{
    /* Uncapped between batches: the stop hook may run Python code. */
    team_cap = 0;
    rmf_pacer_record(pc, rmf_now() - pc->t0, units);
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
