"""The composition-baseline lever: train CGCNN on what a linear fit of the composition leaves.

Fits a ridge regression of the formation energy on the element fractions of the training
crystals only (the first ``--train-size`` of the cards' 60/20/20 seed-123 training split, drawn
as ``deepchem-cgcnn train --train-size`` draws them), and writes a copy of the MP table with one
more column, ``fe_resid`` = formation energy − that fit, for every row. A model trained with
``--target fe_resid`` then errs on the formation energy exactly as much as on the residual
(the fit is a fixed function of the formula), so its card's MAE is comparable with a model
trained on the formation energy itself. Prints the fit's own MAE on each split.

Usage: ``.venv/bin/python benchmarks/composition_residual.py --train-size 4000
--out work/resid/mp_cgcnn_resid4000.csv.gz --cache-dir work/cache``
"""

import argparse
import re

import numpy as np
import pandas as pd
from _common import DEFAULT_DATA

TARGET = "formation_energy_per_atom"


def element_fractions(cifs) -> np.ndarray:
    """(n, 119) fractions of each element by atomic number, from each CIF's formula line."""
    from pymatgen.core import Composition

    fractions = np.zeros((len(cifs), 119))
    for row, cif in enumerate(cifs):
        formula = re.search(r"_chemical_formula_sum\s+'?([^'\n]+)'?", cif)
        if formula is None:
            raise ValueError(f"row {row}: the CIF has no _chemical_formula_sum line")
        for element, amount in Composition(formula.group(1)).fractional_composition.items():
            fractions[row, element.Z] = amount
    return fractions


def split_rows(data: str, cache_dir: str, train_size: int) -> dict[str, list[str]]:
    """The material ids of the training (first ``train_size``), validation and test crystals."""
    from deepchem_cgcnn.training import TrainConfig, load_training_data, training_subset

    # selection: the command line's default, so the same cache and the same kept rows
    config = TrainConfig(
        data=data,
        target=TARGET,
        name="split",
        cache_dir=cache_dir,
        selection="complete",
        train_size=train_size,
    )
    _, (train, valid, test), _ = load_training_data(config)
    train = training_subset(train, config)
    return {
        name: [str(i) for i in d.ids]
        for name, d in zip(("train", "valid", "test"), (train, valid, test))
    }


def main() -> None:
    from sklearn.linear_model import Ridge

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--train-size", type=int, default=4000)
    parser.add_argument("--cache-dir", default="work/cache")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    table = pd.read_csv(args.data)
    position = {str(m): i for i, m in enumerate(table.material_id)}
    rows = {
        k: np.array([position[i] for i in v])
        for k, v in split_rows(args.data, args.cache_dir, args.train_size).items()
    }
    fractions = element_fractions(table.cif.tolist())
    labels = table[TARGET].to_numpy()
    fit = Ridge(alpha=1e-3, fit_intercept=False).fit(
        fractions[rows["train"]], labels[rows["train"]]
    )
    baseline = fit.predict(fractions)
    for name, index in rows.items():
        error = np.mean(np.abs(labels[index] - baseline[index]))
        print(f"composition fit, {name} ({len(index)} crystals): MAE {error:.4f} eV/atom")
    print(
        f"std of the label on training {labels[rows['train']].std():.3f}, "
        f"of the residual {(labels - baseline)[rows['train']].std():.3f} eV/atom"
    )
    table["fe_resid"] = labels - baseline
    table.to_csv(args.out, index=False)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
