"""What a training run writes besides checkpoints: log.jsonl lines, config.json, and the software versions."""

from __future__ import annotations

import json
import os
import platform
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from ccq.utils import fs

LOG_FILE = "log.jsonl"
CONFIG_FILE = "config.json"


class JsonlLog:
    """Append-only JSON lines, flushed after every line so that a crash loses at most the current one."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._file: TextIO = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 (closed by close())

    def write(self, record: dict[str, Any]) -> None:
        self._file.write(fs.json_text(record, indent=None, where="log record") + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def read_log(path: str | Path) -> list[dict[str, Any]]:
    """Every record of a log.jsonl (a run folder or the file itself)."""
    path = Path(path)
    if path.is_dir():
        path = path / LOG_FILE
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


@dataclass
class Meter:
    """Sums of the training terms over the current logging interval."""

    totals: dict[str, float] = field(default_factory=dict)
    count: int = 0

    def add(self, **values: float) -> None:
        for key, value in values.items():
            self.totals[key] = self.totals.get(key, 0.0) + float(value)
        self.count += 1

    def means(self) -> dict[str, float]:
        return {k: v / max(self.count, 1) for k, v in self.totals.items()}

    def reset(self) -> None:
        self.totals, self.count = {}, 0


def versions() -> dict[str, str]:
    """Versions of what decides the numbers: Python, torch (+ CUDA), numpy, ccq, the platform."""
    import numpy
    import torch

    from ccq._version import __version__

    out = {
        "ccq": __version__,
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "platform": platform.platform(),
        "cpu_count": str(os.cpu_count()),
        "torch_threads": str(torch.get_num_threads()),
    }
    if torch.cuda.is_available():
        out["cuda"] = str(torch.version.cuda)
        out["gpu"] = torch.cuda.get_device_name(0)
    return out
