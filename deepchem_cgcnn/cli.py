"""``deepchem-cgcnn``: predict with the shipped models, or train one.

Examples::

    deepchem-cgcnn predict                 # the built-in example crystals
    deepchem-cgcnn predict a.cif POSCAR    # your files
    deepchem-cgcnn explain a.cif           # per-site contributions (linear-pooling models)
    deepchem-cgcnn screen --a Sr Ba --b Ti Zr --x O3 NO2   # rank cubic perovskites
    deepchem-cgcnn train --data ../shared/datasets/mp_cgcnn.csv.gz \\
        --target formation_energy_per_atom --name mp-formation-energy
"""

import argparse
import csv
import dataclasses
import importlib.util
import json
import logging
import os
import re
import sys
import warnings
from collections.abc import Sequence
from typing import Any

STRUCTURE_SUFFIXES = (".cif", ".mcif", ".vasp", ".poscar", ".json")


def _is_structure_file(name: str) -> bool:
    upper = name.upper()
    return name.lower().endswith(STRUCTURE_SUFFIXES) or upper.startswith(("POSCAR", "CONTCAR"))


def _input_items(args: argparse.Namespace) -> list[tuple[str, Any]]:
    """``(name, file path or Structure)`` of each input: files, folders (searched recursively
    for CIF/POSCAR/vasp/JSON files), ``-`` (paths read from standard input, one a line), or
    the built-in examples when nothing is given."""
    from deepchem_cgcnn.examples import example_structures

    if not args.files:
        return list(example_structures().items())
    items: list[tuple[str, Any]] = []
    for entry in args.files:
        if entry == "-":
            items += [(os.path.basename(p), p) for p in (line.strip() for line in sys.stdin) if p]
        elif os.path.isdir(entry):
            found = sorted(
                os.path.join(root, name)
                for root, _, names in os.walk(entry)
                for name in names
                if _is_structure_file(name)
            )
            items += [(os.path.relpath(p, entry), p) for p in found]
        else:
            items.append((os.path.basename(entry), entry))
    return items


def _read_structures(items: Sequence[tuple[str, Any]]):
    """The Structures of ``items`` (None where unreadable) and ``{index: reason}`` failures."""
    from deepchem_cgcnn.featurizer import CGCNNFeaturizer

    structures: list[Any] = []
    failures: dict[int, str] = {}
    for i, (_, source) in enumerate(items):
        try:
            structures.append(CGCNNFeaturizer.to_structure(source))
        except Exception as error:  # one unreadable file never sinks the others
            structures.append(None)
            failures[i] = f"{type(error).__name__}: {error}"
    return structures, failures


def _read_inputs(args: argparse.Namespace):
    """Names and Structures of the inputs (files, or the built-in examples) and read failures."""
    items = _input_items(args)
    structures, failures = _read_structures(items)
    return [name for name, _ in items], structures, failures


class _RowWriter:
    """Rows to the terminal (aligned on the header) and to ``--out`` as they come.

    ``--out`` by suffix: ``.csv`` and ``.jsonl`` are written row by row (a killed run keeps
    what finished); ``.json`` (a list of row objects) and ``.parquet`` are written once, at
    the end, atomically.
    """

    FORMATS = (".csv", ".jsonl", ".json", ".parquet")

    def __init__(self, header: list[str], name_width: int, out: str | None):
        self.header = header
        self.widths = [max(len(header[0]), name_width), 10, *(len(h) for h in header[2:-2]), 0, 0]
        self.out = out
        self.kept: list[list[str]] = []
        self.stream = None
        if out and out.endswith((".csv", ".jsonl")):
            self.stream = open(out, "w", newline="")  # noqa: SIM115 (held open while rows stream)
        self.csv = (
            csv.writer(self.stream)
            if self.stream is not None and str(out).endswith(".csv")
            else None
        )
        if self.csv:
            self.csv.writerow(header)
        self._print(header)

    def _print(self, row: list[str]) -> None:
        sys.stdout.write(
            "  ".join(str(v).ljust(w) for v, w in zip(row, self.widths)).rstrip() + "\n"
        )

    def write(self, rows: list[list[str]]) -> None:
        for row in rows:
            self._print(row)
            if self.csv:
                self.csv.writerow(row)
            elif self.stream:
                self.stream.write(json.dumps(dict(zip(self.header, row))) + "\n")
            elif self.out:
                self.kept.append(row)
        sys.stdout.flush()
        if self.stream:
            self.stream.flush()

    def close(self) -> None:
        if self.stream:
            self.stream.close()
        elif self.out:
            import pandas as pd

            from deepchem_cgcnn._io import atomic_write

            frame = pd.DataFrame(self.kept, columns=self.header)
            if self.out.endswith(".parquet"):
                atomic_write(self.out, lambda handle: frame.to_parquet(handle, index=False))
            else:
                rows = frame.to_dict(orient="records")
                atomic_write(self.out, lambda h: json.dump(rows, h, indent=1), binary=False)


