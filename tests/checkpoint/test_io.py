"""ccq checkpoints: round trip, atomic replacement, refusal of pickles, and one-line errors for bad files."""

from __future__ import annotations

import json
import os
import pathlib
import pickle

import pytest
import torch
from safetensors.torch import save_file

from ccq.checkpoint import (
    META_NAME,
    WEIGHTS_NAME,
    is_checkpoint_dir,
    load_checkpoint,
    read_checkpoint_meta,
    resolve_model_path,
    save_checkpoint,
)
from ccq.checkpoint import io as ckpt_io
from ccq.checkpoint import swap as ckpt_swap
from ccq.errors import CCQError


@pytest.fixture
def save(preprocessing, collection):
    def _save(path, model, **kwargs):
        return save_checkpoint(path, model, preprocessing=preprocessing, collection=collection, **kwargs)

    return _save


def assert_same_weights(model_a: torch.nn.Module, model_b: torch.nn.Module) -> None:
    a, b = model_a.state_dict(), model_b.state_dict()
    assert list(a) == list(b)
    for key in a:
        assert a[key].dtype == b[key].dtype, key
        assert torch.equal(a[key], b[key]), key


def one_line_error(excinfo: pytest.ExceptionInfo, *needles: str) -> str:
    message = str(excinfo.value)
    assert "\n" not in message, message
    for needle in needles:
        assert needle in message, f"{needle!r} not in {message!r}"
    return message


def siblings(path: pathlib.Path) -> list[str]:
    """Everything beside `path` in its parent: temporary and set-aside directories must not survive a save."""
    return sorted(p.name for p in path.parent.iterdir() if p != path)


# ------------------------------------------------------------------------------------------------ round trip


def test_round_trip_gives_identical_tensors_and_configs(
    tmp_path, save, make_model, tiny_config, preprocessing, collection
):
    model = make_model(seed=1)
    out = save(tmp_path / "ckpt", model, source="unit test", extra={"iteration": 3})

    assert out == tmp_path / "ckpt"
    assert sorted(p.name for p in out.iterdir()) == [META_NAME, WEIGHTS_NAME]
    assert siblings(out) == []
    raw = json.loads((out / META_NAME).read_text())
    assert raw["format"] == "ccq-checkpoint" and raw["format_version"] == 1 and raw["kind"] == "model"
    assert raw["model"] == tiny_config.to_dict()

    loaded = load_checkpoint(out)
    assert_same_weights(loaded.model, model)
    assert not loaded.model.training
    assert loaded.model_config == tiny_config
    assert loaded.model.config == tiny_config
    assert loaded.preprocessing == preprocessing
    assert loaded.collection.to_dict() == collection.to_dict()
    assert loaded.meta.source == "unit test"
    assert loaded.meta.extra == {"iteration": 3}
    assert loaded.meta.ccq_version and loaded.meta.created

    meta = read_checkpoint_meta(out)
    assert meta.model_config == tiny_config and meta.path == out
    assert is_checkpoint_dir(out)


def test_wrapped_model_is_saved_under_its_own_names(tmp_path, save, make_model):
    model = make_model()
    out = save(tmp_path / "ckpt", torch.nn.DataParallel(model))
    assert_same_weights(load_checkpoint(out).model, model)


def test_shared_and_strided_tensors_are_saved_separately():
    base = torch.arange(12.0).reshape(3, 4)
    state = {"a": base, "tied": base, "t": base.t(), "row": base[1]}
    tensors = ckpt_io._tensors_for_saving(state)
    ptrs = {t.untyped_storage().data_ptr() for t in tensors.values()}
    assert len(ptrs) == len(tensors)
    assert all(t.is_contiguous() for t in tensors.values())
    for key, value in state.items():
        assert torch.equal(tensors[key], value)


def test_extra_is_stored_as_strict_json(tmp_path, save, make_model):
    import numpy as np

    extra = {
        "dice": float("nan"),
        "best": np.float32(0.5),
        "step": torch.tensor(7),
        "run": tmp_path,
        "t": (1, 2),
    }
    out = save(tmp_path / "ckpt", make_model(), extra=extra)
    assert read_checkpoint_meta(out).extra == {
        "dice": None,
        "best": 0.5,
        "step": 7,
        "run": str(tmp_path),
        "t": [1, 2],
    }
    assert "NaN" not in (out / META_NAME).read_text()


