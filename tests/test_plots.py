"""The periodic-table heatmap: what it accepts and what it refuses."""

import pytest

from deepchem_cgcnn.plots import periodic_table_heatmap


def test_heatmap_writes_a_png(tmp_path):
    path = tmp_path / "map.png"
    periodic_table_heatmap(
        {"Ti": -0.4, "Rb": 2.4, "O": 0.0},
        "test",
        str(path),
        label="eV",
        counts={"Ti": 3, "Rb": 1, "O": 5},
    )
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_heatmap_names_what_is_not_an_element(tmp_path):
    with pytest.raises(ValueError, match=r"\['Xx', 'ti'\]"):
        periodic_table_heatmap({"Ti": 1.0, "Xx": 2.0, "ti": 0.5}, "test", str(tmp_path / "m.png"))
