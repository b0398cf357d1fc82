"""Audio in: any WAV/FLAC/OGG/MP3 file to mono float32 at 16 kHz, per speaker."""

from __future__ import annotations

import math
import os
import struct
from fractions import Fraction
from pathlib import Path
from typing import BinaryIO

import numpy as np

from dualtalk_cli.errors import AudioError

SAMPLE_RATE = 16000  # Hz, what wav2vec 2.0 and the engines take
FPS = 25  # frames per second of the DualTalk dataset and its network
FPS_RANGE = (1.0, 120.0)  # frame rates the tool animates at, and reads
MIN_SAMPLE_RATE = 4000  # Hz; lower rates hold no intelligible speech
MAX_SECONDS = 4 * 3600  # the longest conversation the tool takes (4 hours)
MAX_FRAMES = int(MAX_SECONDS * FPS_RANGE[1])  # the most frames a motion file has
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
    """Samples (N, C) float32 at the file's own rate, and that rate; checked.

    The header is checked before any sample is decoded, so a file that claims
    an absurd rate or length is refused at once, without the memory it would
    take.
    """
    import soundfile

    from dualtalk_cli.arrays import open_input

    path = Path(path)
    # Opened here, not by name in libsndfile: names that are not UTF-8 work too.
    with open_input(path, AudioError) as file:
        if path.suffix.lower() in (".wav", ".wave"):
            _check_wav_length(file, path)
        sound_errors = (soundfile.LibsndfileError, RuntimeError, ValueError, TypeError)
        try:
            info = soundfile.info(file)
            _check_header(info.samplerate, info.frames, info.channels, path)
            file.seek(0)
            samples, rate = soundfile.read(file, dtype="float32", always_2d=True)
        except sound_errors as error:
            reason = str(error).split(":")[-1].strip() or "unknown format"
            raise AudioError(f"not a readable audio file ({reason})", path) from None
    # Some formats state no length up front: check what was decoded too.
    _check_header(rate, len(samples), samples.shape[1], path)
    if not np.all(np.isfinite(samples)):
        raise AudioError("holds NaN or infinite samples", path)
    return samples, int(rate)


def _check_header(rate: int, frames: int, channels: int, path: Path) -> None:
    """Refuse, in one line, a rate, length or channel count the tool cannot use."""
    if channels > 2:
        raise AudioError(
            f"has {channels} channels; give one mono file per speaker or one "
            "stereo file",
            path,
        )
    if rate < MIN_SAMPLE_RATE:
        raise AudioError(
            f"has a sample rate of {rate} Hz; at least {MIN_SAMPLE_RATE} Hz is needed",
            path,
        )
    seconds = frames / rate
    if seconds < MIN_SECONDS:
        shown = f"{seconds:.6f}".rstrip("0").rstrip(".")
        raise AudioError(
            f"is {shown} s long ({frames} samples at {rate} Hz); at least "
            f"{MIN_SECONDS} s is needed",
            path,
        )
    if seconds > MAX_SECONDS:
        raise AudioError(
            f"is {seconds / 3600:.1f} h long; at most {MAX_SECONDS // 3600} h "
            "are animated",
            path,
        )


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


def _check_wav_length(file: BinaryIO, path: Path) -> None:
    """Fail on a WAV whose data chunk is shorter than its header says.

    libsndfile reads such a file without complaint, silently dropping the end.
    """
    size = os.fstat(file.fileno()).st_size
    try:
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
    finally:
        file.seek(0)
