"""Where a conversation's outputs go, and how they are written without half-files.

An ``OutputPlan`` names every output of one conversation before any work: one
stem per speaker, the video's stem, the formats. Writers, the video encoder,
``animate`` and ``batch`` all take their paths, temporary names, the "already
exists" check and the clean-up of leftovers from here.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from dualtalk_cli.errors import OutputError

# Per format: the file extension ("" for a folder) and whether each speaker gets
# one (True) or the conversation gets one (False). A new format adds a line.
LAYOUT: dict[str, tuple[str, bool]] = {
    "npz": (".npz", True),
    "obj": ("", True),
    "mp4": (".mp4", False),
}
PARTIAL = ".partial"  # marks a temporary name: ".NAME.partial[.ext]"
PREVIOUS = ".previous"  # a folder output being replaced: ".NAME.previous"


def output_stems(
    audio_a: str | os.PathLike, audio_b: str | os.PathLike | None
) -> tuple[tuple[str, str], str]:
    """Each speaker's output stem and the video's stem, from the input file names.

    Two files: their stems (``_A``/``_B`` added when equal), the video joins them.
    One stereo file ``talk``: ``talk_speaker1``, ``talk_speaker2`` and ``talk``.
    """
    stem_a = Path(audio_a).stem
    if audio_b is None:
        return (f"{stem_a}_speaker1", f"{stem_a}_speaker2"), stem_a
    stem_b = Path(audio_b).stem
    if stem_a == stem_b:
        stem_a, stem_b = f"{stem_a}_A", f"{stem_b}_B"
    return (stem_a, stem_b), f"{stem_a}_{stem_b}"


@dataclass(frozen=True)
class OutputPlan:
    """The outputs of one conversation: folder, stems and formats."""

    out_dir: Path
    stems: tuple[str, ...]  # one per speaker, in speaker order
    video_stem: str
    formats: tuple[str, ...]

    @classmethod
    def for_audio(
        cls,
        out_dir: str | os.PathLike,
        audio: tuple[str | os.PathLike, str | os.PathLike | None],
        formats: tuple[str, ...],
    ) -> OutputPlan:
        """The plan for a conversation given as (A, B) files, or (stereo, None)."""
        stems, video_stem = output_stems(*audio)
        return cls(Path(out_dir), stems, video_stem, tuple(formats))

    def paths(self, output_format: str) -> list[Path]:
        """The final paths of one format, in speaker order."""
        extension, per_speaker = LAYOUT[output_format]
        stems = self.stems if per_speaker else (self.video_stem,)
        return [self.out_dir / f"{stem}{extension}" for stem in stems]

    def all_paths(self) -> list[Path]:
        """Every final path, format by format."""
        return [path for name in self.formats for path in self.paths(name)]

    def is_complete(self) -> bool:
        """Whether every output exists (each is renamed into place only whole)."""
        return all(path.exists() for path in self.all_paths())

    def any_exists(self) -> bool:
        return any(path.exists() for path in self.all_paths())

    def prepare(self, overwrite: bool = False) -> None:
        """Create the folder and fail, before any work, if it is unusable or an
        output exists without ``overwrite`` or something else is in its way."""
        prepare_folder(self.out_dir)
        for name in self.formats:
            is_folder = LAYOUT[name][0] == ""
            for path in self.paths(name):
                if not path.exists():
                    continue
                if not overwrite:
                    raise OutputError(
                        "already exists; pass --overwrite to replace it", path
                    )
                if path.is_dir() != is_folder:
                    kind = "folder" if path.is_dir() else "file"
                    raise OutputError(f"is a {kind} in the way of this output", path)

    def remove_leftovers(self) -> None:
        """Delete what a killed run left of this plan's outputs, in any format."""
        if not self.out_dir.is_dir():
            return
        finals = {path.name for name in LAYOUT for path in self.paths(name)}
        for path in self.out_dir.iterdir():
            if any(path.name.startswith(f".{name}.") for name in finals) and (
                PARTIAL in path.name or path.name.endswith(PREVIOUS)
            ):
                _remove(path)


def prepare_folder(folder: str | os.PathLike) -> None:
    """Create ``folder`` for outputs, or fail in one line if it cannot hold them."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise OutputError("is a file, not a folder for the outputs", folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OutputError(f"cannot create folder ({error.strerror})", folder) from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputError("is not writable", folder)


def temporary_path(path: Path) -> Path:
    """The name an output has while it is written: ``.NAME.partial[.ext]``."""
    return path.with_name(f".{path.name}{PARTIAL}{path.suffix}")


@contextlib.contextmanager
def atomic_file(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename onto it on success."""
    temporary = temporary_path(path)
    try:
        yield temporary
        os.replace(temporary, path)
    except OSError as error:
        raise output_error(error, path) from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()


@contextlib.contextmanager
def atomic_folder(path: Path) -> Iterator[Path]:
    """Yield a temporary folder beside ``path``; swap it in on success."""
    temporary = temporary_path(path)
    previous = path.with_name(f".{path.name}{PREVIOUS}")
    for leftover in (temporary, previous):
        shutil.rmtree(leftover, ignore_errors=True)
    try:
        temporary.mkdir(parents=True)
        yield temporary
        if path.exists():
            os.replace(path, previous)
        os.replace(temporary, path)
    except OSError as error:
        raise output_error(error, path) from None
    finally:
        shutil.rmtree(temporary, ignore_errors=True)
        shutil.rmtree(previous, ignore_errors=True)


def output_error(error: OSError, path: Path) -> OutputError:
    """The one-line error for an OS error while writing ``path``."""
    reasons = {errno.ENOSPC: "disk full", errno.EFBIG: "file too large for this disk"}
    reason = reasons.get(error.errno, error.strerror or str(error))
    return OutputError(f"cannot write ({reason})", path)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
