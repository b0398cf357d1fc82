"""Writers: a conversation's motions to NPZ, OBJ, MP4, CSV, GLB, WAV and RTTM files.

Each writer takes its paths from the conversation's OutputPlan and writes each
output under a temporary name from the run's OutputTransaction, which renames
them all onto their final names only when every writer has finished; a failed
or interrupted run leaves no partial file and keeps earlier results. A new
output format is one writer here and one line of ``outputs.LAYOUT``.
"""

from __future__ import annotations

import functools
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

import numpy as np

from dualtalk_cli.audio import SAMPLE_RATE
from dualtalk_cli.heads.base import Head
from dualtalk_cli.motion import Conversation
from dualtalk_cli.options import OutputOptions, needs_head
from dualtalk_cli.outputs import OutputPlan, OutputTransaction, writing_error

# progress(stage, done, total): called as work advances; stage names a writer.
Progress = Callable[[str, int, int], None]


class Writer(ABC):
    """One output format, written to the paths its plan names for it."""

    format: ClassVar[str]

    def __init__(
        self, plan: OutputPlan, options: OutputOptions, transaction: OutputTransaction
    ) -> None:
        self.plan = plan
        self.paths = plan.paths(self.format)
        self.options = options
        self.transaction = transaction

    @abstractmethod
    def write(
        self,
        conversation: Conversation,
        head: Head | None = None,
        progress: Progress | None = None,
        cancelled: threading.Event | None = None,
    ) -> list[Path]:
        """Write every output of ``conversation`` and return their paths."""


class NpzWriter(Writer):
    """``<stem>.npz`` per speaker, in the DualTalk dataset layout plus our extras."""

    format = "npz"

    def write(self, conversation, head=None, progress=None, cancelled=None):
        paths = self.paths
        for done, (path, motion) in enumerate(zip(paths, conversation.motions)):
            with writing_error(path):
                motion.save(self.transaction.file(path))
            if progress:
                progress("npz", done + 1, len(paths))
        return paths


class ObjWriter(Writer):
    """``<stem>/000000.obj ...`` per speaker: one mesh a frame, the same faces."""

    format = "obj"

    def write(self, conversation, head=None, progress=None, cancelled=None):
        paths = self.paths
        total = sum(motion.n_frames for motion in conversation.motions)
        done = 0
        faces = face_lines(head.faces)
        for path, motion in zip(paths, conversation.motions):
            folder = self.transaction.folder(path)
            frame = 0
            for chunk in head.iter_vertices(motion):
                stop_if(cancelled)
                with writing_error(path):
                    for vertices in chunk:
                        with open(folder / f"{frame:06d}.obj", "wb") as file:
                            file.write(vertex_lines(vertices))
                            file.write(faces)
                        frame += 1
                done += len(chunk)
                if progress:
                    progress("obj", done, total)
        return paths


class Mp4Writer(Writer):
    """``<stemA>_<stemB>.mp4``: the heads side by side with the conversation's audio."""

    format = "mp4"

    def write(self, conversation, head=None, progress=None, cancelled=None):
        from dualtalk_cli.render import Renderer
        from dualtalk_cli.video import VideoWriter

        (path,) = self.paths
        size = self.options.video_size
        n_heads = len(conversation.motions)
        total = conversation.n_frames
        colors = [head.vertex_colors] * n_heads
        with (
            Renderer(
                [head.faces] * n_heads,
                [head.rest_vertices] * n_heads,
                size=size,
                vertex_colors=colors,
                antialias=self.options.video_antialias,
            ) as renderer,
            VideoWriter(
                self.transaction.file(path),
                width=size * n_heads,
                height=size,
                frames_per_second=conversation.frames_per_second,
                audio=conversation.audio,
                atomic=False,  # the transaction renames it with the others
            ) as video,
        ):
            streams = [head.iter_vertices(motion) for motion in conversation.motions]
            done = 0
            for chunks in zip(*streams):
                stop_if(cancelled)
                for frame in range(len(chunks[0])):
                    video.write(renderer.draw([chunk[frame] for chunk in chunks]))
                done += len(chunks[0])
                if progress:
                    progress("mp4", done, total)
        return [path]


