"""The FLAME head on synthetic FLAME-format files (no FLAME data is needed)."""

from __future__ import annotations

import os
import pickle
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.sparse import csc_matrix

from dualtalk_cli.errors import HeadUnavailable
from dualtalk_cli.heads import flame
from dualtalk_cli.heads.flame import (
    FlameHead,
    find_flame_model,
    load_flame_model,
    unavailable_reason,
)
from dualtalk_cli.motion import Motion
from dualtalk_cli.testing import make_motion, synthetic_flame_arrays

V, F, J = 5023, 9976, 5
JAW = 2


def synthetic_arrays(seed: int = 0) -> dict[str, np.ndarray]:
    return synthetic_flame_arrays(seed)


class Ch:
    """Pickles like chumpy.ch.Ch: a class from module chumpy.ch, state {'x': ...}."""

    def __init__(self, x: np.ndarray) -> None:
        self.x = x
        self._dirty_vars: set[str] = set()


Ch.__module__ = "chumpy.ch"


def write_pickle(path: Path, arrays: dict[str, object]) -> None:
    """A pickle that refers to chumpy.ch.Ch and scipy's csc_matrix, as FLAME's does."""
    content: dict[str, object] = {"bs_style": "lbs", "bs_type": "lrotmin"}
    for key, value in arrays.items():
        if key == "J_regressor":
            value = csc_matrix(value)
        elif key in ("v_template", "shapedirs", "posedirs", "weights"):
            value = Ch(value)
        content[key] = value
    fake = types.ModuleType("chumpy.ch")
    fake.Ch = Ch
    saved = {name: sys.modules.get(name) for name in ("chumpy", "chumpy.ch")}
    sys.modules["chumpy"] = types.ModuleType("chumpy")
    sys.modules["chumpy.ch"] = fake
    try:
        path.write_bytes(pickle.dumps(content, protocol=2))
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name)
            else:
                sys.modules[name] = module
    assert b"chumpy.ch" in path.read_bytes()


@pytest.fixture(scope="module")
def arrays() -> dict[str, np.ndarray]:
    return synthetic_arrays()


@pytest.fixture(scope="module")
def files(arrays, tmp_path_factory) -> dict[str, Path]:
    """The same synthetic model as a pickle, as an .npz, and without posedirs."""
    folder = tmp_path_factory.mktemp("flame")
    paths = {
        "pkl": folder / "generic_model.pkl",
        "npz": folder / "flame_synthetic.npz",
        "rigid": folder / "flame_no_posedirs.npz",
    }
    write_pickle(paths["pkl"], arrays)
    np.savez(paths["npz"], **arrays)
    np.savez(paths["rigid"], **{k: v for k, v in arrays.items() if k != "posedirs"})
    return paths


def motion(n_frames: int = 1, seed: int | None = None, **values: float) -> Motion:
    """Neutral motion; random in every channel with ``seed``; or jaw_x=..."""
    return make_motion(n_frames, seed, **values)


# ------------------------------------------------------------------ reference


def rodrigues_torch(axis_angle: torch.Tensor) -> torch.Tensor:
    """(N, 3, 3) from (N, 3): R = I + sin(a) K + (1 - cos(a)) K^2."""
    angle = axis_angle.norm(dim=1, keepdim=True).clamp_min(1e-12)
    k = axis_angle / angle
    zero = torch.zeros_like(k[:, 0])
    cross = torch.stack(
        [zero, -k[:, 2], k[:, 1], k[:, 2], zero, -k[:, 0], -k[:, 1], k[:, 0], zero],
        dim=1,
    ).reshape(-1, 3, 3)
    sin, cos = torch.sin(angle)[:, :, None], torch.cos(angle)[:, :, None]
    return (
        torch.eye(3, dtype=axis_angle.dtype) + sin * cross + (1 - cos) * cross @ cross
    )


