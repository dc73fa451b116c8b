"""Import DeepChem without the dozens of "Skipped loading ..." lines it prints."""

import contextlib
import io
import logging
from typing import Any


def import_deepchem() -> Any:
    """Return the ``deepchem`` module, importing it with its start-up noise captured.

    DeepChem 2.8 reports every optional backend it cannot load (TensorFlow,
    JAX, DGL, ...) on stdout, stderr and its loggers while it is imported.
    None of that concerns this package, so it is swallowed here; real errors
    still raise.
    """
    import sys

    if "deepchem" in sys.modules:
        return sys.modules["deepchem"]
    sink = io.StringIO()
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
            import deepchem
    finally:
        logging.disable(previous)
    return deepchem
