"""Nothing lost, nothing corrupt: concurrent runs, killed batches, hostile files.

One test per defect a hostile probe found, each through the CLI.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile

from conftest import assert_one_line_error, leftovers, run_cli
from dualtalk_cli.motion import load_motion
from dualtalk_cli.testing import (
    make_motion,
    write_dataset_npz,
    write_dialogue,
    write_npz_bomb,
    write_pair,
    write_wav_header,
)

NO_NETWORK = {**os.environ, "DUALTALK_WEIGHTS": "", "DUALTALK_FLAME": ""}
SMALL_VIDEO = ("--no-obj", "--size", "64")


def command(*args: object) -> list[str]:
    words = [a if isinstance(a, str | os.PathLike) else str(a) for a in args]
    return [sys.executable, "-m", "dualtalk_cli", *map(os.fspath, words)]


# Runs the command and prints its exit code and peak memory. A launcher of its
# own, because Linux counts a child's peak from the memory of the process it was
# forked from: pytest's own would show through.
LAUNCHER = """
import os, subprocess, sys
child = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL)
_, status, usage = os.wait4(child.pid, 0)
print(os.waitstatus_to_exitcode(status), usage.ru_maxrss)
"""


def peak_rss_mb(args: list[str]) -> tuple[int, float, str]:
    """Exit code, peak resident memory (MB) and stderr of one process."""
    launched = subprocess.run(
        [sys.executable, "-c", LAUNCHER, *args], capture_output=True, text=True
    )
    code, peak_kb = map(int, launched.stdout.split())
    return code, peak_kb / 1024, launched.stderr


# ------------------------------------------------------------------ 1 concurrency


@pytest.fixture(scope="module")
def short_dialogue(tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("short")
    return write_dialogue(folder, seconds=1.0)


@pytest.fixture(scope="module")
def reference(short_dialogue, tmp_path_factory) -> dict[int, bytes]:
    """Each seed's NPZ bytes, from a run alone."""
    found = {}
    for seed in (1, 2):
        out = tmp_path_factory.mktemp(f"seed{seed}")
        args = ("animate", *short_dialogue, "-o", out, "--seed", seed, "--no-video")
        result = run_cli(*args, "--no-obj", env=NO_NETWORK)
        assert result.returncode == 0, result.stderr
        found[seed] = (out / "a.npz").read_bytes() + (out / "b.npz").read_bytes()
    return found


@pytest.mark.parametrize("video", [False, True], ids=["npz", "npz+mp4"])
def test_two_runs_on_one_folder_never_corrupt_or_mix(
    short_dialogue, reference, tmp_path, video
):
    from dualtalk_cli.video import probe

    flags = SMALL_VIDEO if video else ("--no-obj", "--no-video")
    outcomes = []
    for pair in range(20):
        out = tmp_path / f"pair{pair}"
        processes = {
            seed: subprocess.Popen(
                command("animate", *short_dialogue, "-o", out, "--seed", seed, *flags),
                stderr=subprocess.PIPE,
                text=True,
                env=NO_NETWORK,
            )
            for seed in (1, 2)
        }
        codes = {seed: p.wait(timeout=120) for seed, p in processes.items()}
        errors = {seed: p.stderr.read() for seed, p in processes.items()}
        winners = [seed for seed, code in codes.items() if code == 0]
        # Never both: the second either waits for nothing and fails at once, or
        # finds the first one's outputs and refuses to replace them.
        assert len(winners) == 1, (codes, errors)
        (winner,) = winners
        (loser,) = set(codes) - {winner}
        assert codes[loser] == 2, errors[loser]
        assert len(errors[loser].strip().splitlines()) == 1, errors[loser]
        assert "Traceback" not in errors[loser]
        # Exit 0 means this run's own files, whole.
        written = (out / "a.npz").read_bytes() + (out / "b.npz").read_bytes()
        assert written == reference[winner]
        if video:
            assert probe(out / "a_b.mp4")["n_frames"] == 25
        assert leftovers(out) == []
        outcomes.append("locked" if "another dualtalk run" in errors[loser] else "")
    assert "locked" in outcomes  # the runs did overlap


