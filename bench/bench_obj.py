"""OBJ writing: the printf-style formatter against dualtalk's numpy one.

    python bench/bench_obj.py                 # 60 s of conversation, 3,000 files

The vertices are the procedural engine's motion on the built-in head (5,316
vertices), the shipped example dialogue repeated to the length asked. It times
formatting alone (old: one ``"v %.5f %.5f %.5f"`` string formatted with all the
frame's numbers, as the writer did before; new: ``writers.vertex_lines``),
checks that every frame's bytes are the same, and times the whole OBJ writer
(formatting and 3,000 files) through an output transaction, as ``animate`` does.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from bench_animate import make_conversation  # bench/ is on the path

OLD_LINE = "v %.5f %.5f %.5f\n"


def old_vertex_lines(vertices: np.ndarray) -> bytes:
    """The formatter the OBJ writer used before: Python's printf formatting."""
    flat = np.asarray(vertices, np.float64).ravel().tolist()
    return ((OLD_LINE * len(vertices)) % tuple(flat)).encode()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60)
    args = parser.parse_args()
    from dualtalk_cli.audio import load_conversation, n_frames_for
    from dualtalk_cli.engines import load_engine
    from dualtalk_cli.heads import load_head
    from dualtalk_cli.motion import Conversation
    from dualtalk_cli.options import OutputOptions
    from dualtalk_cli.outputs import OutputPlan, OutputTransaction
    from dualtalk_cli.writers import ObjWriter, vertex_lines

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        a, b = load_conversation(*make_conversation(args.seconds, folder))
        motions = load_engine("procedural").animate(a, b, n_frames=n_frames_for(len(a)))
        head = load_head("builtin")
        frames = [v for m in motions for chunk in head.iter_vertices(m) for v in chunk]
        times = {}
        for name, formatter in (("old", old_vertex_lines), ("new", vertex_lines)):
            start = time.perf_counter()
            texts = [formatter(vertices) for vertices in frames]
            times[name] = time.perf_counter() - start
            if name == "old":
                expected = texts
        same = all(x == y for x, y in zip(texts, expected))
        plan = OutputPlan(folder / "out", ("a", "b"), "a_b", ("obj",))
        (folder / "out").mkdir()
        with OutputTransaction() as transaction:  # temporaries, removed after
            writer = ObjWriter(plan, OutputOptions(), transaction)
            start = time.perf_counter()
            writer.write(Conversation(motions, None), head)
            whole = time.perf_counter() - start

    n = len(frames)
    print(f"{n} frames of {len(frames[0])} vertices, both speakers, {args.seconds:g} s")
    for name in ("old", "new"):
        per = times[name] / n * 1000
        print(f"  {name}: {times[name]:6.2f} s formatting, {per:.2f} ms a frame")
    print(f"  new against old: {times['old'] / times['new']:.2f}x faster")
    print(f"  bytes identical in every frame: {same}")
    print(f"  whole OBJ writer (format + {n} files): {whole:.2f} s")


if __name__ == "__main__":
    main()