class CsvWriter(Writer):
    """``<stem>.csv`` per speaker: Live Link Face's columns (see ``livelink``)."""

    format = "csv"

    def write(self, conversation, head=None, progress=None, cancelled=None):
        from dualtalk_cli.livelink import write_livelink_csv

        for done, (path, motion) in enumerate(zip(self.paths, conversation.motions)):
            with writing_error(path):
                write_livelink_csv(self.transaction.file(path), motion)
            if progress:
                progress("csv", done + 1, len(self.paths))
        return self.paths


class GlbWriter(Writer):
    """``<video_stem>.glb``: every head skinned and morphing, one animation
    for the whole conversation (see ``gltf``)."""

    format = "glb"

    def write(self, conversation, head=None, progress=None, cancelled=None):
        from dualtalk_cli.gltf import conversation_glb

        (path,) = self.paths
        rigs = []
        for done, motion in enumerate(conversation.motions):
            stop_if(cancelled)
            rigs.append(head.rig(motion))
            if progress:
                progress("glb", done + 1, len(conversation.motions) + 1)
        extras = {"speakers": list(self.plan.stems)}
        if "wav" in self.plan.formats:
            extras["audio"] = self.plan.paths("wav")[0].name
        data = conversation_glb(rigs, extras)
        with writing_error(path):
            self.transaction.file(path).write_bytes(data)
        if progress:
            progress("glb", len(rigs) + 1, len(rigs) + 1)
        return [path]


class WavWriter(Writer):
    """``<video_stem>.wav``: the conversation's audio, A left and B right, so an
    engine can play an exported animation in sync."""

    format = "wav"

    def write(self, conversation, head=None, progress=None, cancelled=None):
        from dualtalk_cli.video import write_wav

        if conversation.audio is None:
            raise ValueError("WavWriter needs the conversation's audio")
        (path,) = self.paths
        with writing_error(path):
            write_wav(self.transaction.file(path), conversation.audio, SAMPLE_RATE)
        return [path]


class RttmWriter(Writer):
    """``<video_stem>.rttm``: who speaks when, where one recording was split by
    voice; ``--diarization`` reads it back (see ``rttm``)."""

    format = "rttm"

    def write(self, conversation, head=None, progress=None, cancelled=None):
        from dualtalk_cli.rttm import format_rttm

        if conversation.diarization is None:
            raise ValueError("RttmWriter needs the conversation's diarization")
        (path,) = self.paths
        text = format_rttm(conversation.diarization, self.plan.video_stem)
        with writing_error(path):
            self.transaction.file(path).write_text(text, encoding="utf-8")
        return [path]


WRITERS: dict[str, type[Writer]] = {
    writer.format: writer
    for writer in (
        NpzWriter,
        ObjWriter,
        Mp4Writer,
        CsvWriter,
        GlbWriter,
        WavWriter,
        RttmWriter,
    )
}


def write_outputs(
    transaction: OutputTransaction,
    plan: OutputPlan,
    options: OutputOptions,
    conversation: Conversation,
    head: Head | None,
    progress: Progress | None = None,
) -> list[Path]:
    """Write every format of ``plan`` into ``transaction`` (which commits them);
    OBJ writing overlaps rendering in a thread.

    Drawing and encoding keep the main thread busy, so the OBJ text is
    formatted beside them instead of after them.
    """
    writers = [WRITERS[name](plan, options, transaction) for name in plan.formats]
    if head is None and needs_head(plan.formats):
        raise ValueError(f"writing {plan.formats} needs a head")
    overlap = any(isinstance(writer, Mp4Writer) for writer in writers)
    cancelled = threading.Event()
    outputs: dict[Writer, list[Path]] = {}
    errors: list[BaseException] = []

    def write_in_background(writer: Writer) -> None:
        try:
            outputs[writer] = writer.write(conversation, head, progress, cancelled)
        except BaseException as error:  # re-raised in the calling thread below
            errors.append(error)
            cancelled.set()

    threads: list[threading.Thread] = []
    try:
        for writer in writers:
            if overlap and isinstance(writer, ObjWriter):
                thread = threading.Thread(target=write_in_background, args=(writer,))
                threads.append(thread)  # first: Ctrl-C may come inside start()
                thread.start()
            else:
                outputs[writer] = writer.write(conversation, head, progress, cancelled)
    except Cancelled:
        pass  # a background writer failed; its error is raised below
    except BaseException:
        cancelled.set()
        raise
    finally:
        for thread in threads:
            if thread.ident is not None:  # started
                thread.join()
    for error in errors:
        if not isinstance(error, Cancelled):
            raise error
    return [path for writer in writers for path in outputs.get(writer, [])]


