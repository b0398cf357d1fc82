"""Run inside Blender: import a GLB and write what Blender made of it.

    blender -b --factory-startup --python blender_sample.py -- IN.glb OUT.npz FPS F...

OUT.npz holds, per mesh object (sorted by name): its name, shape key names and
world-space deformed vertices at each FRAME (scene frame = glTF time x FPS),
in glTF's axes (+y up).
"""

import json
import sys

import numpy

numpy.bool = bool  # Debian's Blender 3.4 importer still uses numpy.bool

import bpy  # noqa: E402

glb, out, fps, *frames = sys.argv[sys.argv.index("--") + 1 :]
frames = [int(frame) for frame in frames]

bpy.ops.wm.read_factory_settings(use_empty=True)
scene = bpy.context.scene
scene.render.fps = int(fps)  # keys land at time x scene fps
scene.render.fps_base = 1.0
bpy.ops.import_scene.gltf(filepath=glb)

meshes = sorted(
    (obj for obj in scene.objects if obj.type == "MESH"), key=lambda obj: obj.name
)
arrays = {}
summary = []
for index, obj in enumerate(meshes):
    keys = obj.data.shape_keys
    names = [block.name for block in keys.key_blocks[1:]] if keys else []
    action = keys.animation_data.action if keys and keys.animation_data else None
    summary.append(
        {
            "name": obj.name,
            "mesh": obj.data.name,
            "parent": obj.parent.name if obj.parent else None,
            "n_vertices": len(obj.data.vertices),
            "shape_keys": names,
            "shape_key_action": action.name if action else None,
        }
    )
    positions = []
    for frame in frames:
        scene.frame_set(frame)
        depsgraph = bpy.context.evaluated_depsgraph_get()
        evaluated = obj.evaluated_get(depsgraph)
        mesh = evaluated.to_mesh()
        local = numpy.empty(len(mesh.vertices) * 3)
        mesh.vertices.foreach_get("co", local)
        matrix = numpy.array(evaluated.matrix_world)
        local = local.reshape(-1, 3)
        world = local @ matrix[:3, :3].T + matrix[:3, 3]
        # Blender is +z up; its importer turned glTF's (x, y, z) into (x, -z, y).
        positions.append(numpy.stack([world[:, 0], world[:, 2], -world[:, 1]], 1))
        evaluated.to_mesh_clear()
    arrays[f"vertices_{index}"] = numpy.array(positions)
armatures = [obj.name for obj in scene.objects if obj.type == "ARMATURE"]
arrays["summary"] = numpy.array(
    json.dumps({"meshes": summary, "armatures": armatures, "fps": scene.render.fps})
)
numpy.savez(out, **arrays)
