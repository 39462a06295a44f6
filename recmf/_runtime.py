"""How recmf's OpenMP threads wait: set up before the OpenMP runtime loads.

libgomp's threads busy-wait ~300,000 spins (milliseconds) for the next
parallel region before they sleep.  On an idle machine that saves a wake-up
per region; when another program keeps a core busy it is a collapse: the
thread that waits holds its core for a scheduler time slice while the
thread it waits for sits behind the neighbour, and a NeuralMF epoch on 2
threads took 7.0 s against 3.4 s on one (issue 8).  A bounded spin lets the
waiting thread sleep soon, so the kernel can move the late one onto the
core it frees.  libgomp reads its settings once, when it is loaded, so
this must run before ``recmf._core`` is imported.
"""
import os

#: Spins before a waiting OpenMP thread sleeps (libgomp: 300,000 by default,
#: 1,000 when there are more threads than CPUs).  One spin is a `pause`
#: instruction, 10-140 cycles by CPU: 10,000 is a few hundred microseconds
#: at most, about the gap between the regions of one training batch and far
#: shorter than a scheduler time slice.  benchmarks/contention.py compares
#: settings; choose from its figures taken on an otherwise idle machine.
SPIN_COUNT = "10000"

_USER_SETTINGS = ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")

#: The spin count this process's libgomp was loaded with by recmf, or None
#: (the user's settings, or an OpenMP runtime that was already loaded).
applied = None
_RUNTIMES = ("libgomp", "libomp", "libiomp")


def _openmp_loaded():
    """True when an OpenMP runtime is already in this process (or unknown)."""
    try:
        with open("/proc/self/maps") as f:
            maps = f.read()
    except OSError:
        return True
    return any(name in maps for name in _RUNTIMES)


class bounded_spinning:
    """Context manager around the import of ``recmf._core``: sets
    ``GOMP_SPINCOUNT`` for libgomp to read as it loads, then gives the
    environment back, so child processes and programs started later see the
    user's environment.  It does nothing when the user set
    ``GOMP_SPINCOUNT`` or ``OMP_WAIT_POLICY`` (their choice wins), or when
    an OpenMP runtime is already loaded (libgomp has read its settings; or
    it is another runtime, whose waiting this must not change)."""

    def __enter__(self):
        global applied
        self.set = (not any(k in os.environ for k in _USER_SETTINGS)) and not _openmp_loaded()
        if self.set:
            os.environ["GOMP_SPINCOUNT"] = SPIN_COUNT
            applied = SPIN_COUNT
        return self

    def __exit__(self, *exc):
        if self.set:
            os.environ.pop("GOMP_SPINCOUNT", None)
        return False
