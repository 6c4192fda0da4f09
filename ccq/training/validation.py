"""The validation split (held out from the training cases, never the test cases) and validation itself.

The split is a pure function of the case ids and ``val_seed``: per task, the training cases are ranked by a
hash of (seed, task, case id) (the dataset's name instead of the task's for a dataset that labels several
tasks: they hold out the same cases) and the first ``round(fraction * n)`` are held out (at least one when the task
has two or more training cases, never all of them). So it does not depend on manifest order, on the training
seed, or on other tasks, and the run folder records the chosen ids.
"""

from __future__ import annotations

import copy
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ccq.data.cache import PreparedDataset
from ccq.evaluation.metrics import nanmean
from ccq.evaluation.prepared import score_prepared_cases


@dataclass(frozen=True)
class ValidationSplit:
    train: tuple[str, ...]
    """"task/case" keys of the cases the sampler draws from."""
    val: tuple[str, ...]
    """"task/case" keys held out for validation."""


def case_key(entry: Mapping[str, Any]) -> str:
    return f"{entry['task']}/{entry['id']}"


def split_validation(
    entries: Sequence[Mapping[str, Any]], fraction: float, seed: int = 0, max_per_task: int | None = None
) -> ValidationSplit:
    """Hold out a seeded share of each task's ``split == "train"`` entries (see the module docstring)."""
    by_task: dict[str, list[Mapping[str, Any]]] = {}
    for entry in entries:
        if entry["split"] == "train":
            by_task.setdefault(entry["task"], []).append(entry)
    train: list[str] = []
    val: list[str] = []
    for task, items in by_task.items():
        n = len(items)
        k = int(round(fraction * n)) if fraction > 0 else 0
        if fraction > 0 and n >= 2:
            k = max(k, 1)
        k = min(k, n - 1)
        if max_per_task is not None:
            k = min(k, max_per_task)
        # Keyed by the dataset for tasks that share one (`ccq.data.collection_dataset`): the same cases are held
        # out for all of them, so no held-out image is trained on through another of its tasks.
        ranked = sorted(items, key=lambda e: (zlib.crc32(f"{seed}/{e.get('dataset') or task}/{e['id']}".encode()),
                                              e["id"]))  # fmt: skip
        held = {case_key(e) for e in ranked[:k]}
        for e in items:
            (val if case_key(e) in held else train).append(case_key(e))
    return ValidationSplit(train=tuple(train), val=tuple(val))


def without_cases(dataset: PreparedDataset, keys: Sequence[str]) -> PreparedDataset:
    """A view of ``dataset`` whose manifest lacks the given "task/case" entries (the data is shared)."""
    drop = set(keys)
    view = copy.copy(dataset)
    view.entries = [e for e in dataset.entries if case_key(e) not in drop]
    return view


@torch.inference_mode()
def validate(
    model: nn.Module,
    dataset: PreparedDataset,
    keys: Sequence[str],
    *,
    patch_size: Sequence[int],
    overlap: float = 0.5,
    batch_size: int = 1,
    device: torch.device | str = "cpu",
) -> dict[str, Any]:
    """Sliding-window prediction of each held-out prepared volume for its own task; Dice ("mots" definition,
    threshold 0.5) of each channel the task labels (`ccq.evaluation.prepared`, as ``ccq reproduce`` scores).

    Returns ``{"cases": {key: {"organ": d, "tumor": d}}, "categories": {"task/organ": mean}, "mean": m}``
    where ``mean`` averages the categories with equal weight (as the paper averages its 11 categories).
    """
    wanted = set(keys)
    entries = [e for e in dataset.entries if case_key(e) in wanted]
    results = score_prepared_cases(model, dataset, entries, definition="mots", hd95=False, patch_size=patch_size,
                                   overlap=overlap, batch_size=batch_size, device=device)  # fmt: skip
    cases: dict[str, dict[str, float]] = {}
    per_category: dict[str, list[float]] = {}
    for result in results:
        cases[result.key] = {channel: score.dice for channel, score in result.scores.items()}
        for channel, score in result.scores.items():
            per_category.setdefault(f"{result.entry['task']}/{channel}", []).append(score.dice)
    categories = {k: nanmean(v) for k, v in per_category.items()}
    return {"cases": cases, "categories": categories, "mean": nanmean(categories.values())}
