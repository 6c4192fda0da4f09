"""Configuration and collection files within `ccq.limits`: YAML aliases measured before they are expanded, strict
JSON, broken links and unusable case names in a dataset folder named."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from ccq.data.collection import load_collection
from ccq.data.collection_io import find_cases, parse_collection_text
from ccq.errors import CCQError


def _bomb(levels: int) -> str:
    lines, previous = ["a: &a [x, x, x, x, x, x, x, x, x]"], "a"
    for name in "bcdefghijk"[: levels - 1]:
        lines.append(f"{name}: &{name} [{', '.join([f'*{previous}'] * 9)}]")
        previous = name
    return "\n".join(lines) + "\n"


def test_an_alias_bomb_is_refused_without_being_expanded() -> None:
    start = time.perf_counter()
    with pytest.raises(CCQError, match=r"^bomb.yaml: YAML aliases expand 28 written values and characters to "
                       r"4\.903e\+08; expected aliases to add at most 1e\+06 .*CCQ_MAX_YAML_EXPANSION"):  # fmt: skip
        parse_collection_text(_bomb(9), ".yaml", "bomb.yaml")
    assert time.perf_counter() - start < 5.0  # measured on the nodes as written, never expanded


def test_modest_aliases_are_fine_and_the_limit_can_be_raised(monkeypatch) -> None:
    data = parse_collection_text(_bomb(3), ".yaml", "ok.yaml")  # 9^3 = 729 values
    assert len(data["c"]) == 9 and data["c"][0] is data["c"][1]
    with pytest.raises(CCQError, match="YAML aliases expand"):
        parse_collection_text(_bomb(7), ".yaml", "x.yaml")  # 9^7 = 4.8 million
    monkeypatch.setenv("CCQ_MAX_YAML_EXPANSION", "10000000")
    assert len(parse_collection_text(_bomb(7), ".yaml", "x.yaml")["g"]) == 9


def test_an_alias_of_a_long_text_counts_its_characters() -> None:
    text = "a: &a " + "y" * 100_000 + "\nb: [" + ", ".join(["*a"] * 100) + "]\n"  # 10 MB if printed
    with pytest.raises(CCQError, match=r"expand 100004 written values and characters to 1\.01e\+07"):
        parse_collection_text(text, ".yaml", "long.yaml")


def test_a_value_that_contains_itself_is_refused() -> None:
    with pytest.raises(CCQError, match=r"^self.yaml: the YAML value at line 1 contains itself \(through an alias\)"):
        parse_collection_text("a: &a [1, *a]\n", ".yaml", "self.yaml")
    with pytest.raises(CCQError, match="contains itself"):
        parse_collection_text("a: &a {b: *a}\n", ".yaml", "self.yaml")


def test_deep_nesting_is_refused_in_yaml_and_json() -> None:
    with pytest.raises(CCQError, match=r"YAML nested 70 levels deep; expected at most 64"):
        parse_collection_text("[" * 70 + "]" * 70, ".yaml", "deep.yaml")
    with pytest.raises(CCQError, match="nested too deeply"):
        parse_collection_text("[" * 5000 + "]" * 5000, ".yaml", "deep.yaml")
    with pytest.raises(CCQError, match="nested 65"):
        parse_collection_text("[" * 65 + "]" * 65, ".json", "deep.json")


def test_json_configuration_is_strict() -> None:
    with pytest.raises(CCQError, match=r"^x.json: holds NaN, which is not JSON"):
        parse_collection_text('{"spacing": [NaN, 1, 1]}', ".json", "x.json")
    with pytest.raises(CCQError, match="integer of 40 digits"):
        parse_collection_text('{"seed": ' + "1" * 40 + "}", ".json", "x.json")


def test_a_broken_link_in_a_dataset_is_named(tmp_path: Path) -> None:
    import nibabel as nib

    mots = load_collection("mots")
    liver = mots.task("liver")
    images, labels = tmp_path / "imagesTr", tmp_path / "labelsTr"
    images.mkdir()
    labels.mkdir()
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 4), np.int16), np.eye(4)), str(images / "liver_0.nii.gz"))
    (labels / "liver_0.nii.gz").symlink_to(tmp_path / "nowhere.nii.gz")
    with pytest.raises(CCQError, match=r"labelsTr/liver_0.nii.gz is a broken symbolic link \(to .*nowhere"):
        find_cases(liver, tmp_path)
    (labels / "liver_0.nii.gz").unlink()
    (images / "liver_1.nii.gz").symlink_to(tmp_path / "gone.nii.gz")
    with pytest.raises(CCQError, match=r"imagesTr/liver_1.nii.gz is a broken symbolic link"):
        find_cases(liver, tmp_path)
