"""Collection files as data (reading, writing, the built-in collections' resources) and finding a dataset's cases
on disk. The dataclasses they become are in :mod:`ccq.data.collection`, which builds on this module.

The built-in MOTS collection is ``ccq/resources/collections/mots.yaml``; its train/test split comes from the
public DoDNet/CCQ lists ``ccq/resources/mots-split/MOTS_{train,test}.txt`` (image and label paths relative to
the authors' prepared root, one case per line; the folder prefix ``0Liver``, ``1Kidney`` ... is the task id).
"""

from __future__ import annotations

import difflib
import json
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import ccq.limits as limits
from ccq.data.collection_task import TaskSpec
from ccq.errors import CCQError
from ccq.utils.fs import check_name

BUILTIN_COLLECTIONS = ("mots",)
COLLECTION_SUFFIXES = (".yaml", ".yml", ".json")
NIFTI_SUFFIXES = (".nii.gz", ".nii")
# nnU-Net v2 appends a 4-digit channel index to image names (CASE_0000.nii.gz); MSD does not (CASE.nii.gz).
_CHANNEL_RE = re.compile(r"^(.+)_(\d{4})$")
_TASK_PREFIX_RE = re.compile(r"^(\d+)[A-Za-z]")


def _check_suffix(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in COLLECTION_SUFFIXES:
        raise CCQError(f"{path}: a collection file must end in {', '.join(COLLECTION_SUFFIXES)}")
    return suffix


def parse_collection_text(text: str, suffix: str, where: str) -> Any:
    """Parse JSON or YAML (every configuration file ccq reads); a syntax error becomes one line naming the file
    and the line. Resources are bounded (`ccq.limits`): the text's length, the nesting depth, JSON integers, and
    what YAML aliases may add (a few hundred bytes of nested aliases can stand for billions of values)."""
    if suffix == ".json":
        return limits.parse_json(text, where)
    import yaml

    limits.check_text_length(text, where)
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()  # yaml.safe_load, with the aliases measured before construction
        if node is None:
            return None
        _check_yaml_graph(node, where)
        return loader.construct_document(node)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise CCQError(f"{where}: invalid YAML{line}: {' '.join(str(problem).split())[:200]}") from None
    except RecursionError:
        depth = limits.MAX_NESTING.get()
        raise CCQError(f"{where}: YAML nested too deeply; expected at most {depth:g} levels") from None
    finally:
        loader.dispose()


def _yaml_children(node: Any) -> list[Any]:
    import yaml

    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return []


def _weight(node: Any) -> int:
    """A node's own size: one per value, and a text value's characters (an alias of a long text is long)."""
    return max(1, len(node.value)) if isinstance(node.value, str) else 1


def _check_yaml_graph(root: Any, where: str) -> None:
    """Refuse a YAML document whose aliases refer to themselves, add more than `ccq.limits.MAX_YAML_EXPANSION`
    values and characters to what is written, or nest deeper than `ccq.limits.MAX_NESTING`; measured on the
    composed nodes (each written once), without expanding anything."""
    sizes: dict[int, int] = {}  # node -> values and characters it stands for, aliases expanded
    written = 0
    heights: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[Any, bool]] = [(root, False)]
    while stack:
        node, finished = stack.pop()
        key = id(node)
        children = _yaml_children(node)
        if finished:
            on_path.discard(key)
            sizes[key] = _weight(node) + sum(sizes[id(c)] for c in children)
            written += _weight(node)
            heights[key] = 1 + max((heights[id(c)] for c in children), default=0)
            continue
        if key in sizes:
            continue
        if key in on_path:
            line = node.start_mark.line + 1 if node.start_mark is not None else "?"
            raise CCQError(f"{where}: the YAML value at line {line} contains itself (through an alias); expected a "
                           "finite document")  # fmt: skip
        on_path.add(key)
        stack.append((node, True))
        stack.extend((c, False) for c in children if id(c) not in sizes)
    expanded = sizes[id(root)]
    extra, limit = expanded - written, limits.MAX_YAML_EXPANSION.get()
    if extra > limit:
        raise CCQError(
            f"{where}: YAML aliases expand {written} written values and characters to {expanded:.4g}; expected "
            f"aliases to add at most {limit:.4g} ({limits.MAX_YAML_EXPANSION.hint()})"
        )
    depth, max_depth = heights[id(root)], limits.MAX_NESTING.get()
    if depth > max_depth:
        raise CCQError(f"{where}: YAML nested {depth} levels deep; expected at most {max_depth:g} "
                       f"({limits.MAX_NESTING.env})")  # fmt: skip