def _graphs_of(
    structures: list[Any], failures: dict[int, str], settings: dict[str, Any] | None
) -> tuple[list[int], Any]:
    """Featurize the readable ``structures`` with a model's settings: the indices that became
    graphs and a dataset of those graphs (ids = their indices; None when there are none);
    failures are added by index."""
    import numpy as np

    from deepchem_cgcnn._quiet import import_deepchem
    from deepchem_cgcnn.featurizer import CGCNNFeaturizer

    readable = [i for i, s in enumerate(structures) if s is not None]
    featurizer = CGCNNFeaturizer(**(settings or {}))
    graphs = featurizer.featurize([structures[i] for i in readable])
    for index, reason in featurizer.failures:
        failures[readable[index]] = reason
    ok = [i for i, g in zip(readable, graphs) if not isinstance(g, np.ndarray)]
    if not ok:
        return ok, None
    kept = np.array([g for g in graphs if not isinstance(g, np.ndarray)], dtype=object)
    return ok, import_deepchem().data.NumpyDataset(kept, ids=np.array(ok))


def _predict_chunk(models, structures: list[Any], failures: dict[int, str]):
    """Each model's cells and each crystal's domain flags for one chunk of structures."""
    import numpy as np

    from deepchem_cgcnn.ensemble import CGCNNEnsemble
    from deepchem_cgcnn.gating import GatedRegressor

    flags: dict[int, list[str]] = {i: [] for i in range(len(structures))}
    columns: list[list[str]] = []
    graphs_by_settings: dict[str, tuple[list[int], Any]] = {}
    for model, (_, mode) in models:
        key = json.dumps(model.featurizer_params, sort_keys=True)
        if key not in graphs_by_settings:
            graphs_by_settings[key] = _graphs_of(structures, failures, model.featurizer_params)
        ok, dataset = graphs_by_settings[key]
        cells = ["failed"] * len(structures)
        if ok:
            records = None
            if isinstance(model, GatedRegressor):
                mean, std, records = model.predict_with_domain(dataset, with_formula=False)
            elif isinstance(model, CGCNNEnsemble):
                mean, std = model.predict_uncertainty(dataset)
            else:
                mean, std = np.asarray(model.predict(dataset)), None
            column = 1 if mode == "classification" else 0
            for j, i in enumerate(ok):
                spread = None if std is None else std[j, column]
                cells[i] = f"{mean[j, column]:.3f}" + (
                    f" ± {spread:.3f}" if spread is not None and np.isfinite(spread) else ""
                )
            if records is None:
                records = model.check_domain(dataset, with_formula=False)
            for i, record in zip(ok, records):
                shown = {re.sub(r"\d+", "#", f) for f in flags[i]}  # one line per kind
                flags[i] += [f for f in record.flags if re.sub(r"\d+", "#", f) not in shown]
        columns.append(cells)
    return columns, flags


