"""Audio loading and the Motion type, through the public API."""

from __future__ import annotations

import math

import numpy as np
import pytest
import soundfile

from dualtalk_cli import Motion, load_audio, load_conversation, load_motion
from dualtalk_cli.audio import SAMPLE_RATE, n_frames_for
from dualtalk_cli.errors import AudioError, MotionFileError
from dualtalk_cli.motion import ARKIT_NAMES
from dualtalk_cli.testing import make_motion, voice


@pytest.mark.parametrize(
    ("extension", "rate", "subtype"),
    [
        ("wav", 44100, "PCM_16"),
        ("flac", 22050, "PCM_24"),
        ("ogg", 48000, "VORBIS"),
        ("mp3", 24000, "MPEG_LAYER_III"),
        ("wav", 16000, "FLOAT"),
    ],
)
def test_formats_resample_to_16k_mono(tmp_path, extension, rate, subtype):
    seconds = 1.5
    path = tmp_path / f"voice.{extension}"
    samples = voice(seconds, [(0.1, 1.4)], 180, rate)
    soundfile.write(path, np.stack([samples, samples], 1), rate, subtype=subtype)
    audio = load_audio(path)
    assert audio.dtype == np.float32 and audio.ndim == 1
    # MP3 encoders add a little padding; everything else is exact to a sample.
    tolerance = 0.06 * SAMPLE_RATE if extension == "mp3" else 2
    assert abs(len(audio) - seconds * SAMPLE_RATE) <= tolerance
    assert 0.05 < np.abs(audio).max() < 1.0


def test_resampling_keeps_pitch(tmp_path):
    rate = 44100
    t = np.arange(rate) / rate
    path = tmp_path / "tone.wav"
    soundfile.write(path, 0.5 * np.sin(2 * np.pi * 440 * t), rate)
    audio = load_audio(path)
    spectrum = np.abs(np.fft.rfft(audio))
    peak = np.argmax(spectrum) * SAMPLE_RATE / len(audio)
    assert abs(peak - 440) < 2


def test_stereo_split_and_padding(tmp_path):
    left = voice(1.0, [(0, 1)], 120)
    right = voice(1.0, [(0, 1)], 240)
    path = tmp_path / "stereo.wav"
    soundfile.write(path, np.stack([left, right], 1), SAMPLE_RATE, subtype="FLOAT")
    a, b = load_conversation(path)
    np.testing.assert_array_equal(a, left)
    np.testing.assert_array_equal(b, right)

    short = tmp_path / "short.wav"
    soundfile.write(short, left[:8000], SAMPLE_RATE, subtype="FLOAT")
    a, b = load_conversation(path.with_name("stereo.wav"), short)
    assert len(a) == len(b) == SAMPLE_RATE
    assert not b[8000:].any()


@pytest.mark.parametrize(
    ("n_samples", "fps", "expected"),
    [(479232, 25, 749), (640, 25, 1), (641, 25, 2), (16000, 30, 30), (16001, 30, 31)],
)
def test_frame_count_is_ceil(n_samples, fps, expected):
    assert (
        n_frames_for(n_samples, fps) == expected == math.ceil(n_samples / 16000 * fps)
    )


def test_errors_name_the_file(tmp_path):
    with pytest.raises(AudioError, match="missing.wav"):
        load_audio(tmp_path / "missing.wav")


def _motion(n: int = 12) -> Motion:
    return make_motion(n, seed=0, frames_per_second=30.0)


def test_npz_round_trip_is_exact_and_byte_stable(tmp_path):
    motion = _motion()
    motion.save(tmp_path / "one.npz")
    motion.save(tmp_path / "two.npz")
    assert (tmp_path / "one.npz").read_bytes() == (tmp_path / "two.npz").read_bytes()
    loaded = load_motion(tmp_path / "one.npz")
    for key in ("exp", "pose", "shape", "eyes", "eyelids", "arkit", "speaking"):
        np.testing.assert_array_equal(getattr(loaded, key), getattr(motion, key))
    assert loaded.frames_per_second == 30.0 and loaded.engine == "test"
    # numpy's own reader sees the same arrays.
    with np.load(tmp_path / "one.npz") as data:
        np.testing.assert_array_equal(data["exp"], motion.exp)


def test_network_vector_order():
    motion = _motion()
    vector = motion.to_network()
    assert vector.shape == (12, 56)
    np.testing.assert_array_equal(vector[:, :50], motion.exp)
    np.testing.assert_array_equal(vector[:, 50:53], motion.pose[:, 3:6])  # jaw
    np.testing.assert_array_equal(vector[:, 53:56], motion.pose[:, 0:3])  # neck
    back = Motion.from_network(vector)
    np.testing.assert_array_equal(back.pose, motion.pose)


def test_reads_dataset_files_with_extra_keys(tmp_path):
    n = 20
    rng = np.random.default_rng(1)
    arrays = {
        "shape": rng.normal(size=(n, 100)),
        "tex": rng.normal(size=(n, 50)),
        "exp": rng.normal(size=(n, 50)),
        "pose": rng.normal(size=(n, 6)),
        "cam": rng.normal(size=(n, 3)),
        "light": rng.normal(size=(n, 9, 3)),
    }
    path = tmp_path / "clip_speaker1.npz"
    np.savez(path, **{k: v.astype(np.float32) for k, v in arrays.items()})
    motion = load_motion(path)
    assert motion.n_frames == n and motion.frames_per_second == 25.0
    np.testing.assert_allclose(motion.exp, arrays["exp"], rtol=1e-6)
    np.testing.assert_allclose(motion.neck_pose, arrays["pose"][:, :3], rtol=1e-6)
    np.testing.assert_allclose(motion.jaw_pose, arrays["pose"][:, 3:], rtol=1e-6)
    assert not motion.arkit.any() and not motion.speaking.any()
    assert motion.arkit_names == ARKIT_NAMES


def test_rejects_bad_npz(tmp_path):
    path = tmp_path / "bad.npz"
    np.savez(path, exp=np.zeros((5, 50)), pose=np.zeros((4, 6)))
    with pytest.raises(MotionFileError, match=r"bad.npz: 'pose' has shape \(4, 6\)"):
        load_motion(path)
    np.savez(path, exp=np.zeros((5, 50)), pose=np.full((5, 6), np.nan))
    with pytest.raises(MotionFileError, match="NaN"):
        load_motion(path)
    np.savez(path, exp=np.zeros((5, 50)), pose=np.zeros((5, 6)), eyes=np.zeros((5, 2)))
    with pytest.raises(MotionFileError, match="'eyes'"):
        load_motion(path)
