"""Inference: sliding-window prediction of prepared volumes, and whole-case prediction with a checkpoint."""

from ccq.inference.predictor import (
    CasePrediction,
    Predictor,
    find_inputs,
    predict_case,
    write_case_outputs,
)
from ccq.inference.sliding_window import gaussian_importance, predict_volume, window_starts
from ccq.utils.device import resolve_device

__all__ = [
    "CasePrediction",
    "Predictor",
    "find_inputs",
    "gaussian_importance",
    "predict_case",
    "predict_volume",
    "resolve_device",
    "window_starts",
    "write_case_outputs",
]
