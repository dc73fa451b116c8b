"""Record every shipped model's predictions on the built-in example crystals.

``tests/test_shipped_predictions.py`` asserts them to 1e-5, so a change that moves any shipped
number (weights, featurizer, pooling, clipping) fails until it is re-recorded on purpose:
``.venv/bin/python dev/record_shipped_predictions.py``.
"""

import json
import warnings
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parent.parent / "tests" / "data" / "shipped_predictions.json"


def shipped_predictions() -> dict[str, dict[str, list[float]]]:
    """``{model: {crystal: prediction row}}`` for every shipped model and example crystal."""
    from deepchem_cgcnn import CGCNNFeaturizer, CGCNNModel, available_pretrained
    from deepchem_cgcnn._quiet import import_deepchem
    from deepchem_cgcnn.domain import DomainWarning
    from deepchem_cgcnn.examples import example_structures

    dc = import_deepchem()
    crystals = example_structures()
    table = {}
    for name in available_pretrained(include_members=True):
        model = CGCNNModel.pretrained(name)
        graphs = CGCNNFeaturizer(**model.featurizer_params).featurize(list(crystals.values()))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DomainWarning)
            values = np.asarray(model.predict(dc.data.NumpyDataset(graphs)))
        table[name] = {c: [round(float(v), 7) for v in row] for c, row in zip(crystals, values)}
    return table


if __name__ == "__main__":
    OUT.write_text(json.dumps(shipped_predictions(), indent=1) + "\n")
    print(f"wrote {OUT}")
