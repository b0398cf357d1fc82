"""Writers: a conversation's motions to NPZ files, OBJ sequences and one MP4.

Every writer writes under a temporary name in the output folder and renames onto
the final name only when complete, so a failed or interrupted run leaves no
partial file and keeps earlier results.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dualtalk_cli.errors import OutputError
from dualtalk_cli.heads.base import Head
from dualtalk_cli.motion import Motion

# progress(stage, done, total): called as work advances; stage names a writer.
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class Conversation:
    """What the writers receive: both speakers' motion, names and audio."""

    names: tuple[str, ...]  # one output stem per speaker, e.g. ("a", "b")
    motions: tuple[Motion, ...]
    audio: np.ndarray | None = None  # (N, 2) float32 at 16 kHz, speaker A left
    video_name: str | None = None  # stem of the MP4; default joins the names

    @property
    def video_stem(self) -> str:
        return self.video_name or "_".join(self.names)

    @property
    def n_frames(self) -> int:
        return max(motion.n_frames for motion in self.motions)

    @property
    def frames_per_second(self) -> float:
        return self.motions[0].frames_per_second


class Writer(ABC):
    """One output format; ``outputs`` names what ``write`` will create."""

    extension: str = ""

    def __init__(self, out_dir: str | os.PathLike, overwrite: bool = False) -> None:
        self.out_dir = Path(out_dir)
        self.overwrite = overwrite

    def path_for(self, stem: str) -> Path:
        return self.out_dir / f"{stem}{self.extension}"

    @abstractmethod
    def outputs(self, conversation: Conversation) -> list[Path]:
        """The final paths this writer creates for ``conversation``."""

    @abstractmethod
    def write(
        self,
        conversation: Conversation,
        head: Head | None = None,
        progress: Progress | None = None,
        cancelled: threading.Event | None = None,
    ) -> list[Path]:
        """Write every output of ``conversation`` and return their paths."""

    def check(self, conversation: Conversation) -> None:
        """Fail before any work if an output exists and may not be replaced."""
        for path in self.outputs(conversation):
            if path.exists() and not self.overwrite:
                raise OutputError(
                    "already exists; pass --overwrite to replace it", path
                )
            if path.exists() and path.is_dir() != (self.extension == ""):
                kind = "folder" if path.is_dir() else "file"
                raise OutputError(f"is a {kind} in the way of this output", path)


class NpzWriter(Writer):
    """``<stem>.npz`` per speaker, in the DualTalk dataset layout plus our extras."""

    extension = ".npz"

    def outputs(self, conversation: Conversation) -> list[Path]:
        return [self.path_for(name) for name in conversation.names]

    def write(self, conversation, head=None, progress=None, cancelled=None):
        paths = self.outputs(conversation)
        for done, (path, motion) in enumerate(zip(paths, conversation.motions)):
            with atomic_file(path) as temporary:
                motion.save(temporary)
            if progress:
                progress("npz", done + 1, len(paths))
        return paths


class ObjWriter(Writer):
    """``<stem>/000000.obj ...`` per speaker: one mesh a frame, the same faces."""

    extension = ""

    def outputs(self, conversation: Conversation) -> list[Path]:
        return [self.path_for(name) for name in conversation.names]

    def write(self, conversation, head=None, progress=None, cancelled=None):
        if head is None:
            raise ValueError("ObjWriter needs a head")
        paths = self.outputs(conversation)
        total = sum(motion.n_frames for motion in conversation.motions)
        done = 0
        faces = face_lines(head.faces)
        for path, motion in zip(paths, conversation.motions):
            with atomic_folder(path) as folder:
                frame = 0
                for chunk in head.iter_vertices(motion):
                    if cancelled is not None and cancelled.is_set():
                        raise Cancelled
                    for vertices in chunk:
                        with open(folder / f"{frame:06d}.obj", "w") as file:
                            file.write(vertex_lines(vertices))
                            file.write(faces)
                        frame += 1
                    done += len(chunk)
                    if progress:
                        progress("obj", done, total)
        return paths


