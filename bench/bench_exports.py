"""Benchmark the output formats: seconds and bytes of each for one conversation.

    python bench/bench_exports.py                 # 60 s, the built-in head
    python bench/bench_exports.py --flame FLAME   # also GLB on your FLAME model

The motion is the procedural engine's on the shipped example dialogue repeated
to the wanted length. Each format is written alone, through the same output
transaction as ``dualtalk animate``, and timed from its writer's start to its
rename. A FLAME GLB is measured on motion that uses all 50 expression
components with both signs (the largest file: 100 targets a head), on your
FLAME model, or on the tests' synthetic one (FLAME's sizes, made-up content).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_animate import make_conversation  # noqa: E402

TARGETS = {"csv": "< 10 % of mp4", "glb": "< 10 % of mp4", "glb size": "< 20 MB"}


def size_of(paths: list[Path]) -> int:
    total = 0
    for path in paths:
        if path.is_dir():
            total += sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
        else:
            total += path.stat().st_size
    return total


def write_one(folder: Path, name: str, conversation, head, output_format: str):
    """Seconds and bytes of one format written for ``conversation``."""
    from dualtalk_cli.options import OutputOptions
    from dualtalk_cli.outputs import OutputPlan
    from dualtalk_cli.writers import write_outputs

    plan = OutputPlan(folder / name, ("a", "b"), "a_b", (output_format,))
    options = OutputOptions(formats=(output_format,), overwrite=True)
    start = time.perf_counter()
    with plan.writing(overwrite=True) as transaction:
        write_outputs(transaction, plan, options, conversation, head)
    return time.perf_counter() - start, size_of(plan.all_paths())


def expressive(motion, speaker: int):
    """``motion`` with smooth FLAME expressions in all 50 components, both signs,
    different for each speaker (so that no target is shared between heads)."""
    frames = np.arange(motion.n_frames)[:, None] / motion.frames_per_second
    phases = np.linspace(0, 2 * np.pi, 50)[None, :] + speaker
    amplitude = 1.5 + 0.25 * speaker
    exp = amplitude * np.sin(2 * np.pi * 0.4 * frames + phases)
    return replace(motion, exp=exp.astype(np.float32))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--flame", type=Path, help="your FLAME model file")
    args = parser.parse_args()

    from dualtalk_cli.audio import load_conversation, n_frames_for, stereo
    from dualtalk_cli.engines import load_engine
    from dualtalk_cli.heads import load_head
    from dualtalk_cli.motion import Conversation
    from dualtalk_cli.testing import write_synthetic_flame

    print(f"machine: {os.cpu_count()} cores; python {sys.version.split()[0]}")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        a, b = load_conversation(*make_conversation(args.seconds, folder))
        engine = load_engine("procedural")
        motions = engine.animate(a, b, n_frames=n_frames_for(len(a)))
        conversation = Conversation(motions, stereo(a, b))
        builtin = load_head("builtin")
        print(f"\n== {args.seconds:g} s conversation, {motions[0].n_frames} frames ==")
        print(f"  {'format':<22}{'seconds':>9}{'MB':>9}{'x mp4 time':>12}")
        rows = {}
        for output_format in ("npz", "csv", "wav", "glb", "obj", "mp4"):
            rows[output_format] = write_one(
                folder, output_format, conversation, builtin, output_format
            )
        flame_model = args.flame or write_synthetic_flame(folder / "flame.npz")
        flame = load_head("flame", flame=flame_model)
        flame_conversation = Conversation(
            tuple(expressive(m, k) for k, m in enumerate(motions))
        )
        rows["glb (FLAME, 100 targets)"] = write_one(
            folder, "flame_glb", flame_conversation, flame, "glb"
        )
        video_seconds = rows["mp4"][0]
        for name, (seconds, size) in rows.items():
            ratio = f"{seconds / video_seconds:11.1%}"
            print(f"  {name:<22}{seconds:9.2f}{size / 1e6:9.2f} {ratio}")
    print("\ntargets:", "; ".join(f"{k} {v}" for k, v in TARGETS.items()))


if __name__ == "__main__":
    main()
