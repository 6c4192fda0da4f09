"""`ccq train`: train a model on a prepared folder (`ccq prepare`), writing a run folder."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ccq.errors import CCQError
from ccq.utils.command_line import flag

_EXPONENT_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


@dataclass(frozen=True, kw_only=True)
class TrainOptions:
    """What ``ccq train`` was asked (see its --help); None: not given (the preset's or the run's value). The
    field order is the order of the flags in a printed command line."""

    preset: str | None = flag("--preset", None)
    """Training preset (`ccq.training.config.get_train_preset`): official or demo."""
    config: Path | None = flag("--config", None)
    set_fields: tuple[str, ...] = flag("--set", (), spelling="repeat")
    """KEY=VALUE settings over the preset (`parse_set`)."""
    data: Path | None = flag("--data", None)
    out: Path = flag("--out")
    resume: bool = flag("--resume", False)
    seed: int | None = flag("--seed", None)
    iterations: int | None = flag("--iterations", None)
    batch_size: int | None = flag("--batch-size", None)
    lr: float | None = flag("--lr", None)
    device: str | None = flag("--device", None)
    precision: str | None = flag("--precision", None)
    channels_last: bool | None = flag("--channels-last", None, negative="--no-channels-last")
    compile_model: bool | None = flag("--compile", None, negative="--no-compile")
    activation_checkpointing: bool | None = flag(
        "--activation-checkpointing", None, negative="--no-activation-checkpointing"
    )
    num_workers: int | None = flag("--num-workers", None)
    init_from: Path | None = flag("--init-from", None)
    """Start from this checkpoint's weights (a checkpoint folder or a run folder's best/)."""
    freeze: tuple[str, ...] | None = flag("--freeze", None, spelling="comma")
    """With init_from: top-level model parts kept fixed."""
    replay: Path | None = flag("--replay", None)
    """With init_from: a prepared folder of the old tasks' data, replayed."""
    replay_share: float | None = flag("--replay-share", None)
    progress: bool = flag("--progress", True, negative="--no-progress")


def parse_set(items: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """``KEY=VALUE`` pairs (VALUE read as YAML: 0.5, true, [1, 2], null) into a nested mapping; ``a.b=1``
    sets field b of the section a (e.g. sampling.foreground_fraction=0.5, model_overrides.dim=128)."""
    import yaml

    out: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise CCQError(f"--set {item!r}: expected KEY=VALUE, e.g. --set batch_size=4")
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError:
            raise CCQError(f"--set {item!r}: the value {text!r} is not valid YAML") from None
        if isinstance(value, str) and _EXPONENT_FLOAT.fullmatch(value.strip()):
            value = float(value)  # YAML 1.1 reads 1e-3 (no dot) as a string; a learning rate is written so
        node = out
        *parents, leaf = key.strip().split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise CCQError(f"--set {item!r}: {part} was already given a value")
        node[leaf] = value
    return out


def resolve_train_config(options: TrainOptions):
    """(the resolved `TrainConfig`, the prepared folder) of `options`: the preset (or, with ``resume``, the run's
    recorded configuration), the --config file over it, then the --set and single-flag settings."""
    from ccq.training.config import TrainConfig, get_train_preset, load_train_config
    from ccq.training.resume import read_run_record, resumed_config

    o = options
    given = {
        "iterations": o.iterations, "batch_size": o.batch_size, "lr": o.lr, "seed": o.seed, "device": o.device,
        "precision": o.precision, "channels_last": o.channels_last, "compile": o.compile_model,
        "activation_checkpointing": o.activation_checkpointing, "num_workers": o.num_workers,
        # Paths absolute: config.json must name the same folders when read from elsewhere (--resume, --config).
        "init_from": None if o.init_from is None else str(Path(o.init_from).expanduser().resolve()),
        "replay": None if o.replay is None else str(Path(o.replay).expanduser().resolve()),
        "replay_share": o.replay_share, "freeze": None if o.freeze is None else list(o.freeze),
    }  # fmt: skip
    changes: dict[str, Any] = {**parse_set(o.set_fields), **{k: v for k, v in given.items() if v is not None}}
    data = o.data
    if o.resume:
        if o.preset is not None or o.config is not None:
            raise CCQError("--resume: the run's recorded configuration is used; drop --preset / --config")
        record = read_run_record(o.out)
        resolved = resumed_config(record, changes)
        data = data if data is not None else Path(record["data"])
    else:
        if data is None:
            raise CCQError("--data: missing; give the prepared folder written by `ccq prepare`")
        base = get_train_preset(o.preset or "official")
        resolved = load_train_config(o.config, base) if o.config is not None else base
        if changes:
            resolved = TrainConfig.from_dict(changes, base=resolved)
    if o.replay_share is not None and resolved.replay is None:
        raise CCQError("--replay-share: needs --replay (the prepared folder of the old tasks' data)")
    return resolved, data


def run_train(options: TrainOptions, echo: Callable[..., None] = print):
    """Train (or resume) the run in ``options.out``; returns the trainer's result on the main process, None on the
    others. SIGINT/SIGTERM end it with `ccq.training.signals.TrainingInterrupted` after last/ was saved."""
    from ccq.training.trainer import Trainer

    resolved, data = resolve_train_config(options)
    out = options.out
    trainer = Trainer(resolved, data, out, progress=options.progress, echo=echo, resume=options.resume)
    if trainer.dist.is_main:
        ranks = f" x {trainer.dist.world_size} processes" if trainer.dist.enabled else ""
        echo(
            f"training {trainer.model_config.arch} (model preset {resolved.model!r}) for {resolved.iterations} "
            f"iterations on {trainer.device}{ranks} ({trainer.precision.name}): {len(trainer.split.train)} "
            f"training cases, {len(trainer.split.val)} held out for validation -> {out}"
        )
        if resolved.replay is not None:
            echo(f"replay: {resolved.replay_share:.0%} of the samples from {resolved.replay}")
    result = trainer.fit()
    if not trainer.dist.is_main:
        return None
    state = result.state
    minutes = state.seconds / 60
    echo(f"done: {state.iteration} iterations in {minutes:.1f} min; last checkpoint {result.last}")
    if result.best is not None and state.best_score is not None:
        echo(f"best validation Dice {state.best_score:.4f} at iteration {state.best_iteration}: {result.best}")
    return result