class Mp4Writer(Writer):
    """``<stemA>_<stemB>.mp4``: the heads side by side with the conversation's audio."""

    extension = ".mp4"

    def __init__(self, out_dir, overwrite=False, size: int = 512) -> None:
        super().__init__(out_dir, overwrite)
        self.size = size

    def outputs(self, conversation: Conversation) -> list[Path]:
        return [self.path_for(conversation.video_stem)]

    def write(self, conversation, head=None, progress=None, cancelled=None):
        from dualtalk_cli.render import Renderer
        from dualtalk_cli.video import VideoWriter

        if head is None:
            raise ValueError("Mp4Writer needs a head")
        (path,) = self.outputs(conversation)
        n_heads = len(conversation.motions)
        total = conversation.n_frames
        colors = [head.vertex_colors] * n_heads
        with (
            Renderer(
                [head.faces] * n_heads,
                [head.rest_vertices] * n_heads,
                size=self.size,
                vertex_colors=colors,
            ) as renderer,
            VideoWriter(
                path,
                width=self.size * n_heads,
                height=self.size,
                frames_per_second=conversation.frames_per_second,
                audio=conversation.audio,
            ) as video,
        ):
            streams = [head.iter_vertices(motion) for motion in conversation.motions]
            done = 0
            for chunks in zip(*streams):
                if cancelled is not None and cancelled.is_set():
                    raise Cancelled
                for frame in range(len(chunks[0])):
                    video.write(renderer.draw([chunk[frame] for chunk in chunks]))
                done += len(chunks[0])
                if progress:
                    progress("mp4", done, total)
        return [path]


WRITERS: dict[str, type[Writer]] = {
    "npz": NpzWriter,
    "obj": ObjWriter,
    "mp4": Mp4Writer,
}


def get_writers(
    formats: list[str],
    out_dir: str | os.PathLike,
    *,
    overwrite: bool = False,
    size: int = 512,
) -> list[Writer]:
    """Writers for ``formats`` ("all" means every format), in a fixed order."""
    unknown = set(formats) - set(WRITERS) - {"all"}
    if unknown:
        raise ValueError(f"unknown output formats: {sorted(unknown)}")
    names = [name for name in WRITERS if name in formats or "all" in formats]
    return [
        Mp4Writer(out_dir, overwrite, size)
        if name == "mp4"
        else WRITERS[name](out_dir, overwrite)
        for name in names
    ]


def vertex_lines(vertices: np.ndarray) -> str:
    """OBJ ``v`` lines for (V, 3) vertices, 0.01 mm resolution in metres."""
    flat = np.asarray(vertices, np.float64).ravel().tolist()
    return ("v %.5f %.5f %.5f\n" * len(vertices)) % tuple(flat)


def face_lines(faces: np.ndarray) -> str:
    """OBJ ``f`` lines (1-based) for (F, 3) triangles."""
    flat = (np.asarray(faces, np.int64) + 1).ravel().tolist()
    return ("f %d %d %d\n" * len(faces)) % tuple(flat)


class Cancelled(Exception):
    """Another writer failed; stop quietly and clean up."""


@contextlib.contextmanager
def atomic_file(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename onto it on success."""
    temporary = path.with_name(f".{path.name}.partial{path.suffix}")
    try:
        yield temporary
        os.replace(temporary, path)
    except OSError as error:
        raise _output_error(error, path) from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()


@contextlib.contextmanager
def atomic_folder(path: Path) -> Iterator[Path]:
    """Yield a temporary folder beside ``path``; swap it in on success."""
    temporary = path.with_name(f".{path.name}.partial")
    previous = path.with_name(f".{path.name}.previous")
    for leftover in (temporary, previous):
        shutil.rmtree(leftover, ignore_errors=True)
    try:
        temporary.mkdir(parents=True)
        yield temporary
        if path.exists():
            os.replace(path, previous)
        os.replace(temporary, path)
    except OSError as error:
        raise _output_error(error, path) from None
    finally:
        shutil.rmtree(temporary, ignore_errors=True)
        shutil.rmtree(previous, ignore_errors=True)


def _output_error(error: OSError, path: Path) -> OutputError:
    reasons = {errno.ENOSPC: "disk full", errno.EFBIG: "file too large for this disk"}
    reason = reasons.get(error.errno, error.strerror or str(error))
    return OutputError(f"cannot write ({reason})", path)
