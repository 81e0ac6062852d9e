#!/usr/bin/env bash
# Lint, format and type checks of the whole tree; exits non-zero if any fails (all of them run):
#   ruff check .              lint rules of pyproject.toml [tool.ruff.lint]
#   ruff format --check .     python formatting ([tool.ruff.format])
#   clang-format --dry-run    csrc/**/*.{h,cuh,cpp,cu} against .clang-format
#   mypy snnkern              types ([tool.mypy])
#
# Usage: tools/lint.sh [--install] [--fix]
#   --install  pip-install the pinned tool versions below first (CI; a fresh machine)
#   --fix      apply what can be applied instead of checking: ruff --fix, ruff format,
#              clang-format -i (mypy still only checks)
# The same pins are in .pre-commit-config.yaml: change both together.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
PYTHON=${PYTHON:-python}

RUFF_VERSION=0.17.6
MYPY_VERSION=2.4.1
CLANG_FORMAT_VERSION=23.1.5

install=0
fix=0
for arg in "$@"; do
  case "$arg" in
    --install) install=1 ;;
    --fix) fix=1 ;;
    -h | --help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "unknown argument: $arg (see --help)" >&2; exit 2 ;;
  esac
done

if [ "$install" = 1 ]; then
  "$PYTHON" -m pip install -q --disable-pip-version-check "ruff==$RUFF_VERSION" "mypy==$MYPY_VERSION" \
    "clang-format==$CLANG_FORMAT_VERSION" || exit 1
fi

# Each tool must be there; a version other than the pinned one may judge differently: say so.
tool_version() {  # name, command printing the version, pinned version
  local version
  if ! version=$($2 2>/dev/null); then
    echo "lint: $1 not found; install the pinned tools with: tools/lint.sh --install" >&2
    exit 1
  fi
  version=$(grep -oE '[0-9]+\.[0-9]+\.[0-9]+' <<<"$version" | head -n 1)
  [ "$version" = "$3" ] || echo "lint: warning: $1 $version, pinned $3 (results may differ)" >&2
}
tool_version ruff "ruff --version" "$RUFF_VERSION"
tool_version mypy "$PYTHON -m mypy --version" "$MYPY_VERSION"
tool_version clang-format "clang-format --version" "$CLANG_FORMAT_VERSION"

failed=()
run() {  # name, command...
  local name=$1
  shift
  echo "== $name"
  if "$@"; then echo "ok"; else failed+=("$name"); fi
}

mapfile -t cxx_sources < <(find csrc -type f \( -name '*.h' -o -name '*.cuh' -o -name '*.cpp' -o -name '*.cu' \) | sort)

if [ "$fix" = 1 ]; then
  run "ruff check --fix" ruff check --fix .
  run "ruff format" ruff format .
  run "clang-format -i (${#cxx_sources[@]} files)" clang-format -i --style=file "${cxx_sources[@]}"
else
  run "ruff check" ruff check .
  run "ruff format --check" ruff format --check .
  run "clang-format --dry-run (${#cxx_sources[@]} files)" clang-format --dry-run --Werror --style=file "${cxx_sources[@]}"
fi
run "mypy snnkern" "$PYTHON" -m mypy snnkern

if [ ${#failed[@]} -gt 0 ]; then
  joined=$(printf '%s, ' "${failed[@]}")
  echo "lint: FAILED: ${joined%, }"
  exit 1
fi
echo "lint: all checks passed"