def _predict(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from deepchem_cgcnn.domain import DomainWarning

    _check_writable(args.out, "--out")
    if args.out and not args.out.endswith(_RowWriter.FORMATS):
        raise UserError(f"--out {args.out}: use one of {', '.join(_RowWriter.FORMATS)}")
    warnings.simplefilter("ignore", DomainWarning)  # the warnings column says it per crystal
    device = _device(args.device)
    models = [
        _predictor_and_card(name, device, args.batch_size)
        for name in args.model or _general_models()
    ]
    items = _input_items(args)
    header = [
        "structure",
        "formula",
        *(label for _, (label, _) in models),
        "warnings",
        "error",
    ]
    writer = _RowWriter(header, max((len(name) for name, _ in items), default=0), args.out)
    n_failed = 0
    progress = tqdm(
        total=len(items), unit="crystal", disable=not sys.stderr.isatty(), file=sys.stderr
    )
    try:
        for start in range(0, len(items), args.chunk_size):
            chunk = items[start : start + args.chunk_size]
            structures, failures = _read_structures(chunk)
            columns, flags = _predict_chunk(models, structures, failures)
            writer.write(
                [
                    [
                        name,
                        s.composition.reduced_formula if s is not None else "?",
                        *(cells[i] for cells in columns),
                        "; ".join(flags[i]) or "-",
                        failures.get(i, ""),
                    ]
                    for i, ((name, _), s) in enumerate(zip(chunk, structures))
                ]
            )
            for index, reason in sorted(failures.items()):
                progress.write(f"{chunk[index][0]}: {reason}", file=sys.stderr)
            n_failed += len(failures)
            progress.update(len(chunk))
    finally:
        progress.close()
        writer.close()
    return 1 if n_failed else 0


def _device(choice: str) -> Any:
    from deepchem_cgcnn.model import resolve_device

    try:
        return resolve_device(choice)
    except ValueError as error:
        raise UserError(f"--device {choice}: {error}") from None


def _predictor_and_card(
    name_or_path: str, device: Any = None, batch_size: int | None = None
) -> tuple[Any, tuple[str, str]]:
    """A model (or shipped ensemble) and its column label and mode, from its card: a saved
    file carries its card; an original ``.pth.tar`` checkpoint is named after the file."""
    from deepchem_cgcnn.ensemble import load_pretrained_predictor

    model: Any = load_pretrained_predictor(name_or_path)
    for member in getattr(model, "models", [model]):
        if device is not None and member.device != device:
            member.device = device
            member.model.to(device)
        if batch_size:
            member.batch_size = batch_size
    card = model.card
    if card is not None:
        return model, (card.label, card.mode)
    stem = os.path.basename(name_or_path).split(".")[0]
    return model, (f"{stem} (original checkpoint)", model.model.mode)


def _general_models() -> list[str]:
    """Shipped models for any crystal: those whose card names no narrower ``domain``."""
    from deepchem_cgcnn.registry import available_pretrained, pretrained_card

    return [n for n in available_pretrained() if not pretrained_card(n).domain]


def _explain(args: argparse.Namespace) -> int:
    from deepchem_cgcnn.registry import available_pretrained, load_model, pretrained_card

    names, structures, failures = _read_inputs(args)
    linear = [
        n
        for n in available_pretrained()
        if str(pretrained_card(n).model.get("pooling", "")).startswith("linear")
    ]
    name = args.model or (linear[0] if linear else None)
    if name is None:
        sys.stderr.write(
            "no shipped model has linear pooling; train one with "
            "'deepchem-cgcnn train --pooling linear-mean' and pass --model\n"
        )
        return 2
    model = load_model(name)
    card = model.card
    if card is None:
        raise UserError(f"{name}: explain needs a model with its card (a shipped or saved model)")
    if not str(card.model.get("pooling", "")).startswith("linear"):
        raise UserError(
            f"{name} pools with {card.model.get('pooling')!r}: its prediction is not a sum of "
            f"per-site terms; train one with --pooling linear-mean (or linear-sum)"
        )
    perovskites_only = bool(card.domain and "perovskite" in card.domain.lower())
    out = sys.stdout
    for index, (label, structure) in enumerate(zip(names, structures)):
        if structure is None:
            sys.stderr.write(f"{label}: {failures[index]}\n")
            continue
        outside = _outside_explain_domain(model, card, structure, perovskites_only)
        if outside and not args.force:
            failures[index] = outside
            sys.stderr.write(
                f"{label}: not explained: {outside}; its site contributions would be "
                f"misleading (--force shows them anyway)\n"
            )
            continue
        try:
            table = model.atom_contributions([structure])
        except ValueError as error:
            sys.stderr.write(f"{label}: {error}\n")
            failures[index] = str(error)
            continue
        roles = _perovskite_roles(structure) if args.perovskite else None
        how = "mean" if model.hyperparameters["pooling"] == "linear-mean" else "sum"
        total = getattr(table.contribution, how)()
        out.write(
            f"{label} ({structure.composition.reduced_formula}): {card.property} "
            f"{total:.3f} {card.units} = {how} of the site contributions\n"
        )
        for row in table.itertuples():
            role = f"  {roles[row.site]}" if roles else ""
            out.write(f"  site {row.site:3d}  {row.element:<3}{role}  {row.contribution:+.3f}\n")
    return 1 if failures else 0


def _outside_explain_domain(model: Any, card: Any, structure: Any, perovskites_only: bool) -> str:
    """Why ``model`` should not explain ``structure`` (empty: it may)."""
    from deepchem_cgcnn.domain import DomainWarning

    if perovskites_only and _perovskite_roles(structure) is None:
        return f"{card.name} was trained on {card.domain}, and this is not one"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DomainWarning)
        flags = model.check_domain([structure])[0].flags
    return "; ".join(flags)


