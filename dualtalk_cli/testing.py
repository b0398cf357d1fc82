"""Builders of small test inputs, shared by the tests and the benchmarks.

Speech-like audio, dialogues written as WAV files, motion with chosen channels,
DualTalk dataset NPZ files and a synthetic model in FLAME's layout (no FLAME
data is needed). Nothing here runs at a user's run time.
"""

from __future__ import annotations

import io
from dataclasses import replace
from pathlib import Path

import numpy as np

from dualtalk_cli.audio import FPS, SAMPLE_RATE
from dualtalk_cli.motion import ARKIT_INDEX, Motion

FLAME_SIZES = (5023, 9976, 5)  # FLAME's vertices, triangles and joints
ROOT_PARENT = 4294967295  # as FLAME's kintree_table stores it (uint32 -1)
POSE_COLUMNS = {"neck_x": 0, "neck_y": 1, "neck_z": 2, "jaw_x": 3, "jaw_y": 4}


def voice(
    seconds: float,
    turns: list[tuple[float, float]],
    f0: float = 120.0,
    rate: int = SAMPLE_RATE,
    *,
    level_db: float = -20.0,
    tilt: float = 1.0,
    seed: int = 0,
) -> np.ndarray:
    """Harmonic 'speech' in ``turns``: 5 Hz syllables and a short stop every 0.7 s.

    ``level_db`` is the RMS while speaking, ``tilt`` how fast harmonics fall
    off; a quiet room's noise (-75 dBFS) runs throughout.
    """
    rng = np.random.default_rng(seed)
    t = np.arange(round(seconds * rate)) / rate
    pitch = f0 * (1.0 + 0.05 * np.sin(2 * np.pi * 0.7 * t))
    phase = 2 * np.pi * np.cumsum(pitch) / rate
    highest = min(4000.0, rate / 2)
    tone = sum(np.sin(h * phase) / h**tilt for h in range(1, 30) if h * f0 < highest)
    syllables = 0.55 - 0.45 * np.cos(2 * np.pi * 5.0 * t + rng.uniform(0, 6))
    stops = (t % 0.7) < 0.06
    active = np.zeros_like(t, bool)
    for start, end in turns:
        active |= (t >= start) & (t < end)
    signal = tone * syllables * ~stops * active
    rms = np.sqrt(np.mean(signal[active] ** 2)) if active.any() else 1.0
    noise = 10 ** (-75 / 20) * rng.standard_normal(len(t))
    return (signal / rms * 10 ** (level_db / 20) + noise).astype(np.float32)


def write_dialogue(
    folder: Path,
    seconds: float = 4.0,
    turns_a: list[tuple[float, float]] | None = None,
    turns_b: list[tuple[float, float]] | None = None,
    rate: int = SAMPLE_RATE,
) -> tuple[Path, Path]:
    """Write a.wav and b.wav: by default A speaks first, then B."""
    import soundfile

    turns_a = [(0.2, seconds / 2 - 0.3)] if turns_a is None else turns_a
    turns_b = [(seconds / 2 + 0.1, seconds - 0.2)] if turns_b is None else turns_b
    path_a, path_b = folder / "a.wav", folder / "b.wav"
    soundfile.write(path_a, voice(seconds, turns_a, 120, rate, seed=1), rate)
    soundfile.write(path_b, voice(seconds, turns_b, 210, rate, seed=2), rate)
    return path_a, path_b


def make_motion(
    n_frames: int = 1,
    seed: int | None = None,
    frames_per_second: float = FPS,
    **channels: float,
) -> Motion:
    """Motion made for a test: neutral, random in every channel with ``seed``,
    then ``channels`` set on every frame.

    Channel names: neck_x/y/z, jaw_x/y, lids (both eyelids), lid_left,
    lid_right, exp0 .. exp49, or an ARKit name.
    """
    base = Motion.neutral(n_frames, frames_per_second, engine="test")
    arrays = {
        key: getattr(base, key).copy()
        for key in ("exp", "pose", "shape", "eyes", "eyelids", "arkit", "speaking")
    }
    if seed is not None:
        rng = np.random.default_rng(seed)
        arrays["shape"][:] = rng.normal(0, 1, base.shape.shape[1])  # one identity
        for key, spread in (("exp", 1.0), ("pose", 0.3), ("eyes", 0.2)):
            arrays[key] = rng.normal(0, spread, arrays[key].shape).astype(np.float32)
        for key in ("eyelids", "arkit"):
            arrays[key] = rng.uniform(size=arrays[key].shape).astype(np.float32)
        arrays["speaking"] = rng.uniform(size=n_frames) > 0.5
    for name, value in channels.items():
        if name in POSE_COLUMNS:
            arrays["pose"][:, POSE_COLUMNS[name]] = value
        elif name == "lids":
            arrays["eyelids"][:] = value
        elif name in ("lid_left", "lid_right"):
            arrays["eyelids"][:, int(name == "lid_right")] = value
        elif name.startswith("exp") and name[3:].isdigit():
            arrays["exp"][:, int(name[3:])] = value
        else:
            arrays["arkit"][:, ARKIT_INDEX[name]] = value
    return replace(base, **arrays)


