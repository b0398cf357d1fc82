"""The FLAME head: the user's own FLAME model file, driven by DualTalk's coefficients.

FLAME may not be redistributed, so nothing here downloads, copies or caches the
model: the user points at a file they downloaded from the FLAME website. The
official pickles hold ``chumpy`` objects; they are read with a restricted
unpickler that turns those into numpy arrays and refuses every other global, so
chumpy is never imported and a hostile file cannot run code.

Evaluation follows the published FLAME equations: shape and expression
blendshapes, joints regressed from the shaped mesh, Rodrigues rotations for
[global, neck, jaw, left eye, right eye], pose correctives, then linear blend
skinning (``heads/lbs.py``).
"""

from __future__ import annotations

import functools
import hashlib
import io
import os
import pickle
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dualtalk_cli.arrays import NPY_KEY, open_input, read_arrays
from dualtalk_cli.errors import HeadUnavailable
from dualtalk_cli.heads.base import Head, Rig, flame_joint_rotations, split_signs
from dualtalk_cli.heads.lbs import lbs, pose_features, rodrigues
from dualtalk_cli.motion import Motion

N_VERTICES = 5023
N_FACES = 9976
N_JOINTS = 5  # root, neck, jaw, left eye, right eye
JOINT_NAMES = ("root", "neck", "jaw", "eye_left", "eye_right")
# FLAME's own bases, apart from DualTalk's 50 expressions and 100 stored shapes.
FLAME_SHAPES = 300
FLAME_EXPRESSIONS = 100
N_POSE_FEATURES = 9 * (N_JOINTS - 1)  # flattened (R - I) of every non-root joint
FLAME_2020 = "FLAME 2020"
CHECKED_FRAMES = 64  # frames measured for the note on the left-out correctives

# File names looked for, in order, in each search folder.
MODEL_NAMES = (
    "generic_model.pkl",
    "FLAME2020/generic_model.pkl",
    "male_model.pkl",
    "female_model.pkl",
    "flame2023.pkl",
    "flame2023_no_jaw.pkl",
    "flame2023_Open.pkl",
)
ENV_VAR = "DUALTALK_FLAME"
REPO_WEIGHTS = Path(__file__).resolve().parents[2] / "weights"
NOT_FOUND = (
    "no FLAME model found: pass --flame PATH or set DUALTALK_FLAME (FLAME may not "
    "be redistributed; download it yourself from the FLAME website)"
)

# sha256 of a model file -> its release, consulted before any guess from the
# file's structure. Users may add entries for the files they have.
KNOWN_SHA256: dict[str, str] = {}


@dataclass(frozen=True, eq=False)
class FlameModel:
    """The arrays of one FLAME model file, checked and in evaluation layout."""

    v_template: np.ndarray  # (5023, 3) float64 mean face, metres
    faces: np.ndarray  # (9976, 3) int32
    shapedirs: np.ndarray  # (5023, 3, 300) identity basis
    exprdirs: np.ndarray  # (5023, 3, 100) expression basis, zero-padded
    posedirs: np.ndarray  # (36, 5023 * 3) pose-corrective basis
    J_regressor: np.ndarray  # (5, 5023) dense
    parents: np.ndarray  # (5,) int64, -1 for the root
    weights: np.ndarray  # (5023, 5) skinning weights
    release: str  # "FLAME 2020", "FLAME 2023", "FLAME 2023 Open" or "unknown"
    path: Path


# --------------------------------------------------------------------------- finding


def _search_folders() -> list[Path]:
    folders = [Path.cwd() / "weights", REPO_WEIGHTS, Path.home() / ".cache" / "FLAME"]
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg:
        folders.append(Path(xdg) / "FLAME")
    return folders


