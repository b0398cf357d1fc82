"""Benchmark ``dualtalk batch --ray`` on a Ray cluster on this machine.

    python bench/bench_cluster.py                  # 10 clips of 20 s, NPZ + OBJ + MP4
    python bench/bench_cluster.py --formats npz    # the engine alone

Runs ``batch --jobs 1``, ``batch --jobs 2`` and ``batch --ray`` on a Ray head
started here beforehand (``ray start --head --block``, one worker per CPU), on
the same clips as ``bench_batch.py``, each into a fresh folder, and reports
conversations per minute, the ratio to ``--jobs 1``, and the driver's own CPU
time per clip (the ``dualtalk`` process that hands clips out and reports, not
the workers). Starting the cluster is timed on its own.
"""

from __future__ import annotations

import argparse
import os
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_batch import make_clips  # bench/ is on the path when run

REPO = Path(__file__).resolve().parents[1]


def start_head(folder: str) -> tuple[subprocess.Popen, str, float]:
    """A Ray head on loopback: the process, its address, seconds to start."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log = Path(folder) / "start.log"
    ray = Path(sys.executable).with_name("ray")
    command = [str(ray), "start", "--head", "--block", f"--port={port}",
               "--include-dashboard=false", "--disable-usage-stats",
               f"--temp-dir={folder}"]  # fmt: skip
    started = time.perf_counter()
    with open(log, "w") as output:
        head = subprocess.Popen(
            command, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
        )
    while "Ray runtime started" not in log.read_text():
        if head.poll() is not None:
            raise SystemExit(f"ray start failed:\n{log.read_text()}")
        time.sleep(0.2)
    return head, f"127.0.0.1:{port}", time.perf_counter() - started


def timed_batch(arguments: list[str]) -> tuple[float, float]:
    """Wall seconds and the CPU seconds of the ``dualtalk`` process itself."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    command = [sys.executable, "-m", "dualtalk_cli", "batch", *arguments, "-q"]
    subprocess.run(command, check=True, cwd=REPO)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--formats", default="npz,obj,mp4")
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} cores; python {sys.version.split()[0]}")
    print(f"{args.clips} clips of {args.seconds:g} s; {args.formats}")
    with (
        tempfile.TemporaryDirectory() as tmp,
        tempfile.TemporaryDirectory(prefix="rb", dir="/tmp") as ray_folder,
    ):
        folder = Path(tmp)
        make_clips(folder / "in", args.clips, args.seconds)
        head, address, start_seconds = start_head(ray_folder)
        print(f"ray start --head: {start_seconds:.1f} s")
        try:
            runs = {
                "batch --jobs 1": ["--jobs", "1"],
                "batch --jobs 2": ["--jobs", "2"],
                "batch --ray (a worker per CPU)": ["--ray", address],
            }
            results = {}
            for name, extra in runs.items():
                out = folder / name.replace(" ", "_")
                arguments = [str(folder / "in"), "-o", str(out), "-f", args.formats]
                wall, cpu = timed_batch([*arguments, *extra])
                results[name] = (wall, cpu)
                rate = args.clips / wall * 60
                ratio = results["batch --jobs 1"][0] / wall
                driver = f"{cpu / args.clips:.2f} s" if "--ray" in name else "-"
                print(
                    f"{name}: {wall:.1f} s, {rate:.2f} clips/min, {ratio:.2f}x "
                    f"--jobs 1; driver CPU per clip {driver}",
                    flush=True,
                )
        finally:
            head.send_signal(signal.SIGTERM)
            head.wait(timeout=60)


if __name__ == "__main__":
    main()
