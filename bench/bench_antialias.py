"""Video anti-aliasing choices: render + encode speed, and how far edges stray.

    python bench/bench_antialias.py                 # 250 frames at 1024x512
    python bench/bench_antialias.py --keep crops/   # also save zoomed crops (PNG)

The motion is the procedural engine's on the shipped example dialogue, shown on
the built-in head, two heads side by side as ``animate`` draws them. For each
choice it measures frames/s of drawing alone and of drawing + H.264 encoding.
Quality: a few frames are compared with a reference drawn at 4x the size with
4x MSAA and averaged down (64 samples a pixel). It reports the mean absolute
error over every pixel and over the edge pixels (those where the unsmoothed
frame is off the reference by more than 8 levels), in 8-bit levels.
"""

from __future__ import annotations

import argparse
import math
import os
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def example_motion(frames: int):
    """Both speakers' vertices for ``frames`` frames, and the head."""
    from dualtalk_cli.audio import load_conversation, n_frames_for
    from dualtalk_cli.engines import load_engine
    from dualtalk_cli.heads import load_head

    a, b = load_conversation(
        REPO / "examples/dialogue_speaker1.wav", REPO / "examples/dialogue_speaker2.wav"
    )
    motions = load_engine("procedural").animate(a, b, n_frames=n_frames_for(len(a)))
    head = load_head("builtin")
    vertices = [np.concatenate(list(head.iter_vertices(m))) for m in motions]
    repeats = math.ceil(frames / len(vertices[0]))
    return [np.concatenate([v] * repeats)[:frames] for v in vertices], head


def renderer(head, size: int, antialias: str):
    from dualtalk_cli.render import Renderer

    return Renderer(
        [head.faces] * 2,
        [head.rest_vertices] * 2,
        size=size,
        vertex_colors=[head.vertex_colors] * 2,
        antialias=antialias,
    )


def speed(head, vertices, size: int, antialias: str, out: Path) -> tuple[float, float]:
    """Frames/s drawing alone, and drawing + encoding to an MP4."""
    from dualtalk_cli.video import VideoWriter

    a, b = vertices
    with renderer(head, size, antialias) as r:
        start = time.perf_counter()
        for i in range(len(a)):
            r.draw([a[i], b[i]])
        alone = len(a) / (time.perf_counter() - start)
        start = time.perf_counter()
        with VideoWriter(out / f"{antialias}.mp4", 2 * size, size, 25) as video:
            for i in range(len(a)):
                video.write(r.draw([a[i], b[i]]))
        encoded = len(a) / (time.perf_counter() - start)
    return alone, encoded


def frames_of(head, vertices, size: int, antialias: str, picks) -> list[np.ndarray]:
    with renderer(head, size, antialias) as r:
        return [r.draw([vertices[0][i], vertices[1][i]]) for i in picks]


def reference_frames(head, vertices, size: int, picks) -> list[np.ndarray]:
    """Drawn at 4x the size with 4x MSAA, then each 4x4 block averaged."""
    frames = frames_of(head, vertices, 4 * size, "msaa4", picks)
    return [
        f.reshape(size, 4, 2 * size, 4, 3).astype(np.float64).mean(axis=(1, 3))
        for f in frames
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=250)
    parser.add_argument("--size", type=int, default=512, help="pixels per head")
    parser.add_argument("--keep", type=Path, help="save zoomed crops here")
    args = parser.parse_args()
    from dualtalk_cli.options import ANTIALIAS
    from dualtalk_cli.render import check_renderer

    print(f"renderer: {check_renderer()}; {os.cpu_count()} CPU cores")
    vertices, head = example_motion(args.frames)
    # Frames with the mouth open and shut, spread over the clip.
    picks = [int(k) for k in np.linspace(0, args.frames - 1, 6)]
    reference = reference_frames(head, vertices, args.size, picks)
    none = frames_of(head, vertices, args.size, "none", picks)
    edges = [np.abs(n - r).max(axis=-1) > 8 for n, r in zip(none, reference)]
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for antialias in ANTIALIAS:
            alone, encoded = speed(head, vertices, args.size, antialias, Path(tmp))
            frames = frames_of(head, vertices, args.size, antialias, picks)
            errors = [np.abs(f - r).mean(axis=-1) for f, r in zip(frames, reference)]
            rows[antialias] = (
                alone,
                encoded,
                float(np.mean([e.mean() for e in errors])),
                float(np.mean([e[m].mean() for e, m in zip(errors, edges)])),
            )
            if args.keep:
                save_crop(args.keep / f"{antialias}.png", frames[2], args.size)
            print(antialias, [round(v, 2) for v in rows[antialias]], flush=True)
    if args.keep:
        save_crop(args.keep / "reference.png", reference[2], args.size)

    share = float(np.mean([m.mean() for m in edges]))
    print(
        f"\n{2 * args.size}x{args.size}, {args.frames} frames; edge pixels: "
        f"{share:.1%} of the frame"
    )
    print(
        f"{'':8} {'draw fps':>9} {'draw+encode':>12} {'vs msaa4':>9} "
        f"{'error all':>10} {'error edges':>12}"
    )
    base = rows["msaa4"][1]
    for name, (alone, encoded, error, edge_error) in rows.items():
        print(
            f"{name:8} {alone:9.1f} {encoded:12.1f} {encoded / base:8.2f}x "
            f"{error:10.3f} {edge_error:12.2f}"
        )


def save_crop(path: Path, frame: np.ndarray, size: int) -> None:
    """Head A's lower face, zoomed 4x with nearest neighbours, as a PNG."""
    import imageio.v3 as iio

    path.parent.mkdir(parents=True, exist_ok=True)
    y, x, side = int(size * 0.45), int(size * 0.3), size // 4
    crop = np.clip(np.rint(frame[y : y + side, x : x + 2 * side]), 0, 255)
    zoomed = crop.astype(np.uint8).repeat(4, axis=0).repeat(4, axis=1)
    iio.imwrite(path, zoomed)


if __name__ == "__main__":
    main()
