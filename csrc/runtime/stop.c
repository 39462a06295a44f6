/* runtime/stop.c -- Ctrl-C in long compiled calls (issue 20, case 12).
 *
 * Training loops ask their stop callback between batches.  Every other
 * long call (recommend, score, the EASE / ALS / transition solvers) polls
 * here at block boundaries: the glue starts a stop context for each call
 * (rmf_stop_begin, on the calling thread), its signal handler marks a
 * SIGINT as pending (rmf_stop_signal, async-signal-safe), and the first
 * poll on the calling thread after that runs the context's callback --
 * the glue's: Python's own signal handlers, with the GIL.  So a user's
 * SIGINT handler runs as in pure Python code; the call stops only when it
 * raises (KeyboardInterrupt by default), and then every thread of the team
 * skips its remaining blocks.  A call from a thread other than Python's
 * main thread gets no callback (Python runs signal handlers in the main
 * thread only): it is never stopped.
 *
 * Why pending-then-callback rather than a callback every few milliseconds:
 * without a signal no poll takes the GIL (another Python thread holding it
 * would stall the calling thread), and a poll costs two relaxed loads.
 *
 * Loops capture the context before a parallel region (rmf_stop_here, on
 * the calling thread) and poll it from any team thread (rmf_stopping):
 * only the thread that started the call runs the callback; the others read
 * the flag.  A stopped call returns early with incomplete outputs; the
 * glue reports it as RMF_ERR_INTERRUPTED and drops them (RMF_NOGIL).
 */
#include "runtime/runtime.h"

#include <signal.h>
#include <stdatomic.h>

static atomic_int signal_pending = 0;
static _Thread_local rmf_stop *current = NULL;

/* Test hook (rmf_stop_interrupt_at): the calling thread's polls so far and
 * the poll at which it raises SIGINT itself (0: never). */
static _Thread_local int64_t polls = 0;
static _Thread_local int64_t raise_at = 0;

void rmf_stop_signal(void) { atomic_store_explicit(&signal_pending, 1, memory_order_relaxed); }

void rmf_stop_begin(rmf_stop *s, rmf_stop_fn fn, void *ctx)
{
    s->fn = fn;
    s->ctx = ctx;
    atomic_init(&s->stopped, 0);
    s->prev = current;
    current = s;
}

int rmf_stop_end(rmf_stop *s)
{
    current = s->prev;
    return atomic_load_explicit(&s->stopped, memory_order_relaxed);
}

rmf_stop *rmf_stop_here(void) { return current; }

int rmf_stopped(rmf_stop *s)
{
    return s != NULL && atomic_load_explicit(&s->stopped, memory_order_relaxed);
}

int rmf_stopping(rmf_stop *s)
{
    if (s == NULL)
        return 0;
    if (atomic_load_explicit(&s->stopped, memory_order_relaxed))
        return 1;
    if (s != current) /* a team thread: the calling thread asks */
        return 0;
    if (++polls == raise_at) {
        raise_at = 0;
        raise(SIGINT); /* the real path: the glue's handler, then Python's */
    }
    if (s->fn != NULL && atomic_load_explicit(&signal_pending, memory_order_relaxed) &&
        atomic_exchange_explicit(&signal_pending, 0, memory_order_relaxed) && s->fn(s->ctx))
        atomic_store_explicit(&s->stopped, 1, memory_order_relaxed);
    return atomic_load_explicit(&s->stopped, memory_order_relaxed);
}

void rmf_stop_interrupt_at(int64_t poll)
{
    polls = 0;
    raise_at = poll;
}

int64_t rmf_stop_polls(void) { return polls; }
