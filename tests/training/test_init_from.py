"""`--init-from`: a run that starts from a 2-task checkpoint and adds a third task keeps the old tasks' logits
bit-identical before its first step, reports every tensor, freezes what it is told, and refuses what does not fit."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest
import torch

from ccq.checkpoint import load_checkpoint
from ccq.data.collection import load_collection
from ccq.data.preprocessing import PreprocessingConfig
from ccq.errors import CCQError
from ccq.training.init_from import check_tasks, check_working_grid, freeze_parts
from ccq.training.run_log import read_log
from ccq.training.trainer import Trainer


def _config(tiny_config, **changes):
    return tiny_config.replace(iterations=2, val_every=0, save_every=2, tensorboard=False, **changes)


def test_a_grown_run_keeps_the_old_tasks_logits_and_reports_every_tensor(
    tiny_prepared: Path, tiny_config, old_run: Path, tmp_path: Path
) -> None:
    lines: list[str] = []
    trainer = Trainer(_config(tiny_config, init_from=str(old_run)), tiny_prepared, tmp_path / "run",
                      progress=False, echo=lines.append)  # fmt: skip
    old = load_checkpoint(old_run / "best").model.to(memory_format=trainer.memory_format)
    trainer.model.eval()
    x = torch.rand(2, 1, 16, 32, 32).contiguous(memory_format=trainer.memory_format)
    with torch.no_grad():
        for task in (0, 1):
            assert torch.equal(old(x, task), trainer.model(x, task))
        assert torch.equal(old.forward_all_tasks(x, [0, 1]), trainer.model.forward_all_tasks(x, [0, 1]))
    assert trainer.model.num_tasks == 3
    assert lines[0].startswith(f"{old_run} is a training run directory; using its best/")
    assert lines[1] == f"init from {(old_run / 'best').resolve()}: 2 task(s) kept, added: spleen"
    assert any(line.startswith("resized task_embed.0.weight [16, 2] -> [16, 3]") for line in lines)

    result = trainer.fit()
    assert result.state.iteration == 2  # a fresh count: the checkpoint's iterations do not carry over
    record = json.loads((tmp_path / "run" / "config.json").read_text())
    grown = record["init_from"]
    assert grown["kept_tasks"] == ["liver", "colon"] and grown["added_tasks"] == ["spleen"]
    assert grown["counts"]["resized"] == 5 and grown["counts"]["new"] == 0
    assert len(grown["tensors"]) == sum(grown["counts"].values()) == len(trainer.model.state_dict())
    assert all(t["reason"] for t in grown["tensors"])
    assert record["train"]["init_from"] == str(old_run)
    init = [r for r in read_log(tmp_path / "run") if r["kind"] == "init_from"]
    assert len(init) == 1 and init[0]["added_tasks"] == ["spleen"] and init[0]["message"] == lines[1:]
    assert init[0]["tensors"] == grown["tensors"]  # every tensor, in the log as in config.json
    assert load_checkpoint(result.last).collection.task_names == ("liver", "colon", "spleen")


def test_frozen_parts_do_not_move_and_a_resume_keeps_them_frozen(
    tiny_prepared: Path, tiny_config, old_run: Path, tmp_path: Path
) -> None:
    config = _config(tiny_config, init_from=str(old_run), freeze=("encoder", "pos_embed"))
    trainer = Trainer(config, tiny_prepared, tmp_path / "run", progress=False, echo=lambda _: None)
    frozen = trainer.init_report.frozen
    assert frozen["parts"] == ["encoder", "pos_embed"] and frozen["parameters"] > 0
    result = trainer.fit()
    before = load_checkpoint(old_run / "best").model.state_dict()
    after = load_checkpoint(result.last).model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in after if k.startswith("encoder.") or k == "pos_embed")
    assert not torch.equal(before["decoder.blocks.0.conv1.weight"], after["decoder.blocks.0.conv1.weight"])

    resumed = Trainer(config.replace(iterations=3), tiny_prepared, tmp_path / "run", progress=False,
                      echo=lambda _: None, resume=True)  # fmt: skip
    assert resumed.init_report is None  # the weights come from last/, not from the checkpoint again
    assert not any(p.requires_grad for p in resumed.model.encoder.parameters())
    resumed.fit()
    again = load_checkpoint(tmp_path / "run" / "last").model.state_dict()
    assert all(torch.equal(before[k], again[k]) for k in again if k.startswith("encoder."))


def test_a_collection_that_drops_an_old_task_is_refused(
    old_prepared: Path, tiny_prepared: Path, tiny_config, tmp_path: Path
) -> None:
    three = tmp_path / "three"
    Trainer(_config(tiny_config), tiny_prepared, three, progress=False, echo=lambda _: None).fit()
    with pytest.raises(CCQError, match=f"prepared data {old_prepared}: the collection lacks the checkpoint's task "
                       "'spleen' \\(id 2\\)"):  # fmt: skip
        Trainer(_config(tiny_config, init_from=str(three)), old_prepared, tmp_path / "run", progress=False,
                echo=lambda _: None)  # fmt: skip


def test_another_model_is_named_by_its_tensor_or_its_arch(
    tiny_prepared: Path, tiny_config, old_run: Path, tmp_path: Path
) -> None:
    wider = _config(tiny_config, init_from=str(old_run), model_overrides={"mlp_dim": 48})
    with pytest.raises(CCQError) as err:
        Trainer(wider, tiny_prepared, tmp_path / "a", progress=False, echo=lambda _: None)
    text = str(err.value)
    assert text.startswith(f"--init-from {old_run / 'best'}: tensor ") and "in the checkpoint but" in text
    assert text.endswith("(the model differs from the checkpoint's in mlp_dim 32 -> 48; use its model preset "
                         "(--set model=...))")  # fmt: skip
    with pytest.raises(CCQError, match="the checkpoint is arch 'ccq', this run builds 'dodnet'"):
        Trainer(_config(tiny_config, init_from=str(old_run), model="tiny-dodnet"), tiny_prepared, tmp_path / "b",
                progress=False, echo=lambda _: None)  # fmt: skip
    with pytest.raises(CCQError, match="no such file or directory"):
        Trainer(_config(tiny_config, init_from=str(tmp_path / "nothing")), tiny_prepared, tmp_path / "c",
                progress=False, echo=lambda _: None)  # fmt: skip


def test_kept_tasks_must_keep_their_id_and_label_convention(tiny_prepared: Path) -> None:
    collection = load_collection(tiny_prepared.parent / "raw" / "collection.yaml")
    old = collection.with_tasks(collection.tasks[:2])
    assert check_tasks(old, collection, "ckpt", "data") == ["spleen"]
    liver, colon, spleen = collection.tasks
    swapped = collection.with_tasks([dataclasses.replace(liver, id=1), dataclasses.replace(colon, id=0), spleen])
    with pytest.raises(CCQError, match="data: task 'liver' has id=1 but 0 in ckpt; a kept task must keep its id"):
        check_tasks(old, swapped, "ckpt", "data")
    relabeled = collection.with_tasks([dataclasses.replace(liver, organ=(1,)), colon, spleen])
    with pytest.raises(CCQError, match="task 'liver' has organ=\\[1\\] but \\[1, 2\\] in ckpt"):
        check_tasks(old, relabeled, "ckpt", "data")
    renamed = collection.with_tasks([dataclasses.replace(liver, name="livers"), colon, spleen])
    with pytest.raises(CCQError, match="lacks the checkpoint's task 'liver' \\(id 0\\) \\(renamed 'livers'\\?\\)"):
        check_tasks(old, renamed, "ckpt", "data")


def test_the_working_grid_must_match() -> None:
    pre = PreprocessingConfig(spacing=(3.0, 2.25, 2.25), patch_size=(16, 32, 32))
    check_working_grid(pre, dataclasses.replace(pre, patch_size=(32, 64, 64)), "ckpt", "data")  # patch: the model's
    with pytest.raises(CCQError, match="data: prepared with spacing=\\[3.0, 1.5, 1.5\\] but ckpt has "):
        check_working_grid(pre, dataclasses.replace(pre, spacing=(3.0, 1.5, 1.5)), "ckpt", "data")
    with pytest.raises(CCQError, match="hu_max=200.0"):
        check_working_grid(pre, dataclasses.replace(pre, hu_max=200.0), "ckpt", "data")
    own = PreprocessingConfig(spacing=pre.spacing, patch_size=pre.patch_size,
                              task_grids={"liver": {"spacing": [3.0, 1.5, 1.5]}})  # fmt: skip
    check_working_grid(pre, own, "ckpt", "data", ["colon"])  # another task's own grid: a new task may have one
    with pytest.raises(CCQError, match="data: task 'liver' prepared on the grid .* but ckpt has"):
        check_working_grid(pre, own, "ckpt", "data", ["liver", "colon"])


def test_freeze_names_are_checked_against_the_models_parts() -> None:
    from ccq.models import build_model, get_preset

    model = build_model(get_preset("tiny", num_tasks=2))
    with pytest.raises(CCQError, match="--freeze 'encodr': not a part of this model \\(ccq\\); did you mean "
                       "'encoder'\\? expected some of encoder, image_transformer, "):  # fmt: skip
        freeze_parts(model, ["encodr"])
    assert all(p.requires_grad for p in model.parameters())  # nothing frozen by a refused list
    everything = [name for name, _ in model.named_children()] + ["pos_embed"]
    with pytest.raises(CCQError, match="leaves no parameter to train"):
        freeze_parts(model, everything)


def test_a_changed_replay_folder_is_refused(
    old_prepared: Path, tiny_prepared: Path, tiny_config, old_run: Path, tmp_path: Path
) -> None:
    relabeled = tmp_path / "relabeled"
    shutil.copytree(old_prepared, relabeled)
    data = json.loads((relabeled / "collection.json").read_text())
    data["tasks"][0]["organ"] = [1]
    (relabeled / "collection.json").write_text(json.dumps(data))
    config = _config(tiny_config, init_from=str(old_run), replay=str(relabeled))
    with pytest.raises(CCQError, match=f"--replay {relabeled}: task 'liver' has organ=\\[1\\] but \\[1, 2\\]"):
        Trainer(config, tiny_prepared, tmp_path / "run", progress=False, echo=lambda _: None)
    # A replay folder with a task the run does not train.
    with pytest.raises(CCQError, match=f"--replay {tiny_prepared}: task 'spleen' is not in the collection"):
        Trainer(_config(tiny_config, init_from=str(old_run), replay=str(tiny_prepared)), old_prepared,
                tmp_path / "run2", progress=False, echo=lambda _: None)  # fmt: skip
