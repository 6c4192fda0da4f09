"""Named model configurations: the official CCQ, the DoDNet baseline, the other Table 1 baselines, tiny sizes, and the
Table 2 ablations."""

from __future__ import annotations

import difflib
from typing import Any

from ccq.errors import CCQError
from ccq.models.config import ModelConfig

_DODNET_CHANGES: dict[str, Any] = {
    "arch": "dodnet",
    "activation": "relu",
    "skip": "additive",
    "image_transformer": False,
}

# Sizes only (no switches): the same code at a size a CPU trains in minutes. The full-resolution levels (the
# encoder's first stage, the decoder's last, run once per branch) cost most of a step, hence only 8 channels
# there. The patch holds 16 of the 24 slices and 48 of the 64 rows and columns of a phantom prepared at the demo's
# 4 x 2.25 x 2.25 mm (ccq.demo.SPACING): enough context to tell the organs apart, at a third of the voxels.
_DEMO_SIZE: dict[str, Any] = {
    "patch_size": (16, 48, 48),
    "stem_channels": 8,
    "encoder_channels": (8, 16, 32, 64, 64),
    "encoder_blocks": (1, 1, 1, 1, 1),
    "decoder_channels": (32, 16, 8, 8),
    "norm_groups": 4,
    "dim": 64,
    "mlp_dim": 128,
    "heads": 4,
    "image_layers": 1,
    "query_layers": 1,
    "querying_layers": 1,
    "num_queries": 8,
}
# Smaller still, for unit tests: the demo's depth and groups, narrower.
_TINY_SIZE: dict[str, Any] = {
    **_DEMO_SIZE,
    "patch_size": (16, 32, 32),
    "encoder_channels": (8, 8, 16, 16, 16),
    "decoder_channels": (16, 8, 8, 8),
    "dim": 16,
    "mlp_dim": 32,
    "num_queries": 4,
}

BASES: dict[str, dict[str, Any]] = {
    "official": {},
    "dodnet": _DODNET_CHANGES,
    "demo": _DEMO_SIZE,
    "demo-dodnet": {**_DEMO_SIZE, **_DODNET_CHANGES},
    "tiny": _TINY_SIZE,
    "tiny-dodnet": {**_TINY_SIZE, **_DODNET_CHANGES},
}

# Table 1's other baselines (docs/baselines.md) on DoDNet's backbone (ReLU, additive skips), at the official,
# demo and tiny sizes: `multinets`, `demo-multinets`, `tiny-multinets`, ...
TABLE1_BASELINES: tuple[str, ...] = ("multinets", "tal", "multihead", "condenc", "conddec")
BASES.update(
    {
        f"{prefix}{arch}": {**size, **_DODNET_CHANGES, "arch": arch}
        for arch in TABLE1_BASELINES
        for prefix, size in (("", {}), ("demo-", _DEMO_SIZE), ("tiny-", _TINY_SIZE))
    }
)

# Table 2 of the paper, plus the paper's own Eq. 5 skip gate. Applied on top of a base size.
ABLATIONS: dict[str, dict[str, Any]] = {
    "full": {},
    "no-qgen": {"query_layers": 0},  # w/o Q-Generation
    "no-querying": {"querying": False},  # w/o Querying
    "no-cat": {"query_concat": False},  # w/o Q-F_enc-Cat
    "baseline": _DODNET_CHANGES,  # Baseline (= DoDNet)
    "baseline-imgattn": {**_DODNET_CHANGES, "image_transformer": True},  # Baseline+IMG-Self-Attn
    "baseline-imgattn-attnskip": {**_DODNET_CHANGES, "image_transformer": True, "skip": "attentive"},
    "no-attnskip": {"skip": "additive"},  # w/o Attn-Skip
    "nq16": {"num_queries": 16},
    "nq32": {"num_queries": 32},
    "nq64": {"num_queries": 64},
    "paper-skip": {"skip": "paper"},  # Eq. 5 as written: 1x1x1 convs, S*gate + S
}
# The paper's rows (names, order, figures) and the preset or ablation of each: `ccq.evaluation.paper`.


def preset_names() -> list[str]:
    """Every name `get_preset` accepts: a base, or `BASE+ABLATION` (e.g. `official+no-cat`, `tiny+nq16`)."""
    return list(BASES) + [f"{b}+{a}" for b in ("official", "demo", "tiny") for a in ABLATIONS if a != "full"]


def get_preset(
    name: str,
    patch_size: tuple[int, int, int] | None = None,
    num_tasks: int | None = None,
    **overrides: Any,
) -> ModelConfig:
    """The configuration called `name` ("official", "dodnet", "demo", "tiny", a Table 1 baseline such as "tal" or
    "tiny-multinets", or BASE+ABLATION), with an optional patch size, task count and any other field overridden."""
    base_name, _, ablation = name.partition("+")
    if base_name not in BASES:
        close = difflib.get_close_matches(base_name, list(BASES), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise CCQError(
            f"unknown model preset {name!r}{hint}: expected one of {', '.join(BASES)}, optionally followed by "
            f"+ABLATION ({', '.join(a for a in ABLATIONS if a != 'full')})"
        )
    if ablation and ablation not in ABLATIONS:
        close = difflib.get_close_matches(ablation, list(ABLATIONS), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise CCQError(
            f"unknown ablation {ablation!r} in preset {name!r}{hint}: expected one of {', '.join(ABLATIONS)}"
        )
    changes: dict[str, Any] = {**BASES[base_name], **ABLATIONS.get(ablation, {})}
    if patch_size is not None:
        changes["patch_size"] = tuple(patch_size)
    if num_tasks is not None:
        changes["num_tasks"] = num_tasks
    changes.update(overrides)
    return ModelConfig().replace(**changes)
