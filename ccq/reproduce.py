"""`ccq reproduce table1|table2`: train, predict and evaluate every row of one of the paper's tables, then write
the table in the paper's layout with the paper's figures beside ours.

Each row is a model preset (Table 1: the six baselines and CCQ; Table 2: CCQ and its ablation switches) at one
size (``official``, ``demo`` or ``tiny``), trained with one training preset for ``budget`` iterations on a
prepared folder, then evaluated on that folder's *test* cases as the paper evaluates: each case for its own task,
sliding window on the working grid, threshold 0.5, Dice and HD95 under the ``mots`` definition (HD95 in voxels of
the working grid). The output folder::

    OUT/reproduce.json        what was asked (table, size, budget, data), for the rows to be comparable
    OUT/ROW/run/              the training run (`ccq train` layout; resumed if it was interrupted)
    OUT/ROW/summary.json      the row's evaluation (`ccq evaluate` format) + cases.csv, table.md
    OUT/table.md              all rows, ours beside the paper's
    OUT/table.json            the same as data

A row whose summary.json exists is skipped, a row whose run is unfinished is resumed: a rerun after an
interruption only does what is missing.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ccq.errors import CCQError
from ccq.evaluation.table import Column, Method, Numbers, categories_of, label_column, mean_column, pair_columns, render
from ccq.utils import fs

TABLES = ("table1", "table2")
SIZES = ("official", "demo", "tiny")
RECORD_FILE = "reproduce.json"
_NUMBERS = Numbers(digits=2, dash="-")


@dataclass(frozen=True)
class Row:
    key: str
    """Folder name and table key: a Table 1 preset ("tal") or a Table 2 ablation ("no-cat")."""
    label: str
    """The paper's name of the row."""
    model: str
    """The model preset at the chosen size."""
    paper: tuple[float, float] | None
    """The paper's (Dice %, HD95) average, where it reports one."""


def table_rows(table: str, size: str) -> list[Row]:
    """The rows of ``table`` in the paper's order (`ccq.evaluation.paper`), as presets of ``size``."""
    from ccq.evaluation.paper import TABLE1, TABLE2

    if table not in TABLES:
        raise CCQError(f"table {table!r}: expected one of {', '.join(TABLES)}")
    if size not in SIZES:
        raise CCQError(f"--size {size!r}: expected one of {', '.join(SIZES)}")
    if table == "table1":

        def table1_model(key: str) -> str:
            if key == "official":  # CCQ itself: "official", "demo" or "tiny"
                return size
            return key if size == "official" else f"{size}-{key}"

        return [Row(r.key, r.label, table1_model(r.key), r.average) for r in TABLE1]
    return [Row(r.key, r.label, size if r.key == "full" else f"{size}+{r.key}", r.average) for r in TABLE2]


def select_rows(rows: list[Row], wanted: Sequence[str] | None) -> list[Row]:
    if not wanted:
        return rows
    import difflib

    known = {r.key: r for r in rows}
    for key in wanted:
        if key not in known:
            close = difflib.get_close_matches(key, list(known), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise CCQError(f"--rows {key!r}: not a row of this table{hint}; expected some of {', '.join(known)}")
    return [r for r in rows if r.key in set(wanted)]


def _check_record(out: Path, record: dict[str, Any]) -> None:
    """A folder may only be continued with the same table, size, budget and data."""
    path = out / RECORD_FILE
    if path.is_file():
        previous = json.loads(path.read_text(encoding="utf-8"))
        changed = {k: (previous.get(k), v) for k, v in record.items() if previous.get(k) != v and k != "rows"}
        if changed:
            detail = ", ".join(f"{k} {a!r} -> {b!r}" for k, (a, b) in changed.items())
            raise CCQError(f"--out {out}: holds a reproduction with other settings ({detail}); use a new folder")
    elif out.exists() and any(out.iterdir()):
        raise CCQError(f"--out {out}: the folder is not empty and holds no {RECORD_FILE}; choose a new folder")
    out.mkdir(parents=True, exist_ok=True)
    fs.write_json_atomic(path, record)


def _train_config(train_preset: str, model: str, budget: int | None, device: str) -> Any:
    from ccq.training.config import get_train_preset

    config = get_train_preset(train_preset)
    changes: dict[str, Any] = {"model": model, "model_overrides": {}, "device": device}
    if budget is not None:
        changes["iterations"] = budget
        changes["val_every"] = min(config.val_every, budget) if config.val_every else 0
        changes["save_every"] = min(config.save_every, budget)
    return config.replace(**changes)


def _run_finished(run: Path, iterations: int) -> bool:
    meta = run / "last" / "checkpoint.json"
    return meta.is_file() and json.loads(meta.read_text(encoding="utf-8"))["extra"].get("iteration") == iterations


def train_row(config: Any, data: Path, run: Path, gpus: int, progress: bool, echo: Callable[[str], None]) -> None:
    """Train (or resume) one row: in this process, or under torchrun for several GPUs."""
    if _run_finished(run, config.iterations):
        return
    resume = (run / "last" / "checkpoint.json").is_file()
    if gpus > 1:
        run.parent.mkdir(parents=True, exist_ok=True)
        settings = run.parent / "train-config.json"
        fs.write_json_atomic(settings, config.to_dict())
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(gpus),
                   "-m", "ccq", "train", "--out", str(run), "--no-progress"]  # fmt: skip
        command += ["--resume"] if resume else ["--config", str(settings), "--data", str(data)]
        echo(" ".join(command))
        if subprocess.run(command).returncode != 0:
            raise CCQError(f"training {run} under torchrun failed (its messages are above)")
        return
    from ccq.training.trainer import Trainer

    Trainer(config, data, run, progress=progress, echo=echo, resume=resume).fit()


