"""The docs site: every public name has an API entry, every dataset card and tutorial a page,
and the CLI reference comes from the parser itself."""

import re
from pathlib import Path

import deepchem_cgcnn

DOCS = Path(__file__).resolve().parents[1] / "docs"


def test_every_public_name_is_in_the_api_reference():
    api = (DOCS / "api.rst").read_text()
    documented = set(
        re.findall(r"^\.\. auto(?:class|function|exception):: (?:\S+\.)?(\w+)$", api, re.M)
    )
    assert set(deepchem_cgcnn.__all__) - documented == set()


def test_every_dataset_card_is_on_the_datasets_page():
    page = (DOCS / "datasets.md").read_text()
    for card in sorted((DOCS.parent / "datasets").glob("*.md")):
        assert f"```{{include}} ../datasets/{card.name}\n" in page, card.name


def test_the_cli_reference_is_generated_from_the_parser():
    page = (DOCS / "cli.rst").read_text()
    assert ":module: deepchem_cgcnn.cli" in page and ":func: build_parser" in page
