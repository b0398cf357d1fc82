"""A conversation's audio as the engines hear it: one track per speaker.

Two files are two speakers. One file is split: a stereo file whose channels
differ (one microphone per person) by channel, as always; a mono file, or a
stereo file whose channels carry the same mix, by voice (``diarize``) or by an
RTTM file the user gives. A split by voice gates the mix with each speaker's
turns, so every engine and output works unchanged; where turns overlap, both
tracks hold the mix.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dualtalk_cli.audio import (
    SAMPLE_RATE,
    load_audio,
    pad_to_same_length,
    read_audio,
    resample,
    stereo,
)
from dualtalk_cli.diarize import Diarization, diarize
from dualtalk_cli.errors import AudioError, OptionError

# The stereo rule, measured (README): per 20 ms frame, the level difference of
# the channels, over the frames within 30 dB of the loud end. One mix on both
# channels keeps it steady, whatever the panning, polarity, a small delay or
# AAC coding do (at most 0.1 % of frames stray 10 dB from the median); one
# voice per channel moves it with every turn (a person heard 6 dB or more
# louder on their own channel puts their frames 12 dB or more away: 30-38 % of
# frames, still 6 % when the other only says "mm-hm").
LEVEL_FRAME = SAMPLE_RATE // 50  # 20 ms
ACTIVE_WITHIN_DB = 30.0  # frames this close to the loud end are judged
MIN_ACTIVE_FRAMES = 50  # with less than 1 s of sound, keep the channels
STRAY_DB = 10.0  # a frame this far from the median difference ...
ONE_MIX_BELOW = 0.01  # ... in fewer than this share of frames: one mix

# Gating: each turn opens its speaker's track a little early and late, with
# short fades, so a word's edges are not clipped and no click is heard.
GATE_PAD_S = 0.03
GATE_FADE_S = 0.01


@dataclass(frozen=True)
class Speakers:
    """Each speaker's track, the recording as recorded, and who speaks when."""

    tracks: tuple[np.ndarray, np.ndarray]  # (N,) float32 at 16 kHz, A then B
    recorded: tuple[np.ndarray, ...]  # the files or channels as read
    diarization: Diarization | None = None  # None: split by file or channel

    def heard(self) -> np.ndarray:
        """(N, 2) float32: what the video plays, A (or the left channel) left."""
        return stereo(self.recorded[0], self.recorded[-1])


@dataclass(frozen=True)
class ConversationAudio:
    """A conversation's audio as read, and the split it will get.

    ``read`` reads and decides (fast); ``speakers`` does the split (diarizes), so
    a run can check its outputs in between.
    """

    tracks: tuple[np.ndarray, ...]  # two files, or the recording's channels
    split: str  # "files", "channels" or "diarize"
    path: Path  # the (first) file, for messages
    rttm: Path | None = None  # a diarization given by the user
    why: str = ""  # why this split, for the user

    @classmethod
    def read(
        cls,
        audio_a: str | os.PathLike,
        audio_b: str | os.PathLike | None = None,
        split: str = "auto",
        rttm: str | os.PathLike | None = None,
    ) -> ConversationAudio:
        """Read the conversation and decide its split (``ComputeOptions.split``);
        ``split`` and ``rttm`` apply to one file and are refused with two."""
        if audio_b is not None:
            if split != "auto" or rttm is not None:
                raise OptionError(
                    "--split and --diarization apply to one recording, not two files"
                )
            tracks = pad_to_same_length(load_audio(audio_a), load_audio(audio_b))
            return cls(tracks, "files", Path(audio_a))
        samples, rate = read_audio(audio_a)
        channels = tuple(resample(samples[:, k], rate) for k in range(samples.shape[1]))
        del samples
        if split == "channels" and len(channels) == 1:
            raise AudioError("is mono; --split channels needs a stereo file", audio_a)
        why = f"--split {split}"
        if split == "auto" and len(channels) == 1:
            split, why = "diarize", "mono"
        elif split == "auto" and rttm is not None:
            split, why = "diarize", "--diarization"
        elif split == "auto":
            same = is_one_mix(*channels)
            split = "diarize" if same else "channels"
            why = "stereo, one mix on both channels" if same else "stereo"
        rttm = None if rttm is None else Path(rttm)
        return cls(channels, split, Path(audio_a), rttm, why)

    @property
    def diarized(self) -> bool:
        return self.split == "diarize"

    def describe(self, speakers: Speakers) -> str:
        """One line on how a recording was split by voice ("" when it was not)."""
        if speakers.diarization is None:
            return ""
        source = f"turns from {self.rttm}" if self.rttm else "built-in diarizer"
        return (
            f"{self.path.name}: split by voice ({self.why}; {source}): "
            f"{speakers.diarization.describe()}"
        )

    def speakers(self) -> Speakers:
        """Both speakers' tracks; a recording split by voice is diarized here."""
        if not self.diarized:
            return Speakers(self.tracks, self.tracks)  # type: ignore[arg-type]
        mix = mixdown(self.tracks)
        seconds = len(mix) / SAMPLE_RATE
        if self.rttm is not None:
            from dualtalk_cli.rttm import read_rttm

            diarization = read_rttm(self.rttm, seconds, recording=self.path.stem)
        else:
            diarization = diarize(mix)
        return Speakers(speaker_tracks(mix, diarization), self.tracks, diarization)