def _embed(args: argparse.Namespace) -> int:
    import numpy as np

    from deepchem_cgcnn._io import atomic_write
    from deepchem_cgcnn._quiet import import_deepchem
    from deepchem_cgcnn.registry import load_model

    if not args.out.endswith((".npy", ".parquet", ".csv")):
        raise UserError(f"--out {args.out}: use .npy, .parquet or .csv")
    _check_writable(args.out, "--out")
    model = load_model(args.model, device=_device(args.device))
    items = _input_items(args)
    structures, failures = _read_structures(items)
    ok, graphs = _graphs_of(structures, failures, model.featurizer_params)
    for index, reason in sorted(failures.items()):
        sys.stderr.write(f"{items[index][0]}: {reason}\n")
    if not ok:
        return 1
    dataset = import_deepchem().data.NumpyDataset(
        graphs.X, ids=np.array([items[i][0] for i in ok], dtype=object)
    )
    table = model.embed(dataset, per_atom=args.per_atom)
    if args.out.endswith(".parquet"):
        atomic_write(args.out, lambda handle: table.to_parquet(handle, index=False))
    elif args.out.endswith(".csv"):
        atomic_write(args.out, lambda handle: table.to_csv(handle, index=False), binary=False)
    else:
        vectors = table.filter(regex=r"^v\d+$").to_numpy(dtype=np.float32)
        atomic_write(args.out, lambda handle: np.save(handle, vectors))
        ids = table[["id", "site"]] if args.per_atom else table[["id"]]
        atomic_write(
            args.out[: -len(".npy")] + ".ids.csv",
            lambda handle: ids.to_csv(handle, index=False),
            binary=False,
        )
    sys.stdout.write(
        f"{len(table):,} {'atom' if args.per_atom else 'crystal'} vectors of length "
        f"{table.shape[1] - (3 if args.per_atom else 1)} written to {args.out}\n"
    )
    return 1 if failures else 0


def _anion_set(text: str):
    """``"O3"`` -> ``('O', 'O', 'O')``, ``"NO2"`` -> ``('N', 'O', 'O')``: three X-site elements."""
    from pymatgen.core import Composition

    try:
        amounts = Composition(text)
    except Exception as error:
        raise argparse.ArgumentTypeError(f"{text!r} is not an anion formula: {error}") from error
    elements = tuple(sorted(e for el, n in amounts.items() for e in [str(el)] * int(round(n))))
    if len(elements) != 3 or sum(amounts.values()) != 3:
        raise argparse.ArgumentTypeError(
            f"{text!r} must hold exactly three X-site atoms, like O3, NO2 or FO2"
        )
    return elements


