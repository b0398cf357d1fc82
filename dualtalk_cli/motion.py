"""One speaker's motion: FLAME parameters, ARKit weights, gaze and speech per frame.

The NPZ layout is the DualTalk dataset's (``exp`` (T,50), ``pose`` (T,6) = [neck, jaw]
axis-angle, ``shape`` (T,100), float32) plus self-describing extras, so the dataset's
tools read our files and we read theirs.
"""

from __future__ import annotations

import io
import os
import re
import zipfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from dualtalk_cli.arrays import NPY_KEY, read_arrays
from dualtalk_cli.audio import FPS, FPS_RANGE, MAX_FRAMES
from dualtalk_cli.errors import MotionFileError

if TYPE_CHECKING:
    from dualtalk_cli.diarize import Diarization

FORMAT_VERSION = 1
N_EXPRESSION = 50  # FLAME 2020 expression coefficients used by DualTalk
N_SHAPE = 100  # FLAME shape coefficients stored per frame, as in the dataset
MAX_SHAPE = 300  # FLAME's full shape space, for identities given with more values
N_NETWORK = 56  # DualTalk's vector: [exp 50, jaw 3, neck 3]

# ARKit blendshape names in the column order of Apple's Live Link Face CSV export.
ARKIT_NAMES: tuple[str, ...] = (
    "eyeBlinkLeft", "eyeLookDownLeft", "eyeLookInLeft", "eyeLookOutLeft",
    "eyeLookUpLeft", "eyeSquintLeft", "eyeWideLeft",
    "eyeBlinkRight", "eyeLookDownRight", "eyeLookInRight", "eyeLookOutRight",
    "eyeLookUpRight", "eyeSquintRight", "eyeWideRight",
    "jawForward", "jawRight", "jawLeft", "jawOpen",
    "mouthClose", "mouthFunnel", "mouthPucker", "mouthRight", "mouthLeft",
    "mouthSmileLeft", "mouthSmileRight", "mouthFrownLeft", "mouthFrownRight",
    "mouthDimpleLeft", "mouthDimpleRight", "mouthStretchLeft", "mouthStretchRight",
    "mouthRollLower", "mouthRollUpper", "mouthShrugLower", "mouthShrugUpper",
    "mouthPressLeft", "mouthPressRight", "mouthLowerDownLeft", "mouthLowerDownRight",
    "mouthUpperUpLeft", "mouthUpperUpRight",
    "browDownLeft", "browDownRight", "browInnerUp",
    "browOuterUpLeft", "browOuterUpRight",
    "cheekPuff", "cheekSquintLeft", "cheekSquintRight",
    "noseSneerLeft", "noseSneerRight",
    "tongueOut",
)  # fmt: skip
N_ARKIT = len(ARKIT_NAMES)
ARKIT_INDEX = {name: i for i, name in enumerate(ARKIT_NAMES)}

# The one mapping between FLAME's jaw rotation (about x, radians) and a mouth
# opening 0..1 (ARKit jawOpen, Live Link JawOpen, the built-in head's jaw):
# opening = ((jaw - JAW_CLOSED_RAD) / (JAW_FULL_OPEN_RAD - JAW_CLOSED_RAD)) ** 0.5,
# clipped to 0..1. The DualTalk dataset's tracked jaw is mostly 0..0.15 rad with
# a median near 0.01, so its typical 0.01-0.05 rad open the mouth by 0.2-0.55:
# visibly. Jaws up to JAW_CLOSED_RAD (tracking noise, a listener's jaw) keep it shut.
JAW_FULL_OPEN_RAD = 0.15
JAW_CLOSED_RAD = 0.004
JAW_OPEN_EXPONENT = 0.5


def jaw_open_from_jaw(jaw: np.ndarray) -> np.ndarray:
    """Mouth opening 0..1 of FLAME jaw rotations about x (radians)."""
    span = JAW_FULL_OPEN_RAD - JAW_CLOSED_RAD
    ratio = np.clip((np.asarray(jaw, np.float64) - JAW_CLOSED_RAD) / span, 0.0, 1.0)
    return ratio**JAW_OPEN_EXPONENT


def jaw_from_jaw_open(opening: np.ndarray) -> np.ndarray:
    """FLAME jaw rotation about x (radians) of mouth openings 0..1 (0 for a shut
    mouth, else at least JAW_CLOSED_RAD)."""
    clipped = np.clip(np.asarray(opening, np.float64), 0.0, 1.0)
    span = JAW_FULL_OPEN_RAD - JAW_CLOSED_RAD
    jaw = JAW_CLOSED_RAD + span * clipped ** (1.0 / JAW_OPEN_EXPONENT)
    return np.where(clipped > 0.0, jaw, 0.0)


