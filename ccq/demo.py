"""`ccq demo`: the whole path on synthetic data in a few minutes on a CPU.

phantom collection -> `prepare_collection` -> train the ``demo`` preset -> predict the held-out test phantoms
with the saved checkpoint (exactly as `ccq predict` would) -> Dice per task and channel.

The output folder::

    DIR/phantom/        the synthetic raw collection (MSD folders + collection.yaml)
    DIR/prepared/       the prepared cache
    DIR/run/            the training run (config.json, log.jsonl, last/, best/)
    DIR/model/          the model to use: a checkpoint for `ccq predict --model DIR/model`
    DIR/predictions/    the test phantoms' predictions (CASE/TASK.nii.gz + labels.json)
    DIR/results.json    the Dice table and timings
    DIR/.ccq-demo.json  marks the folder as a demo's, so that a rerun may replace exactly these entries
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ccq.errors import CCQError
from ccq.utils import fs

MARKER = ".ccq-demo.json"
PHANTOM_SPACING = (2.0, 1.5, 1.5)
"""Voxel size the phantoms are generated at (z, y, x mm; each case jitters it by up to 5 %)."""
SPACING = (3.0, 2.25, 2.25)
"""The demo's preprocessing spacing: a 48x96x96 phantom becomes about 32x64x64 voxels, one patch of the demo
model, so every training crop sees the whole body and a test case is a single window (on a CPU, the finer
native grid would cost about 8 windows per case for a small gain)."""
COMPARE_CHOICES = ("dodnet",)


@dataclass(frozen=True)
class DemoOptions:
    out: Path
    seed: int = 0
    iterations: int | None = None
    """Training iterations; None = the demo preset's."""
    compare: str | None = None
    """"dodnet": also train the DoDNet baseline of the same size and compare."""
    cases: int = 10
    """Phantom cases per task, test cases included."""
    test_cases: int = 2
    shape: tuple[int, int, int] = (48, 96, 96)
    tasks: tuple[str, ...] = ("liver", "kidney", "pancreas", "colon", "spleen")
    model: str = "demo"
    """Model preset; the DoDNet comparison uses ``<model>-dodnet``."""
    device: str = "cpu"
    progress: bool = True


@dataclass
class DemoResult:
    out: Path
    model_dir: Path
    dice: dict[str, dict[str, dict[str, float]]]
    """model label ("CCQ", "DoDNet") -> task -> channel -> mean Dice over the test phantoms."""
    seconds: float
    stages: dict[str, float] = field(default_factory=dict)


def _entries(compare: str | None) -> list[str]:
    names = ["phantom", "prepared", "run", "model", "predictions", "results.json"]
    if compare:
        names += [f"run-{compare}", f"model-{compare}", f"predictions-{compare}"]
    return names


def _claim_out_dir(out: Path, entries: Sequence[str]) -> None:
    """Refuse a non-empty folder unless an earlier demo wrote it; then remove only what a demo writes."""
    if out.exists() and not out.is_dir():
        raise CCQError(f"demo: {out} exists and is not a folder; choose another --out")
    if out.is_dir() and any(out.iterdir()):
        marker = out / MARKER
        previous: list[str] | None = None
        try:
            data = json.loads(marker.read_text(encoding="utf-8")) if marker.is_file() else None
            if isinstance(data, dict) and data.get("generator") == "ccq demo":
                previous = [e for e in data.get("entries", []) if isinstance(e, str)]
        except (OSError, ValueError):
            previous = None
        if previous is None:
            raise CCQError(
                f"demo: output folder {out} is not empty and holds no earlier demo; choose a new --out "
                "(nothing in it was changed)"
            )
        # Only names that both the earlier marker lists and a demo writes: anything else stays.
        fs.remove_entries(out, set(previous) & set(_entries("dodnet")))
    out.mkdir(parents=True, exist_ok=True)
    fs.write_json_atomic(out / MARKER, {"generator": "ccq demo", "entries": list(entries)})


