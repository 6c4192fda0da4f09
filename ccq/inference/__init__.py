"""Inference: sliding-window prediction of prepared volumes, whole-case prediction with a checkpoint, writing."""

from ccq.inference.api import predict
from ccq.inference.postprocess import PRESETS as POSTPROCESS_PRESETS
from ccq.inference.postprocess import TaskRule, apply_rule
from ccq.inference.predictor import (
    CasePrediction,
    Predictor,
    PreparedVolume,
    TaskResult,
    inference_device,
    inference_layout,
)
from ccq.inference.sliding_window import (
    flip_tta,
    gaussian_importance,
    model_windows,
    predict_channels,
    predict_volume,
    sliding_window,
    window_starts,
)
from ccq.inference.writer import CaseWriter, check_outputs_free, output_paths, write_case_outputs
from ccq.utils.device import resolve_device

__all__ = [
    "POSTPROCESS_PRESETS",
    "CasePrediction",
    "CaseWriter",
    "Predictor",
    "PreparedVolume",
    "TaskResult",
    "TaskRule",
    "apply_rule",
    "check_outputs_free",
    "flip_tta",
    "gaussian_importance",
    "inference_device",
    "inference_layout",
    "model_windows",
    "output_paths",
    "predict",
    "predict_channels",
    "predict_volume",
    "resolve_device",
    "sliding_window",
    "window_starts",
    "write_case_outputs",
]
