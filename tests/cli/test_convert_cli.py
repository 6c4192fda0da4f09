"""`ccq convert-official`: official names in, a strict ccq checkpoint out, nothing written on any error."""

from __future__ import annotations

import pathlib
import pickle
import sys

import pytest
import torch
from typer.testing import CliRunner

from ccq.checkpoint import load_checkpoint, read_checkpoint_meta
from ccq.checkpoint.official import fitting_patches
from ccq.cli import app
from ccq.data.collection import load_collection
from ccq.errors import CCQError
from ccq.models import build_model, get_preset
from ccq.models.official import to_official_state_dict

PATCH = ("16", "32", "32")


@pytest.fixture(scope="module")
def mots():
    return load_collection("mots")


def tiny_model(mots, preset: str = "tiny", seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_model(get_preset(preset, patch_size=tuple(map(int, PATCH)), num_tasks=mots.num_tasks))


def official_file(
    tmp_path: pathlib.Path,
    model: torch.nn.Module,
    *,
    prefix: str = "module.",
    old_name=False,
    container: str | None = None,
    name: str = "official.pth",
) -> pathlib.Path:
    """Write `model`'s weights under the official names, as the authors' DDP training saved them."""
    state = {}
    for key, value in to_official_state_dict(model.state_dict(), model.config).items():
        if old_name and key.startswith("CQTr."):
            key = "CCQ." + key[len("CQTr.") :]
        state[prefix + key] = value.clone()
    path = tmp_path / name
    torch.save({container: state} if container else state, path)
    return path


def convert(*args: str | pathlib.Path, preset: str = "tiny"):
    argv = ["convert-official", *map(str, args), "--preset", preset, "--patch", *PATCH]
    return CliRunner().invoke(app, argv)


def assert_refused(result, *needles: str) -> str:
    assert result.exit_code != 0
    assert isinstance(result.exception, CCQError), result.exception
    message = str(result.exception)
    assert "\n" not in message, message
    for needle in needles:
        assert needle in message, f"{needle!r} not in {message!r}"
    return message


def assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key


@pytest.mark.parametrize(
    ("prefix", "old_name", "container"),
    [
        ("module.", False, None),
        ("", False, None),
        ("module.", True, None),
        ("", True, None),
        ("module.", False, "state_dict"),
        ("", False, "model"),
    ],
    ids=["ddp", "bare", "ddp-old-CCQ", "old-CCQ", "in-state_dict", "in-model"],
)
def test_round_trip(tmp_path, mots, prefix, old_name, container):
    model = tiny_model(mots, seed=3)
    pth = official_file(tmp_path, model, prefix=prefix, old_name=old_name, container=container)
    out = tmp_path / "converted"
    result = convert(pth, out)
    assert result.exit_code == 0, result.output
    assert "converted" in result.output and str(out) in result.output

    loaded = load_checkpoint(out)
    assert_same_weights(loaded.model, model)
    assert loaded.model_config == model.config
    assert loaded.preprocessing.patch_size == (16, 32, 32)
    assert loaded.preprocessing.spacing == (1.5, 0.8, 0.8)
    assert loaded.collection.task_names == mots.task_names
    assert loaded.meta.source == "converted from official.pth"


def test_dodnet_round_trip(tmp_path, mots):
    model = tiny_model(mots, preset="tiny-dodnet", seed=4)
    out = tmp_path / "converted"
    result = convert(official_file(tmp_path, model), out, preset="tiny-dodnet")
    assert result.exit_code == 0, result.output
    assert_same_weights(load_checkpoint(out).model, model)


def test_missing_and_unexpected_keys_are_named_and_nothing_is_written(tmp_path, mots):
    model = tiny_model(mots)
    pth = official_file(tmp_path, model)
    state = torch.load(pth, weights_only=True)
    dropped = next(k for k in state if "controller" in k)
    del state[dropped]
    state["module.CQTr.stray.weight"] = torch.zeros(2)
    torch.save(state, pth)

    out = tmp_path / "converted"
    result = convert(pth, out)
    assert_refused(result, str(pth), dropped.removeprefix("module."), "CQTr.stray.weight", "missing", "unexpected")
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["official.pth"]


def test_wrong_patch_says_which_patches_fit(tmp_path, mots):
    pth = official_file(tmp_path, tiny_model(mots))
    out = tmp_path / "converted"
    result = CliRunner().invoke(
        app, ["convert-official", str(pth), str(out), "--preset", "tiny", "--patch", "32", "32", "32"]
    )
    assert_refused(result, str(pth), "CQTr.pos_embed", "4 positional tokens", "--patch 16 32 32")
    assert not out.exists()


def test_fitting_patches_lists_the_official_patch_first():
    assert fitting_patches(576)[0] == (64, 192, 192)
    assert fitting_patches(72)[0] == (32, 96, 96)
    assert all((d // 16) * (h // 16) * (w // 16) == 576 for d, h, w in fitting_patches(576))


def test_existing_output_is_kept_without_overwrite(tmp_path, mots):
    first, second = tiny_model(mots, seed=1), tiny_model(mots, seed=2)
    out = tmp_path / "converted"
    assert convert(official_file(tmp_path, first, name="a.pth"), out).exit_code == 0
    created = read_checkpoint_meta(out).created
    pth_b = official_file(tmp_path, second, name="b.pth")

    assert_refused(convert(pth_b, out), str(out), "--overwrite")
    assert read_checkpoint_meta(out).source == "converted from a.pth"
    assert read_checkpoint_meta(out).created == created

    result = convert(pth_b, out, "--overwrite")
    assert result.exit_code == 0, result.output
    loaded = load_checkpoint(out)
    assert loaded.meta.source == "converted from b.pth"
    assert_same_weights(loaded.model, second)


def test_overwrite_never_replaces_a_foreign_directory(tmp_path, mots):
    out = tmp_path / "results"
    out.mkdir()
    (out / "notes.txt").write_text("precious")
    result = convert(official_file(tmp_path, tiny_model(mots)), out, "--overwrite")
    assert_refused(result, str(out), "not a ccq checkpoint directory")
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]


class _TouchOnUnpickle:
    def __init__(self, target: pathlib.Path) -> None:
        self.target = target

    def __reduce__(self):
        return (pathlib.Path.touch, (self.target,))


@pytest.mark.parametrize("fmt", ["torch-zip", "raw-pickle"])
def test_malicious_pth_is_refused_without_running_it(tmp_path, fmt):
    target = tmp_path / "pwned"
    pth = tmp_path / "evil.pth"
    payload = {"conv1.weight": torch.zeros(1), "payload": _TouchOnUnpickle(target)}
    if fmt == "torch-zip":
        torch.save(payload, pth)
    else:
        pth.write_bytes(pickle.dumps(payload, protocol=2))
    out = tmp_path / "converted"
    assert_refused(convert(pth, out), str(pth), "weights_only=True")
    assert not target.exists()
    assert not out.exists()


@pytest.mark.parametrize("content", ["not-a-dict", "empty", "non-tensor"])
def test_unusable_contents_are_named(tmp_path, content):
    pth = tmp_path / "odd.pth"
    obj = {"not-a-dict": [torch.zeros(1)], "empty": {}, "non-tensor": {"w": torch.zeros(1), "epoch": 3}}[content]
    torch.save(obj, pth)
    assert_refused(convert(pth, tmp_path / "out"), str(pth), "state dict")
    assert not (tmp_path / "out").exists()


def test_missing_input_file(tmp_path):
    assert_refused(convert(tmp_path / "nope.pth", tmp_path / "out"), str(tmp_path / "nope.pth"), "no such file")


def test_console_entry_prints_one_line_and_exits_2(tmp_path, monkeypatch, capsys):
    from ccq.cli import main

    monkeypatch.setattr(sys, "argv", ["ccq", "convert-official", str(tmp_path / "nope.pth"), str(tmp_path / "o")])
    with pytest.raises(SystemExit) as excinfo:
        main()
    assert excinfo.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("ccq: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
