"""The paper's published figures: every number of it that ccq compares with lives here.

Source: Liu et al., "Learning Multi-Organ Segmentation via Partially Labeled Datasets with Cross-Class Query",
AAAI 2023. Dice in %, HD95 in voxels of the 1.5 x 0.8 x 0.8 mm working grid (the "mots" definition of
`ccq.evaluation.scoring`).

* `CCQ_TABLE1`: Table 1's "Our CCQ" row per category (MOTS test split), for ``ccq evaluate --compare-paper``;
  keys are the categories of the built-in ``mots`` collection.
* `TABLE1`, `TABLE2`: the rows of Table 1 (the methods, MOTS test split) and Table 2 (the ablations, the authors'
  own 80/20 split) in the paper's order, with their averages over the 11 categories, for ``ccq reproduce``. A
  row's key is the model preset (Table 1) or the ablation (Table 2) that stands for it in
  `ccq.models.presets`.
"""

from __future__ import annotations

from dataclasses import dataclass

PAPER_REFERENCE = "Liu et al., AAAI 2023, Table 1 (MOTS)"
PAPER_DEFINITION = "mots"

CCQ_TABLE1: dict[str, tuple[float, float]] = {
    # category: (Dice %, HD95)
    "liver/organ": (96.71, 3.73),
    "liver/tumor": (64.32, 31.22),
    "kidney/organ": (96.68, 1.44),
    "kidney/tumor": (79.82, 4.89),
    "hepatic_vessel/organ": (62.50, 13.86),
    "hepatic_vessel/tumor": (76.94, 20.76),
    "pancreas/organ": (83.18, 7.20),
    "pancreas/tumor": (60.54, 30.07),
    "colon/tumor": (54.77, 57.88),
    "lung/tumor": (70.51, 11.04),
    "spleen/organ": (94.57, 2.71),
}

CCQ_TABLE1_AVERAGE: tuple[float, float] = (76.41, 16.80)
"""The paper's "Average" column of its CCQ row: the 11 categories with equal weight."""


@dataclass(frozen=True)
class PaperRow:
    key: str
    """The model preset (Table 1) or ablation (Table 2) that stands for the row."""
    label: str
    """The paper's name of the row."""
    average: tuple[float, float] | None
    """(Dice %, HD95) over the 11 categories; None where the paper reports none."""


TABLE1: tuple[PaperRow, ...] = (
    PaperRow("multinets", "Multi-Nets", (71.67, 28.95)),
    PaperRow("tal", "TAL", (73.35, 23.56)),
    PaperRow("multihead", "Multi-Head", (74.55, 26.22)),
    PaperRow("dodnet", "DoDNet", (75.64, 19.50)),
    PaperRow("condenc", "Cond-Enc", (74.68, 24.39)),
    PaperRow("conddec", "Cond-Dec", (72.71, 29.63)),
    PaperRow("official", "CCQ", CCQ_TABLE1_AVERAGE),
)

TABLE2: tuple[PaperRow, ...] = (
    PaperRow("full", "CCQ", (72.38, 27.69)),
    PaperRow("no-qgen", "w/o Q-Generation", (68.89, 35.02)),
    PaperRow("no-querying", "w/o Querying", (68.91, 34.79)),
    PaperRow("no-cat", "w/o Q-F_enc-Cat", (71.39, 29.26)),
    PaperRow("baseline", "Baseline", (67.81, 40.60)),
    PaperRow("baseline-imgattn", "Baseline+IMG-Self-Attn", (68.04, 40.38)),
    PaperRow("baseline-imgattn-attnskip", "Baseline+IMG-Self-Attn+Attn-Skip", (68.68, 36.07)),
    PaperRow("no-attnskip", "w/o Attn-Skip", (70.02, 32.60)),
    PaperRow("nq16", "N_q = 16", (71.15, 32.22)),
    PaperRow("nq32", "N_q = 32", None),
    PaperRow("nq64", "N_q = 64", (71.44, 26.63)),
)
