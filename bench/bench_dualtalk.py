"""Benchmark the DualTalk engine: real configuration, random weights, on this machine.

    python bench/bench_dualtalk.py --seconds 10 60 600
    python bench/bench_dualtalk.py --weights weights/DualTalk.pth --seconds 60

Without --weights, a checkpoint of the released layout and size (2.6 GB) with
random weights is written to a temporary folder first. For each length it
prints the engine's stages (model load, encoding both tracks with both
encoders, the alternating passes) run in this process, then one whole
``dualtalk animate`` process (NPZ, OBJ, MP4 up to 2 minutes; NPZ and MP4
beyond) with its wall time and peak memory. Targets on 2 cores: the whole
animate of 60 s in at most 3 minutes; peak memory under 6 GB for any length.
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from pathlib import Path

from bench_animate import make_conversation, whole_run  # bench/ is on the path


def random_checkpoint(path: Path) -> Path:
    import torch

    from dualtalk_cli.engines.dualtalk_model import (
        DualTalkConfig,
        DualTalkModel,
        to_released_names,
    )

    torch.manual_seed(0)
    model = DualTalkModel(DualTalkConfig())
    torch.save(to_released_names(model.state_dict()), path)
    return path


def engine_stages(weights: Path, path_a: Path, path_b: Path, passes: int) -> dict:
    import torch

    from dualtalk_cli.audio import load_conversation, n_frames_for
    from dualtalk_cli.engines.dualtalk import DualTalkEngine
    from dualtalk_cli.engines.dualtalk_model import normalise_audio
    from dualtalk_cli.motion import N_NETWORK

    times = {}
    start = time.perf_counter()
    engine = DualTalkEngine(weights=weights, passes=passes, device="cpu")
    times["load"] = time.perf_counter() - start
    a, b = load_conversation(path_a, path_b)
    n_frames = n_frames_for(len(a))
    with torch.inference_mode():
        start = time.perf_counter()
        na, nb = normalise_audio(a)[None], normalise_audio(b)[None]
        a_target, b_partner = engine.model.encode_audio(na, nb, engine.window)
        b_target, a_partner = engine.model.encode_audio(nb, na, engine.window)
        times["encode x4"] = time.perf_counter() - start
        start = time.perf_counter()
        motion_b = torch.zeros(1, n_frames, N_NETWORK)
        for _ in range(passes):
            motion_a = engine.model(a_target, b_partner, motion_b)
            motion_b = engine.model(b_target, a_partner, motion_a)
        times[f"passes x{passes}"] = time.perf_counter() - start
        # How much each further pass still changes the motion (mean |change|).
        previous = (motion_a, motion_b)
        for extra in range(passes + 1, passes + 4):
            motion_a = engine.model(a_target, b_partner, motion_b)
            motion_b = engine.model(b_target, a_partner, motion_a)
            change = sum(
                float((new - old).abs().mean())
                for new, old in zip((motion_a, motion_b), previous)
            )
            times[f"change at pass {extra}"] = change / 2
            previous = (motion_a, motion_b)
        # Whole-clip encoding of long audio is what windows avoid: compare on
        # clips of up to a minute only.
        if engine.window.frames < n_frames <= 1500:
            # Windowed against whole-clip encoding of the same audio.
            whole = engine.model.joint_encoder.audio_encoder1(na, n_frames)
            windowed = a_target
            times["window diff"] = float(
                (windowed - whole).abs().mean() / whole.abs().mean()
            )
    times["peak RSS GB"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, nargs="+", default=[10, 60, 600])
    parser.add_argument("--weights", type=Path)
    parser.add_argument("--passes", type=int, default=2)
    parser.add_argument("--skip-whole", action="store_true")
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        weights = args.weights
        if weights is None:
            start = time.perf_counter()
            weights = random_checkpoint(folder / "DualTalk.pth")
            size, took = weights.stat().st_size / 1e9, time.perf_counter() - start
            print(f"random checkpoint: {size:.2f} GB in {took:.0f} s")
        for seconds in args.seconds:
            path_a, path_b = make_conversation(seconds, folder)
            print(f"\n== {seconds:g} s of conversation ==")
            stages = engine_stages(weights, path_a, path_b, args.passes)
            for stage, value in stages.items():
                unit = " s" if "x" in stage or stage == "load" else ""
                print(f"  {stage:<20} {value:10.4g}{unit}")
            if not args.skip_whole:
                obj = seconds <= 120
                formats = ["npz", "obj", "mp4"] if obj else ["npz", "mp4"]
                options = ("--weights", str(weights))
                wall, peak = whole_run(path_a, path_b, folder / "out", formats, options)
                label = "NPZ, OBJ, MP4" if obj else "NPZ, MP4"
                print(f"  animate ({label}) {wall:8.1f} s, peak memory {peak:.0f} MB")


if __name__ == "__main__":
    main()