def _check_writable(path: str | None, option: str) -> None:
    """Refuse an output path whose folder is missing or read-only, before any computation."""
    if not path:
        return
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise UserError(f"{option} {path}: the folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise UserError(f"{option} {path}: the folder {folder} is not writable")


def _screen(args: argparse.Namespace) -> int:
    _check_writable(args.out, "--out")
    _check_writable(args.plot, "--plot")
    from deepchem_cgcnn.ensemble import load_pretrained_predictor
    from deepchem_cgcnn.plots import screening_plot
    from deepchem_cgcnn.registry import pretrained_card
    from deepchem_cgcnn.screening import LatticeConstantModel, enumerate_candidates, screen

    lattice = LatticeConstantModel.pretrained(args.model)
    model = load_pretrained_predictor(args.model)
    card = pretrained_card(args.model)
    candidates = enumerate_candidates(
        args.a or lattice.elements("A"),
        args.b or lattice.elements("B"),
        args.x or lattice.anion_sets,
    )
    ranked = screen(model, candidates, lattice)
    for (a, b, x), reason in ranked.attrs["skipped"]:
        sys.stderr.write(f"skipped {a}{b}{''.join(x)}: {reason}\n")
    ranked.to_csv(args.out, index=False)
    if args.plot:
        screening_plot(ranked, args.plot, top=args.top, units=card.units)
    shown = ranked.head(args.top)
    sys.stdout.write(
        f"{len(ranked):,} candidates ranked by {card.label}, lowest first; all in {args.out}\n"
    )
    sys.stdout.write(shown.to_string(index=False, float_format=lambda v: f"{v:.3f}") + "\n")
    return 0 if len(ranked) else 1


def _perovskite_roles(structure):
    from deepchem_cgcnn.perovskite import PerovskiteSiteError, perovskite_sites

    try:
        return perovskite_sites(structure)
    except PerovskiteSiteError:
        return None


def _train(args: argparse.Namespace) -> int:
    from deepchem_cgcnn.training import (
        RunMismatchError,
        TrainConfigError,
        TrainingDivergedError,
        train_model,
    )

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    config = training_config(args, command="deepchem-cgcnn " + " ".join(sys.argv[1:]))
    _device(config.device)  # refuse an unavailable device before featurizing
    if config.tensorboard and importlib.util.find_spec("tensorboard") is None:
        raise UserError(
            "--tensorboard needs the tensorboard package: pip install 'deepchem-cgcnn[tensorboard]'"
        )
    data_parallel = config.devices is not None or config.num_nodes > 1
    if data_parallel and importlib.util.find_spec("lightning") is None:
        raise UserError(
            "--devices/--num-nodes need PyTorch Lightning: pip install 'deepchem-cgcnn[distributed]'"
        )
    try:
        config.check()
    except TrainConfigError as error:
        raise UserError(_as_options(str(error))) from None
    try:
        result = train_model(config)
    except (RunMismatchError, TrainingDivergedError) as error:
        sys.stderr.write(f"error: {error}\n")
        return 2
    except ValueError as error:
        if "strategy" not in str(error) and "sync_batchnorm" not in str(error):
            raise
        raise UserError(str(error)) from None
    if not result.is_global_zero:
        return 0  # another process of a distributed run: process 0 reports
    if result.record.stopped:
        sys.stderr.write(f"warning: {result.record.stopped}\n")
    card = result.card
    test = card.metrics[card.metric_name]["test"]
    baseline = card.metrics.get("mean_predictor_mae", {}).get("test")
    print(
        f"test {'ROC-AUC' if card.mode == 'classification' else 'MAE'} {test:.4f} "
        f"{card.units if card.mode == 'regression' else ''}".rstrip()
        + (f" (predicting the training mean: {baseline:.4f})" if baseline is not None else "")
    )
    print(json.dumps(card.metrics))
    print(
        f"model written to {result.model_path}\ncard written to {result.card_path}\n"
        f"run folder (checkpoints, record): {result.run_dir}"
    )
    return 0


def training_config(args: argparse.Namespace, command: str = "") -> Any:
    """The :class:`~deepchem_cgcnn.training.TrainConfig` of parsed ``train`` options.

    Examples
    --------
    >>> args = build_parser().parse_args(["train", "--data", "t.csv", "--target", "y", "--name", "m"])
    >>> config = training_config(args)
    >>> config.num_conv, config.selection, config.loss, config.defaults
    (4, 'complete', 'l1', 'cli-v2')
    """
    from deepchem_cgcnn.training import TrainConfig

    names = {f.name for f in dataclasses.fields(TrainConfig)} - {"command", "defaults", "loss"}
    loss = args.loss or ("l1" if args.mode == "regression" else "mse")
    return TrainConfig(
        **{k: v for k, v in vars(args).items() if k in names},
        loss=loss,
        defaults=CLI_DEFAULTS_NAME,
        command=command,
    )


COMPILE_MODE_CHOICES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
"""``model.COMPILE_MODES``, without importing torch to build the parser."""

CLI_DEFAULTS_NAME = "cli-v2"
"""The command line's own training defaults, named in every card it writes: 4 convolutions,
'complete' neighbour selection and (since cli-v2; cli-v1 trained on the squared error) the
absolute-error loss for regression; the library keeps DeepChem's and the original's (3,
'cgcnn', squared error)."""


def _version() -> str:
    from deepchem_cgcnn import __version__

    return str(__version__)


def _add_training_options(train: argparse.ArgumentParser) -> None:
    """The options of ``train`` (and ``finetune``): data, target, model, recipe, budget."""
    train.add_argument(
        "--data",
        required=True,
        help="a CSV/JSON (.gz) table with a cif column, a CIF folder with "
        "id_prop.csv, or a named dataset (e.g. matbench_mp_gap)",
    )
    train.add_argument("--target", required=True, help="label column (or task name)")
    train.add_argument("--name", required=True, help="name of the exported model")
    train.add_argument("--property", help="human name of the target for the card")
    train.add_argument("--units", default="eV/atom")
    train.add_argument("--query", help='keep rows whose label satisfies this, e.g. "band_gap > 0"')
    train.add_argument("--mode", default="regression", choices=["regression", "classification"])
    train.add_argument(
        "--work-dir",
        default="work/train",
        help="holds one run folder per model name (<work-dir>/<name>: "
        "checkpoints and record; a rerun resumes it) and the data cache",
    )
    train.add_argument("--run-dir", help="the run folder (default: <work-dir>/<name>)")
    train.add_argument("--cache-dir", help="featurized-data cache (default: <work-dir>/cache)")
    train.add_argument("--export", default="work/export", help="folder for <name>.pt/.json")
    train.add_argument("--selection", default="complete", choices=["cgcnn", "complete"])
    train.add_argument("--seed", type=int, default=123, help="split seed")
    train.add_argument(
        "--valid-size",
        type=int,
        help="pick the best epoch on this many validation crystals (seeded draw) "
        "instead of all; the card still scores the whole split",
    )
    train.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile the convolutions (~1.3x faster on CPU, same weights)",
    )
    train.add_argument(
        "--predict-batch-size",
        type=int,
        help="crystals per batch when validating and scoring (default: the training batch; "
        "a GPU validates faster in batches of thousands; predictions do not change)",
    )
    train.add_argument(
        "--compile-mode",
        choices=COMPILE_MODE_CHOICES,
        help="torch.compile the whole model in this mode, batches padded to a few shapes "
        "(reduce-overhead: CUDA graphs on a GPU; minutes of compilation; same weights)",
    )
    train.add_argument(
        "--graph-step",
        action="store_true",
        help="train with the whole step replayed from CUDA graphs (one per padded batch "
        "shape): for a GPU, where launching the step's kernels bounds it; same losses",
    )
    train.add_argument(
        "--init-seed",
        type=int,
        help="seed of the initial weights and of each epoch's batch order (default: --seed)",
    )
    train.add_argument("--train-size", type=int, help="train on this many of the training split")
    train.add_argument(
        "--recipe",
        default="fast",
        choices=["fast", "paper"],
        help="fast: AdamW + cosine; paper: SGD 0.01, momentum 0.9, batch 256",
    )
    train.add_argument("--lr", type=float, help="override the recipe's learning rate")
    train.add_argument("--batch-size", type=int, help="override the recipe's batch size")
    train.add_argument("--weight-decay", type=float, help="override the recipe's weight decay")
    train.add_argument("--conv", default="gated", choices=["gated", "simple"])
    train.add_argument(
        "--pooling",
        default="mean",
        choices=["mean", "sum", "max", "linear-mean", "linear-sum"],
        help="linear-mean, linear-sum: per-atom contributions (deepchem-cgcnn explain)",
    )
    train.add_argument("--hidden", type=int, default=64)
    train.add_argument("--num-conv", type=int, default=4)
    train.add_argument("--predictor-hidden", type=int, default=128)
    train.add_argument("--n-hidden-layers", type=int, default=1)
    train.add_argument(
        "--dropout",
        type=float,
        metavar="P",
        help="dropout on the predictor's first hidden layer (the model's dropout; default: "
        "none for regression, 0.5 for classification); the card records it",
    )
    train.add_argument("--max-epochs", type=int, default=300)
    train.add_argument("--max-minutes", type=float, default=90.0)
    train.add_argument("--n-jobs", type=int, default=2)
    train.add_argument(
        "--patience", type=int, help="stop after this many epochs without a better validation"
    )
    train.add_argument(
        "--ema",
        type=float,
        metavar="DECAY",
        help="also keep an exponential moving average of the weights (e.g. 0.999), validate "
        "it beside the trained weights each epoch and keep whichever validates better",
    )
    train.add_argument(
        "--loss",
        choices=["mse", "l1"],
        help="regression loss on normalized targets: l1 (the mean absolute error the tasks "
        "are scored by; the default since cli-v2) or mse (the original's; cli-v1's default); "
        "the card records it",
    )
    train.add_argument(
        "--refit",
        action="store_true",
        help="after the validated run, train a fresh model on the training and validation "
        "crystals together for the epochs (and learning rates) validation chose, and export "
        "that one; its card keeps the validated model's scores (mae_before_refit) and calls the "
        "refit model's in-sample score on the validation crystals valid_trained_on",
    )
    train.add_argument(
        "--refit-from",
        metavar="CARD",
        help="refit the validated run this card describes (a card JSON or a shipped model's "
        "name, e.g. mp-formation-energy.1) without its run folder: its best epoch and "
        "learning rates from the card; the other options must reproduce that run",
    )
    train.add_argument(
        "--device",
        default="auto",
        choices=["auto", "cpu", "cuda"],
        help="where to train (auto: CUDA when available); the card records it",
    )
    train.add_argument(
        "--devices",
        type=int,
        metavar="N",
        help="train with N data-parallel processes per node under PyTorch Lightning (one per "
        "GPU with --accelerator gpu); --batch-size crystals per process and step. Needs "
        "deepchem-cgcnn[distributed]; see docs/scaling.md",
    )
    train.add_argument(
        "--num-nodes", type=int, default=1, metavar="M", help="nodes (with --devices)"
    )
    train.add_argument(
        "--strategy",
        default="ddp",
        choices=["ddp"],
        help="Lightning strategy for --devices (ddp: the other processes rerun this command)",
    )
    train.add_argument(
        "--accelerator",
        choices=["cpu", "gpu"],
        help="for --devices: cpu (gloo) or gpu (NCCL); default from --device",
    )
    train.add_argument(
        "--tensorboard",
        metavar="DIR",
        help="also log each epoch's loss, validation error and learning rate to TensorBoard "
        "event files in DIR (needs the tensorboard package); <run folder>/log.csv always",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="deepchem-cgcnn", description=__doc__.split("\n")[0])
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    commands = parser.add_subparsers(dest="command", required=True)
    predict = commands.add_parser("predict", help="predict properties of CIF/POSCAR files")
    predict.add_argument(
        "files",
        nargs="*",
        help="CIF/POSCAR/vasp/JSON files, folders (searched recursively), or - (paths on "
        "standard input); none: the built-in examples",
    )
    predict.add_argument(
        "--model",
        action="append",
        help="shipped model name (repeatable); default: every model for "
        "general crystals (the perovskite models only when named)",
    )
    predict.add_argument(
        "--out",
        help="also write the rows to this file: .csv or .jsonl (row by row, as they finish), "
        ".json or .parquet (at the end)",
    )
    predict.add_argument(
        "--device", default="auto", choices=["auto", "cpu", "cuda"], help="where to predict"
    )
    predict.add_argument("--batch-size", type=int, help="crystals per forward pass")
    predict.add_argument(
        "--chunk-size",
        type=int,
        default=256,
        help="structures read, featurized and predicted at a time: memory "
        "stays bounded and rows appear as each chunk finishes",
    )
    predict.set_defaults(run=_predict)

    explain = commands.add_parser(
        "explain", help="per-site contributions of a linear-pooling model"
    )
    explain.add_argument("files", nargs="*", help="CIF or POSCAR files; none: built-in examples")
    explain.add_argument(
        "--model", help="linear-pooling model: shipped name or saved file (default: shipped)"
    )
    explain.add_argument(
        "--force",
        action="store_true",
        help="explain crystals outside the model's training domain too",
    )
    explain.add_argument(
        "--perovskite",
        action="store_true",
        help="also label each site A, B or X (5-atom ABX3 cells)",
    )
    explain.set_defaults(run=_explain)
    for command in (predict, explain):
        command.epilog = (
            "exit status: 0 when every input was answered, 1 when any input "
            "failed (one line per failure on stderr; the others are still "
            "answered), 2 for a usage error"
        )

    embed = commands.add_parser(
        "embed", help="learned crystal (or atom) vectors of a model, for your own analyses"
    )
    embed.add_argument("files", nargs="*", help="as for predict; none: built-in examples")
    embed.add_argument(
        "--model", default="mp-formation-energy", help="shipped name, saved model or .pth.tar"
    )
    embed.add_argument(
        "--out", required=True, help=".npy (+ <name>.ids.csv), .parquet or .csv with ids"
    )
    embed.add_argument("--per-atom", action="store_true", help="one vector per site")
    embed.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    embed.set_defaults(run=_embed)

    screen = commands.add_parser(
        "screen", help="rank cubic ABX3 perovskites from element lists by a shipped model"
    )
    screen.add_argument("--a", nargs="+", help="A-site elements (default: all seen in training)")
    screen.add_argument("--b", nargs="+", help="B-site elements (default: all seen in training)")
    screen.add_argument(
        "--x",
        nargs="+",
        type=_anion_set,
        help="anion sets such as O3 NO2 (default: all seen in training)",
    )
    screen.add_argument(
        "--model",
        default="castelli-perovskites",
        help="shipped perovskite model (its seed members make the ensemble)",
    )
    screen.add_argument("--out", default="screening.csv", help="CSV of every ranked candidate")
    screen.add_argument("--plot", help="PNG: distribution and the top candidates")
    screen.add_argument("--top", type=int, default=20, help="rows printed (and plotted)")
    screen.set_defaults(run=_screen)

    train = commands.add_parser("train", help="train a model on a table of crystals")
    _add_training_options(train)
    train.set_defaults(run=_train)

    finetune = commands.add_parser(
        "finetune",
        help="train starting from a shipped model, a saved model or an original checkpoint",
    )
    finetune.add_argument(
        "--from", dest="init_from", required=True, help="shipped name, saved .pt or .pth.tar"
    )
    finetune.add_argument(
        "--reset-head", action="store_true", help="new output layers (a different property)"
    )
    finetune.add_argument(
        "--freeze",
        nargs="+",
        default=(),
        choices=["embedding", "convs"],
        help="keep these parts of the source model fixed",
    )
    finetune.add_argument(
        "--body-lr-factor",
        type=float,
        default=0.1,
        help="learning rate of the unfrozen body relative to the head's",
    )
    _add_training_options(finetune)
    finetune.set_defaults(run=_train)
    return parser