def flame_reference(arrays: dict[str, np.ndarray], m: Motion) -> np.ndarray:
    """(T, V, 3) vertices by FLAME's published equations, in float64 torch."""
    t = {k: torch.tensor(np.asarray(v, np.float64)) for k, v in arrays.items()}
    n = m.n_frames
    beta = torch.zeros(n, 300, dtype=torch.float64)
    beta[:, :100] = torch.tensor(np.asarray(m.shape[0], np.float64))
    psi = torch.zeros(n, 100, dtype=torch.float64)
    psi[:, :50] = torch.tensor(np.asarray(m.exp, np.float64))
    coefficients = torch.cat([beta, psi], dim=1)
    v_shaped = t["v_template"] + torch.einsum(
        "vck,tk->tvc", t["shapedirs"], coefficients
    )
    joints = torch.einsum("jv,tvc->tjc", t["J_regressor"], v_shaped)
    pose = torch.zeros(n, J, 3, dtype=torch.float64)
    pose[:, 1] = torch.tensor(np.asarray(m.neck_pose, np.float64))
    pose[:, 2] = torch.tensor(np.asarray(m.jaw_pose, np.float64))
    pose[:, 3] = torch.tensor(np.asarray(m.eyes[:, :3], np.float64))
    pose[:, 4] = torch.tensor(np.asarray(m.eyes[:, 3:], np.float64))
    rot = rodrigues_torch(pose.reshape(-1, 3)).reshape(n, J, 3, 3)
    feature = (rot[:, 1:] - torch.eye(3, dtype=torch.float64)).reshape(n, 36)
    posedirs = t["posedirs"].reshape(-1, 36).T
    v_posed = v_shaped + (feature @ posedirs).reshape(n, V, 3)
    parents = [-1, 0, 1, 1, 1]
    world = []
    for j in range(J):
        local = torch.eye(4, dtype=torch.float64).repeat(n, 1, 1)
        local[:, :3, :3] = rot[:, j]
        offset = joints[:, j] - (joints[:, parents[j]] if parents[j] >= 0 else 0)
        local[:, :3, 3] = offset
        world.append(local if parents[j] < 0 else world[parents[j]] @ local)
    g = torch.stack(world, dim=1)  # (T, J, 4, 4)
    a = g.clone()
    a[..., :3, 3] -= torch.einsum("tjab,tjb->tja", g[..., :3, :3], joints)
    blended = torch.einsum("vj,tjab->tvab", t["weights"], a)
    homogeneous = torch.cat([v_posed, torch.ones(n, V, 1, dtype=torch.float64)], 2)
    return torch.einsum("tvab,tvb->tva", blended, homogeneous)[..., :3].numpy()


# ------------------------------------------------------------------ tests


def test_zero_parameters_give_the_template(files, arrays):
    for kind in ("pkl", "npz"):
        head = FlameHead(flame=files[kind])
        out = head.vertices(motion(3))
        assert out.shape == (3, V, 3) and out.dtype == np.float32
        template = arrays["v_template"].astype(np.float32)
        np.testing.assert_array_equal(out, np.broadcast_to(template, out.shape))
        assert head.faces.shape == (F, 3) and head.faces.dtype == np.int32
        assert head.vertex_colors is None


def test_jaw_moves_only_the_jaw_about_its_joint(files, arrays):
    head = FlameHead(flame=files["rigid"])  # no pose correctives: pure skinning
    angle = 0.3
    out = head.vertices(motion(jaw_x=angle))[0].astype(np.float64)
    moved = np.linalg.norm(out - arrays["v_template"], axis=1) > 1e-7
    jaw_weight = arrays["weights"][:, JAW]
    assert moved.any()
    np.testing.assert_array_equal(moved, jaw_weight > 0)

    full = np.flatnonzero(jaw_weight == 1.0)
    pivot = (arrays["J_regressor"] @ arrays["v_template"])[JAW]
    before = arrays["v_template"][full] - pivot
    after = out[full] - pivot
    # A rotation about x: x unchanged, distances kept, (y, z) turned by the angle.
    np.testing.assert_allclose(after[:, 0], before[:, 0], atol=1e-6)
    np.testing.assert_allclose(
        np.linalg.norm(after, axis=1), np.linalg.norm(before, axis=1), atol=1e-6
    )
    turned = np.arctan2(after[:, 2], after[:, 1]) - np.arctan2(
        before[:, 2], before[:, 1]
    )
    np.testing.assert_allclose(np.angle(np.exp(1j * turned)), angle, atol=1e-4)


