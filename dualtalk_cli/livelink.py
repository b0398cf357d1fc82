"""Live Link Face CSV: one speaker's ARKit weights, head and eye rotations per frame.

The layout of the CSV that Epic's Live Link Face app records: ``Timecode``,
``BlendShapeCount`` (61), the 52 ARKit weights with a capital first letter in
Apple's order, then head and eye rotations in radians.

Rotations are Euler angles of the head's and eyes' rotations, right-handed
about the axes used everywhere in this tool (x to the viewer's right, y up, z
toward the viewer), composed as yaw about y, then pitch about x, then roll
about z (R = Ry · Rx · Rz):

- ``HeadYaw`` > 0 turns the face toward +x (the viewer's right, the face's left);
- ``HeadPitch`` > 0 tips the face down (chin toward the chest);
- ``HeadRoll`` > 0 tilts the top of the head toward −x (the face's right shoulder);
- the eyes' angles read the same way for each eyeball.

``MouthLeft``/``MouthRight`` are ARKit's: ``MouthLeft`` moves the mouth toward the
face's own left (the viewer's right), unswapped.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from dualtalk_cli.motion import (
    ARKIT_INDEX,
    ARKIT_NAMES,
    Motion,
    jaw_from_jaw_open,
    jaw_open_from_jaw,
)

ROTATION_COLUMNS = (
    "HeadYaw", "HeadPitch", "HeadRoll",
    "LeftEyeYaw", "LeftEyePitch", "LeftEyeRoll",
    "RightEyeYaw", "RightEyePitch", "RightEyeRoll",
)  # fmt: skip
BLENDSHAPE_COLUMNS = tuple(name[0].upper() + name[1:] for name in ARKIT_NAMES)
HEADER = ("Timecode", "BlendShapeCount", *BLENDSHAPE_COLUMNS, *ROTATION_COLUMNS)
BLENDSHAPE_COUNT = len(BLENDSHAPE_COLUMNS) + len(ROTATION_COLUMNS)  # 61


def timecode(frame: int, frames_per_second: float) -> str:
    """``HH:MM:SS:FF.mmm``: the frame's second, its frame within that second at
    ``frames_per_second``, and the fraction of a frame."""
    seconds = frame / frames_per_second
    whole = math.floor(seconds + 1e-9)
    within = (seconds - whole) * frames_per_second
    number = math.floor(within + 1e-6)
    fraction = min(999, round((within - number) * 1000))
    hours, rest = divmod(whole, 3600)
    minutes, second = divmod(rest, 60)
    return f"{hours:02d}:{minutes:02d}:{second:02d}:{number:02d}.{fraction:03d}"


def euler_angles(axis_angle: np.ndarray) -> np.ndarray:
    """(T, 3) axis-angle -> (T, 3) [yaw, pitch, roll], R = Ry Rx Rz of them."""
    from scipy.spatial.transform import Rotation

    # Intrinsic y, then x, then z: scipy's "YXZ" gives exactly Ry·Rx·Rz.
    return Rotation.from_rotvec(np.asarray(axis_angle, np.float64)).as_euler("YXZ")


def livelink_columns(motion: Motion) -> np.ndarray:
    """(T, 61) float64: the 52 weights, then head and eye rotations (radians).

    Motion without ARKit mouth weights (the DualTalk dataset's, the network's)
    gets ``JawOpen`` from its jaw rotation.
    """
    weights = np.asarray(motion.arkit, np.float64).copy()
    jaw_open = ARKIT_INDEX["jawOpen"]
    if not np.any(weights[:, jaw_open]):
        weights[:, jaw_open] = jaw_open_from_jaw(motion.jaw_pose[:, 0])
    rotations = [
        euler_angles(motion.neck_pose),
        euler_angles(motion.eyes[:, 0:3]),
        euler_angles(motion.eyes[:, 3:6]),
    ]
    return np.concatenate([weights, *rotations], axis=1)


def cannot_express(motions: list[Motion] | tuple[Motion, ...]) -> list[str]:
    """What a Live Link CSV cannot hold of ``motions``, said once per run."""
    used = max(int(np.count_nonzero(np.any(m.exp != 0, axis=0))) for m in motions)
    if not used:
        return []
    return [
        f"the {used} FLAME expression values have no ARKit equivalent and are not "
        "in the Live Link CSV (jaw, head and eyes are)"
    ]


def write_livelink_csv(path: str | os.PathLike, motion: Motion) -> None:
    """Write ``motion`` as a Live Link Face CSV (one header line, one row a frame)."""
    values = livelink_columns(motion)
    with open(Path(path), "w", newline="") as file:
        file.write(",".join(HEADER) + "\n")
        for frame, row in enumerate(values):
            numbers = ",".join(f"{value:.6f}" for value in row)
            code = timecode(frame, motion.frames_per_second)
            file.write(f"{code},{BLENDSHAPE_COUNT},{numbers}\n")


def read_livelink_csv(path: str | os.PathLike, frames_per_second: float | None = None):
    """A Motion from a Live Link Face CSV (an iPhone recording, or ours).

    The jaw opens by ``JawOpen`` (``motion.jaw_from_jaw_open``) and the head
    and eyes turn by their angles; FLAME expression values stay zero. The frame rate is
    ``frames_per_second``, else read from the timecodes' frame numbers.
    """
    import csv

    from dualtalk_cli.arrays import open_input
    from dualtalk_cli.errors import MotionFileError

    path = Path(path)
    with open_input(path, MotionFileError) as raw:
        try:
            lines = raw.read().decode("utf-8-sig").splitlines()
        except UnicodeDecodeError:
            raise MotionFileError("is not a text (CSV) file", path) from None
    rows = list(csv.reader(lines))
    if not rows or tuple(name.strip() for name in rows[0]) != HEADER:
        raise MotionFileError(
            f"line 1: not the Live Link Face header ({len(HEADER)} columns from "
            "Timecode, BlendShapeCount, EyeBlinkLeft ... RightEyeRoll)",
            path,
        )
    numbers, frames_in_second = [], []
    for line, row in enumerate(rows[1:], start=2):
        if not row:
            continue
        try:
            if len(row) != len(HEADER):
                raise ValueError(f"{len(row)} columns, expected {len(HEADER)}")
            values = [float(value) for value in row[2:]]
            frames_in_second.append(int(row[0].split(":")[3].split(".")[0]))
        except (ValueError, IndexError) as error:
            raise MotionFileError(f"line {line}: {error}", path) from None
        if not all(math.isfinite(value) for value in values):
            raise MotionFileError(f"line {line}: NaN or infinite values", path)
        numbers.append(values)
    if not numbers:
        raise MotionFileError("holds no frames", path)
    table = np.array(numbers, np.float64)
    fps = frames_per_second or _frame_rate(frames_in_second)
    return _motion_from_columns(table, fps)


def _frame_rate(frames_in_second: list[int]) -> float:
    """Frames a second from the timecodes: the highest frame number plus one,
    when a whole second was recorded; else 60, Live Link Face's usual rate."""
    wrapped = any(b < a for a, b in zip(frames_in_second, frames_in_second[1:]))
    return float(max(frames_in_second) + 1) if wrapped else 60.0


def _motion_from_columns(table: np.ndarray, frames_per_second: float) -> Motion:
    from dataclasses import replace

    from scipy.spatial.transform import Rotation

    def rotvec(angles: np.ndarray) -> np.ndarray:
        return Rotation.from_euler("YXZ", angles).as_rotvec().astype(np.float32)

    n_frames = len(table)
    weights = np.clip(table[:, : len(ARKIT_NAMES)], 0.0, 1.0).astype(np.float32)
    angles = table[:, len(ARKIT_NAMES) :]
    pose = np.zeros((n_frames, 6), np.float32)
    pose[:, 0:3] = rotvec(angles[:, 0:3])
    pose[:, 3] = jaw_from_jaw_open(weights[:, ARKIT_INDEX["jawOpen"]])
    eyes = np.concatenate([rotvec(angles[:, 3:6]), rotvec(angles[:, 6:9])], axis=1)
    base = Motion.neutral(n_frames, frames_per_second, engine="livelink-csv")
    return replace(base, pose=pose, eyes=eyes, arkit=weights)
