"""Crystal Graph Convolutional Neural Networks for DeepChem.

>>> from deepchem_cgcnn import CGCNNFeaturizer, CGCNNModel
"""
from deepchem_cgcnn.checkpoints import CheckpointError, available_pretrained, pretrained_card
from deepchem_cgcnn.featurizer import CGCNNFeaturizer, FeaturizationError
from deepchem_cgcnn.graph import CrystalGraph, CrystalGraphBatch, batch_graphs
from deepchem_cgcnn.layers import GatedConv, GaussianExpansion, SimpleConv
from deepchem_cgcnn.model import CGCNN, CGCNNModel

__version__ = "0.1.0"

__all__ = [
    "CGCNN", "CGCNNFeaturizer", "CGCNNModel", "CheckpointError", "CrystalGraph",
    "CrystalGraphBatch", "FeaturizationError", "GatedConv", "GaussianExpansion", "SimpleConv",
    "available_pretrained", "batch_graphs", "pretrained_card",
]
