#!/usr/bin/env bash
# Checks that the source distribution builds, installs and works on its own, away from this
# checkout:
#   1. builds the sdist (python -m build --sdist --no-isolation) from a copy of the files git sees
#      (tracked, and untracked but not ignored), so nothing is written into the work tree;
#   2. checks that it carries csrc/, setup.py, pyproject.toml, README, LICENSE, CHANGELOG, tests/
#      and no compiled files;
#   3. unpacks it into a temporary directory and installs it, non-editable, into a fresh virtual
#      environment that reuses this python's packages (--system-site-packages: torch, numpy,
#      pybind11, ninja, setuptools, pytest; no network needed), CPU kernels only (SNNKERN_CUDA=0);
#   4. runs a subset of the sdist's tests from a directory that holds only the tests, and fails
#      unless `snnkern` and its extension `snnkern._C` are imported from the virtual environment.
#
# Usage: tools/check_sdist.sh [pytest arguments]
#   default pytest arguments: -x -q tests/test_ops.py -k "parity and f32 and cpu"
#   KEEP_TMP=1 keeps the temporary directory; SNNKERN_CUDA=1 also builds the CUDA kernels.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
PYTHON=${PYTHON:-python}
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1
export SNNKERN_CUDA=${SNNKERN_CUDA:-0}
unset SNNKERN_BACKEND  # the tests must run the compiled kernels, not the reference loops

TMP=$(mktemp -d "${TMPDIR:-/tmp}/snnkern-sdist.XXXXXX")
cleanup() { if [ "${KEEP_TMP:-0}" = 1 ]; then echo "kept $TMP"; else rm -rf "$TMP"; fi; }
trap cleanup EXIT
step() { printf '\n== %s (%ds)\n' "$1" "$SECONDS"; }

step "copy the sources git sees into $TMP/src"
mkdir -p "$TMP/src"
if git -C "$REPO" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  git -C "$REPO" ls-files -z --cached --others --exclude-standard |
    while IFS= read -r -d '' f; do [ -f "$f" ] && printf '%s\0' "$f"; done |
    tar --null -T - -cf - | tar -xf - -C "$TMP/src"
else  # not a git checkout (e.g. an unpacked sdist): take everything but build outputs
  tar --exclude=./build --exclude=./dist --exclude='*.so' -cf - . | tar -xf - -C "$TMP/src"
fi

step "build the sdist"
(cd "$TMP/src" && "$PYTHON" -m build --sdist --no-isolation --outdir "$TMP/dist" . >"$TMP/build-sdist.log" 2>&1) ||
  { cat "$TMP/build-sdist.log"; exit 1; }
SDIST=$(ls "$TMP"/dist/*.tar.gz)
echo "$(basename "$SDIST"): $(du -h "$SDIST" | cut -f1), $(tar -tzf "$SDIST" | grep -vc '/$') files"

step "check its contents"
tar -tzf "$SDIST" | sed 's|^[^/]*/||' | grep -v '/$' | sort >"$TMP/contents.txt"
missing=0
for required in setup.py pyproject.toml README.md LICENSE CHANGELOG.md MANIFEST.in snnkern/__init__.py \
    csrc/lif.h csrc/ops.cpp tests/conftest.py; do
  grep -qx "$required" "$TMP/contents.txt" || { echo "missing from the sdist: $required"; missing=1; }
done
# Every C++/CUDA source and header of csrc/ in the checkout must be in the sdist.
while IFS= read -r f; do
  grep -qx "$f" "$TMP/contents.txt" || { echo "missing from the sdist: $f"; missing=1; }
done < <(cd "$TMP/src" && find csrc -type f \( -name '*.h' -o -name '*.cuh' -o -name '*.cpp' -o -name '*.cu' \) | sort)
if grep -E '\.(so|pyd|o)$|__pycache__' "$TMP/contents.txt"; then echo "compiled files in the sdist"; missing=1; fi
[ "$missing" = 0 ] || exit 1
echo "csrc: $(grep -c '^csrc/' "$TMP/contents.txt") files, tests: $(grep -c '^tests/' "$TMP/contents.txt") files"

step "unpack it and install it into a fresh virtual environment (SNNKERN_CUDA=$SNNKERN_CUDA)"
mkdir -p "$TMP/unpacked"
tar -xzf "$SDIST" -C "$TMP/unpacked"
UNPACKED=$(ls -d "$TMP"/unpacked/*/)
UNPACKED=${UNPACKED%/}
"$PYTHON" -m venv --system-site-packages "$TMP/venv"
VPY="$TMP/venv/bin/python"
# --ignore-installed: install into the venv even though this python already has an snnkern
# (e.g. an editable install of the checkout), and leave that one alone.
"$VPY" -m pip install --no-build-isolation --no-deps --ignore-installed "${UNPACKED}[test]" >"$TMP/install.log" 2>&1 ||
  { tail -n 60 "$TMP/install.log"; exit 1; }
grep -E '^Successfully installed' "$TMP/install.log"
SITE=$("$VPY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
PLATSITE=$("$VPY" -c 'import sysconfig; print(sysconfig.get_paths()["platlib"])')

step "run the sdist's tests against the installed build"
# A directory with only the tests (and the pytest settings): tests/conftest.py puts its parent
# on sys.path, and that parent holds no snnkern/ source folder to shadow the installed package.
RUN="$TMP/run"
mkdir -p "$RUN"
cp -r "$UNPACKED/tests" "$RUN/tests"
cp "$UNPACKED/pyproject.toml" "$RUN/"
# A pytest plugin that fails the session unless snnkern and its compiled extension come from the venv.
cat >"$RUN/sdist_guard.py" <<'EOF'
import os


def pytest_sessionstart(session):
    import snnkern
    from snnkern import ops

    roots = tuple(os.path.realpath(p) + os.sep for p in os.environ["SDIST_SITE"].split(os.pathsep))
    where = os.path.realpath(snnkern.__file__)
    if not where.startswith(roots):
        raise RuntimeError(f"snnkern imported from {where}, not from the installed sdist in {roots}")
    if ops._C is None or not os.path.realpath(ops._C.__file__).startswith(roots):
        raise RuntimeError(f"snnkern._C is not the installed sdist's build: {ops._C!r}")
    print(f"\nsnnkern {snnkern.__version__} from {os.path.dirname(where)}; extension {os.path.basename(ops._C.__file__)}")
EOF
if [ $# -eq 0 ]; then set -- -x -q tests/test_ops.py -k "parity and f32 and cpu"; fi
cd "$RUN"
SDIST_SITE="$SITE:$PLATSITE" PYTHONPATH="$RUN" "$VPY" -m pytest -p sdist_guard -p no:cacheprovider \
  --rootdir "$RUN" -c "$RUN/pyproject.toml" "$@"
step "sdist check passed"
