"""The built-in CC0 head: its asset, and how motion moves it."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from dualtalk_cli.heads.builtin import ASSET, JOINT_NAMES, BuiltinHead, load_asset
from dualtalk_cli.motion import N_ARKIT, Motion
from dualtalk_cli.testing import make_motion


@pytest.fixture(scope="module")
def head() -> BuiltinHead:
    return BuiltinHead()


@pytest.fixture(scope="module")
def asset() -> dict[str, np.ndarray]:
    return load_asset()


def pose(n_frames: int = 1, **values: float) -> Motion:
    """A neutral motion with a few channels set on every frame."""
    return make_motion(n_frames, **values)


def moved(head: BuiltinHead, motion: Motion) -> np.ndarray:
    """(V, 3) displacement of the first frame from the rest pose."""
    return head.vertices(motion, 0, 1)[0] - head.rest_vertices


def test_asset_is_small_and_consistent(asset):
    assert ASSET.stat().st_size < 1_000_000
    vertices, faces = asset["vertices"], asset["faces"]
    n = len(vertices)
    assert vertices.dtype == np.float32 and vertices.shape == (n, 3)
    assert faces.dtype == np.int32 and faces.shape[1] == 3
    assert faces.min() == 0 and faces.max() == n - 1
    assert asset["vertex_colors"].dtype == np.uint8
    assert asset["vertex_colors"].shape == (n, 3)
    assert asset["arkit_deltas"].shape == (N_ARKIT, n, 3)
    assert tuple(asset["joint_names"]) == JOINT_NAMES
    assert asset["joint_parents"].tolist() == [-1, 0, 1, 1, 1]
    np.testing.assert_allclose(asset["weights"].sum(axis=1), 1.0, atol=1e-5)
    assert asset["weights"].min() >= 0.0
    assert len(asset["arkit_missing"]) == 0
    # A head in metres, origin at the neck joint, +y up, face toward +z.
    size = vertices.max(axis=0) - vertices.min(axis=0)
    assert np.all((size > 0.12) & (size < 0.35))
    np.testing.assert_allclose(asset["joints"][1], 0.0, atol=1e-6)
    nose = vertices[np.argmax(vertices[:, 2])]
    assert abs(nose[0]) < 0.005 and nose[1] > 0.0
    assert asset["joints"][3, 0] > 0.02 > -0.02 > asset["joints"][4, 0]


def test_faces_point_outward(asset):
    # The closed part of the skin encloses a positive volume only if every
    # triangle winds counter-clockwise seen from outside.
    vertices = asset["vertices"].astype(np.float64)
    faces = asset["faces"][asset["vertex_part"][asset["faces"][:, 0]] == 0]
    a, b, c = (vertices[faces[:, k]] for k in range(3))
    volume = np.einsum("ij,ij->i", a, np.cross(b, c)).sum() / 6
    assert 0.002 < volume < 0.006  # cubic metres: a head and neck


def test_neutral_motion_gives_rest_vertices(head):
    vertices = head.vertices(Motion.neutral(3))
    assert vertices.shape == (3, *head.rest_vertices.shape)
    np.testing.assert_allclose(
        vertices, np.broadcast_to(head.rest_vertices, vertices.shape), atol=1e-6
    )


def test_range_is_finite_float32_and_matches_whole(head):
    rng = np.random.default_rng(0)
    motion = pose(8)
    motion = replace(
        motion,
        pose=rng.normal(0.0, 0.1, (8, 6)).astype(np.float32),
        arkit=rng.random((8, N_ARKIT)).astype(np.float32),
        eyes=rng.normal(0.0, 0.1, (8, 6)).astype(np.float32),
    )
    part = head.vertices(motion, 2, 5)
    assert part.shape == (3, len(head.rest_vertices), 3)
    assert part.dtype == np.float32 and np.all(np.isfinite(part))
    np.testing.assert_allclose(part, head.vertices(motion)[2:5], atol=1e-6)
    chunks = list(head.iter_vertices(motion))
    assert sum(len(chunk) for chunk in chunks) == 8


def test_jaw_rotation_opens_the_mouth(head, asset):
    delta = moved(head, pose(jaw_x=0.3))
    distance = np.linalg.norm(delta, axis=1)
    jaw = asset["weights"][:, 2]
    assert distance[jaw > 0.9].mean() > 0.01
    assert distance[jaw == 0].max() < 1e-6
    # The chin: the lowest skin vertex at the front of the face goes down.
    skin = asset["vertex_part"] == 0
    front = skin & (head.rest_vertices[:, 2] > 0.09)
    chin = np.flatnonzero(front)[np.argmin(head.rest_vertices[front, 1])]
    assert delta[chin, 1] < -0.01


def test_jaw_open_weight_is_left_to_the_jaw_bone(head):
    np.testing.assert_allclose(moved(head, pose(jawOpen=1.0)), 0.0, atol=1e-7)


def test_blink_closes_the_upper_lid(head, asset):
    rest = head.rest_vertices
    eye = asset["joints"][3]
    for motion in (pose(lid_left=1.0), pose(eyeBlinkLeft=1.0)):
        delta = moved(head, motion)
        lid = np.linalg.norm(delta, axis=1) > 0.002
        upper = lid & (rest[:, 1] > eye[1] + 0.004) & (rest[:, 0] > 0)
        assert upper.sum() > 10
        assert delta[upper, 1].mean() < -0.002
        # The right eye stays open (the target nudges the nose side a little).
        assert not np.any(lid & (rest[:, 0] < -0.025))


def test_blink_takes_the_larger_of_arkit_and_eyelids(head):
    both = moved(head, pose(lid_left=1.0, eyeBlinkLeft=0.3, eyeBlinkRight=0.3))
    expected = moved(head, pose(lid_left=1.0, eyeBlinkRight=0.3))
    np.testing.assert_allclose(both, expected, atol=1e-6)


def test_neck_yaw_turns_the_nose_toward_plus_x(head):
    nose = np.argmax(head.rest_vertices[:, 2])
    delta = moved(head, pose(neck_y=0.3))
    assert delta[nose, 0] > 0.02
    # The cut edge at the bottom of the neck stays put.
    lowest = head.rest_vertices[:, 1] < head.rest_vertices[:, 1].min() + 0.003
    assert np.abs(delta[lowest]).max() < 1e-3


def test_left_eye_follows_its_joint_alone(head, asset):
    eyes = np.array([[0.0, 0.3, 0.0, 0.0, 0.0, 0.0]], np.float32)
    delta = moved(head, replace(pose(), eyes=eyes))
    rest = head.rest_vertices
    left = (asset["vertex_part"] == 1) & (rest[:, 0] > 0)
    centre = asset["joints"][3]
    np.testing.assert_allclose(
        np.linalg.norm(rest[left] + delta[left] - centre, axis=1),
        np.linalg.norm(rest[left] - centre, axis=1),
        atol=1e-6,
    )
    pupil = np.flatnonzero(left)[np.argmax(rest[left, 2])]
    assert delta[pupil, 0] > 0.003  # gaze turns toward +x
    assert np.abs(delta[~left]).max() < 1e-6  # lids and the right eye stay


def test_notes_mention_flame_only_for_expressions(head):
    assert head.notes(pose()) == []
    notes = head.notes(pose(exp0=0.5))
    assert len(notes) == 1 and "FLAME" in notes[0]
