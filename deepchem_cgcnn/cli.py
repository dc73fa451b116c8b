"""``deepchem-cgcnn``: predict with the shipped models, or train one.

Examples::

    deepchem-cgcnn predict                 # the built-in example crystals
    deepchem-cgcnn predict a.cif POSCAR    # your files
    deepchem-cgcnn train --data ../shared/datasets/mp_cgcnn.csv.gz \\
        --target formation_energy_per_atom --name mp-formation-energy
"""
import argparse
import json
import logging
import os
import platform
import sys
import time
from typing import List, Optional, Sequence


def _predict(args: argparse.Namespace) -> int:
    import numpy as np

    from deepchem_cgcnn._quiet import import_deepchem
    from deepchem_cgcnn.checkpoints import available_pretrained, load_pretrained, pretrained_card
    from deepchem_cgcnn.examples import example_structures
    from deepchem_cgcnn.featurizer import CGCNNFeaturizer

    dc = import_deepchem()
    if args.files:
        names: List[str] = list(args.files)
        inputs: list = list(args.files)
    else:
        examples = example_structures()
        names, inputs = list(examples), list(examples.values())
    models = args.model or available_pretrained()
    columns = {}
    formulas: List[str] = ["?"] * len(inputs)
    failures = {}
    for name in models:
        model = load_pretrained(name)
        featurizer = CGCNNFeaturizer(**model.featurizer_params)
        graphs = featurizer.featurize(inputs)
        for index, reason in featurizer.failures:
            failures[index] = reason
        ok = [i for i, g in enumerate(graphs) if not isinstance(g, np.ndarray)]
        values = np.full(len(inputs), np.nan)
        if ok:
            dataset = dc.data.NumpyDataset(np.array([graphs[i] for i in ok], dtype=object))
            prediction = np.asarray(model.predict(dataset))
            values[ok] = prediction[:, 1] if model.model.mode == "classification" else prediction[:, 0]
        card = pretrained_card(name)
        columns[f"{card['property']} ({card['units']})"] = values
    for i, item in enumerate(inputs):
        try:
            formulas[i] = CGCNNFeaturizer.to_structure(item).composition.reduced_formula
        except Exception:
            pass
    header = ["structure", "formula", *columns]
    rows = [[os.path.basename(n) if args.files else n, formulas[i],
             *(("failed" if i in failures else f"{col[i]:.3f}") for col in columns.values())]
            for i, n in enumerate(names)]
    widths = [max(len(str(r[c])) for r in [header, *rows]) for c in range(len(header))]
    out = sys.stdout
    out.write("  ".join(h.ljust(w) for h, w in zip(header, widths)).rstrip() + "\n")
    for row in rows:
        out.write("  ".join(str(v).ljust(w) for v, w in zip(row, widths)).rstrip() + "\n")
    for index, reason in sorted(failures.items()):
        sys.stderr.write(f"{names[index]}: {reason}\n")
    return 1 if failures and len(failures) == len(inputs) else 0


