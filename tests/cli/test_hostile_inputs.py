"""Hostile and broken inputs through the real entry point (issue #12): each is one line on stderr naming the file,
the value and what was expected, exit code 2, nothing written outside (or, failing, inside) the output folder.

Every command run with `ccq_run` (each of issues 1-7 has one or more) runs in a subprocess whose address space is
capped with ``RLIMIT_AS`` at `CEILING` (3 GiB: the process's whole virtual memory, interpreter, torch and data), and
the message asserted is the limit's own (a process that tried to allocate would end in a MemoryError with another
message); `test_a_normal_case_runs_under_the_ceiling` shows that the ceiling alone does not make a command fail. The
Ctrl-C and kill tests start uncapped subprocesses (`ccq_popen`); the checks of messages alone run `ccq.cli.main` in
this process (`in_process`), as they read nothing large.
"""

from __future__ import annotations

import gzip
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

import ccq
from ccq.cli import main
from tests.tiny import write_phantom_world

CEILING = 3 * 2**30
"""Address-space limit (bytes) of the subprocesses that read hostile sizes."""
REPO = Path(ccq.__file__).resolve().parents[1]
LINUX = sys.platform.startswith("linux")


# ------------------------------------------------------------------------------------------------ helpers


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    path = os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", **(extra or {})}


def _ceiling() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (CEILING, CEILING))


def ccq_run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``python -m ccq ARGS`` in a subprocess, its address space capped at `CEILING`."""
    return subprocess.run([sys.executable, "-m", "ccq", *args], capture_output=True, text=True, timeout=300,
                          env=_env(env), preexec_fn=_ceiling)  # fmt: skip


def ccq_popen(*args: str, stderr: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    """``python -m ccq ARGS`` started, its stderr into the file ``stderr`` (a pipe would stay open as long as any
    process inherited it: a test of leftover workers must not hang on them)."""
    with open(stderr, "w") as err:
        return subprocess.Popen([sys.executable, "-m", "ccq", *args], stdout=subprocess.DEVNULL, stderr=err,
                                env=_env(env), preexec_fn=_default_sigint)  # fmt: skip


HANG = """\
# Written by tests/cli/test_hostile_inputs.py: every case of `ccq prepare` sleeps until its process is killed (a
# stand-in for a case that takes minutes), in the command and in the workers it spawns (they inherit PYTHONPATH).
import time

import ccq.data.prepare_run as run


def _hang(*args, **kwargs):
    while True:
        time.sleep(60)


run.prepare_case = run.prepare_shared_case = _hang
"""


def hanging_cases(tmp_path: Path) -> dict[str, str]:
    """Environment for `ccq_popen` in which every case hangs: a ``sitecustomize`` module (imported by every Python
    process at start-up) first on the path replaces the case preparation, so the product has no test hook."""
    folder = tmp_path / "hang"
    folder.mkdir()
    (folder / "sitecustomize.py").write_text(HANG)
    return {"PYTHONPATH": os.pathsep.join([str(folder), _env()["PYTHONPATH"]])}


def _default_sigint() -> None:
    """Ctrl-C reaches the command even where this test runs with SIGINT ignored (a background job inherits that)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def one_line(stderr: str, code: int, returncode: int, *words: str) -> str:
    """The only line of ``stderr``, checked: the exit code, ``ccq: error:`` (or ``ccq: interrupted:``), no
    traceback, at most 600 characters, holding each of ``words``."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert returncode == code, stderr
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    assert lines[0].startswith("ccq: error: " if code == 2 else "ccq: interrupted"), stderr
    assert len(lines[0]) <= 600, lines[0]
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def in_process(args: list[str], monkeypatch, capfd) -> str:
    """``ccq ARGS`` through `ccq.cli.main` in this process; the checked error line (capfd also sees what C
    libraries print, such as ITK's warnings)."""
    monkeypatch.setattr(sys, "argv", ["ccq", *args])
    with pytest.raises(SystemExit) as exit_info:
        main()
    return one_line(capfd.readouterr().err, 2, exit_info.value.code, "")


def tree(root: Path) -> list[tuple[str, int, int]]:
    """Every file and folder under ``root`` with its size and modification time (what "nothing written" compares)."""
    return sorted(
        (str(p.relative_to(root)), p.lstat().st_size if p.is_file() else 0, p.lstat().st_mtime_ns)
        for p in root.rglob("*")
    )


def header_only(path: Path, shape, dtype=np.int16, zooms=(1.0, 1.0, 1.0), data: bytes = b"") -> Path:
    """A NIfTI file that declares ``shape`` x ``dtype`` voxels and holds only ``data`` after its header."""
    header = nib.Nifti1Header()
    header.set_data_shape(shape)
    header.set_data_dtype(dtype)
    header.set_zooms(zooms)
    affine = np.diag([*zooms, 1.0])
    header.set_qform(affine, code=1)
    header.set_sform(affine, code=1)
    header.set_data_offset(352)
    raw = header.binaryblock + b"\0" * 4 + data
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(raw, 9) if path.name.endswith(".gz") else raw)
    return path