def _train_config(options: DemoOptions, model: str):
    from ccq.training.config import get_train_preset

    base = get_train_preset("demo")
    config = base.replace(model=model, seed=options.seed, device=options.device)
    if options.iterations is not None:
        n = options.iterations
        config = config.replace(iterations=n, val_every=min(config.val_every, n), save_every=min(config.save_every, n))
    return config


def evaluate_test_cases(
    model_dir: Path, collection, predictions_dir: Path | None, device: str = "cpu"
) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, float]]]:
    """Predict every test case of every task with the checkpoint (the `ccq predict` path) and score the
    channels its task labels. Returns (task -> channel -> mean Dice, "task/case" -> channel -> Dice)."""
    from ccq.data.collection import find_cases
    from ccq.data.geometry import load_nifti
    from ccq.evaluation.metrics import channel_dice, nanmean
    from ccq.inference.predictor import Predictor, write_case_outputs

    predictor = Predictor(model_dir, device=device)
    per_case: dict[str, dict[str, float]] = {}
    per_task: dict[str, dict[str, float]] = {}
    for task in collection.tasks:
        files = {c.case_id: c for c in find_cases(task, collection.dataset_dir(task))}
        scores: dict[str, list[float]] = {}
        for case_id in task.split.test:
            case = files[case_id]
            prediction = predictor.predict(case.image, [task.name])
            label, _ = load_nifti(case.label, what="label", case=case_id, as_float=False)
            organ, tumor = task.channel_targets(label)
            dice = channel_dice(prediction.masks[task.name], {"organ": organ, "tumor": tumor})
            per_case[f"{task.name}/{case_id}"] = dice
            for channel, value in dice.items():
                scores.setdefault(channel, []).append(value)
            if predictions_dir is not None:
                write_case_outputs(
                    predictions_dir,
                    case_id,
                    prediction,
                    [task],
                    reference=case.image,
                    overwrite=True,
                    extra={"model": str(model_dir)},
                )
        per_task[task.name] = {c: nanmean(v) for c, v in scores.items()}
    return per_task, per_case


def format_table(dice: dict[str, dict[str, dict[str, float]]], tasks: Sequence[str]) -> str:
    """A small fixed-width table: one row per task, (organ, tumor) per model, and the means."""
    models = list(dice)

    def cell(value: float | None) -> str:
        return "   -  " if value is None or not math.isfinite(value) else f"{value:6.3f}"

    head = f"{'task':<16}" + "".join(f"{m + ' organ':>14}{m + ' tumor':>14}" for m in models)
    lines = [head, "-" * len(head)]
    for task in tasks:
        row = f"{task:<16}"
        for m in models:
            row += "".join(f"{cell(dice[m].get(task, {}).get(c)):>14}" for c in ("organ", "tumor"))
        lines.append(row)
    lines.append("-" * len(head))
    row = f"{'mean':<16}"
    for m in models:
        for c in ("organ", "tumor"):
            values = [v[c] for v in dice[m].values() if c in v and math.isfinite(v[c])]
            row += f"{cell(sum(values) / len(values) if values else None):>14}"
    lines.append(row)
    return "\n".join(lines)


