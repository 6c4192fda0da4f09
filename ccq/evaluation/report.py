"""The evaluation's outputs: ``summary.json`` (the contract other tools read), ``cases.csv`` and ``table.md``.

``summary.json`` keys that outside checks rely on (keep them):

* ``summary["categories"]["<task>/<organ|tumor>"]["dice" | "hd95"]`` — the mean over the category's cases;
* ``summary["mean"]["organ" | "tumor" | "all"]["dice" | "hd95"]`` — categories averaged with equal weight, as the
  paper averages its 11 categories;
* ``summary["cases"]`` — a list of ``{"case", "category", "dice", "hd95", ...}``, one per case and category;
* ``summary["grids"]`` (only when tasks have their own working grids) — per task ``{"spacing", "axes"}``
  (`ccq.data.grid.Grid`), the grid the mots definition scored it on.

Dice is a fraction in [0, 1] (``table.md`` shows percent, as the paper); HD95 is in the definition's unit
(``summary["units"]``). A value that is undefined (the "standard" definition with an empty mask) is ``null`` in
JSON, ``nan`` in the CSV and "–" in the table; every mean skips it and says how many values it covers
(``n_dice``, ``n_hd95``, ``n_categories``), and ``status`` counts say which cases were empty.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ccq.data.collection import Collection
from ccq.errors import CCQError
from ccq.evaluation.metrics import nanmean
from ccq.evaluation.paper import CCQ_TABLE1, CCQ_TABLE1_AVERAGE, PAPER_DEFINITION, PAPER_REFERENCE
from ccq.evaluation.scoring import STATUSES
from ccq.evaluation.table import Column, Method, Numbers, label_column, mean_column, render, task_columns
from ccq.utils import fs

SUMMARY_FILE = "summary.json"
CASES_FILE = "cases.csv"
TABLE_FILE = "table.md"
REPORT_FILES = (SUMMARY_FILE, CASES_FILE, TABLE_FILE)
CASE_COLUMNS = ("case", "task", "channel", "category", "dice", "hd95", "status", "pred_voxels", "gt_voxels")
GROUPS = ("organ", "tumor", "all")
FORMAT_VERSION = 1


def check_reports_free(out: Path, overwrite: bool) -> None:
    """Refuse, before any work, to replace an earlier evaluation's files unless ``overwrite``."""
    if overwrite:
        return
    taken = [out / name for name in REPORT_FILES if (out / name).exists() or (out / name).is_symlink()]
    if taken:
        raise CCQError(
            f"{taken[0]} exists; refusing to overwrite an earlier evaluation: choose another --out or pass --overwrite"
        )


