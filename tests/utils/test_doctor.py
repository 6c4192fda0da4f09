"""`ccq doctor`: a report with every section, in text and JSON, that never fails on this machine."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from ccq.utils.doctor import format_report, report


def test_report_sections(tmp_path: Path) -> None:
    data = report(tmp_path / "not" / "yet")  # a path still to be created: measured at its existing parent
    assert data["disk"]["path"] == str(tmp_path.resolve()) and data["disk"]["free_gib"] >= 0
    assert data["packages"]["torch"] and data["packages"]["nibabel"]
    assert data["devices"][0]["device"] == "cpu" and data["threads"]["torch_threads"] >= 1
    names = {f["name"]: f for f in data["features"]}
    assert "DICOM input" in names and names["DICOM input"]["ready"]
    text = format_report(data)
    assert "features:" in text and "DICOM input" in text and "\n  [" in text


def test_cli_json() -> None:
    done = subprocess.run([sys.executable, "-m", "ccq", "doctor", "--json"], capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout.strip().splitlines()[-1])
    assert {"ccq", "python", "packages", "devices", "threads", "memory_gib", "disk", "features"} <= set(data)