def ct(path: Path, shape=(24, 48, 48), zooms=(2.0, 1.5, 1.5), dtype=np.int16) -> Path:
    """A small CT-like image (air and soft tissue) with these voxel sizes."""
    rng = np.random.default_rng(0)
    array = rng.normal(40, 300, shape).clip(-1000, 1500).astype(dtype)
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(array, np.diag([*zooms, 1.0])), str(path))
    return path


def children(pid: int) -> list[int]:
    """Pids whose parent is ``pid`` (from /proc)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        if int(stat[stat.rindex(")") + 2 :].split()[1]) == pid:
            found.append(int(entry))
    return found


def running(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


class Workers:
    """The child processes of a ``ccq prepare --workers 2``."""

    def __init__(self, parent: int) -> None:
        self.parent, self.pids = parent, []

    def started(self) -> bool:
        self.pids = children(self.parent)
        return len(self.pids) >= 3  # two workers and multiprocessing's resource tracker

    def ended(self) -> bool:
        return not any(running(pid) for pid in self.pids)

    def kill_left(self, proc: subprocess.Popen) -> None:
        """Whatever a failed test left running."""
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pid in self.pids:
            if running(pid):
                os.kill(pid, signal.SIGKILL)


def wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"{what} within {timeout} s")


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    """A phantom collection (liver, colon, spleen; 24x48x48) and an untrained tiny checkpoint for it."""
    root = write_phantom_world(tmp_path_factory.mktemp("hostile"))
    (root / "preprocessing.yaml").write_text("spacing: [3.0, 2.25, 2.25]\npatch_size: [16, 32, 32]\n")
    return root


def image(world: Path) -> Path:
    return world / "raw" / "Task01_Liver" / "imagesTr" / "liver_000.nii.gz"


def test_a_normal_case_runs_under_the_ceiling(world: Path, tmp_path: Path) -> None:
    proc = ccq_run("predict", "-i", str(image(world)), "-o", str(tmp_path / "out"), "-m", str(world / "model"),
                   "--no-progress")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "out" / "liver_000" / "labels.json").is_file()


# ------------------------------------------------------------------------------------------------ 1: sizes


def test_a_63_byte_gz_declaring_2000_cubed_is_refused_before_reading(world: Path, tmp_path: Path) -> None:
    bomb = header_only(tmp_path / "bomb.nii.gz", (2000, 2000, 2000))
    assert bomb.stat().st_size < 100  # 16 GB of int16 declared
    proc = ccq_run("predict", "-i", str(bomb), "-o", str(tmp_path / "out"), "-m", str(world / "model"))
    one_line(proc.stderr, 2, proc.returncode, "bomb.nii.gz", "2000 x 2000 x 2000", "CCQ_MAX_VOXELS")
    assert not (tmp_path / "out").exists()


def test_raising_the_voxel_limit_still_checks_the_memory(world: Path, tmp_path: Path) -> None:
    bomb = header_only(tmp_path / "bomb.nii.gz", (2000, 2000, 2000))
    proc = ccq_run("predict", "-i", str(bomb), "-o", str(tmp_path / "out"), "-m", str(world / "model"),
                   env={"CCQ_MAX_VOXELS": "10000000000"})  # fmt: skip
    one_line(proc.stderr, 2, proc.returncode, "bomb.nii.gz", "of memory", "available", "CCQ_MEMORY_CHECK=0")


def test_a_480_byte_nii_cannot_hold_what_it_declares(world: Path, tmp_path: Path) -> None:
    small = header_only(tmp_path / "small.nii", (1000, 1000, 500), data=b"\0" * 128)  # under the voxel limit
    assert small.stat().st_size == 480
    proc = ccq_run("predict", "-i", str(small), "-o", str(tmp_path / "out"), "-m", str(world / "model"))
    one_line(proc.stderr, 2, proc.returncode, "small.nii", "truncated", "1000 x 1000 x 500", "file holds 480 bytes")
    assert not (tmp_path / "out").exists()


def test_a_gz_stream_shorter_than_its_header_is_truncated(world: Path, tmp_path: Path) -> None:
    # 600 x 600 x 400 int16 fits the limits and the ceiling; the stream holds 1000 voxel bytes of its 288 MB.
    short = header_only(tmp_path / "short.nii.gz", (600, 600, 400), data=b"\1" * 1000)
    proc = ccq_run("predict", "-i", str(short), "-o", str(tmp_path / "out"), "-m", str(world / "model"))
    one_line(proc.stderr, 2, proc.returncode, "short.nii.gz", "truncated", "ends after 1000")
    assert not (tmp_path / "out").exists()


def test_evaluate_refuses_a_2000_cubed_ground_truth(world: Path, tmp_path: Path) -> None:
    pred, gt = tmp_path / "pred", tmp_path / "gt"
    pred.mkdir()
    shutil.copy(world / "raw" / "Task01_Liver" / "labelsTr" / "liver_000.nii.gz", pred / "liver_000.nii.gz")
    header_only(gt / "liver_000.nii.gz", (2000, 2000, 2000), dtype=np.uint8)
    proc = ccq_run("evaluate", "-p", str(pred), "-g", str(gt), "--task", "liver", "--collection",
                   str(world / "raw" / "collection.yaml"), "-o", str(tmp_path / "out"), "--no-progress")  # fmt: skip
    one_line(proc.stderr, 2, proc.returncode, "ground truth", "liver_000.nii.gz", "2000 x 2000 x 2000")
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------------------------------------ 2: names


@pytest.mark.parametrize("name,case", [("...nii.gz", "'..'"), ("..nii.gz", "'.'")])
def test_a_file_name_cannot_write_outside_the_output_folder(world: Path, tmp_path: Path, name: str, case: str) -> None:
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    shutil.copy(image(world), inputs / name)
    (tmp_path / "labels.json").write_text("the user's file")  # where OUT/../labels.json would land
    before = tree(tmp_path)
    proc = ccq_run("predict", "-i", str(inputs), "-o", str(tmp_path / "out"), "-m", str(world / "model"),
                   "--overwrite", "--no-progress")  # fmt: skip
    one_line(proc.stderr, 2, proc.returncode, f"case name {case}", name, "rename it")
    assert tree(tmp_path) == before and (tmp_path / "labels.json").read_text() == "the user's file"


# ------------------------------------------------------------------------------------------------ 3: geometry


def test_megametre_voxels_are_refused_naming_the_spacing(world: Path, tmp_path: Path) -> None:
    huge = ct(tmp_path / "huge.nii.gz", shape=(96, 96, 48), zooms=(1e6, 1e6, 1e6))
    proc = ccq_run("predict", "-i", str(huge), "-o", str(tmp_path / "out"), "-m", str(world / "model"))
    one_line(proc.stderr, 2, proc.returncode, "huge.nii.gz", "voxel sizes (1e+06, 1e+06, 1e+06) mm",
             "CCQ_MAX_SPACING_MM")  # fmt: skip
    assert not (tmp_path / "out").exists()


def test_a_working_grid_over_the_limit_is_refused_before_resampling(world: Path, tmp_path: Path) -> None:
    coarse = ct(tmp_path / "coarse.nii.gz", shape=(96, 96, 48), zooms=(50.0, 50.0, 50.0))  # -> 2133 x 2133 x 800
    proc = ccq_run("predict", "-i", str(coarse), "-o", str(tmp_path / "out"), "-m", str(world / "model"))
    one_line(proc.stderr, 2, proc.returncode, "coarse.nii.gz", "(50, 50, 50) mm", "(3, 2.25, 2.25) mm",
             "800 x 2133 x 2133", "CCQ_MAX_VOXELS")  # fmt: skip


@pytest.mark.parametrize("spacing,words", [
    (["1e-4", "1e-4", "1e-4"], ["(0.0001, 0.0001, 0.0001) mm", "CCQ_MIN_SPACING_MM"]),
    (["inf", "1", "1"], ["(inf, 1, 1) mm", "finite, positive"]),
    (["0", "1", "1"], ["(0, 1, 1) mm", "finite, positive"]),
])  # fmt: skip
def test_evaluate_refuses_implausible_spacings(world, tmp_path, spacing, words, monkeypatch, capfd) -> None:
    labels = world / "raw" / "Task01_Liver" / "labelsTr"
    line = in_process(["evaluate", "-p", str(labels), "-g", str(labels), "--task", "liver", "--collection",
                       str(world / "raw" / "collection.yaml"), "-o", str(tmp_path / "out"), "--no-progress",
                       "--spacing", *spacing], monkeypatch, capfd)  # fmt: skip
    assert "--spacing" in line and all(w in line for w in words), line
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------------------------------------ 4: checkpoints


def _checkpoint(world: Path, folder: Path, text=None, meta=None) -> Path:
    shutil.copytree(world / "model", folder)
    data = json.loads((folder / "checkpoint.json").read_text())
    if meta is not None:
        meta(data)
    (folder / "checkpoint.json").write_text(json.dumps(data) if text is None else text(json.dumps(data)))
    return folder


def _patch(size: int):
    def change(meta: dict) -> None:
        meta["model"]["patch_size"] = meta["preprocessing"]["patch_size"] = [size] * 3

    return change


@pytest.mark.parametrize("size", [4096, 8192])
def test_a_huge_patch_in_a_checkpoint_is_refused_before_building(world: Path, tmp_path: Path, size: int) -> None:
    model = _checkpoint(world, tmp_path / "model", meta=_patch(size))
    proc = ccq_run("predict", "-i", str(image(world)), "-o", str(tmp_path / "out"), "-m", str(model))
    one_line(proc.stderr, 2, proc.returncode, "checkpoint.json", f"patch_size [{size}, {size}, {size}]",
             "CCQ_MAX_PATCH_VOXELS")  # fmt: skip


CHECKPOINT_VALUES = {
    "nan-spacing": (lambda t: t.replace('"spacing": [3.0', '"spacing": [NaN'), ["NaN, which is not JSON"]),
    "tiny-spacing": (lambda t: t.replace('"spacing": [3.0, 2.25, 2.25]', '"spacing": [0.001, 0.001, 0.001]'),
                     ["(0.001, 0.001, 0.001) mm", "CCQ_MIN_SPACING_MM"]),
    "5000-digits": (lambda t: t.replace('"format_version": 1', '"format_version": ' + "1" * 5000),
                    ["integer of 5000 digits", "CCQ_MAX_INT_DIGITS"]),
    "100000-deep": (lambda t: t[:-1] + ', "x": ' + "[" * 100_000 + "]" * 100_000 + "}", ["nested too deeply"]),
}  # fmt: skip


@pytest.mark.parametrize("kind", list(CHECKPOINT_VALUES))
def test_hostile_checkpoint_values_are_one_line(world, tmp_path, kind, monkeypatch, capfd) -> None:
    edit, words = CHECKPOINT_VALUES[kind]
    model = _checkpoint(world, tmp_path / "model", text=edit)
    line = in_process(["predict", "-i", str(image(world)), "-o", str(tmp_path / "out"), "-m", str(model)],
                      monkeypatch, capfd)  # fmt: skip
    assert "checkpoint.json" in line and all(w in line for w in words), line
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("kind", ["nan", "int8"])
def test_weights_must_be_finite_floats(world, tmp_path, kind, monkeypatch, capfd) -> None:
    import torch
    from safetensors.torch import load_file, save_file

    model = _checkpoint(world, tmp_path / "model")
    tensors = load_file(str(model / "model.safetensors"))
    bad = {k: (torch.full_like(v, float("nan")) if kind == "nan" else v.to(torch.int8)) if v.is_floating_point()
           else v for k, v in tensors.items()}  # fmt: skip
    save_file(bad, str(model / "model.safetensors"))
    line = in_process(["predict", "-i", str(image(world)), "-o", str(tmp_path / "out"), "-m", str(model)],
                      monkeypatch, capfd)  # fmt: skip
    assert "model.safetensors" in line and ("NaN/inf values" if kind == "nan" else "int8 (expected float32)") in line
    assert not (tmp_path / "out").exists()


def test_a_training_state_holding_a_list_is_refused_on_resume(tmp_path: Path) -> None:
    import torch

    from ccq.data.phantom import generate_collection
    from ccq.data.prepare_run import prepare_collection
    from ccq.data.preprocessing import PreprocessingConfig
    from ccq.training.config import get_train_preset
    from ccq.training.trainer import Trainer

    collection = generate_collection(tmp_path / "raw", cases_per_task=3, test_cases_per_task=1, seed=0,
                                     tasks=("liver", "spleen"), shape=(24, 48, 48))  # fmt: skip
    pre = PreprocessingConfig(spacing=(3.0, 2.25, 2.25), patch_size=(16, 32, 32))
    assert prepare_collection(collection, None, tmp_path / "prepared", pre).ok
    config = get_train_preset("demo").replace(model="tiny", model_overrides={}, iterations=2, val_every=2,
                                              save_every=2, log_every=1, val_batch_size=4,
                                              tensorboard=False)  # fmt: skip
    Trainer(config, tmp_path / "prepared", tmp_path / "run", progress=False, echo=lambda _: None).fit()
    torch.save([1, 2, 3], tmp_path / "run" / "last" / "training_state.pt")
    proc = ccq_run("train", "--out", str(tmp_path / "run"), "--resume", "--iterations", "4", "--no-progress")
    one_line(proc.stderr, 2, proc.returncode, "training_state.pt", "holds a list", "expected a ccq training state")


# ------------------------------------------------------------------------------------------------ 5: YAML


def _alias_bomb(path: Path, levels: int = 8) -> Path:
    lines, previous = ["a: &a [x, x, x, x, x, x, x, x, x]"], "a"
    for name in "bcdefghijk"[: levels - 1]:
        lines.append(f"{name}: &{name} [{', '.join([f'*{previous}'] * 9)}]")
        previous = name
    path.write_text("\n".join([*lines, f"spacing: [*{previous}]"]) + "\n")
    return path


def test_a_yaml_alias_bomb_is_refused_unexpanded(world: Path, tmp_path: Path) -> None:
    bomb = _alias_bomb(tmp_path / "bomb.yaml")
    assert bomb.stat().st_size < 500  # 9^8 = 43 million values once expanded
    proc = ccq_run("prepare", "--collection", str(world / "raw" / "collection.yaml"), "--out", str(tmp_path / "out"),
                   "--preprocessing", str(bomb), "--no-progress")  # fmt: skip
    one_line(proc.stderr, 2, proc.returncode, "bomb.yaml", "YAML aliases expand", "CCQ_MAX_YAML_EXPANSION")
    assert not (tmp_path / "out").exists()


def test_a_yaml_alias_bomb_as_training_config(world: Path, tmp_path: Path, monkeypatch, capfd) -> None:
    bomb = _alias_bomb(tmp_path / "bomb.yaml")
    line = in_process(["train", "--preset", "demo", "--config", str(bomb), "--data", str(tmp_path / "prepared"),
                       "--out", str(tmp_path / "run")], monkeypatch, capfd)  # fmt: skip
    assert "YAML aliases expand" in line and not (tmp_path / "run").exists()


# ------------------------------------------------------------------------------------------------ 6: oddities


def test_a_zero_pixdim_is_one_line_without_nibabel_noise(world: Path, tmp_path: Path) -> None:
    path = ct(tmp_path / "zero.nii")
    raw = bytearray(path.read_bytes())
    raw[80:84] = np.float32(0).tobytes()  # pixdim[1]
    raw[252:256] = np.array([1, 0], dtype=np.int16).tobytes()  # qform from pixdim, no sform
    path.write_bytes(bytes(raw))
    proc = ccq_run("predict", "-i", str(path), "-o", str(tmp_path / "out"), "-m", str(world / "model"))
    one_line(proc.stderr, 2, proc.returncode, "zero.nii", "pixdim", "(0, 1.5, 1.5)", "no sform")


def test_oddities_are_one_line(world: Path, tmp_path: Path, monkeypatch, capfd) -> None:
    def predict(source: Path, out: Path, *extra: str) -> str:
        return in_process(["predict", "-i", str(source), "-o", str(out), "-m", str(world / "model"),
                           "--no-progress", *extra], monkeypatch, capfd)  # fmt: skip

    complex_image = tmp_path / "complex.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((8, 8, 8), np.complex64), np.eye(4)), str(complex_image))
    assert "holds complex values (complex64)" in predict(complex_image, tmp_path / "o1")

    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "readme.txt").write_text("no images here")
    line = predict(tmp_path / "notes", tmp_path / "o2")  # one line: ITK's warnings are silenced
    assert "no .nii.gz/.nii files and no DICOM series" in line

    batch = tmp_path / "batch"
    batch.mkdir()
    shutil.copy(image(world), batch / "good.nii.gz")
    (batch / "gone.nii.gz").symlink_to(tmp_path / "nowhere.nii.gz")
    assert "gone.nii.gz is a broken symbolic link" in predict(batch, tmp_path / "o3")

    (tmp_path / "a-file").write_text("")
    assert "-o " in (line := predict(image(world), tmp_path / "a-file")) and "is a file" in line
    assert "a-file is a file, not a folder" in predict(image(world), tmp_path / "a-file" / "sub")

    taken = tmp_path / "o4" / "liver_000" / "liver.nii.gz"
    taken.mkdir(parents=True)  # a folder where a label map goes
    line = predict(image(world), tmp_path / "o4", "--overwrite")
    assert f"{taken} is a folder" in line and ".tmp-" not in line
    assert not any(tmp_path.rglob("*.tmp-*"))


def _interrupt(proc: subprocess.Popen, ready, stderr: Path) -> tuple[int, str]:
    """Send SIGINT once ``ready()``; the exit code and stderr."""
    try:
        wait_for(lambda: ready() or proc.poll() is not None, 240, "the command to get going")
        assert proc.poll() is None, stderr.read_text()
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, stderr.read_text()


def test_sigint_in_predict_says_what_was_kept(world: Path, tmp_path: Path) -> None:
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    shutil.copy(image(world), inputs / "a_small.nii.gz")
    ct(inputs / "b_large.nii.gz", shape=(192, 320, 320), zooms=(1.0, 0.8, 0.8))  # seconds of windows with TTA
    out, log = tmp_path / "out", tmp_path / "stderr.txt"
    proc = ccq_popen("predict", "-i", str(inputs), "-o", str(out), "-m", str(world / "model"), "--tta",
                     "--no-progress", stderr=log)  # fmt: skip
    code, err = _interrupt(proc, lambda: (out / "a_small" / "labels.json").is_file(), log)
    line = one_line(err, 130, code, "1 of 2 case(s) complete", "run the command again with --overwrite")
    assert line.startswith("ccq: interrupted: ")
    assert (out / "a_small" / "labels.json").is_file() and not (out / "b_large" / "labels.json").exists()


@pytest.mark.skipif(not LINUX, reason="finds the worker processes in /proc")
def test_sigint_in_prepare_stops_the_workers_and_says_how_to_resume(world: Path, tmp_path: Path) -> None:
    out, log = tmp_path / "out", tmp_path / "stderr.txt"
    proc = ccq_popen("prepare", "--collection", str(world / "raw" / "collection.yaml"), "--out", str(out),
                     "--preprocessing", str(world / "preprocessing.yaml"), "--workers", "2", "--no-progress",
                     stderr=log, env=hanging_cases(tmp_path))  # fmt: skip
    workers = Workers(proc.pid)
    try:
        code, err = _interrupt(proc, workers.started, log)
        one_line(err, 130, code, "no case was prepared", "run the same command again to resume")
        wait_for(workers.ended, 10, "the workers to end")
    finally:
        workers.kill_left(proc)
    assert not out.exists()  # nothing prepared: no index files, no folder


# ------------------------------------------------------------------------------------------------ 7: leftovers


@pytest.mark.skipif(not LINUX, reason="finds the worker processes in /proc")
def test_workers_end_when_prepare_is_killed(world: Path, tmp_path: Path) -> None:
    # Every case hangs (`hanging_cases`): the workers would never finish on their own.
    proc = ccq_popen("prepare", "--collection", str(world / "raw" / "collection.yaml"), "--out", str(tmp_path / "o"),
                     "--preprocessing", str(world / "preprocessing.yaml"), "--workers", "2", "--no-progress",
                     stderr=tmp_path / "stderr.txt", env=hanging_cases(tmp_path))  # fmt: skip
    workers = Workers(proc.pid)
    try:
        wait_for(workers.started, 240, "the workers to start")
        time.sleep(2.0)  # past their initializer, inside a case
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
        wait_for(workers.ended, 10, "the workers to end with their parent")
    finally:
        workers.kill_left(proc)


def test_a_failed_validation_leaves_no_index_and_a_corrected_rerun_works(world: Path, tmp_path: Path) -> None:
    raw, out = tmp_path / "raw", tmp_path / "out"
    shutil.copytree(world / "raw", raw)
    label = raw / "Task01_Liver" / "labelsTr" / "liver_000.nii.gz"
    original = label.read_bytes()
    img = nib.load(str(label))
    bad = np.asarray(img.dataobj).copy()
    bad[0, 0, 0] = 9  # a label value the task does not declare
    nib.save(nib.Nifti1Image(bad, img.affine, img.header), str(label))
    out.mkdir()  # an existing, empty output folder
    proc = ccq_run("prepare", "--collection", str(raw / "collection.yaml"), "--out", str(out), "--no-progress",
                   "--preprocessing", str(world / "preprocessing.yaml"))  # fmt: skip
    one_line(proc.stderr, 2, proc.returncode, "liver_000", "label value")
    assert sorted(p.name for p in out.iterdir()) == []  # no collection.json / preprocessing.json / manifest.json

    label.write_bytes(original)
    other = tmp_path / "other.yaml"
    other.write_text("spacing: [4.0, 3.0, 3.0]\npatch_size: [16, 32, 32]\n")
    proc = ccq_run("prepare", "--collection", str(raw / "collection.yaml"), "--out", str(out), "--no-progress",
                   "--preprocessing", str(other))  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert json.loads((out / "preprocessing.json").read_text())["spacing"] == [4.0, 3.0, 3.0]