def _group_means(categories: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for group in GROUPS:
        members = [v for k, v in categories.items() if group == "all" or k.endswith(f"/{group}")]
        dice = [v["dice"] for v in members]
        hd = [v["hd95"] for v in members]
        out[group] = {
            "dice": nanmean(dice),
            "hd95": nanmean(hd),
            "n_categories": len(members),
            "n_dice": sum(math.isfinite(x) for x in dice),
            "n_hd95": sum(math.isfinite(x) for x in hd),
        }
    return out


def build_summary(
    records: Sequence[Mapping[str, Any]],
    collection: Collection,
    *,
    definition: str,
    grid: str,
    spacing: Sequence[float] | None,
    sources: Mapping[str, Any],
    compare_paper: bool = False,
    grids: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The summary dict (see the module docstring) from per-case records (`ccq.evaluation.evaluate`); ``grids``
    (task -> `ccq.data.grid.Grid`) adds each evaluated task's working grid, when tasks have their own."""
    names = collection.category_names()
    order = [c for c in collection.categories() if any(r["category"] == c for r in records)]
    categories: dict[str, dict[str, Any]] = {}
    for category in order:
        rows = [r for r in records if r["category"] == category]
        dice = [r["dice"] for r in rows]
        hd = [r["hd95"] for r in rows]
        task, channel = category.split("/")
        categories[category] = {
            "dice": nanmean(dice),
            "hd95": nanmean(hd),
            "name": names.get(category, category),
            "task": task,
            "channel": channel,
            "n": len(rows),
            "n_dice": sum(math.isfinite(x) for x in dice),
            "n_hd95": sum(math.isfinite(x) for x in hd),
            "status": {s: sum(r["status"] == s for r in rows) for s in STATUSES},
        }
    hd_unit = "voxels of the working grid" if definition == "mots" else "mm"
    summary: dict[str, Any] = {
        "format": FORMAT_VERSION,
        "generator": "ccq evaluate",
        "definition": definition,
        "grid": grid,
        "spacing": None if spacing is None else [float(s) for s in spacing],
        "units": {"dice": "fraction (0-1)", "hd95": hd_unit},
        "collection": collection.name,
        "tasks": sorted({r["task"] for r in records}, key=lambda t: collection.task(t).id),
        "n_cases": len({(r["task"], r["case"]) for r in records}),
        "sources": dict(sources),
        "categories": categories,
        "mean": _group_means(categories),
        "cases": [{k: r[k] for k in CASE_COLUMNS} for r in records],
    }
    if grids is not None:
        summary["grids"] = {t: grids[t].to_dict() for t in summary["tasks"] if t in grids}
    if compare_paper:
        summary["paper"] = paper_comparison(list(categories), definition)
    return summary


def paper_comparison(categories: Iterable[str], definition: str) -> dict[str, Any]:
    """The paper's CCQ numbers for the evaluated categories (Dice as a fraction), averaged over the same ones."""
    if definition != PAPER_DEFINITION:
        raise CCQError(
            f"--compare-paper: the paper's numbers use the {PAPER_DEFINITION!r} definition; evaluate with "
            f"--definition {PAPER_DEFINITION} to compare (got {definition!r})"
        )
    chosen = {c: CCQ_TABLE1[c] for c in categories if c in CCQ_TABLE1}
    if not chosen:
        raise CCQError(
            f"--compare-paper: none of the evaluated categories is in the paper's Table 1 "
            f"({', '.join(CCQ_TABLE1)}); it covers the built-in 'mots' collection"
        )
    table = {c: {"dice": d / 100.0, "hd95": h} for c, (d, h) in chosen.items()}
    return {"reference": PAPER_REFERENCE, "method": "CCQ", "categories": table, "mean": _group_means(table)}


# ------------------------------------------------------------------------------------------------ files


def cases_csv(records: Sequence[Mapping[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CASE_COLUMNS)
    for r in records:
        writer.writerow(["nan" if isinstance(r[k], float) and math.isnan(r[k]) else r[k] for k in CASE_COLUMNS])
    return buffer.getvalue()


def markdown_table(summary: Mapping[str, Any]) -> str:
    """Table 1 of the paper, laid out for this evaluation: one row per method, Dice (%) and HD per category."""
    categories: dict[str, Any] = summary["categories"]
    paper = summary.get("paper")
    rows = [Method.of("ccq (this evaluation)", summary)]
    if paper is not None:
        rows.append(Method.of("CCQ (paper, Table 1)", paper))
    numbers = Numbers(digits=2, dash="–")
    unit = summary["units"]["hd95"]
    spacing = summary.get("spacing")
    grid = f" ({' x '.join(f'{s:g}' for s in spacing)} mm)" if spacing and summary["definition"] == "mots" else ""
    if len({str(g) for g in (summary.get("grids") or {}).values()}) > 1:
        grid = " (each task's own working grid: `grids` in summary.json)"
    lines = [
        f"# Evaluation ({summary['definition']} definition)",
        "",
        f"Collection `{summary['collection']}`, {summary['n_cases']} case(s); Dice in %, HD95 in {unit}{grid}; "
        f"evaluated on the {summary['grid']} grid. Averages give each category equal weight.",
        "",
    ]
    lines += render(rows, [label_column("Method"), mean_column("Average Dice", "all", "dice", numbers),
                           mean_column("Average HD", "all", "hd95", numbers), *task_columns(categories, numbers)],
                    rule="spaced")  # fmt: skip
    if paper is not None:
        n = paper["mean"]["all"]["n_categories"]
        average = f"{CCQ_TABLE1_AVERAGE[0]:.2f} / {CCQ_TABLE1_AVERAGE[1]:.2f}"
        scope = ""
        if n != len(CCQ_TABLE1):
            scope = (f" Its averages here are over the same {n} categories as ours (its own, over all "
                     f"{len(CCQ_TABLE1)}: {average}).")  # fmt: skip
        lines += ["", f"Paper row: {paper['reference']}, under the mots definition.{scope}"]
    lines += ["", "## Averages", ""]
    means = [
        mean_column(f"{g} {m}", g, metric, numbers) for g in GROUPS for m, metric in (("Dice", "dice"), ("HD", "hd95"))
    ]
    lines += render(rows, [label_column("Method"), *means], rule="spaced")
    lines += ["", "## Per category", ""]
    lines += render(categories.items(), _CATEGORY_COLUMNS, rule="spaced")
    if summary["definition"] == "standard":
        lines += ["", "A dash is an undefined value (an empty mask): it is left out of the means, and the counts say "
                  "how many cases each mean covers."]  # fmt: skip
    return "\n".join(lines) + "\n"


def _category_columns() -> list[Column[tuple[str, Mapping[str, Any]]]]:
    numbers = Numbers(digits=2, dash="–")
    counts = [("cases", "n"), ("Dice n", "n_dice"), ("HD n", "n_hd95")]
    statuses = [("both empty", "both_empty"), ("pred empty", "pred_empty"), ("gt empty", "gt_empty")]
    return [
        Column("category", lambda item: f"`{item[0]}`"),
        Column("name", lambda item: item[1]["name"]),
        Column("Dice %", lambda item: numbers.percent(item[1]["dice"])),
        Column("HD95", lambda item: numbers.plain(item[1]["hd95"])),
        *(Column(header, lambda item, key=key: str(item[1][key])) for header, key in counts),
        *(Column(header, lambda item, key=key: str(item[1]["status"][key])) for header, key in statuses),
    ]


_CATEGORY_COLUMNS = _category_columns()


def write_reports(summary: Mapping[str, Any], out: Path, *, overwrite: bool = False) -> list[Path]:
    """Write summary.json, cases.csv and table.md into ``out`` (each atomically); returns their paths."""
    out = Path(out)
    check_reports_free(out, overwrite)
    out.mkdir(parents=True, exist_ok=True)
    table = markdown_table(summary)
    csv_text = cases_csv(summary["cases"])
    # summary.json last: a reader that sees it can trust the other two are from the same run.
    return [
        fs.write_text_atomic(out / CASES_FILE, csv_text),
        fs.write_text_atomic(out / TABLE_FILE, table),
        fs.write_json_atomic(out / SUMMARY_FILE, summary),
    ]
