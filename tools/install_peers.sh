#!/usr/bin/env bash
# The peer libraries the compatibility tests and benchmarks compare against, at the versions
# snnkern.compat was written and tested for. Installed with --no-deps: their metadata would
# replace the installed torch (torchvision, torchaudio) or pull hardware SDKs (Sinabs' samna)
# that importing them does not need; the few packages they do import come after.
set -euo pipefail
pip install -q --no-deps snntorch==1.0.0 spikingjelly==2.0.0 norse==1.1.0 sinabs==3.1.3 nir==1.0.8 nirtorch==2.6
pip install -q pbr loguru packaging scipy h5py matplotlib tqdm scikit-learn
python - <<'PY'
import importlib

for peer in ("snntorch", "spikingjelly", "norse", "sinabs", "nir"):
    importlib.import_module(peer)
print("peers: snntorch, spikingjelly, norse, sinabs and nir import")
PY
