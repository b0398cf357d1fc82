"""The offscreen renderer and the MP4 writer, on small frames."""

from __future__ import annotations

import math
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import trimesh

from conftest import BLOCK_EGL
from dualtalk_cli.errors import OutputError
from dualtalk_cli.video import VideoWriter, probe

REPO = Path(__file__).resolve().parents[1]


def ball() -> tuple[np.ndarray, np.ndarray]:
    """A head-sized ball: (faces, vertices), 162 vertices."""
    sphere = trimesh.creation.icosphere(subdivisions=2, radius=0.1)
    return np.asarray(sphere.faces, np.int32), np.asarray(sphere.vertices, np.float32)


@pytest.fixture(scope="module")
def renderer():
    from dualtalk_cli.render import Renderer

    faces, vertices = ball()
    with Renderer([faces, faces], [vertices, vertices], size=64) as r:
        yield r


def test_frame_shape_and_type(renderer):
    _, vertices = ball()
    frame = renderer.draw([vertices, vertices])
    assert frame.shape == (64, 128, 3)
    assert frame.dtype == np.uint8


def test_one_head_fills_one_tile():
    from dualtalk_cli.render import Renderer

    faces, vertices = ball()
    colors = np.tile(np.uint8([200, 60, 40]), (len(vertices), 1))
    with Renderer([faces], [vertices], size=32, vertex_colors=[colors]) as r:
        frame = r.draw([vertices])
    assert frame.shape == (32, 32, 3)
    middle = frame[16, 16].astype(int)
    assert middle[0] > middle[1] + 40  # the red vertex colours show


def test_new_vertices_change_pixels(renderer):
    _, vertices = ball()
    before = renderer.draw([vertices, vertices])
    squashed = vertices * np.float32([1.0, 0.6, 1.0])
    after = renderer.draw([squashed, squashed])
    assert np.abs(before.astype(int) - after).sum(axis=2).astype(bool).mean() > 0.05


def test_head_zero_is_on_the_left(renderer):
    _, vertices = ball()
    both = renderer.draw([vertices, vertices])
    point = np.repeat(vertices[:1], len(vertices), axis=0)  # head 0 shrunk away
    right_only = renderer.draw([point, vertices])
    background = right_only[0, 0]
    assert (right_only[:, :64] == background).all()
    assert not (both[:, :64] == background).all()
    assert np.array_equal(right_only[:, 64:], both[:, 64:])


def stereo(seconds: float, rate: int = 16000) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    tones = [np.sin(2 * np.pi * f * t) for f in (220, 330)]
    return (0.3 * np.stack(tones, axis=1)).astype(np.float32)


def frames(n: int, width: int = 96, height: int = 64):
    for i in range(n):
        yield np.full((height, width, 3), (i * 20) % 256, np.uint8)


def test_mp4_has_the_frames_size_and_audio(tmp_path):
    seconds, fps = 0.5, 25
    n = math.ceil(seconds * fps)
    path = tmp_path / "out.mp4"
    with VideoWriter(path, 96, 64, fps, audio=stereo(seconds)) as video:
        for frame in frames(n):
            video.write(frame)
    info = probe(path)
    assert info["n_frames"] == n
    assert (info["width"], info["height"]) == (96, 64)
    assert info["fps"] == fps
    assert info["audio_channels"] == 2
    assert abs(info["audio_seconds"] - seconds) < 0.01
    assert abs(info["video_seconds"] - info["audio_seconds"]) <= 1 / fps
    assert [p.name for p in tmp_path.iterdir()] == ["out.mp4"]


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_failure_leaves_no_partial_and_keeps_the_old_file(tmp_path, monkeypatch, error):
    temp = tmp_path / "temp"  # where the writer puts its WAV and ffmpeg's log
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    out = tmp_path / "out"
    out.mkdir()
    path = out / "video.mp4"
    path.write_bytes(b"an earlier video")
    with pytest.raises(error):
        with VideoWriter(path, 96, 64, 25, audio=stereo(0.4)) as video:
            for frame in frames(5):
                video.write(frame)
            raise error("stop")
    assert path.read_bytes() == b"an earlier video"
    assert [p.name for p in out.iterdir()] == ["video.mp4"]
    assert list(temp.iterdir()) == []


