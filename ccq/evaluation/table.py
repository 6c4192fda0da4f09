"""Markdown tables in the layout of the paper's Table 1: a row per method, Dice (%) and HD95 per category, means.

Every such table ccq writes is drawn by `render`: ``ccq evaluate``'s ``table.md`` (`ccq.evaluation.report`),
``ccq reproduce``'s ``OUT/table.md`` (`ccq.reproduce`) and the demo's ``report.md`` (`ccq.demo_report`). A table
is rows and `Column` s (a header and a function from a row to its cell); the builders below make the columns of
a `Method` row from evaluation summaries, and `Numbers` writes the values (decimals, the mark of a missing one).
Each caller keeps its own layout: those files are read by people and scripts.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar

Scores = Mapping[str, Any]
"""``{"dice": fraction, "hd95": value}``, as a summary's categories and means hold them (None or NaN: undefined)."""

T = TypeVar("T")
METRICS = ("dice", "hd95")


@dataclass(frozen=True)
class Numbers:
    """How cells write values: ``digits`` decimals; ``dash`` where a value is missing or undefined."""

    digits: int = 2
    dash: str = "–"

    def percent(self, value: Any) -> str:
        """A Dice fraction in percent."""
        return self.dash if _undefined(value) else f"{100.0 * float(value):.{self.digits}f}"

    def plain(self, value: Any) -> str:
        return self.dash if _undefined(value) else f"{float(value):.{self.digits}f}"

    def metric(self, metric: str, value: Any) -> str:
        """Dice in percent, anything else as it is."""
        return self.percent(value) if metric == "dice" else self.plain(value)

    def pair(self, scores: Scores | None) -> str:
        """The cell "Dice / HD" of one category; one dash when the method has no such category."""
        if scores is None:
            return self.dash
        return f"{self.percent(scores.get('dice'))} / {self.plain(scores.get('hd95'))}"


def _undefined(value: Any) -> bool:
    return value is None or not math.isfinite(float(value))


@dataclass(frozen=True)
class Column(Generic[T]):
    header: str
    cell: Callable[[T], str]


def _line(cells: Iterable[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def render(rows: Iterable[T], columns: Sequence[Column[T]], *, rule: Literal["spaced", "compact"]) -> list[str]:
    """The lines of a markdown table: header, rule (``| --- |`` spaced or ``|---|`` compact), one line a row."""
    lines = [_line(c.header for c in columns)]
    lines.append(_line(["---"] * len(columns)) if rule == "spaced" else "|" + "---|" * len(columns))
    lines += [_line(c.cell(row) for c in columns) for row in rows]
    return lines


# ------------------------------------------------------------------------------------------------ Table 1 rows


@dataclass(frozen=True)
class Method:
    """One row of a Table 1-style table: a method's scores per category and its means per group."""

    label: str
    categories: Mapping[str, Scores] = field(default_factory=dict)
    """``"task/organ"`` -> scores (a summary's ``categories``)."""
    mean: Mapping[str, Scores] = field(default_factory=dict)
    """``"organ"``, ``"tumor"``, ``"all"`` -> scores (a summary's ``mean``)."""

    @classmethod
    def of(cls, label: str, summary: Mapping[str, Any] | None) -> Method:
        """From an evaluation summary (`ccq.evaluation.report`) or its ``"paper"`` part; None: no scores yet."""
        summary = summary or {}
        return cls(label, summary.get("categories", {}), summary.get("mean", {}))

    def score(self, category: str, metric: str) -> Any:
        return self.categories.get(category, {}).get(metric)

    def mean_score(self, group: str, metric: str) -> Any:
        return self.mean.get(group, {}).get(metric)


def categories_of(methods: Iterable[Method]) -> list[str]:
    """Every category any method has, in the order they first appear."""
    return list(dict.fromkeys(c for m in methods for c in m.categories))


def label_column(header: str) -> Column[Method]:
    return Column(header, lambda m: m.label)


def mean_column(header: str, group: str, metric: str, numbers: Numbers) -> Column[Method]:
    return Column(header, lambda m: numbers.metric(metric, m.mean_score(group, metric)))


def pair_columns(categories: Iterable[str], header: str, numbers: Numbers) -> list[Column[Method]]:
    """One "Dice / HD" column per category; ``header`` is formatted with ``category``."""

    def column(category: str) -> Column[Method]:
        return Column(header.format(category=category), lambda m: numbers.pair(m.categories.get(category)))

    return [column(c) for c in categories]


def task_columns(categories: Iterable[str], numbers: Numbers) -> list[Column[Method]]:
    """Table 1's grouping: per task, Dice of its labeled channels (organ, tumor), then their HD."""
    categories = list(categories)

    def column(task: str, metric: str, channel: str) -> Column[Method]:
        header = f"{task.replace('_', ' ')} {'Dice' if metric == 'dice' else 'HD'} {channel}"
        return Column(header, lambda m: numbers.metric(metric, m.score(f"{task}/{channel}", metric)))

    columns = []
    for task in dict.fromkeys(c.split("/")[0] for c in categories):
        channels = [c for c in ("organ", "tumor") if f"{task}/{c}" in categories]
        columns += [column(task, metric, channel) for metric in METRICS for channel in channels]
    return columns
