"""Benchmark ``dualtalk evaluate``: seconds per file on clips of the test set's length.

    python bench/bench_evaluate.py                 # 50 clips (100 files) of 750 frames

Ground truth is a smooth random walk per channel, written as DualTalk dataset NPZ
files; predictions are the ground truth plus noise, as published-style .npy
files. The DualTalk test set has 533 clips (1,066 files) of at most 750 frames.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

TEST_SET_FILES = 1066


def write_clips(folder: Path, clips: int, n_frames: int) -> tuple[Path, Path]:
    truth, predictions = folder / "gt", folder / "pred"
    truth.mkdir()
    predictions.mkdir()
    rng = np.random.default_rng(0)
    for clip in range(clips):
        for speaker in (1, 2):
            walk = np.cumsum(rng.normal(0, 0.02, (n_frames, 56)), axis=0)
            name = f"clip{clip}_speaker{speaker}"
            np.savez(
                truth / f"{name}.npz",
                exp=walk[:, :50].astype(np.float32),
                pose=np.concatenate([walk[:, 53:], walk[:, 50:53]], 1).astype(
                    np.float32
                ),
                shape=np.zeros((n_frames, 100), np.float32),
            )
            noisy = walk + rng.normal(0, 0.05, walk.shape)
            np.save(predictions / f"{name}.npy", noisy.astype(np.float32))
    return predictions, truth


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=50)
    parser.add_argument("--frames", type=int, default=750)
    args = parser.parse_args()

    from dualtalk_cli.evaluate import evaluate, format_text

    print(f"machine: {os.cpu_count()} cores; python {sys.version.split()[0]}")
    with tempfile.TemporaryDirectory() as tmp:
        predictions, truth = write_clips(Path(tmp), args.clips, args.frames)
        start = time.perf_counter()
        evaluation = evaluate(predictions, truth)
        seconds = time.perf_counter() - start
    files = evaluation.n_files
    print(f"{files} files of {args.frames} frames: {seconds:.1f} s")
    print(f"{seconds / files:.3f} s per file; the test set's {TEST_SET_FILES} files")
    print(f"would take about {seconds / files * TEST_SET_FILES / 60:.1f} min")
    print()
    print(format_text(evaluation))


if __name__ == "__main__":
    main()
