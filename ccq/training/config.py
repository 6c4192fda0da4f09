"""The training configuration: one frozen dataclass, written as JSON into every run folder.

Presets: ``official`` (docs/architecture.md#training: SGD 0.01 / momentum 0.99 / Nesterov, poly 0.9 stepped per
60-iteration epoch, 150k iterations of batch 2 per GPU, patch 64x192x192) and ``demo`` (the small ``demo`` model, a few
minutes on a CPU). A config file holds any subset of the fields and is applied on top of a preset; nothing is
mixed silently: the resolved configuration is what `config.json` records.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import ccq.limits as limits
from ccq.data.augment import AugmentationConfig
from ccq.data.sampling import SamplingConfig
from ccq.errors import CCQError
from ccq.models.config import ModelConfig
from ccq.utils.config import Config, FieldError, FieldsOf, shown

LrStep = Literal["epoch", "iteration"]
LrSchedule = Literal["poly", "cosine"]
Precision = Literal["auto", "fp32", "bf16", "fp16"]
Optimizer = Literal["sgd", "adamw"]
DEVICES = ("auto", "cpu", "cuda")
"""Device names besides ``cuda:N`` (not a Literal: N is any GPU index)."""
FROM_DATA = ("num_tasks",)
"""ModelConfig fields a training run takes from the prepared data, never from `model_overrides`."""


@dataclass(frozen=True)
class TrainConfig(Config):
    """Everything that decides a training run except the data folder and the run folder."""

    preset: str = "official"
    """The preset this configuration started from (recorded, not used)."""
    model: str = "official"
    """Model preset (`ccq.models.get_preset`): official, dodnet, demo, tiny, BASE+ABLATION ..."""
    model_overrides: Annotated[Mapping[str, Any], FieldsOf(ModelConfig)] = field(default_factory=dict)
    """ModelConfig fields changed on top of the model preset (num_tasks always comes from the data)."""

    iterations: int = 150_000
    batch_size: int = 2
    """Patches per step (per GPU once training is distributed)."""
    optimizer: Optimizer = "sgd"
    """"sgd" (official) or "adamw" (converges in fewer iterations: the CPU demo)."""
    lr: float = 0.01
    momentum: float = 0.99
    """SGD only."""
    nesterov: bool = True
    weight_decay: float = 0.0
    poly_power: float = 0.9
    lr_step: LrStep = "epoch"
    """Poly decay stepped once per ``epoch_iterations`` (official: 2500 epochs x 60) or every iteration."""
    epoch_iterations: int = 60
    lr_schedule: LrSchedule = "poly"
    """"poly" (official) or "cosine" (a half cosine to 0, stepped every iteration; `ccq.training.schedule`)."""
    warmup_iterations: int = 0
    """Linear LR warm-up over this many iterations, then the decay to 0 (per-iteration schedules only)."""
    ema_decay: float | None = None
    """Validate and save an exponential moving average of the weights with this decay (`ccq.training.ema`);
    None (official) = the trained weights themselves."""
    grad_clip: float | None = None
    """Clip the gradient norm to this value; None (official) = no clipping."""
    max_nonfinite_skips: int = 0
    """Steps with a NaN/inf loss that may be skipped (no update) before the run stops; 0 = stop at the first."""

    precision: Precision = "auto"
    """"auto" = bf16 autocast on a CUDA device that supports it, else fp32; "fp16" (CUDA) uses a grad scaler."""
    channels_last: bool = False
    """Keep activations in channels_last_3d memory layout (faster 3D convolutions on most hardware)."""
    compile: bool = False
    """Compile the model with `torch.compile` (slow first iterations, faster later ones on a GPU)."""
    activation_checkpointing: bool = False
    """Recompute encoder stages and decoder blocks in backward instead of storing their activations."""
    recompute_norm_act: bool = True
    """Recompute GroupNorm + activation in backward instead of storing them (`ccq.models.fused`): less memory;
    off, the same weights (bitwise on a CPU) in some 9 % less time per step on the demo model."""
    decode_labeled_only: bool = True
    """CCQ models: decode each sample's organ and tumor branches only where its dataset labels them (a spleen or
    lung-tumor sample needs one of two), for the same gradients up to float rounding. With issue #18's other step
    work a demo step became 1.26-1.31x faster, 1.11-1.15x without this (BENCHMARKS.md). Used in one process
    without `compile` (under DDP a step could leave one branch's parameters without gradients)."""

    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    num_workers: int = 2
    """Patch-loader worker processes (0 = in the training process)."""

    val_fraction: float = 0.1
    """Share of each task's training cases held out for validation (at least one when it has two or more)."""
    val_max_per_task: int | None = None
    val_seed: int = 0
    """Seeds the held-out choice, apart from ``seed``: runs with other seeds validate on the same cases."""
    val_every: int = 1500
    """Validate (and keep best/) every this many iterations, and at the end; 0 = only at the end."""
    val_overlap: float = 0.5
    val_batch_size: int = 1
    """Windows per forward pass during validation."""
    save_every: int = 1500
    """Write last/ every this many iterations (and at the end)."""
    keep_last: int = 0
    """Also keep this many earlier snapshots as RUN/checkpoints/iteration_NNNNNNN/ (0 = only last/ and best/)."""
    tensorboard: bool = True
    """Write TensorBoard scalars to RUN/tensorboard/ when the `tensorboard` package is installed."""
    log_every: int = 10
    """One log.jsonl line (means over the interval) every this many iterations."""

    seed: int = 0
    device: str = "auto"

    # Growing a trained model (`ccq.training.init_from`, `ccq.training.replay`)
    init_from: str | None = None
    """A checkpoint folder, or a run folder (its best/), whose weights start this run; the optimizer, schedule and
    iteration count start fresh. The collection may add tasks after the checkpoint's."""
    freeze: tuple[str, ...] = ()
    """Top-level parts of the model kept fixed (e.g. encoder, image_transformer); needs init_from."""
    replay: str | None = None
    """A prepared folder of the old tasks' data, drawn from at ``replay_share`` (needs init_from)."""
    replay_share: float = 0.3
    """Share of the training samples drawn from ``replay`` (used only with it)."""

    config_name = "train config"

    def _validate(self) -> None:
        # The overrides' types are checked with the other fields; they are applied later, on top of the model
        # preset, which the trainer completes with what the data decides.
        for name in FROM_DATA:
            if name in self.model_overrides:
                raise FieldError(
                    f"model_overrides.{name}",
                    f"not allowed: {name} comes from the prepared data (its task collection), got "
                    f"{shown(self.model_overrides[name])}",
                )
        checks = [
            ("iterations", self.iterations >= 1, "a positive integer"),
            ("batch_size", self.batch_size >= 1, "a positive integer"),
            ("lr", self.lr > 0, "a positive number"),
            ("momentum", 0 <= self.momentum < 1, "a value in [0, 1)"),
            ("weight_decay", self.weight_decay >= 0, "a non-negative number"),
            ("poly_power", self.poly_power >= 0, "a non-negative number"),
            ("epoch_iterations", self.epoch_iterations >= 1, "a positive integer"),
            ("warmup_iterations", self.warmup_iterations >= 0, "0 or more"),
            ("ema_decay", self.ema_decay is None or 0 < self.ema_decay < 1, "null or a value in (0, 1)"),
            ("grad_clip", self.grad_clip is None or self.grad_clip > 0, "null or a positive number"),
            ("max_nonfinite_skips", self.max_nonfinite_skips >= 0, "0 or more"),
            ("keep_last", self.keep_last >= 0, "0 or more"),
            ("num_workers", self.num_workers >= 0, "0 or more"),
            ("val_fraction", 0 <= self.val_fraction < 1, "a fraction in [0, 1)"),
            ("val_max_per_task", self.val_max_per_task is None or self.val_max_per_task >= 0,
             "null or a non-negative integer"),
            ("val_every", self.val_every >= 0, "0 or a positive integer"),
            ("val_overlap", 0 <= self.val_overlap < 1, "a fraction in [0, 1)"),
            ("val_batch_size", self.val_batch_size >= 1, "a positive integer"),
            ("save_every", self.save_every >= 1, "a positive integer"),
            ("log_every", self.log_every >= 1, "a positive integer"),
            ("seed", self.seed >= 0, "a non-negative integer"),
            ("val_seed", self.val_seed >= 0, "a non-negative integer"),
            ("device", self.device in DEVICES or self.device.startswith("cuda:"), "one of auto, cpu, cuda, cuda:N"),
        ]  # fmt: skip
        for name, ok, expected in checks:
            if not ok:
                self._fail(name, expected)
        if self.optimizer == "sgd" and self.nesterov and self.momentum == 0:
            self._fail("nesterov", "false when momentum is 0 (Nesterov SGD needs momentum > 0)")
        if self.lr_step == "epoch" and (self.lr_schedule != "poly" or self.warmup_iterations > 0):
            # A cosine schedule or a warm-up is defined per iteration; the per-epoch step is the official poly's.
            self._fail("lr_step", f"'iteration' with lr_schedule={self.lr_schedule!r}, "
                       f"warmup_iterations={self.warmup_iterations}")  # fmt: skip
        if not 0 < self.replay_share < 1:
            self._fail("replay_share", "a fraction in (0, 1)")
        for name in ("freeze", "replay"):
            if getattr(self, name) and self.init_from is None:
                value = getattr(self, name)
                raise FieldError(name, f"needs init_from (a trained model to start from), got {shown(value)}")


# The demo: flips off (the phantom's liver and spleen differ mostly by side, as real ones do), no blur or
# simulated low resolution (the costliest transforms on a CPU); the cheap intensity transforms stay.
_DEMO_AUGMENTATION = AugmentationConfig(flip_p=0.0, blur_p=0.0, lowres_p=0.0, scale_range=(0.85, 1.15))

PRESETS: dict[str, TrainConfig] = {
    "official": TrainConfig(keep_last=2),
    "demo": TrainConfig(
        preset="demo",
        model="demo",
        # Measured on the phantoms (benchmarks/demo_tuning.py, BENCHMARKS.md): AdamW at 3e-3 learns in far fewer
        # iterations than the official SGD (and than AdamW at 1e-3 or 1e-2). Batch 2: at batch 1 PyTorch runs the
        # narrow encoder convolutions on its slow non-oneDNN path (twice the time per patch), and per patch batch 1
        # learns no faster. Channels-last makes a demo step 1.5-1.7x faster on a CPU (benchmarks/layout_speed.py), and
        # storing GroupNorm + activation instead of recomputing them in backward some 10 % (bitwise the same weights
        # on a CPU: tests/training/test_trainer.py). 2200 iterations (4.3-4.5 minutes on 2 cores): the organ channels
        # are still rising at 1700, and the tumor channels first draw a blob where tumors usually are before they
        # learn what a tumor looks like; 2300 iterations against 1700 gained 1-2 organ and 2-5 tumor points on
        # the tuning seeds. A higher rate, EMA and tumor crops were not better (BENCHMARKS.md, "The demo").
        iterations=2200,
        batch_size=2,
        optimizer="adamw",
        lr=0.003,
        lr_step="iteration",
        channels_last=True,
        recompute_norm_act=False,
        sampling=SamplingConfig(augmentation=_DEMO_AUGMENTATION),
        num_workers=0,
        val_fraction=0.1,
        val_max_per_task=1,
        val_every=275,
        val_batch_size=4,
        save_every=275,
        log_every=10,
        device="cpu",
    ),
}


def get_train_preset(name: str) -> TrainConfig:
    if name not in PRESETS:
        import difflib

        close = difflib.get_close_matches(name, list(PRESETS), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise CCQError(f"unknown training preset {name!r}{hint}: expected one of {', '.join(PRESETS)}")
    return PRESETS[name]


def load_train_config(path: str | Path, base: TrainConfig) -> TrainConfig:
    """A JSON/YAML file of TrainConfig fields applied on top of ``base``; a run's config.json (with a
    ``train`` section) is accepted too, so a run can be repeated from its record."""
    from ccq.data.collection_io import parse_collection_text

    path = Path(path).expanduser()
    if not path.is_file():
        raise CCQError(f"--config {path}: no such file; expected a JSON or YAML file of training settings")
    suffix = ".json" if path.suffix.lower() == ".json" else ".yaml"
    data = parse_collection_text(limits.read_text(path), suffix, str(path))
    if isinstance(data, Mapping) and isinstance(data.get("train"), Mapping):
        data = data["train"]
    try:
        return TrainConfig.from_dict(data, base=base)
    except CCQError as err:
        raise CCQError(f"{path}: {err}") from None