def find_flame_model(path: str | os.PathLike | None = None) -> Path | None:
    """The FLAME model file to use, or None when there is none.

    Order: ``path``, then $DUALTALK_FLAME, then ./weights/, the repository's
    weights/, ~/.cache/FLAME/ and $XDG_CACHE_HOME/FLAME/. A given path that
    does not exist raises HeadUnavailable.
    """
    if path is not None and os.fspath(path) != "":
        given = Path(path).expanduser()
        if not given.is_file():
            reason = "is a directory" if given.is_dir() else "file not found"
            raise HeadUnavailable(f"FLAME model {reason}", given)
        return given
    env = os.environ.get(ENV_VAR)
    if env:
        return find_flame_model(env)
    for folder in _search_folders():
        for name in MODEL_NAMES:
            if (folder / name).is_file():
                return folder / name
        if folder.is_dir():
            npz = sorted(
                p for p in folder.glob("*.npz") if p.name.lower()[:5] == "flame"
            )
            if npz:
                return npz[0]
    return None


# --------------------------------------------------------------------------- reading


class _ChumpyShim:
    """Stands in for any ``chumpy`` class; its pickled state holds the array."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        self.state: object = None

    def __setstate__(self, state: object) -> None:
        self.state = state

    def to_array(self) -> np.ndarray:
        state = self.state
        if isinstance(state, dict) and "x" in state:
            value = state["x"]
            return value.to_array() if isinstance(value, _ChumpyShim) else value
        raise ValueError("a chumpy object without its array ('x')")


class _SparseShim:
    """Stands in for scipy.sparse csc/csr/coo matrices; densified from its state."""

    kind = "csc"  # set per class in _allowed_globals

    def __init__(self, *args: object, **kwargs: object) -> None:
        self.state: object = None

    def __setstate__(self, state: object) -> None:
        self.state = state

    def to_array(self) -> np.ndarray:
        state = self.state if isinstance(self.state, dict) else {}
        shape = tuple(state.get("_shape", state.get("shape", ())))
        data = np.asarray(state.get("data"), np.float64)
        dense = np.zeros(shape, np.float64)
        if "row" in state:  # coo
            np.add.at(dense, (np.asarray(state["row"]), np.asarray(state["col"])), data)
            return dense
        indices, indptr = np.asarray(state["indices"]), np.asarray(state["indptr"])
        # csc stores rows per column, csr columns per row.
        csc = "csc" in str(state.get("format", self.kind))
        outer = np.repeat(np.arange(len(indptr) - 1), np.diff(indptr))
        rows, cols = (indices, outer) if csc else (outer, indices)
        np.add.at(dense, (rows, cols), data)
        return dense


def _numpy_multiarray() -> object:
    try:
        from numpy._core import multiarray
    except ImportError:  # numpy < 2
        from numpy.core import multiarray
    return multiarray


def _numpy_frombuffer() -> object:
    try:
        from numpy._core.numeric import _frombuffer
    except ImportError:  # numpy < 2
        from numpy.core.numeric import _frombuffer
    return _frombuffer


def _latin1_bytes(text: str, encoding: str = "latin1") -> bytes:
    """``_codecs.encode`` as Python 3 pickles bytes with protocol 2; latin1 only."""
    if encoding.replace("-", "").lower() not in ("latin1", "iso88591"):
        raise pickle.UnpicklingError(f"bytes encoded as {encoding!r}")
    return text.encode("latin1")


def _allowed_globals() -> dict[tuple[str, str], object]:
    multiarray = _numpy_multiarray()
    allowed: dict[tuple[str, str], object] = {
        ("copyreg", "_reconstructor"): __import__("copyreg")._reconstructor,
        ("builtins", "object"): object,
        # Plain containers that chumpy objects keep in their state.
        ("builtins", "set"): set,
        ("builtins", "frozenset"): frozenset,
        ("builtins", "slice"): slice,
        ("_codecs", "encode"): _latin1_bytes,
    }
    for package in ("numpy.core", "numpy._core"):
        allowed[(f"{package}.multiarray", "_reconstruct")] = multiarray._reconstruct
        allowed[(f"{package}.multiarray", "scalar")] = multiarray.scalar
        allowed[(f"{package}.numeric", "_frombuffer")] = _numpy_frombuffer()
    allowed[("numpy", "ndarray")] = np.ndarray
    allowed[("numpy", "dtype")] = np.dtype
    for kind in ("csc", "csr", "coo"):
        shim = type(f"_{kind}_shim", (_SparseShim,), {"kind": kind})
        for module in ("scipy.sparse", f"scipy.sparse.{kind}", f"scipy.sparse._{kind}"):
            allowed[(module, f"{kind}_matrix")] = shim
            allowed[(module, f"{kind}_array")] = shim
    return allowed


# Python 2 module names that FLAME's pickles (written by Python 2) refer to.
_PY2_MODULES = {"copy_reg": "copyreg", "__builtin__": "builtins"}


class ForbiddenGlobal(pickle.UnpicklingError):
    """A pickle refers to something a FLAME model never needs."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(name)


