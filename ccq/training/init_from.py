"""`ccq train --init-from CKPT`: start a run from a trained model's weights, possibly with more tasks.

Weights only: the optimizer, the schedule and the iteration count start fresh, and the run's configuration is the
new one. The run's collection must keep every task of the checkpoint (same name, id and label convention) and may
add tasks after them; the data must be prepared like the checkpoint's (spacing, intensity window). The model grows
with the task count (`ccq.models.growth`: every old task's output stays bit-identical before the first step), and
every tensor is reported as loaded, resized or new, with the reason, on the console, in log.jsonl and in the run's
config.json. `freeze_parts` keeps top-level parts of the model fixed (``--freeze encoder,image_transformer``).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from torch import nn

from ccq.checkpoint import load_checkpoint, resolve_model_path
from ccq.data.collection import Collection
from ccq.data.collection_task import TaskSpec
from ccq.data.preprocessing import PreprocessingConfig
from ccq.errors import CCQError
from ccq.models.config import ModelConfig
from ccq.models.growth import TensorChange, grown_state_dict, summarize_changes

if TYPE_CHECKING:
    from ccq.training.trainer import Trainer

TASK_IDENTITY = ("id", "labels", "organ", "tumor")
"""What a task must keep for its weights to keep their meaning: its id (the one-hot position) and the label
values that make each channel positive."""
WORKING_GRID = ("spacing", "hu_min", "hu_max", "hu_scale", "image_interpolation_order")
"""Preprocessing fields the input must share with the checkpoint's (the patch size belongs to the model)."""


@dataclass
class InitReport:
    """What `init_from_checkpoint` did: the checkpoint, the tasks kept and added, every tensor's fate."""

    checkpoint: str
    kept_tasks: list[str]
    added_tasks: list[str]
    model_differences: dict[str, list[Any]]
    """ModelConfig fields (other than num_tasks) whose value this run changes: [checkpoint's, this run's]."""
    tensors: list[TensorChange]
    frozen: dict[str, Any] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        out = {"loaded": 0, "resized": 0, "new": 0}
        for change in self.tensors:
            out[change.status] += 1
        return out

    def lines(self) -> list[str]:
        """The console lines (also what log.jsonl's "init_from" record holds as ``message``)."""
        added = ", ".join(self.added_tasks) if self.added_tasks else "none"
        lines = [f"init from {self.checkpoint}: {len(self.kept_tasks)} task(s) kept, added: {added}"]
        if self.model_differences:
            changed = ", ".join(f"{k} {v[0]!r} -> {v[1]!r}" for k, v in self.model_differences.items())
            lines.append(f"model settings changed from the checkpoint's: {changed}")
        lines += summarize_changes(self.tensors)
        if self.frozen:
            lines.append(f"frozen: {', '.join(self.frozen['parts'])} ({self.frozen['parameters']:,} parameters; "
                         f"{self.frozen['trainable_parameters']:,} trainable)")  # fmt: skip
        return lines

    def to_dict(self) -> dict[str, Any]:
        return {
            "checkpoint": self.checkpoint,
            "kept_tasks": self.kept_tasks,
            "added_tasks": self.added_tasks,
            "model_differences": self.model_differences,
            "counts": self.counts(),
            "tensors": [c.to_dict() for c in self.tensors],
            "frozen": self.frozen,
        }


def check_identity(task: TaskSpec, other: TaskSpec, where: str, other_where: str, expected: str) -> None:
    """CCQError if two versions of one task (of two collections, found in ``where`` and in
    ``other_where``) differ on any of TASK_IDENTITY; ``expected`` (with ``{key}`` for the key) ends the message."""
    mine, theirs = task.to_dict(), other.to_dict()
    for key in TASK_IDENTITY:
        if mine.get(key) != theirs.get(key):
            raise CCQError(
                f"{where}: task {task.name!r} has {key}={mine.get(key)!r} but {theirs.get(key)!r} in "
                f"{other_where}; {expected.format(key=key)}"
            )


def check_tasks(old: Collection, new: Collection, where: str, new_where: str) -> list[str]:
    """Names of the tasks ``new`` adds to ``old``; CCQError if ``new`` drops an old task or changes its id or
    label convention (``where``: the checkpoint, ``new_where``: where the new collection comes from)."""
    by_name = {t.name: t for t in new.tasks}
    for task in old.tasks:
        kept = by_name.get(task.name)
        if kept is None:
            close = difflib.get_close_matches(task.name, list(by_name), n=1, cutoff=0.6)
            hint = f" (renamed {close[0]!r}?)" if close else ""
            raise CCQError(
                f"{new_where}: the collection lacks the checkpoint's task {task.name!r} (id {task.id}){hint}; a "
                f"collection that grows {where} keeps every task of it with its id and adds new ones after them"
            )
        check_identity(kept, task, new_where, where, "a kept task must keep its {key}")
    known = set(old.task_names)
    return [t.name for t in new.tasks if t.name not in known]


def check_working_grid(
    old: PreprocessingConfig, new: PreprocessingConfig, where: str, new_where: str, tasks: Iterable[str] = ()
) -> None:
    """CCQError naming the first preprocessing field (patch size aside) that differs, or the first of ``tasks``
    (the kept tasks) whose own working grid (`PreprocessingConfig.grid`: spacing and axes) differs."""
    before, after = old.to_dict(), new.to_dict()
    for key in WORKING_GRID:
        if before.get(key) != after.get(key):
            raise CCQError(
                f"{new_where}: prepared with {key}={after.get(key)!r} but {where} has {before.get(key)!r}; "
                "expected the same working grid (prepare with `ccq prepare --preprocessing FILE` holding its values)"
            )
    for name in tasks:
        if old.grid(name) != new.grid(name):
            raise CCQError(
                f"{new_where}: task {name!r} prepared on the grid {new.grid(name)} but {where} has "
                f"{old.grid(name)}; expected the same working grid for every kept task"
            )


