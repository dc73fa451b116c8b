"""Build ``deepchem_cgcnn/shortest_contacts.json``: the shortest contact of every element pair
among the MP crystals of the CGCNN data set, the reference of the compressed-contact domain
flag (:mod:`deepchem_cgcnn.contacts`).

The crystals are featurized as the shipped models' graphs are (``selection='complete'``, 12
nearest neighbours within 8 Å; the featurized cache of ``dev/card_training_counts.py`` is
reused); every graph edge counts. ``--check`` rebuilds the table and compares it with the
packaged one (exit status 1 on any difference).

Usage: ``.venv/bin/python dev/shortest_contacts.py [--check]``
"""

import argparse
import hashlib
import json
import sys

from card_training_counts import SOURCES, all_rows

from deepchem_cgcnn.contacts import TABLE_PATH, shortest_contacts
from deepchem_cgcnn.featurizer import featurizer_params


def build() -> dict:
    from deepchem_cgcnn import CGCNNFeaturizer

    path, _ = SOURCES["mp"]
    dataset, _ = all_rows("mp")
    return {
        "what": "the shortest graph edge of each element pair (Å), symbols in alphabetical "
        "order, rounded down to 0.1 mÅ",
        "source": path.name,
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        "n_crystals": len(dataset),
        "featurizer": featurizer_params(CGCNNFeaturizer(selection="complete")),
        "licence": "derived from Materials Project data (CC BY 4.0), see datasets/mp_cgcnn.md",
        "built_by": "dev/shortest_contacts.py",
        "pairs": shortest_contacts(dataset.X),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="compare with the packaged table")
    args = parser.parse_args(argv)
    table = build()
    if args.check:
        same = json.loads(TABLE_PATH.read_text()) == json.loads(json.dumps(table))
        print(
            f"{TABLE_PATH.name}: {'the same' if same else 'DIFFERS'} ({len(table['pairs'])} pairs)"
        )
        return 0 if same else 1
    TABLE_PATH.write_text(json.dumps(table, indent=0, ensure_ascii=False) + "\n")
    print(f"{TABLE_PATH}: {len(table['pairs'])} pairs from {table['n_crystals']:,} crystals")
    return 0


if __name__ == "__main__":
    sys.exit(main())