def write_dataset_npz(path: Path, n_frames: int = 30, seed: int = 0) -> Path:
    """A DualTalk dataset NPZ: exp, pose = [neck, jaw], shape, tex, cam, light."""
    rng = np.random.default_rng(seed)
    pose = np.zeros((n_frames, 6), np.float32)
    pose[:, 3] = 0.15 * (1 + np.sin(np.arange(n_frames) / 3))  # jaw opening
    pose[:, 1] = 0.1  # head turned
    np.savez(
        path,
        exp=rng.normal(0, 0.5, (n_frames, 50)).astype(np.float32),
        pose=pose,
        shape=rng.normal(0, 0.5, (n_frames, 100)).astype(np.float32),
        tex=np.zeros((n_frames, 50), np.float32),
        cam=np.zeros((n_frames, 3), np.float32),
        light=np.zeros((n_frames, 9, 3), np.float32),
    )
    return path


def sphere(n: int, radius: float = 0.1) -> np.ndarray:
    """(n, 3) points spread evenly over a sphere (a Fibonacci lattice)."""
    i = np.arange(n) + 0.5
    y = 1.0 - 2.0 * i / n
    r = np.sqrt(1.0 - y**2)
    phi = i * np.pi * (3.0 - np.sqrt(5.0))
    return radius * np.stack([r * np.cos(phi), y, r * np.sin(phi)], axis=1)


def sphere_faces(points: np.ndarray, n_faces: int) -> np.ndarray:
    """(n_faces, 3) uint32 outward triangles of points on a sphere, using every
    point (tools such as Blender drop vertices that no face uses)."""
    from scipy.spatial import ConvexHull

    hull = ConvexHull(points)
    faces = hull.simplices.copy()
    normals = np.cross(
        points[faces[:, 1]] - points[faces[:, 0]],
        points[faces[:, 2]] - points[faces[:, 0]],
    )
    inward = np.einsum("ij,ij->i", normals, points[faces].mean(axis=1)) < 0
    faces[inward] = faces[inward][:, ::-1]
    # Drop faces down to FLAME's count, each only if its corners stay in others.
    uses = np.bincount(faces.ravel(), minlength=len(points))
    keep = np.ones(len(faces), bool)
    for index in range(len(faces)):
        if keep.sum() == n_faces:
            break
        if np.all(uses[faces[index]] > 1):
            keep[index] = False
            uses[faces[index]] -= 1
    if keep.sum() != n_faces:
        raise ValueError(f"cannot make {n_faces} faces of {len(points)} points")
    return faces[keep].astype(np.uint32)


