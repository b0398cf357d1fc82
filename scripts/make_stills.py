"""Render the README's stills of the built-in head: neutral, ah, p/b/m, oo, blink, nod.

python scripts/make_stills.py            # writes docs/builtin_head.png
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import numpy as np

from dualtalk_cli.engines.lips import VISEMES
from dualtalk_cli.heads import load_head
from dualtalk_cli.motion import ARKIT_INDEX, Motion, jaw_from_jaw_open
from dualtalk_cli.render import Renderer

REPO = Path(__file__).resolve().parents[1]


def pose(
    opening: float = 0.0,
    viseme: str | None = None,
    blink: float = 0.0,
    pitch: float = 0.0,
    yaw: float = 0.0,
    **arkit: float,
) -> Motion:
    """A one-frame motion: a mouth opening (0..1, the jaw mapping), a viseme's
    shapes as the procedural engine makes them, and extra ARKit weights."""
    motion = Motion.neutral(1)
    weights = motion.arkit.copy()
    shapes = VISEMES[viseme].shapes if viseme else {}
    for name, value in {**shapes, **arkit}.items():
        weights[0, ARKIT_INDEX[name]] = value
    jaw = float(jaw_from_jaw_open(opening))
    head_pose = np.array([[pitch, yaw, 0.0, jaw, 0.0, 0.0]], np.float32)
    eyelids = np.full((1, 2), blink, np.float32)
    return replace(motion, arkit=weights, pose=head_pose, eyelids=eyelids)


STILLS = {
    "neutral": pose(),
    "ah": pose(opening=0.75, viseme="open", browInnerUp=0.3),
    "p/b/m": pose(viseme="bilabial"),
    "oo": pose(opening=0.3, viseme="rounded"),
    "blink": pose(blink=1.0, yaw=0.1),
    "nod": pose(pitch=0.22, mouthSmileLeft=0.35, mouthSmileRight=0.35),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "builtin_head.png")
    parser.add_argument("--size", type=int, default=256)
    args = parser.parse_args()

    import imageio.v3 as iio

    head = load_head("builtin")
    tiles = []
    with Renderer(
        [head.faces], [head.rest_vertices], size=args.size,
        vertex_colors=[head.vertex_colors],
    ) as renderer:  # fmt: skip
        for motion in STILLS.values():
            tiles.append(renderer.draw([head.vertices(motion)[0]]))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    iio.imwrite(args.out, np.concatenate(tiles, axis=1))
    print(f"wrote {args.out} ({', '.join(STILLS)})")


if __name__ == "__main__":
    main()
