"""One trial of the demo's recipe search: phantoms -> prepare -> train -> Dice on the held-out phantoms (by hand).

    python benchmarks/demo_tuning.py --work /tmp/demo-tuning --name base \\
        [--cases 10] [--spacing 3 2.25 2.25] [--model demo] [--model-overrides '{"dim": 32}'] \\
        [--train '{"iterations": 480, "lr": 0.002}'] [--input-grid] [--log trials.jsonl]

Phantoms and prepared caches are kept under ``--work`` (keyed by their settings) so trials that differ only in
training reuse them. Prints one JSON line (appended to ``--log`` too): the Dice per task and channel on the
test phantoms (the demo's definition, ``ccq.demo.DICE_DEFINITION``; on the working grid, or with
``--input-grid`` on the phantoms' own grid through the predict path, which is what `ccq demo` reports), the
organ and tumor means, and the training cost as wall-clock seconds and CPU seconds (``time.process_time``, all
threads). On a machine shared with other work, the CPU seconds divided by the threads used estimate the
quiet-machine time better than the wall clock.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import shutil
import time
from pathlib import Path

import torch

from ccq.data import phantom, phantom_anatomy, phantom_shapes
from ccq.data.phantom import generate_collection
from ccq.data.prepare_run import prepare_collection
from ccq.data.preprocessing import PreprocessingConfig
from ccq.demo import DICE_DEFINITION, PHANTOM_SPACING, SPACING, DemoOptions
from ccq.models import get_preset
from ccq.training.config import get_train_preset
from ccq.training.ema import WeightAverage
from ccq.training.handlers import Handler
from ccq.training.trainer import Trainer


def _key(*parts: object) -> str:
    return hashlib.sha1(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:10]


def _means(dice: dict[str, dict[str, float]]) -> dict[str, float]:
    out = {}
    for channel in ("organ", "tumor"):
        values = [v[channel] for v in dice.values() if channel in v and math.isfinite(v[channel])]
        out[channel] = sum(values) / len(values) if values else math.nan
    return out


class ExtraAverages(Handler):
    """More weight averages than the run's own (``ema_decay``), saved to RUN/ema-DECAY/ at the end: one run then
    tells how each decay would have done on the same trajectory."""

    def __init__(self, decays: list[float]) -> None:
        self.decays, self.averages, self.saved = decays, [], {}

    def started(self, trainer: Trainer) -> None:
        self.averages = [WeightAverage(trainer.model, d) for d in self.decays]

    def iteration_completed(self, trainer: Trainer, step, lr: float, data_s: float) -> None:
        if not step.nonfinite:
            for average in self.averages:
                average.update(trainer.model)

    def completed(self, trainer: Trainer) -> None:
        from ccq.checkpoint import save_checkpoint

        for decay, average in zip(self.decays, self.averages, strict=True):
            self.saved[f"ema-{decay:g}"] = save_checkpoint(
                trainer.run_dir / f"ema-{decay:g}", average.model, preprocessing=trainer.preprocessing,
                collection=trainer.collection, source=f"demo_tuning: EMA {decay:g} at the end",
            )  # fmt: skip

    @staticmethod
    def save_online(last: Path, folder: Path) -> Path:
        """The trained weights at the end (last/'s training state) as a checkpoint of their own."""
        from ccq.checkpoint import load_checkpoint, save_checkpoint
        from ccq.training.state import load_training_state

        loaded = load_checkpoint(last)
        loaded.model.load_state_dict(load_training_state(last)["online_weights"], strict=True)
        source = "demo_tuning: trained weights at the end"
        return save_checkpoint(folder, loaded.model, preprocessing=loaded.preprocessing,
                               collection=loaded.collection, source=source)  # fmt: skip


def held_out_dice(model_dir: Path, prepared: Path) -> dict[str, dict[str, float]]:
    """Task -> channel -> mean Dice over the prepared test phantoms (the path training validation and `ccq
    reproduce` score with: each case for its own task, on the working grid, no files written)."""
    from ccq.checkpoint import load_checkpoint
    from ccq.data.cache import PreparedDataset
    from ccq.evaluation.prepared import prepared_summary, score_prepared_cases

    dataset = PreparedDataset(prepared)
    loaded = load_checkpoint(model_dir, device=torch.device("cpu"))
    results = score_prepared_cases(loaded.model, dataset, dataset.cases(split="test"), definition=DICE_DEFINITION,
                                   hd95=False, patch_size=loaded.model_config.patch_size)  # fmt: skip
    summary = prepared_summary(results, dataset, definition=DICE_DEFINITION, sources={})
    dice: dict[str, dict[str, float]] = {}
    for category, values in summary["categories"].items():
        task, channel = category.split("/")
        dice.setdefault(task, {})[channel] = values["dice"]
    return dice


def input_grid_dice(model_dir: Path, collection) -> dict[str, dict[str, float]]:
    """Task -> channel -> mean Dice over the test phantoms on their own grid, as `ccq demo` reports it: `ccq
    predict`'s path (every task in one pass, probabilities resampled back, the official post-processing, no TTA)
    scored with the demo's definition against the phantom's label."""
    import nibabel as nib
    import numpy as np

    from ccq.data.collection import find_cases
    from ccq.evaluation.metrics import dice_score
    from ccq.inference.predictor import Predictor

    predictor = Predictor(model_dir, device="cpu", tta=False)
    scores: dict[str, dict[str, list[float]]] = {}
    for task in collection.tasks:
        for case in find_cases(task, collection.dataset_dir(task)):
            if case.case_id not in task.split.test:
                continue
            prepared = predictor.prepare(str(case.image), tasks=[task.name])
            (result,) = predictor.iter_tasks(prepared, predictor.resolve_tasks([task.name]))
            label = np.asarray(nib.load(str(case.label)).dataobj)
            for channel, values in (("organ", task.organ), ("tumor", task.tumor)):
                if values:
                    mask = result.masks[channel]
                    scores.setdefault(task.name, {}).setdefault(channel, []).append(
                        dice_score(mask, np.isin(label, list(values)), definition=DICE_DEFINITION)
                    )
    return {t: {c: sum(v) / len(v) for c, v in by.items()} for t, by in scores.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True, help="Folder for cached phantoms, caches and runs.")
    parser.add_argument("--name", required=True, help="Trial name (its run folder).")
    parser.add_argument("--seed", type=int, default=0, help="Phantom and training seed.")
    parser.add_argument("--cases", type=int, default=10, help="Phantom cases per task, test cases included.")
    parser.add_argument("--test-cases", type=int, default=2)
    parser.add_argument("--shape", type=int, nargs=3, default=[48, 96, 96])
    parser.add_argument("--tasks", default=",".join(DemoOptions.tasks), help="Phantom tasks (default: the demo's).")
    parser.add_argument("--spacing", type=float, nargs=3, default=None, help="Working spacing (default: the demo's).")
    parser.add_argument("--model", default=None, help="Model preset (default: the demo training preset's).")
    parser.add_argument("--model-overrides", default="{}", help="JSON object of ModelConfig fields.")
    parser.add_argument("--train", default="{}", help="JSON object of TrainConfig fields over the demo preset.")
    parser.add_argument("--threads", type=int, default=None, help="Torch threads (default: torch's).")
    parser.add_argument("--log", type=Path, default=None, help="Append the result line to this JSONL file.")
    parser.add_argument(
        "--extra-ema",
        default="",
        help="Comma-separated EMA decays also kept during the run "
        "(the trajectory is unchanged) and scored at the end, e.g. 0.99,0.995.",
    )
    parser.add_argument(
        "--input-grid",
        action="store_true",
        help="Score on the phantoms' own grid through the predict path, as `ccq demo` does (default: on the "
        "working grid, as training validation does; that one does not compare across working spacings).",
    )
    parser.add_argument(
        "--score-last",
        action="store_true",
        help="Also score last/ (and, with ema_decay, the trained weights at the end).",
    )
    args = parser.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    spacing = tuple(args.spacing) if args.spacing else SPACING
    work = args.work.expanduser()
    # The generator's source is part of the key: editing the anatomy makes new phantoms.
    source = b"".join(Path(m.__file__).read_bytes() for m in (phantom_anatomy, phantom_shapes, phantom))
    tasks = tuple(t.strip() for t in args.tasks.split(",") if t.strip())
    phantom_key = _key(args.seed, args.cases, args.test_cases, args.shape, hashlib.sha1(source).hexdigest(), tasks)
    phantom_dir = work / f"phantom-{phantom_key}"
    began = time.perf_counter()
    if not (phantom_dir / "collection.yaml").is_file():
        shutil.rmtree(phantom_dir, ignore_errors=True)
        generate_collection(phantom_dir, cases_per_task=args.cases, test_cases_per_task=args.test_cases,
                            seed=args.seed, shape=tuple(args.shape), spacing=PHANTOM_SPACING, tasks=tasks)  # fmt: skip
    from ccq.data.collection import load_collection

    collection = load_collection(phantom_dir / "collection.yaml")
    phantom_s = time.perf_counter() - began

    overrides = json.loads(args.model_overrides)
    base = get_train_preset("demo")
    train = {"model": args.model or base.model, "seed": args.seed, **json.loads(args.train)}
    if overrides:
        train["model_overrides"] = overrides
    config = base.replace(**train)
    model_config = get_preset(config.model, **{k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()})
    patch = model_config.patch_size
    prepared = work / f"prepared-{phantom_key}-{_key(spacing, patch)}"
    began = time.perf_counter()
    summary = prepare_collection(collection, None, prepared, PreprocessingConfig(spacing=spacing, patch_size=patch))
    if not summary.ok:
        raise SystemExit(summary.report())
    prepare_s = time.perf_counter() - began

    run_dir = work / "runs" / args.name
    shutil.rmtree(run_dir, ignore_errors=True)
    threads = torch.get_num_threads()
    wall, cpu = time.perf_counter(), time.process_time()
    extra = ExtraAverages([float(d) for d in args.extra_ema.split(",") if d.strip()])
    result = Trainer(config, prepared, run_dir, progress=False, echo=lambda _: None, handlers=[extra]).fit()
    train_wall, train_cpu = time.perf_counter() - wall, time.process_time() - cpu
    wall, cpu = time.perf_counter(), time.process_time()

    def score(folder: Path) -> dict[str, dict[str, float]]:
        return input_grid_dice(folder, collection) if args.input_grid else held_out_dice(folder, prepared)

    dice = score(result.best or result.last)
    predict_wall, predict_cpu = time.perf_counter() - wall, time.process_time() - cpu
    # Other weights of the same run, scored the same way: what the demo would give had it kept them instead.
    others = extra.saved if args.score_last else {}
    if args.score_last:
        others = {"last": result.last, **others}
        if config.ema_decay is not None:
            others["online"] = extra.save_online(result.last, run_dir / "online")
    alternatives = {}
    for label, folder in others.items():
        alternatives[label] = _means(score(folder))
    val = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    curve = {r["iteration"]: round(r["mean_dice"], 3) for r in val if r["kind"] == "val"}
    record = {
        "name": args.name,
        "means": _means(dice),
        "dice": dice,
        "alternatives": alternatives,
        "val_curve": curve,
        "best_iteration": result.state.best_iteration,
        "iterations": config.iterations,
        "threads": threads,
        "train_wall_s": round(train_wall, 1),
        "train_cpu_s": round(train_cpu, 1),
        "cpu_s_per_it": round(train_cpu / config.iterations, 3),
        "predict_wall_s": round(predict_wall, 1),
        "predict_cpu_s": round(predict_cpu, 1),
        "phantom_s": round(phantom_s, 1),
        "prepare_s": round(prepare_s, 1),
        "spacing": spacing,
        "cases": args.cases,
        "scored_on": "input grid" if args.input_grid else "working grid",
        "train": train,
    }
    line = json.dumps(record)
    print(line)
    if args.log is not None:
        with open(args.log, "a", encoding="utf-8") as f:
            f.write(line + "\n")


if __name__ == "__main__":
    main()
