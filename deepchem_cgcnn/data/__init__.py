"""Data for CGCNN: sources (Matbench, DeepChem archives, the MP API, local files), downloads,
MaterialsProjectLoader, dc.molnet-style loaders and splitters."""

from deepchem_cgcnn.data.download import DownloadError, RemoteFile, fetch
from deepchem_cgcnn.data.loader import LoadResult, MaterialsProjectLoader
from deepchem_cgcnn.data.molnet import (
    load_mp_band_gap,
    load_mp_bulk_modulus,
    load_mp_fermi_energy,
    load_mp_formation_energy,
    load_mp_metallicity,
    load_mp_shear_modulus,
    load_perovskite,
)
from deepchem_cgcnn.data.remote import NAMED_DATASETS
from deepchem_cgcnn.data.shards import ShardedDataset, featurize_to_shards
from deepchem_cgcnn.data.splitters import (
    CGCNNRandomSplitter,
    CompositionGroupedSplitter,
    OriginalCGCNNSplitter,
    StratifiedSplitter,
    get_splitter,
)
from deepchem_cgcnn.data.summary import LoadSummary
from deepchem_cgcnn.data.table import StructureTable, read_structure_table

__all__ = [
    "CGCNNRandomSplitter",
    "CompositionGroupedSplitter",
    "DownloadError",
    "LoadResult",
    "LoadSummary",
    "MaterialsProjectLoader",
    "NAMED_DATASETS",
    "OriginalCGCNNSplitter",
    "RemoteFile",
    "ShardedDataset",
    "StratifiedSplitter",
    "StructureTable",
    "featurize_to_shards",
    "fetch",
    "get_splitter",
    "load_mp_band_gap",
    "load_mp_bulk_modulus",
    "load_mp_fermi_energy",
    "load_mp_formation_energy",
    "load_mp_metallicity",
    "load_mp_shear_modulus",
    "load_perovskite",
    "read_structure_table",
]