class _FlameUnpickler(pickle.Unpickler):
    """Unpickles only numpy arrays, sparse matrices and chumpy arrays (as numpy)."""

    _allowed = _allowed_globals()

    def find_class(self, module: str, name: str) -> object:
        module = _PY2_MODULES.get(module, module)
        if module == "chumpy" or module.startswith("chumpy."):
            return _ChumpyShim
        if (module, name) in self._allowed:
            return self._allowed[(module, name)]
        shown = "os" if module in ("posix", "nt") else module
        raise ForbiddenGlobal(f"{shown}.{name}")


def _plain(value: object) -> object:
    """``value`` with chumpy and sparse stand-ins turned into numpy arrays."""
    if isinstance(value, _ChumpyShim | _SparseShim):
        return np.asarray(value.to_array())
    return value


def _read_arrays(path: Path, data: bytes) -> dict[str, object]:
    """The file's top-level dict, from an .npz or a pickle; raises HeadUnavailable."""
    if data[:4] == b"PK\x03\x04":
        return read_arrays(path, HeadUnavailable, ".npz file", source=io.BytesIO(data))
    try:
        content = _FlameUnpickler(io.BytesIO(data), encoding="latin1").load()
    except ForbiddenGlobal as error:
        raise HeadUnavailable(
            f"not a FLAME model: it refers to {error.name}, which is not allowed",
            path,
        ) from None
    except Exception as error:  # any malformed pickle; nothing was executed
        raise HeadUnavailable(
            f"not a FLAME model (neither a pickle nor an .npz file: {error})", path
        ) from None
    if not isinstance(content, dict):
        kind = type(content).__name__
        raise HeadUnavailable(
            f"not a FLAME model: it holds a {kind}, expected a dict of arrays", path
        )
    try:
        return {str(key): _plain(value) for key, value in content.items()}
    except (ValueError, KeyError, TypeError, IndexError) as error:
        raise HeadUnavailable(f"not a FLAME model: {error}", path) from None


def _get(
    arrays: dict[str, object],
    key: str,
    path: Path,
    expected: tuple[int | str, ...],
) -> np.ndarray:
    """Array ``key`` as float64, checked against ``expected`` (">=N": N or more)."""
    if key not in arrays:
        raise HeadUnavailable(
            f"not a FLAME model: it has no '{key}' array (keys: {sorted(arrays)})", path
        )
    try:
        array = np.asarray(arrays[key], np.float64)
    except (TypeError, ValueError):
        raise HeadUnavailable(f"'{key}' is not a numeric array", path) from None
    ok = array.ndim == len(expected) and all(
        size >= int(want[2:]) if isinstance(want, str) else size == want
        for size, want in zip(array.shape, expected)
    )
    if not ok:
        shown = "(" + ", ".join(str(n) for n in expected) + ")"
        raise HeadUnavailable(
            f"'{key}' has shape {array.shape}, expected {shown}", path
        )
    if not np.all(np.isfinite(array)):
        raise HeadUnavailable(f"'{key}' holds NaN or infinite values", path)
    return array


def _release(arrays: dict[str, object], digest: str, path: Path, n_basis: int) -> str:
    """Which FLAME release the file is; 2020 and 2023 share their structure."""
    if digest in KNOWN_SHA256:
        return KNOWN_SHA256[digest]
    name = path.name.lower()
    if "supr_expression_metadata" in arrays or ("2023" in name and "open" in name):
        return "FLAME 2023 Open"
    if "2023" in name:
        return "FLAME 2023"
    if n_basis == FLAME_SHAPES + FLAME_EXPRESSIONS:
        return FLAME_2020
    return "unknown"