@pytest.mark.parametrize("kind", ["pkl", "npz"])
def test_matches_an_independent_reference(files, arrays, kind):
    m = motion(7, seed=1)
    out = FlameHead(flame=files[kind]).vertices(m)
    np.testing.assert_allclose(out, flame_reference(arrays, m), atol=1e-5, rtol=0)


def test_streamed_chunks_match_one_call_and_pkl_matches_npz(files):
    m = motion(120, seed=2)
    pkl, npz = FlameHead(flame=files["pkl"]), FlameHead(flame=files["npz"])
    whole = pkl.vertices(m)
    np.testing.assert_array_equal(np.concatenate(list(pkl.iter_vertices(m))), whole)
    np.testing.assert_array_equal(npz.vertices(m, 10, 70), whole[10:70])


def test_model_arrays_and_release(files):
    model = load_flame_model(files["pkl"])
    assert model.shapedirs.shape == (V, 3, 300)
    assert model.exprdirs.shape == (V, 3, 100)
    assert model.posedirs.shape == (36, V * 3)
    assert model.J_regressor.shape == (J, V)
    assert model.parents.tolist() == [-1, 0, 1, 1, 1]
    assert model.release == "FLAME 2020"
    assert load_flame_model(files["pkl"]) is model  # read once
    assert not np.any(load_flame_model(files["rigid"]).posedirs)
    assert FlameHead(flame=files["npz"]).notes(motion()) == []


def test_flame_2023_open_is_flagged(arrays, tmp_path):
    path = tmp_path / "model.pkl"
    write_pickle(path, {**arrays, "supr_expression_metadata": {"n": 100}})
    head = FlameHead(flame=path)
    assert head.model.release == "FLAME 2023 Open"
    (note,) = head.notes(motion())
    assert "model.pkl is FLAME 2023 Open, not FLAME 2020" in note


def test_fewer_expression_components_are_padded(arrays, tmp_path):
    path = tmp_path / "flame_small.npz"
    np.savez(path, **{**arrays, "shapedirs": arrays["shapedirs"][:, :, :320]})
    model = load_flame_model(path)
    assert model.exprdirs.shape == (V, 3, 100)
    assert not np.any(model.exprdirs[:, :, 20:])
    assert np.any(model.exprdirs[:, :, :20])
    assert model.release == "unknown"


def test_eyelids_move_vertices_only_when_closed(files, arrays, tmp_path):
    lids = np.zeros((2, V, 3))
    lids[0, :10, 1] = -0.01
    lids[1, 10:30, 1] = -0.01
    npy = tmp_path / "lids.npy"
    np.save(npy, lids)
    head = FlameHead(flame=files["npz"], flame_eyelids=npy)
    open_ = head.vertices(motion())[0]
    np.testing.assert_allclose(open_, arrays["v_template"], atol=1e-7)
    shut = head.vertices(motion(lids=1.0))[0] - open_
    moved = np.linalg.norm(shut, axis=1) > 1e-7
    np.testing.assert_array_equal(np.flatnonzero(moved), np.arange(30))
    np.testing.assert_allclose(shut[:30, 1], -0.01, atol=1e-6)

    npz = tmp_path / "lids.npz"
    np.savez(npz, left=lids[0], right=lids[1])
    half = motion(lids=0.5)
    other = FlameHead(flame=files["npz"], flame_eyelids=npz)
    np.testing.assert_array_equal(other.vertices(half), head.vertices(half))
    np.save(npy, lids[:1])
    with pytest.raises(HeadUnavailable, match="expected \\(2, 5023, 3\\)"):
        FlameHead(flame=files["npz"], flame_eyelids=npy)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"shapedirs": np.zeros((V, 3, 10))}, "'shapedirs' has shape (5023, 3, 10)"),
        ({"v_template": np.zeros((100, 3))}, "'v_template' has shape (100, 3)"),
        ({"weights": np.zeros((V, 4))}, "'weights' has shape (5023, 4)"),
        ({"f": np.zeros((F, 4))}, "'f' has shape (9976, 4)"),
        ({"f": np.full((F, 3), V)}, "'f' holds indices outside"),
        ({"J_regressor": None}, "no 'J_regressor' array"),
        ({"kintree_table": None}, "no 'kintree_table' array"),
    ],
)
def test_bad_arrays_are_named(arrays, tmp_path, change, message):
    # 300 float32 components keep the files small; the model is valid but for change.
    small = {**arrays, "shapedirs": arrays["shapedirs"][:, :, :300].astype(np.float32)}
    content = {k: v for k, v in {**small, **change}.items() if v is not None}
    for path in (tmp_path / "bad.pkl", tmp_path / "bad.npz"):
        if path.suffix == ".pkl":
            write_pickle(path, content)
        else:
            np.savez(path, **content)
        with pytest.raises(HeadUnavailable) as error:
            load_flame_model(path)
        assert message in str(error.value) and str(path.name) in str(error.value)


