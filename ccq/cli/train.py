"""`ccq train`: train a model preset on a prepared folder (`ccq prepare`), writing a run folder."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any

import typer

_RESUME_HELP = "Continue the run in --out from its last/ checkpoint (exactly: optimizer, RNG and data position)."


_EXPONENT_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def _parse_set(items: list[str]) -> dict[str, Any]:
    """``KEY=VALUE`` pairs (VALUE read as YAML: 0.5, true, [1, 2], null) into a nested mapping; ``a.b=1``
    sets field b of the section a (e.g. sampling.foreground_fraction=0.5, model_overrides.dim=128)."""
    import yaml

    from ccq.errors import CCQError

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


def train(
    out: Annotated[
        Path,
        typer.Option(
            "--out", "-o", help="Run folder to create (new or empty), or to continue with --resume.", show_default=False
        ),
    ],
    data: Annotated[
        Path | None,
        typer.Option(
            "--data",
            help="Prepared folder (written by `ccq prepare`); with --resume, default: the run's recorded one.",
            show_default=False,
        ),
    ] = None,
    preset: Annotated[
        str | None,
        typer.Option("--preset", help="Training preset: official or demo [default: official].", show_default=False),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            help="JSON/YAML file of training settings applied over the preset (a run's config.json works too).",
            show_default=False,
        ),
    ] = None,
    resume: Annotated[bool, typer.Option("--resume", help=_RESUME_HELP)] = False,
    iterations: Annotated[
        int | None, typer.Option("--iterations", min=1, help="Iteration count.", show_default=False)
    ] = None,
    batch_size: Annotated[
        int | None, typer.Option("--batch-size", min=1, help="Patches per step and process.", show_default=False)
    ] = None,
    lr: Annotated[float | None, typer.Option("--lr", min=0.0, help="Base learning rate.", show_default=False)] = None,
    seed: Annotated[int | None, typer.Option("--seed", min=0, help="Base seed.", show_default=False)] = None,
    device: Annotated[
        str | None, typer.Option("--device", help="cpu, cuda or auto (default: the preset's).", show_default=False)
    ] = None,
    precision: Annotated[
        str | None,
        typer.Option(
            "--precision", help="auto (bf16 on CUDA, else fp32), fp32, bf16 or fp16 (CUDA).", show_default=False
        ),
    ] = None,
    channels_last: Annotated[
        bool | None,
        typer.Option("--channels-last/--no-channels-last", help="channels_last_3d memory layout.", show_default=False),
    ] = None,
    compile_model: Annotated[
        bool | None, typer.Option("--compile/--no-compile", help="torch.compile the model.", show_default=False)
    ] = None,
    activation_checkpointing: Annotated[
        bool | None,
        typer.Option(
            "--activation-checkpointing/--no-activation-checkpointing",
            help="Recompute encoder/decoder activations in backward (less memory, slower).",
            show_default=False,
        ),
    ] = None,
    num_workers: Annotated[
        int | None, typer.Option("--num-workers", min=0, help="Data loader processes.", show_default=False)
    ] = None,
    set_fields: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            help="Any training setting, KEY=VALUE (repeatable; a.b=VALUE for nested ones, "
            "e.g. sampling.foreground_fraction=0.5).",
            show_default=False,
        ),
    ] = None,
    init_from: Annotated[
        Path | None,
        typer.Option(
            "--init-from",
            help="Start from this checkpoint's weights (a checkpoint folder, or a run "
            "folder: its best/); optimizer, schedule and iteration count start fresh. The --data "
            "collection keeps the checkpoint's tasks (same names, ids, labels) and may add new ones.",
            show_default=False,
        ),
    ] = None,
    freeze: Annotated[
        str | None,
        typer.Option(
            "--freeze",
            help="With --init-from: top-level model parts to keep fixed, comma-separated "
            "(e.g. encoder,image_transformer).",
            show_default=False,
        ),
    ] = None,
    replay: Annotated[
        Path | None,
        typer.Option(
            "--replay",
            help="With --init-from: a prepared folder of the old tasks' data, replayed so "
            "that the model does not forget them.",
            show_default=False,
        ),
    ] = None,
    replay_share: Annotated[
        float | None,
        typer.Option(
            "--replay-share",
            min=0.0,
            max=1.0,
            help="Share of the training samples drawn from --replay [default: 0.3].",
            show_default=False,
        ),
    ] = None,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Show a progress bar.")] = True,
) -> None:
    """Train CCQ on a prepared collection: partial-label Dice + BCE, poly learning rate, validation Dice on
    held-out training cases.

    Writes OUT/config.json (the resolved configuration), OUT/log.jsonl, OUT/curves.png, and the checkpoints
    OUT/last/ and OUT/best/ (use either with `ccq predict --model`). To teach a trained model new tasks: a
    collection that adds tasks to the checkpoint's, `--init-from CKPT`, and `--replay OLD_PREPARED` so that the
    old tasks are not forgotten (README, "Your own data"). Several GPUs or nodes: start it with
    torchrun, e.g. `torchrun --nproc_per_node 4 -m ccq train ...`. Ctrl-C or SIGTERM saves OUT/last/ and exits
    (code 130 / 143); `--resume` continues it.
    """
    from ccq.errors import CCQError
    from ccq.training.config import TrainConfig, get_train_preset, load_train_config
    from ccq.training.resume import read_run_record, resumed_config
    from ccq.training.trainer import Trainer, TrainingInterrupted

    given = {
        "iterations": iterations, "batch_size": batch_size, "lr": lr, "seed": seed, "device": device,
        "precision": precision, "channels_last": channels_last, "compile": compile_model,
        "activation_checkpointing": activation_checkpointing, "num_workers": num_workers,
        # Paths absolute: config.json must name the same folders when read from elsewhere (--resume, --config).
        "init_from": None if init_from is None else str(init_from.expanduser().resolve()),
        "replay": None if replay is None else str(replay.expanduser().resolve()), "replay_share": replay_share,
        "freeze": None if freeze is None else [part.strip() for part in freeze.split(",") if part.strip()],
    }  # fmt: skip
    changes: dict[str, Any] = {**_parse_set(set_fields or []), **{k: v for k, v in given.items() if v is not None}}
    if resume:
        if preset is not None or config is not None:
            raise CCQError("--resume: the run's recorded configuration is used; drop --preset / --config")
        record = read_run_record(out)
        resolved = resumed_config(record, changes)
        data = data if data is not None else Path(record["data"])
    else:
        if data is None:
            raise CCQError("--data: missing; give the prepared folder written by `ccq prepare`")
        base = get_train_preset(preset or "official")
        resolved = load_train_config(config, base) if config is not None else base
        if changes:
            resolved = TrainConfig.from_dict(changes, base=resolved)
    if replay_share is not None and resolved.replay is None:
        raise CCQError("--replay-share: needs --replay (the prepared folder of the old tasks' data)")
    trainer = Trainer(resolved, data, out, progress=progress, echo=typer.echo, resume=resume)
    if trainer.dist.is_main:
        ranks = f" x {trainer.dist.world_size} processes" if trainer.dist.enabled else ""
        typer.echo(
            f"training {trainer.model_config.arch} (model preset {resolved.model!r}) for {resolved.iterations} "
            f"iterations on {trainer.device}{ranks} ({trainer.precision.name}): {len(trainer.split.train)} "
            f"training cases, {len(trainer.split.val)} held out for validation -> {out}"
        )
        if resolved.replay is not None:
            typer.echo(f"replay: {resolved.replay_share:.0%} of the samples from {resolved.replay}")
    try:
        result = trainer.fit()
    except TrainingInterrupted as stop:
        if trainer.dist.is_main:
            typer.echo(str(stop), err=True)
        raise typer.Exit(code=128 + stop.signum) from None
    if not trainer.dist.is_main:
        return
    state = result.state
    minutes = state.seconds / 60
    typer.echo(f"done: {state.iteration} iterations in {minutes:.1f} min; last checkpoint {result.last}")
    if result.best is not None and state.best_score is not None:
        typer.echo(f"best validation Dice {state.best_score:.4f} at iteration {state.best_iteration}: {result.best}")
