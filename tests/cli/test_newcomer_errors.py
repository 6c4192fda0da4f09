"""The mistakes a newcomer makes first, through the real entry point: each is one line on stderr that says what
is wrong and how to fix it, exit code 2, no traceback, nothing written."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from ccq.cli import main
from tests.tiny import write_phantom_world


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> Path:
    """A phantom collection (liver, colon, spleen) and an untrained tiny checkpoint for it."""
    return write_phantom_world(tmp_path_factory.mktemp("newcomer"))


def _run(args: list[str], monkeypatch, capsys) -> str:
    monkeypatch.setattr(sys, "argv", ["ccq", *args])
    with pytest.raises(SystemExit) as exit_info:
        main()
    err = capsys.readouterr().err
    assert exit_info.value.code == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("ccq: error: ") and "Traceback" not in err, err
    return lines[0]


CASES = [
    # (arguments, words the message must hold)
    (["predict", "-i", "{root}/no-such.nii.gz", "-o", "{root}/out", "--model", "{root}/model"],
     ["no-such.nii.gz", "no such file", "expected a NIfTI file"]),
    (["predict", "-i", "{root}/raw/Task01_Liver/imagesTr", "-o", "{root}/out", "--model", "{root}/model",
      "--tasks", "livr"], ["'livr'", "did you mean 'liver'"]),
    (["predict", "-i", "{root}/raw/Task01_Liver/imagesTr", "-o", "{root}/out", "--model", "{root}/model",
      "--tasks", "pancreas"], ["'pancreas'", "liver, colon, spleen"]),
    (["predict", "-i", "{root}/raw/Task01_Liver/imagesTr", "-o", "{root}/out", "--model", "{root}/raw"],
     ["expected a ccq checkpoint directory"]),
    (["train", "--preset", "demo", "--out", "{root}/run"], ["--data", "ccq prepare"]),
    (["train", "--preset", "offical", "--data", "{root}/raw", "--out", "{root}/run"], ["did you mean 'official'"]),
    (["train", "--preset", "demo", "--data", "{root}/raw", "--out", "{root}/run"], ["run `ccq prepare`"]),
    (["evaluate", "--task", "livr", "--pred", "{root}/raw", "--gt", "{root}/raw", "--collection",
      "{root}/raw/collection.yaml"], ["did you mean 'liver'"]),
    (["summary", "--preset", "tinyy"], ["did you mean 'tiny'"]),
    (["prepare", "--collection", "{root}/collection.yml", "--out", "{root}/prepared"], ["collection.yml"]),
]  # fmt: skip


@pytest.mark.parametrize("args,expected", CASES, ids=[" ".join(c[0][:1] + c[0][-2:]) for c in CASES])
def test_newcomer_mistake(setup: Path, args: list[str], expected: list[str], monkeypatch, capsys) -> None:
    before = sorted(p.relative_to(setup) for p in setup.rglob("*"))
    line = _run([a.format(root=setup) for a in args], monkeypatch, capsys)
    for words in expected:
        assert words in line, line
    assert sorted(p.relative_to(setup) for p in setup.rglob("*")) == before  # nothing written