def model_differences(old: ModelConfig, new: ModelConfig) -> dict[str, list[Any]]:
    """ModelConfig fields, num_tasks aside, whose values differ: {field: [old, new]} (JSON values)."""
    before, after = old.to_dict(), new.to_dict()
    return {k: [before[k], after[k]] for k in after if k != "num_tasks" and before.get(k) != after[k]}


def init_from_checkpoint(
    model: nn.Module,
    path: str | Path,
    collection: Collection,
    preprocessing: PreprocessingConfig,
    *,
    data_where: str = "the prepared data",
    notify: Callable[[str], None] | None = None,
) -> InitReport:
    """Load the weights of the checkpoint at ``path`` (a checkpoint folder, or a run folder: its best/) into
    ``model``, built for ``collection``, growing every tensor sized by the task count. Raises a one-line CCQError
    for a checkpoint whose tasks, preprocessing or tensors do not fit (see the module docstring)."""
    ckpt_dir = resolve_model_path(path, notify=notify)
    where = f"--init-from {ckpt_dir}"
    old = load_checkpoint(ckpt_dir)
    config: ModelConfig = model.config  # type: ignore[assignment]
    if old.model_config.arch != config.arch:
        raise CCQError(
            f"{where}: the checkpoint is arch {old.model_config.arch!r}, this run builds {config.arch!r}; choose "
            "the model preset the checkpoint was trained with (--set model=...)"
        )
    added = check_tasks(old.collection, collection, where, data_where)
    check_working_grid(old.preprocessing, preprocessing, where, data_where, old.collection.task_names)
    differences = model_differences(old.model_config, config)
    hint = ""
    if differences:
        shown = ", ".join(f"{k} {v[0]!r} -> {v[1]!r}" for k, v in list(differences.items())[:4])
        hint = f"the model differs from the checkpoint's in {shown}; use its model preset (--set model=...)"
    state, changes = grown_state_dict(
        old.model.state_dict(), model, old.collection.num_tasks, added, where=where, hint=hint
    )
    model.load_state_dict(state, strict=True)
    return InitReport(
        checkpoint=str(ckpt_dir.resolve()),
        kept_tasks=list(old.collection.task_names),
        added_tasks=added,
        model_differences=differences,
        tensors=changes,
    )


def start_from(trainer: Trainer, resume: bool) -> InitReport | None:
    """What the trainer does with ``init_from`` and ``freeze`` once its model is built: a new run loads (and
    grows) the checkpoint's weights and says so; a resumed run, whose last/ holds the weights, only freezes."""
    config = trainer.config
    if config.init_from is None:
        return None
    report = None
    if not resume:
        report = init_from_checkpoint(
            trainer.model,
            config.init_from,
            trainer.collection,
            trainer.preprocessing,
            data_where=f"the prepared data {trainer.dataset.root}",
            notify=trainer.echo,
        )
    frozen = freeze_parts(trainer.model, config.freeze) if config.freeze else {}
    if report is not None:
        report.frozen = frozen
        for line in report.lines():
            trainer.echo(line)
    return report


def model_parts(model: nn.Module) -> dict[str, list[nn.Parameter]]:
    """The top-level parts of a model, each with its parameters: its child modules and its own parameters
    (CCQ's positional embedding)."""
    parts: dict[str, list[nn.Parameter]] = {}
    for name, child in model.named_children():
        parts[name] = list(child.parameters())
    for name, param in model.named_parameters(recurse=False):
        parts[name] = [param]
    return parts


def freeze_parts(model: nn.Module, names: Iterable[str]) -> dict[str, Any]:
    """Set ``requires_grad=False`` on the named top-level parts (`model_parts`); returns what was frozen.
    An unknown name is a one-line CCQError with a suggestion and the list of parts."""
    parts = model_parts(model)
    names = [n.strip() for n in names if n.strip()]
    for name in names:
        if name not in parts:
            close = difflib.get_close_matches(name, list(parts), n=1, cutoff=0.5)
            hint = f"did you mean {close[0]!r}? " if close else ""
            arch = getattr(getattr(model, "config", None), "arch", type(model).__name__)
            raise CCQError(
                f"--freeze {name!r}: not a part of this model ({arch}); {hint}expected some of {', '.join(parts)}"
            )
    frozen = 0
    for name in dict.fromkeys(names):
        for param in parts[name]:
            frozen += param.numel() if param.requires_grad else 0
            param.requires_grad_(False)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    if names and trainable == 0:
        raise CCQError(f"--freeze {','.join(names)}: leaves no parameter to train; freeze fewer parts")
    return {"parts": list(dict.fromkeys(names)), "parameters": frozen, "trainable_parameters": trainable}


def as_record(report: InitReport) -> Mapping[str, Any]:
    """The log.jsonl record of an initialisation (iteration 0): every tensor with its fate, as config.json."""
    return {"kind": "init_from", "iteration": 0, "checkpoint": report.checkpoint, "added_tasks": report.added_tasks,
            "counts": report.counts(), "message": report.lines(),
            "tensors": [c.to_dict() for c in report.tensors]}  # fmt: skip
