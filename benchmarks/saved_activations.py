"""How much autograd keeps for the backward pass of one training step of our model (run by hand).

    python benchmarks/saved_activations.py [--preset official] [--patch 32 96 96] [--json]

Sums the sizes of the distinct storages that autograd saves (through `torch.autograd.graph.saved_tensors_hooks`),
parameters excluded, with the recomputing units on (the default) and off (plain autograd). Nothing is timed.
"""

from __future__ import annotations

import argparse
import json

import torch

from ccq.models import build_model, get_preset
from ccq.models.fused import recompute_enabled
from ccq.training.loss import partial_label_loss


def saved_megabytes(model: torch.nn.Module, x: torch.Tensor, target: torch.Tensor, recompute: bool) -> float:
    """MB of distinct non-parameter storages autograd keeps for one forward pass of model + loss."""
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        if storage.data_ptr() not in params:
            seen[storage.data_ptr()] = storage.nbytes()
        return t

    with recompute_enabled(recompute), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = partial_label_loss(model(x, torch.tensor([0])), target).total
    # Outside the hooks: what backward recomputes is transient, not kept.
    loss.backward()
    return sum(seen.values()) / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="official")
    parser.add_argument("--patch", type=int, nargs=3, default=[32, 96, 96], metavar=("D", "H", "W"))
    parser.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    args = parser.parse_args()
    torch.manual_seed(0)
    model = build_model(get_preset(args.preset, patch_size=tuple(args.patch))).train()
    x = torch.rand(1, 1, *args.patch) * 2 - 1
    target = (torch.rand(1, 2, *args.patch) > 0.5).float()
    result = {
        "recompute_mb": round(saved_megabytes(model, x, target, True), 1),
        "plain_autograd_mb": round(saved_megabytes(model, x, target, False), 1),
    }
    print(f"saved for backward, preset {args.preset}, patch {'x'.join(map(str, args.patch))}:")
    print(f"  recomputing units: {result['recompute_mb']} MB; plain autograd: {result['plain_autograd_mb']} MB")
    if args.json:
        print(json.dumps(result))


if __name__ == "__main__":
    main()