def _train(args: argparse.Namespace) -> int:
    from deepchem_cgcnn.checkpoints import save_pretrained
    from deepchem_cgcnn.data.loader import MaterialsProjectLoader
    from deepchem_cgcnn.data.splitters import CGCNNRandomSplitter
    from deepchem_cgcnn.data.table import file_sha256
    from deepchem_cgcnn.featurizer import CGCNNFeaturizer, featurizer_params
    from deepchem_cgcnn.model import CGCNNModel
    from deepchem_cgcnn.training import mean_absolute_error, train_with_validation

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    os.makedirs(args.work_dir, exist_ok=True)
    started = time.time()
    featurizer = CGCNNFeaturizer(selection=args.selection)
    loader = MaterialsProjectLoader(args.data, tasks=[args.target], featurizer=featurizer,
                                    splitter=CGCNNRandomSplitter(seed=args.seed),
                                    data_dir=args.work_dir, save_dir=args.work_dir,
                                    n_jobs=args.n_jobs)
    _, (train, valid, test), _ = loader.load()
    summary = loader.summary
    featurize_seconds = time.time() - started
    hyper = dict(hidden_node_dim=args.hidden, num_conv=args.num_conv,
                 predictor_hidden_feats=args.predictor_hidden, n_hidden_layers=args.n_hidden_layers)
    model = CGCNNModel(**hyper, batch_size=args.batch_size, learning_rate=args.lr,
                       model_dir=os.path.join(args.work_dir, "model"))
    record = train_with_validation(model, train, valid, os.path.join(args.work_dir, "run"),
                                   base_lr=args.lr, max_epochs=args.max_epochs,
                                   max_minutes=args.max_minutes)
    metrics = {split: mean_absolute_error(model, data)
               for split, data in (("train", train), ("valid", valid), ("test", test))}
    card = {
        "name": args.name,
        "property": args.property or args.target,
        "units": args.units,
        "data": {"file": os.path.basename(args.data), "sha256": file_sha256(args.data),
                 "n_structures": summary.n_rows, "n_loaded": summary.n_loaded,
                 "dropped": summary.counts()},
        "split": {"kind": "random (CGCNNRandomSplitter = DeepChem RandomSplitter's permutation)",
                  "fractions": [0.6, 0.2, 0.2],
                  "seed": args.seed, "sizes": [len(train), len(valid), len(test)],
                  "model_selection": "best validation MAE; test used only for this card"},
        "featurizer": featurizer_params(featurizer),
        "model": model.hyperparameters,
        "recipe": {"optimizer": "Adam (DeepChem)", "base_learning_rate": args.lr,
                   "schedule": "cosine decay over the epoch or time budget",
                   "batch_size": args.batch_size, "max_epochs": args.max_epochs,
                   "max_minutes": args.max_minutes, "epochs_run": len(record.epochs),
                   "best_epoch": record.best_epoch},
        "metrics_mae": metrics,
        "wall_time_s": {"featurize": round(featurize_seconds, 1),
                        "train": round(record.seconds[-1] if record.seconds else 0.0, 1),
                        "total": round(time.time() - started, 1)},
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, no GPU",
        "command": "deepchem-cgcnn " + " ".join(sys.argv[1:]),
        "date": time.strftime("%Y-%m-%d"),
    }
    os.makedirs(args.export, exist_ok=True)
    save_pretrained(model, os.path.join(args.export, f"{args.name}.pt"), featurizer_params(featurizer))
    with open(os.path.join(args.export, f"{args.name}.json"), "w") as handle:
        json.dump(card, handle, indent=2)
    print(json.dumps(card["metrics_mae"]))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="deepchem-cgcnn", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    predict = commands.add_parser("predict", help="predict properties of CIF/POSCAR files")
    predict.add_argument("files", nargs="*", help="CIF or POSCAR files; none: built-in examples")
    predict.add_argument("--model", action="append",
                         help="shipped model name (repeatable); default: all")
    predict.set_defaults(run=_predict)

    train = commands.add_parser("train", help="train a regression model on a CIF table")
    train.add_argument("--data", required=True,
                       help="a CSV/JSON (.gz) table with a cif column, a CIF folder with "
                            "id_prop.csv, or a named dataset (e.g. matbench_mp_gap)")
    train.add_argument("--target", required=True, help="label column")
    train.add_argument("--name", required=True, help="name of the exported model")
    train.add_argument("--property", help="human name of the target for the card")
    train.add_argument("--units", default="eV/atom")
    train.add_argument("--work-dir", default="work/train")
    train.add_argument("--export", default="work/export", help="folder for <name>.pt/.json")
    train.add_argument("--selection", default="complete", choices=["cgcnn", "complete"])
    train.add_argument("--seed", type=int, default=123)
    train.add_argument("--lr", type=float, default=2e-3)
    train.add_argument("--batch-size", type=int, default=128)
    train.add_argument("--hidden", type=int, default=64)
    train.add_argument("--num-conv", type=int, default=4)
    train.add_argument("--predictor-hidden", type=int, default=128)
    train.add_argument("--n-hidden-layers", type=int, default=1)
    train.add_argument("--max-epochs", type=int, default=300)
    train.add_argument("--max-minutes", type=float, default=90.0)
    train.add_argument("--n-jobs", type=int, default=2)
    train.set_defaults(run=_train)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    logging.getLogger("deepchem").setLevel(logging.ERROR)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
