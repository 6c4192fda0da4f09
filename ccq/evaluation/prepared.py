"""Predicting prepared cases with a model in memory and scoring them: the one path for training validation
(`ccq.training.validation`), ``ccq reproduce`` (`ccq.reproduce`) and the demo's recipe search
(``benchmarks/demo_tuning.py``).

Each case is predicted for its own task, as the paper evaluates: sliding window over the prepared (working-grid)
volume (`ccq.inference.sliding_window.predict_channels`), probability > 0.5, and scored against the prepared
label for each channel its task labels, under a definition of `ccq.evaluation.scoring`. Distances are in voxels of
the working grid ("mots") or in mm at the working spacing ("standard"), as ``ccq evaluate`` measures against a
prepared folder. Scoring a prediction written to disk instead is `ccq.evaluation.evaluate_folder`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from ccq.data.cache import PreparedDataset
from ccq.data.collection import CHANNELS
from ccq.data.grid import entry_grid
from ccq.data.prepare import channel_lut
from ccq.evaluation.metrics import DiceDefinition
from ccq.evaluation.report import build_summary
from ccq.evaluation.scoring import MaskScore, case_record, check_definition, score_masks
from ccq.inference.sliding_window import predict_channels

THRESHOLD = 0.5
"""A voxel is inside a channel when its probability exceeds this (the official post-processing's threshold)."""


@dataclass(frozen=True)
class CaseScores:
    """The scores of one prepared case, for each channel its task labels."""

    entry: Mapping[str, Any]
    """The case's manifest entry (`ccq.data.cache.PreparedDataset`)."""
    scores: dict[str, MaskScore]
    """Channel ("organ", "tumor") -> its score, in channel order; a channel the task does not label is absent."""

    @property
    def key(self) -> str:
        """The case's key "task/case", as the training run names its validation cases."""
        return f"{self.entry['task']}/{self.entry['id']}"

    def records(self) -> list[dict[str, Any]]:
        """One evaluation record per scored channel (the rows of ``cases.csv``)."""
        return [case_record(self.entry["id"], self.entry["task"], c, s) for c, s in self.scores.items()]


@torch.inference_mode()
def score_prepared_cases(
    model: nn.Module,
    dataset: PreparedDataset,
    entries: Sequence[Mapping[str, Any]],
    *,
    definition: DiceDefinition = "mots",
    hd95: bool = True,
    patch_size: Sequence[int] | None = None,
    overlap: float = 0.5,
    batch_size: int = 1,
    tta: bool = False,
    device: torch.device | str | None = None,
    on_case: Callable[[CaseScores], None] | None = None,
) -> list[CaseScores]:
    """Predict each of ``entries`` (manifest entries of ``dataset``) for its own task and score it; see the module
    docstring. In ``entries``' order.

    ``hd95`` False: Dice only (no surface distances). ``patch_size`` (default: the model's), ``overlap``,
    ``batch_size``, ``tta`` and ``device`` (default: the model's) as `predict_channels`. The model is left in the
    train/eval mode it came in. ``on_case``: called with each case's scores as soon as they are known.
    """
    check_definition(definition)
    pre = dataset.preprocessing
    pad_value = pre.hu_min / pre.hu_scale  # air after windowing: what lies beyond the volume's edge
    results: list[CaseScores] = []
    was_training = model.training
    try:
        for entry in entries:
            luts = {c: channel_lut(entry["channels"][c]) for c in CHANNELS}
            labeled = [c for c in CHANNELS if luts[c] is not None]
            scores: dict[str, MaskScore] = {}
            if labeled:
                probs = predict_channels(
                    model, np.asarray(dataset.image(entry)), [int(entry["task_id"])],
                    [(0, CHANNELS.index(c)) for c in labeled], patch_size, overlap=overlap, tta=tta,
                    batch_size=batch_size, pad_value=pad_value, device=device,
                )  # fmt: skip
                label = np.asarray(dataset.label(entry))
                spacing = None if definition == "mots" else tuple(float(s) for s in entry["spacing"])
                for i, channel in enumerate(labeled):
                    truth = luts[channel][label]  # type: ignore[index]
                    scores[channel] = score_masks(probs[i].numpy() > THRESHOLD, truth, definition, spacing,
                                                  hd95=hd95)  # fmt: skip
            results.append(CaseScores(entry, scores))
            if on_case is not None:
                on_case(results[-1])
    finally:
        model.train(was_training)
    return results


def prepared_summary(
    results: Sequence[CaseScores],
    dataset: PreparedDataset,
    *,
    definition: DiceDefinition,
    sources: Mapping[str, Any],
) -> dict[str, Any]:
    """The evaluation summary (`ccq.evaluation.report`, as ``ccq evaluate`` writes it) of scored prepared cases;
    with per-task working grids it says each task's, as ``ccq evaluate`` does against a prepared folder."""
    records = [r for case in results for r in case.records()]
    grids = None if dataset.preprocessing.uniform else {case.entry["task"]: entry_grid(case.entry) for case in results}
    return build_summary(records, dataset.collection, definition=definition, grid="working",
                         spacing=dataset.preprocessing.spacing, sources=sources, grids=grids)  # fmt: skip
