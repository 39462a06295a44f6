#!/usr/bin/env bash
# Run the test suite against an AddressSanitizer + UBSan build of recmf._core.
#
#   tools/sanitize.sh [--in-place] [--stub FILE] [--keep] [PYTEST ARGS...]
#   tools/sanitize.sh [options] --run COMMAND [ARGS...]
#
# PYTEST ARGS default to `tests`.  Examples:
#   tools/sanitize.sh                                  # whole suite
#   tools/sanitize.sh tests/test_data_core.py -x -q
#   tools/sanitize.sh --run python /tmp/driver.py      # any command instead of pytest
#
# By default the sanitized extension is built in a private copy of the work
# tree (tracked and untracked files, without build products) under $TMPDIR,
# so the in-place extension that others import is never replaced by one that
# only loads with libasan preloaded.  --in-place builds in the repository
# instead, and rebuilds the normal extension afterwards (also on failure or
# Ctrl-C).  --stub FILE adds, to the private copy only, the functions of FILE
# that csrc/ does not define yet (for a tree where a model file is still
# being written); it is refused with --in-place.  --keep keeps the private
# copy and logs (kept anyway when a sanitizer fired).
#
# Build: RECMF_SANITIZE=1 (setup.py adds -fsanitize=address,undefined
# -fno-omit-frame-pointer -g -O1) plus CFLAGS=-fno-wrapv: Python's own CFLAGS
# carry -fwrapv, which makes signed overflow defined behaviour and silently
# turns off UBSan's signed-integer-overflow check.
#
# Environment of the run:
#   LD_PRELOAD     libasan (python itself is not instrumented; ASan's runtime
#                  must be loaded first)
#   ASAN_OPTIONS   detect_leaks=0:abort_on_error=1 -- CPython leaks by design;
#                  leaks of our code are caught by the leak-loop tests
#   UBSAN_OPTIONS  halt_on_error=1:print_stacktrace=1
#   PYTHONMALLOC   malloc, so ASan sees every Python allocation
#   RECMF_SANITIZER=address,undefined, for tests that must know: ASan keeps
#                  freed memory in quarantine (up to 256 MB), so a test that
#                  asserts a flat process RSS fails under it; such a test should
#                  skip when RECMF_SANITIZER is set, or the run can be given
#                  ASAN_OPTIONS=quarantine_size_mb=4 (weaker use-after-free
#                  detection; options you set are appended, so they win).
# Reports also go to files (log_path) that are printed at the end: pytest
# captures stderr, and a process aborted by ASan would lose it.
#
# Exit status: that of the command (non-zero, at least 1, when a sanitizer
# fired; 2 when the build failed).  Data: $RECMF_DATA, else
# <repo>/../shared/data, as the tests expect.
set -euo pipefail

# The stub filter, kept out of main() so that its here-document stays at
# column 0.
filter_stub() { # filter_stub STUB CSRC_DIR -> names of the functions stubbed
    "$PYTHON" - "$1" "$2" <<'EOF'
import glob, os, re, sys
stub, csrc = sys.argv[1], sys.argv[2]
defined = set()
for f in glob.glob(os.path.join(csrc, "**", "*.c"), recursive=True):
    defined |= set(re.findall(r"^rmf_status\s+(rmf_\w+)\s*\(", open(f).read(), re.M))
keep, missing = [], []
for line in open(stub).read().splitlines():
    m = re.match(r"\s*rmf_status\s+(rmf_\w+)\s*\(", line)
    if m and m.group(1) in defined:
        continue
    if m:
        missing.append(m.group(1))
    keep.append(line)
if missing:
    open(os.path.join(csrc, "zz_sanitize_stub.c"), "w").write("\n".join(keep) + "\n")
print(" ".join(missing))
EOF
}

