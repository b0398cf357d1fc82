"""Frames per second of rendering + encoding two talking heads at 1024x512.

Compares dualtalk's Renderer + VideoWriter with the habits of the original
DualTalk renderer: a pyrender Mesh built per frame, and a new
pyrender.OffscreenRenderer per frame. Run it from the repository root:

    python bench/bench_render.py --frames 250
"""

from __future__ import annotations

import argparse
import math
import os
import tempfile
import time
from pathlib import Path

import numpy as np

import dualtalk_cli.render as render  # a module, not the API's render()
from dualtalk_cli.options import ANTIALIAS, DEFAULT_ANTIALIAS
from dualtalk_cli.video import VideoWriter


def load_mesh(kind: str) -> tuple[str, np.ndarray, np.ndarray, np.ndarray | None]:
    """(name, faces, rest vertices, vertex colours) of the head to draw."""
    if kind in ("auto", "builtin"):
        try:
            from dualtalk_cli.heads.builtin import BuiltinHead

            head = BuiltinHead()
            return "builtin head", head.faces, head.rest_vertices, head.vertex_colors
        except Exception as error:  # missing module or asset
            if kind == "builtin":
                raise SystemExit(f"the built-in head is unavailable: {error}") from None
    import trimesh

    # ~4,900 vertices and ~9,800 triangles, head-sized and egg-shaped.
    sphere = trimesh.creation.uv_sphere(radius=0.1, count=[36, 72])
    vertices = np.asarray(sphere.vertices, np.float32) * np.float32([0.75, 1.0, 0.85])
    return "ellipsoid", np.asarray(sphere.faces, np.int32), vertices, None


def animate(rest: np.ndarray, frame: int, phase: float) -> np.ndarray:
    """Rest vertices with a moving 'jaw': the lower part swings up and down."""
    low, high = rest[:, 1].min(), rest[:, 1].max()
    below = np.clip((low + 0.45 * (high - low) - rest[:, 1]) / (high - low), 0, None)
    opening = 0.5 + 0.5 * math.sin(0.5 * frame + phase)
    out = rest.copy()
    out[:, 1] -= (0.25 * opening) * below * (high - low)
    return out


def silence(frames: int, fps: int) -> np.ndarray:
    """Stereo audio as long as the video, so the muxing cost is counted too."""
    return np.zeros((math.ceil(frames / fps * 16000), 2), np.float32)


def bench_ours(mesh, frames: int, args: argparse.Namespace, out: Path, encode=True):
    """Frames/s of our Renderer, feeding a VideoWriter if ``encode``."""
    _, faces, rest, colors = mesh
    size = args.size
    with render.Renderer(
        [faces, faces],
        [rest, rest],
        size=size,
        vertex_colors=[colors, colors],
        antialias=args.antialias,
    ) as renderer:
        start = time.perf_counter()
        if not encode:
            for i in range(frames):
                renderer.draw([animate(rest, i, 0), animate(rest, i, 1)])
            return frames / (time.perf_counter() - start)
        audio = silence(frames, args.fps)
        with VideoWriter(out / "ours.mp4", 2 * size, size, args.fps, audio) as writer:
            for i in range(frames):
                writer.write(renderer.draw([animate(rest, i, 0), animate(rest, i, 1)]))
        return frames / (time.perf_counter() - start)


def original_scene(pyrender, faces, vertices, colors, size: int):
    """One head as the original built it: a new Mesh, a camera, five lights."""
    import trimesh

    tm = trimesh.Trimesh(vertices, faces, vertex_colors=colors, process=False)
    material = pyrender.MetallicRoughnessMaterial(
        baseColorFactor=(0.3, 0.3, 0.3, 1.0), metallicFactor=0.8, roughnessFactor=0.8
    )
    mesh = pyrender.Mesh.from_trimesh(tm, material=material, smooth=True)
    scene = pyrender.Scene(ambient_light=(0.2, 0.2, 0.2), bg_color=(1.0, 1.0, 1.0))
    scene.add(mesh)
    low, high = vertices.min(0), vertices.max(0)
    pose = np.eye(4)
    pose[:3, 3] = (low + high) / 2 + [0, 0, 1.0]
    fx = 1.25 * size  # frames a ~0.2 m head at 1 m, about as tightly as ours
    camera = pyrender.IntrinsicsCamera(fx, fx, size / 2, size / 2, znear=0.01, zfar=3)
    scene.add(camera, pose=pose)
    for _ in range(5):  # all five point down -z: one light of intensity 10
        scene.add(pyrender.DirectionalLight(intensity=2.0), pose=pose)
    return scene


def bench_pyrender(mesh, frames: int, args, out: Path, new_renderer: bool):
    """Frames/s of a pyrender loop with new meshes each frame (and renderers)."""
    pyrender = render._pyrender()
    _, faces, rest, colors = mesh
    size = args.size
    shared = None if new_renderer else pyrender.OffscreenRenderer(size, size)
    start = time.perf_counter()
    audio = silence(frames, args.fps)
    with VideoWriter(out / "pyrender.mp4", 2 * size, size, args.fps, audio) as writer:
        for i in range(frames):
            tiles = []
            for phase in (0, 1):
                vertices = animate(rest, i, phase)
                scene = original_scene(pyrender, faces, vertices, colors, size)
                renderer = shared or pyrender.OffscreenRenderer(size, size)
                color, _ = renderer.render(scene, pyrender.RenderFlags.SKIP_CULL_FACES)
                if new_renderer:
                    renderer.delete()
                tiles.append(color)
            writer.write(np.hstack(tiles))
    if shared is not None:
        shared.delete()
    return frames / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=250, help="frames for ours")
    parser.add_argument(
        "--baseline-frames", type=int, default=30, help="frames for the pyrender loops"
    )
    parser.add_argument("--size", type=int, default=512, help="tile size (per head)")
    parser.add_argument("--fps", type=int, default=25)
    parser.add_argument("--mesh", choices=("auto", "builtin", "sphere"), default="auto")
    parser.add_argument(
        "--antialias", choices=tuple(ANTIALIAS), default=DEFAULT_ANTIALIAS
    )
    parser.add_argument("--keep", type=Path, help="keep the videos in this folder")
    args = parser.parse_args()

    mesh = load_mesh(args.mesh)
    print(f"mesh: {mesh[0]}, {len(mesh[2])} vertices, {len(mesh[1])} triangles x 2")
    print(f"renderer: {render.check_renderer()}; {os.cpu_count()} CPU cores")
    print(f"frame: {2 * args.size}x{args.size}, {args.antialias}, {args.fps} fps")

    with tempfile.TemporaryDirectory() as tmp:
        out = args.keep or Path(tmp)
        out.mkdir(parents=True, exist_ok=True)
        n, base = args.frames, args.baseline_frames
        render_only = bench_ours(mesh, n, args, out, encode=False)
        ours = bench_ours(mesh, n, args, out)
        new_meshes = bench_pyrender(mesh, base, args, out, new_renderer=False)
        original = bench_pyrender(mesh, base, args, out, new_renderer=True)
    rows = [
        ("ours: render only", n, render_only),
        ("ours: render + encode", n, ours),
        ("pyrender, new Mesh per frame", base, new_meshes),
        ("original: new renderer per frame", base, original),
    ]
    print(f"\n{'':34} {'frames':>7} {'frames/s':>9}")
    for name, frames, rate in rows:
        print(f"{name:34} {frames:7d} {rate:9.1f}")
    print(f"\nours (render + encode) / original: {ours / original:.1f}x")


if __name__ == "__main__":
    main()
