"""Deployment export: a ccq checkpoint as an ONNX or TorchScript graph with its preprocessing JSON beside it."""

from ccq.export.exporter import ALL_TASKS, FORMATS, ExportResult, export_model, spec_path

__all__ = ["ALL_TASKS", "FORMATS", "ExportResult", "export_model", "spec_path"]