class UserError(Exception):
    """A mistake in the command line (a missing folder, a bad option value): no traceback."""


def _as_options(message: str) -> str:
    """A :class:`~deepchem_cgcnn.training.TrainConfig` message in ``train``'s option names.

    >>> _as_options("refit runs in one process; leave out devices/num_nodes")
    '--refit runs in one process; leave out --devices/--num-nodes'
    """
    return re.sub(
        r"(?<![\w-])(ema|refit|devices|num_nodes|compile_mode|compile|predict_batch_size|"
        r"graph_step)\b",
        lambda match: "--" + match.group(1).replace("_", "-"),
        message,
    )


def _user_errors() -> tuple:
    from deepchem_cgcnn.data.download import DownloadError
    from deepchem_cgcnn.model import GraphSettingsError
    from deepchem_cgcnn.original import CheckpointError
    from deepchem_cgcnn.registry import UnknownModelError

    return (
        UserError,
        CheckpointError,
        UnknownModelError,
        DownloadError,
        GraphSettingsError,
        FileNotFoundError,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; user errors print one ``error:`` line and exit 2."""
    args = build_parser().parse_args(argv)
    logging.getLogger("deepchem").setLevel(logging.ERROR)
    try:
        return args.run(args)
    except _user_errors() as error:
        sys.stderr.write(f"error: {error}\n")
        return 2
    except BrokenPipeError:  # output piped into `head` and the like: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
