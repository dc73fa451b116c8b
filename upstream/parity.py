"""The original CGCNN checkpoints through the patched DeepChem: ``dc.feat.CGCNNFeaturizer()`` and
``dc.models.CGCNNModel.from_cgcnn_checkpoint`` reproduce the original code's predictions on its
ten sample CIFs. Prints one line per checkpoint; exits 1 if any differs by more than 1e-4.

Usage: ``python upstream/parity.py <folder of .pth.tar files> <reference folder>`` (the reference
folder holds ``cifs/`` and ``reference_predictions.csv``).
"""

import sys
from pathlib import Path

import deepchem as dc
import numpy as np
import pandas as pd
from pymatgen.core import Structure

TOLERANCE = 1e-4


def main(checkpoints: Path, reference: Path) -> int:
    table = pd.read_csv(reference / "reference_predictions.csv", dtype={"cif_id": str})
    cifs = sorted((reference / "cifs").glob("*.cif"))
    ids = [path.stem for path in cifs]
    graphs = dc.feat.CGCNNFeaturizer().featurize([Structure.from_file(p) for p in cifs])
    dataset = dc.data.NumpyDataset(graphs, ids=ids)
    worst_overall, failed = 0.0, []
    paths = sorted(checkpoints.glob("*.pth.tar"))
    for path in paths:
        name = path.name.removesuffix(".pth.tar")
        model = dc.models.CGCNNModel.from_cgcnn_checkpoint(str(path))
        prediction = model.predict(dataset)
        if model.model.mode == "classification":
            prediction = prediction[:, 1]  # the original code writes P(class 1)
        expected = table[table.model == name].set_index("cif_id").loc[ids, "prediction"]
        worst = float(np.abs(prediction.reshape(-1) - expected.to_numpy()).max())
        worst_overall = max(worst_overall, worst)
        print(f"{name:30s} max |difference| {worst:.2e} over {len(ids)} CIFs")
        if not worst <= TOLERANCE:
            failed.append(name)
    print(
        f"parity: {len(paths) - len(failed)} of {len(paths)} original checkpoints within "
        f"{TOLERANCE:g} (worst {worst_overall:.2e})"
    )
    return 1 if failed or not paths else 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), Path(sys.argv[2])))
