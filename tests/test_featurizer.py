"""CGCNNFeaturizer: parity with the original code, tie modes, compactness, bad input."""

import logging
from collections import Counter

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from deepchem_cgcnn import CGCNNFeaturizer, CrystalGraph, FeaturizationError
from deepchem_cgcnn._quiet import import_deepchem
from deepchem_cgcnn.graph import gaussian_expand

dc = import_deepchem()


def rock_salt(a=5.64):
    return Structure.from_spacegroup(
        "Fm-3m", Lattice.cubic(a), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]
    )


def shells(distances, indices, decimals=6):
    """{distance: Counter(indices)} for one atom's neighbour slots."""
    out = {}
    for d, i in zip(np.round(distances, decimals), indices):
        out.setdefault(d, Counter())[int(i)] += 1
    return out


def row(graph, atom):
    """Distances and neighbour indices of one atom's unmasked slots."""
    keep = graph.mask[atom]
    return graph.neighbor_distance[atom][keep], graph.neighbor_index[atom][keep].astype(int)


# ---------------------------------------------------------------- parity with the original
def test_matches_original_features(reference_cifs, reference_features):
    featurizer = CGCNNFeaturizer()
    for path in reference_cifs:
        cid = path.stem
        graph = featurizer.featurize([str(path)])[0]
        assert isinstance(graph, CrystalGraph), cid
        ref_dist = reference_features[f"{cid}/nbr_dist"]
        np.testing.assert_array_equal(graph.node_features, reference_features[f"{cid}/atom_fea"])
        np.testing.assert_array_equal(
            graph.atomic_numbers, reference_features[f"{cid}/atomic_numbers"]
        )
        assert graph.neighbor_distance.shape == ref_dist.shape, cid
        np.testing.assert_allclose(graph.neighbor_distance, ref_dist, atol=1e-6, rtol=0)
        edge = graph.edge_features.reshape(ref_dist.shape + (-1,))
        np.testing.assert_allclose(edge, reference_features[f"{cid}/nbr_fea"], atol=1e-6, rtol=0)


def test_neighbour_sets_match_within_each_tied_shell(reference_cifs, reference_features):
    """Whole shells hold the same neighbours; the shell cut at the 12th neighbour holds
    equally many, all drawn from that shell (which ones is pymatgen's order, see docs)."""
    featurizer = CGCNNFeaturizer()
    for path in reference_cifs:
        cid = path.stem
        structure = Structure.from_file(path)
        graph = featurizer.featurize([structure])[0]
        ref_idx = reference_features[f"{cid}/nbr_fea_idx"]
        ref_dist = reference_features[f"{cid}/nbr_dist"]
        centers, neighbors, _, dists = structure.get_neighbor_list(8.0)
        for atom in range(len(structure)):
            ours = shells(graph.neighbor_distance[atom], graph.neighbor_index[atom])
            theirs = shells(ref_dist[atom], ref_idx[atom])
            assert ours.keys() == theirs.keys(), (cid, atom)
            last = max(ours)
            for d in ours:
                if d != last:
                    assert ours[d] == theirs[d], (cid, atom, d)
            full_shell = Counter(
                neighbors[(centers == atom) & (np.abs(dists - last) < 1e-6)].tolist()
            )
            assert sum(ours[last].values()) == sum(theirs[last].values())
            assert not ours[last] - full_shell and not theirs[last] - full_shell, (cid, atom)


def test_cgcnn_mode_is_the_get_all_neighbors_algorithm(mp_rows):
    """On real MP crystals, the selection equals the original's stable sort of pymatgen neighbours."""
    featurizer = CGCNNFeaturizer()
    for cif in mp_rows.cif[:60]:
        structure = Structure.from_str(cif, fmt="cif")
        graph = featurizer.featurize([structure])[0]
        for atom, nbrs in enumerate(structure.get_all_neighbors(8.0, include_index=True)):
            kept = sorted(nbrs, key=lambda n: n[1])[:12]
            np.testing.assert_allclose(
                graph.neighbor_distance[atom, : len(kept)], [n[1] for n in kept], atol=1e-9
            )
            assert (
                shells([n[1] for n in kept], [n[2] for n in kept]).keys()
                == shells(
                    graph.neighbor_distance[atom, : len(kept)],
                    graph.neighbor_index[atom, : len(kept)],
                ).keys()
            )


