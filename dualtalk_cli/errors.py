"""Errors the tool reports as one line and exit code 2."""

from __future__ import annotations

import os


def first_line(error: BaseException) -> str:
    """The first line of an exception's message ("" when it has none)."""
    lines = str(error).strip().splitlines()
    return lines[0] if lines else ""


class DualtalkError(Exception):
    """A problem with the user's input or environment, shown as one line."""

    exit_code = 2

    def __init__(self, message: str, path: str | os.PathLike | None = None) -> None:
        self.path = None if path is None else os.fspath(path)
        super().__init__(f"{self.path}: {message}" if self.path else message)


class AudioError(DualtalkError):
    """An audio file cannot be read or is unusable."""


class MotionFileError(DualtalkError):
    """A parameter (NPZ) file is missing keys or has wrong shapes."""


class OptionError(DualtalkError):
    """An option that cannot be honoured, or that would have no effect."""


class OutputError(DualtalkError):
    """An output path cannot be written, or exists without --overwrite."""


class RendererUnavailable(DualtalkError):
    """Offscreen OpenGL (EGL) cannot be used on this machine."""


class EngineUnavailable(DualtalkError):
    """An engine was asked for but cannot run here."""


class HeadUnavailable(DualtalkError):
    """A head was asked for but its files are missing or invalid."""


class EvaluationError(DualtalkError):
    """Predictions and ground truth cannot be paired for an evaluation."""
