"""Checks of the built sdist and the repaired wheel that `twine check` and
`auditwheel show` do not make (run by .ci/run):

    python .ci/check_dist.py SDIST WHEEL

- the sdist holds the license texts, the changelog, the C sources and the
  tests, and no build product or MovieLens file;
- the wheel holds the license texts in its metadata, OpenBLAS and libgomp in
  recmf.libs/ (and nothing else's), ``_core`` finds them by ``$ORIGIN``, and
  its metadata has the one version of recmf/__init__.py, no runtime
  dependency on an OpenBLAS package, and a classifier for each Python .ci/run
  tests;
- .ci/oldest.txt (what the oldest-versions leg installs) is exactly the
  floors pyproject.toml declares.
Exits non-zero with every failure listed."""
import ast
import email.parser
import fnmatch
import re
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

from elftools.elf.dynamic import DynamicSection
from elftools.elf.elffile import ELFFile

REPO = Path(__file__).resolve().parents[1]
PYTHONS = ("3.10", "3.11", "3.12", "3.13")   # the Pythons .ci/run builds wheels for
failures = []


def check(ok, what):
    print(("ok    " if ok else "FAIL  ") + what)
    if not ok:
        failures.append(what)


def version_in_source():
    tree = ast.parse((REPO / "recmf" / "__init__.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "__version__" for t in node.targets):
            return node.value.value
    raise SystemExit("no __version__ in recmf/__init__.py")


def check_sdist(path):
    with tarfile.open(path) as tar:
        names = [n.split("/", 1)[1] for n in tar.getnames() if "/" in n]
    for required in ("LICENSE", "LICENSES_bundled.txt", "CHANGELOG.md", "README.md", "setup.py",
                     "pyproject.toml", "csrc/recmf.h", "recmf/__init__.py", "tests/conftest.py"):
        check(required in names, f"sdist has {required}")
    check(any(n.startswith("csrc/") and n.endswith(".c") for n in names), "sdist has the C sources")
    for pattern in ("*.so", "*.o", "recmf.libs/*", "*.dat", "*.dat.gz", "*ratings.csv", "*u.data"):
        bad = fnmatch.filter(names, pattern)
        check(not bad, f"sdist has no {pattern} {bad[:3] if bad else ''}")


def dynamic_tags(data):
    with tempfile.TemporaryFile() as f:
        f.write(data)
        f.seek(0)
        elf = ELFFile(f)
        tags = {}
        for section in elf.iter_sections():
            if isinstance(section, DynamicSection):
                for tag in section.iter_tags():
                    if tag.entry.d_tag == "DT_NEEDED":
                        tags.setdefault("needed", []).append(tag.needed)
                    elif tag.entry.d_tag in ("DT_RPATH", "DT_RUNPATH"):
                        tags["rpath"] = tag.rpath if tag.entry.d_tag == "DT_RPATH" else tag.runpath
                    elif tag.entry.d_tag == "DT_SONAME":
                        tags["soname"] = tag.soname
        return tags


def check_wheel(path):
    version = version_in_source()
    check(Path(path).name.startswith(f"recmf-{version}-"), f"wheel is version {version} (recmf/__init__.py)")
    check(re.search(r"-manylinux_\d+_\d+_x86_64\.whl$", path) is not None, "wheel has a manylinux tag")
    with zipfile.ZipFile(path) as whl:
        names = whl.namelist()
        dist_info = f"recmf-{version}.dist-info"
        for lic in ("LICENSE", "LICENSES_bundled.txt"):
            check(f"{dist_info}/licenses/{lic}" in names, f"wheel has {lic}")
        libs = sorted(n for n in names if n.startswith("recmf.libs/") and not n.endswith("/"))
        blas = [n for n in libs if n == "recmf.libs/libscipy_openblas-recmf.so"]
        gomp = [n for n in libs if re.fullmatch(r"recmf\.libs/libgomp-[0-9a-f]+\.so[.0-9]*", n)]
        check(len(blas) == 1, "recmf.libs/ has recmf's OpenBLAS")
        check(len(gomp) == 1, f"recmf.libs/ has one libgomp ({gomp})")
        check("recmf.libs/LICENSE-scipy-openblas32.txt" in libs, "recmf.libs/ has OpenBLAS's license texts")
        others = set(libs) - set(blas) - set(gomp) - {"recmf.libs/LICENSE-scipy-openblas32.txt"}
        check(not others, f"recmf.libs/ has nothing else {sorted(others)}")
        cores = [n for n in names if re.fullmatch(r"recmf/_core\..*\.so", n)]
        check(len(cores) == 1, "wheel has one recmf/_core extension")
        core = dynamic_tags(whl.read(cores[0]))
        needed = core.get("needed", [])
        check("libscipy_openblas-recmf.so" in needed and any(n.startswith("libgomp-") for n in needed),
              f"_core needs the bundled libraries ({needed})")
        check(not any(n.startswith("libscipy_openblas.so") or n == "libgomp.so.1" or "/" in n for n in needed),
              "_core needs no other OpenBLAS or OpenMP runtime")
        check(core.get("rpath") == "$ORIGIN/../recmf.libs", f"_core's rpath is $ORIGIN/../recmf.libs ({core.get('rpath')})")
        check(dynamic_tags(whl.read(blas[0])).get("soname") == "libscipy_openblas-recmf.so" if blas else False,
              "the bundled OpenBLAS has recmf's soname")
        meta = email.parser.Parser().parsestr(whl.read(f"{dist_info}/METADATA").decode())
    requires = meta.get_all("Requires-Dist") or []
    check(not any(r.lower().startswith(("scipy-openblas", "scipy_openblas")) for r in requires),
          "no runtime dependency on scipy-openblas32")
    check(meta.get("License-Expression") == "MIT", "License-Expression: MIT")
    classifiers = meta.get_all("Classifier") or []
    for py in PYTHONS:
        check(f"Programming Language :: Python :: {py}" in classifiers, f"classifier for Python {py}")
    check(meta.get("Requires-Python") == f">={PYTHONS[0]}", f"Requires-Python >={PYTHONS[0]}")


def check_oldest():
    try:
        import tomllib
    except ImportError:          # Python 3.10
        return
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    floors = {}
    for dep in deps:
        m = re.fullmatch(r"([A-Za-z0-9_.-]+)\s*>=\s*([0-9.]+)", dep.split(";")[0].strip())
        check(m is not None, f"dependency {dep!r} has a floor")
        if m:
            floors[m.group(1).lower()] = m.group(2)
    pins = {}
    for line in (REPO / ".ci" / "oldest.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, _, ver = line.partition("==")
            pins[name.strip().lower()] = ver.strip()
    # a floor "2.2" is the release "2.2.0"
    norm = {k: v if v.count(".") >= 2 else v + ".0" for k, v in floors.items()}
    check(pins == norm, f".ci/oldest.txt {pins} pins the declared floors {norm}")


if __name__ == "__main__":
    sdist, wheel = sys.argv[1:3]
    check_sdist(sdist)
    check_wheel(wheel)
    check_oldest()
    if failures:
        sys.exit(f"{len(failures)} check(s) failed")
