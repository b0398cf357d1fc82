"""Tests for the procedural engine, on synthetic voiced speech at 16 kHz."""

from __future__ import annotations

import numpy as np
import pytest

from dualtalk_cli.engines.procedural import (
    JAW_OPEN_MAX,
    ProceduralEngine,
    detect_speech,
)
from dualtalk_cli.motion import Motion, jaw_from_jaw_open
from dualtalk_cli.testing import voice

RATE = 16_000
FPS = 25.0


def leak(into: np.ndarray, source: np.ndarray, bleed_db: float) -> np.ndarray:
    """``into`` plus a delayed, echoing copy of ``source`` at ``bleed_db``."""
    gain = 10 ** (bleed_db / 20)
    delayed = np.zeros_like(source)
    delayed[48:] = source[:-48]  # 3 ms of air
    echo = np.zeros_like(source)
    echo[800:] = 0.5 * delayed[:-800]  # a wall 17 m away and back
    return (into + gain * (delayed + echo)).astype(np.float32)


def runs(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start and end frames of the True runs of ``mask``."""
    steps = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return np.flatnonzero(steps == 1), np.flatnonzero(steps == -1)


def frames_in(start: float, end: float, n_frames: int) -> np.ndarray:
    times = (np.arange(n_frames) + 0.5) / FPS
    return (times >= start) & (times < end)


def animate(a: np.ndarray, b: np.ndarray, seed: int = 0, fps: float = FPS):
    n_frames = int(len(a) / RATE * fps)
    return ProceduralEngine().animate(
        a, b, n_frames=n_frames, frames_per_second=fps, seed=seed
    )


@pytest.fixture(scope="module")
def turns() -> tuple[np.ndarray, np.ndarray]:
    """A speaks 0-4 s, B speaks 5-9 s, 10 s in all."""
    a = voice(10.0, [(0.0, 4.0)], f0=120.0, seed=1)
    b = voice(10.0, [(5.0, 9.0)], f0=210.0, seed=2)
    return a, b


@pytest.fixture(scope="module")
def minute_audio() -> tuple[np.ndarray, np.ndarray]:
    """A 60 s dialogue with 5 s turns and 1 s pauses."""
    a_turns = [(t, t + 5.0) for t in np.arange(0.0, 60.0, 12.0)]
    b_turns = [(t + 6.0, t + 11.0) for t in np.arange(0.0, 60.0, 12.0)]
    a = voice(60.0, a_turns, f0=120.0, seed=3)
    b = voice(60.0, b_turns, f0=210.0, seed=4)
    return a, b


@pytest.fixture(scope="module")
def minute(minute_audio) -> tuple[Motion, Motion]:
    return animate(*minute_audio)


def test_jaw_follows_own_turns(turns):
    a, b = turns
    motion_a, motion_b = animate(a, b)
    n = motion_a.n_frames
    a_turn, b_turn = frames_in(0.5, 3.5, n), frames_in(5.5, 8.5, n)
    for motion, own, other in ((motion_a, a_turn, b_turn), (motion_b, b_turn, a_turn)):
        jaw = motion.arkit_weight("jawOpen")
        assert jaw[own].mean() > 0.15
        assert jaw[own].mean() > 5 * jaw[other].mean()
        assert jaw.max() <= JAW_OPEN_MAX + 1e-6
        np.testing.assert_allclose(
            motion.jaw_pose[:, 0], jaw_from_jaw_open(jaw), atol=1e-6
        )
        assert np.all(motion.jaw_pose[:, 1:] == 0)


def test_speaking_flags_match_turns(turns):
    a, b = turns
    motion_a, motion_b = animate(a, b)
    times = (np.arange(motion_a.n_frames) + 0.5) / FPS
    for motion, (start, end) in ((motion_a, (0.0, 4.0)), (motion_b, (5.0, 9.0))):
        truth = (times >= start) & (times < end)
        wrong = times[motion.speaking != truth]
        near_edge = np.minimum(np.abs(wrong - start), np.abs(wrong - end)) <= 0.2
        assert np.all(near_edge), wrong


@pytest.mark.parametrize("bleed_db", [-15.0, -20.0, -30.0])
def test_leaked_partner_voice_is_not_speech(turns, bleed_db):
    a, b = turns
    a_heard, b_heard = leak(a, b, bleed_db), leak(b, a, bleed_db)
    motion_a, motion_b = animate(a_heard, b_heard)
    n = motion_a.n_frames
    b_turn, a_turn = frames_in(4.5, 9.0, n), frames_in(0.0, 4.0, n)
    assert not motion_a.speaking[b_turn].any()
    assert not motion_b.speaking[a_turn].any()
    assert motion_a.arkit_weight("jawOpen")[b_turn].max() < 0.05
    assert motion_b.arkit_weight("jawOpen")[a_turn].max() < 0.05
    assert motion_a.speaking[frames_in(0.3, 3.7, n)].all()


def test_overlap_at_similar_levels_counts_for_both():
    a = voice(6.0, [(0.5, 4.0)], f0=120.0, seed=5)
    b = voice(6.0, [(2.0, 5.5)], f0=210.0, level_db=-23.0, seed=6)
    a, b = leak(a, b, -20.0), leak(b, a, -20.0)
    n = int(6.0 * FPS)
    both = frames_in(2.2, 3.8, n)
    assert detect_speech(a, b, n, FPS)[both].all()
    assert detect_speech(b, a, n, FPS)[both].all()


@pytest.mark.parametrize("quiet", ["zeros", "hiss", "faint voice"])
def test_silent_track_only_listens(turns, quiet):
    _, b = turns
    silent = {
        "zeros": np.zeros_like(b),
        "hiss": (1e-3 * np.random.default_rng(7).standard_normal(len(b))),
        "faint voice": voice(10.0, [(0.0, 4.0)], level_db=-70.0, seed=7),
    }[quiet].astype(np.float32)
    motion_a, motion_b = animate(leak(silent, b, -20.0), b)
    assert not motion_a.speaking.any()
    assert np.all(motion_a.arkit_weight("jawOpen") < 0.01)
    assert np.all(np.abs(motion_a.jaw_pose) < 0.003)
    assert motion_b.speaking.any()


def test_short_pauses_stay_in_the_phrase_and_blips_are_dropped():
    a = voice(6.0, [(0.5, 2.0), (2.15, 3.0), (3.6, 5.0), (5.5, 5.55)], seed=14)
    flags = detect_speech(a, None, int(6.0 * FPS), FPS)
    n = len(flags)
    assert flags[frames_in(0.6, 2.9, n)].all()  # a 0.15 s pause is bridged
    assert not flags[frames_in(3.2, 3.4, n)].any()  # a 0.6 s pause is not
    assert not flags[frames_in(5.2, 6.0, n)].any()  # a 50 ms blip is dropped


def test_detect_speech_standalone(turns):
    a, b = turns
    n = int(10.0 * FPS)
    flags = detect_speech(a, b, n, FPS)
    assert flags.dtype == bool and flags.shape == (n,)
    np.testing.assert_array_equal(flags, animate(a, b)[0].speaking)
    np.testing.assert_array_equal(detect_speech(a, None, n, FPS), flags)
    assert not detect_speech(np.zeros_like(a), a, n, FPS).any()


def test_blink_rate(minute):
    for motion in minute:
        closure = motion.eyelids[:, 0]
        np.testing.assert_array_equal(closure, motion.eyelids[:, 1])
        np.testing.assert_array_equal(closure, motion.arkit_weight("eyeBlinkLeft"))
        np.testing.assert_array_equal(closure, motion.arkit_weight("eyeBlinkRight"))
        starts, ends = runs(closure > 0.5)
        assert 10 <= len(starts) <= 25
        assert np.all(np.diff(starts) / FPS >= 1.0)
        # Each blink shows nearly shut on at least one frame.
        assert all(closure[s:e].max() >= 0.8 for s, e in zip(starts, ends, strict=True))


def test_blink_duration(minute_audio):
    fps = 200.0  # fine frames to measure each blink's width
    for motion in animate(*minute_audio, fps=fps):
        starts, ends = runs(motion.eyelids[:, 0] > 0.5)
        widths = (ends - starts) / fps
        assert np.all((widths >= 0.1) & (widths <= 0.25)), widths


def test_listener_nods_after_phrase_ends():
    phrases = [(0.5, 3.0), (5.0, 7.5), (9.5, 12.0), (14.0, 16.5)]
    speaker = voice(18.0, phrases, seed=8)
    listener = leak(np.zeros_like(speaker), speaker, -25.0)
    _, motion = animate(speaker, listener)
    pitch = np.degrees(motion.neck_pose[:, 0])  # positive tips the face down
    n = motion.n_frames
    nodded = 0
    for start, end in phrases:
        during = pitch[frames_in(start + 0.5, end - 0.2, n)].max()
        after = pitch[frames_in(end, end + 1.5, n)].max()
        nodded += after > during + 2.0
    assert nodded >= 3


def test_eyes_and_head_turn_toward_partner(turns):
    motion_a, motion_b = animate(*turns)
    for eye in (1, 4):  # yaw of the left and right eyeball
        assert motion_a.eyes[:, eye].mean() > np.radians(3)
        assert motion_b.eyes[:, eye].mean() < -np.radians(3)
    assert motion_a.arkit_weight("eyeLookOutLeft").mean() > 0.05
    assert motion_a.arkit_weight("eyeLookInRight").mean() > 0.05
    assert motion_a.arkit_weight("eyeLookInLeft").max() == 0
    assert motion_b.arkit_weight("eyeLookInLeft").mean() > 0.05
    assert motion_b.arkit_weight("eyeLookOutRight").mean() > 0.05
    assert motion_b.arkit_weight("eyeLookOutLeft").max() == 0
    assert motion_a.neck_pose[:, 1].mean() == pytest.approx(0.12, abs=0.04)
    assert motion_b.neck_pose[:, 1].mean() == pytest.approx(-0.12, abs=0.04)


@pytest.mark.parametrize("fps, seconds", [(25.0, 10.0), (30.0, 12.5), (60.0, 3.0)])
def test_output_shapes_dtypes_and_ranges(turns, fps, seconds):
    n = int(seconds * fps)  # shorter or longer than the audio
    motions = ProceduralEngine().animate(
        *turns, n_frames=n, frames_per_second=fps, seed=3
    )
    for motion in motions:
        assert motion.n_frames == n
        assert motion.engine == "procedural"
        assert motion.frames_per_second == fps
        assert motion.speaking.dtype == bool
        for name in ("exp", "pose", "shape", "eyes", "eyelids", "arkit"):
            values = getattr(motion, name)
            assert values.dtype == np.float32, name
            assert np.all(np.isfinite(values)), name
        assert not motion.exp.any() and not motion.shape.any()
        assert motion.arkit.min() >= 0 and motion.arkit.max() <= 1
        assert motion.eyelids.min() >= 0 and motion.eyelids.max() <= 1
        assert np.abs(motion.pose).max() < 0.5


def test_zero_frames(turns):
    motions = ProceduralEngine().animate(*turns, n_frames=0)
    assert all(m.n_frames == 0 for m in motions)


def test_motion_is_smooth_and_gentle(minute):
    for motion in minute:
        step = np.abs(np.diff(motion.neck_pose, axis=0)).max()
        assert step < np.radians(3), np.degrees(step)
        for name in ("browInnerUp", "mouthSmileLeft", "mouthFunnel"):
            assert np.abs(np.diff(motion.arkit_weight(name))).max() < 0.5, name
        # A p, b or m shuts the mouth within a frame; nothing else jumps so far.
        assert np.abs(np.diff(motion.arkit_weight("jawOpen"))).max() < 0.65
        # Sway: a few degrees of yaw and roll (pitch also carries nods).
        spread = np.degrees(np.ptp(motion.neck_pose[:, 1:], axis=0))
        assert np.all((spread > 0.5) & (spread < 8.0)), spread


def test_deterministic_per_seed(turns):
    first = animate(*turns, seed=11)
    again = animate(*turns, seed=11)
    other = animate(*turns, seed=12)
    for one, two, three in zip(first, again, other, strict=True):
        for name in ("pose", "eyes", "eyelids", "arkit", "speaking"):
            assert getattr(one, name).tobytes() == getattr(two, name).tobytes()
        assert one.eyelids.tobytes() != three.eyelids.tobytes()
        assert one.neck_pose.tobytes() != three.neck_pose.tobytes()
        np.testing.assert_array_equal(one.speaking, three.speaking)


def test_stop_closes_the_lips():
    a = voice(4.0, [(0.2, 3.8)], seed=9)
    motion, _ = animate(a, np.zeros_like(a))
    times = (np.arange(motion.n_frames) + 0.5) / FPS
    near_stop = (times % 0.7 < 0.08) & (times > 0.5) & (times < 3.5)
    # The jaw shuts on each stop, and opens between them.
    jaw_open = motion.arkit_weight("jawOpen")
    assert jaw_open[near_stop].max() < 0.02
    assert jaw_open[~near_stop & (times > 0.5) & (times < 3.5)].mean() > 0.15


def test_without_phones_the_spectrum_rounds_or_spreads_the_lips(monkeypatch):
    # Where no phone is recognised (here: none at all), acoustic rules shape the lips.
    import dualtalk_cli.engines.procedural as procedural

    monkeypatch.setattr(
        procedural, "recognise_tracks", lambda tracks: [None] * len(tracks)
    )
    rounded = voice(8.0, [(0.2, 3.8)], f0=110.0, tilt=3.0, seed=10)
    spread = voice(8.0, [(4.0, 7.8)], f0=110.0, tilt=0.3, seed=10)
    motion, _ = animate(rounded + spread, np.zeros_like(rounded))
    first, second = frames_in(0.5, 3.5, motion.n_frames), frames_in(4.5, 7.5, 200)
    funnel, stretch = (
        motion.arkit_weight(n) for n in ("mouthFunnel", "mouthStretchLeft")
    )
    assert funnel[first].mean() > 2 * funnel[second].mean() + 0.02
    assert stretch[second].mean() > 2 * stretch[first].mean() + 0.02


def test_emphasis_raises_brows_and_beats():
    plain = voice(8.0, [(0.5, 7.5)], seed=12)
    stressed = plain.copy()
    stressed[round(4.0 * RATE) : round(4.25 * RATE)] *= 3.5  # one loud syllable
    silent = np.zeros_like(plain)
    before, after = animate(plain, silent)[0], animate(stressed, silent)[0]
    window = frames_in(3.8, 4.8, after.n_frames)
    brows = after.arkit_weight("browInnerUp")
    assert brows[window].max() > 0.25
    assert brows[window].max() > 2 * brows[~window].max()
    # Same seed, same sway: the difference is the beat (down is positive).
    beat = np.degrees(after.neck_pose[:, 0] - before.neck_pose[:, 0])
    assert 1.5 < beat[window].max() < 5.0


def test_smiles_only_in_long_listening():
    seconds = 40.0
    turns = [(t, t + 2.0) for t in np.arange(0.0, seconds, 4.5)]
    b_turns = [(t + 2.0, t + 4.5) for t, _ in turns]
    a = voice(seconds, turns, seed=13)
    short_gaps, long_listening = (
        animate(a, voice(seconds, b_turns, seed=15))[0],
        (animate(voice(seconds, [(0.0, seconds)], seed=13), np.zeros_like(a))[1]),
    )
    # cheekSquint comes only with a listener's smile.
    assert short_gaps.arkit_weight("cheekSquintLeft").max() == 0
    smile = long_listening.arkit_weight("mouthSmileLeft")
    assert smile.max() > 0.15
    assert np.all(smile[frames_in(0.0, 3.0, long_listening.n_frames)] == 0)
    np.testing.assert_array_equal(smile, long_listening.arkit_weight("mouthSmileRight"))
    assert long_listening.arkit_weight("cheekSquintLeft").max() > 0.05
