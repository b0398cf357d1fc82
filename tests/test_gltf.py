"""The GLB export, checked by its real consumers: the Khronos glTF-Validator,
Blender, and an independent reading of the glTF equations (``gltf_reader``)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import numpy as np
import pytest
import soundfile
from gltf_reader import Glb

from conftest import REPO, animate_pair, assert_one_line_error, leftovers, run_cli
from dualtalk_cli.motion import ARKIT_NAMES, jaw_open_from_jaw, load_motion
from dualtalk_cli.testing import make_motion, write_synthetic_flame

VALIDATOR = REPO / ".cache" / "node" / "node_modules" / "gltf-validator"
TOOLS = REPO / "tests" / "tools"
OBJ_ROUNDING = 1e-5  # metres: the OBJ files keep five decimals


def obj_vertices(path) -> np.ndarray:
    with open(path) as file:
        rows = [line.split()[1:] for line in file if line.startswith("v ")]
    return np.array(rows, np.float64)


def offsets(glb: Glb) -> list[np.ndarray]:
    return [np.array(glb.gltf.nodes[n].extras["offset"]) for n in glb.mesh_nodes()]


@pytest.fixture(scope="module")
def builtin_export(tmp_path_factory):
    """A 2 s dialogue animated into NPZ, OBJ and GLB on the built-in head."""
    return animate_pair(tmp_path_factory.mktemp("glb"), "npz,obj,glb")


@pytest.fixture(scope="module")
def flame_export(tmp_path_factory):
    """Two FLAME motions, one with a wide-open jaw, exported to GLB and OBJ on a
    synthetic FLAME model without pose correctives (which a GLB leaves out)."""
    folder = tmp_path_factory.mktemp("glb_flame")
    model = write_synthetic_flame(folder / "flame.npz", pose_correctives=False)
    motion_a = make_motion(20, seed=1)
    motion_a.pose[10, 3] = 0.45  # the jaw wide open on frame 10
    motion_a.save(folder / "a.npz")
    make_motion(20, seed=2).save(folder / "b.npz")
    out = folder / "out"
    result = run_cli(
        "export", folder / "a.npz", folder / "b.npz", "--flame", model,
        "-f", "obj,glb", "-o", out,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return folder, out, result.stderr


def validate(*paths) -> list[dict]:
    if shutil.which("node") is None:
        pytest.skip("node is not installed")
    if not VALIDATOR.exists():
        pytest.fail("gltf-validator is missing: run 'bash scripts/setup.sh --test'")
    result = subprocess.run(
        [shutil.which("node"), TOOLS / "validate_gltf.js", *paths],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "NODE_PATH": str(VALIDATOR.parent)},
    )
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_the_khronos_validator_finds_no_errors(builtin_export, flame_export):
    _, flame_out, _ = flame_export
    reports = validate(builtin_export / "talk_speaker1_talk_speaker2.glb",
                       flame_out / "a_b.glb")  # fmt: skip
    assert len(reports) == 2
    for report in reports:
        assert report["errors"] == 0, report["messages"]
        assert report["warnings"] == 0, report["messages"]


def test_a_glb_of_two_heads_with_arkit_targets_and_one_animation(builtin_export):
    glb = Glb(builtin_export / "talk_speaker1_talk_speaker2.glb")
    gltf = glb.gltf
    nodes = glb.mesh_nodes()
    assert len(nodes) == 2 and len(gltf.animations) == 1
    first = obj_vertices(builtin_export / "talk_speaker1" / "000000.obj")
    for node in nodes:
        mesh = gltf.meshes[gltf.nodes[node].mesh]
        assert len(mesh.primitives) == 1
        assert glb.target_names(node) == list(ARKIT_NAMES)
        assert gltf.accessors[mesh.primitives[0].attributes.POSITION].count == len(
            first
        )
        assert node in gltf.scenes[0].nodes  # skinned meshes sit at the scene root
        # Colours as in the video: the head's sRGB colours, linear.
        colors = glb.array(mesh.primitives[0].attributes.COLOR_0)
        assert colors.shape == (len(first), 3) and 0 <= colors.min() < colors.max() <= 1
    left, right = offsets(glb)
    assert left[0] < 0 < right[0]  # A on the left, as in the video
    # A key per frame: 2 s at 25 fps, times k / 25.
    animation = gltf.animations[0]
    times = glb.array(animation.samplers[0].input)
    np.testing.assert_allclose(times, np.arange(50) / 25, atol=1e-6)
    paths = {channel.target.path for channel in animation.channels}
    assert paths == {"weights", "rotation"}  # the built-in head's joints stay put
    assert {s.interpolation for s in animation.samplers} == {"LINEAR"}
    assert gltf.extras["audio"] == "talk_speaker1_talk_speaker2.wav"
    audio, rate = soundfile.read(builtin_export / "talk_speaker1_talk_speaker2.wav")
    assert rate == 16000 and audio.shape == (32000, 2)  # written with the GLB
    assert leftovers(builtin_export) == []


def test_glb_frames_reproduce_the_obj_frames(builtin_export):
    glb = Glb(builtin_export / "talk_speaker1_talk_speaker2.glb")
    for node, offset, stem in zip(
        glb.mesh_nodes(), offsets(glb), ("talk_speaker1", "talk_speaker2")
    ):
        motion = load_motion(builtin_export / f"{stem}.npz")
        widest = int(np.argmax(motion.jaw_pose[:, 0]))  # the mouth at its widest
        assert jaw_open_from_jaw(motion.jaw_pose[widest, 0]) > 0.4
        for frame in sorted({0, 17, widest, motion.n_frames - 1}):
            want = obj_vertices(builtin_export / stem / f"{frame:06d}.obj")
            got = glb.vertices(node, frame / 25) - offset
            assert np.abs(got - want).max() < OBJ_ROUNDING, (stem, frame)


def test_flame_glb_reproduces_the_obj_frames(flame_export):
    folder, out, stderr = flame_export
    glb = Glb(out / "a_b.glb")
    assert "no --audio" in stderr and not (out / "a_b.wav").exists()
    for node, offset, stem in zip(glb.mesh_nodes(), offsets(glb), "ab"):
        names = glb.target_names(node)
        # Each used expression component, by sign; weights stay within 0..1.
        assert len(names) == 100 and {"exp00+", "exp00-", "exp49+"} <= set(names)
        for frame in (0, 10, 19):
            want = obj_vertices(out / stem / f"{frame:06d}.obj")
            got = glb.vertices(node, frame / 25) - offset
            assert np.abs(got - want).max() < OBJ_ROUNDING, (stem, frame)
    # Weight x targetScales gives back the FLAME coefficients.
    node = glb.mesh_nodes()[0]
    scales = glb.gltf.meshes[glb.gltf.nodes[node].mesh].extras["targetScales"]
    weights = glb.sample(node, "weights", 10 / 25)
    exp = np.zeros(50)
    for name, weight, scale in zip(glb.target_names(node), weights, scales):
        exp[int(name[3:5])] += weight * scale
    np.testing.assert_allclose(exp, load_motion(folder / "a.npz").exp[10], atol=1e-5)
    channels = glb.gltf.animations[0].channels
    assert "translation" in {c.target.path for c in channels}  # joints follow exp
    weights = [
        glb.array(glb.gltf.animations[0].samplers[c.sampler].output)
        for c in channels
        if c.target.path == "weights"
    ]
    assert all(0 <= w.min() and w.max() <= 1 for w in weights)


@pytest.mark.parametrize("n_frames", [1, 12])
def test_a_still_face_keeps_its_expression(tmp_path, n_frames):
    # No weight moves: the file's default weights must hold the expression.
    make_motion(n_frames, mouthSmileLeft=0.8, browInnerUp=0.6, jaw_x=0.1).save(
        tmp_path / "still.npz"
    )
    out = tmp_path / "out"
    result = run_cli("export", tmp_path / "still.npz", "-f", "obj,glb", "-o", out)
    assert result.returncode == 0, result.stderr
    glb = Glb(out / "still.glb")
    (node,) = glb.mesh_nodes()
    for frame in (0, n_frames - 1):
        want = obj_vertices(out / "still" / f"{frame:06d}.obj")
        got = glb.vertices(node, frame / 25) - offsets(glb)[0]
        assert np.abs(got - want).max() < OBJ_ROUNDING


def test_rigs_skin_to_the_heads_vertices(tmp_path):
    from dualtalk_cli.heads import load_head

    motion = make_motion(6, seed=4)
    builtin = load_head("builtin")
    np.testing.assert_allclose(
        builtin.rig(motion).vertices(), builtin.vertices(motion), atol=1e-6
    )
    model = write_synthetic_flame(tmp_path / "flame.npz", pose_correctives=False)
    flame = load_head("flame", flame=model)
    rig = flame.rig(motion)
    assert rig.target_weights.min() >= 0 and rig.target_weights.max() <= 1
    np.testing.assert_allclose(rig.vertices(), flame.vertices(motion), atol=1e-6)


def test_flame_pose_correctives_are_left_out_and_said(tmp_path):
    model = write_synthetic_flame(tmp_path / "flame.npz")  # with correctives
    motion = make_motion(5, seed=3)
    motion.save(tmp_path / "a.npz")
    out = tmp_path / "out"
    result = run_cli("export", tmp_path / "a.npz", "--flame", model,
                     "-f", "obj,glb", "-o", out)  # fmt: skip
    assert result.returncode == 0, result.stderr
    (note,) = [line for line in result.stderr.splitlines() if "up to" in line]
    said = float(note.split("up to ")[1].split(" mm")[0]) / 1000
    glb = Glb(out / "a.glb")
    (node,) = glb.mesh_nodes()
    worst = max(
        np.abs(
            glb.vertices(node, k / 25) - obj_vertices(out / "a" / f"{k:06d}.obj")
        ).max()
        for k in range(5)
    )
    assert 1e-4 < worst <= said + OBJ_ROUNDING


def test_glb_is_deterministic_and_never_half_written(builtin_export, tmp_path):
    npz = [builtin_export / f"talk_speaker{k}.npz" for k in (1, 2)]
    first, second = tmp_path / "first", tmp_path / "second"
    for out in (first, second):
        result = run_cli("export", *npz, "-f", "glb", "-o", out, "-q")
        assert result.returncode == 0, result.stderr
    name = "talk_speaker1_talk_speaker2.glb"
    assert (first / name).read_bytes() == (second / name).read_bytes()
    before = (first / name).read_bytes()
    again = run_cli("export", *npz, "-f", "glb", "-o", first)
    assert_one_line_error(again, "already exists")
    assert (first / name).read_bytes() == before and leftovers(first) == []


@pytest.mark.parametrize(
    "arrays, needle",
    [
        ({"pose": np.zeros((5, 6), np.float32)}, "has no 'exp'"),
        (
            {"exp": np.full((5, 50), np.nan, np.float32),
             "pose": np.zeros((5, 6), np.float32)},
            "NaN",
        ),
    ],
    ids=["missing-exp", "nan"],
)  # fmt: skip
def test_glb_refuses_a_bad_motion_file_in_one_line(tmp_path, arrays, needle):
    bad = tmp_path / "bad.npz"
    np.savez(bad, **arrays)
    out = tmp_path / "out"
    result = run_cli("export", bad, "-f", "glb", "-o", out)
    assert_one_line_error(result, str(bad), needle)
    assert not out.exists() or list(out.iterdir()) == []


def blender_sample(glb_path, out, frames) -> tuple[dict, dict]:
    if shutil.which("blender") is None:
        pytest.skip("blender is not installed (bash scripts/setup.sh --test)")
    result = subprocess.run(
        ["blender", "-b", "--factory-startup", "--python",
         TOOLS / "blender_sample.py", "--", glb_path, out, "25",
         *map(str, frames)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0 and out.exists(), result.stdout + result.stderr
    with np.load(out) as arrays:
        return json.loads(str(arrays["summary"])), dict(arrays)


def test_blender_imports_both_heads_with_their_shape_keys_and_animation(
    builtin_export, flame_export, tmp_path
):
    frames = (0, 10, 49)
    glb = builtin_export / "talk_speaker1_talk_speaker2.glb"
    summary, arrays = blender_sample(glb, tmp_path / "builtin.npz", frames)
    meshes = summary["meshes"]
    assert [m["mesh"] for m in meshes] == ["head_A", "head_B"]
    for index, (mesh, stem) in enumerate(
        zip(meshes, ("talk_speaker1", "talk_speaker2"))
    ):
        assert mesh["shape_keys"] == list(ARKIT_NAMES)
        assert mesh["shape_key_action"] is not None  # animated, not frozen
        offset = offsets(Glb(glb))[index]
        for row, frame in enumerate(frames):
            want = obj_vertices(builtin_export / stem / f"{frame:06d}.obj") + offset
            got = arrays[f"vertices_{index}"][row]
            assert np.abs(got - want).max() < OBJ_ROUNDING, (stem, frame)

    _, flame_out, _ = flame_export
    summary, arrays = blender_sample(flame_out / "a_b.glb", tmp_path / "f.npz", (10,))
    offset = offsets(Glb(flame_out / "a_b.glb"))[0]
    want = obj_vertices(flame_out / "a" / "000010.obj") + offset  # jaw wide open
    assert np.abs(arrays["vertices_0"][0] - want).max() < OBJ_ROUNDING
