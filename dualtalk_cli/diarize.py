"""Who speaks when in one recording of two people: an acoustic diarizer.

Nothing is downloaded and no network runs. The voice activity detector of the
procedural engine finds speech in the mix. Half-second windows of that speech
are described by their mean spectral shape (19 MFCCs) and pitch. Of those
features, the two directions that change least between windows half a second
apart are kept: they follow the speaker, not what is said (a slow-feature
analysis, or LDA without labels). Two-means in that plane splits the windows.
When the two halves are not clearly apart (their Fisher ratio below
``ONE_VOICE_BELOW``), the recording holds one voice and nobody else speaks.
Each moment of speech gets one speaker; speaker A is whoever speaks first.

Measured on conversations of two espeak-ng voices (README, bench/): the heads'
speaking flags agree with a run on the separate tracks on 95-96 % of frames.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, replace

import numpy as np
from scipy.fft import dct
from scipy.linalg import eigh
from scipy.ndimage import median_filter

from dualtalk_cli.audio import SAMPLE_RATE

FRAME_RATE = 100  # analysis frames per second (the engine's voice activity)
HOP = SAMPLE_RATE // FRAME_RATE
WINDOW = 400  # 25 ms spectral window
N_FFT = 512
N_MELS, MEL_HZ = 40, (60.0, 7600.0)
N_MFCC = 19  # cepstra 1..19; c0 (loudness) says nothing about who speaks
PITCH_WINDOW = 640  # 40 ms: two periods of a 50 Hz voice
PITCH_HZ = (60.0, 400.0)
VOICED_ABOVE = 0.45  # normalised autocorrelation peak of a voiced frame
PITCH_WEIGHT = 3.0  # pitch counts as three cepstra once standardised
CHUNK_FRAMES = 500  # frames analysed at once, so memory stays flat with length
CORRELATION_FFT = 1024  # > PITCH_WINDOW + the longest lag: no wrap-around

SEGMENT_S, SEGMENT_HOP_S = 0.5, 0.1  # windows of speech described at once
SLOW_LAG_S = 0.5  # windows this far apart are mostly the same speaker
SMOOTH_S = 0.5  # median filter over the speech-only timeline
FIRST_TURN_S = 0.5  # speaker A: the first to speak this long without a break
# When two voices are heard (measured on espeak-ng voices, README). Two-means
# of one voice gives a Fisher ratio of about 7 (one Gaussian cut in half); one
# espeak voice alone 7-18, the more so the less speech; two voices 12-37. So a
# split needs a ratio of TWO_VOICES_ABOVE, or of AMBIGUOUS_ABOVE with a pitch
# gap (one voice's halves: at most 0.12 octave apart; a voice and the same
# 20 % higher: 0.23-0.27); a small minority needs UNEVEN_ABOVE. Tones, noise
# and clicks standardise into a wide split too, but their halves hardly
# differ in spectrum (cepstral distance under 0.5; speech 2-7).
MIN_SPEECH_S = 5.0  # less speech than this is one voice: too little to tell
MIN_VOICE_S = 1.0  # each of two voices speaks at least this long
TWO_VOICES_ABOVE = 15.0
AMBIGUOUS_ABOVE = 11.0
MIN_PITCH_GAP = 0.2  # octaves between the halves' mean pitch
UNEVEN_SHARE, UNEVEN_ABOVE = 0.25, 20.0
MIN_CEPSTRAL_DISTANCE = 1.0


@dataclass(frozen=True)
class Turn:
    """A stretch of one speaker's speech, in seconds; speaker 0 is A, 1 is B."""

    start: float
    end: float
    speaker: int


@dataclass(frozen=True)
class Diarization:
    """Who speaks when: turns sorted by start (they may overlap), and the
    recording's length. Times are kept to the millisecond, as RTTM holds them,
    within the recording; empty turns are dropped; speaker A (0) is whoever
    speaks first."""

    turns: tuple[Turn, ...]
    seconds: float

    def __post_init__(self) -> None:
        turns = [
            Turn(round(max(0.0, turn.start), 3), round(min(turn.end, self.seconds), 3),
                 turn.speaker)
            for turn in self.turns
        ]  # fmt: skip
        turns = [turn for turn in turns if turn.end > turn.start]
        order = lambda turn: (turn.start, turn.speaker, turn.end)  # noqa: E731
        turns.sort(key=order)
        if turns and turns[0].speaker != 0:
            turns = sorted(
                (replace(t, speaker=1 - t.speaker) for t in turns), key=order
            )
        object.__setattr__(self, "turns", tuple(turns))

    @property
    def speakers(self) -> int:
        """How many people speak (0, 1 or 2)."""
        return len({turn.speaker for turn in self.turns})

    def speech_seconds(self, speaker: int) -> float:
        """How long ``speaker`` speaks (overlapping turns of theirs count once)."""
        total, reached = 0.0, 0.0
        for turn in self.turns:  # sorted by start
            if turn.speaker == speaker and turn.end > reached:
                total += turn.end - max(turn.start, reached)
                reached = turn.end
        return total

    def describe(self) -> str:
        """One line for the user: who speaks, how much."""
        if not self.turns:
            return "no speech found: both heads listen"
        if self.speakers == 1:
            return (
                f"one voice ({self.speech_seconds(0):.1f} s of speech): A speaks, "
                "B listens"
            )
        first = self.turns[0].start
        return (
            f"two voices: A {self.speech_seconds(0):.1f} s (first at {first:.2f} s), "
            f"B {self.speech_seconds(1):.1f} s of speech"
        )


