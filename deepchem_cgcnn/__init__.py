"""Crystal Graph Convolutional Neural Networks for DeepChem.

>>> from deepchem_cgcnn import CGCNNFeaturizer, CGCNNModel
"""

from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _version

from deepchem_cgcnn.data import (
    CGCNNRandomSplitter,
    CompositionGroupedSplitter,
    DownloadError,
    LoadSummary,
    MaterialsProjectLoader,
    OriginalCGCNNSplitter,
    ShardedDataset,
    StratifiedSplitter,
    featurize_to_shards,
    load_mp_band_gap,
    load_mp_bulk_modulus,
    load_mp_fermi_energy,
    load_mp_formation_energy,
    load_mp_metallicity,
    load_mp_shear_modulus,
    load_perovskite,
)
from deepchem_cgcnn.domain import DomainRecord, DomainWarning
from deepchem_cgcnn.ensemble import CGCNNEnsemble, calibration, load_pretrained_predictor
from deepchem_cgcnn.featurizer import CGCNNFeaturizer, FeaturizationError
from deepchem_cgcnn.gating import GatedRegressor
from deepchem_cgcnn.graph import CrystalGraph, CrystalGraphBatch, batch_graphs
from deepchem_cgcnn.graph_step import GraphStepWarning
from deepchem_cgcnn.layers import GatedConv, GaussianExpansion, SimpleConv
from deepchem_cgcnn.model import CGCNN, CGCNNModel, GraphSettingsError
from deepchem_cgcnn.original import CheckpointError
from deepchem_cgcnn.registry import (
    available_pretrained,
    load_model,
    pretrained_card,
    save_model,
)
from deepchem_cgcnn.training import RunMismatchError, TrainingDivergedError


def __getattr__(name: str):
    """Names whose modules need an optional extra, imported on first use."""
    if name == "fit_distributed":  # pip install 'deepchem-cgcnn[distributed]' (Lightning)
        from deepchem_cgcnn.distributed import fit_distributed

        return fit_distributed
    raise AttributeError(f"module 'deepchem_cgcnn' has no attribute {name!r}")


try:
    __version__ = _version("deepchem-cgcnn")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

__all__ = [
    "CGCNN",
    "CGCNNEnsemble",
    "CGCNNFeaturizer",
    "CGCNNModel",
    "CGCNNRandomSplitter",
    "CheckpointError",
    "CompositionGroupedSplitter",
    "CrystalGraph",
    "CrystalGraphBatch",
    "DomainRecord",
    "DomainWarning",
    "DownloadError",
    "GraphSettingsError",
    "GraphStepWarning",
    "RunMismatchError",
    "TrainingDivergedError",
    "FeaturizationError",
    "GatedConv",
    "GatedRegressor",
    "GaussianExpansion",
    "LoadSummary",
    "MaterialsProjectLoader",
    "OriginalCGCNNSplitter",
    "ShardedDataset",
    "SimpleConv",
    "StratifiedSplitter",
    "available_pretrained",
    "load_model",
    "save_model",
    "batch_graphs",
    "calibration",
    "featurize_to_shards",
    "load_mp_band_gap",
    "load_mp_bulk_modulus",
    "load_mp_fermi_energy",
    "load_mp_formation_energy",
    "load_mp_metallicity",
    "load_mp_shear_modulus",
    "load_perovskite",
    "load_pretrained_predictor",
    "pretrained_card",
]
