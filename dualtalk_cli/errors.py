"""Errors the tool reports as one line and exit code 2."""

from __future__ import annotations

import os
import re

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def first_line(error: BaseException) -> str:
    """The first line of an exception's message ("" when it has none)."""
    lines = str(error).strip().splitlines()
    return lines[0] if lines else ""


def valid_utf8(text: str) -> str:
    """``text`` with the bytes of a file name that is not UTF-8 shown as \\xNN,
    so it can be written as UTF-8 (Python keeps such bytes as surrogates)."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def one_line(text: str) -> str:
    """``text`` safe to print as one line of UTF-8: control characters (a
    newline in a file name, say) escaped, and non-UTF-8 bytes as \\xNN."""
    return _CONTROL.sub(lambda match: ascii(match.group())[1:-1], valid_utf8(text))


def describe(error: BaseException) -> str:
    """One line for any error: ours as they are, the system's with the file."""
    if isinstance(error, DualtalkError):
        return str(error)
    if isinstance(error, OSError) and error.strerror:
        name = error.filename
        where = f"{os.fsdecode(name)}: " if name is not None else ""
        return one_line(f"{where}{error.strerror}")
    if isinstance(error, ValueError) and "null byte" in str(error):
        return "a file name holds a NUL byte"
    return one_line(f"internal error: {type(error).__name__}: {first_line(error)}")


class DualtalkError(Exception):
    """A problem with the user's input or environment, shown as one line."""

    exit_code = 2

    def __init__(self, message: str, path: str | os.PathLike | None = None) -> None:
        self.path = None if path is None else os.fspath(path)
        if isinstance(self.path, bytes):
            self.path = os.fsdecode(self.path)
        super().__init__(one_line(f"{self.path}: {message}" if self.path else message))


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