def diarize(mix: np.ndarray) -> Diarization:
    """Who speaks when in ``mix``, one mono 16 kHz recording of two people."""
    from dualtalk_cli.engines.procedural import analyse, speech_mask

    mix = np.asarray(mix, np.float32)
    seconds = len(mix) / SAMPLE_RATE
    n_hops = len(mix) // HOP + 1
    speech = speech_mask(analyse(mix, n_hops), analyse(np.zeros(0, np.float32), n_hops))
    frames = np.flatnonzero(speech)
    labels = np.zeros(len(frames), np.int8)
    if len(frames) >= MIN_SPEECH_S * FRAME_RATE:
        labels = _speaker_labels(mix, frames)
    return Diarization(_turns(frames, labels), seconds)


def _speaker_labels(mix: np.ndarray, frames: np.ndarray) -> np.ndarray:
    """0 or 1 per speech frame; all 0 when the speech is one voice."""
    cepstra, pitch, voiced = _frame_features(mix, frames)
    length = min(round(SEGMENT_S * FRAME_RATE), len(frames))
    starts = _segment_starts(len(frames), length, round(SEGMENT_HOP_S * FRAME_RATE))
    raw = _segment_features(cepstra, pitch, voiced, starts, length)
    features = (raw - raw.mean(0)) / (raw.std(0) + 1e-9)
    features[:, -1] *= PITCH_WEIGHT
    lag = max(1, round(SLOW_LAG_S / SEGMENT_HOP_S))
    projected = _slow_projection(features, lag, dims=2)
    segment_labels, centres = _two_means(projected)
    # Each frame's half: that of the segment centred nearest to it.
    nearest = np.clip(
        np.searchsorted(starts + length // 2, np.arange(len(frames))),
        0,
        len(starts) - 1,
    )
    halves = segment_labels[nearest]
    pitches = [pitch[voiced & (halves == k)] for k in (0, 1)]
    pitch_gap = 0.0
    if min(len(p) for p in pitches) > 0:
        pitch_gap = abs(float(np.median(pitches[0]) - np.median(pitches[1])))
    if not _two_voices(raw, projected, segment_labels, pitch_gap):
        return np.zeros(len(frames), np.int8)
    distance = [((projected - centre) ** 2).sum(axis=1) for centre in centres]
    scores = distance[0] - distance[1]  # > 0: nearer the second centre
    scores /= np.median(np.abs(scores)) + 1e-12
    labels = _spread_to_frames(scores, starts, length, len(frames)) > 0
    width = max(1, round(SMOOTH_S * FRAME_RATE)) | 1
    labels = median_filter(labels.astype(np.int8), width, mode="nearest")
    return _first_turn_whole(labels)


def _two_voices(
    raw: np.ndarray, projected: np.ndarray, labels: np.ndarray, pitch_gap: float
) -> bool:
    """Whether the two halves of a split are two people, not one voice cut in
    two (see the constants above); ``pitch_gap``: octaves between the halves'
    median pitch."""
    share = float(np.mean(labels))
    seconds = SEGMENT_HOP_S * len(labels)  # segments overlap: speech they span
    if min(share, 1 - share) * seconds < MIN_VOICE_S:
        return False
    means = [raw[labels == k].mean(0) for k in (0, 1)]
    if np.linalg.norm(means[0][:-1] - means[1][:-1]) < MIN_CEPSTRAL_DISTANCE:
        return False
    fisher = _fisher_ratio(projected, labels)
    if min(share, 1 - share) < UNEVEN_SHARE and fisher < UNEVEN_ABOVE:
        return False
    return fisher >= TWO_VOICES_ABOVE or (
        fisher >= AMBIGUOUS_ABOVE and pitch_gap >= MIN_PITCH_GAP
    )


def _first_turn_whole(labels: np.ndarray) -> np.ndarray:
    """Labels whose first run long enough to be a turn starts the speech:
    shorter runs before it (often mislabelled, with little context at the
    start) become part of it. ``Diarization`` then names its speaker A."""
    changes = np.flatnonzero(np.diff(labels)) + 1
    starts = np.concatenate([[0], changes])
    ends = np.concatenate([changes, [len(labels)]])
    long_enough = np.flatnonzero(ends - starts >= FIRST_TURN_S * FRAME_RATE)
    first = starts[long_enough[0]] if len(long_enough) else 0
    labels[:first] = labels[first]
    return labels


def _turns(frames: np.ndarray, labels: np.ndarray) -> list[Turn]:
    """Runs of consecutive speech frames with one label, as turns.

    Frame k is centred at k / FRAME_RATE s and covers half a frame either side.
    """
    if len(frames) == 0:
        return []
    breaks = np.flatnonzero((np.diff(frames) != 1) | (np.diff(labels) != 0)) + 1
    firsts = np.concatenate([[0], breaks])
    lasts = np.concatenate([breaks, [len(frames)]]) - 1
    half = 0.5 / FRAME_RATE
    return [
        Turn(
            max(0.0, frames[a] / FRAME_RATE - half),
            frames[b] / FRAME_RATE + half,
            int(labels[a]),
        )
        for a, b in zip(firsts, lasts, strict=True)
    ]


@functools.cache
def _mel_filters() -> np.ndarray:
    """(N_MELS, N_FFT // 2 + 1) triangular filters, evenly spaced in mel."""

    def mel(hz):
        return 2595.0 * np.log10(1.0 + np.asarray(hz) / 700.0)

    edges_mel = np.linspace(mel(MEL_HZ[0]), mel(MEL_HZ[1]), N_MELS + 2)
    edges = 700.0 * (10.0 ** (edges_mel / 2595.0) - 1.0)
    bins = np.fft.rfftfreq(N_FFT, 1.0 / SAMPLE_RATE)
    rising = (bins[None, :] - edges[:-2, None]) / (edges[1:-1] - edges[:-2])[:, None]
    falling = (edges[2:, None] - bins[None, :]) / (edges[2:] - edges[1:-1])[:, None]
    return np.maximum(0.0, np.minimum(rising, falling)).astype(np.float32)


def _frame_features(
    mix: np.ndarray, frames: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per speech frame: 19 MFCCs, log2 pitch in octaves and whether voiced."""
    cepstra = np.empty((len(frames), N_MFCC), np.float32)
    pitch = np.empty(len(frames), np.float32)
    voiced = np.empty(len(frames), bool)
    reach = max(WINDOW, PITCH_WINDOW) // 2
    spectral_window = np.hanning(WINDOW).astype(np.float32)
    pitch_window = np.hanning(PITCH_WINDOW).astype(np.float32)
    # The window's own autocorrelation, to undo its taper at long lags.
    taper = np.fft.irfft(np.abs(np.fft.rfft(pitch_window, CORRELATION_FFT)) ** 2)
    shortest, longest = (round(SAMPLE_RATE / hz) for hz in PITCH_HZ[::-1])
    taper = np.maximum(taper[: longest + 1] / taper[0], 1e-3)
    first = 0
    while first < len(frames):
        # At most CHUNK_FRAMES frames within as many frames of the mix: the
        # chunk's stretch of the mix is copied, zero beyond the ends, never
        # the whole recording.
        last = np.searchsorted(frames, frames[first] + CHUNK_FRAMES)
        chunk = frames[first : min(first + CHUNK_FRAMES, last)]
        start = int(chunk[0]) * HOP - reach
        padded = np.zeros(int(chunk[-1] - chunk[0]) * HOP + 2 * reach, np.float32)
        lo, hi = max(start, 0), min(start + len(padded), len(mix))
        padded[lo - start : hi - start] = mix[lo:hi]
        centres = (chunk - chunk[0]) * HOP + reach
        span = centres[:, None] - WINDOW // 2 + np.arange(WINDOW)[None, :]
        power = np.abs(np.fft.rfft(padded[span] * spectral_window, N_FFT)) ** 2
        log_mel = np.log(power @ _mel_filters().T + 1e-10)
        cepstra[first : first + len(chunk)] = dct(log_mel, norm="ortho", axis=1)[
            :, 1 : N_MFCC + 1
        ]
        span = centres[:, None] - PITCH_WINDOW // 2 + np.arange(PITCH_WINDOW)[None, :]
        signal = padded[span]
        signal = (signal - signal.mean(axis=1, keepdims=True)) * pitch_window
        spectrum = np.fft.rfft(signal, CORRELATION_FFT)
        correlation = np.fft.irfft(np.abs(spectrum) ** 2, CORRELATION_FFT)
        correlation = correlation[:, : longest + 1]
        correlation /= np.maximum(correlation[:, :1], 1e-12) * taper
        lags = correlation[:, shortest:]
        best = np.argmax(lags, axis=1)
        peak = lags[np.arange(len(best)), best]
        pitch[first : first + len(chunk)] = np.log2(SAMPLE_RATE / (best + shortest))
        voiced[first : first + len(chunk)] = peak > VOICED_ABOVE
        first += len(chunk)
    return cepstra, pitch, voiced


def _segment_starts(n: int, length: int, hop: int) -> np.ndarray:
    """Starts of windows of ``length`` every ``hop`` that cover 0..n."""
    if n <= length:
        return np.zeros(1, int)
    starts = np.arange(0, n - length + 1, hop)
    return starts if starts[-1] == n - length else np.append(starts, n - length)


def _segment_features(
    cepstra: np.ndarray,
    pitch: np.ndarray,
    voiced: np.ndarray,
    starts: np.ndarray,
    length: int,
) -> np.ndarray:
    """(segments, 20): mean cepstra, and mean log2 pitch where voiced."""

    def window_sums(values: np.ndarray) -> np.ndarray:
        total = np.concatenate([np.zeros((1, *values.shape[1:])), np.cumsum(values, 0)])
        return total[starts + length] - total[starts]

    mean_cepstra = window_sums(cepstra.astype(np.float64)) / length
    n_voiced = window_sums(voiced.astype(np.float64))
    pitch_sum = window_sums(np.where(voiced, pitch, 0.0))
    typical = float(np.median(pitch[voiced])) if voiced.any() else 7.0
    mean_pitch = np.where(n_voiced > 0, pitch_sum / np.maximum(n_voiced, 1), typical)
    return np.column_stack([mean_cepstra, mean_pitch])


def _slow_projection(features: np.ndarray, lag: int, dims: int) -> np.ndarray:
    """The ``dims`` directions whose spread over the recording is largest against
    their change between segments ``lag`` apart, each scaled to unit spread."""
    centred = features - features.mean(0)
    if len(centred) <= lag + 2:
        return centred[:, :dims]
    total = np.cov(centred, rowvar=False)
    change = np.cov(centred[lag:] - centred[:-lag], rowvar=False) / 2
    ridge = 1e-3 * np.trace(change) / len(change) * np.eye(len(change))
    _, vectors = eigh(total + ridge, change + ridge)
    projected = centred @ vectors[:, ::-1][:, :dims]
    return projected / (projected.std(0) + 1e-12)


def _two_means(points: np.ndarray, iterations: int = 50) -> tuple[np.ndarray, list]:
    """Deterministic 2-means: labels 0/1 and the two centres.

    Started from several splits along the main axis; the tightest result wins.
    """
    centred = points - points.mean(0)
    axis = np.linalg.svd(centred, full_matrices=False)[2][0]
    along = centred @ axis
    best = None
    for low, high in ((10, 90), (25, 75), (5, 50), (50, 95)):
        centres = [
            points[np.argmin(np.abs(along - np.percentile(along, q)))]
            for q in (low, high)
        ]
        for _ in range(iterations):
            distance = np.stack([((points - c) ** 2).sum(1) for c in centres])
            labels = np.argmin(distance, axis=0)
            if labels.min() == labels.max():
                break
            moved = [points[labels == k].mean(0) for k in (0, 1)]
            if all(np.allclose(a, b) for a, b in zip(moved, centres, strict=True)):
                break
            centres = moved
        inertia = float(np.min(distance, axis=0).sum())
        if best is None or inertia < best[0]:
            best = (inertia, labels.astype(np.int8), centres)
    return best[1], best[2]


def _fisher_ratio(points: np.ndarray, labels: np.ndarray) -> float:
    """Squared distance of the two groups' means over their mean variance, along
    the line joining the means."""
    groups = [points[labels == k] for k in (0, 1)]
    if min(len(group) for group in groups) < 2:
        return 0.0
    direction = groups[1].mean(0) - groups[0].mean(0)
    direction /= np.linalg.norm(direction) + 1e-12
    along = [group @ direction for group in groups]
    gap = along[1].mean() - along[0].mean()
    return float(gap**2 / (0.5 * (along[0].var() + along[1].var()) + 1e-12))


def _spread_to_frames(
    scores: np.ndarray, starts: np.ndarray, length: int, n: int
) -> np.ndarray:
    """Each frame's triangular-weighted mean of the scores of segments over it."""
    weight = np.bartlett(length + 2)[1:-1]
    total = np.zeros(n + length)
    weights = np.zeros(n + length)
    for start, score in zip(starts, scores, strict=True):
        total[start : start + length] += weight * score
        weights[start : start + length] += weight
    return (total / np.maximum(weights, 1e-9))[:n]
