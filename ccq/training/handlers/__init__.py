"""What happens around the training steps, one concern per module: checkpoints (last/, best/, snapshots),
validation, metric logging (log.jsonl, TensorBoard, the progress bar, curves.png) and run records
(config.json, resume records). The loop in `ccq.training.trainer` calls the `Handler` hooks at fixed points;
a test can install its own handler (e.g. one that stops the process after a save) through ``Trainer(handlers=)``.
"""

from __future__ import annotations

from ccq.training.handlers.base import Handler

__all__ = ["Handler"]
