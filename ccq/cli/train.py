"""`ccq train`: train a model preset on a prepared folder (`ccq prepare`), writing a run folder."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

_RESUME_HELP = "Continue the run in --out from its last/ checkpoint (exactly: optimizer, RNG and data position)."


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
        typer.Option(
            "--preset",
            help="Training preset (optimizer, schedule, iterations, sampling, and "
            "the model preset it trains, which --set model=NAME changes; `ccq summary --preset` "
            "names a model preset): official or demo (default: official).",
            show_default=False,
        ),
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
    from ccq.commands.train import TrainOptions, run_train
    from ccq.training.signals import TrainingInterrupted

    options = TrainOptions(
        out=out, preset=preset, config=config, set_fields=tuple(set_fields or ()), data=data, resume=resume,
        iterations=iterations, batch_size=batch_size, lr=lr, seed=seed, device=device, precision=precision,
        channels_last=channels_last, compile_model=compile_model, activation_checkpointing=activation_checkpointing,
        num_workers=num_workers, init_from=init_from, replay=replay, replay_share=replay_share,
        freeze=None if freeze is None else tuple(part.strip() for part in freeze.split(",") if part.strip()),
        progress=progress,
    )  # fmt: skip
    try:
        run_train(options, echo=typer.echo)
    except TrainingInterrupted as stop:
        from ccq.training.distributed import context_from_env

        if context_from_env().is_main:
            typer.echo(str(stop), err=True)
        raise typer.Exit(code=128 + stop.signum) from None
