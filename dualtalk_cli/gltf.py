"""A conversation as one glTF 2.0 binary (GLB): every head skinned and morphing.

Each head is one mesh node at the scene root with one primitive (the OBJ files'
vertices in their order), its morph targets named in ``mesh.extras.targetNames``
(the convention of three.js, Blender and Unity's glTFast), a skin over the
head's joints, and its colours. Heads stand side by side, speaker A on the left
(-x) as in the video; the offset sits on each skeleton's root joint, since a
skinned mesh ignores its own node's transform. One animation drives every head
(Blender makes only the first animation of a file active): a key per frame,
linear, for morph weights and joint rotations, and for joint translations where
the joints move (FLAME's move with its expressions).

glTF is +y up, metres, right-handed, faces toward +z: our heads' frame.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence

import numpy as np

from dualtalk_cli.heads.base import Rig
from dualtalk_cli.heads.lbs import rigid_transforms, rodrigues
from dualtalk_cli.version import __version__

HEAD_SPACING = 1.5  # centre-to-centre distance, in widths of the widest head
LABELS = "ABCDEFGH"
STILL_TRANSLATION = 1e-7  # metres: joints moving less are not keyed

_FLOAT, _UINT8, _UINT16, _UINT32 = 5126, 5121, 5123, 5125
_ARRAY_BUFFER, _ELEMENT_ARRAY_BUFFER = 34962, 34963
_TYPES = {1: "SCALAR", 3: "VEC3", 4: "VEC4", 16: "MAT4"}


def placements(rigs: Sequence[Rig]) -> list[np.ndarray]:
    """Each head's offset (3,): side by side along x, the first on the left."""
    width = max(float(np.ptp(rig.rest_vertices[:, 0])) for rig in rigs)
    spacing = HEAD_SPACING * width
    middle = (len(rigs) - 1) / 2
    return [np.array([(i - middle) * spacing, 0.0, 0.0]) for i in range(len(rigs))]


def conversation_glb(rigs: Sequence[Rig], extras: dict | None = None) -> bytes:
    """The GLB bytes of ``rigs`` (speaker order), with ``extras`` on the file."""
    import pygltflib as gl

    builder = _Builder()
    scene_nodes: list[int] = []
    animation = gl.Animation(name="conversation")
    materials: dict[bool, int] = {}
    for index, (rig, offset) in enumerate(zip(rigs, placements(rigs))):
        label = LABELS[index]
        has_colors = rig.vertex_colors is not None
        if has_colors not in materials:
            materials[has_colors] = len(builder.gltf.materials)
            builder.gltf.materials.append(_material(has_colors))
        mesh_node, root = _add_head(
            builder, rig, offset, label, materials[has_colors], animation
        )
        scene_nodes += [mesh_node, root]
    gltf = builder.gltf
    if animation.channels:
        gltf.animations.append(animation)
    gltf.scenes.append(gl.Scene(name="conversation", nodes=scene_nodes))
    gltf.scene = 0
    gltf.asset = gl.Asset(version="2.0", generator=f"dualtalk {__version__}")
    gltf.extras = {"frames_per_second": rigs[0].frames_per_second, **(extras or {})}
    return builder.finish()


class _Builder:
    """A glTF document with one binary buffer; equal arrays share an accessor."""

    def __init__(self) -> None:
        import pygltflib as gl

        self.gl = gl
        self.gltf = gl.GLTF2()
        self.blob = bytearray()
        self._accessors: dict[tuple, int] = {}

    def accessor(
        self,
        array: np.ndarray,
        target: int | None = None,
        bounds: bool = False,
    ) -> int:
        """An accessor of ``array`` (N, width) or (N,); one per distinct content."""
        array = np.ascontiguousarray(array)
        width = 1 if array.ndim == 1 else int(np.prod(array.shape[1:]))
        component = {
            np.dtype(np.float32): _FLOAT,
            np.dtype(np.uint8): _UINT8,
            np.dtype(np.uint16): _UINT16,
            np.dtype(np.uint32): _UINT32,
        }[array.dtype]
        digest = hashlib.sha256(array.tobytes()).digest()
        key = (digest, component, width, target, bounds)
        if key in self._accessors:
            return self._accessors[key]
        while len(self.blob) % 4:  # every view starts 4-byte aligned
            self.blob.append(0)
        view = self.gl.BufferView(
            buffer=0, byteOffset=len(self.blob), byteLength=array.nbytes, target=target
        )
        self.blob += array.tobytes()
        self.gltf.bufferViews.append(view)
        rows = array.reshape(len(array), width)
        accessor = self.gl.Accessor(
            bufferView=len(self.gltf.bufferViews) - 1,
            componentType=component,
            count=len(array),
            type=_TYPES[width],
        )
        if bounds:  # required on positions and animation inputs; exact values
            accessor.min = [_number(x) for x in rows.min(axis=0)]
            accessor.max = [_number(x) for x in rows.max(axis=0)]
        self.gltf.accessors.append(accessor)
        self._accessors[key] = len(self.gltf.accessors) - 1
        return self._accessors[key]

    def node(self, **fields: object) -> int:
        self.gltf.nodes.append(self.gl.Node(**fields))
        return len(self.gltf.nodes) - 1

    def finish(self) -> bytes:
        while len(self.blob) % 4:
            self.blob.append(0)
        self.gltf.buffers = [self.gl.Buffer(byteLength=len(self.blob))]
        self.gltf.set_binary_blob(bytes(self.blob))
        return b"".join(self.gltf.save_to_bytes())


