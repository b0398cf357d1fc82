"""Shared fixtures: small synthetic conversations written as audio files."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from dualtalk_cli.testing import write_dialogue, write_pair

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


def animate_pair(folder: Path, formats: str, seconds: float = 2.0) -> Path:
    """A ``seconds`` dialogue ``talk_speaker1/2.wav`` in ``folder`` animated into
    ``folder/out`` in ``formats``; returns that folder."""
    write_pair(folder, "talk", seconds=seconds)
    out = folder / "out"
    audio = (folder / "talk_speaker1.wav", folder / "talk_speaker2.wav")
    result = run_cli("animate", *audio, "-o", out, "--format", formats)
    assert result.returncode == 0, result.stderr
    return out