def test_non_json_extra_fails_before_writing(tmp_path, save, make_model):
    with pytest.raises(TypeError, match=r"extra\['bad'\]"):
        save(tmp_path / "ckpt", make_model(), extra={"bad": object()})
    assert list(tmp_path.iterdir()) == []


def test_saving_creates_missing_parents(tmp_path, save, make_model):
    out = save(tmp_path / "run" / "best", make_model())
    assert is_checkpoint_dir(out)


# --------------------------------------------------------------------------------------------- replacement


@pytest.mark.parametrize("exchange", [True, False], ids=["renameat2", "rename-aside"])
def test_existing_checkpoint_is_replaced(tmp_path, save, make_model, monkeypatch, exchange):
    if not exchange:
        monkeypatch.setattr(ckpt_swap, "_exchange", lambda a, b: False)
    out = tmp_path / "ckpt"
    save(out, make_model(seed=1), source="old")
    new = make_model(seed=2)
    save(out, new, source="new")

    loaded = load_checkpoint(out)
    assert loaded.meta.source == "new"
    assert_same_weights(loaded.model, new)
    assert siblings(out) == []


def test_failed_save_leaves_previous_checkpoint_intact(tmp_path, save, make_model):
    out = tmp_path / "ckpt"
    old = make_model(seed=1)
    save(out, old, source="old")

    def fail(directory):
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        save(out, make_model(seed=2), source="new", add_files=fail)
    loaded = load_checkpoint(out)
    assert loaded.meta.source == "old"
    assert_same_weights(loaded.model, old)
    assert siblings(out) == []


def test_failure_between_renames_puts_previous_back(tmp_path, save, make_model, monkeypatch):
    out = tmp_path / "ckpt"
    save(out, make_model(seed=1), source="old")
    monkeypatch.setattr(ckpt_swap, "_exchange", lambda a, b: False)
    real_rename = os.rename
    calls = []

    def rename(src, dst):
        calls.append((src, dst))
        if len(calls) == 2:  # the old checkpoint is aside, the new one not yet in place
            raise OSError("simulated failure")
        real_rename(src, dst)

    monkeypatch.setattr(ckpt_io.os, "rename", rename)
    with pytest.raises(OSError, match="simulated"):
        save(out, make_model(seed=2), source="new")
    monkeypatch.setattr(ckpt_io.os, "rename", real_rename)
    assert read_checkpoint_meta(out).source == "old"
    assert siblings(out) == []


def test_kill_between_renames_is_recovered_on_next_open(tmp_path, save, make_model):
    out = tmp_path / "ckpt"
    old = make_model(seed=1)
    save(out, old, source="old")
    # The state a SIGKILL between the two renames of the fallback scheme leaves behind.
    os.rename(out, ckpt_io._aside_path(out))
    assert not out.exists()

    loaded = load_checkpoint(out)
    assert loaded.meta.source == "old"
    assert_same_weights(loaded.model, old)
    assert siblings(out) == []


def test_leftovers_of_killed_saves_are_cleaned(tmp_path, save, make_model):
    out = tmp_path / "ckpt"
    save(out, make_model(seed=1))
    dead_pid = 2**22 + 12345  # above the default pid_max, so no such process
    (tmp_path / f".ckpt.tmp-{dead_pid}-abcd").mkdir()
    (tmp_path / f".ckpt.tmp-{dead_pid}-abcd" / WEIGHTS_NAME).write_bytes(b"partial")
    ckpt_io._aside_path(out).mkdir()  # set aside, new checkpoint landed, deletion interrupted
    save(out, make_model(seed=2))
    assert siblings(out) == []


def test_refuses_to_replace_a_non_checkpoint_directory(tmp_path, save, make_model):
    target = tmp_path / "results"
    target.mkdir()
    (target / "notes.txt").write_text("precious")
    with pytest.raises(CCQError) as excinfo:
        save(target, make_model())
    one_line_error(excinfo, str(target), "not a ccq checkpoint directory", "refusing")
    assert (target / "notes.txt").read_text() == "precious"
    assert sorted(p.name for p in target.iterdir()) == ["notes.txt"]
    assert siblings(target) == []


