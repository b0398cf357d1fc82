"""The FLAME head through the CLI: chosen, used everywhere, and identities."""

from __future__ import annotations

import os

import numpy as np
import pytest

from conftest import assert_one_line_error, run_cli
from dualtalk_cli.motion import load_motion
from dualtalk_cli.testing import write_dataset_npz, write_synthetic_flame


@pytest.fixture
def flame(tmp_path):
    return write_synthetic_flame(tmp_path / "flame_test.npz")


def _counts(obj_file):
    lines = obj_file.read_text().splitlines()
    return (
        sum(line.startswith("v ") for line in lines),
        sum(line.startswith("f ") for line in lines),
    )


def _env_without_flame(tmp_path, **extra):
    env = {k: v for k, v in os.environ.items() if k != "DUALTALK_FLAME"}
    env.update(HOME=str(tmp_path / "home"), XDG_CACHE_HOME=str(tmp_path / "cache"))
    env.update(extra)
    return env


def test_render_dataset_file_with_flame(tmp_path, flame):
    from dualtalk_cli.video import probe

    clip = write_dataset_npz(tmp_path / "clip_speaker1.npz")
    out = tmp_path / "out" / "clip.mp4"
    args = ("render", clip, "--flame", flame, "--obj", "--size", "128", "-o", out)
    result = run_cli(*args, env=_env_without_flame(tmp_path), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    first = result.stderr.splitlines()[0]
    assert "flame" in first and "flame_test.npz" in first
    assert "FLAME expression" not in result.stderr  # FLAME shows them
    assert probe(out)["n_frames"] == 30
    objs = sorted((tmp_path / "out" / "clip_speaker1").glob("*.obj"))
    assert len(objs) == 30
    assert _counts(objs[0]) == (5023, 9976)
    # The model itself is never copied into the outputs.
    assert not list((tmp_path / "out").rglob("*.npz"))


def test_animate_picks_flame_from_environment(dialogue, tmp_path, flame):
    env = _env_without_flame(tmp_path, DUALTALK_FLAME=str(flame))
    out = tmp_path / "out"
    result = run_cli("animate", *dialogue, "-o", out, "--no-video", env=env)
    assert result.returncode == 0, result.stderr
    assert "head flame" in result.stderr.splitlines()[0]
    assert _counts(out / "a" / "000000.obj") == (5023, 9976)

    forced = tmp_path / "forced"
    args = ("animate", *dialogue, "-o", forced, "--no-video", "--head", "builtin")
    result = run_cli(*args, env=env)
    assert result.returncode == 0, result.stderr
    assert _counts(forced / "a" / "000000.obj")[0] != 5023
    # The head changes meshes, never the parameters.
    assert (out / "a.npz").read_bytes() == (forced / "a.npz").read_bytes()


def test_without_flame_the_builtin_head_is_used(dialogue, tmp_path):
    env = _env_without_flame(tmp_path)
    out = tmp_path / "out"
    result = run_cli(
        "animate", *dialogue, "-o", out, "--no-video", env=env, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert "head builtin" in result.stderr.splitlines()[0]
    forced = run_cli(
        "animate",
        *dialogue,
        "-o",
        tmp_path / "x",
        "--head",
        "flame",
        env=env,
        cwd=tmp_path,
    )
    assert_one_line_error(forced, "FLAME")


def test_identity_files(dialogue, tmp_path, flame):
    identity = np.linspace(-1, 1, 300).astype(np.float32)
    np.save(tmp_path / "id.npy", identity)
    clip = write_dataset_npz(tmp_path / "other.npz")
    out = tmp_path / "out"
    args = ("animate", *dialogue, "-o", out, "--flame", flame, "--no-video")
    args += ("--shape-a", tmp_path / "id.npy", "--shape-b", clip)
    result = run_cli(*args, env=_env_without_flame(tmp_path))
    assert result.returncode == 0, result.stderr
    a, b = load_motion(out / "a.npz"), load_motion(out / "b.npz")
    np.testing.assert_array_equal(a.shape[5], identity)
    expected_b = np.load(clip)["shape"][0]
    np.testing.assert_array_equal(b.shape[0, :100], expected_b)
    mean = tmp_path / "mean"
    run_cli("animate", *dialogue, "-o", mean, "--flame", flame, "--no-video")
    assert (out / "a" / "000000.obj").read_text() != (
        mean / "a" / "000000.obj"
    ).read_text()


def test_bad_flame_and_identity_files(dialogue, tmp_path):
    bad = tmp_path / "generic_model.pkl"
    bad.write_bytes(b"not a pickle at all")
    result = run_cli("animate", *dialogue, "-o", tmp_path / "o", "--flame", bad)
    assert_one_line_error(result, str(bad))
    assert not (tmp_path / "o" / "a.npz").exists()
    np.save(tmp_path / "big.npy", np.zeros(400, np.float32))
    args = ("animate", *dialogue, "-o", tmp_path / "p", "--no-video")
    result = run_cli(*args, "--shape-a", tmp_path / "big.npy")
    assert_one_line_error(result, "big.npy", "300")


def test_info_names_the_flame_file(tmp_path, flame):
    result = run_cli(
        "info", env=_env_without_flame(tmp_path, DUALTALK_FLAME=str(flame))
    )
    assert result.returncode == 0, result.stderr
    assert "head flame: available" in result.stdout
    assert "flame_test.npz" in result.stdout
