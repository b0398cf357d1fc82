"""Procedural engine: talking and listening heads from the signal and its phones.

Each track is analysed at 100 Hz (band energy, spectral centroid). A voice
activity detector that discounts the partner's leaked voice decides who speaks.
Where a person speaks, a phone recogniser (``phones``) names the sounds and the
mouth takes their visemes (``engines/lips``: closed lips on p/b/m, rounded on
oo, open on ah), opened by the speech envelope, ahead of the sound; where no
phone is recognised, acoustic rules shape it. The listener keeps the mouth
closed, nods at the partner's phrase ends and smiles now and then. Blinks, gaze
with saccades and a slow head sway run all the time. No learned model; the
jaw's FLAME rotation is on the DualTalk dataset's scale
(``motion.jaw_from_jaw_open``).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter1d
from scipy.signal import butter, find_peaks, sosfilt

from dualtalk_cli.audio import FPS, SAMPLE_RATE
from dualtalk_cli.engines.base import Engine
from dualtalk_cli.engines.lips import ANALYSIS_RATE, SHAPE_NAMES, viseme_tracks
from dualtalk_cli.motion import (
    ARKIT_INDEX,
    N_ARKIT,
    N_EXPRESSION,
    N_SHAPE,
    Motion,
    jaw_from_jaw_open,
)
from dualtalk_cli.phones import Phone, recognise_tracks

HOP = 160  # samples between analysis frames (10 ms)
WINDOW = 400  # analysis window (25 ms)
N_FFT = 512
BAND_HZ = (100.0, 4000.0)  # where speech energy lives; rejects hum and hiss
SILENCE_DB = -120.0  # energies are clipped here so digital silence stays finite
CHUNK_HOPS = 4096  # analysis frames per FFT batch, to bound memory
HIGHPASS_HZ, HIGHPASS_ORDER = 75.0, 8  # below the lowest voices: 50 Hz is -28 dB
HIGHPASS_WARMUP = 1600  # samples filtered before each chunk, so it starts settled

# Voice activity (levels are band mean-square in dB relative to full scale).
ABSOLUTE_FLOOR_DB = -55.0  # below this a track never speaks, whatever its noise
ONSET_ABOVE_NOISE_DB = 12.0  # a phrase needs a frame this far above the noise
SUSTAIN_ABOVE_NOISE_DB = 6.0  # ... and lasts while frames stay this far above
NOISE_BLOCK_S = 1.0  # the noise floor is a low percentile per block ...
NOISE_PERCENTILE = 10.0
NOISE_SPAN_S = 15.0  # ... minimised over this many seconds either side
NOISE_BELOW_PEAK_DB = 20.0  # a track that never pauses still gets a floor
PARTNER_MEMORY_S = 0.1  # leaked room sound trails the partner's voice a little
LEAK_MARGIN_DB = 8.0  # own energy this close to the expected leak is leak
LEAK_LIMIT_DB = (-40.0, -5.0)  # overlaps within 5 dB of the partner always count
MIN_LEAK_EVIDENCE_S = 0.5
MAX_GAP_S = 0.25  # shorter pauses stay inside a phrase
MIN_SPEECH_S = 0.1  # shorter blips are noise or leak

# Mouth.
OPEN_RANGE_DB = 24.0  # the envelope goes from closed to fully open over this range
ENVELOPE_SMOOTH_S = 0.025  # Gaussian spread of the speech envelope
JAW_LEAD_S = 0.04  # the jaw opens this much ahead of the sound
JAW_OPEN_MAX = 0.85  # arkit jawOpen of the loudest open vowel
OPEN_FLOOR = 0.3  # share of the opening any voiced phone gets from loudness
FALLBACK_OPENING = 0.6  # viseme opening assumed where no phone was recognised
PLOSIVE_SIDE_S = 0.06  # a dip needs loud speech within this time on both sides
PLOSIVE_DEPTH_DB = (7.0, 10.0)  # dip depth mapped to lip closure 0..1
STRONG_DIP_DB = (12.0, 18.0)  # ... when no phone says it may be a closure
ROUNDING_OCTAVES = 0.5  # centroid shift (octaves) for full rounding or spreading
LIP_SHAPE_SMOOTH_S = 0.04
SHAPE_FULL_LEVEL = 0.3  # envelope at which mouth shapes reach their full weight
MIN_FPS_FOR_PEAK_CLOSURE = 20.0  # slower video takes each frame's mean closure
MOUTH_SHAPES = tuple(
    sorted({*SHAPE_NAMES, "mouthLowerDownLeft", "mouthLowerDownRight",
            "mouthUpperUpLeft", "mouthUpperUpRight", "mouthSmileLeft",
            "mouthSmileRight"})
)  # fmt: skip
CLOSING_SHAPES = ("mouthPressLeft", "mouthPressRight", "mouthRollLower",
                  "mouthRollUpper")  # fmt: skip

# Emphasis: brows and head beats.
EMPHASIS_WINDOW_S = 2.0  # the phrase's running level
EMPHASIS_ABOVE_DB = 7.0
EMPHASIS_MIN_GAP_S = 0.8

# Blinks.
BLINK_REFRACTORY_S = 1.2
BLINK_GAMMA = (4.0, 0.7)  # extra interval (shape, scale): mean interval 4 s
BLINK_HALF_WIDTH_S = (0.12, 0.22)  # duration at half closure
TURN_BLINK_PROBABILITY = 0.6

# Gaze.
GAZE_YAW_DEG = (5.0, 10.0)
SACCADE_INTERVAL_S = (0.3, 2.0)
SACCADE_STEP_DEG = (1.0, 3.0)
SACCADE_RANGE_DEG = 3.0  # saccades wander this far from the partner's face
EYE_LOOK_FULL_RAD = 0.6  # eye rotation for an arkit eyeLook* weight of 1
EYE_FOLLOWS_HEAD = 0.5  # share of head motion the eyes undo to keep the target

# Head.
HEAD_YAW_RAD = 0.12  # both heads turn this much toward each other
SWAY_DEG = (1.5, 2.0, 1.0)  # pitch, yaw, roll
SWAY_HZ = (0.04, 0.3)
SPEAKER_SWAY_GAIN = (0.75, 1.25)  # listener, speaker
BEAT_DEG = (2.0, 4.0)
NOD_MIN_PHRASE_S = 0.8
NOD_PROBABILITY = 0.9
NOD_DELAY_S = (0.1, 0.5)
NOD_DEG = (4.0, 8.0)
NOD_DURATION_S = (0.5, 0.8)
DOUBLE_NOD_PROBABILITY = 0.25

# Listener smiles.
SMILE_AFTER_S = 3.0  # listening this long before a smile may come
SMILE_WAIT_S = 4.0  # mean wait for the next smile
SMILE_WEIGHT = (0.2, 0.4)


@dataclass(frozen=True)
class TrackFeatures:
    """100 Hz features of one track; frame k is centred at k / 100 s."""

    level_db: np.ndarray  # band mean-square, 25 ms window
    smooth_db: np.ndarray  # the same over 50 ms, steadier for voice activity
    centroid_octaves: np.ndarray  # log2 of the band's spectral centroid in Hz


class ProceduralEngine(Engine):
    """Rule-based talking and listening motion; fast, deterministic, no weights."""

    name = "procedural"

    def __init__(self, phones: bool = True) -> None:
        # phones=False: mouths from the acoustic rules alone, for callers that
        # keep only the eyes and speech flags (the DualTalk engine).
        self.phones = phones

    def animate(
        self,
        audio_a: np.ndarray,
        audio_b: np.ndarray,
        *,
        n_frames: int,
        frames_per_second: float = FPS,
        seed: int = 0,
    ) -> tuple[Motion, Motion]:
        """Motion for A (left, facing +x) and B (right, facing -x)."""
        if frames_per_second <= 0:
            raise ValueError(
                f"frames_per_second must be positive, not {frames_per_second}"
            )
        n_hops = _hops_needed(len(audio_a), len(audio_b), n_frames, frames_per_second)
        features = [analyse(audio, n_hops) for audio in (audio_a, audio_b)]
        masks = [
            speech_mask(features[0], features[1]),
            speech_mask(features[1], features[0]),
        ]
        phones = [None, None]
        if self.phones:
            phones = recognise_tracks(
                [(a, _regions(mask)) for a, mask in zip((audio_a, audio_b), masks)]
            )
        motions = [
            _animate_speaker(
                features[me],
                masks[me],
                masks[1 - me],
                phones[me],
                speaker_index=me,
                n_frames=n_frames,
                frames_per_second=frames_per_second,
                seed=seed,
            )
            for me in (0, 1)
        ]
        return motions[0], motions[1]


def detect_speech(
    own: np.ndarray,
    partner: np.ndarray | None,
    n_frames: int,
    frames_per_second: float = FPS,
) -> np.ndarray:
    """(n_frames,) bool: where the person on the 16 kHz track ``own`` speaks.

    ``partner`` is the other person's track (or None); where ``own`` holds only
    a quiet copy of the partner's voice, it does not count as speech.
    """
    if partner is None:
        partner = np.zeros(0, np.float32)
    n_hops = _hops_needed(len(own), len(partner), n_frames, frames_per_second)
    mask = speech_mask(analyse(own, n_hops), analyse(partner, n_hops))
    return _frame_mean(mask.astype(np.float64), n_frames, frames_per_second) >= 0.5


@functools.cache
def _highpass() -> np.ndarray:
    """Second-order sections of the Butterworth high-pass run before analysis."""
    return butter(HIGHPASS_ORDER, HIGHPASS_HZ, "highpass", fs=SAMPLE_RATE, output="sos")


def analyse(audio: np.ndarray, n_hops: int) -> TrackFeatures:
    """Band energy and spectral centroid of a 16 kHz track at 100 Hz."""
    audio = np.asarray(audio, np.float32)
    if audio.ndim != 1:
        raise ValueError(f"expected a mono track, got shape {audio.shape}")
    window = np.hanning(WINDOW).astype(np.float32)
    frequencies = np.fft.rfftfreq(N_FFT, 1.0 / SAMPLE_RATE)
    in_band = (frequencies >= BAND_HZ[0]) & (frequencies <= BAND_HZ[1])
    band_frequencies = frequencies[in_band]
    # Parseval: one-sided band power over the window's energy is a mean-square.
    scale = 2.0 / (N_FFT * float(np.sum(window.astype(np.float64) ** 2)))
    power = np.empty(n_hops)
    centroid = np.empty(n_hops)
    for start in range(0, n_hops, CHUNK_HOPS):
        count = min(CHUNK_HOPS, n_hops - start)
        # Window k is centred on sample k * HOP; zeros stand in beyond the ends.
        # Copying one chunk at a time keeps a long track from being copied whole.
        first = start * HOP - WINDOW // 2 - HIGHPASS_WARMUP
        segment = np.zeros((count - 1) * HOP + WINDOW + HIGHPASS_WARMUP, np.float32)
        lo, hi = max(first, 0), min(first + len(segment), len(audio))
        if hi > lo:
            segment[lo - first : hi - first] = audio[lo:hi]
            # Beyond the ends the track holds its first and last value: a DC
            # offset must not step to zero there, which would sound like a click.
            segment[: lo - first] = audio[lo]
            segment[hi - first :] = audio[hi - 1]
        np.nan_to_num(segment, copy=False, nan=0.0, posinf=0.0, neginf=0.0)
        # A DC offset, rumble or hum is no voice, yet a window's edges would
        # leak it into the speech band: filter it out before windowing.
        segment = sosfilt(_highpass(), segment)[HIGHPASS_WARMUP:].astype(np.float32)
        frames = np.lib.stride_tricks.sliding_window_view(segment, WINDOW)[::HOP]
        chunk = frames * window
        spectrum = np.abs(np.fft.rfft(chunk, N_FFT, axis=1)[:, in_band]) ** 2
        total = spectrum.sum(axis=1, dtype=np.float64)
        power[start : start + count] = total * scale
        weighted = spectrum @ band_frequencies.astype(np.float32)
        centroid[start : start + count] = weighted / np.maximum(total, 1e-20)
    centroid = np.clip(centroid, BAND_HZ[0], BAND_HZ[1])
    return TrackFeatures(
        level_db=_to_db(power),
        smooth_db=_to_db(_box(power, 5)),
        centroid_octaves=np.log2(centroid),
    )


def speech_mask(own: TrackFeatures, partner: TrackFeatures) -> np.ndarray:
    """100 Hz bool mask of ``own`` speaking, discounting the partner's leak."""
    level = own.smooth_db
    noise = noise_floor(level)
    onset = np.maximum(noise + ONSET_ABOVE_NOISE_DB, ABSOLUTE_FLOOR_DB)
    sustain = np.maximum(noise + SUSTAIN_ABOVE_NOISE_DB, ABSOLUTE_FLOOR_DB - 6.0)

    # The partner's level a moment ago bounds what leaks in now (room echo).
    partner_level = _running_max(
        partner.smooth_db, round(PARTNER_MEMORY_S * ANALYSIS_RATE)
    )
    partner_noise = noise_floor(partner.smooth_db)
    partner_active = partner_level > np.maximum(
        partner_noise + ONSET_ABOVE_NOISE_DB, ABSOLUTE_FLOOR_DB
    )
    # How far below the partner their leak sits in this track: measured where
    # the partner dominates and this track holds more than its own noise.
    dominated = partner_active & (partner_level > level) & (level > noise + 6.0)
    if np.count_nonzero(dominated) >= MIN_LEAK_EVIDENCE_S * ANALYSIS_RATE:
        leak_db = float(np.percentile(level[dominated] - partner_level[dominated], 30))
    else:
        leak_db = -np.inf
    limit = float(np.clip(leak_db + LEAK_MARGIN_DB, *LEAK_LIMIT_DB))
    leak = partner_active & (level - partner_level < limit)

    # Leak is judged on the steadier 50 ms level, timing on the 25 ms one so
    # that short bursts keep their true length.
    strong = (own.level_db > onset) & ~leak
    weak = (own.level_db > sustain) & ~leak
    # Hysteresis: keep the runs of weak frames that reach the onset level.
    starts, ends = _runs(weak)
    strong_count = np.concatenate([[0], np.cumsum(strong)])
    keep = strong_count[ends] > strong_count[starts]
    mask = np.zeros(len(level), bool)
    for start, end in zip(starts[keep], ends[keep], strict=True):
        mask[start:end] = True

    starts, ends = _runs(mask)
    max_gap = round(MAX_GAP_S * ANALYSIS_RATE)
    for end, next_start in zip(ends[:-1], starts[1:], strict=True):
        if next_start - end < max_gap:
            mask[end:next_start] = True
    starts, ends = _runs(mask)
    for start, end in zip(starts, ends, strict=True):
        if end - start < round(MIN_SPEECH_S * ANALYSIS_RATE):
            mask[start:end] = False
    return mask


