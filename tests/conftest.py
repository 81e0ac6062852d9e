"""Pytest configuration: make the repository and tests/helpers.py importable, and the ``where``
fixture: where a test runs the compiled ops (see tests/helpers.py).

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


@pytest.fixture
def where(request):
    """Where the test runs the ops, a helpers.Where; parametrise it (indirectly) with the
    decorators of helpers.py (``everywhere``, ``on_lanes``, ``at(...)``). For "emulated" the whole
    test (forward and backward) runs inside ``snnkern.testing.cuda_lane_emulation()``."""
    from helpers import Where
    from snnkern import testing

    name = getattr(request, "param", None)
    if name not in ("reference", "cpu", "emulated", "cuda"):
        raise pytest.UsageError(f"{request.node.nodeid}: parametrise `where` with helpers.at(...), got {name!r}")
    assert not testing.cuda_lane_emulation_active(), "the CUDA lane emulation leaked out of a previous test"
    if name != "emulated":
        yield Where(name, "cuda" if name == "cuda" else "cpu")
    else:
        with testing.cuda_lane_emulation():
            assert testing.cuda_lane_emulation_active()
            yield Where(name, "cpu")
    assert not testing.cuda_lane_emulation_active()
