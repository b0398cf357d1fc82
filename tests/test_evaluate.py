"""evaluate(): prediction files paired with DualTalk dataset NPZs, and its reports."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile

from conftest import run_cli
from dualtalk_cli.errors import DualtalkError
from dualtalk_cli.evaluate import evaluate, format_csv, format_json, format_text
from dualtalk_cli.metrics import GROUPS, METRIC_LABELS, METRICS, PUBLICATION_SCALE
from dualtalk_cli.motion import Motion, load_motion
from dualtalk_cli.testing import voice, write_dataset_npz

N_FRAMES = 50
# A dot in a clip name broke the published test script's name parsing.
CLIPS = ("clipA", "clip.B")
ZERO_FOR_IDENTICAL = ("FD", "P-FD", "MSE", "rPCC")


def write_clip_npz(path: Path, n_frames: int, seed: int) -> Path:
    """A dataset NPZ whose neck, jaw and expression all vary over time."""
    write_dataset_npz(path, n_frames, seed)
    with np.load(path) as data:
        arrays = dict(data)
    # conftest's head pose is constant; vary it so correlations are defined.
    rng = np.random.default_rng(seed + 100)
    arrays["pose"] = rng.normal(0, 0.1, (n_frames, 6)).astype(np.float32)
    np.savez(path, **arrays)
    return path


def network(path: Path) -> np.ndarray:
    return load_motion(path).to_network()


def make_ground_truth(folder: Path) -> Path:
    """Two clips, both speakers each, plus a .wav that must be ignored."""
    folder.mkdir()
    for index, clip in enumerate(CLIPS):
        for speaker in (1, 2):
            path = folder / f"{clip}_speaker{speaker}.npz"
            write_clip_npz(path, N_FRAMES, 10 * index + speaker)
    (folder / "clipA_speaker1.wav").write_bytes(b"RIFF not really audio")
    return folder


@pytest.fixture
def ground_truth(tmp_path: Path) -> Path:
    return make_ground_truth(tmp_path / "gt")


def write_npy_predictions(ground_truth: Path, folder: Path) -> dict[str, Path]:
    """Every ground-truth file as a published-style [T, 56] .npy prediction."""
    folder.mkdir(exist_ok=True)
    paths = {}
    for truth in sorted(ground_truth.glob("*.npz")):
        paths[truth.stem] = folder / f"{truth.stem}.npy"
        np.save(paths[truth.stem], network(truth))
    return paths


def row(evaluation, name: str):
    (result,) = [r for r in evaluation.files if r.name == name]
    return result


# ------------------------------------------------------------------ scoring


def test_ground_truth_against_itself_scores_zero(ground_truth):
    calls, remarks = [], []
    evaluation = evaluate(
        ground_truth,
        ground_truth,
        progress=lambda *args: calls.append(args),
        notify=remarks.append,
    )
    assert (evaluation.n_files, evaluation.n_clips, evaluation.n_left_out) == (4, 2, 0)
    assert [r.name for r in evaluation.files] == [
        "clip.B_speaker1",
        "clip.B_speaker2",
        "clipA_speaker1",
        "clipA_speaker2",
    ]
    for metric in ZERO_FOR_IDENTICAL:
        for group in GROUPS:
            assert evaluation.means[metric][group] == pytest.approx(0, abs=1e-5)
            for result in evaluation.files:
                assert result.metrics[metric][group] == pytest.approx(0, abs=1e-5)
    assert evaluation.means["SID_published"] == evaluation.means["SID_corrected"]
    assert evaluation.means["SID_corrected"]["EXP"] > 1  # varied expressions
    assert calls == [("evaluate", done, 4) for done in range(1, 5)]
    assert remarks == [] and evaluation.notes == ()
    assert all(
        count == 0 for g in evaluation.undefined.values() for count in g.values()
    )

    import sklearn

    assert evaluation.sklearn_version == sklearn.__version__


def test_npy_predictions_are_matched_by_name_and_jaw_offset_scores_on_jaw(
    ground_truth, tmp_path
):
    paths = write_npy_predictions(ground_truth, tmp_path / "pred")
    shifted = np.load(paths["clipA_speaker2"])
    shifted[:, 50:53] += np.float32(0.2)
    np.save(paths["clipA_speaker2"], shifted)

    evaluation = evaluate(tmp_path / "pred", ground_truth)
    assert evaluation.n_files == 4
    result = row(evaluation, "clipA_speaker2")
    assert result.prediction == str(paths["clipA_speaker2"])
    assert result.metrics["MSE"]["JAW"] == pytest.approx(0.04, rel=1e-5)
    assert result.metrics["FD"]["JAW"] == pytest.approx(0.12, rel=1e-4)  # 3 x 0.2^2
    assert result.metrics["MSE"]["EXP"] == 0.0
    assert result.metrics["MSE"]["POSE"] == 0.0
    assert result.metrics["FD"]["EXP"] == pytest.approx(0, abs=1e-5)
    # The partner was untouched, so its own row stays perfect.
    assert row(evaluation, "clipA_speaker1").metrics["MSE"]["JAW"] == 0.0
    # Mean over four files, then the publication factor x1e3.
    assert evaluation.means["MSE"]["JAW"] == pytest.approx(0.01, rel=1e-5)
    assert evaluation.scaled_means["MSE"]["JAW"] == pytest.approx(10.0, rel=1e-5)
    assert evaluation.scaled_means["MSE"]["EXP"] == 0.0


def test_batch_output_layout_is_searched_recursively(ground_truth, tmp_path):
    out = tmp_path / "out"
    for speaker in (1, 2):
        name = f"clipA_speaker{speaker}"
        (out / "clipA").mkdir(parents=True, exist_ok=True)
        Motion.from_network(network(ground_truth / f"{name}.npz")).save(
            out / "clipA" / f"{name}.npz"
        )
    # An unfinished output is hidden and must be skipped without a remark.
    (out / "clipA" / ".clipA_speaker1.npz.partial.npz").write_bytes(b"partial")
    (out / "clipA" / "clipA.mp4").write_bytes(b"not scored")

    remarks = []
    evaluation = evaluate(out, ground_truth, notify=remarks.append)
    assert [r.name for r in evaluation.files] == ["clipA_speaker1", "clipA_speaker2"]
    assert evaluation.n_clips == 1 and remarks == []
    assert evaluation.means["MSE"]["EXP"] == 0.0


def test_a_single_prediction_file(ground_truth, tmp_path):
    paths = write_npy_predictions(ground_truth, tmp_path / "pred")
    evaluation = evaluate(paths["clip.B_speaker2"], ground_truth)
    assert [r.name for r in evaluation.files] == ["clip.B_speaker2"]


def test_mismatched_lengths_are_cropped(ground_truth, tmp_path):
    paths = write_npy_predictions(ground_truth, tmp_path / "pred")
    np.save(paths["clipA_speaker1"], np.load(paths["clipA_speaker1"])[:43])
    remarks = []
    evaluation = evaluate(paths["clipA_speaker1"], ground_truth, notify=remarks.append)
    result = row(evaluation, "clipA_speaker1")
    assert result.n_frames == 43
    assert result.lengths == (43, N_FRAMES, N_FRAMES)
    for metric in ZERO_FOR_IDENTICAL:
        assert result.metrics[metric]["EXP"] == pytest.approx(0, abs=1e-5)
    assert len(remarks) == 1 and "cropped" in remarks[0] and "7 frames" in remarks[0]


def test_constant_prediction_has_undefined_rpcc_counted(ground_truth, tmp_path):
    paths = write_npy_predictions(ground_truth, tmp_path / "pred")
    np.save(paths["clipA_speaker1"], np.zeros((N_FRAMES, 56), np.float32))

    evaluation = evaluate(tmp_path / "pred", ground_truth)
    assert np.isnan(row(evaluation, "clipA_speaker1").metrics["rPCC"]["EXP"])
    assert evaluation.undefined["rPCC"] == {"EXP": 1, "JAW": 1, "POSE": 1}
    assert evaluation.undefined["MSE"] == {"EXP": 0, "JAW": 0, "POSE": 0}
    # The other three files are perfect, so the mean of the defined ones is 0.
    assert evaluation.means["rPCC"]["EXP"] == pytest.approx(0, abs=1e-12)
    # A constant prediction falls into one cluster: corrected SID 0.
    assert row(evaluation, "clipA_speaker1").metrics["SID_corrected"][
        "EXP"
    ] == pytest.approx(0, abs=1e-5)

    alone = evaluate(paths["clipA_speaker1"], ground_truth)
    assert np.isnan(alone.means["rPCC"]["JAW"])
    document = json.loads(format_json(alone))
    assert document["means"]["rPCC"]["JAW"] is None
    assert document["undefined"]["rPCC"]["JAW"] == 1
    summary = list(csv.DictReader(io.StringIO(format_csv(alone))))
    (jaw,) = [r for r in summary if r["metric"] == "rPCC" and r["group"] == "JAW"]
    assert jaw["value"] == "" and jaw["scaled"] == ""
    text = format_text(alone)
    assert "n/a" in text and "rPCC JAW in 1 file;" in text


# ------------------------------------------------------------------ pairing


def test_unmatched_names_are_left_out_with_a_remark(ground_truth, tmp_path):
    paths = write_npy_predictions(ground_truth, tmp_path / "pred")
    vector = np.load(paths["clipA_speaker1"])
    np.save(tmp_path / "pred" / "summary.npy", vector)  # no _speakerK
    np.save(tmp_path / "pred" / "ghost_speaker1.npy", vector)  # no ground truth
    write_clip_npz(ground_truth / "lonely_speaker1.npz", N_FRAMES, 77)
    np.save(tmp_path / "pred" / "lonely_speaker1.npy", vector)  # no partner

    remarks = []
    evaluation = evaluate(tmp_path / "pred", ground_truth, notify=remarks.append)
    assert evaluation.n_files == 4 and evaluation.n_left_out == 3
    assert len(remarks) == 3
    for name, reason in (
        ("summary.npy", "_speaker1/_speaker2"),
        ("ghost_speaker1.npy", "no ground truth"),
        ("lonely_speaker1.npy", "no partner ground truth"),
    ):
        (remark,) = [r for r in remarks if name in r]
        assert reason in remark and "left out" in remark
    assert evaluation.notes == tuple(remarks)


def test_no_match_at_all_names_the_folder(ground_truth, tmp_path):
    folder = tmp_path / "strangers"
    folder.mkdir()
    np.save(folder / "nobody_speaker1.npy", np.zeros((5, 56), np.float32))
    with pytest.raises(DualtalkError, match="strangers"):
        evaluate(folder, ground_truth, notify=lambda message: None)


def test_missing_folders_are_errors(ground_truth, tmp_path):
    with pytest.raises(DualtalkError, match="nowhere"):
        evaluate(tmp_path / "nowhere", ground_truth)
    with pytest.raises(DualtalkError, match="no-gt"):
        evaluate(ground_truth, tmp_path / "no-gt")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DualtalkError, match="empty"):
        evaluate(empty, ground_truth)


def test_the_same_name_twice_is_an_error_naming_both(ground_truth, tmp_path):
    paths = write_npy_predictions(ground_truth, tmp_path / "pred")
    (tmp_path / "pred" / "sub").mkdir()
    twin = tmp_path / "pred" / "sub" / "clipA_speaker1.npz"
    Motion.from_network(np.load(paths["clipA_speaker1"])).save(twin)
    with pytest.raises(DualtalkError) as caught:
        evaluate(tmp_path / "pred", ground_truth)
    assert str(paths["clipA_speaker1"]) in str(caught.value)
    assert str(twin) in str(caught.value)


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (np.zeros((N_FRAMES, 55), np.float32), "(T, 56)"),
        (np.zeros((N_FRAMES,), np.float32), "(T, 56)"),
        (np.zeros((0, 56), np.float32), "(T, 56)"),
        (np.zeros((N_FRAMES, 56), np.int32), "int32"),
        (np.full((N_FRAMES, 56), np.nan, np.float32), "NaN"),
        (b"this is not an array", "not a readable"),
    ],
    ids=["width", "1-d", "empty", "dtype", "nan", "garbage"],
)
def test_a_bad_npy_is_left_out_with_one_line_naming_the_file(
    ground_truth, tmp_path, content, needle
):
    paths = write_npy_predictions(ground_truth, tmp_path / "pred")
    bad = paths["clip.B_speaker1"]
    if isinstance(content, bytes):
        bad.write_bytes(content)
    else:
        np.save(bad, content)
    remarks = []
    evaluation = evaluate(tmp_path / "pred", ground_truth, notify=remarks.append)
    # One broken prediction does not stop the others from being scored.
    assert evaluation.n_files == 3 and evaluation.n_left_out == 1
    (message,) = [remark for remark in remarks if str(bad) in remark]
    assert message.startswith("left out:") and needle in message
    assert "\n" not in message
    only = tmp_path / "only"
    only.mkdir()
    bad.rename(only / bad.name)
    with pytest.raises(DualtalkError) as caught:  # nothing left to score
        evaluate(only, ground_truth)
    assert needle in str(caught.value) and "\n" not in str(caught.value)


def test_npz_at_another_frame_rate_is_an_error(ground_truth, tmp_path):
    prediction = tmp_path / "clipA_speaker1.npz"
    vectors = network(ground_truth / "clipA_speaker1.npz")
    Motion.from_network(vectors, frames_per_second=30).save(prediction)
    with pytest.raises(DualtalkError, match="30 fps"):
        evaluate(prediction, ground_truth)


# ------------------------------------------------------------------ reports


@pytest.fixture(scope="module")
def shifted_evaluation(tmp_path_factory):
    """Four files, one with its jaw 0.2 off, and one file left out."""
    tmp_path = tmp_path_factory.mktemp("reports")
    ground_truth = make_ground_truth(tmp_path / "gt")
    paths = write_npy_predictions(ground_truth, tmp_path / "pred")
    vector = np.load(paths["clipA_speaker2"])
    vector[:, 50:53] += np.float32(0.2)
    np.save(paths["clipA_speaker2"], vector)
    np.save(tmp_path / "pred" / "extra.npy", vector)  # left out
    return evaluate(tmp_path / "pred", ground_truth)


def test_format_json(shifted_evaluation):
    document = json.loads(format_json(shifted_evaluation))
    for key in (
        "means",
        "scaled_means",
        "scale_factors",
        "undefined",
        "files",
        "n_files",
        "n_clips",
        "n_left_out",
        "sklearn_version",
        "notes",
    ):
        assert key in document, key
    assert (document["n_files"], document["n_clips"], document["n_left_out"]) == (
        4,
        2,
        1,
    )
    for table in ("means", "scaled_means", "scale_factors", "undefined"):
        assert list(document[table]) == list(METRICS)
        for metric in METRICS:
            assert list(document[table][metric]) == list(GROUPS)
    assert document["means"]["MSE"]["JAW"] == pytest.approx(0.01, rel=1e-5)
    assert document["scaled_means"]["MSE"]["JAW"] == pytest.approx(10, rel=1e-5)
    assert document["scale_factors"]["rPCC"]["EXP"] == 100
    (file,) = [f for f in document["files"] if f["name"] == "clipA_speaker2"]
    assert file["n_frames"] == N_FRAMES
    assert file["metrics"]["MSE"]["JAW"] == pytest.approx(0.04, rel=1e-5)


def test_format_csv_summary_and_per_file(shifted_evaluation):
    summary = list(csv.DictReader(io.StringIO(format_csv(shifted_evaluation))))
    assert list(summary[0]) == ["metric", "group", "value", "scaled", "scale"]
    assert [(r["metric"], r["group"]) for r in summary] == [
        (m, g) for m in METRICS for g in GROUPS
    ]
    (jaw,) = [r for r in summary if r["metric"] == "MSE" and r["group"] == "JAW"]
    assert float(jaw["value"]) == pytest.approx(0.01, rel=1e-5)
    assert float(jaw["scaled"]) == pytest.approx(10, rel=1e-5)
    assert float(jaw["scale"]) == PUBLICATION_SCALE["MSE"]["JAW"]

    per_file = list(
        csv.DictReader(io.StringIO(format_csv(shifted_evaluation, per_file=True)))
    )
    assert [r["name"] for r in per_file] == [r.name for r in shifted_evaluation.files]
    (shifted,) = [r for r in per_file if r["name"] == "clipA_speaker2"]
    assert int(shifted["n_frames"]) == N_FRAMES
    assert float(shifted["MSE_JAW"]) == pytest.approx(0.04, rel=1e-5)
    assert float(shifted["MSE_EXP"]) == 0.0
    assert {f"{m}_{g}" for m in METRICS for g in GROUPS} <= set(shifted)


def test_format_text_table(shifted_evaluation):
    text = format_text(shifted_evaluation)
    lines = text.splitlines()
    header = next(line for line in lines if line.startswith("metric"))
    assert header.split()[1:] == ["EXP", "JAW", "POSE"]
    for metric in METRICS:
        (line,) = [x for x in lines if x.startswith(METRIC_LABELS[metric] + " ")]
        assert line.count("(x") == 3
    (mse,) = [x for x in lines if x.startswith("MSE ")]
    assert "10.00 (x1e3)" in mse and "0.00 (x10)" in mse
    assert "SID (published: k-means on prediction)" in text
    assert "SID (corrected: k-means on ground truth)" in text
    assert "lower is better" in text and "higher is better for SID" in text
    assert "4 files scored, 2 clips, 1 left out" in text
    assert shifted_evaluation.sklearn_version in text


def test_import_does_not_load_heavy_modules():
    code = (
        "import sys, dualtalk_cli.evaluate;"
        "print([m for m in ('scipy', 'sklearn', 'torch') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


# ---------------------------------------------------------------- the command


def test_cli_ground_truth_against_itself(ground_truth, tmp_path):
    result = run_cli("evaluate", ground_truth, ground_truth, "--format", "json")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["n_files"] == 4 and document["n_clips"] == 2
    for metric in ZERO_FOR_IDENTICAL:
        for group in GROUPS:
            assert abs(document["means"][metric][group]) < 1e-5, (metric, group)

    per_file = tmp_path / "files.csv"
    text = run_cli("evaluate", ground_truth, ground_truth, "--per-file", per_file)
    assert text.returncode == 0, text.stderr
    assert "SID (corrected: k-means on ground truth)" in text.stdout
    rows = list(csv.DictReader(per_file.open()))
    assert sorted(r["name"] for r in rows) == sorted(
        f"{clip}_speaker{k}" for clip in CLIPS for k in (1, 2)
    )
    again = run_cli("evaluate", ground_truth, ground_truth, "--per-file", per_file)
    assert again.returncode == 2 and "--overwrite" in again.stderr

    bad = tmp_path / "pred"
    bad.mkdir()
    np.save(bad / "clipA_speaker1.npy", np.zeros((10, 55), np.float32))
    failed = run_cli("evaluate", bad, ground_truth, "--format", "csv")
    assert failed.returncode == 2
    assert failed.stderr.count("\n") == 1 and "clipA_speaker1.npy" in failed.stderr
    assert "Traceback" not in failed.stderr and failed.stdout == ""


def test_batch_then_evaluate_on_a_dataset_layout(tmp_path):
    """A DualTalk-style folder (wav + npz per speaker): batch it, then score it."""
    data = tmp_path / "test"
    data.mkdir()
    for index, clip in enumerate(("x", "y")):
        for speaker, turn in ((1, (0.1, 0.9)), (2, (1.1, 1.9))):
            audio = voice(2.0, [turn], 110 + 90 * speaker, seed=index)
            soundfile.write(data / f"{clip}_speaker{speaker}.wav", audio, 16000)
            write_clip_npz(data / f"{clip}_speaker{speaker}.npz", 48, index + speaker)
    out = tmp_path / "out"
    batch = run_cli("batch", data, "-o", out, "--no-video", "--no-obj", "-q")
    assert batch.returncode == 0, batch.stderr
    result = run_cli("evaluate", out, data, "--format", "json")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["n_files"] == 4
    assert all(f["n_frames"] == 48 for f in document["files"])  # 50 cropped to 48
    assert "cropped" in result.stderr
    assert document["means"]["MSE"]["EXP"] > 0.01  # procedural motion is not GT


def test_cli_refuses_unknown_formats_and_unwritable_reports(ground_truth, tmp_path):
    result = run_cli("evaluate", ground_truth, ground_truth, "--format", "xml")
    assert result.returncode == 2 and "text, json or csv" in result.stderr
    missing = tmp_path / "nowhere" / "files.csv"
    result = run_cli("evaluate", ground_truth, ground_truth, "--per-file", missing)
    assert result.returncode == 2, result.stderr
    assert "nowhere: folder not found" in result.stderr
    assert result.stdout == ""  # refused before any scoring
