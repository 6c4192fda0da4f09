"""`ccq reproduce`: every row of both tables trains, predicts and evaluates at tiny size; reruns skip what is done."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ccq.errors import CCQError
from ccq.reproduce import SIZES, TABLES, reproduce, table_rows
from tests.evaluation.phantoms import prepared_phantoms, torch_threads


@pytest.fixture
def one_thread():
    yield from torch_threads(1)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    return prepared_phantoms(tmp_path_factory.mktemp("repro"))


def test_rows_follow_the_paper() -> None:
    assert [r.label for r in table_rows("table1", "official")] == [
        "Multi-Nets", "TAL", "Multi-Head", "DoDNet", "Cond-Enc", "Cond-Dec", "CCQ"]  # fmt: skip
    assert {r.key: r.model for r in table_rows("table1", "tiny")}["tal"] == "tiny-tal"
    assert {r.key: r.model for r in table_rows("table2", "demo")}["no-cat"] == "demo+no-cat"
    assert table_rows("table1", "official")[-1].paper == (76.41, 16.80)
    with pytest.raises(CCQError, match="table3"):
        table_rows("table3", "tiny")


@pytest.mark.parametrize("size", SIZES)
def test_every_paper_row_is_a_model_preset(size: str) -> None:
    from ccq.models import get_preset

    for table in TABLES:
        rows = table_rows(table, size)
        assert len({r.key for r in rows}) == len({r.label for r in rows}) == len(rows)
        for row in rows:
            get_preset(row.model)  # CCQError for a name the presets do not know
    assert table_rows("table2", size)[0].paper == (72.38, 27.69)


@pytest.mark.parametrize("table", ["table1", "table2"])
def test_every_row_trains_predicts_and_evaluates(prepared: Path, tmp_path: Path, table: str, one_thread) -> None:
    out = tmp_path / table
    messages: list[str] = []
    result = reproduce(table, prepared, out, size="tiny", train_preset="demo", budget=1, progress=False,
                       device="cpu", echo=messages.append)  # fmt: skip
    rows = table_rows(table, "tiny")
    assert set(result["rows"]) == {r.key for r in rows}
    for row in rows:
        summary = json.loads((out / row.key / "summary.json").read_text())
        assert summary["definition"] == "mots" and summary["n_cases"] == 3
        assert set(summary["categories"]) == {"liver/organ", "liver/tumor", "colon/tumor", "spleen/organ"}
        assert (out / row.key / "run" / "last" / "model.safetensors").is_file()
    table_md = (out / "table.md").read_text()
    assert all(f"| {r.label} |" in table_md for r in rows)
    data = json.loads((out / "table.json").read_text())
    assert [r["key"] for r in data["rows"]] == [r.key for r in rows]

    again: list[str] = []
    reproduce(table, prepared, out, size="tiny", train_preset="demo", budget=1, progress=False, device="cpu",
              echo=again.append)  # fmt: skip
    assert sum("done earlier" in m for m in again) == len(rows)
    with pytest.raises(CCQError, match="other settings"):
        reproduce(table, prepared, out, size="tiny", train_preset="demo", budget=2, progress=False, device="cpu")
