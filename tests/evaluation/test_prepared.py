"""Predicting and scoring prepared cases in memory (`ccq.evaluation.prepared`): the numbers of a direct
computation (sliding window, threshold 0.5, the scoring rules), each case for its own task, labeled channels only."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ccq.data.cache import PreparedDataset
from ccq.data.prepare import channel_lut
from ccq.errors import CCQError
from ccq.evaluation.metrics import dice_score
from ccq.evaluation.prepared import THRESHOLD, prepared_summary, score_prepared_cases
from ccq.evaluation.scoring import score_masks
from ccq.inference.sliding_window import predict_volume
from tests.evaluation.phantoms import prepared_phantoms, torch_threads


@pytest.fixture(autouse=True)
def one_thread():
    yield from torch_threads(1)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> PreparedDataset:
    return PreparedDataset(prepared_phantoms(tmp_path_factory.mktemp("prepared-scoring")))


class Threshold(torch.nn.Module):
    """A stand-in model whose channels are voxels brighter than two levels (non-empty, imperfect masks)."""

    def __init__(self) -> None:
        super().__init__()
        self.levels = torch.nn.Parameter(torch.tensor([-0.2, 0.1]))

    def forward_all_tasks(self, x: torch.Tensor, tasks: torch.Tensor) -> torch.Tensor:
        """x: [B, 1, D, H, W] -> logits [B, T, 2, D, H, W]."""
        logits = 40.0 * (x - self.levels.view(1, 2, 1, 1, 1))  # [B, 2, D, H, W]
        return logits.unsqueeze(1).expand(-1, tasks.numel(), -1, -1, -1, -1)


def _direct(model, dataset: PreparedDataset, entry, definition: str) -> dict:
    pre = dataset.preprocessing
    probs = predict_volume(model, np.asarray(dataset.image(entry)), [int(entry["task_id"])], (16, 32, 32),
                           pad_value=pre.hu_min / pre.hu_scale)  # fmt: skip
    label = np.asarray(dataset.label(entry))
    spacing = None if definition == "mots" else entry["spacing"]
    out = {}
    for c, channel in enumerate(("organ", "tumor")):
        lut = channel_lut(entry["channels"][channel])
        if lut is not None:
            out[channel] = score_masks(probs[0, c].numpy() > THRESHOLD, lut[label], definition, spacing)
    return out


@pytest.mark.parametrize("definition", ["mots", "standard"])
def test_scores_are_those_of_a_direct_computation(dataset: PreparedDataset, definition: str) -> None:
    model = Threshold().train()
    entries = dataset.cases(split="test")
    seen = []
    results = score_prepared_cases(model, dataset, entries, definition=definition, patch_size=(16, 32, 32),
                                   on_case=seen.append)  # fmt: skip
    assert model.training  # left in the mode it came in
    assert [r.key for r in results] == [f"{e['task']}/{e['id']}" for e in entries] == [r.key for r in seen]
    for result, entry in zip(results, entries, strict=True):
        assert result.scores == _direct(model, dataset, entry, definition)
    channels = {r.entry["task"]: list(r.scores) for r in results}
    assert channels == {"liver": ["organ", "tumor"], "colon": ["tumor"], "spleen": ["organ"]}
    assert any(0.0 < s.dice < 1.0 and math.isfinite(s.hd95) for r in results for s in r.scores.values())


def test_dice_only_and_the_summary(dataset: PreparedDataset) -> None:
    model = Threshold()
    entries = dataset.cases(split="test")
    full = score_prepared_cases(model, dataset, entries, patch_size=(16, 32, 32))
    fast = score_prepared_cases(model, dataset, entries, hd95=False, patch_size=(16, 32, 32))
    for a, b in zip(full, fast, strict=True):
        assert [s.dice for s in a.scores.values()] == [s.dice for s in b.scores.values()]
        assert all(math.isnan(s.hd95) for s in b.scores.values())
    # Dice as the metric function gives it on the whole volumes (what training validation logged before).
    liver, pre = full[0], dataset.preprocessing
    probs = predict_volume(model, np.asarray(dataset.image(liver.entry)), [int(liver.entry["task_id"])],
                           (16, 32, 32), pad_value=pre.hu_min / pre.hu_scale)  # fmt: skip
    lut = channel_lut(liver.entry["channels"]["organ"])
    truth = lut[np.asarray(dataset.label(liver.entry))]
    assert liver.scores["organ"].dice == dice_score(probs[0, 0].numpy() > 0.5, truth)

    summary = prepared_summary(full, dataset, definition="mots", sources={"model": "m"})
    assert summary["n_cases"] == 3 and summary["grid"] == "working" and summary["sources"] == {"model": "m"}
    assert summary["spacing"] == [3.0, 2.25, 2.25] and "grids" not in summary  # one canonical grid
    assert list(summary["categories"]) == ["liver/organ", "liver/tumor", "colon/tumor", "spleen/organ"]
    assert summary["cases"] == [r for case in full for r in case.records()]
    assert summary["categories"]["colon/tumor"]["dice"] == full[1].scores["tumor"].dice


def test_a_wrong_definition_is_refused_before_any_prediction(dataset: PreparedDataset) -> None:
    with pytest.raises(CCQError, match="definition 'dice'"):
        score_prepared_cases(Threshold(), dataset, dataset.cases(split="test"), definition="dice")  # type: ignore[arg-type]
