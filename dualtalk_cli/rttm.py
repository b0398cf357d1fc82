"""RTTM files: who speaks when, as pyannote and diarization benchmarks write it.

One line per turn, ten fields separated by spaces:
``SPEAKER <recording> <channel> <onset s> <duration s> <NA> <NA> <name> <NA> <NA>``.
Ours names the speakers A (who speaks first) and B. Read back, any two names
work: whoever speaks first becomes A.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path

from dualtalk_cli.diarize import Diarization, Turn
from dualtalk_cli.errors import DualtalkError

SPEAKER_NAMES = ("A", "B")
# RTTM's other line types (NIST RT-09): allowed in a file, and skipped.
OTHER_TYPES = frozenset(
    "SEGMENT NOSCORE NO_RT_METADATA LEXEME NON-LEX NON-SPEECH FILLER EDIT IP SU "
    "CB A/P SPKR-INFO".split()
)
END_SLACK_S = 0.02  # a turn may end this far past the audio (rounding elsewhere)


class RttmError(DualtalkError):
    """An RTTM file that cannot be used as the conversation's diarization."""


def recording_id(stem: str) -> str:
    """A recording's RTTM file id: its stem, whitespace as ``_`` (fields are
    separated by spaces)."""
    return re.sub(r"\s+", "_", stem) or "recording"


def format_rttm(diarization: Diarization, recording: str) -> str:
    """The RTTM text of ``diarization``; ``recording`` is the audio's stem.

    A recording without speech gets a comment line, which reads back as such.
    """
    file_id = recording_id(recording)
    if not diarization.turns:
        return f";; {file_id}: no speech found\n"
    return "".join(
        f"SPEAKER {file_id} 1 {turn.start:.3f} {turn.end - turn.start:.3f} "
        f"<NA> <NA> {SPEAKER_NAMES[turn.speaker]} <NA> <NA>\n"
        for turn in diarization.turns
    )


def read_rttm(
    path: str | os.PathLike, seconds: float, recording: str | None = None
) -> Diarization:
    """The diarization in an RTTM file, for audio ``seconds`` long.

    A file about several recordings is narrowed to ``recording`` (the audio's
    stem). Unparsable lines, more than two speakers and turns past the end are
    refused in one line that names the line. A file without SPEAKER lines means
    nobody speaks.
    """
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except OSError as error:
        raise RttmError(f"cannot read ({error.strerror})", path) from None
    except UnicodeDecodeError:
        raise RttmError("not a text file (not UTF-8)", path) from None
    entries = [_parse(line, number, path) for number, line in _lines(text)]
    entries = [entry for entry in entries if entry is not None]
    recordings = sorted({entry[1] for entry in entries})
    if len(recordings) > 1:
        wanted = {recording, recording_id(recording)} if recording else set()
        if not wanted & set(recordings):
            listed = ", ".join(recordings[:3]) + (
                ", ..." if len(recordings) > 3 else ""
            )
            raise RttmError(
                f"holds turns of {len(recordings)} recordings ({listed}) and none "
                f"named {recording!r}",
                path,
            )
        entries = [entry for entry in entries if entry[1] in wanted]
    names: list[str] = []
    turns = []
    for number, _, onset, end, name in entries:
        if end > seconds + END_SLACK_S:
            raise RttmError(
                f"line {number}: the turn ends at {end:.3f} s, past the end of the "
                f"audio ({seconds:.3f} s)",
                path,
            )
        if round(min(end, seconds), 3) <= round(onset, 3):
            continue  # empty, as RTTM holds it: says nothing about who speaks
        if name not in names:
            names.append(name)
            if len(names) > 2:
                raise RttmError(
                    f"line {number}: a third speaker ({name!r} after {names[0]!r} "
                    f"and {names[1]!r}); dualtalk animates two",
                    path,
                )
        turns.append(Turn(onset, end, names.index(name)))
    # Diarization makes whoever speaks first speaker A.
    return Diarization(tuple(turns), seconds)


def _lines(text: str) -> list[tuple[int, str]]:
    """Numbered lines, split at newlines only (as an editor numbers them)."""
    return [(n, line.rstrip("\r")) for n, line in enumerate(text.split("\n"), 1)]


def _parse(
    line: str, number: int, path: Path
) -> tuple[int, str, float, float, str] | None:
    """(line number, recording, onset, end, name) of a SPEAKER line; None for a
    comment, a blank line or another RTTM line type."""
    fields = line.split()
    if not fields or fields[0].startswith((";", "#")) or fields[0] in OTHER_TYPES:
        return None
    where = f"line {number}"
    if fields[0] != "SPEAKER" or not 9 <= len(fields) <= 10 or fields[7] == "<NA>":
        raise RttmError(
            f"{where}: not an RTTM SPEAKER line of 10 fields (SPEAKER <recording> "
            "<channel> <onset> <duration> <NA> <NA> <name> <NA> <NA>, no spaces "
            "within a field)",
            path,
        )
    try:
        onset, duration = float(fields[3]), float(fields[4])
    except ValueError:
        raise RttmError(
            f"{where}: onset and duration must be seconds, not {fields[3]!r} and "
            f"{fields[4]!r}",
            path,
        ) from None
    if not (math.isfinite(onset) and math.isfinite(duration)):
        raise RttmError(f"{where}: onset and duration must be finite", path)
    if onset < 0 or duration < 0:
        raise RttmError(f"{where}: onset and duration cannot be negative", path)
    return number, fields[1], onset, onset + duration, fields[7]
