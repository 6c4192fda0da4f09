"""`ccq demo`: the whole path on synthetic data in a few minutes on a CPU, through the same commands a user runs.

`ccq phantom` -> `ccq prepare` -> `ccq train --preset demo` -> `ccq predict --tasks all` on the held-out test
phantoms -> `ccq evaluate` -> a Table 1-style table, ``DIR/report.md`` and ``DIR/summary.json``. Each step calls
the command's library function (`ccq.commands`) and prints first the equivalent command line, derived from the
options (and lists it in the report), so the demo doubles as a copyable tutorial.

The output folder::

    DIR/phantom/        the synthetic raw collection (MSD folders + collection.yaml)
    DIR/prepared/       the prepared cache (DIR/preprocessing.yaml: the demo's spacing and patch)
    DIR/run/            the training run (config.json, log.jsonl, curves.png, last/, best/)
    DIR/model/          the model to use (the run's last/): a checkpoint for `ccq predict --model DIR/model`
    DIR/test-images/    links to the held-out test CTs (the input of `ccq predict`)
    DIR/predictions/    their predictions for every task (CASE/TASK.nii.gz + labels.json)
    DIR/evaluation/     `ccq evaluate`'s summary.json, cases.csv, table.md and overlays/ (of each task's first case)
    DIR/summary.json    the evaluation summary of the demo model (as DIR/evaluation/summary.json)
    DIR/report.md       the table, the training curves, overlays, timings and the commands
    DIR/results.json    the Dice table and timings of every model (with --compare: the baseline's too)
    DIR/.ccq-demo.json  marks the folder as a demo's, so that a rerun may replace exactly these entries
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ccq.errors import CCQError
from ccq.utils import fs
from ccq.utils.command_line import command_line, quoted

MARKER = ".ccq-demo.json"
PHANTOM_SPACING = (2.0, 1.5, 1.5)
"""Voxel size the phantoms are generated at (z, y, x mm; each case jitters it by up to 5 %)."""
SPACING = (4.0, 2.25, 2.25)
"""The demo's preprocessing spacing: a 48x96x96 phantom becomes about 24x64x64 voxels, of which a training patch
of the demo model (16x48x48) holds a third. Coarse slices and fine rows: the in-plane grid decides how well the
small lesions are drawn, while the slice count mostly decides the cost (measured, BENCHMARKS.md: at the same cost
4 x 2.25 x 2.25 mm beat 3 x 2.25 x 2.25 and 4 x 1.5 x 1.5 mm)."""
COMPARE_CHOICES = ("dodnet",)
DICE_DEFINITION = "standard"
"""The demo scores ``2|A∩B| / (|A| + |B|)`` on the phantom's own grid (`ccq.evaluation.metrics`): no +1 in the
denominator, so a small tumor's score is its real overlap, not pulled down (or, empty against empty, up) by the
smoothing term. Every test phantom of a tumor task holds a tumor, so no case is left out as empty."""


@dataclass(frozen=True)
class DemoOptions:
    out: Path
    seed: int = 0
    iterations: int | None = None
    """Training iterations; None = the demo preset's."""
    compare: str | None = None
    """"dodnet": also train the DoDNet baseline of the same size and compare."""
    cases: int = 22
    """Phantom cases per task, test cases included (each costs ~0.1 s to make and to prepare): 14 to train on."""
    test_cases: int = 8
    """Held-out cases per task: eight, so that each mean Dice rests on 32 cases, not on the luck of a few (with
    four, one missed lesion moved a task's tumor Dice by 0.25; ~0.5 s of prediction a case)."""
    shape: tuple[int, int, int] = (48, 96, 96)
    tasks: tuple[str, ...] = ("liver", "kidney", "pancreas", "lung", "spleen")
    """Five of MOTS' seven tasks: organ + tumor (liver, kidney, pancreas), tumor only (lung), organ only (spleen).
    Colon, MOTS' other tumor-only task, is left out of the default: in the demo's few minutes its tumor channel
    (hardest in the paper too) sometimes never starts to learn (BENCHMARKS.md, "The demo")."""
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
    names = ["phantom", "prepared", "preprocessing.yaml", "run", "model", "test-images", "predictions", "evaluation",
             "summary.json", "report.md", "results.json"]  # fmt: skip
    if compare:
        names += [f"{n}-{compare}" for n in ("run", "model", "predictions", "evaluation")]
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


def _ccq(command: str, options: Any, run: Callable[..., Any], echo: Callable[..., None], commands: list[str]) -> Any:
    """Run one command's library function (`ccq.commands`) in this process, printing and recording first the
    `ccq` command line that does the same (derived from the options, `ccq.utils.command_line`)."""
    line = quoted(command_line(command, options))
    commands.append(line)
    echo(f"$ {line}")
    return run(options, echo=echo)


