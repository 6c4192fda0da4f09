"""The published numbers our MOTS evaluation is compared with (``ccq evaluate --compare-paper``).

Source: Liu et al., "Learning Multi-Organ Segmentation via Partially Labeled Datasets with Cross-Class Query",
AAAI 2023, Table 1 ("Our CCQ" row; MOTS test split, Dice in %, HD95 in voxels of the 1.5 x 0.8 x 0.8 mm working
grid, i.e. the "mots" definition of `ccq.evaluation.scoring`). Keys are the categories of the built-in ``mots``
collection.
"""

from __future__ import annotations

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
"""The paper's "Average" column: the 11 categories with equal weight."""