def _number(value: np.generic) -> float | int:
    return int(value) if np.issubdtype(type(value), np.integer) else float(value)


def _material(has_colors: bool) -> object:
    import pygltflib as gl

    from dualtalk_cli.render import HEAD_COLOR

    return gl.Material(
        name="head_vertex_colors" if has_colors else "head",
        pbrMetallicRoughness=gl.PbrMetallicRoughness(
            baseColorFactor=[1.0, 1.0, 1.0, 1.0] if has_colors else list(HEAD_COLOR),
            metallicFactor=0.0,
            roughnessFactor=0.8,
        ),
        doubleSided=True,  # the open neck and mouth must not show holes
    )


def _add_head(
    builder: _Builder,
    rig: Rig,
    offset: np.ndarray,
    label: str,
    material: int,
    animation: object,
) -> tuple[int, int]:
    """One head's mesh, skeleton and animation channels; (mesh node, root joint)."""
    from dualtalk_cli.render import srgb_to_linear, vertex_normals

    gl = builder.gl
    # The rest mesh stands where the head stands, so that each inverse bind
    # matrix is the inverse of its joint's rest transform, as importers expect.
    placed = (np.asarray(rig.rest_vertices, np.float64) + offset).astype(np.float32)
    attributes = gl.Attributes(
        POSITION=builder.accessor(placed, _ARRAY_BUFFER, bounds=True),
        NORMAL=builder.accessor(
            vertex_normals(rig.rest_vertices, rig.faces), _ARRAY_BUFFER
        ),
    )
    if rig.vertex_colors is not None:
        linear = srgb_to_linear(np.asarray(rig.vertex_colors)[:, :3])
        attributes.COLOR_0 = builder.accessor(linear.astype(np.float32), _ARRAY_BUFFER)
    for set_index, (joints, weights) in enumerate(_influences(rig.skin_weights)):
        setattr(
            attributes, f"JOINTS_{set_index}", builder.accessor(joints, _ARRAY_BUFFER)
        )
        setattr(
            attributes, f"WEIGHTS_{set_index}", builder.accessor(weights, _ARRAY_BUFFER)
        )
    faces = np.asarray(rig.faces)
    index_type = np.uint16 if len(rig.rest_vertices) < 65535 else np.uint32
    targets = [
        {"POSITION": builder.accessor(deltas, _ARRAY_BUFFER, bounds=True)}
        for deltas in rig.target_deltas.astype(np.float32)
    ]
    primitive = gl.Primitive(
        attributes=attributes,
        indices=builder.accessor(
            faces.astype(index_type).ravel(), _ELEMENT_ARRAY_BUFFER
        ),
        material=material,
        targets=targets or None,
    )
    mesh = gl.Mesh(name=f"head_{label}", primitives=[primitive])
    if targets:
        # The first frame's weights: they hold when no channel keys them.
        mesh.weights = [float(w) for w in rig.target_weights[0]]
        mesh.extras = {"targetNames": list(rig.target_names)}
        if rig.target_scales is not None:  # coefficient = weight x scale
            mesh.extras["targetScales"] = list(rig.target_scales)
    builder.gltf.meshes.append(mesh)

    # The skeleton: rest positions give the bind pose; the per-frame local
    # transforms reproduce the rig's skinning matrices exactly.
    local = _local_transforms(rig, offset)
    fps = rig.frames_per_second
    joint_nodes = []
    for j, name in enumerate(rig.joint_names):
        rotation, translation = _quaternions(local[:, j, :3, :3]), local[:, j, :3, 3]
        joint_nodes.append(
            builder.node(
                name=f"head_{label}_{name}",
                rotation=[float(x) for x in rotation[0]],
                translation=[float(x) for x in translation[0]],
            )
        )
        _key(builder, animation, joint_nodes[j], "rotation", rotation, fps)
        _key(builder, animation, joint_nodes[j], "translation", translation, fps)
    for j, parent in enumerate(rig.parents):
        if parent >= 0:
            builder.gltf.nodes[joint_nodes[parent]].children.append(joint_nodes[j])
    bind = np.tile(np.eye(4), (len(rig.joint_names), 1, 1))
    bind[:, :3, 3] = -(np.asarray(rig.rest_joints, np.float64) + offset)
    builder.gltf.skins.append(
        gl.Skin(
            name=f"head_{label}_skeleton",
            joints=joint_nodes,
            skeleton=joint_nodes[0],
            # glTF matrices are column-major: numpy's transpose, row by row.
            inverseBindMatrices=builder.accessor(
                bind.transpose(0, 2, 1).reshape(-1, 16).astype(np.float32)
            ),
        )
    )
    mesh_node = builder.node(
        name=f"head_{label}",
        mesh=len(builder.gltf.meshes) - 1,
        skin=len(builder.gltf.skins) - 1,
        extras={"speaker": label, "offset": [float(x) for x in offset]},
    )
    if targets:
        _key(builder, animation, mesh_node, "weights", rig.target_weights, fps)
    return mesh_node, joint_nodes[0]


