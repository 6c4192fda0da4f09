"""The one Table 1 renderer: cells and columns, and every table ccq writes, byte for byte as before it existed."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from ccq.evaluation.table import Method, Numbers, categories_of, mean_column, pair_columns, render, task_columns
from tests.evaluation.tables import GOLDEN, renderings


def test_numbers_write_percent_plain_and_a_dash() -> None:
    two, one = Numbers(), Numbers(digits=1, dash="-")
    assert two.percent(0.9512) == "95.12" and one.percent(0.9512) == "95.1" and two.plain(3.0) == "3.00"
    assert [two.percent(v) for v in (None, math.nan, math.inf)] == ["–"] * 3
    assert one.pair({"dice": 0.5, "hd95": math.nan}) == "50.0 / -" and one.pair(None) == "-"
    assert two.metric("dice", 0.25) == "25.00" and two.metric("hd95", 0.25) == "0.25"


def test_columns_of_methods() -> None:
    ours = Method("ours", {"liver/organ": {"dice": 0.9, "hd95": 2.0}, "colon/tumor": {"dice": 0.5, "hd95": 9.0}},
                  {"all": {"dice": 0.7, "hd95": 5.5}})  # fmt: skip
    empty = Method.of("later", None)
    assert categories_of([empty, ours]) == ["liver/organ", "colon/tumor"]
    numbers = Numbers()
    columns = [mean_column("Avg", "all", "dice", numbers), *pair_columns(["colon/tumor"], "{category} D/H", numbers)]
    assert render([ours, empty], columns, rule="compact") == [
        "| Avg | colon/tumor D/H |", "|---|---|", "| 70.00 | 50.00 / 9.00 |", "| – | – |"]  # fmt: skip
    headers = [c.header for c in task_columns(categories_of([ours]), numbers)]
    assert headers == ["liver Dice organ", "liver HD organ", "colon Dice tumor", "colon HD tumor"]
    assert render([], [mean_column("a", "all", "dice", numbers)], rule="spaced") == ["| a |", "| --- |"]


@pytest.mark.parametrize("name", sorted(p.name for p in GOLDEN.iterdir()))
def test_every_table_renders_as_before(name: str, tmp_path: Path) -> None:
    assert renderings(tmp_path)[name] == (GOLDEN / name).read_text(encoding="utf-8")
