"""Lips that read: visemes on synthetic speech, the jaw's scale and timing, and
the built-in head's mouth (teeth, tongue, a dark cavity), measured on its
geometry and in its rendering."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import soundfile

from dualtalk_cli.animation import compute_motion
from dualtalk_cli.audio import SAMPLE_RATE
from dualtalk_cli.heads.builtin import BuiltinHead, load_asset
from dualtalk_cli.livelink import livelink_columns
from dualtalk_cli.motion import (
    ARKIT_INDEX,
    JAW_FULL_OPEN_RAD,
    jaw_from_jaw_open,
    jaw_open_from_jaw,
    load_motion,
)
from dualtalk_cli.testing import make_motion, write_dataset_npz, write_spoken_words

WORDS = {
    # p, b and m between vowels: the lips must shut inside the word.
    "bilabial": ["happy", "apple", "simple", "ribbon", "baby", "maybe", "bubble",
                 "number", "lemon", "mama"],
    # Vowels, l and r only: the lips stay apart.
    "open_lips": ["hello", "carry", "area", "really"],
    "oo": ["blue", "two", "you", "who", "shoe"],
    "ee": ["see", "tea", "key", "he"],
    "ah": ["father", "spa", "car", "calm"],
}  # fmt: skip
FPS = 25


class Lips:
    """The built-in head's lip gap (mm, at the middle of the opening) and mouth
    width (mm, corner to corner) per frame."""

    def __init__(self, motion) -> None:
        head = BuiltinHead()
        rim = load_asset()["lip_inner_edge"]
        rest = head.rest_vertices[rim]
        middle = rim[np.abs(rest[:, 0]) < 1e-3]
        upper = middle[np.argmax(head.rest_vertices[middle, 1])]
        lower = middle[np.argmin(head.rest_vertices[middle, 1])]
        left, right = rim[np.argmax(rest[:, 0])], rim[np.argmin(rest[:, 0])]
        vertices = head.vertices(motion) * 1000
        self.gap = np.linalg.norm(vertices[:, upper] - vertices[:, lower], axis=1)
        self.width = np.linalg.norm(vertices[:, left] - vertices[:, right], axis=1)
        still = head.rest_vertices * 1000
        self.rest_gap = float(np.linalg.norm(still[upper] - still[lower]))
        self.rest_width = float(np.linalg.norm(still[left] - still[right]))


@pytest.fixture(scope="module")
def spoken(tmp_path_factory):
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (bash scripts/setup.sh --test)")
    folder = tmp_path_factory.mktemp("spoken")
    words = [word for group in WORDS.values() for word in group]
    spans = write_spoken_words(folder / "words.wav", words)
    silent = folder / "silent.wav"
    audio, _ = soundfile.read(folder / "words.wav", dtype="float32")
    soundfile.write(silent, np.zeros_like(audio), SAMPLE_RATE)
    conversation = compute_motion(folder / "words.wav", silent)
    motion = conversation.motions[0]
    return {word: (start, end) for word, start, end in spans}, motion, audio


def frames(start: float, end: float, trim: float = 0.0) -> slice:
    return slice(int(np.ceil((start + trim) * FPS)), int((end - trim) * FPS) + 1)


def test_lips_close_at_every_bilabial_and_stay_apart_without(spoken):
    spans, motion, _ = spoken
    lips = Lips(motion)
    closed = lips.rest_gap + 0.6  # mm: the lips touch at rest
    for word in WORDS["bilabial"]:
        inside = frames(*spans[word], trim=0.08)  # inside the word, not its edges
        assert lips.gap[frames(*spans[word])].max() > 8, word  # it opens
        assert lips.gap[inside].min() <= closed, word  # and shuts on p, b or m
    for word in WORDS["open_lips"]:
        assert lips.gap[frames(*spans[word], trim=0.08)].min() > closed + 3, word


def test_oo_rounds_ee_spreads_and_ah_opens(spoken):
    spans, motion, _ = spoken
    lips = Lips(motion)
    for word in WORDS["oo"]:
        assert lips.width[frames(*spans[word])].min() < lips.rest_width - 5, word
    for word in WORDS["ee"]:
        span = frames(*spans[word])
        assert lips.width[span].min() > lips.rest_width - 1, word
        assert lips.width[span].max() > lips.rest_width + 3, word
    ee_open = max(lips.gap[frames(*spans[word])].max() for word in WORDS["ee"])
    for word in WORDS["ah"]:
        assert lips.gap[frames(*spans[word])].max() > max(14.0, ee_open + 4), word


def test_the_jaw_leads_the_sound_on_the_datasets_scale(spoken):
    spans, motion, audio = spoken
    # The voice's loudness per frame against the jaw: the jaw may move first,
    # never more than a frame after.
    hop = SAMPLE_RATE // FPS
    n = min(motion.n_frames, len(audio) // hop)
    loudness = np.sqrt((audio[: n * hop].reshape(n, hop) ** 2).mean(axis=1))
    jaw = motion.jaw_pose[:n, 0]

    def correlation(lag: int) -> float:  # jaw at frame t + lag against sound at t
        a, b = (
            (jaw[lag:], loudness[: n - lag])
            if lag >= 0
            else (jaw[:lag], loudness[-lag:])
        )
        return float(np.corrcoef(a, b)[0, 1])

    lags = range(-4, 5)
    best = max(lags, key=correlation)
    assert best <= 1 and correlation(best) > 0.6
    # FLAME's jaw as DualTalk's tracked data has it: mostly within 0..0.15 rad.
    speaking = jaw[motion.speaking[:n]]
    assert 0 <= jaw.min() and jaw.max() <= JAW_FULL_OPEN_RAD
    assert 0.005 < np.median(speaking) < 0.05
    # The ARKit jawOpen and the FLAME jaw are one mapping, both ways.
    jaw_open = motion.arkit[:, ARKIT_INDEX["jawOpen"]]
    np.testing.assert_allclose(
        jaw_from_jaw_open(jaw_open), motion.jaw_pose[:, 0], atol=1e-6
    )


def test_one_jaw_mapping_for_flame_only_motion(tmp_path):
    openings = np.linspace(0, 1, 11)
    np.testing.assert_allclose(jaw_open_from_jaw(jaw_from_jaw_open(openings)), openings)
    # A dataset file's typical jaw opens the built-in mouth visibly...
    dataset = load_motion(write_dataset_npz(tmp_path / "clip.npz", 3))
    dataset.pose[:, 3] = [0.0, 0.01, 0.03]
    lips = Lips(dataset)
    assert lips.gap[0] == pytest.approx(lips.rest_gap, abs=0.01)
    assert lips.gap[1] > lips.rest_gap + 3 and lips.gap[2] > lips.rest_gap + 7
    # ... and its Live Link JawOpen comes from the same mapping.
    columns = livelink_columns(dataset)
    np.testing.assert_allclose(
        columns[:, ARKIT_INDEX["jawOpen"]],
        jaw_open_from_jaw(dataset.pose[:, 3]),
        atol=1e-6,
    )


def opening_poses():
    """Mouths at their widest: the jaw at opening 1 with an open vowel's lips,
    and a FLAME jaw of 0.35 rad."""
    lips = {"mouthLowerDownLeft": 0.35, "mouthLowerDownRight": 0.35,
            "mouthUpperUpLeft": 0.1, "mouthUpperUpRight": 0.1}  # fmt: skip
    wide = make_motion(1, jawOpen=1.0, **lips)
    wide.pose[:, 3] = jaw_from_jaw_open(1.0)
    flame = make_motion(1, jaw_x=0.35)
    return {"jawOpen 1": wide, "FLAME jaw 0.35": flame, "rest": make_motion(1)}


def in_polygon(points: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    """Whether each (x, y) point lies inside the closed polygon (even-odd rule)."""
    x, y = points[:, :1], points[:, 1:2]
    x0, y0 = polygon[:, 0], polygon[:, 1]
    x1, y1 = np.roll(x0, -1), np.roll(y0, -1)
    between = (y0 > y) != (y1 > y)
    crossing = x < x0 + (x1 - x0) * (y - y0) / np.where(y1 == y0, 1e-12, y1 - y0)
    return (between & crossing).sum(axis=1) % 2 == 1


def test_teeth_and_tongue_stay_behind_the_lips():
    head, asset = BuiltinHead(), load_asset()
    rim = asset["lip_inner_edge"]
    inside = np.flatnonzero(np.isin(asset["vertex_part"], (2, 3)))  # teeth, tongue
    for name, motion in opening_poses().items():
        vertices = head.vertices(motion)[0]
        edge = vertices[rim]
        centre = edge[:, :2].mean(axis=0)
        order = np.argsort(np.arctan2(edge[:, 1] - centre[1], edge[:, 0] - centre[0]))
        seen = inside[in_polygon(vertices[inside, :2], edge[order, :2])]
        if name != "rest":
            assert len(seen) > 20, name  # the opening shows teeth and tongue
        for vertex in seen:
            x, y, z = vertices[vertex]
            # The lips' surface across the opening: between the rim above and
            # below at this x, interpolated in height.
            above, below = edge[edge[:, 1] > y], edge[edge[:, 1] <= y]
            top = above[np.argmin(np.abs(above[:, 0] - x))]
            bottom = below[np.argmin(np.abs(below[:, 0] - x))]
            share = (y - bottom[1]) / max(top[1] - bottom[1], 1e-9)
            surface = bottom[2] + share * (top[2] - bottom[2])
            assert z < surface, (name, vertex, z, surface)


def test_the_open_mouth_renders_darker_than_the_skin_around_it():
    from scipy.ndimage import binary_dilation

    from dualtalk_cli.render import Renderer

    head, asset = BuiltinHead(), load_asset()
    motion = opening_poses()["jawOpen 1"]
    vertices = head.vertices(motion)[0]
    inside = asset["mouth_cavity"] | np.isin(asset["vertex_part"], (2, 3))
    marks = np.where(inside[:, None], [0, 255, 0], [255, 0, 0]).astype(np.uint8)
    size = 256
    with Renderer([head.faces], [head.rest_vertices], size=size,
                  vertex_colors=[head.vertex_colors]) as renderer:  # fmt: skip
        picture = renderer.draw([vertices]).astype(np.float64)
    with Renderer([head.faces], [head.rest_vertices], size=size,
                  vertex_colors=[marks]) as renderer:  # fmt: skip
        marked = renderer.draw([vertices]).astype(np.float64)
    opening = (marked[..., 1] > 2 * marked[..., 0]) & (marked[..., 1] > 10)
    around = binary_dilation(opening, iterations=6) & ~opening & (marked[..., 0] > 10)
    assert opening.sum() > 100 and around.sum() > 100
    brightness = picture.mean(axis=2)
    assert brightness[opening].mean() < 0.8 * brightness[around].mean()


def test_the_recogniser_hears_the_words_sounds(spoken):
    from dualtalk_cli.phones import recognise_phones

    spans, _, audio = spoken
    phones = recognise_phones(audio, list(spans.values()))

    def heard(word: str, labels: set[str]) -> bool:
        start, end = spans[word]
        return any(
            p.label in labels and p.end > start and p.start < end for p in phones
        )

    expected = {
        "bilabial": ({"P", "B", "M"}, 4),
        "oo": ({"UW", "UH", "W", "OW"}, 4),
        "ah": ({"AA", "AH", "AO", "AE"}, 3),
    }
    for group, (labels, at_least) in expected.items():
        found = [word for word in WORDS[group] if heard(word, labels)]
        assert len(found) >= at_least, (group, found)


def test_tracks_decode_alike_in_children_or_here(spoken, monkeypatch):
    import os

    import dualtalk_cli.phones as phones

    spans, _, audio = spoken
    halves = list(spans.values())
    tracks = [(audio, halves[: len(halves) // 2]), (audio, halves[len(halves) // 2 :])]
    forks = []
    real_fork = os.fork

    def counted_fork() -> int:
        forks.append(1)
        return real_fork()

    monkeypatch.setattr(phones, "_can_fork", lambda: True)  # even beside torch
    monkeypatch.setattr(os, "fork", counted_fork)
    forked = phones.recognise_tracks(tracks)
    assert len(forks) == 1
    with monkeypatch.context() as patch:
        patch.setattr(phones, "_can_fork", lambda: False)
        here = phones.recognise_tracks(tracks)
    assert forked == here and all(forked)
    # A child that fails is replaced by decoding here; no child is left behind.
    with monkeypatch.context() as patch:
        patch.setattr(phones.pickle, "dump", lambda *args: os._exit(3))
        assert phones.recognise_tracks(tracks) == here
    assert len(forks) == 2
    with pytest.raises(ChildProcessError):
        os.waitpid(-1, os.WNOHANG)