class Exploit:
    """Unpickling this would run a shell command."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.system, (self.command,)


def test_bad_files_are_refused(tmp_path):
    sentinel = tmp_path / "SENTINEL"
    exploit = tmp_path / "exploit.pkl"
    exploit.write_bytes(pickle.dumps({"v_template": Exploit(f"touch {sentinel}")}))
    with pytest.raises(HeadUnavailable, match="system, which is not allowed"):
        load_flame_model(exploit)
    assert not sentinel.exists()

    ints = tmp_path / "ints.pkl"
    ints.write_bytes(pickle.dumps({"a": 1, "b": 2}))
    with pytest.raises(HeadUnavailable, match="has no 'v_template' array"):
        load_flame_model(ints)
    listed = tmp_path / "list.pkl"
    listed.write_bytes(pickle.dumps([1, 2, 3]))
    with pytest.raises(HeadUnavailable, match="holds a list"):
        load_flame_model(listed)
    text = tmp_path / "notes.txt"
    text.write_text("this is not a model\n")
    with pytest.raises(HeadUnavailable, match="neither a pickle nor an .npz"):
        load_flame_model(text)
    with pytest.raises(HeadUnavailable, match="not found"):
        load_flame_model(tmp_path / "missing.pkl")
    assert "not allowed" in unavailable_reason(flame=exploit)


@pytest.fixture
def nowhere(tmp_path, monkeypatch) -> Path:
    """No FLAME model anywhere: empty home, cache, working folder and repo weights."""
    for name in ("home", "cache", "cwd", "repo"):
        (tmp_path / name).mkdir()
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("DUALTALK_FLAME", raising=False)
    monkeypatch.chdir(tmp_path / "cwd")
    monkeypatch.setattr(flame, "REPO_WEIGHTS", tmp_path / "repo")
    return tmp_path


def test_find_flame_model_order(files, nowhere, monkeypatch):
    assert find_flame_model() is None
    assert "no FLAME model found" in unavailable_reason()
    with pytest.raises(HeadUnavailable, match="no FLAME model found"):
        FlameHead()

    cached = nowhere / "cache" / "FLAME" / "flame2023.pkl"
    cached.parent.mkdir()
    cached.write_bytes(files["pkl"].read_bytes())
    assert find_flame_model() == cached
    local = nowhere / "cwd" / "weights" / "FLAME2020" / "generic_model.pkl"
    local.parent.mkdir(parents=True)
    local.write_bytes(files["pkl"].read_bytes())
    assert find_flame_model() == local.relative_to(nowhere / "cwd").absolute()

    monkeypatch.setenv("DUALTALK_FLAME", str(files["npz"]))
    assert find_flame_model() == files["npz"]
    assert find_flame_model(files["rigid"]) == files["rigid"]
    assert unavailable_reason() is None
    assert FlameHead().model_path == files["npz"].resolve()

    with pytest.raises(HeadUnavailable, match="missing.pkl"):
        find_flame_model(nowhere / "missing.pkl")
    monkeypatch.setenv("DUALTALK_FLAME", str(nowhere / "gone.npz"))
    with pytest.raises(HeadUnavailable, match="gone.npz"):
        find_flame_model()
    assert "gone.npz" in unavailable_reason()
