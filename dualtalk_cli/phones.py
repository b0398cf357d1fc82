"""Phones from speech on the CPU: pocketsphinx's all-phone decoder with the
en-us acoustic model and phone language model that its wheel carries, so
nothing is downloaded. Phones of other languages come out as the nearest
English ones, which is enough for mouth shapes.
"""

from __future__ import annotations

import os
import pickle
import signal
import sys
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from dualtalk_cli.audio import SAMPLE_RATE

FRAME_RATE = 100  # the decoder's frames per second
PR_SET_PDEATHSIG = 1  # prctl: the signal a child gets when its parent dies
REGION_PAD_S = 0.05  # context decoded either side of each speech region
# Decoder settings: narrower beams than the defaults halve the time for the
# same phones. Every frame and all Gaussians are scored: skipping frames
# ("ds") or Gaussians ("topn") was faster but lost p, b, m and vowels.
SETTINGS = {
    "lw": 2.0,  # phone language model weight
    "pip": 0.3,  # phone insertion probability
    "beam": 1e-10,
    "pbeam": 1e-10,
    "maxhmmpf": 300,  # active states a frame: a little faster, the same phones
}


@dataclass(frozen=True)
class Phone:
    """One recognised phone: an ARPAbet label (``AA``, ``P``, ``SIL``...) and
    its span in seconds from the track's start."""

    label: str
    start: float
    end: float


class PhonesUnavailable(RuntimeError):
    """pocketsphinx or its model cannot be used here."""


def _decoder() -> object:
    """A new decoder: one carries state (noise and cepstral means) from one
    utterance to the next, so each track gets its own and the same track always
    gives the same phones, whatever was decoded before it."""
    try:
        from pocketsphinx import Decoder, get_model_path
    except ImportError as error:  # a broken install: the engine falls back
        raise PhonesUnavailable(f"pocketsphinx is not installed ({error})") from error
    model = get_model_path()
    try:
        return Decoder(
            hmm=os.path.join(model, "en-us", "en-us"),
            allphone=os.path.join(model, "en-us", "en-us-phone.lm.bin"),
            logfn=os.devnull,
            **SETTINGS,
        )
    except (RuntimeError, OSError, ValueError) as error:
        raise PhonesUnavailable(f"pocketsphinx cannot start: {error}") from error


def recognise_phones(
    audio: np.ndarray, regions: Sequence[tuple[float, float]]
) -> list[Phone]:
    """Phones of a 16 kHz mono track within ``regions`` (start, end seconds),
    in time order; raises PhonesUnavailable when no decoder can run."""
    decoder = _decoder()
    phones: list[Phone] = []
    for start, end in _padded(regions, len(audio) / SAMPLE_RATE):
        first = int(start * SAMPLE_RATE)
        piece = np.asarray(audio[first : int(end * SAMPLE_RATE)], np.float32)
        if len(piece) < SAMPLE_RATE // 10:
            continue
        pcm = (np.clip(np.nan_to_num(piece), -1.0, 1.0) * 32767).astype(np.int16)
        decoder.start_utt()
        decoder.process_raw(pcm.tobytes(), full_utt=True)
        decoder.end_utt()
        offset = first / SAMPLE_RATE
        for segment in decoder.seg():
            phones.append(
                Phone(
                    segment.word,
                    offset + segment.start_frame / FRAME_RATE,
                    offset + (segment.end_frame + 1) / FRAME_RATE,
                )
            )
    return phones


def recognise_tracks(
    tracks: Sequence[tuple[np.ndarray, Sequence[tuple[float, float]]]],
) -> list[list[Phone] | None]:
    """``recognise_phones`` of each (audio, regions), None where no decoder
    runs; the tracks are decoded at once in forked processes where that is safe
    (the decoder holds the interpreter's lock, so threads would not help)."""
    children = [_fork(track) for track in tracks[1:]] if _can_fork() else []
    try:
        results = [_recognise_or_none(*tracks[0])] if tracks else []
    except BaseException:
        for child in children:  # a failed or stopped run stops its children
            if child is not None:
                os.kill(child[0], signal.SIGKILL)
        raise
    finally:  # every child is waited for, so none is left behind
        found = [_FAILED if child is None else _collect(child) for child in children]
    found += [_FAILED] * (len(tracks) - 1 - len(found))
    for phones, track in zip(found, tracks[1:]):
        # A child that failed in any way: decode here instead, as without fork.
        results.append(_recognise_or_none(*track) if phones is _FAILED else phones)
    return results


_FAILED = object()


def _recognise_or_none(
    audio: np.ndarray, regions: Sequence[tuple[float, float]]
) -> list[Phone] | None:
    try:
        return recognise_phones(audio, regions)
    except PhonesUnavailable:
        return None


def _can_fork() -> bool:
    # Linux only (the child asks to die with its parent); not beside torch,
    # whose thread pools do not survive a fork.
    return (
        hasattr(os, "fork") and sys.platform == "linux" and "torch" not in sys.modules
    )


def _fork(
    track: tuple[np.ndarray, Sequence[tuple[float, float]]],
) -> tuple[int, int] | None:
    """(pid, read end) of a child decoding ``track`` and writing its phones;
    None when no process can be made."""
    read, write = os.pipe()
    try:
        pid = os.fork()
    except OSError:
        os.close(read)
        os.close(write)
        return None
    if pid == 0:  # the child: never returns into the caller's code
        code = 1
        try:
            _die_with(os.getppid())
            # Hold nothing of the parent's: an output folder's lock, above all.
            os.closerange(3, write)
            os.closerange(write + 1, _max_fd())
            phones = _recognise_or_none(*track)
            rows = (
                None if phones is None else [(p.label, p.start, p.end) for p in phones]
            )
            with os.fdopen(write, "wb") as pipe:
                pickle.dump(rows, pipe)
            code = 0
        finally:
            os._exit(code)
    os.close(write)
    return pid, read


def _die_with(parent: int) -> None:
    """Have the kernel kill this process when ``parent`` ends (Linux)."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the parent ended before the request took
        os._exit(1)


def _max_fd() -> int:
    try:
        return os.sysconf("SC_OPEN_MAX")
    except (OSError, ValueError):
        return 4096


def _collect(child: tuple[int, int]) -> list[Phone] | None | object:
    """The phones a forked child found, or _FAILED."""
    pid, read = child
    try:
        with os.fdopen(read, "rb") as pipe:
            data = pipe.read()
    finally:
        _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        return _FAILED
    rows = pickle.loads(data)
    return None if rows is None else [Phone(*row) for row in rows]


def _padded(
    regions: Sequence[tuple[float, float]], duration: float
) -> list[tuple[float, float]]:
    """``regions`` widened by REGION_PAD_S, clipped to the track, overlaps merged."""
    merged: list[tuple[float, float]] = []
    for start, end in sorted(regions):
        start, end = max(0.0, start - REGION_PAD_S), min(duration, end + REGION_PAD_S)
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        elif end > start:
            merged.append((start, end))
    return merged