# Everything else is one function, read in full before it runs, so editing
# this file during a long run cannot derail that run.
main() {
    REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
    PYTHON="${PYTHON:-python}"
    IN_PLACE=0
    STUB=""
    KEEP=0
    RUN=()
    while [[ $# -gt 0 ]]; do
        case "$1" in
            --in-place) IN_PLACE=1; shift ;;
            --stub) STUB="$(realpath "$2")"; shift 2 ;;
            --keep) KEEP=1; shift ;;
            --run) shift; RUN=("$@"); set --; break ;;
            -h|--help) sed -n '2,46p' "${BASH_SOURCE[0]}"; exit 0 ;;
            *) break ;;
        esac
    done
    if [[ ${#RUN[@]} -eq 0 ]]; then
        [[ $# -eq 0 ]] && set -- tests
        RUN=("$PYTHON" -m pytest -p no:cacheprovider "$@")
    fi
    if [[ $IN_PLACE -eq 1 && -n "$STUB" ]]; then
        echo "sanitize.sh: --stub only works on the private copy, not with --in-place" >&2
        exit 2
    fi

    LIBASAN="$(gcc -print-file-name=libasan.so)"
    if [[ ! -e "$LIBASAN" ]]; then
        echo "sanitize.sh: libasan not found (gcc -print-file-name=libasan.so gave '$LIBASAN');" \
             "install gcc's libasan (Debian: libgcc-12-dev)" >&2
        exit 2
    fi
    LIBASAN="$(realpath "$LIBASAN")"
    export RECMF_DATA="${RECMF_DATA:-$(cd "$REPO/.." && pwd)/shared/data}"

    WORK="$(mktemp -d "${TMPDIR:-/tmp}/recmf-sanitize.XXXXXX")"
    LOGS="$WORK/logs"
    mkdir -p "$LOGS"
    trap cleanup EXIT
    trap 'exit 130' INT TERM

    if [[ $IN_PLACE -eq 1 ]]; then
        SRC="$REPO"
    else
        SRC="$WORK/tree"
        mkdir -p "$SRC"
        # Tracked and untracked (not ignored) files as they are now, without
        # build products, caches, virtual environments or the .git folder.
        (cd "$REPO" && git ls-files -z --cached --others --exclude-standard \
            | grep -zvE '(^|/)(build|dist|__pycache__|\.ci-venv|\.pytest_cache)/|\.so$|\.o$' \
            | xargs -0 -r sh -c 'for f; do [ -f "$f" ] && printf "%s\0" "$f"; done' sh \
            | tar --null -T - -cf -) | (cd "$SRC" && tar -xf -)
        if [[ -n "$STUB" ]]; then
            local missing
            missing="$(filter_stub "$STUB" "$SRC/csrc")"
            [[ -n "$missing" ]] && echo "== stubbed in the private copy (not yet in csrc/): $missing" >&2
        fi
    fi

    echo "== building recmf._core with RECMF_SANITIZE=1 in $SRC" >&2
    if ! (cd "$SRC" && CFLAGS="${CFLAGS:+$CFLAGS }-fno-wrapv" RECMF_SANITIZE=1 \
            "$PYTHON" setup.py build_ext --inplace -q \
            --build-temp "$WORK/build-temp" --build-lib "$WORK/build-lib" >"$LOGS/build.log" 2>&1); then
        echo "sanitize.sh: sanitized build FAILED:" >&2
        tail -40 "$LOGS/build.log" >&2
        exit 2
    fi
    grep -E "warning:" "$LOGS/build.log" >&2 || true

    echo "== running: ${RUN[*]}" >&2
    echo "   LD_PRELOAD=$LIBASAN PYTHONMALLOC=malloc" >&2
    local rc
    set +e
    (
        cd "$SRC"
        export PYTHONPATH="$SRC${PYTHONPATH:+:$PYTHONPATH}"
        export LD_PRELOAD="$LIBASAN${LD_PRELOAD:+:$LD_PRELOAD}"
        export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:log_path=$LOGS/asan${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
        export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:log_path=$LOGS/ubsan${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"
        export PYTHONMALLOC=malloc
        export RECMF_SANITIZER=address,undefined
        exec "${RUN[@]}"
    )
    rc=$?
    set -e

    local reports
    reports=$(find "$LOGS" -name 'asan.*' -o -name 'ubsan.*' | sort)
    if [[ -n "$reports" ]]; then
        echo "== SANITIZER REPORTS" >&2
        local f
        for f in $reports; do
            echo "---- $f" >&2
            cat "$f" >&2
        done
        KEEP=1
        [[ $rc -eq 0 ]] && rc=1
    else
        echo "== no sanitizer reports (exit status $rc)" >&2
    fi
    exit $rc
}

cleanup() {
    local rc=$?
    if [[ $IN_PLACE -eq 1 ]]; then
        echo "== rebuilding the normal extension in place" >&2
        (cd "$REPO" && env -u RECMF_SANITIZE "$PYTHON" setup.py build_ext --inplace --force -q \
            >"$LOGS/rebuild.log" 2>&1) \
            || { echo "sanitize.sh: normal rebuild FAILED, see $LOGS/rebuild.log" >&2; KEEP=1; }
    fi
    if [[ $KEEP -eq 0 ]]; then rm -rf "$WORK"; else echo "kept $WORK" >&2; fi
    exit $rc
}

main "$@"
