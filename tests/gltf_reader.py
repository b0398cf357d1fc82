"""An independent reading of our GLB files for the tests: pygltflib parses, and
the glTF 2.0 equations (node TRS, animation sampling, morph targets, skinning)
are applied here in plain numpy, without any of dualtalk's own code."""

from __future__ import annotations

import numpy as np
import pygltflib

_DTYPES = {5126: np.float32, 5121: np.uint8, 5123: np.uint16, 5125: np.uint32}
_WIDTHS = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4, "MAT4": 16}


class Glb:
    def __init__(self, path) -> None:
        self.gltf = pygltflib.GLTF2().load(str(path))
        self.blob = self.gltf.binary_blob()

    def array(self, index: int) -> np.ndarray:
        accessor = self.gltf.accessors[index]
        view = self.gltf.bufferViews[accessor.bufferView]
        dtype = np.dtype(_DTYPES[accessor.componentType])
        width = _WIDTHS[accessor.type]
        start = view.byteOffset + (accessor.byteOffset or 0)
        assert view.byteStride in (None, 0, width * dtype.itemsize)
        data = np.frombuffer(self.blob, dtype, accessor.count * width, start)
        return data.reshape(accessor.count, width) if width > 1 else data

    def sample(self, node: int, path: str, time: float):
        """The animated value of ``node``'s ``path`` at ``time``, or None."""
        for animation in self.gltf.animations:
            for channel in animation.channels:
                if channel.target.node == node and channel.target.path == path:
                    sampler = animation.samplers[channel.sampler]
                    assert sampler.interpolation in (None, "LINEAR")
                    times = self.array(sampler.input).astype(np.float64)
                    values = self.array(sampler.output).astype(np.float64)
                    values = values.reshape(len(times), -1)
                    k = int(np.searchsorted(times, time, side="right")) - 1
                    k = min(max(k, 0), len(times) - 2)
                    t = np.clip((time - times[k]) / (times[k + 1] - times[k]), 0, 1)
                    if path == "rotation":  # slerp
                        a, b = values[k], values[k + 1]
                        if a @ b < 0:
                            b = -b
                        angle = np.arccos(np.clip(a @ b, -1, 1))
                        if angle < 1e-6:  # slerp is lerp here
                            q = (1 - t) * a + t * b
                            return q / np.linalg.norm(q)
                        return (
                            np.sin((1 - t) * angle) * a + np.sin(t * angle) * b
                        ) / np.sin(angle)
                    return (1 - t) * values[k] + t * values[k + 1]
        return None

    def local_matrix(self, node: int, time: float) -> np.ndarray:
        n = self.gltf.nodes[node]
        if n.matrix:
            return np.array(n.matrix, np.float64).reshape(4, 4).T
        translation = self.sample(node, "translation", time)
        rotation = self.sample(node, "rotation", time)
        translation = n.translation if translation is None else translation
        rotation = n.rotation if rotation is None else rotation
        x, y, z, w = rotation if rotation is not None else (0, 0, 0, 1)
        m = np.eye(4)
        m[:3, :3] = [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
        if translation is not None:
            m[:3, 3] = translation
        assert not n.scale
        return m

    def world_matrices(self, time: float) -> dict[int, np.ndarray]:
        world: dict[int, np.ndarray] = {}

        def visit(node: int, parent: np.ndarray) -> None:
            world[node] = parent @ self.local_matrix(node, time)
            for child in self.gltf.nodes[node].children or []:
                visit(child, world[node])

        for root in self.gltf.scenes[self.gltf.scene].nodes:
            visit(root, np.eye(4))
        return world

    def mesh_nodes(self) -> list[int]:
        return [i for i, n in enumerate(self.gltf.nodes) if n.mesh is not None]

    def target_names(self, node: int) -> list[str]:
        mesh = self.gltf.meshes[self.gltf.nodes[node].mesh]
        return list((mesh.extras or {}).get("targetNames", []))

    def vertices(self, node: int, time: float) -> np.ndarray:
        """World-space vertices of the skinned, morphed mesh of ``node`` at ``time``."""
        n = self.gltf.nodes[node]
        mesh = self.gltf.meshes[n.mesh]
        (primitive,) = mesh.primitives
        positions = self.array(primitive.attributes.POSITION).astype(np.float64)
        weights = self.sample(node, "weights", time)
        if weights is None:
            weights = mesh.weights or []
        for w, target in zip(weights, primitive.targets or []):
            positions = positions + w * self.array(target["POSITION"])
        skin = self.gltf.skins[n.skin]
        world = self.world_matrices(time)
        inverse_bind = self.array(skin.inverseBindMatrices).astype(np.float64)
        joint_matrices = np.stack(
            [
                world[joint] @ inverse_bind[j].reshape(4, 4).T
                for j, joint in enumerate(skin.joints)
            ]
        )
        blended = np.zeros((len(positions), 4, 4))
        sets = 0
        while getattr(primitive.attributes, f"JOINTS_{sets}", None) is not None:
            joints = self.array(getattr(primitive.attributes, f"JOINTS_{sets}"))
            wts = self.array(getattr(primitive.attributes, f"WEIGHTS_{sets}"))
            for k in range(4):
                blended += wts[:, k, None, None] * joint_matrices[joints[:, k]]
            sets += 1
        homogeneous = np.concatenate([positions, np.ones((len(positions), 1))], 1)
        return np.einsum("vab,vb->va", blended, homogeneous)[:, :3]
