"""Shared fixtures: small synthetic conversations written as audio files."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"

# Python source that makes libEGL unloadable, as on a machine without it.
BLOCK_EGL = """
import ctypes
_real_init = ctypes.CDLL.__init__

def _without_egl(self, name, *args, **kwargs):
    if name and "EGL" in str(name):
        raise OSError(f"{name}: cannot open shared object file: No such file")
    _real_init(self, name, *args, **kwargs)

ctypes.CDLL.__init__ = _without_egl
"""


def voice(
    seconds: float,
    turns: list[tuple[float, float]],
    f0: float,
    rate: int = 16000,
    seed: int = 0,
) -> np.ndarray:
    """Speech-like audio: a harmonic voice with 4-5 Hz syllables during ``turns``."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    pitch = f0 * (1 + 0.05 * np.sin(2 * np.pi * 0.7 * t))
    phase = 2 * np.pi * np.cumsum(pitch) / rate
    harmonics = sum(np.sin(k * phase) / k for k in range(1, 12))
    syllables = np.clip(np.sin(2 * np.pi * 4.5 * t + rng.uniform(0, 6)), 0, None) ** 0.7
    gate = np.zeros_like(t)
    for start, end in turns:
        gate[(t >= start) & (t < end)] = 1.0
    speech = harmonics * syllables * gate
    peak = np.max(np.abs(speech)) if gate.any() else 1.0
    noise = 0.0007 * rng.standard_normal(len(t))  # a quiet room, about -63 dBFS
    return (0.3 * speech / peak + noise).astype(np.float32)


def write_dialogue(
    folder: Path,
    seconds: float = 4.0,
    turns_a: list[tuple[float, float]] | None = None,
    turns_b: list[tuple[float, float]] | None = None,
    rate: int = 16000,
) -> tuple[Path, Path]:
    """Write a.wav and b.wav: by default A speaks first, then B."""
    turns_a = [(0.2, seconds / 2 - 0.3)] if turns_a is None else turns_a
    turns_b = [(seconds / 2 + 0.1, seconds - 0.2)] if turns_b is None else turns_b
    path_a, path_b = folder / "a.wav", folder / "b.wav"
    soundfile.write(path_a, voice(seconds, turns_a, 120, rate, seed=1), rate)
    soundfile.write(path_b, voice(seconds, turns_b, 210, rate, seed=2), rate)
    return path_a, path_b


@pytest.fixture
def dialogue(tmp_path: Path) -> tuple[Path, Path]:
    """A 4 s two-person dialogue at 16 kHz: A speaks, then B."""
    folder = tmp_path / "in"
    folder.mkdir()
    return write_dialogue(folder)


def run_cli(*args: str | os.PathLike, **kwargs) -> subprocess.CompletedProcess:
    """Run ``dualtalk ARGS`` in a fresh process, as a user would."""
    command = [sys.executable, "-m", "dualtalk_cli", *map(str, args)]
    return subprocess.run(
        command, capture_output=True, text=True, timeout=600, **kwargs
    )


def assert_one_line_error(
    result: subprocess.CompletedProcess, *needles: str, after_start: bool = False
) -> None:
    """Exit code 2, one line on stderr naming what went wrong, no traceback.

    ``after_start``: the failure came mid-run, after the run's status line.
    """
    assert result.returncode == 2, (result.returncode, result.stderr)
    lines = result.stderr.strip().splitlines()
    if after_start:
        assert lines[0].startswith("engine "), result.stderr
        lines = lines[1:]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


def leftovers(folder: Path) -> list[Path]:
    """Temporary or partial files a run may have left in ``folder``."""
    return [
        p for p in folder.rglob("*") if ".partial" in p.name or ".previous" in p.name
    ]


def write_synthetic_flame(path: Path) -> Path:
    """A FLAME-format .npz with FLAME's sizes: 5,023 vertices, 9,976 triangles."""
    import trimesh

    rng = np.random.default_rng(0)
    sphere = trimesh.creation.icosphere(subdivisions=4, radius=0.1)
    vertices = np.zeros((5023, 3))
    vertices[: len(sphere.vertices)] = sphere.vertices
    vertices[len(sphere.vertices) :] = sphere.vertices[0]
    faces = np.zeros((9976, 3), np.int64)
    faces[: len(sphere.faces)] = sphere.faces
    faces[len(sphere.faces) :] = sphere.faces[0]  # degenerate padding
    regressor = np.zeros((5, 5023))
    for joint, point in enumerate([(0, -0.1, 0), (0, -0.05, 0), (0, -0.02, 0.03)]):
        nearest = np.argsort(np.linalg.norm(vertices - point, axis=1))[:8]
        regressor[joint, nearest] = 1 / 8
    regressor[3:, 0] = 1.0
    weights = np.zeros((5023, 5))
    weights[:, 1] = 1.0
    chin = vertices[:, 1] < -0.04
    weights[chin, 1], weights[chin, 2] = 0.2, 0.8
    np.savez(
        path,
        v_template=vertices,
        f=faces,
        shapedirs=rng.normal(0, 2e-3, (5023, 3, 400)),
        posedirs=rng.normal(0, 1e-4, (5023, 3, 36)),
        J_regressor=regressor,
        weights=weights,
        kintree_table=np.array([[-1, 0, 1, 1, 1], [0, 1, 2, 3, 4]]),
    )
    return path


def write_dataset_npz(path: Path, n_frames: int = 30, seed: int = 0) -> Path:
    """A DualTalk dataset NPZ: exp, pose = [neck, jaw], shape, tex, cam, light."""
    rng = np.random.default_rng(seed)
    pose = np.zeros((n_frames, 6), np.float32)
    pose[:, 3] = 0.15 * (1 + np.sin(np.arange(n_frames) / 3))  # jaw opening
    pose[:, 1] = 0.1  # head turned
    np.savez(
        path,
        exp=rng.normal(0, 0.5, (n_frames, 50)).astype(np.float32),
        pose=pose,
        shape=rng.normal(0, 0.5, (n_frames, 100)).astype(np.float32),
        tex=np.zeros((n_frames, 50), np.float32),
        cam=np.zeros((n_frames, 3), np.float32),
        light=np.zeros((n_frames, 9, 3), np.float32),
    )
    return path
