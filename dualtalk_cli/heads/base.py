"""The interface every head implements: motion in, vertices out."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from dualtalk_cli.heads.lbs import lbs
from dualtalk_cli.motion import Motion


@dataclass(frozen=True, eq=False)
class Rig:
    """A head as animation files hold it: a rest mesh, morph targets and a
    skeleton, with one speaker's motion as target weights and joint rotations.

    Frame t's vertices are the rest mesh plus the weighted targets, skinned by
    the joint rotations about the joints' positions at t (FLAME's joints move
    with its expressions; the built-in head's stay put). T frames, V vertices,
    K targets, J joints.
    """

    rest_vertices: np.ndarray  # (V, 3) float32, the speaker's identity baked in
    faces: np.ndarray  # (F, 3) triangles, as the OBJ files have them
    vertex_colors: np.ndarray | None  # (V, 3) uint8 sRGB, or None: plain grey
    target_names: tuple[str, ...]  # K names
    target_deltas: np.ndarray  # (K, V, 3) float32
    target_weights: np.ndarray  # (T, K) float32, 0..1 (ARKit weights as given)
    joint_names: tuple[str, ...]  # J names, the root first
    parents: np.ndarray  # (J,) parent index, -1 for the root, parents first
    rest_joints: np.ndarray  # (J, 3) joint positions of the rest mesh
    joints: np.ndarray  # (T, J, 3) joint positions before rotation, per frame
    joint_rotations: np.ndarray  # (T, J, 3) local axis-angle, radians
    skin_weights: np.ndarray  # (V, J) float32, rows summing to 1
    frames_per_second: float
    # Per target, the coefficient a weight of 1 stands for (None: weights are
    # the values themselves, as ARKit weights are).
    target_scales: tuple[float, ...] | None = None

    @property
    def n_frames(self) -> int:
        return int(self.target_weights.shape[0])

    def vertices(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """(stop - start, V, 3) float32 vertices, as a glTF viewer computes them."""
        frames = slice(start, self.n_frames if stop is None else stop)
        weights = self.target_weights[frames]
        deltas = self.target_deltas.reshape(len(self.target_deltas), -1)
        shaped = self.rest_vertices.reshape(-1) + weights @ deltas
        return lbs(
            shaped.reshape(len(weights), -1, 3),
            self.joints[frames],
            self.parents,
            self.skin_weights,
            self.joint_rotations[frames],
        )


def flame_joint_rotations(motion: Motion, frames: slice) -> np.ndarray:
    """(n, 5, 3) float64 axis-angles of FLAME's joints for ``frames``: the root
    (still), the neck, the jaw and both eyes, as every head's rig lays them out."""
    neck = motion.neck_pose[frames]
    rotations = np.zeros((len(neck), 5, 3))
    rotations[:, 1] = neck
    rotations[:, 2] = motion.jaw_pose[frames]
    rotations[:, 3] = motion.eyes[frames, 0:3]
    rotations[:, 4] = motion.eyes[frames, 3:6]
    return rotations


def split_signs(
    names: list[str], deltas: np.ndarray, values: np.ndarray
) -> tuple[list[str], np.ndarray, np.ndarray, list[float]]:
    """Targets whose weights stay within 0..1 for coefficients of any sign and size.

    Each column of ``values`` (T, K) that is ever positive becomes a target
    ``name+`` scaled by its largest value, each that is ever negative a target
    ``name-`` scaled by its most negative one; unused columns are dropped. Tools
    such as Blender clamp morph weights to 0..1, so FLAME's coefficients (about
    -3..3) cannot be keyed as they are. Returns names, deltas, weights and each
    target's scale: its coefficient is weight x scale.
    """
    out_names, out_deltas, out_weights, scales = [], [], [], []
    for k, name in enumerate(names):
        for sign, suffix in ((1.0, "+"), (-1.0, "-")):
            signed = np.maximum(sign * values[:, k].astype(np.float64), 0.0)
            peak = float(signed.max(initial=0.0))
            if peak > 0.0:
                out_names.append(name + suffix)
                out_deltas.append(deltas[k] * (sign * peak))
                out_weights.append(signed / peak)
                scales.append(sign * peak)
    n_vertices = deltas.shape[1]
    if not out_names:
        return (
            [],
            np.zeros((0, n_vertices, 3), np.float32),
            np.zeros((len(values), 0), np.float32),
            [],
        )
    return (
        out_names,
        np.stack(out_deltas).astype(np.float32),
        np.stack(out_weights, axis=1).astype(np.float32),
        scales,
    )


class Head(ABC):
    """A mesh that a Motion can drive. Units are metres, +y up, the face toward +z."""

    name: str = "head"
    chunk_frames: int = 50  # frames evaluated per call when streaming

    @property
    @abstractmethod
    def faces(self) -> np.ndarray:
        """(F, 3) int32 triangle indices, the same on every frame."""

    @property
    @abstractmethod
    def rest_vertices(self) -> np.ndarray:
        """(V, 3) float32 neutral mesh, used to frame the camera."""

    @property
    def description(self) -> str:
        """One line for the user: which head, and from which file."""
        return self.name

    @property
    def vertex_colors(self) -> np.ndarray | None:
        """(V, 3) uint8 per-vertex colours, or None for a plain material."""
        return None

    @abstractmethod
    def vertices(
        self, motion: Motion, start: int = 0, stop: int | None = None
    ) -> np.ndarray:
        """(stop - start, V, 3) float32 vertices of frames ``start:stop``."""

    def iter_vertices(self, motion: Motion) -> Iterator[np.ndarray]:
        """Yield (n, V, 3) chunks covering every frame, so memory stays bounded."""
        for start in range(0, motion.n_frames, self.chunk_frames):
            yield self.vertices(
                motion, start, min(start + self.chunk_frames, motion.n_frames)
            )

    @abstractmethod
    def rig(self, motion: Motion) -> Rig:
        """``motion`` as a skinned, morphing mesh: what a GLB file holds."""

    def notes(self, motion: Motion) -> list[str]:
        """One-line remarks on what this head cannot show of ``motion``."""
        return []

    def rig_notes(self, motions: Sequence[Motion]) -> list[str]:
        """One-line remarks on what ``rig`` leaves out of ``motions``."""
        return []
