"""Save finished models from ``work/export`` into the package (``deepchem_cgcnn/pretrained``).

For each name, saves ``<name>.pt`` and its card ``<name>.json`` (the same card in both); a card
exported before cards carried the training history gets it from the run's
``work/<name>/run/record.json``;
``--domain`` marks models meant for a narrower class of crystals than "any crystal" (e.g. the
perovskite models), which ``deepchem-cgcnn predict`` then uses only when named. Prints the
size of the shipped folder. Replacing the first member of a shipped ensemble keeps the
ensemble's σ scale from the card it replaces (marked so, with a message), never drops it;
replacing a later member (``<head>.<k>``) records in the head's card that the scale was fitted
with the member replaced, since the scale belongs to the whole ensemble.

Usage
-----
``.venv/bin/python dev/ship_models.py mp-band-gap mp-metallicity mp-fermi-energy``
``.venv/bin/python dev/ship_models.py mp-formation-energy-gpu --export $OUT_FOLDER --as mp-formation-energy``
``.venv/bin/python dev/ship_models.py mp-band-gap-nonmetals mp-band-gap-nonmetals.1 --nonnegative \\
    --domain "non-metals (trained on band gap > 0); ..."``
``.venv/bin/python dev/ship_models.py castelli-perovskites castelli-perovskites.1 \\
    --domain "ABX3 perovskites: 5-atom cubic cells (Castelli et al. 2012)"``
"""

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from _common import PROJECT_ROOT  # noqa: E402 (the shared helpers live beside the benchmarks)

from deepchem_cgcnn._io import atomic_write  # noqa: E402

EXPORT = PROJECT_ROOT / "work" / "export"
PACKAGE = PROJECT_ROOT / "deepchem_cgcnn" / "pretrained"


def ship(
    name: str, export: Path, domain: str = "", shipped_name: str = "", nonnegative: bool = False
) -> dict:
    """Save ``export/<name>.pt`` and its card into the package, as ``shipped_name`` if given
    (e.g. a GPU run's ``mp-formation-energy-gpu`` shipped as ``mp-formation-energy``: the
    card's name changes, in the model file too); the model file's card is the JSON's."""
    from deepchem_cgcnn.training import TrainingRecord

    card = json.loads((export / f"{name}.json").read_text())
    if not card.get("training_counts"):
        sys.exit(f"{export / name}.json: no training counts, so no domain check; re-export it")
    target = shipped_name or name
    record_path = export.parent / name / "record.json"
    if "history" not in card and record_path.exists():
        card["history"] = TrainingRecord(**json.loads(record_path.read_text())).history()
    if domain:
        card["domain"] = domain
    card["command"] = (
        card["command"]
        .replace(str(PROJECT_ROOT.parent / "shared"), "../shared")
        .replace(str(PROJECT_ROOT) + "/", "")
    )
    from deepchem_cgcnn.card import ModelCard
    from deepchem_cgcnn.registry import load_saved, save_model

    card["name"] = target
    _keep_ensemble_scale(card, PACKAGE / f"{target}.json")
    _mark_head_scale(target)
    model = load_saved(export / f"{name}.pt")
    if nonnegative:  # a property that cannot be negative: predictions clipped at 0 in evaluation
        model.hyperparameters["nonnegative"] = model.model.nonnegative = True
        card["model"]["nonnegative"] = True
        card["output_constraint"] = (
            "non-negative (predictions clipped at 0; the metrics were measured before clipping, "
            "which cannot raise them where every label is positive)"
        )
    # saved again, not copied, so that the model file carries the same card as the JSON
    save_model(model, str(PACKAGE / f"{target}.pt"), ModelCard.from_dict(card))
    if (export / f"{name}.lattice.json").exists():  # a perovskite model's lattice constants
        lattice = (export / f"{name}.lattice.json").read_bytes()
        atomic_write(PACKAGE / f"{target}.lattice.json", lambda handle: handle.write(lattice))
    _write_card(PACKAGE / f"{target}.json", card)
    return card


def _write_card(path: Path, card: dict) -> None:
    atomic_write(path, lambda handle: handle.write(json.dumps(card, indent=2) + "\n"), binary=False)


def _keep_ensemble_scale(card: dict, shipped: Path) -> None:
    """Carry the ensemble σ scale of the card being replaced (``shipped``) into ``card``.

    The scale belongs to the ensemble the model heads (``CGCNNEnsemble.pretrained`` reads it
    from the first member's card and falls back to 1 without it), so replacing that member
    must not drop it silently: it is kept and marked as fitted before the replacement, to be
    refitted with ``benchmarks/ensemble_study.py --record-std-scale`` where twins allow."""
    if "ensemble" in card or not shipped.exists():
        return
    replaced = json.loads(shipped.read_text())
    if not (ensemble := replaced.get("ensemble")):
        return
    card["ensemble"] = ensemble = {
        "std_scale_fitted_with": f"the member this one replaced ({replaced.get('command', '')})",
        **ensemble,
    }
    print(
        f"{shipped.name}: kept the ensemble's std_scale {ensemble['std_scale']} (fitted with the "
        "member this one replaces); refit it with ensemble_study.py --record-std-scale if you can",
        file=sys.stderr,
    )


def _mark_head_scale(target: str) -> None:
    """Record in the head's card (JSON and model file) that its ensemble σ scale was fitted
    with the member ``target`` (``<head>.<k>``) replaces, before that member is overwritten."""
    from deepchem_cgcnn.card import ModelCard
    from deepchem_cgcnn.registry import _member_index, load_saved, save_model

    if not (index := _member_index(target)):
        return
    head = target[: -len(index) - 1]
    replaced_path, head_path = PACKAGE / f"{target}.json", PACKAGE / f"{head}.json"
    if not (replaced_path.exists() and head_path.exists()):
        return
    head_card = json.loads(head_path.read_text())
    if not (ensemble := head_card.get("ensemble")):
        return
    replaced = json.loads(replaced_path.read_text()).get("command", "")
    # the scale was fitted with the first member ever replaced here, so a later swap keeps it
    ensemble.setdefault("members_replaced_since_std_scale_fit", {}).setdefault(target, replaced)
    model = load_saved(PACKAGE / f"{head}.pt")
    save_model(model, str(PACKAGE / f"{head}.pt"), ModelCard.from_dict(head_card))
    _write_card(head_path, head_card)
    print(
        f"{head}.json: its ensemble's std_scale {ensemble['std_scale']} was fitted with the "
        f"{target} this replaces (recorded in the card); check it on test with "
        "ensemble_study.py --std-scale, refit it with --record-std-scale if you can",
        file=sys.stderr,
    )


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("names", nargs="+")
    parser.add_argument("--export", type=Path, default=EXPORT)
    parser.add_argument("--domain", default="", help="the crystals the model is meant for")
    parser.add_argument("--as", dest="shipped_name", default="", help="ship one model by this name")
    parser.add_argument(
        "--nonnegative", action="store_true", help="clip predictions at 0 (e.g. band gaps)"
    )
    args = parser.parse_args(argv)
    if args.shipped_name and len(args.names) != 1:
        parser.error("--as renames one model")
    for name in args.names:
        card = ship(name, args.export, args.domain, args.shipped_name, args.nonnegative)
        print(f"{name}: {card['property']} ({card['units']}), test {card['metrics']}")
    size = sum(p.stat().st_size for p in PACKAGE.iterdir() if p.suffix in (".pt", ".json"))
    print(
        f"deepchem_cgcnn/pretrained: {size / 2**20:.2f} MiB in "
        f"{len(list(PACKAGE.glob('*.pt')))} models"
    )


if __name__ == "__main__":
    main()
