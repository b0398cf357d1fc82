"""Finding a batch's conversations: in a folder, or listed by a manifest CSV."""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass, replace
from pathlib import Path

from dualtalk_cli.errors import DualtalkError
from dualtalk_cli.motion import split_speaker_name
from dualtalk_cli.outputs import name_problem

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3")
MANIFEST_COLUMNS = ("name", "speaker1", "speaker2", "shape1", "shape2", "rttm")


class ManifestError(DualtalkError):
    """A manifest CSV cannot be used as a whole."""


@dataclass(frozen=True)
class Clip:
    """One conversation of a batch; ``audio_b`` None means one recording of both
    (split by channel or by voice, or by the RTTM ``diarization``)."""

    name: str
    audio_a: Path
    audio_b: Path | None = None
    shapes: tuple[Path | None, Path | None] = (None, None)
    problem: str | None = None  # found while listing: the clip fails without work
    diarization: Path | None = None  # who speaks when in audio_a (RTTM)


def find_clips(source: str | os.PathLike) -> list[Clip]:
    """The conversations in a folder, or listed by a manifest CSV, sorted by name.

    In a folder, ``<clip>_speaker1.<ext>`` and ``<clip>_speaker2.<ext>`` form a
    pair (as in the DualTalk dataset) and any other audio file is one recording
    of a conversation. Problems that concern one clip (a missing partner, a name used
    twice) are kept on that clip, so the rest of the batch still runs.
    """
    source = Path(source)
    if not source.exists():
        raise DualtalkError("not found", source)
    if source.is_file():
        if source.suffix.lower() != ".csv":
            raise DualtalkError(
                "give a folder of audio files or a manifest .csv", source
            )
        clips = read_manifest(source)
    else:
        clips = _clips_in_folder(source)
    if not clips:
        raise DualtalkError(
            "no conversations found (expected <clip>_speaker1/_speaker2 audio pairs "
            f"or recordings of both: {', '.join(AUDIO_EXTENSIONS)})",
            source,
        )
    return _mark_clashes(sorted(clips, key=lambda clip: clip.name))


def _clips_in_folder(folder: Path) -> list[Clip]:
    pairs: dict[str, dict[int, list[Path]]] = {}
    clips = []
    try:
        entries = sorted(folder.iterdir())
    except OSError as error:
        raise DualtalkError(f"cannot list folder ({error.strerror})", folder) from None
    for path in entries:
        if path.name.startswith(".") or path.suffix.lower() not in AUDIO_EXTENSIONS:
            continue
        if not path.is_file():
            continue
        parsed = split_speaker_name(path.stem)
        if parsed:
            clip, speaker = parsed
            pairs.setdefault(clip, {1: [], 2: []})[speaker].append(path)
        else:
            clips.append(Clip(name=path.stem, audio_a=path))
    for name, speakers in pairs.items():
        clips.append(_pair(name, speakers[1], speakers[2]))
    return clips


def _pair(name: str, firsts: list[Path], seconds: list[Path]) -> Clip:
    """The clip of a ``_speaker1``/``_speaker2`` pair, or the reason there is none."""
    for number, found in ((1, firsts), (2, seconds)):
        if len(found) > 1:
            listed = ", ".join(path.name for path in found)
            return Clip(
                name,
                found[0],
                problem=f"two audio files for speaker {number}: {listed}",
            )
    if not seconds:
        return Clip(
            name, firsts[0], problem=f"{firsts[0]}: no {name}_speaker2 audio beside it"
        )
    if not firsts:
        return Clip(
            name,
            seconds[0],
            problem=f"{seconds[0]}: no {name}_speaker1 audio beside it",
        )
    return Clip(name, firsts[0], seconds[0])


def read_manifest(path: str | os.PathLike) -> list[Clip]:
    """Clips from a CSV with a header naming ``speaker1`` and optionally ``speaker2``
    (empty: speaker1 is one recording of both), ``name``, ``shape1``, ``shape2``
    and ``rttm`` (who speaks when in that recording). Relative paths are
    relative to the CSV's folder."""
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8-sig") as file:
            rows = list(csv.DictReader(file))
            header = [] if not rows else list(rows[0])
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise ManifestError(f"not a readable CSV file ({error})", path) from None
    if rows and "speaker1" not in header:
        raise ManifestError(
            "needs a header row with a speaker1 column "
            f"(columns: {', '.join(MANIFEST_COLUMNS)})",
            path,
        )
    unknown = [column for column in header if column not in MANIFEST_COLUMNS]
    if unknown:
        raise ManifestError(
            f"unknown columns {unknown} (known: {', '.join(MANIFEST_COLUMNS)})", path
        )
    clips = []
    for line, row in enumerate(rows, start=2):

        def resolve(column: str, row: dict = row) -> Path | None:
            value = (row.get(column) or "").strip()
            return (path.parent / value) if value else None

        audio_a, audio_b = resolve("speaker1"), resolve("speaker2")
        name = (row.get("name") or "").strip()
        if audio_a is None:
            if any((value or "").strip() for value in row.values()):
                clips.append(
                    Clip(
                        name or f"line{line}",
                        path,
                        problem=f"{path}: line {line}: no speaker1 file",
                    )
                )
            continue
        if not name:
            parsed = split_speaker_name(audio_a.stem)
            name = parsed[0] if parsed and audio_b is not None else audio_a.stem
        problem = None
        unusable = name_problem(name, extra=0)
        if unusable or "\\" in name:
            problem = f"{path}: line {line}: name {name!r} is not a folder name"
            if "too long" in unusable:
                problem += f"; it {unusable}"
        rttm = resolve("rttm")
        if rttm is not None and audio_b is not None:
            problem = (
                f"{path}: line {line}: an rttm splits one recording; this row "
                "gives two audio files"
            )
        shapes = (resolve("shape1"), resolve("shape2"))
        clips.append(Clip(name, audio_a, audio_b, shapes, problem, rttm))
    return clips


def _mark_clashes(clips: list[Clip]) -> list[Clip]:
    """Clips that would write into the same folder all fail, naming each other."""
    by_name: dict[str, list[Clip]] = {}
    for clip in clips:
        by_name.setdefault(clip.name, []).append(clip)
    marked = []
    for clip in clips:
        others = by_name[clip.name]
        if len(others) > 1 and clip.problem is None:
            files = ", ".join(str(other.audio_a) for other in others)
            problem = (
                f"{len(others)} conversations would share the output folder "
                f"{clip.name}/ ({files})"
            )
            clip = replace(clip, problem=problem)
        marked.append(clip)
    return marked
