"""Fuzz: 200+ generated bad structures and files, each a clear error, a warning or a prediction.

Never a hang (an alarm fails the test after 60 s), never a crash of the batch, never a silent
wrong answer: every class has an expected outcome, and the table of outcomes per class is
printed (``pytest -s tests/test_fuzz.py``).
"""

import collections
import signal
import warnings

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from deepchem_cgcnn import CGCNNFeaturizer, CGCNNModel
from deepchem_cgcnn._quiet import import_deepchem
from deepchem_cgcnn.cli import main
from deepchem_cgcnn.examples import example_structures

dc = import_deepchem()
ERROR, WARNING, PREDICTION = "clear error", "warning", "prediction"


def _cases(tmp_path):
    """``(class, input, expected outcomes)``; inputs are file paths, Structures or dicts."""
    rng = np.random.default_rng(20261126)
    crystals = list(example_structures().values())
    cases = []

    def write(name, data):
        path = tmp_path / name
        path.write_bytes(data if isinstance(data, bytes) else data.encode())
        return str(path)

    for k in range(20):
        crystal = crystals[k % len(crystals)]
        cif = crystal.to(fmt="cif")
        atoms_start = cif.index("_atom_site_occupancy") + len("_atom_site_occupancy\n")
        cut = int(rng.integers(atoms_start, len(cif.rstrip()) - 1))
        cases.append(("truncated CIF", write(f"trunc{k}.cif", cif[:cut]), {ERROR}))
        cases.append(
            ("binary file", write(f"binary{k}.cif", rng.bytes(int(rng.integers(1, 4000)))), {ERROR})
        )
        cases.append(("UTF-16 CIF", write(f"utf16_{k}.cif", cif.encode("utf-16")), {ERROR}))
        cases.append(("empty or blank file", write(f"empty{k}.cif", " \n" * (k % 3)), {ERROR}))
        two = cif + "\n" + crystals[(k + 1) % len(crystals)].to(fmt="cif")
        cases.append(("two data blocks", write(f"two{k}.cif", two), {ERROR}))
        bad = crystal.frac_coords.copy()
        bad[int(rng.integers(len(bad))), int(rng.integers(3))] = [np.nan, np.inf, -np.inf][k % 3]
        poscar = crystal.to(fmt="poscar").splitlines()
        row = 8 + int(rng.integers(len(crystal)))
        poscar[row] = "nan inf 0.0 " + poscar[row].split()[-1] if k % 2 else "nan nan nan"
        cases.append(("NaN/inf coordinates", write(f"nan{k}.vasp", "\n".join(poscar)), {ERROR}))
        zero = crystal.lattice.matrix.copy()
        zero[k % 3] = 0.0
        cases.append(
            (
                "zero lattice vector",
                {"lattice": {"matrix": zero.tolist()}, "sites": crystal.as_dict()["sites"]},
                {ERROR},
            )
        )
        huge = Structure(Lattice.cubic(10.0 ** rng.uniform(3, 6)), ["Cu"], [[0, 0, 0]])
        cases.append(("huge lattice", huge, {ERROR, WARNING}))
        tiny = Structure(Lattice.cubic(10.0 ** rng.uniform(-4, -0.5)), ["Cu"], [[0, 0, 0]])
        cases.append(("tiny lattice", tiny, {ERROR}))
        gap = rng.uniform(0, 0.49)
        crowded = Structure(
            Lattice.cubic(5.0), ["Na", "Cl", "Na"], [[0, 0, 0], [gap / 5, 0, 0], [0.5, 0.5, 0.5]]
        )
        cases.append(("overlapping atoms", crowded, {ERROR}))
        far = Structure(
            crystal.lattice,
            crystal.species,
            crystal.frac_coords + rng.integers(-(10**6), 10**6, size=3) * 10.0**7,
        )
        cases.append(("coordinates 1e13", far, {ERROR}))
        shifted = Structure(
            crystal.lattice,
            crystal.species,
            crystal.frac_coords + rng.integers(-1000, 1000, size=3),
        )
        cases.append(("coordinates shifted by whole cells", shifted, {PREDICTION, WARNING}))
        data = crystal.as_dict()
        data["sites"][0]["properties"] = {"x": {"@module": "subprocess", "@class": "Popen"}}
        cases.append(("structure dict naming a module", data, {ERROR}))
        slab = Structure(
            Lattice.tetragonal(crystal.lattice.a, 40.0), crystal.species[:1], [[0, 0, 0]]
        )
        cases.append(("slab / atom in vacuum", slab, {WARNING}))
        try:
            disordered = crystal.copy()
            disordered.replace_species({crystal.species[0]: {crystal.species[0]: 0.5}})
            cases.append(("partial occupancy", disordered, {ERROR}))
        except ValueError:
            pass
    return cases


def _outcomes(cases, model):
    featurizer = CGCNNFeaturizer(**model.featurizer_params)
    graphs = featurizer.featurize([c[1] for c in cases])
    failed = dict(featurizer.failures)
    ok = [i for i in range(len(cases)) if i not in failed]
    dataset = dc.data.NumpyDataset(
        np.array([graphs[i] for i in ok], dtype=object), ids=np.array([str(i) for i in ok])
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prediction = model.predict(dataset)[:, 0]
    records = model.check_domain(dataset, with_formula=False)
    outcome = {i: ERROR for i in failed}
    for i, record, value in zip(ok, records, prediction):
        assert np.isfinite(value), (cases[i][0], value)
        outcome[i] = PREDICTION if record.in_domain else WARNING
    return outcome, failed


def test_fuzz_every_bad_input_is_an_error_a_warning_or_a_prediction(tmp_path, capsys):
    signal.signal(signal.SIGALRM, lambda *_: pytest.fail("fuzz inputs took over 60 s (a hang?)"))
    signal.alarm(60)
    try:
        cases = _cases(tmp_path)
        assert len(cases) >= 200
        model = CGCNNModel.pretrained("mp-formation-energy")
        outcome, failed = _outcomes(cases, model)
        table = collections.defaultdict(collections.Counter)
        for i, (kind, _, expected) in enumerate(cases):
            table[kind][outcome[i]] += 1
            assert outcome[i] in expected, (kind, outcome[i], failed.get(i))
            if i in failed:  # a reason a person can act on, not a bare exception name
                assert len(failed[i]) > 25 and "Traceback" not in failed[i], failed[i]
        files = [c[1] for c in cases if isinstance(c[1], str)]
        assert main(["predict", "--model", "mp-formation-energy", *files[:60]]) == 1
        err = capsys.readouterr().err
        assert "Traceback" not in err
    finally:
        signal.alarm(0)
    with capsys.disabled():
        print(f"\n{len(cases)} fuzz inputs: per class, how many got each outcome")
        for kind, counts in table.items():
            print(f"  {kind:<36} " + ", ".join(f"{n} {what}" for what, n in counts.items()))