OBJ_DECIMALS = 5  # 0.01 mm in metres
_TABLE_LIMIT = 10**OBJ_DECIMALS  # numbers of up to 5 digits come from a table
_V_LINE = "v %.5f %.5f %.5f\n"  # the bytes vertex_lines writes, as printf has them


@functools.cache
def _digit_table() -> np.ndarray:
    """(100000, 5) uint8: the zero-padded ASCII digits of 0 ... 99999."""
    numbers = np.arange(_TABLE_LIMIT)[:, None]
    powers = 10 ** np.arange(OBJ_DECIMALS - 1, -1, -1)
    return (numbers // powers % 10 + ord("0")).astype(np.uint8)


def vertex_lines(vertices: np.ndarray) -> bytes:
    """OBJ ``v`` lines for (V, 3) vertices, 0.01 mm resolution in metres: the
    bytes of ``"v %.5f %.5f %.5f\\n"`` for each vertex, formatted in numpy.

    Each number is rounded to a count of 1e-5 and its digits are looked up and
    laid out in a byte table. A value whose scaled form lies within rounding
    error of a half (or that is not finite, or 100 km or more) is left to
    Python's formatting, which rounds the exact binary value, so the bytes are
    always printf's.
    """
    values = np.asarray(vertices, np.float64).reshape(-1, 3)
    with np.errstate(invalid="ignore", over="ignore"):
        scaled = values * float(_TABLE_LIMIT)
        fraction = np.abs(scaled - np.trunc(scaled))
        # x * 1e5 is within half an ulp of the exact product: its rounding can
        # only be wrong where it lies within an ulp of a half.
        doubtful = ~(np.abs(fraction - 0.5) > 2 * np.spacing(np.abs(scaled)))
        doubtful |= ~(np.abs(scaled) < float(_TABLE_LIMIT) ** 2 - 1)  # nan, inf too
    units = np.abs(np.rint(np.where(doubtful, 0.0, scaled))).astype(np.int64)
    whole, decimals = np.divmod(units, _TABLE_LIMIT)
    n_whole = len(str(int(whole.max(initial=0))))
    table = _digit_table()
    # One field per number: sign, whole digits, point, decimals.
    width = n_whole + 7
    field = np.empty((*values.shape, width), np.uint8)
    field[..., 0] = ord("-")
    field[..., 1 : 1 + n_whole] = table[whole, OBJ_DECIMALS - n_whole :]
    field[..., 1 + n_whole] = ord(".")
    field[..., 2 + n_whole :] = table[decimals]
    keep = np.ones(field.shape, bool)
    keep[..., 0] = np.signbit(values)  # "-0.00000" for small negatives, as printf
    # Leading zeros of the whole part go; its last digit always stays.
    powers = 10 ** np.arange(n_whole - 1, 0, -1)
    keep[..., 1:n_whole] = whole[..., None] >= powers
    # Lines: "v", then " " and a field per coordinate, then a newline.
    line = np.full((len(values), 3 * width + 5), ord(" "), np.uint8)
    kept = np.ones(line.shape, bool)
    line[:, 0], line[:, -1] = ord("v"), ord("\n")
    for axis in range(3):
        start = 2 + axis * (1 + width)
        line[:, start : start + width] = field[:, axis]
        kept[:, start : start + width] = keep[:, axis]
    text = line[kept].tobytes()
    rows = np.flatnonzero(doubtful.any(axis=1))
    if not len(rows):
        return text
    # Rare: splice in Python's formatting of the doubtful lines.
    ends = np.cumsum(kept.sum(axis=1))
    pieces, position = [], 0
    for row in rows:
        pieces.append(text[position : int(ends[row - 1]) if row else 0])
        pieces.append((_V_LINE % tuple(values[row].tolist())).encode())
        position = int(ends[row])
    pieces.append(text[position:])
    return b"".join(pieces)


def face_lines(faces: np.ndarray) -> bytes:
    """OBJ ``f`` lines (1-based) for (F, 3) triangles."""
    flat = (np.asarray(faces, np.int64) + 1).ravel().tolist()
    return (("f %d %d %d\n" * len(faces)) % tuple(flat)).encode()


class Cancelled(Exception):
    """Another writer failed; stop quietly and clean up."""


def stop_if(cancelled: threading.Event | None) -> None:
    """Raise Cancelled once another writer has failed."""
    if cancelled is not None and cancelled.is_set():
        raise Cancelled