# ---------------------------------------------------------------- tie modes
def test_complete_mode_keeps_whole_tied_shell():
    graph = CGCNNFeaturizer(selection="complete").featurize([rock_salt()])[0]
    # 6 nearest Cl + 12 next-nearest Na: the 12th neighbour sits in the 12-atom shell, all 18 kept
    assert graph.neighbor_distance.shape == (8, 18)
    assert graph.mask.all()
    cut = CGCNNFeaturizer().featurize([rock_salt()])[0]
    assert cut.neighbor_distance.shape == (8, 12)


def test_complete_mode_is_invariant_to_site_order(mp_rows):
    featurizer = CGCNNFeaturizer(selection="complete")
    rng = np.random.default_rng(0)
    for cif in mp_rows.cif[:40]:
        structure = Structure.from_str(cif, fmt="cif")
        order = rng.permutation(len(structure))
        permuted = Structure.from_sites([structure[i] for i in order])
        a, b = featurizer.featurize([structure, permuted])
        for i, j in enumerate(order):  # atom j of the original is atom i of the permutation
            assert a.atomic_numbers[j] == b.atomic_numbers[i]
            d_a, n_a = row(a, j)
            d_b, n_b = row(b, i)
            assert sorted(zip(np.round(d_a, 6), n_a.tolist())) == sorted(
                zip(np.round(d_b, 6), order[n_b].tolist())
            )


def test_masked_padding_marks_missing_neighbours():
    sparse = Structure(Lattice.cubic(6.0), ["Cu"], [[0, 0, 0]])  # 6 neighbours within 6.5 Å
    cgcnn = CGCNNFeaturizer(radius=6.5).featurize([sparse])[0]
    np.testing.assert_allclose(cgcnn.neighbor_distance[0, 6:], 7.5)
    assert (cgcnn.neighbor_index[0, 6:] == 0).all() and cgcnn.num_edges == 12
    masked = CGCNNFeaturizer(radius=6.5, padding="mask").featurize([sparse])[0]
    assert masked.num_edges == 6 and np.isinf(masked.neighbor_distance[0, 6:]).all()


def test_isolated_atom_is_padded_and_recorded():
    lonely = Structure(Lattice.cubic(20.0), ["Ar"], [[0, 0, 0]])
    graph = CGCNNFeaturizer().featurize([lonely])[0]
    np.testing.assert_allclose(graph.neighbor_distance, 9.0)
    assert graph.geometry["n_isolated"] == 1 and graph.geometry["max_gap"] == 20.0


# ---------------------------------------------------------------- inputs and DeepChem
def test_accepts_structure_dict_cif_string_and_path(reference_cifs):
    path = reference_cifs[0]
    structure = Structure.from_file(path)
    featurizer = CGCNNFeaturizer()
    graphs = featurizer.featurize(
        [structure, structure.as_dict(), path.read_text(), str(path), path]
    )
    assert featurizer.n_failed == 0
    for graph in graphs[1:]:
        np.testing.assert_array_equal(graph.neighbor_distance, graphs[0].neighbor_distance)


def test_graph_data_compatibility():
    graph = CGCNNFeaturizer().featurize([rock_salt()])[0]
    assert isinstance(graph, dc.feat.GraphData)
    assert graph.node_features.shape == (8, 92) and graph.edge_index.shape == (2, 96)
    assert graph.edge_features.shape == (96, 41)
    np.testing.assert_allclose(
        graph.edge_features, gaussian_expand(graph.edge_distance, 8.0, 0.2), atol=1e-7
    )
    # DeepChem's own GraphData accepts what we expose
    plain = dc.feat.GraphData(graph.node_features, graph.edge_index, graph.edge_features)
    assert plain.num_edges == graph.num_edges
    # row 0 is the centre, as in dc.feat.CGCNNFeaturizer
    assert (graph.edge_index[0] == np.repeat(np.arange(8), 12)).all()


