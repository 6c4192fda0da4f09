"""What limits a demo run's Dice (run by hand on a `ccq demo` output folder).

    python benchmarks/demo_diagnosis.py DIR [--spacing 4 3 3] [--threads 2]

Prints, per task and channel (the demo's standard Dice definition):

- ``ceiling``: each held-out test label taken to the working grid (nearest, as `ccq prepare` does) and back to
  the phantom's grid through the predict path's own resampling (`Predictor._back_to_input`: linear, threshold
  0.5): the best Dice any model could reach on that grid. ``--spacing`` tries another working grid.
- ``train`` / ``test``: the model in DIR/model scored on the prepared training and test cases (working grid, as
  training validation scores): equal figures mean the model underfits; a much higher train figure, overfitting.
- ``missed``: for tumor channels, the median predicted probability inside the reference tumor of each test case
  (near 0: the lesion is not seen at all, rather than drawn too small).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import torch

from ccq.checkpoint import load_checkpoint
from ccq.data import geometry
from ccq.data import grid as working
from ccq.data.cache import PreparedDataset
from ccq.data.collection import find_cases, load_collection
from ccq.demo import DICE_DEFINITION
from ccq.evaluation.metrics import dice_score
from ccq.evaluation.prepared import prepared_summary, score_prepared_cases
from ccq.inference.predictor import Predictor


def _test_cases(collection):
    for task in collection.tasks:
        for case in find_cases(task, collection.dataset_dir(task)):
            if case.case_id in task.split.test:
                yield task, case


def ceiling_and_missed(demo: Path, spacing: tuple[float, float, float] | None) -> dict[str, dict[str, float]]:
    predictor = Predictor(demo / "model", device="cpu", tta=False)
    if spacing is not None:
        predictor.preprocessing = dataclasses.replace(predictor.preprocessing, spacing=spacing)
    collection = load_collection(demo / "phantom" / "collection.yaml")
    ceiling: dict[str, list[float]] = {}
    missed: dict[str, list[float]] = {}
    for task, case in _test_cases(collection):
        prepared = predictor.prepare(str(case.image), tasks=[task.name])
        image = nib.load(str(case.label))
        label = np.asarray(image.dataobj).astype(np.uint8)
        canonical, _ = geometry.canonical_view(label, image.affine)
        grid = prepared.grid or predictor.preprocessing.default_grid
        on_grid = working.to_working(canonical, prepared.info, grid, order=0, shape=prepared.image.shape[-3:])
        for channel, values in (("organ", task.organ), ("tumor", task.tumor)):
            if not values:
                continue
            mask = np.isin(on_grid, list(values)).astype(np.float32)
            back, _ = predictor._back_to_input(torch.from_numpy(mask), prepared.info, False, grid)
            reference = np.isin(label, list(values))
            ceiling.setdefault(f"{task.name}/{channel}", []).append(
                dice_score(back, reference, definition=DICE_DEFINITION)
            )
        if task.tumor and spacing is None:
            (result,) = predictor.iter_tasks(prepared, predictor.resolve_tasks([task.name]), keep_probabilities=True)
            inside = result.probabilities["tumor"][np.isin(label, list(task.tumor))]
            if inside.size:
                missed.setdefault(f"{task.name}/tumor", []).append(float(np.median(inside)))
    return {
        "ceiling": {k: round(float(np.mean(v)), 3) for k, v in ceiling.items()},
        "missed": {k: [round(x, 2) for x in v] for k, v in missed.items()},
    }


def train_and_test(demo: Path) -> dict[str, dict[str, float]]:
    dataset = PreparedDataset(demo / "prepared")
    loaded = load_checkpoint(demo / "model", device=torch.device("cpu"))
    out = {}
    for split in ("train", "test"):
        results = score_prepared_cases(loaded.model, dataset, dataset.cases(split=split), definition=DICE_DEFINITION,
                                       hd95=False, patch_size=loaded.model_config.patch_size)  # fmt: skip
        summary = prepared_summary(results, dataset, definition=DICE_DEFINITION, sources={})
        out[split] = {k: round(v["dice"], 3) for k, v in summary["categories"].items()}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("demo", type=Path, help="A `ccq demo --out` folder.")
    parser.add_argument("--spacing", type=float, nargs=3, default=None, help="Ceiling on another working grid.")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    spacing = tuple(args.spacing) if args.spacing else None
    report = ceiling_and_missed(args.demo, spacing)
    if spacing is None:
        report.update(train_and_test(args.demo))
    for key, values in report.items():
        print(f"{key}: {json.dumps(values)}")
    means = {
        c: round(float(np.mean([v for k, v in report["ceiling"].items() if k.endswith(c)])), 3)
        for c in ("organ", "tumor")
    }
    print(f"ceiling means: {json.dumps(means)}")


if __name__ == "__main__":
    main()