def _influences(skin_weights: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """JOINTS_n/WEIGHTS_n pairs: each vertex's largest weights, four per set."""
    weights = np.asarray(skin_weights, np.float64)
    order = np.argsort(-weights, axis=1, kind="stable")
    n_used = max(1, int((weights > 0).sum(axis=1).max()))
    n_sets = math.ceil(n_used / 4)
    order = order[:, : 4 * n_sets]
    chosen = np.take_along_axis(weights, order, axis=1)
    chosen /= chosen.sum(axis=1, keepdims=True)
    joints = np.where(chosen > 0, order, 0)  # unused slots: joint 0, weight 0
    if n_sets * 4 > weights.shape[1]:  # fewer than four joints: pad
        pad = n_sets * 4 - weights.shape[1]
        joints = np.pad(joints, ((0, 0), (0, pad)))
        chosen = np.pad(chosen, ((0, 0), (0, pad)))
    chosen = chosen.astype(np.float32)
    # The largest weight takes the float32 rounding, so each row sums to 1.
    chosen[:, 0] += 1.0 - chosen.sum(axis=1, dtype=np.float32)
    index_type = np.uint8 if weights.shape[1] <= 256 else np.uint16
    return [
        (
            np.ascontiguousarray(joints[:, 4 * k : 4 * k + 4], index_type),
            np.ascontiguousarray(chosen[:, 4 * k : 4 * k + 4]),
        )
        for k in range(n_sets)
    ]


def _local_transforms(rig: Rig, offset: np.ndarray) -> np.ndarray:
    """(T, J, 4, 4) each joint's transform relative to its parent (the root's
    relative to the scene) so that joint world x inverse bind = the rig's
    skinning matrix, moved by ``offset``."""
    rotations = rodrigues(rig.joint_rotations)
    skinning = rigid_transforms(rotations, np.asarray(rig.joints), rig.parents)
    bind = np.tile(np.eye(4), (len(rig.parents), 1, 1))
    bind[:, :3, 3] = rig.rest_joints
    world = skinning @ bind
    world[..., :3, 3] += offset
    local = world.copy()
    for j, parent in enumerate(rig.parents):
        if parent >= 0:
            local[:, j] = np.linalg.inv(world[:, parent]) @ world[:, j]
    return local


def _quaternions(matrices: np.ndarray) -> np.ndarray:
    """(T, 4) unit quaternions (x, y, z, w) of (T, 3, 3) rotations, each on the
    side of its predecessor so that interpolation takes the short way."""
    from scipy.spatial.transform import Rotation

    quaternions = Rotation.from_matrix(matrices).as_quat()
    flips = np.sign(np.einsum("ij,ij->i", quaternions[1:], quaternions[:-1]))
    flips[flips == 0] = 1.0
    quaternions[1:] *= np.cumprod(flips)[:, None]
    quaternions /= np.linalg.norm(quaternions, axis=1, keepdims=True)
    return quaternions.astype(np.float32)


def _key(
    builder: _Builder,
    animation: object,
    node: int,
    path: str,
    values: np.ndarray,
    frames_per_second: float,
) -> None:
    """A linear channel keying ``values`` (T, width) every frame, if they move."""
    values = np.asarray(values, np.float32)
    # Joint offsets come out of matrix inverses: still joints wobble by 1e-9 m.
    tolerance = STILL_TRANSLATION if path == "translation" else 0.0
    if len(values) < 2 or np.abs(values - values[0]).max() <= tolerance:
        return  # still: the node's own value (frame 0's) holds
    gl = builder.gl
    times = np.arange(len(values), dtype=np.float64) / frames_per_second
    sampler = gl.AnimationSampler(
        input=builder.accessor(times.astype(np.float32), bounds=True),
        output=builder.accessor(values.reshape(-1) if path == "weights" else values),
        interpolation="LINEAR",
    )
    animation.samplers.append(sampler)
    animation.channels.append(
        gl.AnimationChannel(
            sampler=len(animation.samplers) - 1,
            target=gl.AnimationChannelTarget(node=node, path=path),
        )
    )