def noise_floor(level_db: np.ndarray) -> np.ndarray:
    """Slowly varying noise level of a 100 Hz energy track, in dB."""
    if level_db.size == 0:
        return level_db.copy()
    block = round(NOISE_BLOCK_S * ANALYSIS_RATE)
    n_blocks = -(-len(level_db) // block)
    padded = np.full(n_blocks * block, np.nan)
    padded[: len(level_db)] = level_db
    lows = np.nanpercentile(padded.reshape(n_blocks, block), NOISE_PERCENTILE, axis=1)
    span = round(NOISE_SPAN_S / NOISE_BLOCK_S)
    lows = np.pad(lows, span, mode="edge")
    floor = np.lib.stride_tricks.sliding_window_view(lows, 2 * span + 1).min(axis=1)
    block_centres = (np.arange(n_blocks) + 0.5) * block
    floor = np.interp(np.arange(len(level_db)), block_centres, floor)
    # A track that never pauses would take its quietest speech for noise.
    return np.minimum(floor, np.percentile(level_db, 95) - NOISE_BELOW_PEAK_DB)


def _regions(mask: np.ndarray) -> list[tuple[float, float]]:
    """(start, end) seconds of the runs of a 100 Hz speech mask."""
    return [(float(start), float(end)) for start, end in _segments_s(mask)]


def _animate_speaker(
    features: TrackFeatures,
    own_mask: np.ndarray,
    partner_mask: np.ndarray,
    phones: list[Phone] | None,
    *,
    speaker_index: int,
    n_frames: int,
    frames_per_second: float,
    seed: int,
) -> Motion:
    """One person's Motion from their features and both speech masks."""
    fps = frames_per_second
    times = (np.arange(n_frames) + 0.5) / fps
    # Independent streams: more nods in one run do not shift the blinks.
    streams = np.random.SeedSequence([seed, speaker_index]).spawn(5)
    blink_rng, gaze_rng, sway_rng, nod_rng, smile_rng = (
        np.random.default_rng(s) for s in streams
    )
    toward_partner = 1.0 if speaker_index == 0 else -1.0
    own_segments = _segments_s(own_mask)
    partner_segments = _segments_s(partner_mask)
    speaking = _frame_mean(own_mask.astype(np.float64), n_frames, fps) >= 0.5

    arkit = np.zeros((n_frames, N_ARKIT))
    mouth = _mouth(features, own_mask, phones, n_frames, fps)
    for name, values in mouth.items():
        arkit[:, ARKIT_INDEX[name]] = values
    jaw_open = mouth["jawOpen"]

    brows, beats = _emphasis(features, own_mask, times)
    arkit[:, ARKIT_INDEX["browInnerUp"]] = 0.6 * brows
    arkit[:, ARKIT_INDEX["browOuterUpLeft"]] = 0.4 * brows
    arkit[:, ARKIT_INDEX["browOuterUpRight"]] = 0.4 * brows

    smile = _listener_smiles(own_segments, times, smile_rng)
    for side in ("Left", "Right"):
        arkit[:, ARKIT_INDEX[f"mouthSmile{side}"]] += smile
        arkit[:, ARKIT_INDEX[f"cheekSquint{side}"]] += 0.4 * smile

    blink = _blinks(own_segments, times, fps, blink_rng)
    arkit[:, ARKIT_INDEX["eyeBlinkLeft"]] = blink
    arkit[:, ARKIT_INDEX["eyeBlinkRight"]] = blink

    # Neck: turned toward the partner, swaying, with beats and nods in pitch.
    # Positive pitch (about +x) tips the face down.
    activity = _smooth_frames(own_mask, n_frames, fps, seconds=1.0)
    gain = (
        SPEAKER_SWAY_GAIN[0] + (SPEAKER_SWAY_GAIN[1] - SPEAKER_SWAY_GAIN[0]) * activity
    )
    sway = _sway(times, sway_rng) * gain[:, None]
    nods = _listener_nods(partner_segments, own_mask, times, nod_rng)
    neck = sway.copy()
    neck[:, 0] += beats + nods
    neck_base = np.array([0.0, toward_partner * HEAD_YAW_RAD, 0.0])

    gaze = _gaze(times, toward_partner, gaze_rng)
    gaze -= EYE_FOLLOWS_HEAD * neck[:, :2]  # keep looking at the partner's face
    for name, values in _eye_look_weights(gaze[:, 0], gaze[:, 1]).items():
        arkit[:, ARKIT_INDEX[name]] = values

    pose = np.zeros((n_frames, 6))
    pose[:, 0:3] = neck + neck_base
    pose[:, 3] = jaw_from_jaw_open(jaw_open)
    eye_pose = np.zeros((n_frames, 3))
    eye_pose[:, :2] = gaze
    return Motion(
        exp=np.zeros((n_frames, N_EXPRESSION), np.float32),
        pose=pose.astype(np.float32),
        shape=np.zeros((n_frames, N_SHAPE), np.float32),
        eyes=np.concatenate([eye_pose, eye_pose], axis=1).astype(np.float32),
        eyelids=np.stack([blink, blink], axis=1).astype(np.float32),
        arkit=np.clip(arkit, 0.0, 1.0).astype(np.float32),
        speaking=speaking,
        frames_per_second=float(fps),
        engine=ProceduralEngine.name,
    )


def _mouth(
    features: TrackFeatures,
    mask: np.ndarray,
    phones: list[Phone] | None,
    n_frames: int,
    fps: float,
) -> dict[str, np.ndarray]:
    """Per-frame mouth weights: visemes of the recognised phones, opened by the
    speech envelope; acoustic rules where no phone was recognised."""
    zeros = np.zeros(n_frames)
    names = ("jawOpen", *MOUTH_SHAPES)
    if not mask.any():
        return {name: zeros for name in names}
    level = features.level_db
    loud = float(np.percentile(features.smooth_db[mask], 95))
    envelope = np.clip((level - (loud - OPEN_RANGE_DB)) / OPEN_RANGE_DB, 0.0, 1.0)
    # Zero-phase smoothing and a lead: the jaw moves ahead of the sound it
    # shapes, where a one-sided smoother would trail it.
    envelope = gaussian_filter1d(envelope * mask, ENVELOPE_SMOOTH_S * ANALYSIS_RATE)
    envelope = _lead(envelope, JAW_LEAD_S)

    tracks = viseme_tracks(phones or [], len(level))
    unknown = 1.0 - tracks.known  # where the acoustic rules speak instead
    # The acoustic shapes lead the sound as the jaw does; closures stay where
    # the silence is, since a stop's release is its burst.
    fallback = {
        name: values if "closure" in name else _lead(values, JAW_LEAD_S)
        for name, values in _acoustic_mouth(features, mask, envelope, loud).items()
    }
    opening = tracks.opening + unknown * FALLBACK_OPENING
    opening = JAW_OPEN_MAX * envelope * (OPEN_FLOOR + (1.0 - OPEN_FLOOR) * opening)
    # A closure heard in the signal (a dip in loudness) closes the lips too
    # where the recogniser heard a stop, a nasal or nothing (it takes b for g
    # and m for silence), and anywhere when the dip is deep.
    heard = np.maximum(
        fallback.pop("closure") * tracks.may_close, fallback.pop("strong_closure")
    )
    closure = np.clip(np.maximum(tracks.closure, heard), 0.0, 1.0)
    # Take the strongest closure within each frame so brief ones are not
    # missed, at video rates; at a few frames a second it would shut every frame.
    if fps >= MIN_FPS_FOR_PEAK_CLOSURE:
        closure = _running_max_centred(closure, max(1, round(ANALYSIS_RATE / fps)))
        closure_frames = _sample(closure, n_frames, fps)
    else:
        closure_frames = _frame_mean(closure, n_frames, fps)
    # Frame means rather than point samples: no aliasing of fast syllables.
    weights = {"jawOpen": _frame_mean(opening, n_frames, fps) * (1 - closure_frames)}
    presence = np.clip(
        envelope / SHAPE_FULL_LEVEL, 0.0, 1.0
    )  # shapes fade with the voice
    for name in MOUTH_SHAPES:
        shape = tracks.shapes.get(name, 0.0) + unknown * fallback.get(name, 0.0)
        shape = _frame_mean(shape * presence, n_frames, fps)
        # During a closure only the pressing shapes stay: the rest would part the lips.
        weights[name] = (
            shape if name in CLOSING_SHAPES else shape * (1 - closure_frames)
        )
    return weights


def _acoustic_mouth(
    features: TrackFeatures, mask: np.ndarray, envelope: np.ndarray, loud: float
) -> dict[str, np.ndarray]:
    """100 Hz lip closures and shapes from the signal alone: the shapes where no
    phone was recognised, the closures (dips in loudness) everywhere."""
    level = features.level_db
    # Plosives and short stops: a sharp dip with loud speech on both sides.
    side = round(PLOSIVE_SIDE_S * ANALYSIS_RATE)
    before = _running_max(np.concatenate([[SILENCE_DB], level[:-1]]), side)
    after = _running_max(np.concatenate([level[1:], [SILENCE_DB]])[::-1], side)[::-1]
    surround = np.minimum(before, after)
    speech = mask & (surround > loud - OPEN_RANGE_DB)

    def closure_over(depths: tuple[float, float]) -> np.ndarray:
        low, high = depths
        closure = np.clip((surround - level - low) / (high - low), 0.0, 1.0)
        return _box(_running_max_centred(closure * speech, 3), 3)

    # Rounding from the spectral centroid against the speaker's usual centroid.
    voiced = mask & (envelope > 0.3)
    usual = np.median(features.centroid_octaves[voiced if voiced.any() else mask])
    shift = (features.centroid_octaves - usual) / ROUNDING_OCTAVES
    weight = envelope + 1e-6
    shift = _box(shift * weight, 9) / _box(weight, 9)
    rounding = gaussian_filter1d(
        np.clip(-shift, 0.0, 1.0), LIP_SHAPE_SMOOTH_S * ANALYSIS_RATE
    )
    spreading = gaussian_filter1d(
        np.clip(shift, 0.0, 1.0), LIP_SHAPE_SMOOTH_S * ANALYSIS_RATE
    )
    closure = closure_over(PLOSIVE_DEPTH_DB)
    return {
        "closure": closure,
        "strong_closure": closure_over(STRONG_DIP_DB),
        "mouthPressLeft": 0.5 * closure,
        "mouthPressRight": 0.5 * closure,
        "mouthFunnel": 0.5 * rounding,
        "mouthPucker": 0.6 * rounding,
        "mouthStretchLeft": 0.35 * spreading,
        "mouthStretchRight": 0.35 * spreading,
        "mouthSmileLeft": 0.15 * spreading,
        "mouthSmileRight": 0.15 * spreading,
        "mouthLowerDownLeft": 0.35 * envelope,
        "mouthLowerDownRight": 0.35 * envelope,
        "mouthUpperUpLeft": 0.1 * envelope,
        "mouthUpperUpRight": 0.1 * envelope,
    }


def _lead(values: np.ndarray, seconds: float) -> np.ndarray:
    """``values`` moved ``seconds`` earlier; the end holds its last value."""
    shift = round(seconds * ANALYSIS_RATE)
    if shift <= 0 or values.size == 0:
        return values
    return np.concatenate(
        [values[shift:], np.full(min(shift, len(values)), values[-1])]
    )


def _emphasis(
    features: TrackFeatures, mask: np.ndarray, times: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Brow raises (0..1) and head beats (pitch, rad) on stressed syllables."""
    brows = np.zeros(len(times))
    beats = np.zeros(len(times))
    if not mask.any():
        return brows, beats
    level = _box(features.smooth_db, 11)
    width = round(EMPHASIS_WINDOW_S * ANALYSIS_RATE) | 1
    # The running level of the voiced part only: pauses would drag it down.
    loud = float(np.percentile(features.smooth_db[mask], 95))
    weight = (mask & (level > loud - 20.0)).astype(np.float64)
    running = _box(level * weight, width) / np.maximum(_box(weight, width), 1e-6)
    above = np.where(mask, level - running, -100.0)
    peaks, found = find_peaks(
        above,
        height=EMPHASIS_ABOVE_DB,
        distance=round(EMPHASIS_MIN_GAP_S * ANALYSIS_RATE),
    )
    strengths = np.clip((found["peak_heights"] - EMPHASIS_ABOVE_DB) / 6.0, 0.0, 1.0)
    for peak, strength in zip(peaks / ANALYSIS_RATE, strengths, strict=True):
        _add_bump(brows, times, peak - 0.1, 0.12, 0.1, 0.45, 0.25 + 0.5 * strength)
        beat = np.radians(BEAT_DEG[0] + (BEAT_DEG[1] - BEAT_DEG[0]) * strength)
        _add_bump(beats, times, peak - 0.12, 0.15, 0.0, 0.3, beat)
    return np.minimum(brows, 1.0), beats


def _blinks(
    own_segments: np.ndarray,
    times: np.ndarray,
    fps: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """Eyelid closure 0..1 per frame: random blinks, often one as a turn starts."""
    closure = np.zeros(len(times))
    if len(times) == 0:
        return closure
    end = times[-1] + 0.5 / fps
    # A turn that starts after a pause often brings a blink just after it.
    previous_ends = np.concatenate([[-np.inf], own_segments[:-1, 1]])
    turns = own_segments[own_segments[:, 0] - previous_ends >= 1.0, 0]
    turn_blinks = turns + rng.uniform(0.05, 0.3, len(turns))
    turn_blinks = turn_blinks[rng.random(len(turns)) < TURN_BLINK_PROBABILITY]
    last = -np.inf
    at = rng.uniform(0.2, 3.0)
    while at < end:
        first_allowed = np.searchsorted(turn_blinks, last + BLINK_REFRACTORY_S)
        if first_allowed < len(turn_blinks) and turn_blinks[first_allowed] < at:
            at = turn_blinks[first_allowed]
        half_width = rng.uniform(*BLINK_HALF_WIDTH_S)
        # Fast close, a short hold, slower opening; the hold is centred on a
        # frame so even a short blink shows fully closed on one frame.
        rise, hold, fall = 0.3 * half_width, 0.45 * half_width, 0.8 * half_width
        middle = (np.floor((at + rise + hold / 2) * fps) + 0.5) / fps
        start = middle - rise - hold / 2
        _add_bump(closure, times, start, rise, hold, fall, 1.0)
        last = start
        at = start + BLINK_REFRACTORY_S + rng.gamma(*BLINK_GAMMA)
    return np.minimum(closure, 1.0)


def _gaze(
    times: np.ndarray, toward_partner: float, rng: np.random.Generator
) -> np.ndarray:
    """(T, 2) eye pitch and yaw (rad): toward the partner, with saccades."""
    pitch = np.radians(rng.uniform(0.0, 2.0))  # a little down, at the face
    yaw = toward_partner * np.radians(rng.uniform(*GAZE_YAW_DEG))
    if len(times) == 0:
        return np.zeros((0, 2))
    end = times[-1] + 1.0
    jump_times = [-np.inf]
    offsets = [np.zeros(2)]
    at = rng.uniform(*SACCADE_INTERVAL_S)
    while at < end:
        angle = rng.uniform(0.0, 2.0 * np.pi)
        step = np.radians(rng.uniform(*SACCADE_STEP_DEG)) * np.array(
            [np.sin(angle), np.cos(angle)]
        )
        # Step back toward the face when the gaze would wander too far.
        if np.hypot(*(offsets[-1] + step)) > np.radians(SACCADE_RANGE_DEG):
            step = -step
        jump_times.append(at)
        offsets.append(offsets[-1] + step)
        at += rng.uniform(*SACCADE_INTERVAL_S)
    which = np.searchsorted(np.array(jump_times), times, side="right") - 1
    return np.array([pitch, yaw]) + np.array(offsets)[which]


def _eye_look_weights(pitch: np.ndarray, yaw: np.ndarray) -> dict[str, np.ndarray]:
    """ARKit eyeLook* weights for both eyes turned by ``pitch`` and ``yaw``.

    The face looks toward +z and the subject's left is +x, so positive yaw
    turns the left eye outward and the right eye inward; positive pitch
    looks down.
    """
    to_left = np.clip(yaw / EYE_LOOK_FULL_RAD, 0.0, 1.0)
    to_right = np.clip(-yaw / EYE_LOOK_FULL_RAD, 0.0, 1.0)
    down = np.clip(pitch / EYE_LOOK_FULL_RAD, 0.0, 1.0)
    up = np.clip(-pitch / EYE_LOOK_FULL_RAD, 0.0, 1.0)
    return {
        "eyeLookOutLeft": to_left,
        "eyeLookInRight": to_left,
        "eyeLookInLeft": to_right,
        "eyeLookOutRight": to_right,
        "eyeLookDownLeft": down,
        "eyeLookDownRight": down,
        "eyeLookUpLeft": up,
        "eyeLookUpRight": up,
    }


def _sway(times: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(T, 3) slow head sway (rad): a few low-frequency sines per axis."""
    sway = np.zeros((len(times), 3))
    for axis, amplitude in enumerate(SWAY_DEG):
        weights = rng.uniform(0.5, 1.0, 3)
        weights *= 1.5 * np.radians(amplitude) / weights.sum()
        frequencies = rng.uniform(*SWAY_HZ, 3)
        phases = rng.uniform(0.0, 2.0 * np.pi, 3)
        for weight, frequency, phase in zip(weights, frequencies, phases, strict=True):
            sway[:, axis] += weight * np.sin(2.0 * np.pi * frequency * times + phase)
    return sway


def _listener_nods(
    partner_segments: np.ndarray,
    own_mask: np.ndarray,
    times: np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray:
    """Head pitch (rad, down positive): nods just after the partner's phrases."""
    pitch = np.zeros(len(times))
    free_from = -np.inf
    for start, end in partner_segments:
        # Draw every time so one phrase's outcome does not shift the next.
        nods, delay = rng.random() < NOD_PROBABILITY, rng.uniform(*NOD_DELAY_S)
        depth = np.radians(rng.uniform(*NOD_DEG))
        duration = rng.uniform(*NOD_DURATION_S)
        double = rng.random() < DOUBLE_NOD_PROBABILITY
        at = end + delay
        if not nods or end - start < NOD_MIN_PHRASE_S or at < free_from:
            continue
        # A nod may run into the listener's reply, but not start inside speech.
        if _is_speaking(own_mask, at, at + 0.1):
            continue
        _add_bump(pitch, times, at, 0.4 * duration, 0.0, 0.6 * duration, depth)
        free_from = at + duration
        if double:
            _add_bump(pitch, times, free_from, 0.3, 0.0, 0.4, 0.6 * depth)
            free_from += 0.7
        free_from += 0.3
    return pitch


def _listener_smiles(
    own_segments: np.ndarray, times: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Smile weight per frame: now and then during long stretches of listening."""
    smile = np.zeros(len(times))
    if len(times) == 0:
        return smile
    edges = np.concatenate([[0.0], own_segments.ravel(), [times[-1] + 1.0]])
    for quiet_start, quiet_end in edges.reshape(-1, 2):
        at = quiet_start + SMILE_AFTER_S + rng.exponential(SMILE_WAIT_S)
        while True:
            fade_in, fade_out = rng.uniform(0.4, 0.8), rng.uniform(0.6, 1.0)
            hold = min(rng.uniform(1.0, 3.0), quiet_end - at - fade_in - fade_out)
            weight = rng.uniform(*SMILE_WEIGHT)
            if hold < 0.3:
                break
            _add_bump(smile, times, at, fade_in, hold, fade_out, weight)
            at += fade_in + hold + fade_out + rng.uniform(2.0, 6.0)
    return smile


def _add_bump(
    values: np.ndarray,
    times: np.ndarray,
    start: float,
    rise: float,
    hold: float,
    fall: float,
    amplitude: float,
) -> None:
    """Add a smooth rise-hold-fall pulse (raised-cosine edges) to ``values``."""
    first, last = np.searchsorted(times, [start, start + rise + hold + fall])
    t = times[first:last] - start
    pulse = np.ones_like(t)
    rising = t < rise
    pulse[rising] = 0.5 - 0.5 * np.cos(np.pi * t[rising] / rise)
    falling = t > rise + hold
    pulse[falling] = 0.5 + 0.5 * np.cos(np.pi * (t[falling] - rise - hold) / fall)
    values[first:last] += amplitude * pulse


def _hops_needed(len_a: int, len_b: int, n_frames: int, fps: float) -> int:
    """Analysis frames covering both tracks and every video frame."""
    seconds = max(len_a / SAMPLE_RATE, len_b / SAMPLE_RATE, n_frames / fps)
    return int(np.ceil(seconds * ANALYSIS_RATE)) + 2


def _frame_mean(values: np.ndarray, n_frames: int, fps: float) -> np.ndarray:
    """Mean of a 100 Hz signal over each video frame's time span."""
    # Analysis frame k stands for [(k - 0.5) / 100, (k + 0.5) / 100).
    edges = (np.arange(len(values) + 1) - 0.5) / ANALYSIS_RATE
    integral = np.concatenate([[0.0], np.cumsum(values) / ANALYSIS_RATE])
    frame_edges = np.arange(n_frames + 1) / fps
    return np.diff(np.interp(frame_edges, edges, integral)) * fps


def _sample(values: np.ndarray, n_frames: int, fps: float) -> np.ndarray:
    """A 100 Hz signal at the centre of each video frame."""
    centres = (np.arange(n_frames) + 0.5) / fps * ANALYSIS_RATE
    return np.interp(centres, np.arange(len(values)), values)


def _smooth_frames(
    mask: np.ndarray, n_frames: int, fps: float, seconds: float
) -> np.ndarray:
    """A 100 Hz mask smoothed with a ``seconds``-wide Hann window, per frame."""
    kernel = np.hanning(round(seconds * ANALYSIS_RATE) + 2)[1:-1]
    smooth = np.convolve(mask.astype(np.float64), kernel / kernel.sum(), mode="same")
    return _sample(smooth, n_frames, fps)


def _segments_s(mask: np.ndarray) -> np.ndarray:
    """(N, 2) start and end times in seconds of the True runs of a 100 Hz mask."""
    starts, ends = _runs(mask)
    return np.stack([starts, ends], axis=1).reshape(-1, 2) / ANALYSIS_RATE


def _is_speaking(mask: np.ndarray, start_s: float, end_s: float) -> bool:
    """Whether a 100 Hz speech mask is True anywhere from ``start_s`` to ``end_s``."""
    first = max(0, int(start_s * ANALYSIS_RATE))
    return bool(mask[first : int(np.ceil(end_s * ANALYSIS_RATE))].any())


def _runs(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start and end (exclusive) indices of the True runs of ``mask``."""
    steps = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return np.flatnonzero(steps == 1), np.flatnonzero(steps == -1)


def _box(values: np.ndarray, width: int) -> np.ndarray:
    """Centred moving average over ``width`` (odd) samples; the ends are held."""
    if values.size == 0:
        return values.copy()
    kernel = np.ones(width) / width
    padded = np.pad(values, width // 2, mode="edge")
    return np.convolve(padded, kernel, mode="valid")


def _running_max(values: np.ndarray, width: int) -> np.ndarray:
    """Maximum over the current and previous ``width - 1`` samples."""
    if values.size == 0:
        return values.copy()
    padded = np.concatenate([np.full(width - 1, values[0]), values])
    return np.lib.stride_tricks.sliding_window_view(padded, width).max(axis=1)


def _running_max_centred(values: np.ndarray, width: int) -> np.ndarray:
    """Maximum over a centred window of ``width`` samples."""
    if values.size == 0:
        return values.copy()
    shifted = _running_max(
        np.concatenate([values, np.full(width // 2, values[-1])]), width
    )
    return shifted[width // 2 :]


def _to_db(power: np.ndarray) -> np.ndarray:
    return np.maximum(10.0 * np.log10(np.maximum(power, 1e-30)), SILENCE_DB)