def synthetic_flame_arrays(
    seed: int = 0, pose_correctives: bool = True
) -> dict[str, np.ndarray]:
    """Arrays laid out as in FLAME's generic_model.pkl, with made-up content:
    a sphere with a jaw below, two eyes, random shape and pose bases."""
    n_vertices, n_faces, n_joints = FLAME_SIZES
    rng = np.random.default_rng(seed)
    template = sphere(n_vertices)
    y = template[:, 1]
    weights = np.zeros((n_vertices, n_joints))
    weights[:, 0], weights[:, 1] = 0.3, 0.7
    # The jaw: fully jaw-weighted below y = -0.06, blended up to -0.04.
    jaw = np.clip((-0.04 - y) / 0.02, 0.0, 1.0)
    weights[:, :2] *= (1.0 - jaw)[:, None]
    weights[:, 2] = jaw
    for joint, side in ((3, 1.0), (4, -1.0)):
        eye = np.linalg.norm(template - [side * 0.035, 0.03, 0.09], axis=1) < 0.015
        weights[eye] = 0.0
        weights[eye, joint] = 1.0
    # Each joint is the mean of four vertices near where FLAME's joint would be.
    targets = [[0, -0.1, 0], [0, -0.08, -0.02], [0, -0.05, 0.08]]
    targets += [[0.035, 0.03, 0.09], [-0.035, 0.03, 0.09]]
    regressor = np.zeros((n_joints, n_vertices))
    for joint, target in enumerate(targets):
        nearest = np.argsort(np.linalg.norm(template - target, axis=1))[:4]
        regressor[joint, nearest] = 0.25
    return {
        "v_template": template,
        "f": sphere_faces(template, n_faces),
        "shapedirs": rng.normal(0.0, 1e-3, (n_vertices, 3, 400)),
        "posedirs": rng.normal(0.0, 1e-3, (n_vertices, 3, 36)) * pose_correctives,
        "J_regressor": regressor,
        "weights": weights,
        "kintree_table": np.array([[ROOT_PARENT, 0, 1, 1, 1], [0, 1, 2, 3, 4]]),
        "J": regressor @ template,
    }


def write_synthetic_flame(
    path: Path, seed: int = 0, pose_correctives: bool = True
) -> Path:
    """``synthetic_flame_arrays`` as a FLAME-format .npz file."""
    np.savez(path, **synthetic_flame_arrays(seed, pose_correctives))
    return path


