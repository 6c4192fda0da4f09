"""Growing a trained model to more tasks: which tensors the task count sizes, and the weights of the grown model.

Where the task enters each model, and how a new task is added without changing any old task's output:

- CCQ: the one-hot task id feeds the two task embeddings ``Linear(num_tasks -> dim)`` (organ, tumor) and, after
  GAP(F), the dynamic head's controllers (``Linear(C + num_tasks -> P)``, the task columns last). A new task is
  one more column of each; an old task's one-hot row is 0 there, and the head multiplies the task columns on their
  own (`ccq.models.head._HeadBase.control`), so every old task's output is bit-identical.
- DoDNet: its controller, as CCQ's head.
- Cond-Dec: one more row of each per-task scale and shift table (`TaskAffine`), read by index.
- Multi-Head, Multi-Nets: one more decoder and head, or network, per new task; the old ones are untouched.
- TAL and Cond-Enc cannot grow without changing the old tasks' outputs (`cannot_grow`).

New columns and rows start as the mean of the old tasks' (the new task starts as an "average" old task); new
per-task modules keep the fresh initialisation of the grown model. Nothing else may change shape: any other
difference between the checkpoint's tensors and the grown model's is an error naming the tensor.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from ccq.errors import CCQError

LOADED, RESIZED, NEW = "loaded", "resized", "new"


@dataclass(frozen=True)
class GrowthRules:
    """How the task count sizes a model's tensors.

    ``task_axes``: state-dict key -> (axis, what it is) of tensors with one entry per task along ``axis``, the
    task entries last on that axis. ``per_task``: module prefixes with ``{t}`` (e.g. ``"decoders.{t}."``) holding
    one module per task. ``cannot_grow``: why this model cannot take new tasks (None: it can).
    """

    task_axes: Mapping[str, tuple[int, str]] = field(default_factory=dict)
    per_task: Mapping[str, str] = field(default_factory=dict)
    """Prefix with ``{t}`` -> what the module is (``"the decoder"``)."""
    cannot_grow: str | None = None

    def per_task_match(self, key: str) -> tuple[int, str] | None:
        """(task index, what) when ``key`` belongs to a per-task module, else None."""
        for prefix, what in self.per_task.items():
            pattern = "^" + re.escape(prefix).replace(re.escape("{t}"), r"(\d+)")
            m = re.match(pattern, key)
            if m:
                return int(m.group(1)), what
        return None


def growth_rules(model: nn.Module) -> GrowthRules:
    """The `GrowthRules` of a model built by `ccq.models.build_model`."""
    # Imported here: the baselines import this package's modules.
    from ccq.models.baselines import CondDec, CondEnc, MultiHead, MultiNets, TALNet
    from ccq.models.ccq_net import CCQNet
    from ccq.models.dodnet import DoDNet

    if isinstance(model, CCQNet):
        axes = {
            "task_embed.0.weight": (1, "the organ branch's task embedding"),
            "task_embed.1.weight": (1, "the tumor branch's task embedding"),
            "head.controller.weight": (1, "the dynamic head's shared controller (task columns)"),
        }
        for b, name in enumerate(("organ", "tumor")[: len(model.head.branch_controllers)]):
            axes[f"head.branch_controllers.{b}.weight"] = (1, f"the {name} branch's head controller (task columns)")
        return GrowthRules(task_axes=axes)
    if isinstance(model, DoDNet):
        return GrowthRules(task_axes={"head.controller.weight": (1, "the dynamic head's controller (task columns)")})
    if isinstance(model, CondDec):
        axes = {}
        for level in range(len(model.decoder.conditioning)):
            axes[f"decoder.conditioning.{level}.scale"] = (0, f"the decoder level {level} per-task scales")
            axes[f"decoder.conditioning.{level}.shift"] = (0, f"the decoder level {level} per-task shifts")
        return GrowthRules(task_axes=axes)
    if isinstance(model, MultiHead):
        return GrowthRules(per_task={"decoders.{t}.": "the decoder", "heads.{t}.": "the head"})
    if isinstance(model, MultiNets):
        return GrowthRules(per_task={"nets.{t}.": "the network"})
    if isinstance(model, TALNet):
        return GrowthRules(
            cannot_grow="TAL's one softmax spans every task's classes, so classes added for a new task change the "
            "old tasks' probabilities"
        )
    if isinstance(model, CondEnc):
        return GrowthRules(
            cannot_grow="Cond-Enc's task code is input channels of its first convolution, whose weight "
            "standardisation mixes them with the image channel: a new channel changes every old output"
        )
    return GrowthRules(cannot_grow=f"no growth rules are known for {type(model).__name__}")


@dataclass(frozen=True)
class TensorChange:
    """What happened to one tensor of the grown model."""

    name: str
    status: str
    """"loaded" (copied unchanged), "resized" (old entries copied, new task entries added) or "new"."""
    shape: tuple[int, ...]
    checkpoint_shape: tuple[int, ...] | None
    reason: str

    def to_dict(self) -> dict[str, object]:
        return {"tensor": self.name, "status": self.status, "shape": list(self.shape),
                "checkpoint_shape": None if self.checkpoint_shape is None else list(self.checkpoint_shape),
                "reason": self.reason}  # fmt: skip


def grown_state_dict(
    checkpoint: Mapping[str, torch.Tensor],
    model: nn.Module,
    old_tasks: int,
    new_task_names: Sequence[str] = (),
    *,
    where: str = "checkpoint",
    hint: str = "",
) -> tuple[dict[str, torch.Tensor], list[TensorChange]]:
    """The full state dict of ``model`` (built for ``old_tasks + len(new_task_names)`` tasks) from the
    ``checkpoint`` tensors of a model with ``old_tasks`` tasks, and what happened to every tensor.

    Raises a one-line CCQError naming ``where`` (the checkpoint) for any tensor that differs other than by the task
    count, for a tensor missing on either side, and for a model that cannot grow. ``hint`` ends such messages
    (e.g. the model settings that differ).
    """
    added = len(new_task_names)
    new_tasks = old_tasks + added
    rules = growth_rules(model)
    suffix = f" ({hint})" if hint else ""
    if added and rules.cannot_grow:
        arch = getattr(getattr(model, "config", None), "arch", type(model).__name__)
        raise CCQError(
            f"{where}: arch {arch!r} cannot take new tasks ({', '.join(new_task_names)}): {rules.cannot_grow}; "
            "train it from scratch on the new collection"
        )
    names = ", ".join(repr(n) for n in new_task_names)
    target = model.state_dict()
    state: dict[str, torch.Tensor] = {}
    changes: list[TensorChange] = []
    for key, fresh in target.items():
        shape = tuple(fresh.shape)
        old = checkpoint.get(key)
        per_task = rules.per_task_match(key)
        if old is not None and tuple(old.shape) == shape:
            state[key] = old.to(dtype=fresh.dtype)
            changes.append(TensorChange(key, LOADED, shape, shape, "same shape"))
        elif old is not None and key in rules.task_axes:
            axis, what = rules.task_axes[key]
            expected = list(old.shape)
            expected[axis] += added
            if list(shape) != expected:
                raise _shape_error(where, key, tuple(old.shape), shape, suffix)
            state[key] = _append_mean(old.to(dtype=fresh.dtype), axis, old_tasks, added)
            reason = (f"{what}: {old_tasks} -> {new_tasks} tasks; the old tasks' entries copied, the new task(s) "
                      f"{names} start as their mean")  # fmt: skip
            changes.append(TensorChange(key, RESIZED, shape, tuple(old.shape), reason))
        elif old is not None:
            raise _shape_error(where, key, tuple(old.shape), shape, suffix)
        elif per_task is not None and old_tasks <= per_task[0] < new_tasks:
            t, what = per_task
            state[key] = fresh
            changes.append(TensorChange(key, NEW, shape, None, f"{what} of new task {new_task_names[t - old_tasks]!r} "
                                        "(fresh initialisation)"))  # fmt: skip
        else:
            raise CCQError(f"{where}: has no tensor {key} {list(shape)}, which this run's model needs{suffix}")
    unexpected = sorted(k for k in checkpoint if k not in target)
    if unexpected:
        more = f" and {len(unexpected) - 1} more" if len(unexpected) > 1 else ""
        raise CCQError(
            f"{where}: tensor {unexpected[0]} {list(checkpoint[unexpected[0]].shape)}{more} has no place in this "
            f"run's model{suffix}"
        )
    return state, changes


def _shape_error(where: str, key: str, old: tuple[int, ...], new: tuple[int, ...], suffix: str) -> CCQError:
    return CCQError(
        f"{where}: tensor {key} has shape {list(old)} in the checkpoint but {list(new)} in this run's model; only "
        f"a change of the task count may change a shape{suffix}"
    )


def _append_mean(old: torch.Tensor, axis: int, old_tasks: int, added: int) -> torch.Tensor:
    """``old`` with ``added`` entries appended along ``axis``, each the mean of the last ``old_tasks`` entries
    (the task entries)."""
    tasks = old.narrow(axis, old.shape[axis] - old_tasks, old_tasks)
    mean = tasks.mean(dim=axis, keepdim=True)
    repeats = [1] * old.dim()
    repeats[axis] = added
    return torch.cat([old, mean.repeat(*repeats)], dim=axis).contiguous()


def summarize_changes(changes: Sequence[TensorChange]) -> list[str]:
    """Lines for the log: the count of loaded tensors, then each resized and new tensor with its reason."""
    loaded = sum(1 for c in changes if c.status == LOADED)
    lines = [f"{loaded} of {len(changes)} tensors loaded unchanged"]
    for c in changes:
        if c.status == RESIZED:
            lines.append(f"resized {c.name} {list(c.checkpoint_shape or ())} -> {list(c.shape)}: {c.reason}")
    new = [c for c in changes if c.status == NEW]
    # A new per-task network has dozens of tensors: one line per reason.
    by_reason: dict[str, list[TensorChange]] = {}
    for c in new:
        by_reason.setdefault(c.reason, []).append(c)
    for reason, items in by_reason.items():
        lines.append(f"new: {len(items)} tensor(s) ({items[0].name} ...): {reason}")
    return lines