def test_disk_dataset_roundtrip_is_compact(mp_graphs, tmp_path):
    assert all(isinstance(g, CrystalGraph) for g in mp_graphs)
    n_atoms = sum(g.num_nodes for g in mp_graphs)
    assert sum(g.nbytes for g in mp_graphs) / n_atoms <= 128
    dc.data.DiskDataset.from_numpy(mp_graphs, np.zeros(len(mp_graphs)), data_dir=str(tmp_path))
    again = dc.data.DiskDataset(str(tmp_path))
    np.testing.assert_array_equal(again.X[7].neighbor_distance, mp_graphs[7].neighbor_distance)


def test_parallel_featurization_equals_serial(mp_rows):
    cifs = list(mp_rows.cif[:30])
    serial = CGCNNFeaturizer().featurize(cifs)
    parallel = CGCNNFeaturizer(n_jobs=2).featurize(cifs)
    for a, b in zip(serial, parallel):
        np.testing.assert_array_equal(a.neighbor_index, b.neighbor_index)
        np.testing.assert_array_equal(a.neighbor_distance, b.neighbor_distance)


def test_works_with_networking_disabled(no_network):
    graph = CGCNNFeaturizer().featurize([rock_salt()])[0]
    assert np.isfinite(graph.node_features).all()


# ---------------------------------------------------------------- bad input
def bad_structures():
    ok = rock_salt()
    disordered = Structure(Lattice.cubic(4.0), [{"Fe": 0.5, "Ni": 0.5}], [[0, 0, 0]])
    unknown = Structure(Lattice.cubic(4.0), ["Og"], [[0, 0, 0]])
    nonfinite = Structure(Lattice.cubic(4.0), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    nonfinite._sites[1]._frac_coords = np.array([np.nan, 0.5, 0.5])
    degenerate = Structure(Lattice([[4, 0, 0], [0, 4, 0], [4, 4, 0]]), ["Na"], [[0, 0, 0]])
    empty = Structure(Lattice.cubic(4.0), [], [])
    return [ok, disordered, unknown, nonfinite, degenerate, empty, "no/such/file.cif", 42]


@pytest.mark.parametrize(
    "index, reason",
    [
        (1, "disordered structure: sites [0] have partial occupancy"),
        (2, "element Og at site 0 has no CGCNN embedding"),
        (3, "non-finite coordinates at sites [1]"),
        (4, "degenerate lattice"),
        (5, "empty structure"),
        (6, "'no/such/file.cif' is neither a file nor a CIF string"),
        (7, "cannot read a crystal structure from int"),
    ],
)
def test_bad_input_is_reported_and_spares_the_rest(index, reason, caplog):
    featurizer = CGCNNFeaturizer()
    with caplog.at_level(logging.WARNING):
        graphs = featurizer.featurize(bad_structures())
    assert isinstance(graphs[0], CrystalGraph)
    assert featurizer.n_failed == 7
    failures = dict(featurizer.failures)
    assert reason in failures[index]
    assert graphs[index].size == 0
    assert f"Failed to featurize datapoint {index}" in caplog.text


def test_single_bad_structure_raises_a_clear_error():
    with pytest.raises(FeaturizationError, match="partial occupancy"):
        CGCNNFeaturizer()._featurize(bad_structures()[1])


def test_invalid_settings_are_refused():
    with pytest.raises(ValueError, match="selection"):
        CGCNNFeaturizer(selection="nearest")
    with pytest.raises(ValueError, match="padding='mask'"):
        CGCNNFeaturizer(selection="complete", padding="cgcnn")
