"""Growing the demo model by a task: does it learn the new task fast, and does it keep the old ones?

    python benchmarks/grow.py --work /tmp/ccq-grow --json [--new-task spleen] [--replay-share 0.3] [--threads 1]

On the demo's phantoms (`ccq demo`'s five tasks; 18 cases each, 4 held out for testing, as the demo had them when
the figures in BENCHMARKS.md were measured):

1. ``base``: the demo model trained on the four other tasks (``--base-iterations``);
2. ``replay``: ``base`` grown by the new task (`--init-from`) and trained ``--grow-iterations`` on the new task's
   data, with ``--replay-share`` of the samples from the old tasks' prepared folder (`--replay`);
3. ``no_replay``: the same without replay (fine-tuning on the new data alone);
4. ``freeze``: the same without replay, the encoder and image transformer frozen (`--freeze`);
5. ``scratch``: the same five-task model trained from scratch for the same total budget (base + grow).

Every model is scored on the held-out test phantoms of the prepared folders, as training validation and
``benchmarks/demo_tuning.py`` score (`ccq.evaluation.prepared`: each case for its own task, on the working grid,
the demo's Dice definition).
Prints (one JSON object with ``--json``): ``new_task_dice`` (with replay), ``scratch_new_task_dice``,
``iterations_ratio`` (grow / scratch iterations), ``old_tasks_dice_drop`` per variant (Dice points, mean over the old
tasks' labeled channels, before minus after), each task's Dice per model, and the goals of issue #16 (new task >= 90%
of scratch with at most a third of the iterations; old tasks lose <= 2 points with replay).

Phantoms, prepared folders and finished runs are kept under ``--work`` (runs keyed by their settings), so a second
call that changes only the grow settings trains only the grow runs. Dice is deterministic for a fixed seed and
thread count (``--threads``); the wall-clock seconds depend on the machine's load.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import shutil
import time
from pathlib import Path
from typing import Any

import torch

from ccq.checkpoint import load_checkpoint
from ccq.data import phantom, phantom_anatomy
from ccq.data.cache import PreparedDataset
from ccq.data.collection import Collection, load_collection
from ccq.data.phantom import generate_collection
from ccq.data.prepare_run import prepare_collection
from ccq.data.preprocessing import PreprocessingConfig
from ccq.demo import DICE_DEFINITION, PHANTOM_SPACING, SPACING, DemoOptions
from ccq.evaluation.prepared import prepared_summary, score_prepared_cases
from ccq.models import get_preset
from ccq.training.config import TrainConfig, get_train_preset
from ccq.training.trainer import Trainer

GROW_VARIANTS = ("replay", "no_replay", "freeze")
FREEZE = ("encoder", "image_transformer")


def _key(*parts: object) -> str:
    return hashlib.sha1(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:10]


def _collections(raw: Path, new_task: str) -> tuple[Collection, Collection]:
    """(old four tasks, all five with the new task last): the ids a grown model keeps."""
    full = load_collection(raw / "collection.yaml")
    order = [t for t in full.tasks if t.name != new_task] + [full.task(new_task)]
    tasks = [dataclasses.replace(t, id=i) for i, t in enumerate(order)]
    return full.with_tasks(tasks[:-1]), full.with_tasks(tasks)


def _prepare(collection: Collection, out: Path, pre: PreprocessingConfig, tasks: list[str] | None = None) -> Path:
    summary = prepare_collection(collection, None, out, pre, tasks=tasks)
    if not summary.ok:
        raise SystemExit(summary.report())
    return out


def _train(work: Path, name: str, config: TrainConfig, data: Path, log: list[str]) -> tuple[Path, dict[str, Any]]:
    """Train (or reuse a finished run with the same settings); returns the model to score and the run's facts."""
    run = work / "runs" / f"{name}-{_key(config.to_dict(), str(data))}"
    facts_file = run / "grow-bench.json"
    threads = torch.get_num_threads()
    if facts_file.is_file():
        facts = json.loads(facts_file.read_text())
        if facts.get("threads", threads) != threads:  # the weights depend on the thread count
            raise SystemExit(f"{run} was trained with {facts['threads']} threads; use --threads {facts['threads']} "
                             "or another --work")  # fmt: skip
        log.append(f"{name}: reusing {run}")
        return Path(facts["model"]), facts
    shutil.rmtree(run, ignore_errors=True)
    began, cpu = time.perf_counter(), time.process_time()
    result = Trainer(config, data, run, progress=False, echo=lambda _: None).fit()
    facts = {
        "model": str(result.best or result.last),
        "iterations": config.iterations,
        "best_iteration": result.state.best_iteration,
        "train_wall_s": round(time.perf_counter() - began, 1),
        "train_cpu_s": round(time.process_time() - cpu, 1),
        "threads": threads,
    }
    facts_file.write_text(json.dumps(facts))
    log.append(f"{name}: trained {config.iterations} iterations in {facts['train_wall_s']} s -> {facts['model']}")
    return Path(facts["model"]), facts


