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


def format_rttm(diarization: Diarization, recording: str) -> str:
    """The RTTM text of ``diarization``; ``recording`` is its file id."""
    file_id = re.sub(r"\s+", "_", recording) or "recording"
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
    refused in one line that names the line.
    """
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except OSError as error:
        raise RttmError(f"cannot read ({error.strerror})", path) from None
    except UnicodeDecodeError:
        raise RttmError("not a text file (not UTF-8)", path) from None
    lines = []  # (line number, file id, onset, end, name)
    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields or fields[0].startswith((";", "#")):
            continue
        if fields[0] in OTHER_TYPES:
            continue
        where = f"line {number}"
        if fields[0] != "SPEAKER" or len(fields) < 8:
            raise RttmError(
                f"{where}: not an RTTM SPEAKER line (SPEAKER <recording> <channel> "
                "<onset> <duration> <NA> <NA> <name> <NA> <NA>)",
                path,
            )
        try:
            onset, duration = float(fields[3]), float(fields[4])
        except ValueError:
            raise RttmError(
                f"{where}: onset and duration must be seconds, not "
                f"{fields[3]!r} and {fields[4]!r}",
                path,
            ) from None
        if not (math.isfinite(onset) and math.isfinite(duration)):
            raise RttmError(f"{where}: onset and duration must be finite", path)
        if onset < 0 or duration < 0:
            raise RttmError(f"{where}: onset and duration cannot be negative", path)
        end = onset + duration
        if end > seconds + END_SLACK_S:
            raise RttmError(
                f"{where}: the turn ends at {end:.3f} s, past the end of the audio "
                f"({seconds:.3f} s)",
                path,
            )
        lines.append((number, fields[1], onset, min(end, seconds), fields[7]))
    recordings = sorted({file_id for _, file_id, *_ in lines})
    if len(recordings) > 1:
        if recording not in recordings:
            raise RttmError(
                f"holds turns of {len(recordings)} recordings "
                f"({', '.join(recordings[:3])}{', ...' if len(recordings) > 3 else ''})"
                f" and none named {recording!r}",
                path,
            )
        lines = [entry for entry in lines if entry[1] == recording]
    if not lines:
        raise RttmError("holds no SPEAKER lines", path)
    names: list[str] = []
    for number, _, _, _, name in lines:
        if name not in names:
            names.append(name)
            if len(names) > 2:
                raise RttmError(
                    f"line {number}: a third speaker ({name!r} after "
                    f"{names[0]!r} and {names[1]!r}); dualtalk animates two",
                    path,
                )
    # Speaker A is whoever speaks first.
    first = min(lines, key=lambda entry: (entry[2], entry[0]))[4]
    order = [first] + [name for name in names if name != first]
    turns = [Turn(onset, end, order.index(name)) for _, _, onset, end, name in lines]
    return Diarization(tuple(turns), seconds)