def test_a_second_run_waits_for_nothing_and_says_why(short_dialogue, tmp_path):
    from dualtalk_cli.outputs import locked_folder

    out = tmp_path / "out"
    out.mkdir()
    with locked_folder(out):  # as a first run holds it
        result = run_cli("animate", *short_dialogue, "-o", out, env=NO_NETWORK)
    assert_one_line_error(result, str(out), "another dualtalk run is writing")
    assert list(out.iterdir()) == []


# ------------------------------------------------------------------ 2 killed batch


def children(pid: int) -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.add(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1]
    except OSError:
        return False
    return state.split()[0] != "Z"


def test_sigkill_of_a_parallel_batch_takes_its_workers_along(tmp_path):
    folder = tmp_path / "clips"
    folder.mkdir()
    for number in range(4):
        write_pair(folder, f"c{number}", seconds=6.0, seed=number)
    out = tmp_path / "out"
    args = command("batch", folder, "-o", out, "-j", "2", "--json", "--size", "128")
    process = subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    started = set()
    for line in process.stdout:
        event = json.loads(line)
        if event["event"] == "start":
            started.add(event["clip"])
        if len(started) == 2:
            break
    time.sleep(1.0)  # both workers are inside a clip
    workers = {pid for pid in children(process.pid) if alive(pid)}
    assert len(workers) >= 2
    process.kill()  # SIGKILL: the parent gets no chance to stop anything
    process.wait()
    deadline = time.time() + 60
    while time.time() < deadline and any(alive(pid) for pid in workers):
        time.sleep(0.2)
    assert not any(alive(pid) for pid in workers), "workers outlived the batch"
    time.sleep(0.5)
    assert leftovers(out) == []
    # The clips under way were not finished after the kill.
    for clip in started:
        assert not (out / clip / f"{clip}_speaker1_{clip}_speaker2.mp4").exists()


# ------------------------------------------------------------------ 3 NPZ bomb


def test_npz_bomb_in_an_unused_key_costs_no_memory(tmp_path):
    bomb = write_npz_bomb(tmp_path / "clip.npz", "tex", 1.0)
    assert bomb.stat().st_size < 8 << 20
    args = command("render", bomb, "-o", tmp_path / "v.mp4", "--size", "64")
    code, peak, stderr = peak_rss_mb(args)
    assert code == 0, stderr
    assert peak < 700, peak  # reading the 1 GiB of zeros would take over 1000


def test_npz_declaring_huge_arrays_is_refused_before_reading(tmp_path):
    bomb = tmp_path / "clip.npz"
    write_dataset_npz(bomb, 30)
    header = {"descr": "<f4", "fortran_order": False, "shape": (10**8, 50)}
    with zipfile.ZipFile(bomb, "a") as archive:
        with archive.open("eyes.npy", "w") as member:
            np.lib.format.write_array_header_2_0(member, header)
            member.write(bytes(1000))
    result = run_cli("render", bomb, "-o", tmp_path / "v.mp4")
    assert_one_line_error(result, str(bomb), "'eyes'", "frames")


# ------------------------------------------------------------------ 4 1 Hz WAV


def test_absurd_sample_rates_and_lengths_are_refused_at_once(dialogue, tmp_path):
    # 30,000 samples at 1 Hz: 8.3 hours, in a 30 kB file.
    slow = write_wav_header(tmp_path / "slow.wav", 1, 30_000)
    start = time.perf_counter()
    code, peak, stderr = peak_rss_mb(
        command("animate", slow, dialogue[1], "-o", tmp_path / "o", "--no-video")
    )
    assert time.perf_counter() - start < 20
    assert code == 2 and "sample rate of 1 Hz" in stderr, stderr
    assert peak < 400, peak

    long = write_wav_header(tmp_path / "long.wav", 8000, 8000 * 5 * 3600)
    result = run_cli("animate", long, dialogue[1], "-o", tmp_path / "p")
    assert_one_line_error(result, str(long), "5.0 h long")


