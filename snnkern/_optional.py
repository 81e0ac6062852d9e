"""Imports of the packages that only training, plotting and the SHD files need (the ``train`` extra).

The kernels, layers and models need only torch and numpy; these imports happen where the
packages are used, so that ``import snnkern`` works without them.
"""

from __future__ import annotations

import importlib
from types import ModuleType


def require(module: str, purpose: str) -> ModuleType:
    """Import ``module``; if its package is missing, say what needs it and how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        package = module.split(".")[0]
        if error.name is None or error.name.split(".")[0] != package:
            raise  # the package is there but fails to import: its own error says why
        raise ImportError(
            f"the package {package!r} is missing; it is needed for {purpose}. "
            f'Install it with the training extra: pip install "snnkern[train]"'
        ) from error
