"""The deployment JSON says each task's working grid; a one-grid model's preprocessing reads as before."""

from __future__ import annotations

from ccq.data.collection import load_collection
from ccq.data.grid import Grid
from ccq.data.preprocessing import PreprocessingConfig, official_data_path
from ccq.export.spec import deployment_spec

MOTS = load_collection("mots")


def spec(preprocessing: PreprocessingConfig) -> dict:
    return deployment_spec(
        model_file="m.onnx", model_format="onnx", exporter="test", tasks=list(MOTS.tasks), all_tasks=True,
        preprocessing=preprocessing, collection=MOTS, model_config={}, source="ckpt", versions={},
    )  # fmt: skip


def test_each_task_says_its_grid() -> None:
    data = spec(official_data_path(MOTS.tasks))
    by_name = {t["name"]: t for t in data["tasks"]}
    kidney, liver = by_name["kidney"]["grid"], by_name["liver"]["grid"]
    assert kidney["spacing_mm"] == [0.76, 0.76, 3.0] and kidney["axes"] == "IPL"
    assert kidney["directions"] == {"D": "superior -> inferior", "H": "anterior -> posterior", "W": "right -> left"}
    assert liver["spacing_mm"] == [1.5, 0.8, 0.8] and liver["axes"] == "SLP"
    assert liver["directions"]["H"] == "right -> left" and liver["directions"]["W"] == "anterior -> posterior"
    assert data["preprocessing"]["orientation"].startswith("per task (tasks[].grid)")


def test_one_canonical_grid_keeps_the_preprocessing_section() -> None:
    data = spec(PreprocessingConfig())
    pre = data["preprocessing"]
    assert pre["spacing_mm"] == [1.5, 0.8, 0.8] and pre["spacing_order"] == "z, y, x"
    assert pre["orientation"].startswith("reorient the CT") and set(pre["axes"]) == {"z", "y", "x"}
    assert all(t["grid"] == spec(PreprocessingConfig())["tasks"][0]["grid"] for t in data["tasks"])
    assert Grid(spacing=tuple(data["tasks"][0]["grid"]["spacing_mm"])).axes == data["tasks"][0]["grid"]["axes"]
