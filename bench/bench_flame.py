"""Benchmark FLAME vertex evaluation against the whole ``animate`` job.

    python bench/bench_flame.py                    # synthetic FLAME-sized model
    python bench/bench_flame.py --flame generic_model.pkl

Times the FLAME head's vertices for both speakers of a 60 s conversation
(2 x 1,500 frames, streamed in chunks as the writers do), then one whole
``dualtalk animate`` (NPZ, OBJ, MP4) with that head. Target: vertices under
5 % of the whole job. Without a real FLAME file the model is synthetic, with
FLAME's array sizes (5,023 vertices, 9,976 triangles, 400 blendshapes, 36 pose
correctives), so the arithmetic and the timing are the same.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_animate import make_conversation  # bench/ is on the path when run

from dualtalk_cli.testing import write_synthetic_flame  # the tests' model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flame", type=Path, help="a real FLAME model file")
    parser.add_argument("--seconds", type=float, default=60)
    args = parser.parse_args()

    from dualtalk_cli.audio import load_conversation, n_frames_for
    from dualtalk_cli.engines import load_engine
    from dualtalk_cli.heads import load_head

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        model = args.flame or write_synthetic_flame(folder / "flame_synthetic.npz")
        path_a, path_b = make_conversation(args.seconds, folder)
        a, b = load_conversation(path_a, path_b)
        motions = load_engine("procedural").animate(a, b, n_frames=n_frames_for(len(a)))
        head = load_head("flame", flame=model)
        start = time.perf_counter()
        frames = sum(len(c) for m in motions for c in head.iter_vertices(m))
        vertices = time.perf_counter() - start

        command = [sys.executable, "-m", "dualtalk_cli", "animate", str(path_a)]
        command += [str(path_b), "-o", str(folder / "out"), "--flame", str(model), "-q"]
        start = time.perf_counter()
        subprocess.run(command, check=True)
        whole = time.perf_counter() - start

    kind = "real" if args.flame else "synthetic"
    print(f"machine: {os.cpu_count()} cores; model: {kind}")
    print(f"FLAME vertices, {frames} frames (2 speakers): {vertices:.2f} s")
    print(f"whole animate of {args.seconds:g} s (NPZ, OBJ, MP4): {whole:.1f} s")
    print(f"vertices / whole: {100 * vertices / whole:.1f} % (target < 5 %)")


if __name__ == "__main__":
    main()
