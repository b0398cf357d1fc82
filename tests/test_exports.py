"""Exports for animation tools: --format, the Live Link Face CSV, the WAV."""

from __future__ import annotations

import csv
import json
import re

import numpy as np
import pytest
import soundfile

from conftest import animate_pair, assert_one_line_error, leftovers, run_cli
from dualtalk_cli.livelink import BLENDSHAPE_COUNT, HEADER, livelink_columns
from dualtalk_cli.motion import ARKIT_NAMES, jaw_open_from_jaw, load_motion
from dualtalk_cli.testing import make_motion, write_dataset_npz, write_pair

LIVE_LINK_HEADER = (
    "Timecode,BlendShapeCount,"
    "EyeBlinkLeft,EyeLookDownLeft,EyeLookInLeft,EyeLookOutLeft,EyeLookUpLeft,"
    "EyeSquintLeft,EyeWideLeft,EyeBlinkRight,EyeLookDownRight,EyeLookInRight,"
    "EyeLookOutRight,EyeLookUpRight,EyeSquintRight,EyeWideRight,JawForward,JawRight,"
    "JawLeft,JawOpen,MouthClose,MouthFunnel,MouthPucker,MouthRight,MouthLeft,"
    "MouthSmileLeft,MouthSmileRight,MouthFrownLeft,MouthFrownRight,MouthDimpleLeft,"
    "MouthDimpleRight,MouthStretchLeft,MouthStretchRight,MouthRollLower,"
    "MouthRollUpper,MouthShrugLower,MouthShrugUpper,MouthPressLeft,MouthPressRight,"
    "MouthLowerDownLeft,MouthLowerDownRight,MouthUpperUpLeft,MouthUpperUpRight,"
    "BrowDownLeft,BrowDownRight,BrowInnerUp,BrowOuterUpLeft,BrowOuterUpRight,"
    "CheekPuff,CheekSquintLeft,CheekSquintRight,NoseSneerLeft,NoseSneerRight,"
    "TongueOut,HeadYaw,HeadPitch,HeadRoll,LeftEyeYaw,LeftEyePitch,LeftEyeRoll,"
    "RightEyeYaw,RightEyePitch,RightEyeRoll"
)


