"""Several processes, one run: the torchrun environment, the process group, and the few collectives we need.

`ccq train` started by ``torchrun --nproc_per_node N -m ccq train ...`` finds ``RANK``, ``LOCAL_RANK`` and
``WORLD_SIZE`` in its environment; each process then drives one GPU (``cuda:LOCAL_RANK``, NCCL) or, on a
CPU-only machine, a share of the CPU (gloo). Without those variables everything here is a no-op, so the
single-process trainer takes the same code path.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

from ccq.errors import CCQError


class ReplicasDisagree(RuntimeError):
    """The DDP replicas hold different weights after training: a fault of ccq, torch or the machines, not of
    the user's input (so not a `CCQError`)."""


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the only process that writes files and prints."""
        return self.rank == 0


def context_from_env(environ: dict[str, str] | None = None) -> DistContext:
    """The torchrun variables, validated (a single process when they are absent)."""
    env = os.environ if environ is None else environ
    if "WORLD_SIZE" not in env:
        return DistContext()
    try:
        ctx = DistContext(int(env.get("RANK", "0")), int(env.get("LOCAL_RANK", "0")), int(env["WORLD_SIZE"]))
    except ValueError:
        raise CCQError(
            f"torchrun environment RANK={env.get('RANK')!r} LOCAL_RANK={env.get('LOCAL_RANK')!r} "
            f"WORLD_SIZE={env.get('WORLD_SIZE')!r}: expected integers"
        ) from None
    if not (0 <= ctx.rank < ctx.world_size and ctx.local_rank >= 0):
        raise CCQError(
            f"torchrun environment RANK={ctx.rank} WORLD_SIZE={ctx.world_size}: expected 0 <= RANK < WORLD_SIZE"
        )
    return ctx


def process_device(ctx: DistContext, device: torch.device) -> torch.device:
    """This process's device: ``cuda:LOCAL_RANK`` when training on CUDA with several processes."""
    if ctx.enabled and device.type == "cuda":
        if ctx.local_rank >= torch.cuda.device_count():
            raise CCQError(
                f"LOCAL_RANK={ctx.local_rank}: this node has {torch.cuda.device_count()} GPU(s); start at most "
                "that many processes per node (torchrun --nproc_per_node)"
            )
        torch.cuda.set_device(ctx.local_rank)
        return torch.device("cuda", ctx.local_rank)
    return device


def init_process_group(ctx: DistContext, device: torch.device, timeout: timedelta | None = None) -> None:
    """Join the group (NCCL for CUDA, gloo for the CPU) through the env:// rendezvous torchrun set up.
    ``timeout`` bounds every collective, including the barrier the other ranks wait at during validation."""
    if ctx.enabled and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo", timeout=timeout)


def destroy_process_group(ctx: DistContext) -> None:
    if ctx.enabled and dist.is_initialized():
        dist.destroy_process_group()


def barrier(ctx: DistContext) -> None:
    if ctx.enabled:
        dist.barrier()


def all_reduce_sum(ctx: DistContext, values: torch.Tensor) -> torch.Tensor:
    """Element-wise sum over the processes (the tensor itself when alone)."""
    if ctx.enabled:
        values = values.clone()
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def all_gather_objects(ctx: DistContext, value: Any) -> list[Any]:
    """Every process's ``value``, in rank order (picklable Python objects; for rare, small messages)."""
    if not ctx.enabled:
        return [value]
    out: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(out, value)
    return out


def broadcast_object(ctx: DistContext, value: Any) -> Any:
    """Rank 0's ``value`` on every process."""
    if not ctx.enabled:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def parameter_digest(model: torch.nn.Module) -> str:
    """SHA-256 of every parameter and buffer, in state-dict order: equal across ranks iff the replicas agree."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def check_replicas_agree(digests: list[str], iteration: int) -> None:
    """Raise `ReplicasDisagree` unless every rank's `parameter_digest` is the same."""
    if len(set(digests)) > 1:
        raise ReplicasDisagree(f"DDP replicas disagree after {iteration} iterations: digests {digests}")