def write_npz_bomb(path: Path, key: str, gigabytes: float) -> Path:
    """A dataset NPZ of 30 frames plus ``key``: gigabytes of zeros that compress
    to a few megabytes (a decompression bomb)."""
    import zipfile

    write_dataset_npz(path, 30)
    with np.load(path) as data:
        kept = {name: data[name] for name in data.files if name != key}
    np.savez(path, **kept)
    n_floats = int(gigabytes * 2**30 / 4)
    header = {"descr": "<f4", "fortran_order": False, "shape": (n_floats,)}
    with zipfile.ZipFile(path, "a", compression=zipfile.ZIP_DEFLATED) as archive:
        with archive.open(f"{key}.npy", "w", force_zip64=True) as member:
            np.lib.format.write_array_header_2_0(member, header)
            block = bytes(1 << 24)
            for _ in range(n_floats * 4 // len(block)):
                member.write(block)
    return path


def write_wav_header(path: Path, rate: int, n_samples: int) -> Path:
    """An 8-bit mono WAV of ``n_samples`` at ``rate`` Hz, as a sparse file (the
    data are holes: a header can claim hours without using the disk)."""
    import struct

    header = b"RIFF" + struct.pack("<I", 36 + n_samples) + b"WAVEfmt "
    header += struct.pack("<IHHIIHH", 16, 1, 1, rate, rate, 1, 8)
    header += b"data" + struct.pack("<I", n_samples)
    with open(path, "wb") as file:
        file.write(header)
        file.truncate(len(header) + n_samples)
    return path


def write_pair(folder: Path, clip: str, seconds: float = 1.5, seed: int = 0) -> None:
    """``<clip>_speaker1.wav`` and ``<clip>_speaker2.wav`` in the dataset's layout:
    A speaks in the first half, B in the second."""
    import soundfile

    half = seconds / 2
    a = voice(seconds, [(0.1, half - 0.1)], 120, seed=seed)
    b = voice(seconds, [(half + 0.1, seconds - 0.1)], 210, seed=seed + 50)
    soundfile.write(folder / f"{clip}_speaker1.wav", a, SAMPLE_RATE)
    soundfile.write(folder / f"{clip}_speaker2.wav", b, SAMPLE_RATE)


def write_spoken_words(
    path: Path, words: list[str], voice: str = "en-us", gap: float = 0.35
) -> list[tuple[str, float, float]]:
    """Speak ``words`` one by one with espeak-ng into a 16 kHz WAV at ``path``,
    ``gap`` seconds of silence between them; returns each word's (word, start,
    end) in seconds, known because the audio is built word by word."""
    import soundfile

    pieces = [np.zeros(int(gap * SAMPLE_RATE), np.float32)]
    spans = []
    at = gap
    for word in words:
        audio = speak(word, ("-v", voice))  # the word alone, no padding
        spans.append((word, at, at + len(audio) / SAMPLE_RATE))
        pieces += [audio, np.zeros(int(gap * SAMPLE_RATE), np.float32)]
        at += (len(audio) + int(gap * SAMPLE_RATE)) / SAMPLE_RATE
    soundfile.write(path, np.concatenate(pieces), SAMPLE_RATE)
    return spans


# A dialogue for write_spoken_dialogue: unequal turns, two overlaps (negative
# gaps) and three backchannels (None).
SPOKEN_DIALOGUE = [
    (0, "Hello there. I wanted to tell you what happened at the meeting "
        "yesterday afternoon, because it surprised all of us.", 0.4),
    (1, "mm-hm", None),
    (1, "Really? What did the manager say about the new project?", 0.5),
    (0, "She said the project took far too long, and that the team must "
        "finish it before the end of April.", -0.4),
    (1, "yeah", None),
    (1, "That sounds difficult.", 0.6),
    (0, "To be honest I think she is right about it.", 0.4),
    (1, "I heard the bridge will close in April as well, so everyone will be "
        "late for work for weeks.", 0.5),
    (0, "right", None),
    (0, "Oh no. Then we should plan the trip for May instead, when the "
        "weather is better.", -0.3),
    (1, "Sure, I will write it down and tell the others tomorrow morning.", 0.4),
    (0, "Thank you. Let us talk again next week.", 0.5),
]  # fmt: skip
DISTINCT_VOICES = (("-v", "en-us"), ("-v", "en+f3"))  # a man's and a woman's voice
SIMILAR_VOICES = (("-v", "en-us"), ("-v", "en-us", "-p", "70"))  # one voice, pitch up


def speak(text: str, voice: tuple[str, ...] = ("-v", "en-us")) -> np.ndarray:
    """``text`` spoken by espeak-ng (``voice``: its arguments), 16 kHz, trimmed."""
    import subprocess

    import soundfile
    import soxr

    spoken = subprocess.run(
        ["espeak-ng", *voice, "--stdout", text], capture_output=True, check=True
    ).stdout
    audio, rate = soundfile.read(io.BytesIO(spoken), dtype="float32")
    audio = soxr.resample(audio, rate, SAMPLE_RATE).astype(np.float32)
    loud = np.flatnonzero(np.abs(audio) > 0.01 * np.abs(audio).max())
    return audio[loud[0] : loud[-1] + 1]


def write_spoken_dialogue(
    folder: Path,
    lines: list[tuple[int, str, float]],
    voices: tuple[tuple[str, ...], tuple[str, ...]],
    gains_db: tuple[float, float] = (0.0, -3.0),
) -> tuple[Path, Path, Path]:
    """A conversation of two espeak-ng voices: each voice's own track and their
    mono mix, as ``a.wav``, ``b.wav`` and ``mix.wav`` in ``folder``.

    ``lines``: (speaker 0/1, text, gap). A turn starts ``gap`` seconds after the
    previous turn ends (negative: they overlap); a gap of None puts the line
    inside the previous turn, at its middle, as a backchannel ("mm-hm").
    """
    import soundfile

    placed = []  # (speaker, start sample, audio)
    turn_start = turn_end = 0
    for speaker, text, gap in lines:
        audio = speak(text, voices[speaker]) * 10 ** (gains_db[speaker] / 20)
        if gap is None:
            start = (turn_start + turn_end) // 2
        else:
            start = max(0, turn_end + round(gap * SAMPLE_RATE))
            turn_start, turn_end = start, start + len(audio)
        placed.append((speaker, start, audio))
    length = max(start + len(audio) for _, start, audio in placed) + SAMPLE_RATE // 2
    tracks = np.zeros((2, length), np.float32)
    for speaker, start, audio in placed:
        tracks[speaker, start : start + len(audio)] += audio
    noise = np.random.default_rng(0).normal(0, 10 ** (-65 / 20), (2, length))
    tracks += noise.astype(np.float32)
    paths = (folder / "a.wav", folder / "b.wav", folder / "mix.wav")
    for path, audio in zip(paths, (tracks[0], tracks[1], tracks.sum(0)), strict=True):
        soundfile.write(path, audio, SAMPLE_RATE, subtype="PCM_16")
    return paths
