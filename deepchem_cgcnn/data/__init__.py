"""Data sources for CGCNN: local structure tables (more sources arrive with the loaders)."""
from deepchem_cgcnn.data.table import StructureTable, read_structure_table

__all__ = ["StructureTable", "read_structure_table"]
