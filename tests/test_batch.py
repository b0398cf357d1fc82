"""`dualtalk batch`: finding conversations, failures, resuming, parallel jobs."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile

from conftest import assert_one_line_error, leftovers, run_cli
from dualtalk_cli.batch import BatchOptions, clip_plan, find_clips
from dualtalk_cli.errors import DualtalkError
from dualtalk_cli.options import ComputeOptions, EngineOptions, OutputOptions
from dualtalk_cli.testing import write_pair

SMALL = ("--size", "64")  # rendering is not what these tests are about


@pytest.fixture
def six_clips(tmp_path: Path) -> Path:
    """Five good pairs and one whose speaker1 file is not audio."""
    folder = tmp_path / "clips"
    folder.mkdir()
    for number in range(5):
        write_pair(folder, f"clip{number}", seed=number)
    write_pair(folder, "broken")
    (folder / "broken_speaker1.wav").write_bytes(b"RIFF-but-not-really")
    (folder / "notes.txt").write_text("not audio, not a conversation")
    return folder


def events(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def by_kind(lines: list[dict], kind: str) -> set[str]:
    return {event["clip"] for event in lines if event["event"] == kind}


def test_batch_reports_the_broken_clip_and_finishes_the_rest(six_clips, tmp_path):
    out = tmp_path / "out"
    result = run_cli("batch", six_clips, "-o", out, "--json", *SMALL)
    assert result.returncode == 3, result.stderr
    lines = events(result.stdout)  # stdout holds nothing but JSON lines
    good = {f"clip{number}" for number in range(5)}
    assert by_kind(lines, "done") == good
    assert by_kind(lines, "failed") == {"broken"}
    failure = next(event for event in lines if event["event"] == "failed")
    assert "broken_speaker1.wav" in failure["message"]
    summary = lines[-1]
    assert summary["event"] == "summary"
    assert (summary["done"], summary["skipped"], summary["failed"]) == (5, 0, 1)
    assert summary["exit_code"] == 3
    # The final table on stderr says the same, and names the failure.
    assert re.search(r"done +5\n", result.stderr), result.stderr
    assert re.search(r"failed +1\n", result.stderr), result.stderr
    assert "failed: broken: " in result.stderr and "Traceback" not in result.stderr
    # Each clip's outputs are what `animate` writes, in OUT/<clip>/.
    clip = out / "clip2"
    assert sorted(p.name for p in clip.iterdir()) == [
        "clip2_speaker1",
        "clip2_speaker1.npz",
        "clip2_speaker1_clip2_speaker2.mp4",
        "clip2_speaker2",
        "clip2_speaker2.npz",
    ]
    single = tmp_path / "single"
    animated = run_cli(
        "animate",
        six_clips / "clip2_speaker1.wav",
        six_clips / "clip2_speaker2.wav",
        "-o",
        single,
        "--no-video",
        "-q",
    )
    assert animated.returncode == 0, animated.stderr
    for name in ("clip2_speaker1.npz", "clip2_speaker2.npz"):
        assert (single / name).read_bytes() == (clip / name).read_bytes()
    assert len(list((clip / "clip2_speaker1").glob("*.obj"))) == len(
        list((single / "clip2_speaker1").glob("*.obj"))
    )
    assert not (out / "broken").exists()  # a failed clip leaves nothing
    assert not leftovers(out)


def test_killed_batch_resumes_with_only_what_was_missing(six_clips, tmp_path):
    out = tmp_path / "out"
    command = ["batch", six_clips, "-o", out]
    process = subprocess.Popen(
        [sys.executable, "-m", "dualtalk_cli", *map(str, command), "--json", *SMALL],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    seen = []
    for line in process.stdout:
        seen.append(json.loads(line))
        starts = [event for event in seen if event["event"] == "start"]
        if len(by_kind(seen, "done")) == 2 and len(starts) == 4:
            break  # two clips done, the third good one under way
    process.kill()  # SIGKILL: no clean-up at all, the worst case
    process.wait()
    finished = by_kind(seen, "done")
    assert len(finished) == 2
    stamps = {
        path: path.stat().st_mtime_ns
        for name in finished
        for path in (out / name).rglob("*")
    }

    # A clip killed later on would hold a stale output and temporary files.
    stale = out / "clip4"
    stale.mkdir(exist_ok=True)
    (stale / "clip4_speaker1.npz").write_bytes(b"half")
    (stale / ".clip4_speaker2.partial").mkdir()
    (stale / ".clip4_speaker1_clip4_speaker2.mp4.partial.mp4").write_bytes(b"x")

    again = run_cli(*command, "--json", *SMALL)
    assert again.returncode == 3, again.stderr
    lines = events(again.stdout)
    assert by_kind(lines, "skipped") == finished
    good = {f"clip{number}" for number in range(5)}
    assert by_kind(lines, "done") == good - finished
    assert by_kind(lines, "failed") == {"broken"}
    assert not leftovers(out)  # the killed clip's temporary files are gone
    assert (stale / "clip4_speaker1.npz").stat().st_size > 1000  # redone
    for path, stamp in stamps.items():
        assert path.stat().st_mtime_ns == stamp, path  # untouched
    options = BatchOptions()
    complete = [
        clip_plan(clip, out, options).is_complete() for clip in find_clips(six_clips)
    ]
    assert all(complete[1:])

    third = run_cli(*command, "--json", *SMALL)
    assert by_kind(events(third.stdout), "skipped") == good
    # --overwrite redoes complete clips too.
    redo = run_cli(*command, "--json", "--no-video", "--no-obj", "--overwrite")
    assert by_kind(events(redo.stdout), "done") == good


def test_sigterm_stops_cleanly_and_says_so(six_clips, tmp_path):
    out = tmp_path / "out"
    process = subprocess.Popen(
        [sys.executable, "-m", "dualtalk_cli", "batch", str(six_clips)]
        + ["-o", str(out), "--json", "--size", "256"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    for line in process.stdout:
        event = json.loads(line)
        if event["event"] == "start" and event["clip"] == "clip1":
            break
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    summary = json.loads(stdout.splitlines()[-1])
    assert summary["event"] == "summary" and summary["interrupted"] is True
    assert "interrupted: run the same command again" in stderr
    assert "Traceback" not in stderr
    assert not leftovers(out)


def test_two_jobs_give_the_same_parameters_as_one(tmp_path):
    folder = tmp_path / "clips"
    folder.mkdir()
    for number in range(3):
        write_pair(folder, f"c{number}", seed=number)
    one, two = tmp_path / "one", tmp_path / "two"
    first = run_cli("batch", folder, "-o", one, "--no-obj", *SMALL, "-q")
    assert first.returncode == 0, first.stderr
    assert first.stderr == ""  # --quiet: nothing but errors
    second = run_cli("batch", folder, "-o", two, "--no-obj", *SMALL, "-j", "2")
    assert second.returncode == 0, second.stderr
    assert "2 processes" in second.stderr
    for npz in one.rglob("*.npz"):
        assert npz.read_bytes() == (two / npz.relative_to(one)).read_bytes()
    assert len(list(two.rglob("*.mp4"))) == 3


def test_folder_discovery_rules(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    write_pair(folder, "talk")
    write_pair(folder, "other")
    shutil.copy(folder / "other_speaker1.wav", folder / "other_speaker1.flac")
    shutil.copy(folder / "talk_speaker1.wav", folder / "lonely_speaker1.wav")
    mono, _ = soundfile.read(folder / "talk_speaker1.wav")
    soundfile.write(folder / "mix.wav", np.stack([mono, mono], 1), 16000)
    soundfile.write(folder / "talk.ogg", np.stack([mono, mono], 1), 16000)
    (folder / ".hidden_speaker1.wav").write_bytes(b"")
    (folder / "talk_speaker1.npz").write_bytes(b"")  # ground truth beside audio

    clips = {clip.name: clip for clip in find_clips(folder)}
    names = [clip.name for clip in find_clips(folder)]
    assert names == ["lonely", "mix", "other", "talk", "talk"]
    assert clips["mix"].audio_b is None and clips["mix"].problem is None
    assert "no lonely_speaker2" in clips["lonely"].problem
    assert "two audio files for speaker 1" in clips["other"].problem
    # A stereo talk.ogg and the talk_speaker1/2 pair would share OUT/talk/.
    talks = [clip for clip in find_clips(folder) if clip.name == "talk"]
    assert all("share the output folder" in clip.problem for clip in talks)


def test_manifest_csv(tmp_path):
    audio = tmp_path / "audio"
    audio.mkdir()
    write_pair(audio, "x")
    mono, _ = soundfile.read(audio / "x_speaker1.wav")
    soundfile.write(audio / "room.flac", np.stack([mono, mono[::-1]], 1), 16000)
    identity = tmp_path / "who.npy"
    np.save(identity, np.full(100, 0.5, np.float32))
    manifest = tmp_path / "list.csv"
    manifest.write_text(
        "name,speaker1,speaker2,shape1\n"
        "first,audio/x_speaker1.wav,audio/x_speaker2.wav,who.npy\n"
        ",audio/room.flac,,\n"
        "\n"
    )
    out = tmp_path / "out"
    result = run_cli("batch", manifest, "-o", out, "--no-video", "--no-obj", "--json")
    assert result.returncode == 0, result.stderr
    assert by_kind(events(result.stdout), "done") == {"first", "room"}
    with np.load(out / "first" / "x_speaker1.npz") as data:
        assert np.allclose(data["shape"][:, :100], 0.5)
    with np.load(out / "first" / "x_speaker2.npz") as data:
        assert not np.allclose(data["shape"], 0.5)
    assert (out / "room" / "room_speaker2.npz").exists()

    manifest.write_text("left,right\na.wav,b.wav\n")
    assert_one_line_error(
        run_cli("batch", manifest, "-o", out), "list.csv", "speaker1 column"
    )


def test_batch_setup_problems_stop_before_any_clip(six_clips, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert_one_line_error(run_cli("batch", empty, "-o", tmp_path / "o"), "empty")
    assert_one_line_error(
        run_cli("batch", tmp_path / "nowhere", "-o", tmp_path / "o"), "nowhere"
    )
    env = {**os.environ, "DUALTALK_WEIGHTS": str(tmp_path / "none.pth")}
    result = run_cli(
        "batch", six_clips, "-o", tmp_path / "o", "--engine", "dualtalk", env=env
    )
    assert_one_line_error(result, "dualtalk")
    assert not (tmp_path / "o" / "clip0").exists()


def test_find_clips_errors(tmp_path):
    with pytest.raises(DualtalkError, match="manifest"):
        (tmp_path / "x.wav").write_bytes(b"")
        find_clips(tmp_path / "x.wav")


def test_engine_and_head_load_once_for_the_whole_batch(tmp_path, monkeypatch):
    import dualtalk_cli.batch as batch
    from dualtalk_cli.animation import Animator

    folder = tmp_path / "clips"
    folder.mkdir()
    for number in range(3):
        write_pair(folder, f"c{number}", seconds=0.6, seed=number)
    loads = []
    real = Animator.load

    def counting(*args, **kwargs):
        loads.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(Animator, "load", counting)
    seen = []
    options = BatchOptions(
        ComputeOptions(EngineOptions("procedural")),
        OutputOptions(formats=("npz", "obj")),
    )
    summary = batch.run_batch(
        find_clips(folder), tmp_path / "out", options, on_event=seen.append
    )
    assert len(loads) == 1
    assert (len(summary.done), summary.exit_code) == (3, 0)
    assert [event.event for event in seen] == ["start", "done"] * 3
    assert all(len(event.outputs) == 4 for event in seen if event.event == "done")


def test_manifest_problems_fail_one_row_or_the_whole_file(tmp_path):
    from dualtalk_cli.batch import ManifestError, read_manifest

    manifest = tmp_path / "list.csv"
    manifest.write_text("speaker1,speaker2,who\na.wav,b.wav,me\n")
    with pytest.raises(ManifestError, match=r"list\.csv: unknown columns \['who'\]"):
        read_manifest(manifest)
    manifest.write_text("name,speaker1,speaker2\n../up,a.wav,b.wav\nok,,b.wav\n")
    clips = {clip.name: clip for clip in find_clips(manifest)}
    assert "not a folder name" in clips["../up"].problem
    assert "line 3: no speaker1 file" in clips["ok"].problem
    manifest.write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(ManifestError, match="not a readable CSV"):
        read_manifest(manifest)


def test_given_partner_needs_the_ground_truth_beside_the_audio(tmp_path):
    from dualtalk_cli.batch import partner_motion_files

    folder = tmp_path / "clips"
    folder.mkdir()
    write_pair(folder, "x")
    (clip,) = find_clips(folder)
    with pytest.raises(DualtalkError, match=r"x_speaker1\.npz: not found"):
        partner_motion_files(clip)
    for speaker in (1, 2):
        (folder / f"x_speaker{speaker}.npz").write_bytes(b"")
    assert partner_motion_files(clip) == (
        folder / "x_speaker1.npz",
        folder / "x_speaker2.npz",
    )


@pytest.mark.parametrize(
    "flags, needle",
    [
        # Ray: a device or precision is the worker's to check, but a setting
        # the engine does not take, or an unknown precision, stops the driver.
        (
            ("--ray", "127.0.0.1:9", "--engine", "procedural", "--precision", "bf16"),
            "engine 'procedural' cannot be used: takes no option 'precision'",
        ),
        (("--ray", "127.0.0.1:9", "--precision", "fp8"), "--precision must be one of"),
        (("-f", "npz", "--antialias", "none"), "--antialias (no video is written)"),
        (("--given-partner", "--antialias", "ssaa2"), "--antialias (no video)"),
    ],
)
def test_batch_refuses_settings_it_cannot_honour_before_any_clip(
    tmp_path, flags, needle
):
    folder = tmp_path / "clips"
    folder.mkdir()
    write_pair(folder, "c0")
    env = {**os.environ, "DUALTALK_WEIGHTS": ""}
    result = run_cli("batch", folder, "-o", tmp_path / "out", *flags, env=env)
    assert_one_line_error(result, needle)
    assert not (tmp_path / "out" / "c0").exists()