_DATASET_KEYS = ("exp", "pose")
# What load_motion reads of a file; anything else (the dataset's tex, cam,
# light) is never decompressed.
_READ_KEYS = (*_DATASET_KEYS, "shape", "eyes", "eyelids", "arkit", "arkit_names",
              "speaking", "fps", "engine")  # fmt: skip
# The DualTalk dataset names each speaker's files <clip>_speaker1 / <clip>_speaker2.
_SPEAKER_NAME = re.compile(r"^(?P<clip>.+)_speaker(?P<speaker>[12])$")


@dataclass(frozen=True, eq=False)
class Motion:
    """Per-frame motion of one speaker; every array has T rows.

    Rotations are axis-angle in radians in FLAME's head frame (x right, y up,
    z toward the viewer); positive yaw (about y) turns the face toward +x.
    """

    exp: np.ndarray  # (T, 50) FLAME 2020 expression coefficients
    pose: np.ndarray  # (T, 6) [neck/head axis-angle, jaw axis-angle]
    shape: np.ndarray  # (T, 100..300) FLAME identity coefficients
    eyes: np.ndarray  # (T, 6) [left eyeball, right eyeball] axis-angle
    eyelids: np.ndarray  # (T, 2) closure of [left, right] lid, 0 open .. 1 shut
    arkit: np.ndarray  # (T, 52) ARKit weights, order ARKIT_NAMES
    speaking: np.ndarray  # (T,) bool, True where this person speaks
    frames_per_second: float = float(FPS)
    engine: str = "unknown"
    arkit_names: tuple[str, ...] = field(default=ARKIT_NAMES)

    def __post_init__(self) -> None:
        n = self.n_frames
        expected = {
            "exp": (n, N_EXPRESSION),
            "pose": (n, 6),
            "shape": (n, max(N_SHAPE, min(MAX_SHAPE, self.shape.shape[-1]))),
            "eyes": (n, 6),
            "eyelids": (n, 2),
            "arkit": (n, len(self.arkit_names)),
            "speaking": (n,),
        }
        for name, want in expected.items():
            got = getattr(self, name).shape
            if got != want:
                raise ValueError(f"Motion.{name} has shape {got}, expected {want}")

    @property
    def n_frames(self) -> int:
        return int(self.exp.shape[0])

    @property
    def seconds(self) -> float:
        return self.n_frames / self.frames_per_second

    @property
    def neck_pose(self) -> np.ndarray:
        """(T, 3) neck/head axis-angle."""
        return self.pose[:, 0:3]

    @property
    def jaw_pose(self) -> np.ndarray:
        """(T, 3) jaw axis-angle."""
        return self.pose[:, 3:6]

    def arkit_weight(self, name: str) -> np.ndarray:
        """(T,) the ARKit weight called ``name``."""
        return self.arkit[:, self.arkit_names.index(name)]

    def to_network(self) -> np.ndarray:
        """(T, 56) float32 DualTalk vector [exp, jaw, neck]."""
        return np.concatenate([self.exp, self.jaw_pose, self.neck_pose], axis=1).astype(
            np.float32
        )

    def with_shape(self, shape: np.ndarray) -> Motion:
        """The same motion with identity ``shape`` (up to 300 values) on every frame."""
        values = np.asarray(shape, np.float32).ravel()[:MAX_SHAPE]
        row = np.zeros(max(N_SHAPE, values.size), np.float32)
        row[: values.size] = values
        return replace(self, shape=np.tile(row, (self.n_frames, 1)))

    @classmethod
    def neutral(
        cls, n_frames: int, frames_per_second: float = FPS, engine: str = "neutral"
    ) -> Motion:
        """A motionless, neutral face for ``n_frames`` frames."""
        return cls(
            exp=np.zeros((n_frames, N_EXPRESSION), np.float32),
            pose=np.zeros((n_frames, 6), np.float32),
            shape=np.zeros((n_frames, N_SHAPE), np.float32),
            eyes=np.zeros((n_frames, 6), np.float32),
            eyelids=np.zeros((n_frames, 2), np.float32),
            arkit=np.zeros((n_frames, N_ARKIT), np.float32),
            speaking=np.zeros(n_frames, bool),
            frames_per_second=float(frames_per_second),
            engine=engine,
        )

    @classmethod
    def from_network(
        cls,
        vectors: np.ndarray,
        frames_per_second: float = FPS,
        engine: str = "dualtalk",
    ) -> Motion:
        """Motion from a (T, 56) DualTalk vector; the extras stay neutral."""
        vectors = np.asarray(vectors, np.float32)
        base = cls.neutral(len(vectors), frames_per_second, engine)
        pose = np.concatenate([vectors[:, 53:56], vectors[:, 50:53]], axis=1)
        return replace(base, exp=vectors[:, :N_EXPRESSION].copy(), pose=pose)

    def save(self, path: str | os.PathLike) -> None:
        """Write the NPZ to ``path`` (byte-identical for identical motion)."""
        write_npz(path, self.to_arrays())

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The NPZ arrays, in the order they are written."""
        return {
            "exp": self.exp.astype(np.float32),
            "pose": self.pose.astype(np.float32),
            "shape": self.shape.astype(np.float32),
            "eyes": self.eyes.astype(np.float32),
            "eyelids": self.eyelids.astype(np.float32),
            "arkit": self.arkit.astype(np.float32),
            "arkit_names": np.array(self.arkit_names),
            "speaking": self.speaking.astype(bool),
            "fps": np.array(self.frames_per_second, np.float32),
            "engine": np.array(self.engine),
            "format_version": np.array(FORMAT_VERSION, np.int32),
        }


@dataclass(frozen=True, eq=False)
class Conversation:
    """Both speakers' motion (A first), with the conversation's audio for video."""

    motions: tuple[Motion, ...]
    audio: np.ndarray | None = None  # (N, 2) float32 at 16 kHz, speaker A left
    # Who speaks when, where one recording was split by voice.
    diarization: Diarization | None = None

    @property
    def n_frames(self) -> int:
        return max(motion.n_frames for motion in self.motions)

    @property
    def frames_per_second(self) -> float:
        return self.motions[0].frames_per_second


def write_npz(path: str | os.PathLike, arrays: dict[str, np.ndarray]) -> None:
    """Write ``arrays`` as a compressed NPZ with fixed zip timestamps.

    ``numpy.savez`` stamps each member with the current time, so two runs would
    differ in bytes; this writes the same format with a constant date.
    """
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, array in arrays.items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, np.asanyarray(array), allow_pickle=False)
            archive.writestr(info, buffer.getvalue())


def load_motion(
    path: str | os.PathLike, frames_per_second: float | None = None
) -> Motion:
    """Read our NPZ or a DualTalk dataset NPZ (extra keys such as ``tex`` are ignored).

    Files without our extras get neutral eyes, open eyelids, zero ARKit weights
    and no speech flags. ``frames_per_second`` applies when the file has no ``fps``.
    """
    path = Path(path)
    arrays = read_arrays(
        path, MotionFileError, "NPZ file", _READ_KEYS, max_rows=MAX_FRAMES
    )
    if NPY_KEY in arrays:
        raise MotionFileError("is a .npy array, expected an NPZ file", path)
    for key in _DATASET_KEYS:
        if key not in arrays:
            raise MotionFileError(f"has no '{key}' array", path)
    exp = _float_array(arrays, "exp", path)
    n = exp.shape[0] if exp.ndim == 2 else -1
    if exp.ndim != 2 or exp.shape[1] < N_EXPRESSION or n < 1:
        raise MotionFileError(f"'exp' has shape {exp.shape}, expected (T, 50)", path)
    exp = exp[:, :N_EXPRESSION]
    pose = _float_array(arrays, "pose", path)
    if pose.shape != (n, 6):
        raise MotionFileError(f"'pose' has shape {pose.shape}, expected ({n}, 6)", path)

    shape = np.zeros((n, N_SHAPE), np.float32)
    if "shape" in arrays:
        given = _float_array(arrays, "shape", path)
        if given.ndim == 1:
            given = np.tile(given, (n, 1))
        if given.ndim != 2 or given.shape[0] != n:
            raise MotionFileError(
                f"'shape' has shape {given.shape}, expected ({n}, 100)", path
            )
        width = min(MAX_SHAPE, given.shape[1])
        shape = np.zeros((n, max(N_SHAPE, width)), np.float32)
        shape[:, :width] = given[:, :width]

    names = ARKIT_NAMES
    if "arkit_names" in arrays:
        if arrays["arkit_names"].dtype.kind not in "US":
            raise MotionFileError("'arkit_names' must hold names (strings)", path)
        names = tuple(str(x) for x in arrays["arkit_names"].ravel())
    extras = {"eyes": (6,), "eyelids": (2,), "arkit": (len(names),)}
    values = {}
    for key, width in extras.items():
        values[key] = np.zeros((n, *width), np.float32)
        if key in arrays:
            values[key] = _float_array(arrays, key, path)
            if values[key].shape != (n, *width):
                raise MotionFileError(
                    f"'{key}' has shape {values[key].shape}, expected {(n, *width)}",
                    path,
                )
    values["speaking"] = np.zeros(n, bool)
    if "speaking" in arrays:
        speaking = arrays["speaking"]
        if speaking.shape != (n,) or speaking.dtype.kind not in "biuf":
            raise MotionFileError(f"'speaking' must be {n} flags", path)
        values["speaking"] = speaking.astype(bool)
    if "arkit" in arrays and names != ARKIT_NAMES:
        values["arkit"] = _reorder_arkit(values["arkit"], names)
    # Every channel a head, writer or renderer uses must be finite.
    for name, array in (
        ("exp", exp),
        ("pose", pose),
        ("shape", shape),
        *[(key, values[key]) for key in extras],
    ):
        if not np.all(np.isfinite(array)):
            raise MotionFileError(f"'{name}' holds NaN or infinite values", path)
    fps = _frame_rate(arrays, path, frames_per_second)
    engine = str(arrays["engine"]) if "engine" in arrays else "dataset"
    return Motion(
        exp=np.ascontiguousarray(exp, np.float32),
        pose=np.ascontiguousarray(pose, np.float32),
        shape=shape,
        frames_per_second=fps,
        engine=engine,
        **values,
    )


def _frame_rate(
    arrays: dict[str, np.ndarray], path: Path, default: float | None
) -> float:
    """The file's ``fps``: one number within FPS_RANGE (``default`` when absent)."""
    if "fps" not in arrays:
        return float(default or FPS)
    fps = arrays["fps"]
    if fps.size != 1 or fps.dtype.kind not in "iuf":
        raise MotionFileError(
            f"'fps' must be one number, not {fps.dtype} of shape {fps.shape}", path
        )
    value = float(fps.ravel()[0])
    low, high = FPS_RANGE
    if not low <= value <= high:
        raise MotionFileError(
            f"'fps' is {value:g}; frame rates within {low:g}..{high:g} are read", path
        )
    return value


