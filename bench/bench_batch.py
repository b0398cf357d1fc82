"""Benchmark ``dualtalk batch``: conversations per minute with 1 and 2 jobs.

    python bench/bench_batch.py                        # 10 clips of 20 s, jobs 1 and 2
    python bench/bench_batch.py --jobs 1 2 4 --loop    # and a shell loop of animate

The clips are 20 s windows of the shipped example dialogue, each starting at a
different point, written as ``clipN_speaker1.wav`` / ``clipN_speaker2.wav``.
Every run writes all outputs (NPZ, OBJ, MP4 at 512 px a head) into a fresh
folder. ``--loop`` also times one ``dualtalk animate`` process per clip, the
shell loop a batch replaces.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile
from bench_animate import timed_process  # bench/ is on the path when run

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"


def make_clips(folder: Path, count: int, seconds: float) -> list[tuple[Path, Path]]:
    """``count`` pairs of ``seconds`` each, cut from the example at shifted starts."""
    from dualtalk_cli.audio import SAMPLE_RATE, load_conversation

    a, b = load_conversation(
        EXAMPLES / "dialogue_speaker1.wav", EXAMPLES / "dialogue_speaker2.wav"
    )
    n = int(seconds * SAMPLE_RATE)
    folder.mkdir(parents=True, exist_ok=True)
    pairs = []
    for index in range(count):
        shift = index * len(a) // count
        paths = (
            folder / f"clip{index}_speaker1.wav",
            folder / f"clip{index}_speaker2.wav",
        )
        for path, track in zip(paths, (a, b)):
            rolled = np.roll(np.tile(track, 2), -shift)[:n]
            soundfile.write(path, rolled, SAMPLE_RATE)
        pairs.append(paths)
    return pairs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--jobs", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument(
        "--loop", action="store_true", help="also time a loop of animate processes"
    )
    parser.add_argument(
        "--lp-threads",
        type=int,
        default=None,
        help="also run the largest --jobs with LP_NUM_THREADS set to this",
    )
    args = parser.parse_args()

    dualtalk = [sys.executable, "-m", "dualtalk_cli"]
    print(f"machine: {os.cpu_count()} cores; python {sys.version.split()[0]}")
    print(
        f"{args.clips} clips of {args.seconds:g} s; NPZ + OBJ + MP4 at {args.size} px"
    )
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        pairs = make_clips(folder / "in", args.clips, args.seconds)
        runs = [(f"batch --jobs {jobs}", jobs, None) for jobs in args.jobs]
        if args.lp_threads:
            jobs = max(args.jobs)
            label = f"batch --jobs {jobs}, LP_NUM_THREADS={args.lp_threads}"
            runs.append((label, jobs, str(args.lp_threads)))
        for label, jobs, lp_threads in runs:
            out = folder / f"out-{len(results)}"
            env = dict(os.environ)
            if lp_threads:
                env["LP_NUM_THREADS"] = lp_threads
            command = [*dualtalk, "batch", str(folder / "in"), "-o", str(out)]
            command += ["-q", "--jobs", str(jobs), "--size", str(args.size)]
            results[label] = timed_process(command, env)
        if args.loop:
            out = folder / "out-loop"
            start = time.perf_counter()
            peak = 0.0
            for path_a, path_b in pairs:
                command = [*dualtalk, "animate", str(path_a), str(path_b), "-q"]
                command += ["-o", str(out / path_a.stem), "--size", str(args.size)]
                peak = max(peak, timed_process(command)[1])
            results["loop of animate"] = (time.perf_counter() - start, peak)

    baseline = results[f"batch --jobs {args.jobs[0]}"][0]
    print(
        f"\n{'run':<40} {'wall s':>8} {'clips/min':>10} {'vs first':>9} {'peak MB':>8}"
    )
    for label, (wall, peak) in results.items():
        per_minute = args.clips / wall * 60
        print(
            f"{label:<40} {wall:8.1f} {per_minute:10.2f} "
            f"{baseline / wall:8.2f}x {peak:8.0f}"
        )


if __name__ == "__main__":
    main()