@functools.lru_cache(maxsize=4)
def _load_cached(path: Path, mtime_ns: int) -> FlameModel:
    with open_input(path, HeadUnavailable) as file:
        try:
            data = file.read()
        except OSError as error:
            raise HeadUnavailable(f"cannot read ({error.strerror})", path) from None
    arrays = _read_arrays(path, data)
    v_template = _get(arrays, "v_template", path, (N_VERTICES, 3))
    faces = _get(arrays, "f", path, (N_FACES, 3))
    if faces.min() < 0 or faces.max() >= N_VERTICES or np.any(faces % 1):
        raise HeadUnavailable(f"'f' holds indices outside 0..{N_VERTICES - 1}", path)
    shapedirs = _get(arrays, "shapedirs", path, (N_VERTICES, 3, f">={FLAME_SHAPES}"))
    if "posedirs" in arrays:
        posedirs = _get(arrays, "posedirs", path, (N_VERTICES, 3, N_POSE_FEATURES))
        # SMPL/FLAME layout: one row per pose feature over the flattened vertices.
        posedirs = posedirs.reshape(-1, N_POSE_FEATURES).T
    else:
        posedirs = np.zeros((N_POSE_FEATURES, N_VERTICES * 3))
    regressor = _get(arrays, "J_regressor", path, (N_JOINTS, N_VERTICES))
    weights = _get(arrays, "weights", path, (N_VERTICES, N_JOINTS))
    kintree = _get(arrays, "kintree_table", path, (2, N_JOINTS))
    parents = kintree[0].astype(np.int64)
    # The root's parent is stored as -1 or as uint32's 4294967295.
    parents[(parents < 0) | (parents >= N_JOINTS)] = -1
    if (
        parents[0] != -1
        or np.any(parents[1:] >= np.arange(1, N_JOINTS))
        or np.any(parents[1:] < 0)
    ):
        raise HeadUnavailable(
            f"'kintree_table' has parents {kintree[0].tolist()}, not a joint tree "
            "with the root first",
            path,
        )
    n_basis = shapedirs.shape[2]
    exprdirs = np.zeros((N_VERTICES, 3, FLAME_EXPRESSIONS))
    extra = shapedirs[:, :, FLAME_SHAPES : FLAME_SHAPES + FLAME_EXPRESSIONS]
    exprdirs[:, :, : extra.shape[2]] = extra
    release = _release(arrays, hashlib.sha256(data).hexdigest(), path, n_basis)
    model = FlameModel(
        v_template=v_template,
        faces=faces.astype(np.int32),
        shapedirs=np.ascontiguousarray(shapedirs[:, :, :FLAME_SHAPES]),
        exprdirs=exprdirs,
        posedirs=np.ascontiguousarray(posedirs),
        J_regressor=regressor,
        parents=parents,
        weights=weights,
        release=release,
        path=path,
    )
    for value in vars(model).values():
        if isinstance(value, np.ndarray):
            value.setflags(write=False)  # shared by every FlameHead of this file
    return model


def load_flame_model(path: str | os.PathLike) -> FlameModel:
    """The checked model in a FLAME .pkl or .npz, read once per file.

    Raises HeadUnavailable naming the problem (missing or misshapen array, not a
    FLAME file, a pickle referring to anything but arrays).
    """
    path = Path(path).expanduser().resolve()
    try:
        mtime = path.stat().st_mtime_ns
    except OSError:
        raise HeadUnavailable("FLAME model file not found", path) from None
    if path.is_dir():
        raise HeadUnavailable("is a directory, not a FLAME model file", path)
    return _load_cached(path, mtime)


