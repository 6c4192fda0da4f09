"""Export: ONNX and TorchScript graphs reproduce PyTorch, the JSON describes them, and refusals write nothing."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from ccq.errors import CCQError
from ccq.export import export_model, spec_path
from ccq.export import exporter as exporter_module

from .conftest import PRE

TOL = 1e-4
MOTS_TASKS = ["liver", "kidney", "hepatic_vessel", "pancreas", "colon", "lung", "spleen"]


def run_onnx(path: Path, x: torch.Tensor) -> np.ndarray:
    ort = pytest.importorskip("onnxruntime")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["image"]
    assert [o.name for o in session.get_outputs()] == ["logits"]
    return session.run(None, {"image": x.numpy()})[0]


@pytest.fixture(scope="module")
def onnx_ready():
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")


def test_onnx_one_task_matches_pytorch_and_describes_itself(
    onnx_ready, tiny_checkpoint, reference_model, probe, tmp_path
) -> None:
    out = tmp_path / "deploy" / "liver.onnx"
    result = export_model(tiny_checkpoint, out, fmt="onnx", task="liver")
    assert result.model_file == out and result.spec_file == tmp_path / "deploy" / "liver.onnx.json"
    assert result.output_shape == (1, 2, 16, 32, 32) and result.max_abs_diff < TOL
    with torch.no_grad():
        expected = reference_model(probe, 0).numpy()
    got = run_onnx(out, probe)
    assert got.shape == (1, 2, 16, 32, 32)
    assert np.abs(got - expected).max() < TOL

    spec = json.loads(result.spec_file.read_text())
    assert spec["model_file"] == "liver.onnx" and spec["model_format"] == "onnx"
    assert spec["input"]["shape"] == [1, 1, 16, 32, 32] and spec["output"]["shape"] == [1, 2, 16, 32, 32]
    pre = spec["preprocessing"]
    assert pre["spacing_mm"] == [3.0, 2.5, 2.5] and pre["hu_window"] == [-200.0, 300.0] and pre["hu_scale"] == 250.0
    assert pre["pad_value"] == pytest.approx(-0.8)
    assert spec["inference"]["patch_size"] == [16, 32, 32] and spec["inference"]["threshold"] == 0.5
    [task] = spec["tasks"]
    assert task["name"] == "liver" and task["id"] == 0 and "index" not in task
    assert task["channels"]["organ"] == {"labeled": True, "name": "liver", "output_value": 1, "source_values": [1, 2]}
    assert task["channels"]["tumor"]["output_value"] == 2 and task["labels"]["2"] == "liver tumor"
    assert spec["check"]["max_abs_diff"] < TOL
    assert sorted(p.name for p in out.parent.iterdir()) == ["liver.onnx", "liver.onnx.json"]  # no temporaries


def test_onnx_all_tasks_matches_forward_all_tasks(onnx_ready, tiny_checkpoint, reference_model, probe, tmp_path):
    out = tmp_path / "all.onnx"
    result = export_model(tiny_checkpoint, out, task="all")  # format from the suffix
    assert result.model_format == "onnx" and result.tasks == tuple(MOTS_TASKS)
    with torch.no_grad():
        expected = reference_model.forward_all_tasks(probe, list(range(7))).numpy()
    got = run_onnx(out, probe)
    assert got.shape == (1, 7, 2, 16, 32, 32)
    assert np.abs(got - expected).max() < TOL
    spec = json.loads(spec_path(out).read_text())
    assert [(t["index"], t["name"]) for t in spec["tasks"]] == list(enumerate(MOTS_TASKS))
    colon = spec["tasks"][4]["channels"]
    assert colon["organ"]["labeled"] is False and colon["tumor"]["output_value"] == 1


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")
def test_torchscript_all_tasks_matches_pytorch(tiny_checkpoint, reference_model, probe, tmp_path):
    out = tmp_path / "all.ts"
    result = export_model(tiny_checkpoint, out, task="all")
    assert result.model_format == "torchscript"
    loaded = torch.jit.load(str(out))
    with torch.no_grad():
        got = loaded(probe)
        expected = reference_model.forward_all_tasks(probe, list(range(7)))
    assert tuple(got.shape) == (1, 7, 2, 16, 32, 32)
    assert (got - expected).abs().max().item() < TOL
    assert json.loads(spec_path(out).read_text())["model_format"] == "torchscript"


def test_existing_outputs_are_kept_without_overwrite(tiny_checkpoint, tmp_path):
    out = tmp_path / "m.pt"
    out.write_bytes(b"mine")
    with pytest.raises(CCQError, match=r"m\.pt already exists; pass --overwrite"):
        export_model(tiny_checkpoint, out, task="liver")
    assert out.read_bytes() == b"mine"
    out.unlink()
    spec_path(out).write_text("{}")  # the description alone is protected too
    with pytest.raises(CCQError, match=r"m\.pt\.json already exists"):
        export_model(tiny_checkpoint, out, task="liver")
    assert not out.exists() and spec_path(out).read_text() == "{}"
    (tmp_path / "d.pt").mkdir()
    with pytest.raises(CCQError, match="is a directory"):
        export_model(tiny_checkpoint, tmp_path / "d.pt", task="liver", overwrite=True)


def test_refusals_name_the_value_and_what_was_expected(tiny_checkpoint, tmp_path):
    out = tmp_path / "x.onnx"
    with pytest.raises(CCQError, match=r"task 'livr' \(did you mean 'liver'\?\).*expected one of them or 'all'"):
        export_model(tiny_checkpoint, out, fmt="torchscript", task="livr")
    with pytest.raises(CCQError, match=r"export format 'onx' \(did you mean 'onnx'\?\)"):
        export_model(tiny_checkpoint, out, fmt="onx")
    with pytest.raises(CCQError, match=r"cannot tell the export format from the suffix '\.bin'"):
        export_model(tiny_checkpoint, tmp_path / "x.bin")
    pth = tmp_path / "weights.pth"
    pth.write_bytes(pickle.dumps({"a": 1}, protocol=2))
    with pytest.raises(CCQError, match="is a PyTorch pickle file, not a ccq checkpoint"):
        export_model(pth, out, fmt="torchscript")
    with pytest.raises(CCQError, match="no such file or directory; expected a ccq checkpoint"):
        export_model(tmp_path / "missing", out, fmt="torchscript")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CCQError, match="has no checkpoint.json"):
        export_model(tmp_path / "empty", out, fmt="torchscript")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "weights.pth"]


def test_an_export_that_does_not_reproduce_pytorch_writes_nothing(tiny_checkpoint, tmp_path, monkeypatch):
    def broken_export(wrapper, window, path):
        path.write_bytes(b"not a model")
        return "broken exporter"

    def wrong(path):
        return (lambda window: np.zeros((1, 2, *PRE.patch_size), dtype=np.float32) + 5.0), "broken runtime"

    def wrong_shape(path):
        return (lambda window: np.zeros((1, 7, 2, *PRE.patch_size), dtype=np.float32)), "broken runtime"

    monkeypatch.setattr(exporter_module, "_export_torchscript", broken_export)
    monkeypatch.setattr(exporter_module, "_torchscript_runner", wrong)
    with pytest.raises(CCQError, match=r"differs from PyTorch by .*nothing was written"):
        export_model(tiny_checkpoint, tmp_path / "m.pt", task="liver")
    assert list(tmp_path.iterdir()) == []
    monkeypatch.setattr(exporter_module, "_torchscript_runner", wrong_shape)
    with pytest.raises(
        CCQError, match=r"gives an output of shape \[1, 7, 2, 16, 32, 32\], expected \[1, 2, 16.*nothing"
    ):
        export_model(tiny_checkpoint, tmp_path / "m.pt", task="liver")
    assert list(tmp_path.iterdir()) == []