def read_collection_data(path: Path) -> Any:
    """The parsed data of a collection file: .yaml, .yml or .json, or an existing file without a suffix (JSON
    if it starts with ``{``, else YAML)."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise CCQError(
            f"{path}: is a folder; expected a collection file ({', '.join(COLLECTION_SUFFIXES)}) or a built-in "
            f"collection name ({', '.join(BUILTIN_COLLECTIONS)})"
        )
    suffix = "" if not path.suffix and path.is_file() else _check_suffix(path)
    if not path.is_file():
        raise CCQError(f"{path}: no such collection file")
    text = limits.read_text(path)
    if not suffix:
        suffix = ".json" if text.lstrip().startswith("{") else ".yaml"
    return parse_collection_text(text, suffix, str(path))


def write_collection_file(data: dict[str, Any], path: Path) -> Path:
    path = Path(path).expanduser()
    suffix = _check_suffix(path)
    if suffix == ".json":
        text = json.dumps(data, indent=2) + "\n"
    else:
        import yaml

        # YAML shows label values as plain integers ({0: background}) rather than quoted strings.
        def int_labels(item: dict[str, Any]) -> dict[str, Any]:
            return {**item, "labels": {int(k): v for k, v in item["labels"].items()}} if "labels" in item else item

        data = {**data, "tasks": [int_labels(t) for t in data["tasks"]]}
        if data.get("datasets"):
            data["datasets"] = [int_labels(d) for d in data["datasets"]]
        # Flow style for leaf lists/maps keeps labels and split lists compact and readable.
        body = yaml.safe_dump(data, sort_keys=False, default_flow_style=None, allow_unicode=True, width=110)
        text = "# ccq task collection (format: ccq.data.collection)\n" + body
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def builtin_collection_data(name: str) -> tuple[Any, tuple[dict[int, list[str]], dict[int, list[str]]] | None]:
    """The parsed data of a built-in collection, and its (train, test) split lists by task id if it has them."""
    key = name.lower()
    if key not in BUILTIN_COLLECTIONS:
        close = difflib.get_close_matches(key, BUILTIN_COLLECTIONS, n=1, cutoff=0.5)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise CCQError(f"no built-in collection {name!r}{hint}; built in: {', '.join(BUILTIN_COLLECTIONS)}")
    base = resources.files("ccq").joinpath("resources")
    text = base.joinpath("collections", f"{key}.yaml").read_text(encoding="utf-8")
    data = parse_collection_text(text, ".yaml", f"<built-in {key}>")
    if key != "mots":
        return data, None
    split_dir = base.joinpath("mots-split")
    train = parse_split_list(split_dir.joinpath("MOTS_train.txt").read_text(encoding="utf-8"))
    test = parse_split_list(split_dir.joinpath("MOTS_test.txt").read_text(encoding="utf-8"))
    return data, (train, test)


def case_id_from_filename(filename: str) -> tuple[str, int | None]:
    """``liver_0.nii.gz`` -> ("liver_0", None); ``liver_0_0000.nii.gz`` -> ("liver_0", 0): nnU-Net channel."""
    for suffix in NIFTI_SUFFIXES:
        if filename.lower().endswith(suffix):
            stem = filename[: -len(suffix)]
            break
    else:
        raise CCQError(f"{filename}: expected a NIfTI file ({', '.join(NIFTI_SUFFIXES)})")
    match = _CHANNEL_RE.match(stem)
    return (match.group(1), int(match.group(2))) if match else (stem, None)


def parse_split_list(text: str) -> dict[int, list[str]]:
    """Case ids per task id from a DoDNet/CCQ split list (``0Liver/imagesTr/liver_0.nii.gz  0Liver/...``)."""
    out: dict[int, list[str]] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()[0].split("/")
        task_id = next((int(m.group(1)) for p in parts if (m := _TASK_PREFIX_RE.match(p))), None)
        if task_id is None:
            raise CCQError(f"split list line {number}: no task folder (0Liver, 1Kidney ...) in {limits.quote(parts)}")
        # KiTS19 keeps each case in its own folder (case_00000/imaging.nii.gz): the folder is the case id.
        case_id = parts[-2] if parts[-1].startswith("imaging.") else case_id_from_filename(parts[-1])[0]
        out.setdefault(task_id, []).append(case_id)
    return out


@dataclass(frozen=True)
class CaseFiles:
    """One case of a dataset on disk; ``label`` is None where the dataset has no label file for it."""

    case_id: str
    image: Path
    label: Path | None


def _first_existing(folder: Path, stem: str) -> Path | None:
    for suffix in NIFTI_SUFFIXES:
        path = folder / f"{stem}{suffix}"
        if path.is_symlink() and not path.exists():
            raise CCQError(f"{path} is a broken symbolic link (to {path.readlink()}); expected a NIfTI file")
        if path.is_file():
            return path
    return None


def find_cases(task: TaskSpec, dataset_dir: Path) -> list[CaseFiles]:
    """Every case of ``task`` in ``dataset_dir``, sorted by case id.

    ``msd``: ``imagesTr/CASE.nii.gz`` (MSD) or ``imagesTr/CASE_0000.nii.gz`` (nnU-Net v2), labels
    ``labelsTr/CASE.nii.gz``. ``kits``: ``case_XXXXX/imaging.nii.gz`` + ``segmentation.nii.gz``.
    """
    dataset_dir = Path(dataset_dir)
    if not dataset_dir.is_dir():
        raise CCQError(f"task {task.name!r}: dataset folder {dataset_dir} does not exist")
    cases: dict[str, CaseFiles] = {}
    if task.layout == "msd":
        images = dataset_dir / "imagesTr"
        if not images.is_dir():
            raise CCQError(f"task {task.name!r}: {images} does not exist (layout 'msd' expects imagesTr/, labelsTr/)")
        for path in sorted(images.iterdir()):
            # MSD tarballs carry macOS "._liver_0.nii.gz" resource forks: not images.
            if path.name.startswith(".") or not path.name.lower().endswith(NIFTI_SUFFIXES):
                continue
            if path.is_symlink() and not path.exists():
                raise CCQError(f"{path} is a broken symbolic link (to {path.readlink()}); expected a NIfTI image")
            case_id, channel = case_id_from_filename(path.name)
            check_name(case_id, "case id", path)
            if channel not in (None, 0):
                raise CCQError(f"{path}: channel {channel:04d}; a CT dataset has a single channel (_0000)")
            if case_id in cases:
                raise CCQError(f"{path}: case {case_id!r} appears twice in {images} (CASE and CASE_0000?)")
            cases[case_id] = CaseFiles(case_id, path, _first_existing(dataset_dir / "labelsTr", case_id))
    else:
        for folder in sorted(p for p in dataset_dir.iterdir() if p.is_dir() and re.match(r"^case_\d+$", p.name)):
            image = _first_existing(folder, "imaging")
            if image is None:
                raise CCQError(f"{folder}: no imaging.nii.gz (layout 'kits')")
            cases[folder.name] = CaseFiles(folder.name, image, _first_existing(folder, "segmentation"))
    if not cases:
        raise CCQError(f"task {task.name!r}: no cases found in {dataset_dir} (layout {task.layout!r})")
    return [cases[k] for k in sorted(cases)]
