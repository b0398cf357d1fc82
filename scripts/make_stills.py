"""Render the README's stills of the built-in head: neutral, talking, blinking, nodding.

python scripts/make_stills.py            # writes docs/builtin_head.png
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import numpy as np

from dualtalk_cli.heads import load_head
from dualtalk_cli.motion import ARKIT_INDEX, Motion
from dualtalk_cli.render import Renderer

REPO = Path(__file__).resolve().parents[1]


def pose(
    jaw_open: float = 0.0,
    blink: float = 0.0,
    pitch: float = 0.0,
    yaw: float = 0.0,
    **arkit: float,
) -> Motion:
    """A one-frame motion; jaw_open is the ARKit weight, shown as 0.3 rad at 1."""
    motion = Motion.neutral(1)
    weights = motion.arkit.copy()
    for name, value in arkit.items():
        weights[0, ARKIT_INDEX[name]] = value
    head_pose = np.array([[pitch, yaw, 0.0, 0.3 * jaw_open, 0.0, 0.0]], np.float32)
    eyelids = np.full((1, 2), blink, np.float32)
    return replace(motion, arkit=weights, pose=head_pose, eyelids=eyelids)


STILLS = {
    "neutral": pose(),
    "talking": pose(jaw_open=0.55, mouthFunnel=0.3, mouthLowerDownLeft=0.3,
                    mouthLowerDownRight=0.3, browInnerUp=0.4),
    "blinking": pose(blink=1.0, yaw=0.1),
    "nodding": pose(pitch=0.22, mouthSmileLeft=0.35, mouthSmileRight=0.35),
}  # fmt: skip


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
