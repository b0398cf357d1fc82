"""Audio in: any WAV/FLAC/OGG/MP3 file to mono float32 at 16 kHz, per speaker."""

from __future__ import annotations

import math
import os
import struct
from fractions import Fraction
from pathlib import Path

import numpy as np

from dualtalk_cli.errors import AudioError

SAMPLE_RATE = 16000  # Hz, what wav2vec 2.0 and the engines take
FPS = 25  # frames per second of the DualTalk dataset and its network
FPS_RANGE = (1.0, 120.0)  # frame rates the tool animates at
SAMPLES_PER_FRAME = SAMPLE_RATE // FPS  # 640 samples of audio per motion frame
MIN_SECONDS = 0.2  # shorter audio holds too little to animate


def n_frames_for(n_samples: int, frames_per_second: float = FPS) -> int:
    """Frame count ``ceil(seconds * fps)`` for ``n_samples`` at SAMPLE_RATE.

    The one frame-count rule of the tool: at 25 fps it is ceil(N / 640).
    """
    # Exact rational arithmetic: float rounding must not add or drop a frame.
    fps = Fraction(str(frames_per_second))
    return math.ceil(Fraction(n_samples) * fps / SAMPLE_RATE)


def read_audio(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """Samples (N, C) float32 at the file's own rate, and that rate; checked."""
    import soundfile

    path = Path(path)
    if not path.exists():
        raise AudioError("file not found", path)
    if path.is_dir():
        raise AudioError("is a directory, not an audio file", path)
    if path.suffix.lower() in (".wav", ".wave"):
        _check_wav_length(path)
    try:
        samples, rate = soundfile.read(path, dtype="float32", always_2d=True)
    except (soundfile.LibsndfileError, RuntimeError, ValueError, TypeError) as error:
        reason = str(error).split(":")[-1].strip() or "unknown format"
        raise AudioError(f"not a readable audio file ({reason})", path) from None
    if samples.shape[1] > 2:
        raise AudioError(
            f"has {samples.shape[1]} channels; give one mono file per speaker or "
            "one stereo file",
            path,
        )
    seconds = samples.shape[0] / rate if rate else 0.0
    if seconds < MIN_SECONDS:
        raise AudioError(
            f"is {seconds:.3f} s long; at least {MIN_SECONDS} s is needed", path
        )
    if not np.all(np.isfinite(samples)):
        raise AudioError("holds NaN or infinite samples", path)
    return samples, int(rate)


def load_audio(path: str | os.PathLike) -> np.ndarray:
    """Mono float32 samples (N,) at SAMPLE_RATE (channels are averaged)."""
    samples, rate = read_audio(path)
    # A mono file's only column is already contiguous: no copy needed.
    mono = samples[:, 0] if samples.shape[1] == 1 else samples.mean(axis=1)
    del samples
    return resample(mono, rate)


def load_conversation(
    path_a: str | os.PathLike, path_b: str | os.PathLike | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Both speakers' tracks (N,) float32 at SAMPLE_RATE, padded to equal length.

    With one path, the file must be stereo: channel 1 is speaker A, channel 2 B.
    """
    if path_b is None:
        samples, rate = read_audio(path_a)
        if samples.shape[1] != 2:
            raise AudioError(
                "is mono; give two files (one per speaker) or one stereo file", path_a
            )
        track_a, track_b = resample(samples[:, 0], rate), resample(samples[:, 1], rate)
    else:
        track_a, track_b = load_audio(path_a), load_audio(path_b)
    return pad_to_same_length(track_a, track_b)


def resample(samples: np.ndarray, rate: int) -> np.ndarray:
    """(N,) float32 at SAMPLE_RATE from ``rate`` (soxr HQ, as librosa.load does)."""
    samples = np.ascontiguousarray(samples, np.float32)
    if rate == SAMPLE_RATE:
        return samples
    import soxr

    return soxr.resample(samples, rate, SAMPLE_RATE, quality="HQ").astype(np.float32)


def pad_to_same_length(*tracks: np.ndarray) -> tuple[np.ndarray, ...]:
    """Pad every track with trailing silence to the longest one's length."""
    length = max(len(track) for track in tracks)
    return tuple(
        np.pad(track, (0, length - len(track))) if len(track) < length else track
        for track in tracks
    )


def stereo(track_a: np.ndarray, track_b: np.ndarray) -> np.ndarray:
    """(N, 2) float32 with A on the left channel and B on the right."""
    track_a, track_b = pad_to_same_length(track_a, track_b)
    return np.stack([track_a, track_b], axis=1).astype(np.float32, copy=False)


def _check_wav_length(path: Path) -> None:
    """Fail on a WAV whose data chunk is shorter than its header says.

    libsndfile reads such a file without complaint, silently dropping the end.
    """
    size = path.stat().st_size
    with open(path, "rb") as file:
        header = file.read(12)
        if (
            len(header) < 12
            or header[:4] not in (b"RIFF", b"RF64")
            or header[8:12] != b"WAVE"
        ):
            return  # not RIFF/WAVE: let the decoder say what it is
        if header[:4] == b"RF64":
            return  # 64-bit sizes live in a ds64 chunk; trust the decoder
        position = 12
        while position + 8 <= size:
            file.seek(position)
            chunk_id, chunk_size = struct.unpack("<4sI", file.read(8))
            if chunk_id == b"data":
                # 0 and 0xFFFFFFFF mark streamed files whose size was never filled in.
                if (
                    chunk_size not in (0, 0xFFFFFFFF)
                    and position + 8 + chunk_size > size
                ):
                    missing = position + 8 + chunk_size - size
                    raise AudioError(
                        f"is truncated: {missing} bytes of audio data are missing",
                        path,
                    )
                return
            position += 8 + chunk_size + (chunk_size & 1)