def test_refuses_to_replace_a_file(tmp_path, save, make_model):
    target = tmp_path / "model.pth"
    target.write_bytes(b"data")
    with pytest.raises(CCQError) as excinfo:
        save(target, make_model())
    one_line_error(excinfo, str(target), "is a file")
    assert target.read_bytes() == b"data"


def test_empty_directory_is_filled(tmp_path, save, make_model):
    target = tmp_path / "empty"
    target.mkdir()
    save(target, make_model())
    assert is_checkpoint_dir(target)


def test_inconsistent_preprocessing_is_refused_on_save(tmp_path, make_model, preprocessing, collection):
    import dataclasses

    other = dataclasses.replace(preprocessing, patch_size=(32, 32, 32))
    with pytest.raises(CCQError) as excinfo:
        save_checkpoint(tmp_path / "c", make_model(), preprocessing=other, collection=collection)
    one_line_error(excinfo, "patch_size")
    assert not (tmp_path / "c").exists()


# ------------------------------------------------------------------------------------------ pickle refusal


class _TouchOnUnpickle:
    """Unpickling this creates a file: the kind of code a malicious .pth can run inside pickle.load."""

    def __init__(self, target: pathlib.Path) -> None:
        self.target = target

    def __reduce__(self):
        return (pathlib.Path.touch, (self.target,))


def _write_payloads(directory: pathlib.Path, target: pathlib.Path) -> dict[str, pathlib.Path]:
    directory.mkdir(exist_ok=True)
    payloads = {}
    for protocol in (0, 2, 5):
        payloads[f"pickle{protocol}"] = directory / f"evil{protocol}.pth"
        payloads[f"pickle{protocol}"].write_bytes(pickle.dumps(_TouchOnUnpickle(target), protocol=protocol))
    payloads["torch-zip"] = directory / "evil_zip.pth"
    torch.save({"weight": torch.zeros(1), "payload": _TouchOnUnpickle(target)}, payloads["torch-zip"])
    return payloads


def test_payload_is_live(tmp_path):
    """Guard for the tests below: unpickling the payload really does create the file."""
    proof = tmp_path / "proof"
    pickle.loads(pickle.dumps(_TouchOnUnpickle(proof), protocol=2))
    assert proof.exists()


@pytest.mark.parametrize("kind", ["pickle0", "pickle2", "pickle5", "torch-zip"])
def test_pickle_file_offered_as_checkpoint_is_refused_unopened(tmp_path, kind):
    target = tmp_path / "pwned"
    evil = _write_payloads(tmp_path / "payloads", target)[kind]
    for call in (load_checkpoint, read_checkpoint_meta, resolve_model_path):
        with pytest.raises(CCQError) as excinfo:
            call(evil)
        one_line_error(excinfo, str(evil), "not a ccq checkpoint directory", "ccq convert-official")
    assert not target.exists()


@pytest.mark.parametrize("kind", ["pickle0", "pickle2", "pickle5", "torch-zip"])
def test_pickle_inside_checkpoint_directory_is_refused_unopened(tmp_path, save, make_model, kind):
    target = tmp_path / "pwned"
    evil = _write_payloads(tmp_path / "payloads", target)[kind]
    out = save(tmp_path / "ckpt", make_model())
    (out / WEIGHTS_NAME).write_bytes(evil.read_bytes())
    with pytest.raises(CCQError) as excinfo:
        load_checkpoint(out)
    one_line_error(excinfo, str(out / WEIGHTS_NAME), "pickle", "not safetensors")
    assert not target.exists()


def test_pickle_as_checkpoint_json_is_refused_unopened(tmp_path, save, make_model):
    target = tmp_path / "pwned"
    evil = _write_payloads(tmp_path / "payloads", target)["pickle2"]
    out = save(tmp_path / "ckpt", make_model())
    (out / META_NAME).write_bytes(evil.read_bytes())
    with pytest.raises(CCQError) as excinfo:
        load_checkpoint(out)
    one_line_error(excinfo, str(out / META_NAME), "expected a JSON object")
    assert not target.exists()


# ---------------------------------------------------------------------------------- not a checkpoint at all


def test_missing_path(tmp_path):
    with pytest.raises(CCQError) as excinfo:
        load_checkpoint(tmp_path / "nowhere")
    one_line_error(excinfo, str(tmp_path / "nowhere"), "no such file or directory")


