#!/usr/bin/env bash
# Compiles every CUDA source with nvcc (compile only, no GPU needed) for the given
# architectures, against the installed torch's headers, so that a CUDA error cannot land
# unseen on machines without a GPU. Usage: tools/check_cuda_compile.sh [arch ...] (default 80 90)
set -euo pipefail
cd "$(dirname "$0")/.."
archs=("$@")
[ $# -eq 0 ] && archs=(80 90)
NVCC=${NVCC:-$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)}
[ -x "$NVCC" ] || { echo "nvcc not found (set NVCC=/path/to/nvcc)"; exit 1; }
read -r TORCH_INC PY_INC ABI < <(python - <<'PY'
import sysconfig, torch
from torch.utils.cpp_extension import include_paths
print(":".join(include_paths()), sysconfig.get_paths()["include"], int(torch._C._GLIBCXX_USE_CXX11_ABI))
PY
)
includes=()
IFS=: read -ra dirs <<< "$TORCH_INC"
for d in "${dirs[@]}"; do includes+=("-I$d"); done
gencode=()
for a in "${archs[@]}"; do gencode+=("-gencode=arch=compute_${a},code=sm_${a}"); done
out=$(mktemp -d)
# CPU wheels of torch ship the c10/cuda headers but not this one, which CUDA builds generate.
if ! python -c "import torch; assert torch.version.cuda" 2>/dev/null; then
  mkdir -p "$out/inc/c10/cuda/impl"
  printf '#pragma once\n#define C10_CUDA_BUILD_SHARED_LIBS\n' > "$out/inc/c10/cuda/impl/cuda_cmake_macros.h"
  includes+=("-I$out/inc")
fi
for src in csrc/cuda/*.cu; do
  echo "nvcc -c $src for sm_${archs[*]}"
  "$NVCC" -c "$src" -o "$out/$(basename "$src").o" -std=c++20 -O3 --fmad=false -DSNNKERN_WITH_CUDA \
    -D_GLIBCXX_USE_CXX11_ABI="$ABI" -DTORCH_EXTENSION_NAME=_C -DTORCH_API_INCLUDE_EXTENSION_H \
    "${includes[@]}" "-I$PY_INC" --expt-relaxed-constexpr -Xcompiler -fPIC "${gencode[@]}"
done
rm -rf "$out"
echo "CUDA sources compile for: ${archs[*]}"
