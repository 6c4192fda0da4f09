"""Fixed inputs for the Table 1-style renderings, and the texts they render to.

The files in ``golden/`` were written by the renderers as they were before they shared one table renderer
(``python -m tests.evaluation.tables WRITE_DIR`` on that code); `tests/evaluation/test_table.py` checks that every
rendering still gives them byte for byte: ``table.md``, ``ccq reproduce``'s ``OUT/table.md`` and the demo's
``report.md`` are files users and scripts read.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

GOLDEN = Path(__file__).resolve().parent / "golden"


def _rec(case: str, category: str, dice: float, hd95: float, status: str = "ok") -> dict[str, Any]:
    task, channel = category.split("/")
    return {"case": case, "task": task, "channel": channel, "category": category, "dice": dice, "hd95": hd95,
            "status": status, "pred_voxels": 10, "gt_voxels": 10}  # fmt: skip


def mots_records() -> list[dict[str, Any]]:
    return [
        _rec("a", "liver/organ", 0.95, 3.0),
        _rec("b", "liver/organ", 0.9, 5.25),
        _rec("a", "liver/tumor", 0.6, 20.0),
        _rec("b", "liver/tumor", 0.0, 373.12866, "pred_empty"),
        _rec("c", "kidney/organ", 0.975, 1.5),
        _rec("c", "kidney/tumor", 0.5, 7.0),
        _rec("d", "colon/tumor", 0.125, 40.5),
        _rec("e", "spleen/organ", 0.93, 2.0),
    ]


def standard_records() -> list[dict[str, Any]]:
    return [
        _rec("a", "liver/organ", 0.95, 3.0),
        _rec("a", "liver/tumor", math.nan, math.nan, "both_empty"),
        _rec("b", "liver/tumor", 0.0, math.nan, "pred_empty"),
        _rec("d", "colon/tumor", math.nan, math.nan, "both_empty"),
        _rec("e", "spleen/organ", 0.875, 1.25),
    ]


def summaries() -> dict[str, dict[str, Any]]:
    """Evaluation summaries: mots with the paper's row, mots without, standard (undefined values)."""
    from ccq.data.collection import load_collection
    from ccq.evaluation.report import build_summary

    mots = load_collection("mots")
    return {
        "mots-paper": build_summary(mots_records(), mots, definition="mots", grid="working",
                                    spacing=(1.5, 0.8, 0.8), sources={}, compare_paper=True),
        "mots": build_summary(mots_records()[:4], mots, definition="mots", grid="working", spacing=(1.5, 0.8, 0.8),
                              sources={}),
        "standard": build_summary(standard_records(), mots, definition="standard", grid="native", spacing=None,
                                  sources={}),
    }  # fmt: skip


def reproduce_table(table: str) -> str:
    """``ccq reproduce``'s OUT/table.md for three rows of ``table`` at tiny size, one of them not evaluated."""
    from ccq.reproduce import table_markdown, table_rows

    every = summaries()
    rows = table_rows(table, "tiny")
    done = {rows[0].key: every["mots"], rows[-1].key: every["mots-paper"]}
    if table == "table2":
        done[rows[1].key] = every["standard"]
    return table_markdown(table, rows, done, "Ours: a note.")


def demo_summaries() -> dict[str, dict[str, Any]]:
    every = summaries()
    return {"CCQ": every["standard"], "DoDNet": every["mots"]}


def demo_report(out: Path) -> str:
    """The demo's report.md, written into ``out`` (pictures are empty files there)."""
    from ccq.demo_report import write_report

    for name in ("run/curves.png", "overlays/liver_1/liver/overview.png", "overlays/colon_2/colon/overview.png"):
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_bytes(b"")
    path = write_report(
        out, summaries=demo_summaries(), definition="standard",
        curves={"CCQ": out / "run" / "curves.png", "DoDNet": out / "run-dodnet" / "curves.png"},
        overlays=[out / "overlays/liver_1/liver/overview.png", out / "overlays/colon_2/colon/overview.png"],
        stages={"phantom": 6.2, "train CCQ": 474.4}, seconds=529.0, commands=["ccq phantom --out x"],
        next_commands=["ccq predict -i a -o b"],
    )  # fmt: skip
    return path.read_text(encoding="utf-8")


def renderings(work: Path) -> dict[str, str]:
    """File name in ``golden/`` -> the text rendered now."""
    from ccq.demo_report import comparison_table
    from ccq.evaluation.report import markdown_table

    out = {f"table-{name}.md": markdown_table(s) for name, s in summaries().items()}
    out["reproduce-table1.md"] = reproduce_table("table1")
    out["reproduce-table2.md"] = reproduce_table("table2")
    out["demo-comparison.md"] = comparison_table(demo_summaries()) + "\n"
    out["demo-comparison.txt"] = comparison_table(demo_summaries(), markdown=False) + "\n"
    out["demo-report.md"] = demo_report(work)
    return out


if __name__ == "__main__":
    import tempfile

    target = Path(sys.argv[1])
    target.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        for name, text in renderings(Path(tmp)).items():
            (target / name).write_text(text, encoding="utf-8")
            print(target / name)
