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

Which runtime that is: a wheel of recmf brings its own libgomp (a renamed
copy in ``recmf.libs/``, as scikit-learn's and PyTorch's wheels bring
theirs), which loads with ``_core`` whatever other OpenMP runtime is
already in the process; a source build uses the system's ``libgomp.so.1``,
which may already be loaded (then it has read its settings and this
changes nothing).  Either way only the runtime ``_core`` loads can read the
setting, so recmf sets it unless the user chose, and afterwards records
whether the runtime ``_core`` really runs on was loaded in that moment.
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


def _mapped_files():
    """Real paths of the files mapped into this process, or None (unknown)."""
    try:
        with open("/proc/self/maps") as f:
            return {os.path.realpath(line.split(None, 5)[5].strip())
                    for line in f if len(line.split(None, 5)) == 6}
    except OSError:
        return None


class bounded_spinning:
    """Context manager around the import of ``recmf._core``: sets
    ``GOMP_SPINCOUNT`` for libgomp to read as it loads, then gives the
    environment back, so child processes and programs started later see the
    user's environment.  It does nothing when the user set
    ``GOMP_SPINCOUNT`` or ``OMP_WAIT_POLICY`` (their choice wins).  Call
    :meth:`loaded` with the path of the runtime ``_core`` runs on once it
    is imported: :data:`applied` then says whether that runtime loaded
    inside the context (and so read the setting)."""

    def __enter__(self):
        self.set = not any(k in os.environ for k in _USER_SETTINGS)
        self.before = _mapped_files() if self.set else None
        if self.set:
            os.environ["GOMP_SPINCOUNT"] = SPIN_COUNT
        return self

    def __exit__(self, *exc):
        if self.set:
            os.environ.pop("GOMP_SPINCOUNT", None)
        return False

    def loaded(self, openmp_library):
        """Record whether openmp_library (a path, or None without OpenMP)
        was loaded inside the context, and so reads the bounded spin."""
        global applied
        if (self.set and openmp_library and self.before is not None
                and os.path.realpath(openmp_library) not in self.before):
            applied = SPIN_COUNT