def is_one_mix(left: np.ndarray, right: np.ndarray) -> bool:
    """Whether a stereo recording carries one mix of both voices on both
    channels, rather than one voice per channel (a silent channel: not a mix)."""
    n = min(len(left), len(right)) // LEVEL_FRAME
    if n == 0:
        return False
    levels = [_frame_levels_db(channel, n) for channel in (left, right)]
    loud = np.maximum(*levels)
    active = loud > np.percentile(loud, 99) - ACTIVE_WITHIN_DB
    if np.count_nonzero(active) < MIN_ACTIVE_FRAMES:
        return False
    difference = levels[0][active] - levels[1][active]
    stray = np.abs(difference - np.median(difference)) > STRAY_DB
    return bool(np.mean(stray) < ONE_MIX_BELOW)


def mixdown(channels: tuple[np.ndarray, ...]) -> np.ndarray:
    """One track of a recording's channels: their mean, or the louder channel
    where the mean would cancel (one channel inverted) or one is silent."""
    if len(channels) == 1:
        return channels[0]
    left, right = channels
    energy = [float(np.dot(c, c)) for c in (left, right)]
    if min(energy) < 1e-4 * max(energy) or float(np.dot(left, right)) <= 0:
        return left if energy[0] >= energy[1] else right
    mix = np.add(left, right, dtype=np.float32)
    mix *= 0.5
    return mix


def speaker_tracks(
    mix: np.ndarray, diarization: Diarization
) -> tuple[np.ndarray, np.ndarray]:
    """The mix as each speaker's track: open during their turns, silent else."""
    pad = GATE_PAD_S * SAMPLE_RATE
    fade = max(1, round(GATE_FADE_S * SAMPLE_RATE))
    ramp = 0.5 - 0.5 * np.cos(np.pi * (np.arange(fade) + 0.5) / fade)
    tracks = []
    for speaker in (0, 1):
        gate = np.zeros(len(mix), np.float32)
        for turn in diarization.turns:
            if turn.speaker != speaker:
                continue
            start = max(0, round(turn.start * SAMPLE_RATE - pad))
            end = min(len(mix), round(turn.end * SAMPLE_RATE + pad))
            gate[start:end] = 1.0
            before = slice(max(0, start - fade), start)
            rise = ramp[fade - (start - before.start) :]
            gate[before] = np.maximum(gate[before], rise)
            after = slice(end, min(len(mix), end + fade))
            gate[after] = np.maximum(gate[after], ramp[::-1][: after.stop - end])
        gate *= mix
        tracks.append(gate)
    return tracks[0], tracks[1]


def _frame_levels_db(samples: np.ndarray, n: int) -> np.ndarray:
    """Mean-square level in dB of ``n`` 20 ms frames, without a copy of the
    samples (a long recording is checked in little memory)."""
    frames = np.ascontiguousarray(samples[: n * LEVEL_FRAME]).reshape(n, LEVEL_FRAME)
    power = np.einsum("ij,ij->i", frames, frames) / LEVEL_FRAME
    return 10.0 * np.log10(power.astype(np.float64) + 1e-12)