def test_ffmpeg_failure_is_an_output_error(tmp_path):
    path = tmp_path / "video.mp4"
    with pytest.raises(OutputError, match="video.mp4.*invalid preset"):
        with VideoWriter(path, 96, 64, 25, preset="no-such-preset") as video:
            for frame in frames(30):
                video.write(frame)
    assert list(tmp_path.iterdir()) == []


def test_missing_folder_is_an_output_error(tmp_path):
    with pytest.raises(OutputError, match="folder"):
        with VideoWriter(tmp_path / "nowhere" / "video.mp4", 96, 64, 25):
            pass


# Run in a fresh process where every attempt to load libEGL fails, as on a
# machine without the Debian packages.
NO_EGL = (
    BLOCK_EGL
    + """
from dualtalk_cli.errors import RendererUnavailable
from dualtalk_cli.render import check_renderer
try:
    check_renderer()
except RendererUnavailable as error:
    print(error)
    raise SystemExit(3)
"""
)


def test_missing_egl_names_the_packages():
    result = subprocess.run(
        [sys.executable, "-c", NO_EGL], capture_output=True, text=True, cwd=REPO
    )
    assert result.returncode == 3, result.stderr
    message = result.stdout.strip()
    assert len(message.splitlines()) == 1
    for needle in "libegl1 libegl-mesa0 libgl1 libgl1-mesa-dri --no-video".split():
        assert needle in message


def test_each_antialias_choice_smooths_edges_toward_a_fine_reference():
    """Every smoothing choice is nearer than none to a frame drawn at 4x the
    size and averaged down, on the silhouette where aliasing shows."""
    from dualtalk_cli.options import ANTIALIAS
    from dualtalk_cli.render import Renderer

    faces, vertices = ball()
    tilted = vertices * np.float32([1.0, 0.8, 1.0])

    def frame(size: int, antialias: str) -> np.ndarray:
        with Renderer([faces], [vertices], size=size, antialias=antialias) as r:
            return r.draw([tilted]).astype(float)

    fine = frame(256, "msaa4").reshape(64, 4, 64, 4, 3).mean(axis=(1, 3))
    errors = {}
    for antialias in ANTIALIAS:
        drawn = frame(64, antialias)
        assert drawn.shape == (64, 64, 3)
        errors[antialias] = np.abs(drawn - fine).mean()
    for antialias in ("msaa4", "msaa2", "ssaa2"):
        assert errors[antialias] < 0.8 * errors["none"], errors


@pytest.mark.parametrize(
    "flags, needle",
    [
        (("-f", "npz", "--antialias", "none"), "--antialias (no video is written)"),
        (("--antialias", "fxaa"), "--antialias must be one of msaa4, msaa2"),
    ],
)
def test_antialias_without_video_or_unknown_is_refused(tmp_path, flags, needle):
    from conftest import assert_one_line_error, run_cli
    from dualtalk_cli.testing import write_dialogue

    folder = tmp_path / "in"
    folder.mkdir()
    result = run_cli("animate", *write_dialogue(folder), "-o", tmp_path / "o", *flags)
    assert_one_line_error(result, needle)


def test_a_frame_larger_than_opengl_allows_is_one_clear_error():
    from dualtalk_cli.errors import RendererUnavailable
    from dualtalk_cli.render import Renderer

    faces, vertices = ball()
    with pytest.raises(RendererUnavailable) as caught:
        Renderer([faces], [vertices], size=40000, antialias="ssaa2")
    message = str(caught.value)
    assert "cannot draw a 80000x80000 frame" in message
    assert "--antialias other than ssaa2" in message and "\n" not in message
