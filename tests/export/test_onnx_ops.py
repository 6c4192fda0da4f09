"""GroupNorm in exported ONNX: ONNX Runtime matches PyTorch on CT-sized groups, and torch's default comes back."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from ccq.export.onnx_ops import accurate_group_norm

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")
# GroupNorm's own shape check is traced as a constant (TracerWarning); the legacy exporter is deprecated.
pytestmark = [
    pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
]


def export_and_run(module: torch.nn.Module, x: torch.Tensor, path: Path) -> np.ndarray:
    torch.onnx.export(module, (x,), str(path), dynamo=False, opset_version=17, input_names=["x"])
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x.numpy()})[0]


@pytest.mark.parametrize("shape", [(1, 4, 64, 96, 96), (2, 6, 50)])
def test_group_norm_matches_pytorch_on_large_groups(tmp_path, shape):
    torch.manual_seed(0)
    gn = torch.nn.GroupNorm(2, shape[1]).eval()
    torch.nn.init.normal_(gn.weight)
    torch.nn.init.normal_(gn.bias)
    x = torch.randn(shape) * 0.5 + 3.0  # an offset mean, as CT features have: no E[x^2] - E[x]^2 shortcut survives
    with torch.no_grad():
        expected = gn.double()(x.double()).numpy()  # float64 truth
        gn.float()
    with accurate_group_norm(17):
        got = export_and_run(gn, x, tmp_path / "gn.onnx")
    # 1.2 million values per group: a plain float32 sum is off by ~1e-4 here; PyTorch is within ~1e-6.
    assert np.abs(got - expected).max() < 1e-5
    ops = [n.op_type for n in onnx.load(str(tmp_path / "gn.onnx")).graph.node]
    assert "InstanceNormalization" not in ops and "ReduceMean" in ops


def test_the_default_translation_is_restored_afterwards(tmp_path):
    gn = torch.nn.GroupNorm(2, 4).eval()
    x = torch.randn(1, 4, 3, 4, 5)
    with accurate_group_norm(17):
        pass
    torch.onnx.export(gn, (x,), str(tmp_path / "plain.onnx"), dynamo=False, opset_version=17)
    assert "InstanceNormalization" in [n.op_type for n in onnx.load(str(tmp_path / "plain.onnx")).graph.node]