# ------------------------------------------------------------------ 5 NaN extras


@pytest.mark.parametrize("key", ["eyes", "eyelids", "arkit"])
def test_non_finite_extras_are_refused(tmp_path, key):
    path = tmp_path / "clip.npz"
    make_motion(20).save(path)
    with np.load(path) as data:
        arrays = dict(data)
    arrays[key] = arrays[key].copy()
    arrays[key][3, 0] = np.inf if key == "arkit" else np.nan
    np.savez(path, **arrays)
    result = run_cli("render", path, "-o", tmp_path / "v.mp4", "--size", "64")
    assert_one_line_error(result, str(path), f"'{key}'", "NaN or infinite")
    assert not (tmp_path / "v.mp4").exists()


# ------------------------------------------------------------------ 6 names


@pytest.mark.parametrize("name", ["bad\0name", "x" * 300], ids=["nul", "long"])
def test_a_bad_name_in_a_manifest_fails_its_clip_only(tmp_path, name):
    write_pair(tmp_path, "ok", seconds=1.0)
    manifest = tmp_path / "list.csv"
    manifest.write_text(
        "name,speaker1,speaker2\n"
        "good,ok_speaker1.wav,ok_speaker2.wav\n"
        f"{name},ok_speaker1.wav,ok_speaker2.wav\n"
    )
    out = tmp_path / "out"
    result = run_cli("batch", manifest, "-o", out, "--json", "--no-video", "--no-obj")
    assert result.returncode == 3, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert {e["clip"] for e in events if e["event"] == "done"} == {"good"}
    (failed,) = [e for e in events if e["event"] == "failed"]
    assert "not a folder name" in failed["message"]
    assert events[-1]["event"] == "summary" and events[-1]["exit_code"] == 3
    assert "internal error" not in result.stderr


def test_an_output_name_too_long_is_one_line(tmp_path):
    stem = "y" * 248
    path_a, path_b = write_dialogue(tmp_path, seconds=1.0)
    long = path_a.rename(tmp_path / f"{stem}.wav")
    result = run_cli("animate", long, path_b, "-o", tmp_path / "out", "--no-video")
    assert_one_line_error(result, "too long")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "fps", [np.array([25.0, 30.0]), np.array("fast"), np.array(1e6)]
)
def test_a_strange_fps_in_a_file_is_one_line(tmp_path, fps):
    path = write_dataset_npz(tmp_path / "clip.npz", 20)
    with np.load(path) as data:
        arrays = dict(data)
    np.savez(path, **arrays, fps=fps)
    result = run_cli("render", path, "-o", tmp_path / "v.mp4", "--size", "64")
    assert_one_line_error(result, str(path), "'fps'")


# ------------------------------------------------------------------ 7 not UTF-8


