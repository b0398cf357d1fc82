"""The DualTalk network in each precision: time, memory and deviation from fp32.

    python bench/bench_precision.py                      # 60 s, CPU: fp32 and bf16
    python bench/bench_precision.py --device cuda        # fp32, bf16 and fp16
    python bench/bench_precision.py --weights weights/DualTalk.pth

Without --weights, a checkpoint of the released layout and size with random
weights is written to a temporary folder first (deviations are then indicative
only). For each precision it runs one whole ``dualtalk animate -f npz`` process
(wall time, peak RSS) and, in this process, the engine's prediction alone (time,
and peak GPU memory on CUDA). Each precision's NPZ is compared with CPU fp32's
(the published arithmetic; on CUDA one more process computes it): the network's
56 channels (mean and max absolute difference) and the built-in head's vertices
(mean and max displacement in millimetres). ``--batching`` also times one
encoder on two tracks stacked in one forward against one at a time, the
measurement that decides whether batching clips pays.
Target on 2 cores: the 60 s NPZ in under 45 s in bf16.
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
from bench_animate import make_conversation, timed_process  # bench/ is on the path


def random_checkpoint(path: Path) -> Path:
    """The released layout with random weights, written by a child process, so
    that this one stays small (children it starts inherit its peak memory)."""
    code = (
        "import sys; from bench_dualtalk import random_checkpoint as r; r(sys.argv[1])"
    )
    bench = Path(__file__).parent
    subprocess.run([sys.executable, "-c", code, str(path)], cwd=bench, check=True)
    return path


def engine_alone(weights: Path, a: np.ndarray, b: np.ndarray, device: str, precision):
    """Seconds of one ``predict_pair`` (after a warm-up on 2 s) and peak GPU GB."""
    import torch

    from dualtalk_cli.engines.dualtalk import DualTalkEngine

    engine = DualTalkEngine(weights=weights, device=device, precision=precision)
    engine.predict_pair(a[:32000], b[:32000])  # kernels chosen, weights cast
    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    engine.predict_pair(a, b)
    if cuda:
        torch.cuda.synchronize()
    took = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else float("nan")
    del engine
    if cuda:
        torch.cuda.empty_cache()
    return took, peak


def batched_encoding(weights: Path, a, b, device: str, precision: str):
    """Seconds of one encoder on both tracks one at a time, then stacked in one
    forward (what batching clips would do), and the largest difference."""
    import torch

    from dualtalk_cli.engines.devices import computing_in
    from dualtalk_cli.engines.dualtalk import DualTalkEngine
    from dualtalk_cli.engines.dualtalk_model import normalise_audio

    engine = DualTalkEngine(weights=weights, device=device, precision=precision)
    encoder = engine.model.joint_encoder.audio_encoder1
    tracks = [normalise_audio(x)[None].to(device) for x in (a, b)]
    n_frames = -(-len(a) // 640)
    region = computing_in(precision, device)
    times = []
    with torch.inference_mode(), region:
        encoder(tracks[0][:, :32000], 50)  # warm-up
        for batches in ([tracks[0], tracks[1]], [torch.cat(tracks)]):
            start = time.perf_counter()
            outputs = [encoder(batch, n_frames, engine.window) for batch in batches]
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
            first = outputs[0][0]
            if len(batches) == 2:
                alone = first
        difference = float((alone - first).abs().max())
    return times[0], times[1], difference


def deviation(reference: Path, other: Path) -> dict[str, float]:
    """Differences of ``other``'s motion from ``reference``'s."""
    from dualtalk_cli.heads import load_head
    from dualtalk_cli.motion import load_motion

    first, second = load_motion(reference), load_motion(other)
    vectors = np.abs(first.to_network() - second.to_network())
    head = load_head("builtin")
    moved = [
        np.linalg.norm(x - y, axis=-1)
        for x, y in zip(head.iter_vertices(first), head.iter_vertices(second))
    ]
    millimetres = np.concatenate([m.ravel() for m in moved]) * 1000
    return {
        "mean |d|": float(vectors.mean()),
        "max |d|": float(vectors.max()),
        "max |ref|": float(np.abs(first.to_network()).max()),
        "mean mm": float(millimetres.mean()),
        "max mm": float(millimetres.max()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--weights", type=Path)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precisions", nargs="+")
    parser.add_argument("--skip-whole", action="store_true")
    parser.add_argument(
        "--batching", action="store_true", help="also time encoding two tracks at once"
    )
    args = parser.parse_args()
    cuda = args.device.startswith("cuda")
    precisions = args.precisions or (
        ["fp32", "bf16", "fp16"] if cuda else ["fp32", "bf16"]
    )
    from dualtalk_cli.audio import load_conversation
    from dualtalk_cli.engines.devices import default_precision

    print(
        f"machine: {os.cpu_count()} cores; device {args.device}, "
        f"default precision {default_precision(args.device)}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        weights = args.weights or random_checkpoint(folder / "DualTalk.pth")
        path_a, path_b = make_conversation(args.seconds, folder)
        a, b = load_conversation(path_a, path_b)
        rows = {precision: {} for precision in precisions}

        def animate(device: str, precision: str, out: Path) -> tuple[float, float]:
            command = [
                sys.executable, "-m", "dualtalk_cli", "animate",
                str(path_a), str(path_b), "-o", str(out), "-f", "npz",
                "--engine", "dualtalk", "--weights", str(weights),
                "--device", device, "--precision", precision, "--quiet",
            ]  # fmt: skip
            return timed_process(command)

        # Deviations are measured from CPU fp32, the published arithmetic.
        name = f"{path_a.stem}.npz"
        reference = folder / "fp32" / name
        if cuda and not args.skip_whole:
            wall, _ = animate("cpu", "fp32", folder / "cpu-fp32")
            reference = folder / "cpu-fp32" / name
            print(f"reference: CPU fp32 animate {wall:.1f} s", flush=True)
        # Whole processes first: a child forked from this process once it holds
        # a model would inherit its peak memory in the measurement.
        for precision in precisions if not args.skip_whole else ():
            row, out = rows[precision], folder / precision
            row["animate s"], row["peak MB"] = animate(args.device, precision, out)
            if reference.exists() and out / name != reference:
                row.update(deviation(reference, out / name))
            print(precision, {k: round(v, 4) for k, v in row.items()}, flush=True)
        for precision in precisions:
            row = rows[precision]
            row["engine s"], row["GPU GB"] = engine_alone(
                weights, a, b, args.device, precision
            )
            print(precision, {k: round(v, 4) for k, v in row.items()}, flush=True)
        if args.batching:
            for precision in precisions:
                one, stacked, difference = batched_encoding(
                    weights, a, b, args.device, precision
                )
                print(
                    f"  {precision}: one encoder on both tracks, one at a time "
                    f"{one:.1f} s, stacked in one forward {stacked:.1f} s "
                    f"({one / stacked:.2f}x); features differ by up to "
                    f"{difference:.2g}",
                    flush=True,
                )

    print(f"\n== {args.seconds:g} s of conversation on {args.device} ==")
    base = rows.get("fp32", {})
    for precision, row in rows.items():
        parts = [f"engine {row['engine s']:6.1f} s"]
        if "fp32" in rows and precision != "fp32":
            parts.append(f"({base['engine s'] / row['engine s']:.2f}x fp32)")
        if cuda:
            parts.append(f"peak GPU {row['GPU GB']:.2f} GiB")
        if "animate s" in row:
            parts.append(f"| animate -f npz {row['animate s']:6.1f} s")
            if "fp32" in rows and precision != "fp32":
                parts.append(f"({base['animate s'] / row['animate s']:.2f}x fp32)")
            parts.append(f"peak RSS {row['peak MB']:.0f} MB")
        if "mean |d|" in row:
            parts.append(
                f"| vs CPU fp32: mean {row['mean |d|']:.4f}, max {row['max |d|']:.4f} "
                f"(values up to {row['max |ref|']:.2f}); vertices mean "
                f"{row['mean mm']:.3f} mm, max {row['max mm']:.2f} mm"
            )
        print(f"  {precision:<5}", " ".join(parts))
    print("\ntarget: 60 s NPZ in under 45 s in bf16 on 2 cores")


if __name__ == "__main__":
    main()
