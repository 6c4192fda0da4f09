"""`ccq doctor`: what this environment has (versions, devices, threads, memory, disk) and what each feature
still needs. Everything is read, nothing is changed; no check may fail the whole report."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import platform
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PACKAGES = ("torch", "numpy", "scipy", "nibabel", "SimpleITK", "safetensors", "typer", "tqdm", "matplotlib",
            "pyyaml")  # fmt: skip
OPTIONAL = {
    "monai": "the reference HD95 the tests and benchmarks compare with (pip install 'ccq[dev]')",
    "tensorboard": "TensorBoard scalars in training runs (pip install 'ccq[tensorboard]')",
    "onnx": "ccq export --format onnx",
    "onnxruntime": "running exported ONNX models",
}


@dataclass(frozen=True)
class Feature:
    name: str
    ready: bool
    detail: str
    """What it uses when ready; what is missing (and how to get it) when not."""


def version_of(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _memory_gib() -> tuple[float | None, float | None]:
    """(total, available) system memory in GiB from /proc/meminfo (None where unavailable)."""
    try:
        fields = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines() if ":" in line)
        kib = {k: float(v.split()[0]) for k, v in fields.items() if k in ("MemTotal", "MemAvailable")}
        return kib["MemTotal"] / 2**20, kib["MemAvailable"] / 2**20
    except (OSError, KeyError, ValueError):
        return None, None


def _devices(torch: Any) -> list[dict[str, Any]]:
    devices: list[dict[str, Any]] = [{"device": "cpu", "name": platform.processor() or platform.machine()}]
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(i)
            free, total = torch.cuda.mem_get_info(i)
            devices.append({
                "device": f"cuda:{i}", "name": props.name, "memory_gib": round(total / 2**30, 1),
                "free_gib": round(free / 2**30, 1), "capability": f"{props.major}.{props.minor}",
                "bf16": bool(torch.cuda.is_bf16_supported()),
            })  # fmt: skip
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        devices.append({"device": "mps", "name": "Apple GPU"})
    return devices


def features(torch: Any, packages: dict[str, str | None]) -> list[Feature]:
    cuda = torch.cuda.is_available()
    gpus = torch.cuda.device_count() if cuda else 0
    compiler = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    nccl = bool(cuda and torch.distributed.is_available() and torch.distributed.is_nccl_available())
    found = {
        "training and prediction on a GPU": (cuda, f"{gpus} CUDA GPU(s)",
                                             "no CUDA GPU visible to torch (a CPU build of torch, or no driver)"),
        "mixed precision (bf16/fp16)": (cuda, "CUDA autocast", "needs a CUDA GPU; the CPU trains in fp32"),
        "multi-GPU training (torchrun, NCCL)": (gpus >= 2 and nccl, f"{gpus} GPUs, NCCL",
                                                 f"{gpus} GPU(s); torchrun on the CPU uses gloo (for tests)"),
        "torch.compile": (compiler is not None or cuda, compiler or "CUDA (triton)",
                          "no C compiler found for the CPU backend (install gcc)"),
        "DICOM input": (packages.get("SimpleITK") is not None, "SimpleITK", "pip install SimpleITK"),
        "TensorBoard logging": (packages.get("tensorboard") is not None, "tensorboard",
                                "pip install 'ccq[tensorboard]'"),
        "ONNX export": (packages.get("onnx") is not None and packages.get("onnxruntime") is not None,
                        "onnx + onnxruntime", "pip install onnx onnxruntime (TorchScript export needs nothing)"),
    }  # fmt: skip
    return [Feature(name, ok, yes if ok else no) for name, (ok, yes, no) in found.items()]


def report(path: str | Path = ".") -> dict[str, Any]:
    """The whole report as JSON-ready data; ``path`` is where free disk space is measured."""
    import torch

    from ccq._version import __version__

    packages = {p: version_of(p) for p in (*PACKAGES, *OPTIONAL)}
    total, available = _memory_gib()
    target = Path(path).expanduser()
    while not target.exists() and target != target.parent:
        target = target.parent
    disk = shutil.disk_usage(target)
    return {
        "ccq": __version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": packages,
        "torch_cuda": torch.version.cuda,
        "devices": _devices(torch),
        "threads": {
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
        },  # fmt: skip
        "memory_gib": {
            "total": None if total is None else round(total, 1),
            "available": None if available is None else round(available, 1),
        },  # fmt: skip
        "disk": {"path": str(target.resolve()), "free_gib": round(disk.free / 2**30, 1)},
        "features": [{"name": f.name, "ready": f.ready, "detail": f.detail} for f in features(torch, packages)],
    }


def format_report(data: dict[str, Any]) -> str:
    lines = [f"ccq {data['ccq']}, Python {data['python']}, {data['platform']}"]
    pkgs = data["packages"]
    lines.append("packages: " + ", ".join(f"{k} {v}" for k, v in pkgs.items() if v and k not in OPTIONAL))
    missing = [k for k in PACKAGES if not pkgs.get(k)]
    if missing:
        lines.append(f"MISSING required packages: {', '.join(missing)} (reinstall ccq)")
    lines.append("optional: " + ", ".join(f"{k} {pkgs[k] or '-'}" for k in OPTIONAL))
    cuda = f", CUDA {data['torch_cuda']}" if data["torch_cuda"] else " (CPU build)"
    lines.append(f"torch {pkgs.get('torch')}{cuda}")
    for d in data["devices"]:
        extra = f", {d['memory_gib']} GiB ({d['free_gib']} free), bf16 {d['bf16']}" if "memory_gib" in d else ""
        lines.append(f"device {d['device']}: {d['name']}{extra}")
    t = data["threads"]
    lines.append(f"threads: {t['cpu_count']} CPUs, torch uses {t['torch_threads']} (OMP_NUM_THREADS="
                 f"{t['OMP_NUM_THREADS'] or 'unset'})")  # fmt: skip
    m = data["memory_gib"]
    lines.append(f"memory: {m['available']} of {m['total']} GiB available; disk: {data['disk']['free_gib']} GiB "
                 f"free at {data['disk']['path']}")  # fmt: skip
    lines.append("features:")
    for f in data["features"]:
        lines.append(f"  [{'ok' if f['ready'] else '--'}] {f['name']}: {f['detail']}")
    return "\n".join(lines)
