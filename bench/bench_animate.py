"""Benchmark ``dualtalk animate``: seconds per stage, real-time factor, peak memory.

    python bench/bench_animate.py                  # 60 s and 10 min conversations
    python bench/bench_animate.py --seconds 60     # only 60 s

The conversation is the shipped example dialogue repeated to the wanted length.
Per-stage figures come from running each stage alone in this process; the whole
job runs as a fresh ``dualtalk animate`` process, timed and measured for peak
resident memory (its largest process, ffmpeg included).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
TARGETS = {
    "render+encode fps at 1024x512": ">= 25",
    "whole animate of 60 s (NPZ, OBJ, MP4)": "<= 90 s",
    "peak memory, 10 min vs 60 s": "<= +200 MB",
    "procedural engine's share of a 60 s animate": "< 2 %",
}


def make_conversation(seconds: float, folder: Path) -> tuple[Path, Path]:
    """Write two 16 kHz tracks of ``seconds`` by repeating the example dialogue."""
    from dualtalk_cli.audio import SAMPLE_RATE, load_conversation

    a, b = load_conversation(
        EXAMPLES / "dialogue_speaker1.wav", EXAMPLES / "dialogue_speaker2.wav"
    )
    n = int(seconds * SAMPLE_RATE)
    repeats = int(np.ceil(n / len(a)))
    paths = (folder / f"a{int(seconds)}.wav", folder / f"b{int(seconds)}.wav")
    for path, track in zip(paths, (a, b)):
        soundfile.write(path, np.tile(track, repeats)[:n], SAMPLE_RATE)
    return paths


def timed(function, *args, **kwargs):
    start = time.perf_counter()
    result = function(*args, **kwargs)
    return result, time.perf_counter() - start


def stage_times(
    path_a: Path, path_b: Path, folder: Path, size: int, heavy: bool
) -> dict[str, float]:
    """Seconds for each stage run on its own; ``heavy`` adds OBJ and video."""
    from dualtalk_cli.audio import load_conversation, n_frames_for, stereo
    from dualtalk_cli.engines import load_engine
    from dualtalk_cli.heads import load_head
    from dualtalk_cli.motion import Conversation
    from dualtalk_cli.options import OutputOptions
    from dualtalk_cli.outputs import OutputPlan, OutputTransaction
    from dualtalk_cli.render import Renderer
    from dualtalk_cli.writers import CsvWriter, Mp4Writer, NpzWriter, ObjWriter

    folder.mkdir(parents=True, exist_ok=True)
    times = {}
    (a, b), times["audio"] = timed(load_conversation, path_a, path_b)
    engine = load_engine("procedural")
    n_frames = n_frames_for(len(a))
    motions, times["engine"] = timed(engine.animate, a, b, n_frames=n_frames)
    head = load_head("builtin")
    conversation = Conversation(motions, stereo(a, b))
    plan = OutputPlan(folder, ("a", "b"), "a_b", ("npz", "obj", "mp4", "csv"))
    options = OutputOptions(size=size, overwrite=True)
    # Every writer's files go to temporaries that the transaction removes.
    with OutputTransaction() as transaction:

        def write(writer: type, *args) -> float:
            return timed(writer(plan, options, transaction).write, conversation, *args)[
                1
            ]

        times["npz"] = write(NpzWriter)
        times["csv"] = write(CsvWriter)
        _, times["vertices"] = timed(
            lambda: [sum(len(c) for c in head.iter_vertices(m)) for m in motions]
        )
        if not heavy:
            return times
        times["obj"] = write(ObjWriter, head)

        def render_only() -> None:
            faces, rest = [head.faces] * 2, [head.rest_vertices] * 2
            colors = [head.vertex_colors] * 2
            with Renderer(faces, rest, size=size, vertex_colors=colors) as r:
                for chunks in zip(*(head.iter_vertices(m) for m in motions)):
                    for i in range(len(chunks[0])):
                        r.draw([chunks[0][i], chunks[1][i]])

        _, times["render"] = timed(render_only)
        times["render+encode"] = write(Mp4Writer, head)
    return times


def whole_run(
    path_a: Path,
    path_b: Path,
    out: Path,
    formats: list[str],
    options: tuple[str, ...] = (),
) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of one ``dualtalk animate`` process."""
    flags = [*options] + ([] if "obj" in formats else ["--no-obj"])
    command = [
        sys.executable,
        "-m",
        "dualtalk_cli",
        "animate",
        str(path_a),
        str(path_b),
    ]
    command += ["-o", str(out), "--overwrite", "--quiet", *flags]
    return timed_process(command)


def timed_process(
    command: list[str], env: dict[str, str] | None = None
) -> tuple[float, float]:
    """Wall seconds and the largest process's peak RSS (MB) of one command."""
    code, wall, peak = measured_process(command, env)
    if code != 0:
        raise SystemExit(f"failed: {' '.join(command)}")
    return wall, peak


def measured_process(
    command: list[str], env: dict[str, str] | None = None, **options
) -> tuple[int, float, float]:
    """Exit code, wall seconds and peak RSS (MB) of one command's largest process."""
    start = time.perf_counter()
    process = subprocess.Popen(command, env=env, **options)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - start
    return os.waitstatus_to_exitcode(status), wall, usage.ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, nargs="+", default=[60, 600])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--skip-stages", action="store_true")
    parser.add_argument(
        "--full", action="store_true", help="time OBJ and video stages of long runs too"
    )
    args = parser.parse_args()

    print(f"machine: {os.cpu_count()} cores; python {sys.version.split()[0]}")
    peaks = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for seconds in args.seconds:
            path_a, path_b = make_conversation(seconds, folder)
            print(f"\n== {seconds:g} s conversation ==")
            # 10 minutes of OBJ is ~10 GB of text: long runs measure NPZ + MP4.
            formats = ["npz", "obj", "mp4"] if seconds <= 120 else ["npz", "mp4"]
            if not args.skip_stages:
                heavy = seconds <= 120 or args.full
                times = stage_times(path_a, path_b, folder / "s", args.size, heavy)
                for stage, value in times.items():
                    print(f"  {stage:<15} {value:8.2f} s")
                frames = round(seconds * 25)
                for stage in ("render", "render+encode"):
                    if stage in times:
                        print(f"  {stage:<15} {frames / times[stage]:8.1f} frames/s")
            wall, peak = whole_run(path_a, path_b, folder / "out", formats)
            label = "+".join(formats)
            print(
                f"  animate ({label}) {wall:8.1f} s, "
                f"real-time factor {wall / seconds:.2f}"
            )
            if not args.skip_stages:
                share = times["engine"] / wall
                print(f"  engine's share  {share:8.1%} of the whole animate")
            print(f"  peak memory      {peak:8.0f} MB")
            if seconds > 120:
                short = min(args.seconds)
                s_a, s_b = make_conversation(short, folder)
                _, short_peak = whole_run(s_a, s_b, folder / "out_short", formats)
                print(
                    f"  peak memory of {short:g} s with the same outputs: "
                    f"{short_peak:.0f} MB (difference {peak - short_peak:+.0f} MB)"
                )
            peaks[seconds] = peak
    print("\ntargets:", "; ".join(f"{k} {v}" for k, v in TARGETS.items()))


if __name__ == "__main__":
    main()
