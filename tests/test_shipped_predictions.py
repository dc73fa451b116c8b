"""Every shipped model's numbers on the built-in crystals, pinned to 1e-5."""

import json
from pathlib import Path

import numpy as np
import pytest

RECORDED = Path(__file__).resolve().parent / "data" / "shipped_predictions.json"


@pytest.mark.torch
def test_every_shipped_model_reproduces_its_recorded_predictions(no_network):
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "dev"))
    from record_shipped_predictions import shipped_predictions

    from deepchem_cgcnn import available_pretrained

    recorded = json.loads(RECORDED.read_text())
    assert set(recorded) == set(available_pretrained(include_members=True))
    now = shipped_predictions()
    for name, rows in recorded.items():
        for crystal, values in rows.items():
            np.testing.assert_allclose(now[name][crystal], values, atol=1e-5, err_msg=name)