def evaluate_row(model_dir: Path, data: Path, out: Path, *, tta: bool, device: str) -> dict[str, Any]:
    """Each prepared test case for its own task, scored under the "mots" definition; writes OUT/summary.json."""
    from ccq.checkpoint import load_checkpoint
    from ccq.data.cache import PreparedDataset
    from ccq.evaluation.prepared import prepared_summary, score_prepared_cases
    from ccq.evaluation.report import write_reports
    from ccq.utils.device import resolve_device

    dataset = PreparedDataset(data)
    test = dataset.cases(split="test")
    if not test:
        raise CCQError(f"{data}: the prepared folder has no test cases; prepare a collection with a test split")
    loaded = load_checkpoint(model_dir, device=resolve_device(device))
    results = score_prepared_cases(loaded.model, dataset, test, definition="mots",
                                   patch_size=loaded.model_config.patch_size, tta=tta)  # fmt: skip
    summary = prepared_summary(results, dataset, definition="mots",
                               sources={"model": str(model_dir), "gt": str(data), "ground_truth": "prepared",
                                        "cases": "test", "tta": tta})  # fmt: skip
    write_reports(summary, out, overwrite=True)
    return summary


def table_markdown(table: str, rows: list[Row], summaries: dict[str, dict[str, Any]], note: str) -> str:
    """The paper's layout: a row per method, Dice (%) and HD95 per category, the averages, then the paper's."""
    numbers = _NUMBERS
    methods = [Method.of(row.label, summaries.get(row.key)) for row in rows]
    paper = {row.label: row.paper for row in rows}
    # Columns in the order the summaries were added (the rows run so far), as the table has always had them.
    categories = categories_of(Method.of("", summary) for summary in summaries.values())

    def paper_column(header: str, index: int) -> Column[Method]:
        return Column(header, lambda m: numbers.plain(None if paper[m.label] is None else paper[m.label][index]))

    title = "Table 1 (methods)" if table == "table1" else "Table 2 (ablations)"
    columns = [label_column("Method"), *pair_columns(categories, "{category} Dice / HD", numbers),
               mean_column("Avg Dice", "all", "dice", numbers), mean_column("Avg HD", "all", "hd95", numbers),
               paper_column("Paper Dice", 0), paper_column("Paper HD", 1)]  # fmt: skip
    return "\n".join([f"### {title}", "", note, "", *render(methods, columns, rule="compact")]) + "\n"


def reproduce(
    table: str,
    data: str | Path,
    out: str | Path,
    *,
    size: str = "official",
    train_preset: str = "official",
    budget: int | None = None,
    gpus: int = 1,
    rows: Sequence[str] | None = None,
    tta: bool = False,
    device: str = "auto",
    progress: bool = True,
    echo: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Train, evaluate and tabulate every (selected) row; returns {"rows": {key: summary}, "table": markdown}."""
    from ccq.data.cache import PreparedDataset

    data, out = Path(data).expanduser(), Path(out).expanduser()
    chosen = select_rows(table_rows(table, size), rows)
    if gpus < 1:
        raise CCQError(f"--gpus {gpus}: expected 1 or more")
    dataset = PreparedDataset(data)  # fails now on a folder that is not prepared
    _check_record(out, {"table": table, "size": size, "train_preset": train_preset, "budget": budget,
                        "data": str(data.resolve()), "tta": tta, "rows": [r.key for r in chosen]})  # fmt: skip
    summaries: dict[str, dict[str, Any]] = {}
    for i, row in enumerate(chosen, 1):
        row_dir = out / row.key
        summary_path = row_dir / "summary.json"
        if summary_path.is_file():
            echo(f"[{i}/{len(chosen)}] {row.label}: done earlier ({summary_path})")
            summaries[row.key] = json.loads(summary_path.read_text(encoding="utf-8"))
            continue
        config = _train_config(train_preset, row.model, budget, device)
        echo(f"[{i}/{len(chosen)}] {row.label}: model {row.model}, {config.iterations} iterations")
        train_row(config, data, row_dir / "run", gpus, progress, echo)
        summaries[row.key] = evaluate_row(row_dir / "run" / "last", data, row_dir, tta=tta, device=device)
        mean = summaries[row.key]["mean"]["all"]
        echo(f"    Dice {_NUMBERS.percent(mean['dice'])} %, HD95 {_NUMBERS.plain(mean['hd95'])} (test cases)")
    n_test = len(dataset.cases(split="test"))
    note = (f"Ours: {size} size, `{train_preset}` training preset, {budget or 'preset'} iterations per row, "
            f"{n_test} test cases of {data.name}, mots definition (Dice %, HD95 in voxels of the working grid). "
            "Paper: averages over the 11 MOTS categories"
            + (" on the authors' own 80/20 split." if table == "table2" else " on the MOTS test split."))  # fmt: skip
    markdown = table_markdown(table, chosen, summaries, note)
    fs.write_text_atomic(out / "table.md", markdown)
    fs.write_json_atomic(out / "table.json", {
        "table": table, "note": note,
        "rows": [{"key": r.key, "label": r.label, "model": r.model, "paper": r.paper,
                  "ours": summaries[r.key]["mean"] if r.key in summaries else None} for r in chosen],
    })  # fmt: skip
    return {"rows": summaries, "table": markdown}
