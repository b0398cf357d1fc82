"""The built-in head: a CC0 MakeHuman head with 52 ARKit blendshapes and FLAME's joints.

The asset (``assets/builtin_head.npz``, see ``scripts/build_builtin_head.py`` and
``assets/NOTICE``) holds a mesh in metres with the origin at the neck joint, one
delta per vertex for each ARKit name, and a skeleton laid out like FLAME's
(root, neck, jaw, left eye, right eye), so FLAME jaw, neck and eye rotations
drive it directly.

Engines write the jaw and the gaze twice: as axis-angle (``pose``, ``eyes``) and
as ARKit weights (``jawOpen``, ``eyeLook*``). This head shows them once, by the
bones, and ignores those nine ARKit channels; adding both would open the mouth
or turn the eyes twice. The jaw bone opens by the mouth opening that
``motion.jaw_open_from_jaw`` gives the FLAME jaw, not by the FLAME angle itself.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
from scipy.sparse import csr_matrix

from dualtalk_cli.arrays import read_arrays
from dualtalk_cli.errors import HeadUnavailable
from dualtalk_cli.heads.base import Head, Rig, flame_joint_rotations
from dualtalk_cli.heads.lbs import lbs
from dualtalk_cli.motion import ARKIT_NAMES, Motion, jaw_open_from_jaw

ASSET = Path(__file__).resolve().parents[1] / "assets" / "builtin_head.npz"
FORMAT_VERSION = 1
JOINT_NAMES = ("root", "neck", "jaw", "eye_left", "eye_right")
# The jaw bone's opening (radians about x) at mouth opening 1: FLAME jaw
# rotations reach it through ``motion.jaw_open_from_jaw``, so the small jaw
# angles of tracked FLAME data still open this mouth visibly.
JAW_BONE_MAX_RAD = 0.3

# ARKit channels shown by the jaw and eye bones instead of blendshapes.
BONE_CHANNELS = (
    "jawOpen",
    "eyeLookDownLeft",
    "eyeLookInLeft",
    "eyeLookOutLeft",
    "eyeLookUpLeft",
    "eyeLookDownRight",
    "eyeLookInRight",
    "eyeLookOutRight",
    "eyeLookUpRight",
)
_BONE_TARGETS = [ARKIT_NAMES.index(name) for name in BONE_CHANNELS]
_BLINK_LEFT = ARKIT_NAMES.index("eyeBlinkLeft")
_BLINK_RIGHT = ARKIT_NAMES.index("eyeBlinkRight")


@functools.lru_cache(maxsize=4)
def load_asset(path: Path = ASSET) -> dict[str, np.ndarray]:
    """The asset's arrays, read once per path and checked; raises HeadUnavailable."""
    arrays = read_arrays(path, HeadUnavailable, "built-in head file")
    version = int(arrays.get("format_version", -1))
    if version != FORMAT_VERSION:
        raise HeadUnavailable(f"head format {version}, expected {FORMAT_VERSION}", path)
    n = len(arrays.get("vertices", ()))
    expected = {
        "vertices": (n, 3),
        "vertex_colors": (n, 3),
        "arkit_deltas": (len(ARKIT_NAMES), n, 3),
        "joints": (len(JOINT_NAMES), 3),
        "joint_parents": (len(JOINT_NAMES),),
        "weights": (n, len(JOINT_NAMES)),
    }
    for key, shape in expected.items():
        if key not in arrays or arrays[key].shape != shape:
            raise HeadUnavailable(f"'{key}' is missing or not {shape}", path)
    names = tuple(str(x) for x in arrays.get("arkit_names", ()))
    if names != ARKIT_NAMES:
        raise HeadUnavailable("the ARKit targets are not in ARKIT_NAMES order", path)
    for array in arrays.values():
        array.setflags(write=False)  # shared by every BuiltinHead
    return arrays


def unavailable_reason() -> str | None:
    """None, or why the built-in head cannot be loaded (a broken install)."""
    try:
        load_asset()
    except HeadUnavailable as error:
        return str(error)
    return None


