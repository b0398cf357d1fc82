"""Score predicted motion against the DualTalk dataset with the paper's metrics.

Predictions are our NPZ files or the published code's ``X_speakerK.npy`` arrays
([T, 56] float). Each prediction ``X_speakerK`` is compared with the ground
truth ``X_speakerK.npz`` and, for P-FD and rPCC, the partner's ground truth
``X_speaker(3-K).npz``, as the published ``metric/metric.py`` does. Metrics are
computed per file (see :mod:`dualtalk_cli.metrics`) and averaged over files.

SciPy and scikit-learn are imported only when an evaluation runs, so importing
this module (for the command line) stays cheap.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dualtalk_cli.arrays import NPY_KEY, read_arrays
from dualtalk_cli.audio import MAX_FRAMES
from dualtalk_cli.errors import EvaluationError, MotionFileError
from dualtalk_cli.metrics import (
    GROUPS,
    HIGHER_IS_BETTER,
    METRIC_LABELS,
    METRICS,
    PUBLICATION_SCALE,
    SID_CLUSTERS,
    MetricTable,
    clip_metrics,
    scale_for_publication,
)
from dualtalk_cli.motion import N_NETWORK, load_motion, split_speaker_name

# progress(stage, done, total): called once per scored file, stage "evaluate".
Progress = Callable[[str, int, int], None]
Notify = Callable[[str], None]

PREDICTION_SUFFIXES = (".npz", ".npy")


@dataclass(frozen=True)
class FileResult:
    """The metrics of one predicted speaker file."""

    name: str  # the file's stem, e.g. "clip_speaker1"
    prediction: str  # path of the prediction file
    n_frames: int  # frames scored: the shortest of the three lengths
    lengths: tuple[int, int, int]  # frames of prediction, ground truth, partner
    metrics: MetricTable  # metric -> group -> raw value (NaN where undefined)


@dataclass(frozen=True)
class Evaluation:
    """Per-file metrics and their means over files."""

    predictions: str  # the predictions folder or file as given
    ground_truth: str  # the ground-truth folder as given
    files: tuple[FileResult, ...]  # one row per scored file, sorted by name
    means: MetricTable  # metric -> group -> mean over files, NaNs left out
    scaled_means: MetricTable  # means x PUBLICATION_SCALE, as in the papers
    undefined: dict[str, dict[str, int]]  # metric -> group -> files with NaN
    n_files: int  # files scored
    n_clips: int  # distinct clips among them
    n_left_out: int  # prediction files that could not be paired
    sklearn_version: str  # SID's k-means results depend on it
    notes: tuple[str, ...]  # every remark also passed to notify

    @property
    def scale_factors(self) -> dict[str, dict[str, float]]:
        """metric -> group -> factor the scaled means were multiplied by."""
        return PUBLICATION_SCALE


def evaluate(
    predictions: str | os.PathLike,
    ground_truth: str | os.PathLike,
    *,
    progress: Progress | None = None,
    notify: Notify | None = None,
) -> Evaluation:
    """Score every prediction under ``predictions`` against ``ground_truth``.

    ``predictions`` is a file or a folder searched recursively (hidden files
    and folders, such as unfinished outputs, are skipped). ``ground_truth`` is
    a folder of dataset NPZ files ``X_speaker1.npz`` / ``X_speaker2.npz``.
    Predictions that cannot be paired or read (a broken file, NaN values) are
    left out with one remark each via ``notify``; a broken ground-truth file,
    or a prediction at another frame rate, raises a DualtalkError naming it.
    """
    import sklearn

    predictions_path, ground_truth_path = Path(predictions), Path(ground_truth)
    if not ground_truth_path.is_dir():
        reason = "is not a folder" if ground_truth_path.exists() else "not found"
        raise EvaluationError(f"ground-truth folder {reason}", ground_truth_path)
    files = _find_prediction_files(predictions_path)

    notes: list[str] = []

    def remark(message: str) -> None:
        notes.append(message)
        if notify:
            notify(message)

    pairs = _pair_with_ground_truth(files, ground_truth_path, remark)
    n_left_out = len(files) - len(pairs)
    if not pairs:
        raise EvaluationError(
            "no prediction named X_speaker1/X_speaker2 has its ground truth and "
            f"partner in {ground_truth_path}",
            predictions_path,
        )

    ground_truth_cache: dict[Path, tuple[np.ndarray, float]] = {}
    results: list[FileResult] = []
    broken: list[MotionFileError] = []
    for done, pair in enumerate(pairs, start=1):
        # Both speakers of a clip are adjacent (sorted by name) and share the
        # two ground-truth files, so only the current clip's are kept.
        ground_truth_cache = {
            p: ground_truth_cache[p]
            for p in (pair.truth, pair.partner)
            if p in ground_truth_cache
        }
        truth, truth_fps = _load_ground_truth(pair.truth, ground_truth_cache)
        partner, _ = _load_ground_truth(pair.partner, ground_truth_cache)
        try:
            prediction = load_prediction(pair.prediction, expected_fps=truth_fps)
        except MotionFileError as error:
            broken.append(error)
            continue
        lengths = (len(prediction), len(truth), len(partner))
        results.append(
            FileResult(
                name=pair.name,
                prediction=str(pair.prediction),
                n_frames=min(lengths),
                lengths=lengths,
                metrics=clip_metrics(prediction, truth, partner),
            )
        )
        if progress:
            progress("evaluate", done, len(pairs))

    if not results:  # nothing to score: the first broken file says why
        raise broken[0]
    for error in broken:
        remark(f"left out: {error}")
    n_left_out += len(broken)
    for message in _summary_notes(results):
        remark(message)
    means, undefined = _average(results)
    return Evaluation(
        predictions=str(predictions),
        ground_truth=str(ground_truth),
        files=tuple(results),
        means=means,
        scaled_means=scale_for_publication(means),
        undefined=undefined,
        n_files=len(results),
        n_clips=len({split_speaker_name(r.name)[0] for r in results}),
        n_left_out=n_left_out,
        sklearn_version=sklearn.__version__,
        notes=tuple(notes),
    )


@dataclass(frozen=True)
class _Pair:
    name: str
    prediction: Path
    truth: Path
    partner: Path


def _find_prediction_files(root: Path) -> list[Path]:
    """The .npz/.npy files at ``root``, which may be one file or a folder."""
    if not root.exists():
        raise EvaluationError("predictions not found", root)
    if root.is_file():
        if root.suffix.lower() not in PREDICTION_SUFFIXES:
            raise EvaluationError("is not a .npz or .npy prediction file", root)
        return [root]
    files = [
        path
        for path in sorted(root.rglob("*"))
        if path.suffix.lower() in PREDICTION_SUFFIXES
        and path.is_file()
        and not any(part.startswith(".") for part in path.relative_to(root).parts)
    ]
    if not files:
        raise EvaluationError("holds no .npz or .npy predictions", root)
    return files


def _pair_with_ground_truth(
    files: list[Path], ground_truth: Path, remark: Notify
) -> list[_Pair]:
    """Each prediction with its ground truth and partner, sorted by name."""
    by_name: dict[str, Path] = {}
    for path in files:
        if path.stem in by_name:
            raise EvaluationError(
                f"two predictions are named {path.stem}: {by_name[path.stem]} "
                f"and {path}; keep one"
            )
        by_name[path.stem] = path

    pairs = []
    for name in sorted(by_name):
        path = by_name[name]
        parsed = split_speaker_name(name)
        if parsed is None:
            remark(f"{path}: left out, the name does not end in _speaker1/_speaker2")
            continue
        clip, speaker = parsed
        truth = ground_truth / f"{name}.npz"
        partner = ground_truth / f"{clip}_speaker{3 - speaker}.npz"
        if not truth.is_file():
            remark(f"{path}: left out, no ground truth {truth}")
        elif not partner.is_file():
            remark(f"{path}: left out, no partner ground truth {partner}")
        else:
            pairs.append(_Pair(name, path, truth, partner))
    return pairs


def _load_ground_truth(
    path: Path, cache: dict[Path, tuple[np.ndarray, float]]
) -> tuple[np.ndarray, float]:
    """A dataset NPZ as a [T, 56] vector, with its frame rate."""
    if path not in cache:
        motion = load_motion(path)
        cache[path] = (motion.to_network(), motion.frames_per_second)
    return cache[path]


def load_prediction(
    path: str | os.PathLike, expected_fps: float | None = None
) -> np.ndarray:
    """A prediction file as a float32 [T, 56] DualTalk vector.

    ``.npy``: the published code's output, a float [T, 56] array. Otherwise an
    NPZ that :func:`~dualtalk_cli.motion.load_motion` reads (ours or the
    dataset's). ``expected_fps``: the ground truth's frame rate, which an NPZ
    that states its own must match, since the metrics compare frame by frame.
    """
    path = Path(path)
    if path.suffix.lower() != ".npy":
        motion = load_motion(path)
        if expected_fps is not None and motion.frames_per_second != expected_fps:
            raise EvaluationError(
                f"is at {motion.frames_per_second:g} fps but the ground truth is "
                f"at {expected_fps:g} fps; metrics compare frame by frame",
                path,
            )
        return motion.to_network()

    arrays = read_arrays(path, MotionFileError, ".npy file", max_rows=MAX_FRAMES)
    if NPY_KEY not in arrays:  # a renamed NPZ archive
        raise MotionFileError("is an NPZ archive, expected a .npy array", path)
    array = arrays[NPY_KEY]
    if array.dtype.kind != "f":
        raise MotionFileError(f"holds {array.dtype} values, expected floats", path)
    if array.ndim != 2 or array.shape[1] != N_NETWORK or len(array) < 1:
        raise MotionFileError(
            f"has shape {array.shape}, expected (T, {N_NETWORK}) "
            "[exp 50, jaw 3, neck 3]",
            path,
        )
    if not np.all(np.isfinite(array)):
        raise MotionFileError("holds NaN or infinite values", path)
    return array.astype(np.float32)


def _summary_notes(results: list[FileResult]) -> list[str]:
    """Remarks about the scored files as a whole: cropping and short clips."""
    notes = []
    cropped = [r for r in results if len(set(r.lengths)) > 1]
    if cropped:
        most = max(max(r.lengths) - r.n_frames for r in cropped)
        notes.append(
            f"{len(cropped)} of {len(results)} files cropped to the shortest of "
            f"prediction, ground truth and partner (at most {most} frames dropped)"
        )
    largest_k = max(SID_CLUSTERS.values())
    short = [r for r in results if r.n_frames < largest_k]
    if short:
        notes.append(
            f"{len(short)} files have fewer frames than SID's k-means clusters "
            f"({', '.join(f'{g} {k}' for g, k in SID_CLUSTERS.items())}); SID "
            "used one cluster per frame there (the published script would fail)"
        )
    return notes


def _average(
    results: list[FileResult],
) -> tuple[MetricTable, dict[str, dict[str, int]]]:
    """Means over files ignoring NaN, and how many files had NaN."""
    means: MetricTable = {metric: {} for metric in METRICS}
    undefined: dict[str, dict[str, int]] = {metric: {} for metric in METRICS}
    for metric in METRICS:
        for group in GROUPS:
            values = np.array([r.metrics[metric][group] for r in results])
            defined = values[~np.isnan(values)]
            undefined[metric][group] = int(len(values) - len(defined))
            means[metric][group] = float(defined.mean()) if len(defined) else math.nan
    return means, undefined


# ---------------------------------------------------------------- formatters


def _scale_label(factor: float) -> str:
    """x1, x10, x1e2, x1e3: how the published tables write their factors."""
    if factor in (1.0, 10.0):
        return f"x{factor:g}"
    exponent = math.log10(factor)
    return f"x1e{exponent:.0f}" if exponent.is_integer() else f"x{factor:g}"


def _cell(value: float) -> str:
    if math.isnan(value):
        return "n/a"
    text = f"{value:.2f}"
    return "0.00" if text == "-0.00" else text  # rounding noise below zero


def format_text(evaluation: Evaluation) -> str:
    """A table like the paper's: metrics by EXP/JAW/POSE, in published scale."""
    label_width = max(len(label) for label in METRIC_LABELS.values())
    column_width = 16
    lines = [
        f"DualTalk motion metrics: {evaluation.n_files} files from "
        f"{evaluation.n_clips} clips (values x scale factor, as published)",
        "",
        "metric".ljust(label_width)
        + "".join(group.rjust(column_width) for group in GROUPS),
    ]
    for metric in METRICS:
        cells = [
            f"{_cell(evaluation.scaled_means[metric][group])} "
            f"({_scale_label(PUBLICATION_SCALE[metric][group])})"
            for group in GROUPS
        ]
        lines.append(
            METRIC_LABELS[metric].ljust(label_width)
            + "".join(cell.rjust(column_width) for cell in cells)
        )
    lines.append("")
    lines.append("lower is better for FD, P-FD, MSE and rPCC; higher is better for SID")
    counts = f"{evaluation.n_files} files scored, {evaluation.n_clips} clips"
    if evaluation.n_left_out:
        counts += f", {evaluation.n_left_out} left out"
    lines.append(counts)
    missing = [
        f"{metric} {group} in {count} file{'s' if count != 1 else ''}"
        for metric in METRICS
        for group, count in evaluation.undefined[metric].items()
        if count
    ]
    if missing:
        lines.append("undefined, left out of the mean: " + "; ".join(missing))
    lines.append(
        f"scikit-learn {evaluation.sklearn_version} (SID's k-means depends on it)"
    )
    return "\n".join(lines) + "\n"


def _json_number(value: float) -> float | None:
    return None if math.isnan(value) else value  # JSON has no NaN


def _json_table(table: MetricTable) -> dict[str, dict[str, float | None]]:
    return {
        metric: {group: _json_number(value) for group, value in groups.items()}
        for metric, groups in table.items()
    }


def format_json(evaluation: Evaluation) -> str:
    """One JSON document: means raw and scaled, factors, per-file values, counts.

    Undefined values (NaN) are written as null.
    """
    document = {
        "predictions": evaluation.predictions,
        "ground_truth": evaluation.ground_truth,
        "n_files": evaluation.n_files,
        "n_clips": evaluation.n_clips,
        "n_left_out": evaluation.n_left_out,
        "sklearn_version": evaluation.sklearn_version,
        "groups": {
            group: [channels.start, channels.stop] for group, channels in GROUPS.items()
        },
        "higher_is_better": {metric: metric in HIGHER_IS_BETTER for metric in METRICS},
        "scale_factors": PUBLICATION_SCALE,
        "means": _json_table(evaluation.means),
        "scaled_means": _json_table(evaluation.scaled_means),
        "undefined": evaluation.undefined,
        "files": [
            {
                "name": result.name,
                "prediction": result.prediction,
                "n_frames": result.n_frames,
                "prediction_frames": result.lengths[0],
                "ground_truth_frames": result.lengths[1],
                "partner_frames": result.lengths[2],
                "metrics": _json_table(result.metrics),
            }
            for result in evaluation.files
        ],
        "notes": list(evaluation.notes),
    }
    return json.dumps(document, indent=2, allow_nan=False) + "\n"


def _csv_number(value: float) -> str:
    return "" if math.isnan(value) else repr(value)  # empty marks undefined


def format_csv(evaluation: Evaluation, per_file: bool = False) -> str:
    """CSV of the means (metric, group, value, scaled, scale) or, with
    ``per_file``, one row per file with a ``METRIC_GROUP`` column each.

    Undefined values are empty cells.
    """
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    if not per_file:
        writer.writerow(["metric", "group", "value", "scaled", "scale"])
        for metric in METRICS:
            for group in GROUPS:
                writer.writerow(
                    [
                        metric,
                        group,
                        _csv_number(evaluation.means[metric][group]),
                        _csv_number(evaluation.scaled_means[metric][group]),
                        f"{PUBLICATION_SCALE[metric][group]:g}",
                    ]
                )
        return buffer.getvalue()

    metric_columns = [(metric, group) for metric in METRICS for group in GROUPS]
    writer.writerow(
        [
            "name",
            "prediction",
            "n_frames",
            "prediction_frames",
            "ground_truth_frames",
            "partner_frames",
            *(f"{metric}_{group}" for metric, group in metric_columns),
        ]
    )
    for result in evaluation.files:
        writer.writerow(
            [
                result.name,
                result.prediction,
                result.n_frames,
                *result.lengths,
                *(_csv_number(result.metrics[m][g]) for m, g in metric_columns),
            ]
        )
    return buffer.getvalue()


def check_report_path(
    path: str | os.PathLike,
    *,
    overwrite: bool = False,
    inputs: tuple[str | os.PathLike, ...] = (),
) -> Path:
    """Fail before any scoring if the report cannot be written to ``path``, or
    would replace one of ``inputs`` (the files or folders being scored)."""
    from dualtalk_cli.errors import OutputError

    path = Path(path)
    if path.is_dir():
        raise OutputError("is a folder, not a file for the report", path)
    if path.exists() and any(_within(path, given) for given in inputs):
        raise OutputError("is one of the files being scored; not replacing it", path)
    if path.exists() and not overwrite:
        raise OutputError("already exists; pass --overwrite to replace it", path)
    if not path.parent.is_dir():
        raise OutputError("folder not found", path.parent)
    return path


def _within(path: Path, given: str | os.PathLike) -> bool:
    """Whether ``path`` is the file ``given`` or lies in the folder ``given``."""
    path, given = path.resolve(), Path(given).resolve()
    return path == given or given in path.parents


def write_report(
    path: str | os.PathLike, text: str, *, overwrite: bool = False
) -> Path:
    """Write ``text`` to ``path`` under a temporary name, renamed when complete."""
    from dualtalk_cli.outputs import atomic_file

    path = check_report_path(path, overwrite=overwrite)
    with atomic_file(path) as temporary:
        temporary.write_text(text, encoding="utf-8")
    return path
