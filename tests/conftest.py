"""Pytest configuration: make the repository and tests/helpers.py importable.

Shared helpers live in tests/helpers.py (``from helpers import ...``). Without the compiled
extension, run the suite with ``SNNKERN_BACKEND=reference``: tests of the compiled ops then
skip; without that variable a missing extension makes ``import snnkern`` fail loudly.
"""
import os
import sys

import pytest
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
for path in (HERE, ROOT):
    if path not in sys.path:
        sys.path.insert(0, path)

# Inductor's on-disk graph cache does not key on our fake kernels: after a change to an op's
# output layout it would replay a stale graph. Compile afresh in the tests.
os.environ.setdefault("TORCHINDUCTOR_FX_GRAPH_CACHE", "0")


@pytest.fixture(autouse=True)
def _deterministic_seed():
    torch.manual_seed(0)
    yield