def test_bare_safetensors_file(tmp_path):
    path = tmp_path / "model.safetensors"
    save_file({"w": torch.zeros(2)}, str(path))
    with pytest.raises(CCQError) as excinfo:
        load_checkpoint(path)
    one_line_error(excinfo, str(path), "bare safetensors file", META_NAME)


def test_directory_without_json(tmp_path):
    (tmp_path / "d").mkdir()
    with pytest.raises(CCQError) as excinfo:
        load_checkpoint(tmp_path / "d")
    one_line_error(excinfo, str(tmp_path / "d"), META_NAME)


def test_directory_without_weights(tmp_path, save, make_model):
    out = save(tmp_path / "ckpt", make_model())
    (out / WEIGHTS_NAME).unlink()
    with pytest.raises(CCQError) as excinfo:
        load_checkpoint(out)
    one_line_error(excinfo, str(out / WEIGHTS_NAME), "missing")


def test_truncated_weights(tmp_path, save, make_model):
    out = save(tmp_path / "ckpt", make_model())
    data = (out / WEIGHTS_NAME).read_bytes()
    (out / WEIGHTS_NAME).write_bytes(data[: len(data) // 2])
    with pytest.raises(CCQError) as excinfo:
        load_checkpoint(out)
    one_line_error(excinfo, str(out / WEIGHTS_NAME))


# ------------------------------------------------------------------------------------------ bad description


def _mutate_json(out: pathlib.Path, change) -> None:
    raw = json.loads((out / META_NAME).read_text())
    change(raw)
    (out / META_NAME).write_text(json.dumps(raw))


def _set(*keys_and_value):
    *keys, value = keys_and_value

    def change(raw):
        node = raw
        for key in keys[:-1]:
            node = node[key]
        node[keys[-1]] = value

    return change


def _drop(key):
    return lambda raw: raw.pop(key)


BAD_JSON = {
    "format": (_set("format", "something-else"), "format"),
    "newer-version": (_set("format_version", 2), "newer ccq"),
    "version-type": (_set("format_version", "1"), "format_version"),
    "kind": (_set("kind", "optimizer"), "kind"),
    "no-model": (_drop("model"), "'model'"),
    "model-list": (_set("model", [1, 2]), "'model'"),
    "unknown-model-field": (_set("model", "bogus_width", 3), "bogus_width"),
    "bad-model-value": (_set("model", "arch", "unet"), "arch"),
    "bad-patch": (_set("model", "patch_size", [15, 32, 32]), "patch_size"),
    "no-preprocessing": (_drop("preprocessing"), "'preprocessing'"),
    "bad-preprocessing": (_set("preprocessing", "spacing", [1, -1, 1]), "spacing"),
    "no-collection": (_drop("collection"), "'collection'"),
    "patch-mismatch": (_set("preprocessing", "patch_size", [32, 32, 32]), "patch_size"),
    "task-mismatch": (_set("model", "num_tasks", 3), "num_tasks"),
    "extra-type": (_set("extra", [1]), "'extra'"),
    "source-type": (_set("source", 5), "'source'"),
    "huge-patch": (lambda m: [_set("model", "patch_size", [4096] * 3)(m), _set("preprocessing", "patch_size",
                                                                            [4096] * 3)(m)], "CCQ_MAX_PATCH_VOXELS"),
    "zero-spacing": (_set("preprocessing", "spacing", [0.0, 1.0, 1.0]), "spacing"),
    "tiny-spacing": (_set("preprocessing", "spacing", [0.001, 1.0, 1.0]), "CCQ_MIN_SPACING_MM"),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(BAD_JSON))
def test_bad_json_names_the_field(tmp_path, save, make_model, case):
    change, needle = BAD_JSON[case]
    out = save(tmp_path / "ckpt", make_model())
    _mutate_json(out, change)
    for call in (read_checkpoint_meta, load_checkpoint):
        with pytest.raises(CCQError) as excinfo:
            call(out)
        one_line_error(excinfo, str(out / META_NAME), needle)


@pytest.mark.parametrize("text", ["{not json", "[1, 2]", ""], ids=["syntax", "list", "empty"])
def test_unparsable_json(tmp_path, save, make_model, text):
    out = save(tmp_path / "ckpt", make_model())
    (out / META_NAME).write_text(text)
    with pytest.raises(CCQError) as excinfo:
        read_checkpoint_meta(out)
    one_line_error(excinfo, str(out / META_NAME))


# -------------------------------------------------------------------------------------------- bad weights


def _rewrite_weights(out: pathlib.Path, change) -> None:
    from safetensors.torch import load_file

    tensors = load_file(str(out / WEIGHTS_NAME))
    change(tensors)
    save_file(tensors, str(out / WEIGHTS_NAME))


def test_missing_unexpected_and_misshapen_weights_are_named(tmp_path, save, make_model):
    out = save(tmp_path / "ckpt", make_model())
    keys = list(make_model().state_dict())
    gone, reshaped = keys[0], keys[-1]

    def change(tensors):
        del tensors[gone]
        tensors["stray.weight"] = torch.zeros(3)
        tensors[reshaped] = torch.zeros(*tensors[reshaped].shape, 2)

    _rewrite_weights(out, change)
    with pytest.raises(CCQError) as excinfo:
        load_checkpoint(out)
    one_line_error(excinfo, str(out / WEIGHTS_NAME), gone, "stray.weight", reshaped, "missing", "unexpected", "shape")


@pytest.mark.parametrize("kind", ["nan", "inf", "int8", "bool"])
def test_weights_must_be_finite_floating_point(tmp_path, save, make_model, kind):
    out = save(tmp_path / "ckpt", make_model())
    key = next(k for k, v in make_model().state_dict().items() if v.is_floating_point())

    def change(tensors):
        t = tensors[key]
        if kind in ("nan", "inf"):
            t.view(-1)[0] = float(kind)
        else:
            tensors[key] = t.to(torch.int8 if kind == "int8" else torch.bool)

    _rewrite_weights(out, change)
    with pytest.raises(CCQError) as excinfo:
        load_checkpoint(out)
    words = ["NaN/inf values", f"{key} (1 of"] if kind in ("nan", "inf") else ["tensor type(s)", f"{key} {kind}"]
    one_line_error(excinfo, str(out / WEIGHTS_NAME), *words)


def test_checkpoint_json_is_strict_and_bounded(tmp_path, save, make_model):
    out = save(tmp_path / "ckpt", make_model())
    text = (out / META_NAME).read_text()
    for bad, needle in ((text.replace('"format_version": 1', '"format_version": NaN'), "NaN, which is not JSON"),
                        (text.replace('"format_version": 1', '"format_version": 1' + "0" * 40), "41 digits"),
                        (text[:-2] + ', "x": ' + "[" * 5000 + "]" * 5000 + "}", "nested too deeply")):  # fmt: skip
        (out / META_NAME).write_text(bad)
        with pytest.raises(CCQError) as excinfo:
            read_checkpoint_meta(out)
        one_line_error(excinfo, str(out / META_NAME), needle)


# ---------------------------------------------------------------------------------------- run directories


def test_run_directory_resolves_to_best_then_last(tmp_path, save, make_model):
    run = tmp_path / "run"
    save(run / "last", make_model(), source="last")
    notes = []
    assert resolve_model_path(run, notify=notes.append) == run / "last"
    save(run / "best", make_model(), source="best")
    assert resolve_model_path(run, notify=notes.append) == run / "best"
    assert len(notes) == 2 and all(str(run) in n and "\n" not in n for n in notes)
    assert resolve_model_path(run / "last") == run / "last"


def test_run_directory_offered_to_load_names_its_checkpoints(tmp_path, save, make_model):
    run = tmp_path / "run"
    save(run / "best", make_model())
    with pytest.raises(CCQError) as excinfo:
        load_checkpoint(run)
    one_line_error(excinfo, "training run directory", str(run / "best"))


def test_directory_without_checkpoints_is_refused_by_resolve(tmp_path):
    with pytest.raises(CCQError) as excinfo:
        resolve_model_path(tmp_path)
    one_line_error(excinfo, str(tmp_path), META_NAME)


def test_grids_for_tasks_the_collection_does_not_have_are_refused(tmp_path, make_model, preprocessing, collection):
    from ccq.data.grid import Grid

    wrong = preprocessing.replace(task_grids={"kidny": Grid(spacing=(1.0, 1.0, 1.0))})
    with pytest.raises(CCQError) as excinfo:
        save_checkpoint(tmp_path / "ckpt", make_model(), preprocessing=wrong, collection=collection)
    one_line_error(excinfo, "preprocessing: task_grids names task(s) ['kidny']")
    assert not (tmp_path / "ckpt").exists()
