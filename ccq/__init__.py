"""ccq: the Cross-Class Query network (CCQ, AAAI 2023) for partially labeled multi-organ CT segmentation."""

from __future__ import annotations

from ccq._version import __version__

__all__ = ["__version__", "build_model", "ModelConfig", "get_preset", "predict"]


def __getattr__(name: str):
    # Lazy so that `ccq --help` and light imports do not pay for importing torch.
    if name in ("build_model", "ModelConfig", "get_preset"):
        from ccq import models

        return getattr(models, name)
    if name == "predict":
        from ccq.inference.api import predict

        return predict
    raise AttributeError(f"module 'ccq' has no attribute {name!r}")
