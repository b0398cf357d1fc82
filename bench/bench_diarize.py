"""Benchmark the diarizer: seconds and peak memory for one mixed recording.

    python bench/bench_diarize.py                    # 60 s and 10 min
    python bench/bench_diarize.py --seconds 60 --animate   # and a whole animate

The recording is a conversation of two espeak-ng voices (needs espeak-ng)
mixed to mono, with overlaps and backchannels, as the tests build it. Each
length is measured in fresh processes: the time of ``diarize`` (voice activity
included) after a warm-up call on 5 s, and the peak resident memory it adds to
a process that holds the recording already; then the whole split path (read
the file, decide the split, diarize, gate both tracks) and what it adds.
``--animate`` also times ``dualtalk animate`` of the two separate tracks
(procedural engine; NPZ, OBJ and MP4 as by default, and NPZ alone), for the
ratio the issue sets (diarization < 5 % of a procedural animate).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def make_recording(seconds: float, folder: Path) -> tuple[Path, Path, Path]:
    """A two-voice conversation of about ``seconds``: a.wav, b.wav, mix.wav."""
    from dualtalk_cli.audio import SAMPLE_RATE
    from dualtalk_cli.testing import (
        DISTINCT_VOICES,
        SPOKEN_DIALOGUE,
        write_spoken_dialogue,
    )

    once = write_spoken_dialogue(folder, SPOKEN_DIALOGUE, DISTINCT_VOICES)
    import soundfile

    tracks = [soundfile.read(path, dtype="float32")[0] for path in once]
    repeats = int(np.ceil(seconds * SAMPLE_RATE / len(tracks[0])))
    length = round(seconds * SAMPLE_RATE)
    for path, track in zip(once, tracks, strict=True):
        soundfile.write(path, np.tile(track, repeats)[:length], SAMPLE_RATE)
    return once


def measure(mix: str, whole: bool) -> dict:
    """Run in a fresh process: seconds and added peak memory of diarizing the
    recording ``mix`` (already read), or with ``whole`` of the whole split path:
    reading the file, deciding, diarizing and gating both tracks."""
    import resource

    import soundfile

    from dualtalk_cli.diarize import diarize
    from dualtalk_cli.recording import ConversationAudio

    audio, _ = soundfile.read(mix, dtype="float32")
    diarize(audio[: 5 * 16000])  # imports and first-call costs
    if whole:
        audio = audio[:0]
    with open("/proc/self/status") as status:
        rss = next(int(line.split()[1]) for line in status if line.startswith("VmRSS"))
    start = time.perf_counter()
    if whole:
        result = ConversationAudio.read(mix).speakers().diarization
    else:
        result = diarize(audio)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "audio_s": result.seconds,
        "seconds": seconds,
        "added_peak_mb": max(0, peak - rss) / 1024,
        "peak_mb": peak / 1024,
        "audio_mb": result.seconds * 16000 * 4 / 2**20,
        "speakers": result.speakers,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, nargs="*", default=[60.0, 600.0])
    parser.add_argument("--animate", action="store_true")
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    parser.add_argument("--whole", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure, args.whole)))
        return
    for seconds in args.seconds:
        with tempfile.TemporaryDirectory() as folder:
            a, b, mix = make_recording(seconds, Path(folder))
            found = {}
            for what, extra in (("diarize", []), ("whole split", ["--whole"])):
                command = [sys.executable, __file__, "--measure", str(mix), *extra]
                done = subprocess.run(
                    command, capture_output=True, text=True, check=True
                )
                found[what] = measured = json.loads(done.stdout)
                per_minute = measured["seconds"] / measured["audio_s"] * 60
                print(
                    f"{measured['audio_s']:.0f} s, {what}: {measured['seconds']:.2f} s "
                    f"({per_minute:.2f} s a minute), peak memory "
                    f"+{measured['added_peak_mb']:.0f} MB over the process before "
                    f"(the recording: {measured['audio_mb']:.0f} MB; peak "
                    f"{measured['peak_mb']:.0f} MB)",
                    flush=True,
                )
            if args.animate:
                env = {**os.environ, "PYTHONPATH": str(REPO)}
                cli = [sys.executable, "-m", "dualtalk_cli", "animate", str(a), str(b)]
                for label, extra in (
                    ("animate (NPZ, OBJ, MP4)", []),
                    ("animate -f npz", ["-f", "npz"]),
                ):
                    out = Path(folder) / label.replace(" ", "_")
                    start = time.perf_counter()
                    subprocess.run(
                        [*cli, "-o", str(out), "-q", "--engine", "procedural", *extra],
                        check=True,
                        env=env,
                    )
                    took = time.perf_counter() - start
                    share = found["diarize"]["seconds"] / took
                    print(f"  {label}: {took:.1f} s; diarizing is {share:.1%} of it")


if __name__ == "__main__":
    main()
