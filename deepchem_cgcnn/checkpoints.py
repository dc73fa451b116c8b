"""Compatibility: the names this module had before the split into ``original`` and ``registry``."""

from deepchem_cgcnn.original import (
    CheckpointError,
    check_state_dict,
    load_cgcnn_checkpoint,
    read_cgcnn_checkpoint,
)
from deepchem_cgcnn.registry import (
    PRETRAINED_PACKAGE,
    UnknownModelError,
    available_pretrained,
    ensemble_members,
    load_model,
    load_pretrained,
    load_saved,
    pretrained_card,
    save_model,
    save_pretrained,
)

__all__ = [
    "PRETRAINED_PACKAGE",
    "CheckpointError",
    "UnknownModelError",
    "available_pretrained",
    "check_state_dict",
    "ensemble_members",
    "load_cgcnn_checkpoint",
    "load_model",
    "load_pretrained",
    "load_saved",
    "pretrained_card",
    "read_cgcnn_checkpoint",
    "save_model",
    "save_pretrained",
]