def _score(model: Path, prepared: Path) -> dict[str, float]:
    """Dice per "task/channel" over the test phantoms of ``prepared`` (kept beside the run: a second call does not
    predict again)."""
    dataset = PreparedDataset(prepared)
    cached = model.parent / f"grow-bench-dice-{_key(dataset.collection.to_dict(), str(prepared))}.json"
    if cached.is_file():
        return json.loads(cached.read_text())
    loaded = load_checkpoint(model, device=torch.device("cpu"))
    results = score_prepared_cases(loaded.model, dataset, dataset.cases(split="test"), definition=DICE_DEFINITION,
                                   hd95=False, patch_size=loaded.model_config.patch_size)  # fmt: skip
    summary = prepared_summary(results, dataset, definition=DICE_DEFINITION, sources={})
    scores = {category: float(values["dice"]) for category, values in summary["categories"].items()}
    cached.write_text(json.dumps(scores))
    return scores


def _ratio(a: float, b: float) -> float:
    return a / b if b > 0 else math.nan


def _mean(values: list[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return sum(finite) / len(finite) if finite else math.nan


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True, help="Folder for phantoms, prepared data and runs.")
    parser.add_argument("--json", action="store_true", help="Print one JSON object.")
    parser.add_argument("--new-task", default="spleen", help="The task held out of the first training.")
    parser.add_argument("--seed", type=int, default=0, help="Phantom and training seed.")
    parser.add_argument("--scratch-iterations", type=int, default=1700, help="The demo's budget when measured.")
    parser.add_argument("--grow-iterations", type=int, default=560, help="At most a third of the scratch budget.")
    parser.add_argument("--replay-share", type=float, default=0.3)
    parser.add_argument("--grow-lr", type=float, default=None, help="Learning rate of the grow runs (default: demo).")
    parser.add_argument("--variants", default=",".join(GROW_VARIANTS), help="Grow runs to make.")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="Torch threads (the Dice figures depend on it; one "
        "is fastest on a shared machine, where two OpenMP threads wait on each other).",
    )
    # Smaller settings for the smoke test; the defaults are the demo's (cases: as measured).
    parser.add_argument("--tasks", default=None, help="Phantom tasks, comma-separated (default: the demo's five).")
    # 18 and 4: the demo's counts when BENCHMARKS.md's figures were measured (the demo now holds out 8 of 22).
    parser.add_argument("--cases", type=int, default=18, help="Phantom cases per task (default: 18).")
    parser.add_argument("--test-cases", type=int, default=4, help="Held-out cases per task (default: 4).")
    parser.add_argument("--shape", type=int, nargs=3, default=None, help="Phantom shape (default: the demo's).")
    parser.add_argument("--model", default=None, help="Model preset (default: the demo's).")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    work = args.work.expanduser()
    log: list[str] = []
    options = DemoOptions(out=work, seed=args.seed)
    changes: dict[str, Any] = {"cases": args.cases, "test_cases": args.test_cases, "model": args.model}
    changes["tasks"] = None if args.tasks is None else tuple(t.strip() for t in args.tasks.split(",") if t.strip())
    changes["shape"] = None if args.shape is None else tuple(args.shape)
    options = dataclasses.replace(options, **{k: v for k, v in changes.items() if v is not None})
    source = Path(phantom_anatomy.__file__).read_bytes() + Path(phantom.__file__).read_bytes()
    phantom_key = _key(args.seed, options.cases, options.test_cases, options.shape, options.tasks,
                       hashlib.sha1(source).hexdigest())  # fmt: skip
    raw = work / f"phantom-{phantom_key}"
    if not (raw / "collection.yaml").is_file():
        shutil.rmtree(raw, ignore_errors=True)
        generate_collection(raw, cases_per_task=options.cases, test_cases_per_task=options.test_cases,
                            seed=args.seed, tasks=options.tasks, shape=options.shape,
                            spacing=PHANTOM_SPACING)  # fmt: skip
    old, full = _collections(raw, args.new_task)
    base_config = get_train_preset("demo").replace(seed=args.seed, model=options.model)
    pre = PreprocessingConfig(spacing=SPACING, patch_size=get_preset(base_config.model).patch_size)
    prepared = work / f"prepared-{raw.name}-{args.new_task}"
    old_data = _prepare(old, prepared / "old", pre)
    all_data = _prepare(full, prepared / "all", pre)
    new_data = _prepare(full, prepared / "new", pre, tasks=[args.new_task])

    base_iterations = args.scratch_iterations - args.grow_iterations
    base_model, base_facts = _train(work, "base", base_config.replace(iterations=base_iterations), old_data, log)
    scratch_model, scratch_facts = _train(
        work, "scratch", base_config.replace(iterations=args.scratch_iterations), all_data, log
    )
    grow = base_config.replace(iterations=args.grow_iterations, init_from=str(base_model.resolve()))
    if args.grow_lr is not None:
        grow = grow.replace(lr=args.grow_lr)
    variants = {
        "replay": grow.replace(replay=str(old_data.resolve()), replay_share=args.replay_share),
        "no_replay": grow,
        "freeze": grow.replace(freeze=FREEZE),
    }
    chosen = [v.strip() for v in args.variants.split(",") if v.strip()]
    grown = {name: _train(work, name, variants[name], new_data, log) for name in chosen}

    began = time.perf_counter()
    scores = {"base": _score(base_model, old_data)}
    for name, (model, _) in {"scratch": (scratch_model, scratch_facts), **grown}.items():
        scores[name] = _score(model, all_data)
    evaluate_s = round(time.perf_counter() - began, 1)

    new = args.new_task
    old_categories = list(scores["base"])
    new_categories = [c for c in scores["scratch"] if c.startswith(f"{new}/")]
    base_old = _mean([scores["base"][c] for c in old_categories])

    def new_dice(name: str) -> float:
        return _mean([scores[name][c] for c in new_categories])

    def drop(name: str) -> float:
        return round(100 * (base_old - _mean([scores[name][c] for c in old_categories])), 2)

    scratch_new = new_dice("scratch")
    ratio = args.grow_iterations / args.scratch_iterations
    replay_new = new_dice("replay") if "replay" in grown else math.nan
    result = {
        "new_task": new,
        "new_task_dice": round(replay_new, 4),
        "scratch_new_task_dice": round(scratch_new, 4),
        "new_task_dice_ratio": round(_ratio(replay_new, scratch_new), 4),
        "iterations_ratio": round(ratio, 4),
        "old_tasks_dice_drop": {name: drop(name) for name in grown},
        "new_task_dice_per_variant": {name: round(new_dice(name), 4) for name in grown},
        "old_tasks_mean_dice": {
            "before": round(base_old, 4),
            **{n: round(_mean([scores[n][c] for c in old_categories]), 4) for n in ("scratch", *grown)},
        },
        "dice": {name: {c: round(v, 4) for c, v in s.items()} for name, s in scores.items()},
        "goals": {
            "new_task_at_least_90pct_of_scratch": bool(replay_new >= 0.9 * scratch_new),
            "at_most_a_third_of_the_iterations": bool(ratio <= 1 / 3 + 1e-9),
            "old_tasks_drop_at_most_2_points_with_replay": drop("replay") <= 2.0 if "replay" in grown else None,
        },
        "iterations": {"base": base_iterations, "grow": args.grow_iterations, "scratch": args.scratch_iterations},
        "replay_share": args.replay_share,
        "grow_lr": grow.lr,
        "freeze": list(FREEZE),
        "threads": args.threads,
        "seed": args.seed,
        "runs": {"base": base_facts, "scratch": scratch_facts, **{n: f for n, (_, f) in grown.items()}},
        "evaluate_wall_s": evaluate_s,
    }
    if args.json:
        print(json.dumps(result))
        return
    print("\n".join(log))
    header = ["category", *scores]
    print(" | ".join(header))
    for category in scores["scratch"]:
        row = [category] + [f"{scores[n][category]:.3f}" if category in scores[n] else "-" for n in scores]
        print(" | ".join(row))
    for key in ("new_task_dice", "scratch_new_task_dice", "new_task_dice_ratio", "iterations_ratio",
                "old_tasks_dice_drop", "goals"):  # fmt: skip
        print(f"{key}: {result[key]}")


if __name__ == "__main__":
    main()
