import socket

import numpy as np
import pytest

from deepchem.feat import CGCNNFeaturizer

try:
    from pymatgen.core import Lattice, Structure
    has_pymatgen = True
except ModuleNotFoundError:
    has_pymatgen = False


def _cscl(a=4.2):
    return Structure(Lattice.cubic(a), ["Cs", "Cl"],
                     [[0, 0, 0], [0.5, 0.5, 0.5]])


@pytest.mark.skipif(not has_pymatgen, reason="needs pymatgen")
def test_no_network_at_construction_or_featurization(monkeypatch):

    def refuse(*args, **kwargs):
        raise OSError("network access attempted")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    graph = CGCNNFeaturizer().featurize([_cscl()])[0]
    assert graph.node_features.shape == (2, 92)
    # Cs: group 1, period 6; its one-hot blocks hold exactly nine ones
    assert graph.node_features[0].sum() == 9


@pytest.mark.skipif(not has_pymatgen, reason="needs pymatgen")
def test_edges_are_the_nearest_neighbors_with_gaussian_features():
    graph = CGCNNFeaturizer().featurize([_cscl(4.2)])[0]
    centers, neighbors = graph.edge_index
    assert graph.edge_index.shape == (2, 24)
    assert centers.tolist() == [0] * 12 + [1] * 12
    # CsCl: 8 unlike neighbors at a*sqrt(3)/2, then 6 like ones at a (4 of them kept)
    assert neighbors[:8].tolist() == [1] * 8 and neighbors[8:12].tolist(
    ) == [0] * 4
    d_first = 4.2 * np.sqrt(3) / 2
    mu = np.arange(0, 8.2, 0.2)
    assert np.allclose(graph.edge_features[0],
                       np.exp(-(d_first - mu)**2 / 0.04),
                       atol=1e-6)


@pytest.mark.skipif(not has_pymatgen, reason="needs pymatgen")
def test_complete_selection_keeps_ties_and_cgcnn_pads_like_the_original():
    # bcc: 8 neighbors at a*sqrt(3)/2 and 6 tied at a
    bcc = Structure(Lattice.cubic(3.0), ["Fe", "Fe"],
                    [[0, 0, 0], [0.5, 0.5, 0.5]])
    complete = CGCNNFeaturizer(selection="complete").featurize([bcc])[0]
    original = CGCNNFeaturizer().featurize([bcc])[0]
    assert complete.num_edges == 2 * 14 and original.num_edges == 2 * 12
    # within 2.7 A, each atom has 8 neighbors; the original pads to 12 with atom 0 at radius + 1
    small = CGCNNFeaturizer(radius=2.7).featurize([bcc])[0]
    assert small.num_edges == 24
    padded = small.edge_features[8:12]
    mu = np.arange(0, 2.9, 0.2)
    assert np.allclose(padded, np.exp(-(3.7 - mu)**2 / 0.04), atol=1e-6)
    assert small.edge_index[1, 8:12].tolist() == [0, 0, 0, 0]
    assert CGCNNFeaturizer(radius=2.7,
                           selection="complete").featurize([bcc
                                                           ])[0].num_edges == 16


@pytest.mark.skipif(not has_pymatgen, reason="needs pymatgen")
def test_a_bad_structure_fails_alone_with_its_reason(caplog):
    disordered = Structure(Lattice.cubic(4.0), [{
        "Fe": 0.5,
        "Co": 0.5
    }], [[0, 0, 0]])
    overlapping = Structure(Lattice.cubic(4.0), ["Na", "Cl"],
                            [[0, 0, 0], [0.01, 0, 0]])
    graphs = CGCNNFeaturizer().featurize(
        [_cscl(), disordered, overlapping,
         _cscl(4.0)])
    assert graphs[0].num_nodes == 2 and graphs[3].num_nodes == 2
    assert graphs[1].size == 0 and graphs[2].size == 0
    assert "partial occupancy" in caplog.text and "overlapping atoms" in caplog.text


@pytest.mark.torch
@pytest.mark.skipif(not has_pymatgen, reason="needs pymatgen")
def test_graph_data_converts_to_torch():
    import torch
    graph = CGCNNFeaturizer().featurize([_cscl()])[0].numpy_to_torch()
    assert isinstance(graph.node_features, torch.Tensor)
    assert graph.edge_index.dtype == torch.int64
    assert graph.edge_features.shape == (24, 41)