def read_csv(path) -> tuple[list[str], list[list[str]]]:
    with open(path, newline="") as file:
        rows = list(csv.reader(file))
    return rows[0], rows[1:]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A 2 s dialogue animated into NPZ, CSV and WAV."""
    folder = tmp_path_factory.mktemp("exports")
    out = animate_pair(folder, "npz,csv,wav")
    return (folder / "talk_speaker1.wav", folder / "talk_speaker2.wav"), out


def test_live_link_csv_columns_rows_and_values(exported):
    _, out = exported
    for name in ("talk_speaker1", "talk_speaker2"):
        header, rows = read_csv(out / f"{name}.csv")
        assert ",".join(header) == LIVE_LINK_HEADER == ",".join(HEADER)
        motion = load_motion(out / f"{name}.npz")
        assert len(rows) == motion.n_frames == 50
        assert {row[1] for row in rows} == {str(BLENDSHAPE_COUNT)} == {"61"}
        assert all(re.fullmatch(r"\d\d:\d\d:\d\d:\d\d\.\d\d\d", r[0]) for r in rows)
        assert rows[26][0] == "00:00:01:01.000"  # frame 26 at 25 fps
        values = np.array([[float(v) for v in row[2:]] for row in rows])
        np.testing.assert_allclose(values[:, :52], motion.arkit, atol=1e-6)
        np.testing.assert_allclose(values, livelink_columns(motion), atol=1e-6)
    assert leftovers(out) == []


def test_rotations_follow_the_documented_signs():
    # Head turned toward +x, tipped down, top tilted toward -x; eyes to +x.
    yaw = make_motion(1, neck_y=0.2)
    pitch = make_motion(1, neck_x=0.15)
    columns = {name: i - 2 for i, name in enumerate(HEADER)}
    assert livelink_columns(yaw)[0, columns["HeadYaw"]] == pytest.approx(0.2)
    assert livelink_columns(pitch)[0, columns["HeadPitch"]] == pytest.approx(0.15)
    roll = make_motion(1, neck_z=0.1)
    assert livelink_columns(roll)[0, columns["HeadRoll"]] == pytest.approx(0.1)
    eyes = make_motion(1)
    eyes.eyes[:, 1] = 0.3  # the left eye turns toward +x
    found = livelink_columns(eyes)[0]
    assert found[columns["LeftEyeYaw"]] == pytest.approx(0.3)
    assert found[columns["RightEyeYaw"]] == 0


def test_motion_without_arkit_gets_jaw_open_from_the_jaw(tmp_path):
    dataset = load_motion(write_dataset_npz(tmp_path / "clip.npz", 20))
    assert not dataset.arkit.any()
    columns = livelink_columns(dataset)
    jaw_open = columns[:, ARKIT_NAMES.index("jawOpen")]
    np.testing.assert_allclose(jaw_open, jaw_open_from_jaw(dataset.jaw_pose[:, 0]))
    assert jaw_open.max() > 0.5


def test_wav_is_the_conversations_audio(exported):
    (first, second), out = exported
    audio, rate = soundfile.read(out / "talk_speaker1_talk_speaker2.wav")
    assert rate == 16000 and audio.shape == (32000, 2)
    for channel, path in enumerate((first, second)):
        source, _ = soundfile.read(path)
        np.testing.assert_allclose(audio[:, channel], source, atol=1 / 32767 + 1e-6)


def test_format_lists_and_refusals(tmp_path):
    write_pair(tmp_path, "x", seconds=1.0)
    audio = (tmp_path / "x_speaker1.wav", tmp_path / "x_speaker2.wav")
    out = tmp_path / "out"
    unknown = run_cli("animate", *audio, "-o", out, "-f", "npz,gif")
    assert_one_line_error(unknown, "unknown output format 'gif'")
    assert not out.exists()
    nothing = run_cli("animate", *audio, "-o", out, "-f", "mp4", "--no-video")
    assert_one_line_error(nothing, "no output format")
    every = run_cli("animate", *audio, "-o", out, "-f", "all", "--no-video", "-q")
    assert every.returncode == 0, every.stderr
    assert sorted(p.name for p in out.iterdir()) == [
        "x_speaker1",
        "x_speaker1.csv",
        "x_speaker1.npz",
        "x_speaker1_x_speaker2.glb",
        "x_speaker1_x_speaker2.wav",
        "x_speaker2",
        "x_speaker2.csv",
        "x_speaker2.npz",
    ]


def test_batch_writes_and_resumes_the_chosen_formats(tmp_path):
    folder = tmp_path / "clips"
    folder.mkdir()
    write_pair(folder, "c0", seconds=1.0)
    out = tmp_path / "out"
    args = ("batch", folder, "-o", out, "--json", "-f", "csv")
    first = run_cli(*args)
    assert first.returncode == 0, first.stderr
    assert sorted(p.name for p in (out / "c0").iterdir()) == [
        "c0_speaker1.csv",
        "c0_speaker2.csv",
    ]
    again = run_cli(*args)
    events = [json.loads(line) for line in again.stdout.splitlines()]
    assert [e["event"] for e in events] == ["skipped", "summary"]


def test_a_csv_read_back_moves_the_head_as_the_npz_did(exported):
    from dualtalk_cli.animation import read_motion_file
    from dualtalk_cli.heads import load_head

    _, out = exported
    head = load_head("builtin")
    original = load_motion(out / "talk_speaker1.npz")
    again = read_motion_file(out / "talk_speaker1.csv")
    assert again.n_frames == original.n_frames and again.frames_per_second == 25
    np.testing.assert_allclose(
        head.vertices(again), head.vertices(original), atol=2e-5
    )  # metres: the CSV keeps six decimals


def test_export_converts_without_an_engine(exported, tmp_path):
    (first, second), out = exported
    dataset = write_dataset_npz(tmp_path / "clip_speaker1.npz", 40)
    target = tmp_path / "converted"
    args = ("export", dataset, out / "talk_speaker2.csv", "-o", target)
    result = run_cli(*args, "-f", "csv,wav,obj", "--audio", first, "--audio", second)
    assert result.returncode == 0, result.stderr
    assert "FLAME expression values have no ARKit equivalent" in result.stderr
    header, rows = read_csv(target / "clip_speaker1.csv")
    assert ",".join(header) == LIVE_LINK_HEADER and len(rows) == 50  # padded
    jaw_open = np.array([float(row[2 + ARKIT_NAMES.index("jawOpen")]) for row in rows])
    assert jaw_open.max() > 0.5
    assert len(list((target / "talk_speaker2").glob("*.obj"))) == 50
    audio, _ = soundfile.read(target / "clip_speaker1_talk_speaker2.wav")
    assert audio.shape == (32000, 2)
    again = run_cli(*args, "-f", "csv")
    assert_one_line_error(again, "already exists")


@pytest.mark.parametrize(
    "content, needle",
    [
        ("Timecode,BlendShapeCount,JawOpen\n00:00:00:00.000,1,0.5\n", "line 1"),
        (LIVE_LINK_HEADER + "\n00:00:00:00.000,61" + ",nan" * 61 + "\n", "line 2"),
        (LIVE_LINK_HEADER + "\n00:00:00:00.000,61,0.1\n", "line 2"),
    ],
    ids=["columns", "nan", "short-row"],
)
def test_export_refuses_a_bad_csv_in_one_line(tmp_path, content, needle):
    bad = tmp_path / "take.csv"
    bad.write_text(content)
    out = tmp_path / "out"
    result = run_cli("export", bad, "-o", out, "-f", "npz")
    assert_one_line_error(result, str(bad), needle)
    assert not out.exists()
    no_audio = run_cli("export", bad, "-o", out, "-f", "wav")
    assert_one_line_error(no_audio, "--audio")