def load_eyelids(path: str | os.PathLike) -> np.ndarray:
    """(2, 5023, 3) [left, right] eyelid blendshapes from an .npy or .npz."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise HeadUnavailable("eyelid blendshapes file not found", path)
    arrays = read_arrays(path, HeadUnavailable, ".npy/.npz file")
    if NPY_KEY in arrays:
        deltas = arrays[NPY_KEY]
    else:
        deltas = np.stack(list(arrays.values()))
    if deltas.shape != (2, N_VERTICES, 3) or not np.issubdtype(deltas.dtype, np.number):
        raise HeadUnavailable(
            f"eyelid blendshapes have shape {deltas.shape}, expected (2, 5023, 3)", path
        )
    return deltas.astype(np.float64)


def unavailable_reason(
    flame: str | os.PathLike | None = None,
    flame_eyelids: str | os.PathLike | None = None,
) -> str | None:
    """None when a FLAME model is found and loads, else why not, in one line."""
    try:
        path = find_flame_model(flame)
        if path is None:
            return NOT_FOUND
        load_flame_model(path)
    except HeadUnavailable as error:
        return str(error)
    return None


# --------------------------------------------------------------------------- the head


class FlameHead(Head):
    """The user's FLAME model; DualTalk's coefficients drive it exactly."""

    name = "flame"

    def __init__(
        self,
        flame: str | os.PathLike | None = None,
        flame_eyelids: str | os.PathLike | None = None,
    ) -> None:
        path = find_flame_model(flame)
        if path is None:
            raise HeadUnavailable(NOT_FOUND)
        self.model = load_flame_model(path)
        self.model_path = self.model.path
        model = self.model
        n = N_VERTICES * 3
        # Flattened float32 bases: float32 matmuls are twice as fast and stay
        # within 1e-6 m of float64 at FLAME's scale.
        self._template = model.v_template.reshape(n)
        self._shape_basis = model.shapedirs.reshape(n, FLAME_SHAPES)
        self._expr_basis = np.ascontiguousarray(
            model.exprdirs.reshape(n, FLAME_EXPRESSIONS).T, np.float32
        )
        self._pose_basis = model.posedirs.astype(np.float32)
        # Joints are linear in the mesh, so regress the bases once, not each frame.
        regress = functools.partial(np.einsum, "jv,vck->jck", model.J_regressor)
        self._joint_template = model.J_regressor @ model.v_template
        self._joint_shape = regress(model.shapedirs)
        self._joint_expr = regress(model.exprdirs)
        self._lids: np.ndarray | None = None
        if flame_eyelids is not None:
            lids = load_eyelids(flame_eyelids)
            self._lids = np.ascontiguousarray(lids.reshape(2, n), np.float32)
            self._joint_lids = np.einsum("jv,lvc->ljc", model.J_regressor, lids)
        # Expressions, then the eyelids when given: (100 [+2], V*3).
        self._basis = self._expr_basis
        if self._lids is not None:
            self._basis = np.concatenate([self._expr_basis, self._lids])
        self._shape_key: bytes | None = None
        self._rest = model.v_template.astype(np.float32)

    @property
    def description(self) -> str:
        return f"flame ({self.model.release}, {self.model_path})"

    @property
    def faces(self) -> np.ndarray:
        return self.model.faces

    @property
    def rest_vertices(self) -> np.ndarray:
        return self._rest

    def _shaped(self, shape: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(V*3,) mesh and (5, 3) joints for identity ``shape`` (300,), cached."""
        key = shape.tobytes()
        if key != self._shape_key:
            self._shaped_mesh = self._template + self._shape_basis @ shape
            self._shaped_joints = self._joint_template + self._joint_shape @ shape
            self._shape_key = key
        return self._shaped_mesh, self._shaped_joints

    @staticmethod
    def _identity(motion: Motion) -> np.ndarray:
        """(300,) shape values: row 0 for every frame, as DualTalk's renderer does."""
        shape = np.zeros(FLAME_SHAPES)
        row = np.asarray(motion.shape[0, :FLAME_SHAPES], np.float64)
        shape[: row.size] = row
        return shape

    def _frames(
        self, motion: Motion, frames: slice
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Identity mesh (V*3,), coefficients (n, 100 [+2 lids]) of ``_basis``,
        joints (n, 5, 3) and rotations (n, 5, 3) of ``frames``."""
        mesh, joints = self._shaped(self._identity(motion))
        exp = np.zeros((len(motion.exp[frames]), FLAME_EXPRESSIONS), np.float32)
        exp[:, : motion.exp.shape[1]] = motion.exp[frames, :FLAME_EXPRESSIONS]
        joints = joints + np.einsum("jck,tk->tjc", self._joint_expr, exp)
        coefficients = exp
        if self._lids is not None:
            lids = np.asarray(motion.eyelids[frames], np.float32)
            joints = joints + np.einsum("ljc,tl->tjc", self._joint_lids, lids)
            coefficients = np.concatenate([exp, lids], axis=1)
        return mesh, coefficients, joints, flame_joint_rotations(motion, frames)

    def vertices(
        self, motion: Motion, start: int = 0, stop: int | None = None
    ) -> np.ndarray:
        """(stop - start, 5023, 3) float32 vertices for frames ``start:stop``."""
        frames = slice(start, motion.n_frames if stop is None else stop)
        mesh, coefficients, joints, rotations = self._frames(motion, frames)
        shaped = (mesh + coefficients @ self._basis).reshape(len(joints), N_VERTICES, 3)
        return lbs(
            shaped,
            joints,
            self.model.parents,
            self.model.weights,
            rotations,
            self._pose_basis,
        )

    def rig(self, motion: Motion) -> Rig:
        """The identity baked into the rest mesh; each expression component the
        motion uses (and the eyelids) as targets, split by sign; no pose
        correctives, which no animation file can drive from joint rotations."""
        frames = slice(0, motion.n_frames)
        mesh, coefficients, joints, rotations = self._frames(motion, frames)
        basis = self._basis.reshape(len(self._basis), N_VERTICES, 3)
        names = [f"exp{k:02d}" for k in range(FLAME_EXPRESSIONS)]
        names += ["eyelid_left", "eyelid_right"][: len(basis) - FLAME_EXPRESSIONS]
        names, deltas, weights, scales = split_signs(names, basis, coefficients)
        return Rig(
            rest_vertices=mesh.reshape(N_VERTICES, 3).astype(np.float32),
            faces=self.model.faces,
            vertex_colors=None,
            target_names=tuple(names),
            target_deltas=deltas,
            target_weights=weights,
            joint_names=JOINT_NAMES,
            parents=self.model.parents,
            rest_joints=self._shaped(self._identity(motion))[1],  # cached
            joints=joints,
            joint_rotations=rotations,
            skin_weights=self.model.weights.astype(np.float32),
            frames_per_second=motion.frames_per_second,
            target_scales=tuple(scales),
        )

    def rig_notes(self, motions: Sequence[Motion]) -> list[str]:
        """The pose correctives ``rig`` leaves out, with the most they move a
        vertex in ``motions`` (measured on the frames turned furthest)."""
        largest = 0.0
        for motion in motions:
            rotations = flame_joint_rotations(motion, slice(None))
            features = pose_features(rodrigues(rotations))
            # The correctives grow with these features: the frames with the
            # largest ones bound the effect without evaluating every frame.
            furthest = np.argsort(-np.linalg.norm(features, axis=1))[:CHECKED_FRAMES]
            offsets = features[furthest].astype(np.float32) @ self._pose_basis
            offsets = offsets.reshape(len(furthest), N_VERTICES, 3)
            largest = max(largest, float(np.linalg.norm(offsets, axis=2).max()))
        if largest < 5e-6:  # below the OBJ files' rounding: nothing to say
            return []
        return [
            "the GLB leaves out FLAME's pose correctives (animation files have no "
            f"pose-driven shapes): vertices differ from the OBJ by up to "
            f"{largest * 1000:.2f} mm"
        ]

    def notes(self, motion: Motion) -> list[str]:
        """Warn when the file is not FLAME 2020, whose coefficients DualTalk uses."""
        release = self.model.release
        if release == FLAME_2020:
            return []
        return [
            f"{self.model_path.name} is {release}, not FLAME 2020: DualTalk's "
            "coefficients are FLAME 2020's, so expressions will look wrong"
        ]