def _link_test_images(collection, folder: Path) -> int:
    """DIR/test-images/CASE.nii.gz -> the held-out phantoms (relative links; copies where links fail)."""
    from ccq.data.collection import find_cases

    folder.mkdir(parents=True, exist_ok=True)
    count = 0
    for task in collection.tasks:
        for case in find_cases(task, collection.dataset_dir(task)):
            if case.case_id in task.split.test:
                target = folder / f"{case.case_id}.nii.gz"
                try:
                    target.symlink_to(os.path.relpath(case.image, folder))
                except OSError:
                    shutil.copyfile(case.image, target)
                count += 1
    return count


def _dice_by_task(summary: dict[str, Any]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for category, values in summary["categories"].items():
        task, channel = category.split("/")
        out.setdefault(task, {})[channel] = values["dice"]
    return out


def run_demo(options: DemoOptions, echo: Callable[[str], None] = print) -> DemoResult:
    """Run the whole demo into ``options.out``; see the module docstring."""
    from ccq.commands.evaluate import EvaluateOptions, run_evaluate
    from ccq.commands.phantom import PhantomOptions, run_phantom
    from ccq.commands.prepare import PrepareOptions, run_prepare
    from ccq.commands.train import TrainOptions, run_train
    from ccq.data.collection import load_collection
    from ccq.demo_report import comparison_table, write_report
    from ccq.inference.runner import PredictOptions, run_predict
    from ccq.models import get_preset
    from ccq.training.config import get_train_preset
    from ccq.training.state import STATE_FILE

    if options.compare is not None and options.compare not in COMPARE_CHOICES:
        raise CCQError(f"--compare {options.compare!r}: expected one of {', '.join(COMPARE_CHOICES)}")
    out = Path(options.out).expanduser()
    models = {"CCQ": options.model}
    if options.compare:
        models["DoDNet"] = f"{options.model.split('+')[0]}-dodnet"
    patch = get_preset(options.model).patch_size
    for name in models.values():
        get_preset(name)  # an unknown preset fails before anything is written
    iterations = options.iterations or get_train_preset("demo").iterations
    _claim_out_dir(out, [*_entries(options.compare), MARKER])
    start = time.perf_counter()
    stages: dict[str, float] = {}
    commands: list[str] = []

    def stage(name: str, began: float) -> None:
        stages[name] = time.perf_counter() - began
        echo(f"    ({stages[name]:.0f} s)")

    echo(f"[1/5] synthetic CT: {len(options.tasks)} partially labeled tasks x {options.cases} cases "
         f"({options.test_cases} held out for testing)")  # fmt: skip
    began = time.perf_counter()
    phantom = PhantomOptions(
        out=out / "phantom", cases=options.cases, test_cases=options.test_cases, seed=options.seed,
        tasks=tuple(options.tasks), shape=tuple(options.shape),
    )  # fmt: skip
    _ccq("phantom", phantom, run_phantom, echo, commands)
    collection = load_collection(out / "phantom" / "collection.yaml")
    stage("phantom", began)

    mm = " x ".join(f"{s:g}" for s in SPACING)
    echo(f"[2/5] prepare every case at {mm} mm (a CPU-sized grid; real CT uses the official 1.5 x 0.8 x 0.8 mm)")
    began = time.perf_counter()
    fs.write_text_atomic(out / "preprocessing.yaml",
                         f"spacing: {list(SPACING)}\npatch_size: {list(patch)}\n")  # fmt: skip
    prepare = PrepareOptions(
        out=out / "prepared", collection=str(out / "phantom" / "collection.yaml"),
        preprocessing=out / "preprocessing.yaml", progress=options.progress,
    )  # fmt: skip
    if not _ccq("prepare", prepare, run_prepare, echo, commands).ok:
        raise CCQError(f"demo: preparing the phantoms in {out / 'phantom'} failed (see above)")
    stage("prepare", began)

    model_dirs: dict[str, Path] = {}
    for label, preset in models.items():
        suffix = _suffix(label, options)
        echo(f"[3/5] train {label} (model preset {preset!r}, {iterations} iterations)")
        began = time.perf_counter()
        run_dir = out / f"run{suffix}"
        train = TrainOptions(
            out=run_dir, preset="demo", set_fields=(f"model={preset}",), data=out / "prepared", seed=options.seed,
            iterations=iterations, device=options.device, progress=options.progress,
        )  # fmt: skip
        _ccq("train", train, run_train, echo, commands)
        model_dirs[label] = out / f"model{suffix}"
        # The last weights, not best/: validation on one case per task chooses between near-equal late snapshots
        # by chance, and the end of a schedule that decays to zero scored as well or better on the held-out
        # phantoms of the tuning seeds (BENCHMARKS.md, "The demo").
        shutil.copytree(run_dir / "last", model_dirs[label], ignore=shutil.ignore_patterns(STATE_FILE))
        stage(f"train {label}", began)

    count = _link_test_images(collection, out / "test-images")
    summaries: dict[str, dict[str, Any]] = {}
    for label, model_dir in model_dirs.items():
        suffix = _suffix(label, options)
        echo(f"[4/5] predict every task on the {count} held-out test phantoms with {label}")
        began = time.perf_counter()
        # --no-tta: the demo trains without flips (anatomy is not mirror-symmetric), so flipped windows would
        # only blur its predictions; `ccq predict` turns the official flip TTA on by default on a GPU.
        predict = PredictOptions(
            input_path=out / "test-images", output=out / f"predictions{suffix}", model=model_dir, tasks=("all",),
            device=options.device, tta=False, progress=options.progress,
        )  # fmt: skip
        _ccq("predict", predict, run_predict, echo, commands)
        stage(f"predict {label}", began)
        echo(f"[5/5] evaluate {label} against the phantoms' labels ({DICE_DEFINITION} definition)")
        began = time.perf_counter()
        evaluation = out / f"evaluation{suffix}"
        evaluate = EvaluateOptions(
            pred=out / f"predictions{suffix}", gt=out / "phantom", collection=str(out / "phantom" / "collection.yaml"),
            cases="test", definition=DICE_DEFINITION, out=evaluation, overlays=label == "CCQ",
            overlay_cases=1 if label == "CCQ" else None, progress=False,
        )  # fmt: skip
        _ccq("evaluate", evaluate, run_evaluate, echo, commands)
        summaries[label] = json.loads((evaluation / "summary.json").read_text(encoding="utf-8"))
        stage(f"evaluate {label}", began)
    model_dir = model_dirs["CCQ"]
    shutil.copyfile(out / "evaluation" / "summary.json", out / "summary.json")

    seconds = time.perf_counter() - start
    dice = {label: _dice_by_task(summary) for label, summary in summaries.items()}
    echo("")
    echo(f"Held-out test phantoms ({options.test_cases} per task, {DICE_DEFINITION} definition: Dice %, HD95 mm):")
    echo(comparison_table(summaries, markdown=False))
    test_image = sorted((out / "test-images").iterdir())[0]
    next_commands = [
        f"ccq predict -i {test_image} -o {out / 'my-predictions'} --model {model_dir} --no-tta --overlays",
        f"ccq train --preset demo --data {out / 'prepared'} --out {out / 'run-longer'} --iterations 2000",
        f"ccq evaluate --collection {out / 'phantom' / 'collection.yaml'} --pred {out / 'predictions'} "
        f"--gt {out / 'phantom'} --definition mots --spacing {' '.join(map(str, SPACING))} --out {out / 'eval-mots'}",
        "ccq prepare --collection my-collection.yaml --out my-prepared     # your data: see the README",
    ]
    # One overview picture per task (its first test case): OVERLAYS/CASE/TASK/overview.png.
    first_per_task: dict[str, Path] = {}
    for picture in sorted((out / "evaluation" / "overlays").rglob("overview.png")):
        first_per_task.setdefault(picture.parent.name, picture)
    overview = [first_per_task[t] for t in options.tasks if t in first_per_task]
    report = write_report(
        out, summaries=summaries, definition=DICE_DEFINITION,
        curves={label: out / f"run{_suffix(label, options)}" / "curves.png" for label in models},
        overlays=overview, stages=stages, seconds=seconds, commands=commands, next_commands=next_commands,
    )  # fmt: skip
    # Dice is NaN where prediction and truth are both empty; strict JSON has no NaN, so it is written as null.
    results = {"dice": dice, "dice_definition": DICE_DEFINITION, "means": {k: v["mean"] for k, v in summaries.items()},
               "seconds": seconds, "stages": stages, "commands": commands,
               "options": dataclasses.asdict(options)}  # fmt: skip
    fs.write_json_atomic(out / "results.json", results)
    echo(f"\nfinished in {seconds / 60:.1f} min ({seconds:.0f} s); report: {report}; everything is in {out}")
    echo("next:")
    for line in next_commands:
        echo(f"  {line}")
    return DemoResult(out=out, model_dir=model_dir, dice=dice, seconds=seconds, stages=stages)


def _suffix(label: str, options: DemoOptions) -> str:
    return "" if label == "CCQ" else f"-{options.compare}"