class BuiltinHead(Head):
    """The CC0 head shipped with the package; needs no user files."""

    name = "builtin"

    def __init__(self) -> None:
        data = load_asset()
        self._rest = data["vertices"]
        self._faces = data["faces"]
        self._colors = data["vertex_colors"]
        self.joints = data["joints"]
        self.parents = data["joint_parents"]
        self.weights = data["weights"]
        basis = data["arkit_deltas"].astype(np.float32)
        self._deltas = basis.copy()  # every target, for animation files
        basis[_BONE_TARGETS] = 0.0
        # (V*3, 52), sparse: each target moves a fifth of the head, so one sparse
        # matmul per chunk of frames costs a tenth of a dense one.
        self._basis = csr_matrix(basis.reshape(len(ARKIT_NAMES), -1).T)

    @property
    def description(self) -> str:
        return "builtin (CC0 MakeHuman head)"

    @property
    def faces(self) -> np.ndarray:
        return self._faces

    @property
    def rest_vertices(self) -> np.ndarray:
        return self._rest

    @property
    def vertex_colors(self) -> np.ndarray:
        return self._colors

    def _weights(self, motion: Motion, frames: slice) -> np.ndarray:
        """(n, 52) target weights: the motion's, blinking with the eyelids too."""
        weights = np.array(motion.arkit[frames], np.float32)
        lids = motion.eyelids[frames]
        weights[:, _BLINK_LEFT] = np.maximum(weights[:, _BLINK_LEFT], lids[:, 0])
        weights[:, _BLINK_RIGHT] = np.maximum(weights[:, _BLINK_RIGHT], lids[:, 1])
        return weights

    def _rotations(self, motion: Motion, frames: slice) -> np.ndarray:
        """(n, 5, 3) joint axis-angles: no root, then neck, jaw and both eyes."""
        rotations = flame_joint_rotations(motion, frames)
        rotations[:, 2, 0] = JAW_BONE_MAX_RAD * jaw_open_from_jaw(rotations[:, 2, 0])
        return rotations.astype(np.float32)

    def vertices(
        self, motion: Motion, start: int = 0, stop: int | None = None
    ) -> np.ndarray:
        """(stop - start, V, 3) float32 vertices for frames ``start:stop``."""
        frames = slice(start, motion.n_frames if stop is None else stop)
        weights = self._weights(motion, frames)
        deltas = (self._basis @ weights.T).T.reshape(len(weights), -1, 3)
        shaped = self._rest + deltas
        rotations = self._rotations(motion, frames)
        return lbs(shaped, self.joints, self.parents, self.weights, rotations)

    def rig(self, motion: Motion) -> Rig:
        """All 52 ARKit targets; the nine that the jaw and eye bones show are
        keyed at zero, so the bones alone move the jaw and the eyes."""
        frames = slice(0, motion.n_frames)
        weights = self._weights(motion, frames)
        weights[:, _BONE_TARGETS] = 0.0
        return Rig(
            rest_vertices=self._rest,
            faces=self._faces,
            vertex_colors=self._colors,
            target_names=ARKIT_NAMES,
            target_deltas=self._deltas,
            target_weights=weights,
            joint_names=JOINT_NAMES,
            parents=self.parents,
            rest_joints=self.joints,
            joints=np.broadcast_to(self.joints, (motion.n_frames, *self.joints.shape)),
            joint_rotations=self._rotations(motion, frames),
            skin_weights=self.weights,
            frames_per_second=motion.frames_per_second,
        )

    def notes(self, motion: Motion) -> list[str]:
        """Say so when the motion has FLAME expressions this head cannot show."""
        used = int(np.count_nonzero(np.any(motion.exp != 0, axis=0)))
        if used == 0:
            return []
        return [
            f"the {used} FLAME expression values cannot be shown on the built-in "
            "head without a FLAME model (neck exact, jaw by the jaw mapping)"
        ]