def run_demo(options: DemoOptions, echo: Callable[[str], None] = print) -> DemoResult:
    """Run the whole demo into ``options.out``; see the module docstring."""
    from ccq.data.phantom import generate_collection
    from ccq.data.prepare_run import prepare_collection
    from ccq.data.preprocessing import PreprocessingConfig
    from ccq.models import get_preset
    from ccq.training.trainer import Trainer

    if options.compare is not None and options.compare not in COMPARE_CHOICES:
        raise CCQError(f"--compare {options.compare!r}: expected one of {', '.join(COMPARE_CHOICES)}")
    out = Path(options.out).expanduser()
    models = {"CCQ": options.model}
    if options.compare:
        models["DoDNet"] = f"{options.model.split('+')[0]}-dodnet"
    configs = {label: _train_config(options, name) for label, name in models.items()}  # validate early
    patch = get_preset(options.model).patch_size
    _claim_out_dir(out, [*_entries(options.compare), MARKER])
    start = time.perf_counter()
    stages: dict[str, float] = {}

    def stage(name: str, began: float) -> None:
        stages[name] = time.perf_counter() - began
        echo(f"    ({stages[name]:.0f} s)")

    total = len(options.tasks) * options.cases
    echo(
        f"[1/4] synthetic CT: {len(options.tasks)} partially labeled tasks x {options.cases} cases "
        f"({options.test_cases} held out for testing) -> {out / 'phantom'}"
    )
    began = time.perf_counter()
    collection = generate_collection(
        out / "phantom", cases_per_task=options.cases, test_cases_per_task=options.test_cases,
        seed=options.seed, tasks=options.tasks, shape=options.shape, spacing=PHANTOM_SPACING,
    )  # fmt: skip
    stage("phantom", began)

    mm = " x ".join(f"{s:g}" for s in SPACING)
    echo(f"[2/4] prepare {total} cases at {mm} mm -> {out / 'prepared'}")
    began = time.perf_counter()
    preprocessing = PreprocessingConfig(spacing=SPACING, patch_size=patch)
    summary = prepare_collection(collection, None, out / "prepared", preprocessing, progress=options.progress)
    if not summary.ok:
        raise CCQError(f"demo: preparing the phantoms failed: {summary.report()}")
    stage("prepare", began)

    model_dirs: dict[str, Path] = {}
    for label, config in configs.items():
        suffix = _suffix(label, options)
        size = "x".join(map(str, patch))
        echo(f"[3/4] train {label} (model preset {config.model!r}, {config.iterations} iterations of "
             f"{config.batch_size} x {size} voxels) -> {out / ('run' + suffix)}")  # fmt: skip
        began = time.perf_counter()
        run_dir = out / f"run{suffix}"
        trainer = Trainer(config, out / "prepared", run_dir, progress=options.progress, echo=echo)
        result = trainer.fit()
        state = result.state
        if state.best_score is not None:
            echo(f"    validation Dice {state.best_score:.3f} (best, iteration {state.best_iteration})")
        model_dirs[label] = out / f"model{suffix}"
        shutil.copytree(result.best or result.last, model_dirs[label])
        stage(f"train {label}", began)

    dice: dict[str, dict[str, dict[str, float]]] = {}
    per_case: dict[str, Any] = {}
    count = len(options.tasks) * options.test_cases
    for label, model_dir in model_dirs.items():
        echo(f"[4/4] predict the {count} test phantoms with {label} ({model_dir})")
        began = time.perf_counter()
        predictions = out / f"predictions{_suffix(label, options)}"
        dice[label], per_case[label] = evaluate_test_cases(model_dir, collection, predictions, options.device)
        stage(f"predict {label}", began)
    model_dir = model_dirs["CCQ"]

    seconds = time.perf_counter() - start
    echo("")
    echo(f"Dice on the held-out test phantoms ({options.test_cases} per task, threshold 0.5):")
    echo(format_table(dice, [t.name for t in collection.tasks]))
    # Dice is NaN where prediction and truth are both empty; strict JSON has no NaN, so it is written as null.
    results = {"dice": dice, "cases": per_case, "seconds": seconds, "stages": stages,
               "options": dataclasses.asdict(options)}  # fmt: skip
    fs.write_json_atomic(out / "results.json", results)
    first = collection.tasks[0]
    test_image = next(c.image for c in _cases(collection, first) if c.case_id in first.split.test)
    echo(f"\nfinished in {seconds / 60:.1f} min ({seconds:.0f} s); everything is in {out}")
    echo("next:")
    echo(f"  ccq predict -i {test_image} -o {out / 'my-predictions'} --model {model_dir}")
    echo(f"  ccq train --preset demo --data {out / 'prepared'} --out {out / 'run-longer'} --iterations 2000")
    echo(f"  ccq summary --preset {options.model}")
    return DemoResult(out=out, model_dir=model_dir, dice=dice, seconds=seconds, stages=stages)


def _suffix(label: str, options: DemoOptions) -> str:
    return "" if label == "CCQ" else f"-{options.compare}"


def _cases(collection, task):
    from ccq.data.collection import find_cases

    return find_cases(task, collection.dataset_dir(task))