def _float_array(arrays: dict[str, np.ndarray], key: str, path: Path) -> np.ndarray:
    array = arrays[key]
    if not np.issubdtype(array.dtype, np.number):
        raise MotionFileError(f"'{key}' is {array.dtype}, expected numbers", path)
    return array.astype(np.float32)


def _reorder_arkit(weights: np.ndarray, names: tuple[str, ...]) -> np.ndarray:
    """Weights in another ARKit order mapped onto ARKIT_NAMES; unknown ones dropped."""
    out = np.zeros((len(weights), N_ARKIT), np.float32)
    for column, name in enumerate(names):
        if name in ARKIT_INDEX:
            out[:, ARKIT_INDEX[name]] = weights[:, column]
    return out


def split_speaker_name(stem: str) -> tuple[str, int] | None:
    """("clip", 1) for the dataset's ``clip_speaker1``; None for any other name."""
    match = _SPEAKER_NAME.match(stem)
    return (match["clip"], int(match["speaker"])) if match else None


def load_identity(path: str | os.PathLike) -> np.ndarray:
    """FLAME shape values (up to 300) from an NPZ (``shape`` row 0) or a .npy file."""
    path = Path(path)
    arrays = read_arrays(path, MotionFileError, ".npy/.npz file", ("shape",))
    if NPY_KEY in arrays:
        values = arrays[NPY_KEY]
    elif "shape" in arrays:
        values = arrays["shape"]
    else:
        raise MotionFileError("has no 'shape' array", path)
    if values.ndim == 2:
        values = values[0]  # the dataset stores identity per frame; row 0 is used
    if values.ndim != 1 or not 1 <= values.size <= MAX_SHAPE:
        raise MotionFileError(
            f"holds shape values of shape {values.shape}, expected up to 300", path
        )
    if not np.issubdtype(values.dtype, np.number) or not np.all(np.isfinite(values)):
        raise MotionFileError("shape values must be finite numbers", path)
    return values.astype(np.float32)
