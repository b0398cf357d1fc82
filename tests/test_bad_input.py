"""Bad input: exit code 2, one line naming the file and problem, no partial output."""

from __future__ import annotations

import os
import resource
import shutil
import signal
import struct
import subprocess
import sys
import time

import numpy as np
import pytest
import soundfile

from conftest import BLOCK_EGL, assert_one_line_error, leftovers, run_cli
from dualtalk_cli.testing import voice, write_dialogue


def animate(*args, **kwargs):
    return run_cli("animate", *args, **kwargs)


def test_missing_file(dialogue, tmp_path):
    path_a, _ = dialogue
    missing = tmp_path / "nope.wav"
    result = animate(path_a, missing, "-o", tmp_path / "out", "--no-video")
    assert_one_line_error(result, str(missing), "not found")
    assert not (tmp_path / "out" / "a.npz").exists()


def test_directory_as_audio(dialogue, tmp_path):
    path_a, _ = dialogue
    result = animate(path_a, tmp_path, "-o", tmp_path / "out", "--no-video")
    assert_one_line_error(result, str(tmp_path), "directory")


def test_text_file_as_audio(dialogue, tmp_path):
    path_a, _ = dialogue
    text = tmp_path / "notes.wav"
    text.write_text("this is not audio\n" * 50)
    result = animate(path_a, text, "-o", tmp_path / "out", "--no-video")
    assert_one_line_error(result, str(text), "not a readable audio file")


def test_corrupt_wav(dialogue, tmp_path):
    path_a, _ = dialogue
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt " + os.urandom(40))
    result = animate(path_a, corrupt, "-o", tmp_path / "out", "--no-video")
    assert_one_line_error(result, str(corrupt))


def test_truncated_wav(dialogue, tmp_path):
    path_a, path_b = dialogue
    truncated = tmp_path / "truncated.wav"
    data = path_b.read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    result = animate(path_a, truncated, "-o", tmp_path / "out", "--no-video")
    assert_one_line_error(result, str(truncated), "truncated")
    assert not (tmp_path / "out" / "a.npz").exists()


@pytest.mark.parametrize("seconds", [0.0, 0.1])
def test_too_short(dialogue, tmp_path, seconds):
    path_a, _ = dialogue
    short = tmp_path / "short.wav"
    soundfile.write(short, np.zeros(int(16000 * seconds), np.float32), 16000)
    result = animate(path_a, short, "-o", tmp_path / "out", "--no-video")
    assert_one_line_error(result, str(short), "long")


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite_samples(dialogue, tmp_path, value):
    path_a, _ = dialogue
    bad = tmp_path / "nan.wav"
    samples = voice(1.0, [(0, 1)], 150)
    samples[100] = value
    soundfile.write(bad, samples, 16000, subtype="FLOAT")
    result = animate(path_a, bad, "-o", tmp_path / "out", "--no-video")
    assert_one_line_error(result, str(bad), "NaN")


def test_three_channels(tmp_path):
    bad = tmp_path / "three.wav"
    soundfile.write(bad, np.zeros((16000, 3), np.float32), 16000)
    result = animate(bad, "-o", tmp_path / "out", "--no-video")
    assert_one_line_error(result, str(bad), "3 channels")


def test_single_mono_file_split_by_channel(dialogue, tmp_path):
    path_a, _ = dialogue
    result = animate(
        path_a, "-o", tmp_path / "out", "--no-video", "--split", "channels"
    )
    assert_one_line_error(result, str(path_a), "mono")


def test_output_is_a_file(dialogue, tmp_path):
    blocker = tmp_path / "out"
    blocker.write_text("I am a file")
    result = animate(*dialogue, "-o", blocker, "--no-video")
    assert_one_line_error(result, str(blocker), "is a file")
    assert blocker.read_text() == "I am a file"


def test_output_not_writable(dialogue):
    # /sys refuses new folders, even for root.
    result = animate(*dialogue, "-o", "/sys/dualtalk-test-out", "--no-video")
    assert_one_line_error(result, "/sys/dualtalk-test-out", "cannot create")


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_output_folder_read_only(dialogue, tmp_path):
    out = tmp_path / "ro"
    out.mkdir()
    out.chmod(0o500)
    try:
        result = animate(*dialogue, "-o", out, "--no-video")
    finally:
        out.chmod(0o700)
    assert_one_line_error(result, str(out), "not writable")


