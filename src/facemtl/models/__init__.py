"""Multitask models for facial attributes.

Every model maps float images (N, 3, S, S) in [0, 1] to a dict of task name to
output: (N,) for regression and binary tasks, (N, classes) for multiclass.
"""

from facemtl.models.baseline import NoSharingNet
from facemtl.models.blocks import Column, ConvBlock, check_image_size, feature_size, min_image_size, to_model_input
from facemtl.models.builder import ARCHITECTURES, PLACEMENTS, build_model, model_from_settings, tasks_from_settings
from facemtl.models.cross_stitch import CROSS_STITCH_INITS, CrossStitchNet, CrossStitchUnit, load_baseline_weights
from facemtl.models.heads import TaskHead
from facemtl.models.hps import HardSharingNet

__all__ = [
    "ARCHITECTURES",
    "CROSS_STITCH_INITS",
    "PLACEMENTS",
    "Column",
    "ConvBlock",
    "CrossStitchNet",
    "CrossStitchUnit",
    "HardSharingNet",
    "NoSharingNet",
    "TaskHead",
    "build_model",
    "check_image_size",
    "feature_size",
    "load_baseline_weights",
    "min_image_size",
    "model_from_settings",
    "tasks_from_settings",
]
