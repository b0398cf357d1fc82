"""Linear blend skinning for small kinematic trees: plain arrays in, vertices out.

Shapes use T frames, V vertices, J joints. Nothing here knows about files or heads.
"""

from __future__ import annotations

import numpy as np


def rodrigues(axis_angle: np.ndarray) -> np.ndarray:
    """Rotation matrices (..., 3, 3) from axis-angle vectors (..., 3)."""
    axis_angle = np.asarray(axis_angle, np.float64)
    angle = np.linalg.norm(axis_angle, axis=-1, keepdims=True)
    # Below 1e-8 rad the rotation is the identity to float precision.
    safe = np.where(angle < 1e-8, 1.0, angle)
    axis = axis_angle / safe
    x, y, z = axis[..., 0], axis[..., 1], axis[..., 2]
    zeros = np.zeros_like(x)
    cross = np.stack([zeros, -z, y, z, zeros, -x, -y, x, zeros], axis=-1)
    cross = cross.reshape(*axis.shape[:-1], 3, 3)
    sin = np.sin(angle)[..., None]
    cos = np.cos(angle)[..., None]
    eye = np.eye(3)
    rotation = eye + sin * cross + (1.0 - cos) * (cross @ cross)
    return np.where((angle < 1e-8)[..., None], eye, rotation)


def rigid_transforms(
    rotations: np.ndarray, joints: np.ndarray, parents: np.ndarray
) -> np.ndarray:
    """World transforms (T, J, 4, 4) that move rest-pose points by each joint.

    rotations: (T, J, 3, 3) local rotations about each joint; joints: (J, 3) or
    (T, J, 3) rest positions (per frame when blendshapes move them); parents: (J,)
    parent index, -1 for the root, parents before children.
    """
    n_frames, n_joints = rotations.shape[:2]
    joints = np.broadcast_to(np.asarray(joints, np.float64), (n_frames, n_joints, 3))
    local = np.zeros((n_frames, n_joints, 4, 4))
    local[..., :3, :3] = rotations
    local[..., 3, 3] = 1.0
    offsets = joints.copy()
    offsets[:, 1:] -= joints[:, parents[1:]]
    local[..., :3, 3] = offsets
    world = np.empty_like(local)
    for j in range(n_joints):
        world[:, j] = (
            local[:, j] if parents[j] < 0 else world[:, parents[j]] @ local[:, j]
        )
    # Remove the rest position so the transform applies to rest-pose vertices.
    rest = np.einsum("tjab,tjb->tja", world[..., :3, :3], joints)
    world[..., :3, 3] -= rest
    return world


def skin(
    vertices: np.ndarray,
    transforms: np.ndarray,
    weights: np.ndarray,
) -> np.ndarray:
    """Skinned vertices (T, V, 3) from posed-rest vertices (T, V, 3) or (V, 3).

    transforms: (T, J, 4, 4) from ``rigid_transforms``; weights: (V, J).
    """
    # Blend per-vertex 3x4 matrices: t frames, v vertices, j joints.
    blended = np.einsum("vj,tjab->tvab", weights, transforms[..., :3, :], optimize=True)
    # Apply them column by column: plain einsum over (t, v) is several times slower.
    out = blended[..., 3].copy()
    for k in range(3):
        out += blended[..., k] * vertices[..., k : k + 1]
    return out


def pose_features(rotations: np.ndarray) -> np.ndarray:
    """(T, 9 * (J - 1)) flattened (R - I) of every non-root joint's (T, J, 3, 3)
    rotation: what SMPL and FLAME pose correctives are linear in."""
    return (rotations[:, 1:] - np.eye(3)).reshape(len(rotations), -1)


def lbs(
    rest_vertices: np.ndarray,
    joints: np.ndarray,
    parents: np.ndarray,
    weights: np.ndarray,
    joint_rotations: np.ndarray,
    pose_correctives: np.ndarray | None = None,
) -> np.ndarray:
    """Vertices (T, V, 3) float32 for axis-angle ``joint_rotations`` (T, J, 3).

    rest_vertices: (T, V, 3) or (V, 3), already carrying any blendshapes; joints:
    (J, 3) or (T, J, 3) rest positions.
    pose_correctives: optional (P, V*3) basis driven by the flattened
    (R - I) of every non-root joint, as in SMPL and FLAME.
    """
    rotations = rodrigues(joint_rotations)
    vertices = np.asarray(rest_vertices, np.float64)
    if pose_correctives is not None:
        n_frames = rotations.shape[0]
        offsets = (pose_features(rotations) @ pose_correctives).reshape(n_frames, -1, 3)
        vertices = vertices + offsets
    transforms = rigid_transforms(rotations, np.asarray(joints, np.float64), parents)
    return skin(vertices, transforms, np.asarray(weights, np.float64)).astype(
        np.float32
    )
