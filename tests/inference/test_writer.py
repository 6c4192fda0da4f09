"""Output paths of `ccq.inference.writer` stay inside the output folder, whatever the case and task names."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ccq.errors import CCQError
from ccq.inference.writer import CaseWriter, output_paths


@pytest.mark.parametrize("case", ["..", ".", "a/b", ".hidden"])
def test_a_case_name_cannot_leave_the_output_folder(tmp_path: Path, case: str) -> None:
    out = tmp_path / "out"
    with pytest.raises(CCQError, match="case name"):
        output_paths(out, case, ["liver"])
    with pytest.raises(CCQError, match="case name"):
        CaseWriter(out, case, affine=np.eye(4))
    assert not out.exists() and sorted(tmp_path.iterdir()) == []


def test_a_task_name_cannot_leave_the_case_folder(tmp_path: Path) -> None:
    with pytest.raises(CCQError, match=r"task name '\.\./x'"):
        output_paths(tmp_path, "case", ["../x"])
    assert output_paths(tmp_path, "case", ["liver"]) == [tmp_path / "case" / "liver.nii.gz",
                                                         tmp_path / "case" / "labels.json"]  # fmt: skip


def test_a_link_leading_out_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "case").symlink_to(tmp_path)
    with pytest.raises(CCQError, match="is a symbolic link to"):
        output_paths(out, "case", ["liver"])
