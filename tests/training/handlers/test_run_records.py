"""Run records: the run-folder check and the source commit recorded in config.json."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ccq.errors import CCQError
from ccq.training.handlers.run_records import check_run_dir, git_commit

REPO = Path(__file__).resolve().parents[3]


def test_check_run_dir(tmp_path: Path) -> None:
    check_run_dir(tmp_path / "new")
    check_run_dir(tmp_path)  # empty
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(CCQError, match="not empty"):
        check_run_dir(tmp_path)
    with pytest.raises(CCQError, match="exists and is not a folder"):
        check_run_dir(tmp_path / "notes.txt")


@pytest.mark.skipif(not (REPO / ".git").exists(), reason="the tests run outside a git checkout")
def test_git_commit_is_this_checkout() -> None:
    commit = git_commit()
    assert commit is not None and re.fullmatch("[0-9a-f]{40}", commit), commit
