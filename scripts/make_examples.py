#!/usr/bin/env python3
"""Build the example two-person dialogue under ``examples/`` with espeak-ng.

Speaker 1 (voice ``en-us``) and speaker 2 (voice ``en+f3``) plan a weekend hike.
The script synthesises every utterance, places it on a fixed timeline with
pauses, two backchannel overlaps and one longer silence, and writes:

* ``examples/dialogue_speaker1.wav`` and ``examples/dialogue_speaker2.wav``:
  one headset microphone per speaker, mono, 16-bit PCM at espeak's native
  22050 Hz, each with a faint (-30 dB) bleed of the partner's voice;
* ``examples/dialogue_stereo.wav``: speaker 1 left, speaker 2 right;
* ``examples/dialogue.json``: the timeline (speaker, text, start, end).

The output is deterministic: running it twice gives identical bytes.

Usage: ``python scripts/make_examples.py [--out examples]``
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

SAMPLE_RATE = 22050
VOICES = {1: ("en-us", 175), 2: ("en+f3", 180)}  # speaker -> (voice, words/min)
BLEED_DB = -30.0
BLEED_DELAY_S = 0.003  # a metre or so of air between the two microphones
PEAK_DBFS = -3.0
TRIM_THRESHOLD = 0.01  # of full scale, to find where speech starts and ends
LEAD_IN_S = 0.5
TAIL_S = 0.6
MAX_TOTAL_BYTES = 5_000_000


@dataclass(frozen=True)
class Line:
    """One scripted utterance.

    ``gap`` is the pause in seconds after the end of all speech so far;
    a negative ``gap`` starts the line that long before the previous line
    ends (an overlap).
    """

    speaker: int
    text: str
    gap: float
    backchannel: bool = False


SCRIPT: tuple[Line, ...] = (
    Line(1, "Hey, are you still up for the hike on Saturday?", 0.0),
    Line(2, "Definitely. How about the ridge trail?", 0.4),
    Line(1, "The ridge trail? That's almost twelve miles.", 0.3),
    Line(2, "Mm-hm.", -0.8, backchannel=True),
    Line(2, "I know, but the view from the top is amazing.", 0.5),
    Line(1, "Yeah.", -0.6, backchannel=True),
    Line(1, "Okay, then we start early. Seven?", 0.25),
    Line(2, "Seven works. I'll pack sandwiches.", 0.6),
    Line(1, "Oh, wait. Do you still have my jacket?", 1.6),
    Line(2, "Yes, it's in my car.", 0.35),
    Line(1, "Great. See you Saturday.", 0.7),
    Line(2, "See you!", 0.3),
)


def synthesize(text: str, voice: str, speed: int, tmp: Path, index: int) -> np.ndarray:
    """Synthesise ``text`` with espeak-ng and return trimmed float64 samples."""
    wav = tmp / f"line{index:02d}.wav"
    subprocess.run(
        ["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(wav), text],
        check=True,
        capture_output=True,
    )
    audio, rate = sf.read(wav, dtype="float64", always_2d=True)
    if rate != SAMPLE_RATE:
        raise RuntimeError(f"espeak-ng wrote {rate} Hz, expected {SAMPLE_RATE}")
    audio = audio[:, 0]
    loud = np.flatnonzero(np.abs(audio) > TRIM_THRESHOLD)
    if loud.size == 0:
        raise RuntimeError(f"espeak-ng produced silence for {text!r}")
    return audio[loud[0] : loud[-1] + 1]


def place(clips: list[np.ndarray]) -> list[int]:
    """Return the start sample of every clip on the shared timeline."""
    starts: list[int] = []
    prev_end = 0
    latest_end = 0
    for i, (line, clip) in enumerate(zip(SCRIPT, clips, strict=True)):
        if i == 0:
            start = round(LEAD_IN_S * SAMPLE_RATE)
        elif line.gap < 0:
            start = prev_end + round(line.gap * SAMPLE_RATE)
        else:
            start = latest_end + round(line.gap * SAMPLE_RATE)
        starts.append(start)
        prev_end = start + len(clip)
        latest_end = max(latest_end, prev_end)
    return starts


def overlaps(turns: list[dict]) -> list[dict]:
    """Return the intervals where both speakers talk at once."""
    found = []
    for a in turns:
        for b in turns:
            if a["speaker"] != 1 or b["speaker"] != 2:
                continue
            start = max(a["start"], b["start"])
            end = min(a["end"], b["end"])
            if end > start:
                pair = sorted([a["turn"], b["turn"]])
                found.append({"start": start, "end": end, "turns": pair})
    return sorted(found, key=lambda o: o["start"])


def to_pcm16(audio: np.ndarray) -> np.ndarray:
    """Convert float samples in [-1, 1] to int16 deterministically."""
    return np.clip(np.round(audio * 32767.0), -32768, 32767).astype(np.int16)


def build(out_dir: Path) -> dict:
    """Synthesise the dialogue, write the example files and return the record."""
    if shutil.which("espeak-ng") is None:
        raise SystemExit("espeak-ng not found; install it (apt-get install espeak-ng)")
    with tempfile.TemporaryDirectory(prefix="dualtalk_examples_") as tmp:
        clips = [
            synthesize(line.text, *VOICES[line.speaker], Path(tmp), i)
            for i, line in enumerate(SCRIPT)
        ]
    starts = place(clips)
    total = max(s + len(c) for s, c in zip(starts, clips, strict=True)) + round(
        TAIL_S * SAMPLE_RATE
    )

    dry = {1: np.zeros(total), 2: np.zeros(total)}
    for line, start, clip in zip(SCRIPT, starts, clips, strict=True):
        dry[line.speaker][start : start + len(clip)] += clip

    bleed_gain = 10.0 ** (BLEED_DB / 20.0)
    delay = round(BLEED_DELAY_S * SAMPLE_RATE)
    mics = {}
    for me, partner in ((1, 2), (2, 1)):
        leak = np.zeros(total)
        leak[delay:] = dry[partner][: total - delay] * bleed_gain
        mics[me] = dry[me] + leak
    # One gain for both tracks keeps the voices' relative levels.
    peak = max(np.max(np.abs(mics[1])), np.max(np.abs(mics[2])))
    gain = 10.0 ** (PEAK_DBFS / 20.0) / peak
    pcm = {k: to_pcm16(v * gain) for k, v in mics.items()}

    out_dir.mkdir(parents=True, exist_ok=True)
    sf.write(out_dir / "dialogue_speaker1.wav", pcm[1], SAMPLE_RATE, "PCM_16")
    sf.write(out_dir / "dialogue_speaker2.wav", pcm[2], SAMPLE_RATE, "PCM_16")
    stereo = np.stack([pcm[1], pcm[2]], axis=1)
    sf.write(out_dir / "dialogue_stereo.wav", stereo, SAMPLE_RATE, "PCM_16")

    turns = [
        {
            "turn": i,
            "speaker": line.speaker,
            "text": line.text,
            "start": round(start / SAMPLE_RATE, 3),
            "end": round((start + len(clip)) / SAMPLE_RATE, 3),
            "backchannel": line.backchannel,
        }
        for i, (line, start, clip) in enumerate(zip(SCRIPT, starts, clips, strict=True))
    ]
    record = {
        "description": "Two people plan a weekend hike (espeak-ng, synthetic).",
        "sample_rate": SAMPLE_RATE,
        "duration": round(total / SAMPLE_RATE, 3),
        "files": {
            "speaker1": "dialogue_speaker1.wav",
            "speaker2": "dialogue_speaker2.wav",
            "stereo": "dialogue_stereo.wav",
        },
        "speakers": {
            str(k): {"voice": v, "speed_wpm": s, "stereo_channel": ch}
            for (k, (v, s)), ch in zip(VOICES.items(), ("left", "right"), strict=True)
        },
        "bleed_db": BLEED_DB,
        "peak_dbfs": PEAK_DBFS,
        "turns": turns,
        "overlaps": overlaps(turns),
    }
    text = json.dumps(record, indent=2, ensure_ascii=False) + "\n"
    (out_dir / "dialogue.json").write_text(text, encoding="utf-8")
    return record


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, build the examples and print a short summary."""
    root = Path(__file__).resolve().parent.parent
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=root / "examples")
    args = parser.parse_args(argv)

    record = build(args.out)
    names = [*record["files"].values(), "dialogue.json"]
    sizes = {n: (args.out / n).stat().st_size for n in names}
    print(f"dialogue: {record['duration']:.2f} s, {len(record['turns'])} turns")
    for t in record["turns"]:
        mark = " (backchannel)" if t["backchannel"] else ""
        print(
            f"  {t['start']:6.2f}-{t['end']:6.2f}  S{t['speaker']}: {t['text']}{mark}"
        )
    for o in record["overlaps"]:
        print(f"  overlap {o['start']:.2f}-{o['end']:.2f} s (turns {o['turns']})")
    for n, size in sizes.items():
        print(f"  {args.out / n}: {size / 1e6:.2f} MB")
    if sum(sizes.values()) > MAX_TOTAL_BYTES:
        print("error: examples are larger than 5 MB", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
