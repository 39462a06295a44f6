"""Build recmf._core from csrc/.

BLAS: by default the extension links OpenBLAS from the ``scipy-openblas32``
wheel (a build and runtime dependency), whose symbols carry a ``scipy_``
prefix; ``recmf/__init__.py`` imports that wheel first so the library is
loaded before the extension.  To use a system OpenBLAS instead set
``RECMF_BLAS=system`` (found with ``pkg-config openblas``, else ``-lopenblas``).

OpenMP is probed and used when the compiler supports it; ``RECMF_OPENMP=0``
turns it off.  ``RECMF_SANITIZE=1`` builds with AddressSanitizer and UBSan
(see ``tools/sanitize.sh``).  No native-CPU tuning and no fast-math flags:
the wheel must run on any x86-64 and give IEEE results.
"""
import os
import shutil
import subprocess
import sys
import tempfile
from glob import glob

import numpy
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext


def _pkg_config(*args):
    exe = shutil.which("pkg-config")
    if exe is None:
        return None
    try:
        out = subprocess.run([exe, *args], check=True, capture_output=True, text=True)
    except subprocess.CalledProcessError:
        return None
    return out.stdout.split()


def blas_settings():
    """Return (define_macros, include_dirs, library_dirs, libraries, extra_link_args)."""
    choice = os.environ.get("RECMF_BLAS", "scipy-openblas32").strip().lower()
    if choice == "system":
        cflags = _pkg_config("--cflags", "openblas") or []
        libs = _pkg_config("--libs", "openblas") or ["-lopenblas"]
        incs = [f[2:] for f in cflags if f.startswith("-I")]
        libdirs = [f[2:] for f in libs if f.startswith("-L")]
        names = [f[2:] for f in libs if f.startswith("-l")]
        return [], incs, libdirs, names, []
    if choice != "scipy-openblas32":
        sys.exit(f"RECMF_BLAS must be 'scipy-openblas32' or 'system', got {choice!r}")
    import scipy_openblas32 as sob

    libdir = sob.get_lib_dir()
    # $ORIGIN rpath finds the wheel's library beside an installed recmf;
    # recmf/__init__.py also imports scipy_openblas32 first, which loads the
    # library globally, so editable or unusual layouts work too.
    rpath = "-Wl,-rpath,$ORIGIN/../scipy_openblas32/lib"
    return ([("RMF_BLAS_PREFIX", "scipy_")], [sob.get_include_dir()], [libdir],
            [sob.get_library()], [rpath])


def has_flag(compiler, flags, code="int main(void){return 0;}\n", link_flags=None):
    """True when the compiler accepts flags on a tiny program."""
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "probe.c")
        with open(src, "w") as f:
            f.write(code)
        try:
            objs = compiler.compile([src], output_dir=tmp, extra_postargs=flags)
            compiler.link_executable(objs, os.path.join(tmp, "probe"),
                                     extra_postargs=link_flags or flags)
        except Exception:
            return False
    return True


OPENMP_PROBE = "#include <omp.h>\nint main(void){return omp_get_max_threads() > 0 ? 0 : 1;}\n"


class BuildExt(build_ext):
    def build_extensions(self):
        cc = self.compiler
        # -fno-math-errno lets GCC vectorize sqrtf in the Adam loop; it is
        # not one of the fast-math IEEE relaxations (results are unchanged).
        compile_args = ["-std=c11", "-O3", "-fno-math-errno", "-fno-strict-aliasing", "-Wall", "-Wextra",
                        "-Wno-unused-parameter", "-Wno-missing-field-initializers"]
        link_args = []
        if os.environ.get("RECMF_OPENMP", "1") != "0" and has_flag(cc, ["-fopenmp"], OPENMP_PROBE):
            compile_args.append("-fopenmp")
            link_args.append("-fopenmp")
        if os.environ.get("RECMF_SANITIZE") == "1":
            # -fno-wrapv: Python's CFLAGS carry -fwrapv, which would hide
            # signed overflow from UBSan.
            san = ["-fsanitize=address,undefined", "-fno-omit-frame-pointer", "-g", "-O1", "-fno-wrapv"]
            compile_args = [a for a in compile_args if a != "-O3"] + san
            link_args += ["-fsanitize=address,undefined"]
        if os.environ.get("RECMF_DEBUG") == "1":
            compile_args = [a for a in compile_args if a != "-O3"] + ["-O0", "-g"]
        for ext in self.extensions:
            ext.extra_compile_args = compile_args + ext.extra_compile_args
            ext.extra_link_args = link_args + ext.extra_link_args
        super().build_extensions()


macros, blas_inc, blas_libdirs, blas_libs, blas_link = blas_settings()

core = Extension(
    "recmf._core",
    # Every .c under csrc/ (runtime/, data/, rank/, nn/, optim/, train/,
    # models/ and the glue, py/); headers include each other by their path
    # from csrc/ ("runtime/runtime.h").
    sources=sorted(glob("csrc/**/*.c", recursive=True)),
    depends=sorted(glob("csrc/**/*.h", recursive=True)),
    include_dirs=["csrc", numpy.get_include(), *blas_inc],
    define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_25_API_VERSION"), *macros],
    library_dirs=blas_libdirs,
    libraries=blas_libs + ["m"],
    extra_link_args=blas_link,
)

setup(ext_modules=[core], cmdclass={"build_ext": BuildExt})
