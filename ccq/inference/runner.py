"""The whole of ``ccq predict`` (the folder runner): find the inputs (one CT or a folder of cases), check everything
that can fail before any work, then predict and write case after case (a task at a time, so a large CT never has all
its tasks at full resolution in memory)."""

from __future__ import annotations

import contextlib
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ccq.data.collection import CHANNELS, TaskSpec
from ccq.errors import CCQError, Interrupted
from ccq.io import CaseInput, IntensityWarning, find_cases, read_case
from ccq.io.inputs import probe_case
from ccq.utils import fs
from ccq.utils.command_line import flag


@dataclass(frozen=True)
class PredictOptions:
    """What ``ccq predict`` was asked (see its --help)."""

    input_path: Path = flag("-i")
    output: Path = flag("-o")
    model: Path = flag("--model")
    tasks: tuple[str, ...] = flag("--tasks", ("all",), spelling="repeat")
    series: str | None = flag("--series", None)
    device: str = flag("--device", "auto")
    tta: bool | None = flag("--tta", None, negative="--no-tta")
    overlap: float = flag("--overlap", 0.5)
    postprocess: str = flag("--postprocess", "official")
    save_probabilities: bool = flag("--save-probabilities", False)
    overlays: bool = flag("--overlays", False)
    batch_size: int = flag("--batch-size", 1)
    overwrite: bool = flag("--overwrite", False)
    progress: bool = flag("--progress", True, negative="--no-progress")


def structure_names(specs: list[TaskSpec]) -> dict[tuple[str, str], str]:
    """(task, channel) -> the name an overlay picture uses: the channel's human name ("liver tumor"), or
    "task channel" where two tasks would share one."""
    names = {(t.name, c): t.channel_names[c] for t in specs for c in CHANNELS if c in t.channel_names}
    values = list(names.values())
    return {k: (v if values.count(v) == 1 else f"{k[0]} {k[1]}") for k, v in names.items()}


def _overlay_paths(out_dir: Path, specs: list[TaskSpec]) -> list[Path]:
    from ccq.viz.overlays import overlay_files

    return overlay_files(list(structure_names(specs).values()), out_dir)


@contextlib.contextmanager
def _intensity_warnings_to(echo: Callable[..., None]):
    """Print `IntensityWarning`s as ``ccq: warning: ...`` lines (others as usual)."""
    with warnings.catch_warnings():
        warnings.simplefilter("always", IntensityWarning)
        original = warnings.showwarning

        def show(message, category, filename, lineno, file=None, line=None):
            if issubclass(category, IntensityWarning):
                echo(f"ccq: warning: {message}", err=True)
            else:
                original(message, category, filename, lineno, file, line)

        warnings.showwarning = show  # catch_warnings puts the original back
        yield


def run_predict(options: PredictOptions, echo: Callable[..., None] = print, predictor=None) -> list[Path]:
    """Predict every case of ``options.input_path``; returns the case folders written.

    ``predictor``: a ready `Predictor` to use instead of loading ``options.model`` with the options' settings
    (a benchmark's stand-in model, or one loaded once for several runs)."""
    from ccq.inference.predictor import Predictor
    from ccq.inference.writer import LABELS_FILE, OVERLAYS_DIR, CaseWriter, check_outputs_free, output_paths
    from ccq.utils.progress import progress_bar

    fs.check_output_folder(options.output, "-o")
    cases: list[CaseInput] = find_cases(options.input_path, options.series)
    for case in cases:
        fs.check_name(case.name, "case name", f"input {case.path}")  # OUT/NAME: an input ...nii.gz would be OUT/..
        probe_case(case)  # headers only: a bad file in a batch fails now, with nothing written
    # One input: a bar over its windows (minutes on a CPU); several: a bar over the cases.
    if predictor is None:
        predictor = Predictor(
            options.model, device=options.device, overlap=options.overlap, tta=options.tta,
            postprocess=options.postprocess, batch_size=options.batch_size,
            progress=options.progress and len(cases) == 1,
        )  # fmt: skip
    specs = predictor.resolve_tasks(list(options.tasks))
    names = [t.name for t in specs]
    planned = [
        p for c in cases for p in output_paths(options.output, c.name, names, probabilities=options.save_probabilities)
    ]
    if options.overlays:
        try:
            planned += [p for c in cases for p in _overlay_paths(options.output / c.name / OVERLAYS_DIR, specs)]
        except ImportError as err:
            raise CCQError(f"--overlays: the picture module is not available ({err})") from err
    check_outputs_free(planned, options.overwrite)  # before any work
    settings = predictor.settings()
    done: list[Path] = []
    bar = progress_bar(
        cases, desc="predict", unit="case", disable=not options.progress or len(cases) < 2, file=sys.stderr
    )
    try:
        for case in bar:
            with _intensity_warnings_to(echo):
                image = read_case(case)
                prepared = predictor.prepare(image, tasks=specs)
            if not options.overlays:
                del image  # the prediction does not need the CT any more: free its memory
            writer = CaseWriter(
                options.output, case.name, affine=prepared.affine, header=prepared.header, overwrite=options.overwrite
            )
            masks: dict[str, object] = {}
            labelled = structure_names(specs)
            for result in predictor.iter_tasks(prepared, specs, keep_probabilities=options.save_probabilities):
                writer.write_task(
                    result.task, result.label, probabilities=result.probabilities,
                    rule=None if result.rule is None else result.rule.to_dict(),
                )  # fmt: skip
                if options.overlays:
                    masks.update({labelled[(result.task.name, c)]: m for c, m in result.masks.items()})
                del result
            extra = {**settings, **({"series": case.series} if case.series else {})}
            if options.overlays:
                from ccq.viz.overlays import write_overlays

                pictures = write_overlays(image.array, image.affine, masks, writer.case_dir / OVERLAYS_DIR)
                extra["overlays"] = [str(p.relative_to(writer.case_dir)) for p in pictures]
                del image, masks
            writer.finish(extra, source=prepared.source)
            echo(f"{case.path.name}: {', '.join(names)} -> {writer.case_dir}")
            done.append(writer.case_dir)
    except KeyboardInterrupt:
        partial = [c.name for c in cases[len(done) : len(done) + 1] if (options.output / c.name).exists()]
        again = "run the command again" + (" with --overwrite (or -i naming the rest)" if done or partial else "")
        raise Interrupted(
            f"{len(done)} of {len(cases)} case(s) complete in {options.output} (each with its {LABELS_FILE})"
            f"{''.join(f'; {name} is partly written (no {LABELS_FILE})' for name in partial)}; to finish, {again}"
        ) from None
    return done
