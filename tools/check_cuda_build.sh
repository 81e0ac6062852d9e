#!/usr/bin/env bash
# The real CUDA build, as a user on a machine with nvcc and no GPU gets it (a CI runner, a
# cluster login node, a container build): a CUDA build of torch from the package index, then
# `pip install --no-build-isolation -e .` with no TORCH_CUDA_ARCH_LIST and no CUDA_HOME. Checks
# that it builds (the default architectures, the toolkit found from nvcc), imports, registers
# every op for CUDA, and passes the CPU tests on that torch.
#   tools/check_cuda_build.sh [pytest args...]    (default: the whole suite)
# The virtual environment is kept between runs in SNNKERN_CUDA_VENV (default ~/.cache/snnkern/venv-cuda).
set -euo pipefail
cd "$(dirname "$0")/.."
TORCH_CUDA_VERSION=${TORCH_CUDA_VERSION:-2.14.1}
venv=${SNNKERN_CUDA_VENV:-$HOME/.cache/snnkern/venv-cuda}
if ! "$venv/bin/python" -c "import torch, sys; sys.exit(torch.version.cuda is None or torch.__version__.split('+')[0] != '$TORCH_CUDA_VERSION')" 2>/dev/null; then
  echo "creating $venv with torch $TORCH_CUDA_VERSION (a CUDA build)"
  python -m venv "$venv"
  "$venv/bin/pip" install -q "torch==$TORCH_CUDA_VERSION" numpy pybind11 ninja setuptools wheel pytest
fi
# A copy of the tree, so the editable CPU build of this checkout keeps its own extension.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
tar --exclude=./build --exclude='./snnkern/_C*.so' --exclude=./.git --exclude=./.gpu-wheels -cf - . | tar -xf - -C "$work"
cd "$work"
unset TORCH_CUDA_ARCH_LIST CUDA_HOME CUDA_PATH
start=$SECONDS
"$venv/bin/pip" install -q --no-build-isolation -e ".[test]" 2>&1 | grep -v "Running pip as the 'root' user" || true
"$venv/bin/python" - <<'PY'
import torch
import snnkern
from snnkern import ops
assert torch.version.cuda is not None, "not a CUDA build of torch"
assert snnkern.compiled_with_cuda(), f"the extension has no CUDA kernels: {snnkern.build_info()}"
names = ["lif_forward", "lif_backward", "leaky_forward", "leaky_backward", "recurrent_lif_forward",
         "recurrent_lif_backward", "spike_matmul", "spike_matmul_t"]
missing = [(n, key) for n in names for key in ("CPU", "CUDA")
           if not torch._C._dispatch_has_kernel_for_dispatch_key(f"snnkern::{n}", key)]
assert not missing, f"ops without a kernel: {missing}"
print(f"CUDA build imports: torch {torch.__version__}, snnkern {snnkern.build_info()}; every op has CPU and CUDA kernels")
PY
echo "CUDA build: $((SECONDS - start)) s"
"$venv/bin/python" -m pytest -q -p no:cacheprovider "${@:-tests}"
