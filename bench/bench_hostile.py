"""Benchmark hostile inputs: time and peak memory until each is handled.

    python bench/bench_hostile.py              # a 2 GiB bomb; 1 GiB: --gigabytes 1

Each case runs as a fresh ``dualtalk`` process, timed and measured for peak
resident memory (its largest process):

- an NPZ of 30 frames whose ignored ``tex`` key holds gigabytes of zeros that
  compress to a few megabytes (rendered: the bomb must cost nothing);
- an NPZ whose ``eyes`` declare 10^8 frames (refused before reading);
- a 30 kB WAV of 30,000 samples at 1 Hz, read as 8.3 hours (refused at once);
- a sparse WAV whose header claims 5 hours (refused at once);
- for scale, the same render of a plain 30-frame dataset file.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
from bench_animate import measured_process  # bench/ is on the path when run

from dualtalk_cli.testing import (
    write_dataset_npz,
    write_dialogue,
    write_npz_bomb,
    write_wav_header,
)


def dualtalk(*args: object) -> list[str]:
    return [sys.executable, "-m", "dualtalk_cli", *map(os.fspath, args)]


def measured(label: str, command: list[str]) -> str:
    """One row: exit code, wall seconds and peak RSS; stderr's last line."""
    code, wall, peak = measured_process(
        command, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL
    )
    return f"| {label} | {code} | {wall:.2f} s | {peak:.0f} MB |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gigabytes", type=float, default=2.0)
    args = parser.parse_args()
    rows = ["| case | exit | wall time | peak memory |", "|---|---|---|---|"]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        plain = write_dataset_npz(folder / "plain.npz", 30)
        bomb = write_npz_bomb(folder / "bomb.npz", "tex", args.gigabytes)
        declared = write_dataset_npz(folder / "declared.npz", 30)
        header = {"descr": "<f4", "fortran_order": False, "shape": (10**8, 6)}
        with zipfile.ZipFile(declared, "a") as archive:
            with archive.open("eyes.npy", "w") as member:
                np.lib.format.write_array_header_2_0(member, header)
        slow = write_wav_header(folder / "slow.wav", 1, 30_000)
        long = write_wav_header(folder / "long.wav", 8000, 8000 * 5 * 3600)
        _, partner = write_dialogue(folder, seconds=2.0)
        size_mb = bomb.stat().st_size / 1e6
        cases = [
            ("render, plain 30-frame NPZ", plain),
            (
                f"render, bomb NPZ ({size_mb:.1f} MB, {args.gigabytes:g} GiB in tex)",
                bomb,
            ),
            ("render, NPZ declaring 10^8 frames", declared),
        ]
        for label, path in cases:
            out = folder / f"{path.stem}.mp4"
            rows.append(
                measured(label, dualtalk("render", path, "-o", out, "--size", "64"))
            )
        for label, path in (
            ("animate, 30 kB WAV at 1 Hz (8.3 h)", slow),
            ("animate, WAV header claiming 5 h", long),
        ):
            command = dualtalk(
                "animate", path, partner, "-o", folder / "o", "--no-video"
            )
            rows.append(measured(label, command))
    print(f"machine: {os.cpu_count()} cores")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