def test_names_that_are_not_utf8_work_and_json_stays_utf8(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    path_a, path_b = write_dialogue(folder, seconds=2.0)
    odd = os.fsdecode(b"caf\xe9")  # Latin-1 bytes: not UTF-8
    path_a = path_a.rename(folder / f"{odd}_speaker1.wav")
    path_b = path_b.rename(folder / f"{odd}_speaker2.wav")
    out = tmp_path / "out"
    result = subprocess.run(
        command("animate", path_a, path_b, "-o", out, "--no-video", "--no-obj"),
        capture_output=True,
    )
    assert result.returncode == 0, result.stderr
    assert load_motion(out / f"{odd}_speaker1.npz").speaking.any()
    batch = subprocess.run(
        command("batch", folder, "-o", tmp_path / "b", "--json", "--no-video"),
        capture_output=True,
    )
    assert batch.returncode == 0, batch.stderr
    lines = batch.stdout.decode("utf-8").splitlines()  # strict: valid UTF-8
    events = [json.loads(line) for line in lines]
    assert any(e["event"] == "done" and "\\xe9" in e["clip"] for e in events)


# ------------------------------------------------------------------ 8 render stems


def test_render_of_two_files_with_one_stem_keeps_both_meshes(tmp_path):
    for folder in ("d1", "d2"):
        (tmp_path / folder).mkdir()
    first, second = tmp_path / "d1" / "x.npz", tmp_path / "d2" / "x.npz"
    make_motion(12, jaw_x=0.05).save(first)
    make_motion(12, jaw_x=0.3).save(second)
    out = tmp_path / "both.mp4"
    result = run_cli("render", first, second, "--obj", "-o", out, "--size", "64")
    assert result.returncode == 0, result.stderr
    meshes = [sorted((tmp_path / name).glob("*.obj")) for name in ("x_A", "x_B")]
    assert [len(files) for files in meshes] == [12, 12]
    assert meshes[0][5].read_text() != meshes[1][5].read_text()


# ------------------------------------------------------------------ 9 DC offset


def test_a_dc_offset_is_not_speech(tmp_path):
    offset, silent = tmp_path / "offset.wav", tmp_path / "silent.wav"
    soundfile.write(offset, np.full(48000, 0.5, np.float32), 16000, "FLOAT")
    soundfile.write(silent, np.zeros(48000, np.float32), 16000, "FLOAT")
    out = tmp_path / "out"
    result = run_cli("animate", offset, silent, "-o", out, "--no-video", "--no-obj")
    assert result.returncode == 0, result.stderr
    motion = load_motion(out / "offset.npz")
    assert not motion.speaking.any()
    assert np.abs(motion.jaw_pose).max() < 0.01


# ------------------------------------------------------------------ 10 all or nothing


def _limit_file_size():
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))


def test_a_failed_run_leaves_nothing_of_its_own(dialogue, tmp_path):
    out = tmp_path / "out"
    args = command("animate", *dialogue, "-o", out, "--no-video")
    result = subprocess.run(
        args, capture_output=True, text=True, preexec_fn=_limit_file_size
    )
    assert result.returncode == 2, result.stderr
    assert "cannot write" in result.stderr
    # The NPZ files were finished before the OBJ files failed: gone with them.
    assert not out.exists() or list(out.iterdir()) == []
    again = run_cli("animate", *dialogue, "-o", out, "--no-video", "--no-obj")
    assert again.returncode == 0, again.stderr  # no --overwrite needed


# ------------------------------------------------------------------ minor


def test_minor_refusals(dialogue, tmp_path):
    seed = run_cli("animate", *dialogue, "-o", tmp_path / "o", "--seed", 2**64)
    assert seed.returncode == 2 and "--seed" in seed.stderr
    fifo = tmp_path / "pipe.wav"
    os.mkfifo(fifo)
    result = run_cli("animate", fifo, dialogue[1], "-o", tmp_path / "p")
    assert_one_line_error(result, str(fifo), "not a regular file")
    short = tmp_path / "short.wav"
    soundfile.write(short, np.zeros(3199, np.float32), 16000)
    result = run_cli("animate", short, dialogue[1], "-o", tmp_path / "q")
    assert_one_line_error(result, "0.1999", "at least 0.2 s")
    started = time.perf_counter()
    result = run_cli("animate", *dialogue, "-o", "/proc", "--no-video")
    assert_one_line_error(result, "/proc", "cannot write")
    assert time.perf_counter() - started < 15  # before the engine, not after
    newline = tmp_path / "two\nlines.wav"
    newline.write_bytes(b"not audio")
    result = run_cli("animate", newline, dialogue[1], "-o", tmp_path / "r")
    assert_one_line_error(result, "two\\nlines.wav")


def test_per_file_report_never_replaces_an_input(tmp_path):
    truth = tmp_path / "gt"
    truth.mkdir()
    for speaker in (1, 2):
        write_dataset_npz(truth / f"c_speaker{speaker}.npz", 40, seed=speaker)
    target = truth / "c_speaker1.npz"
    before = target.read_bytes()
    args = ("evaluate", truth, truth, "--per-file", target, "--overwrite")
    result = run_cli(*args)
    assert_one_line_error(result, str(target), "being scored")
    assert target.read_bytes() == before