def test_existing_outputs_need_overwrite(dialogue, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.npz").write_bytes(b"earlier result")
    result = animate(*dialogue, "-o", out, "--no-video", "--no-obj")
    assert_one_line_error(result, str(out / "a.npz"), "--overwrite")
    assert (out / "a.npz").read_bytes() == b"earlier result"
    assert not (out / "b.npz").exists()


def _limit_file_size():
    # Writes past 200 kB fail with EFBIG instead of killing the process, as a
    # full disk would make them fail.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))


def test_disk_full_while_writing(dialogue, tmp_path):
    out = tmp_path / "out"
    result = animate(*dialogue, "-o", out, "--no-video", preexec_fn=_limit_file_size)
    assert_one_line_error(result, "cannot write", str(out), after_start=True)
    assert leftovers(out) == []
    # OBJ folders are swapped in only when complete.
    assert not (out / "a").exists() or len(list((out / "a").iterdir())) == 100


@pytest.mark.parametrize("missing", ["exp", "pose"])
def test_npz_without_a_dataset_key(tmp_path, missing):
    bad = tmp_path / "bad.npz"
    arrays = {
        "exp": np.zeros((10, 50), np.float32),
        "pose": np.zeros((10, 6), np.float32),
    }
    np.savez(bad, **{key: value for key, value in arrays.items() if key != missing})
    result = run_cli("render", bad, "-o", tmp_path / "v.mp4")
    assert_one_line_error(result, str(bad), f"'{missing}'")
    assert not (tmp_path / "v.mp4").exists()


def test_npz_wrong_shape(tmp_path):
    bad = tmp_path / "bad.npz"
    np.savez(
        bad, exp=np.zeros((10, 50), np.float32), pose=np.zeros((10, 3), np.float32)
    )
    result = run_cli("render", bad, "-o", tmp_path / "v.mp4")
    assert_one_line_error(result, str(bad), "'pose'", "(10, 6)")


def test_not_an_npz(tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_text("hello")
    result = run_cli("render", bad, "-o", tmp_path / "v.mp4")
    assert_one_line_error(result, str(bad), "NPZ")


def test_wav_header_check_passes_intact_files(dialogue):
    # The truncation check must not reject a complete file with extra chunks.
    path_a, _ = dialogue
    data = bytearray(path_a.read_bytes())
    extra = b"LIST" + struct.pack("<I", 4) + b"INFO"
    data[4:8] = struct.pack("<I", len(data) - 8 + len(extra))
    patched = path_a.with_name("listed.wav")
    patched.write_bytes(bytes(data) + extra)
    from dualtalk_cli.audio import load_audio

    assert len(load_audio(patched)) == len(load_audio(path_a))


def test_ctrl_c_during_rendering(tmp_path):
    """Interrupted while rendering: no partial MP4, earlier outputs untouched."""
    folder = tmp_path / "in"
    folder.mkdir()
    path_a, path_b = write_dialogue(folder, seconds=3.0)
    out = tmp_path / "out"
    first = run_cli("animate", path_a, path_b, "-o", out, "--size", "96", "--no-obj")
    assert first.returncode == 0, first.stderr
    earlier = {p: p.read_bytes() for p in out.iterdir()}

    # A longer conversation, so rendering is still going when we interrupt it.
    write_dialogue(folder, seconds=40.0)
    command = [
        sys.executable,
        "-m",
        "dualtalk_cli",
        "animate",
        str(path_a),
        str(path_b),
    ]
    command += ["-o", str(out), "--size", "256", "--overwrite"]
    process = subprocess.Popen(
        command,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        # As from a terminal: a test runner started in the background inherits
        # an ignored SIGINT, which would pass on to this process.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    partial = out / ".a_b.mp4.partial.mp4"
    deadline = time.time() + 120
    while time.time() < deadline and process.poll() is None:
        if any(".partial" in p.name and p.suffix == ".mp4" for p in out.iterdir()):
            break
        time.sleep(0.05)
    assert process.poll() is None, process.stderr.read()
    time.sleep(1.0)
    os.killpg(process.pid, signal.SIGINT)  # a terminal's Ctrl-C reaches the group
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert not partial.exists()
    assert leftovers(out) == []
    video = out / "a_b.mp4"
    assert video.read_bytes() == earlier[video]
    shutil.rmtree(folder)


def test_no_egl_names_packages_and_no_video_still_works(dialogue, tmp_path):
    # A sitecustomize that makes libEGL unloadable, as on a machine without it.
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(BLOCK_EGL)
    env = {**os.environ, "PYTHONPATH": str(site)}
    out = tmp_path / "out"
    result = animate(*dialogue, "-o", out, env=env)
    assert_one_line_error(result, "libegl1", "libgl1-mesa-dri", "--no-video")
    assert not (out / "a.npz").exists()  # it failed before doing any work
    result = animate(*dialogue, "-o", out, "--no-video", env=env)
    assert result.returncode == 0, result.stderr
    assert (out / "a.npz").exists() and (out / "b" / "000000.obj").exists()
