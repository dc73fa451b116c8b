"""Sphinx configuration: the API reference from the numpy docstrings, the CLI reference from
argparse, the Markdown pages through MyST. Built by ``dev/check.sh`` with warnings as errors:
``python -m sphinx -W --keep-going -b html docs docs/_build/html``."""

from deepchem_cgcnn import __version__

project = "deepchem-cgcnn"
author = "deepchem-cgcnn developers"
copyright = "2026, deepchem-cgcnn developers (MIT licence)"
release = version = __version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
    "sphinxarg.ext",
    "myst_parser",
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build"]
root_doc = "index"

napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_rtype = False
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "show-inheritance": True}

myst_enable_extensions = ["colon_fence"]
myst_heading_anchors = 3

html_theme = "alabaster"
html_title = f"deepchem-cgcnn {release}"
