"""Sphinx configuration of snnkern's documentation.

Build (from the repository root):

    pip install -r docs/requirements.txt
    python -m sphinx -W --keep-going -b html docs docs/_build/html

The pages are Markdown (MyST); the API reference is generated from the docstrings (Google style,
read by napoleon). The build imports snnkern from this source tree and needs no compiled extension:
without one it falls back to the reference loops (``SNNKERN_BACKEND=reference``), which changes
nothing in the documented signatures.
"""

from __future__ import annotations

import os
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, ROOT)


def _extension_loads() -> bool:
    try:
        import snnkern._C  # noqa: F401
    except ImportError:
        return False
    return True


if not _extension_loads():
    os.environ.setdefault("SNNKERN_BACKEND", "reference")

import snnkern  # noqa: E402

# -- Project -----------------------------------------------------------------------------------

project = "snnkern"
author = "the snnkern developers"
copyright = "2026, the snnkern developers"
release = snnkern.__version__
version = ".".join(release.split(".")[:2])

# -- General -----------------------------------------------------------------------------------

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
]

source_suffix = {".md": "markdown"}
root_doc = "index"
# Everything in docs/ that is not a page: the build output, the figures' data (metrics.json,
# sweep.json) and this configuration's requirements.
exclude_patterns = ["_build", "figures/**", "requirements.txt", "Thumbs.db", ".DS_Store"]

myst_enable_extensions = [
    "amsmath",  # \begin{aligned} ... in display math
    "dollarmath",  # $inline$ and $$display$$ math
    "colon_fence",
    "deflist",
]
myst_heading_anchors = 3
myst_dmath_double_inline = True

# -- API reference (autodoc + napoleon) --------------------------------------------------------

autodoc_default_options = {
    "members": True,
    "undoc-members": False,
    "show-inheritance": True,
    "member-order": "bysource",
}
autodoc_typehints = "signature"
# Annotations that name a class re-exported by a package (documented there, and under its module as
# its canonical name): one target, so that the cross-reference is not ambiguous.
autodoc_type_aliases = {"EvidenceNetwork": "snnkern.models.EvidenceNetwork"}
autodoc_preserve_defaults = True
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False
napoleon_attr_annotations = True

# -- HTML --------------------------------------------------------------------------------------

html_theme = "alabaster"
html_title = f"snnkern {release}"
html_static_path: list[str] = []
html_theme_options = {
    "description": "Fused C++/CUDA kernels for leaky integrate-and-fire neurons in PyTorch",
    "fixed_sidebar": True,
}
