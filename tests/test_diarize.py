"""One recording of both people: split by channel or by voice, RTTM out and in."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import soundfile

from conftest import assert_one_line_error, leftovers, run_cli
from dualtalk_cli import Diarization, format_rttm, read_rttm
from dualtalk_cli.audio import SAMPLE_RATE
from dualtalk_cli.diarize import Turn, diarize
from dualtalk_cli.recording import is_one_mix, speaker_tracks
from dualtalk_cli.testing import (
    DISTINCT_VOICES,
    SIMILAR_VOICES,
    SPOKEN_DIALOGUE,
    write_spoken_dialogue,
)


@pytest.fixture(scope="module")
def espeak():
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (bash scripts/setup.sh --test)")


def speaking(path) -> np.ndarray:
    with np.load(path) as data:
        return data["speaking"]


def animate_npz(*args):
    result = run_cli("animate", *args, "--format", "npz", "--engine", "procedural")
    assert result.returncode == 0, result.stderr
    return result


def agreement(folder_two, stems_two, folder_mix) -> tuple[float, float]:
    """Per-frame agreement of the heads' speaking flags: (A to A and B to B,
    the swapped mapping), averaged over both heads."""
    truth = [speaking(folder_two / f"{stem}.npz") for stem in stems_two]
    found = [speaking(folder_mix / f"mix_speaker{k}.npz") for k in (1, 2)]
    same = np.mean([np.mean(f == t) for f, t in zip(found, truth, strict=True)])
    swapped = np.mean(
        [np.mean(f == t) for f, t in zip(found, truth[::-1], strict=True)]
    )
    return float(same), float(swapped)


# Similar voices are harder: measured 0.96 (distinct) and 0.90 (similar).
@pytest.mark.parametrize(
    "voices, least",
    [(DISTINCT_VOICES, 0.90), (SIMILAR_VOICES, 0.85)],
    ids=["distinct", "similar"],
)
def test_mixed_recording_speaks_as_the_two_tracks_do(espeak, tmp_path, voices, least):
    a, b, mix = write_spoken_dialogue(tmp_path, SPOKEN_DIALOGUE, voices)
    animate_npz(a, b, "-o", tmp_path / "two")
    result = animate_npz(mix, "-o", tmp_path / "mixed")
    assert "two voices" in result.stderr
    same, swapped = agreement(tmp_path / "two", ("a", "b"), tmp_path / "mixed")
    # Speaker A (left) is whoever speaks first: the mapping is A to A.
    assert same >= least and same > swapped, (same, swapped)

    # The RTTM written beside the outputs, read back, gives the same outputs.
    rttm = tmp_path / "mixed" / "mix.rttm"
    lines = rttm.read_text().splitlines()
    assert lines[0].split()[7] == "A" and {line.split()[7] for line in lines} == {
        "A",
        "B",
    }
    animate_npz(mix, "-o", tmp_path / "again", "--diarization", rttm)
    for name in ("mix_speaker1.npz", "mix_speaker2.npz", "mix.rttm"):
        assert (tmp_path / "again" / name).read_bytes() == (
            tmp_path / "mixed" / name
        ).read_bytes(), name


@pytest.mark.parametrize("voice", [0, 1], ids=["man", "woman"])
def test_one_voice_is_not_split_in_two(espeak, tmp_path, voice):
    one_voice = [
        (0, text, gap if gap is not None else 0.5) for _, text, gap in SPOKEN_DIALOGUE
    ]
    voices = (DISTINCT_VOICES[voice],) * 2
    _, _, mix = write_spoken_dialogue(tmp_path, one_voice, voices)
    result = animate_npz(mix, "-o", tmp_path / "out")
    assert "one voice" in result.stderr
    a, b = (speaking(tmp_path / "out" / f"mix_speaker{k}.npz") for k in (1, 2))
    assert a.mean() > 0.5 and not b.any()
    speakers = {line.split()[7] for line in (tmp_path / "out" / "mix.rttm").open()}
    assert speakers == {"A"}


def test_distinct_stereo_is_split_by_channel_as_before(espeak, tmp_path):
    a, b, _ = write_spoken_dialogue(tmp_path, SPOKEN_DIALOGUE[:4], DISTINCT_VOICES)
    left, _ = soundfile.read(a, dtype="float32")
    right, _ = soundfile.read(b, dtype="float32")
    # Each microphone also hears the other person, 20 dB down.
    stereo = np.stack([left + 0.1 * right, right + 0.1 * left], axis=1)
    soundfile.write(tmp_path / "talk.wav", stereo, SAMPLE_RATE, subtype="FLOAT")
    soundfile.write(tmp_path / "left.wav", stereo[:, 0], SAMPLE_RATE, subtype="FLOAT")
    soundfile.write(tmp_path / "right.wav", stereo[:, 1], SAMPLE_RATE, subtype="FLOAT")
    animate_npz(tmp_path / "talk.wav", "-o", tmp_path / "auto")
    animate_npz(
        tmp_path / "talk.wav", "-o", tmp_path / "channels", "--split", "channels"
    )
    animate_npz(tmp_path / "left.wav", tmp_path / "right.wav", "-o", tmp_path / "files")
    assert sorted(p.name for p in (tmp_path / "auto").iterdir()) == [
        "talk_speaker1.npz",
        "talk_speaker2.npz",
    ]
    for k, stem in ((1, "left"), (2, "right")):
        made = (tmp_path / "auto" / f"talk_speaker{k}.npz").read_bytes()
        assert made == (tmp_path / "channels" / f"talk_speaker{k}.npz").read_bytes()
        assert made == (tmp_path / "files" / f"{stem}.npz").read_bytes()

    # Forced, the same file is split by voice instead, and says who speaks when.
    animate_npz(tmp_path / "talk.wav", "-o", tmp_path / "voices", "--split", "diarize")
    assert (tmp_path / "voices" / "talk.rttm").is_file()


def test_stereo_rule_tells_one_mix_from_one_voice_per_channel(espeak, tmp_path):
    a, b, _ = write_spoken_dialogue(tmp_path, SPOKEN_DIALOGUE[:4], DISTINCT_VOICES)
    left, _ = soundfile.read(a, dtype="float32")
    right, _ = soundfile.read(b, dtype="float32")
    mix = left + right
    delayed = np.concatenate([np.zeros(16, np.float32), mix[:-16]])  # 1 ms
    assert is_one_mix(mix, mix)
    assert is_one_mix(mix, 0.5 * mix)  # panned
    assert is_one_mix(mix, -mix)  # one channel's polarity inverted
    assert is_one_mix(mix, delayed)
    assert is_one_mix(left + 0.63 * right, 0.63 * left + right)  # a room's 4 dB
    assert not is_one_mix(left, right)
    assert not is_one_mix(left, np.zeros_like(right))  # B silent: as before
    assert not is_one_mix(left + 0.1 * right, right + 0.1 * left)  # 20 dB crosstalk
    assert not is_one_mix(left + 0.5 * right, right + 0.5 * left)  # 6 dB crosstalk
    # The other person only says "mm-hm" and "yeah", on their own microphone.
    backchannels = write_spoken_dialogue(
        tmp_path, SPOKEN_DIALOGUE[:2] + SPOKEN_DIALOGUE[3:5], DISTINCT_VOICES
    )
    left, right = (
        soundfile.read(path, dtype="float32")[0] for path in backchannels[:2]
    )
    assert not is_one_mix(left + 0.1 * right, right + 0.1 * left)


def test_rttm_round_trip_and_speaker_order(tmp_path):
    turns = (Turn(2.0, 3.5, 1), Turn(0.25, 2.1, 0), Turn(3.4, 4.0, 0))
    diarization = Diarization(turns, seconds=5.0)
    path = tmp_path / "talk.rttm"
    path.write_text(format_rttm(diarization, "my talk"))
    assert path.read_text().splitlines()[0] == (
        "SPEAKER my_talk 1 0.250 1.850 <NA> <NA> A <NA> <NA>"
    )
    assert read_rttm(path, 5.0) == diarization
    # Any two names; whoever speaks first is A; other recordings are skipped.
    path.write_text(
        ";; from pyannote\n"
        "SPEAKER other 1 0.0 1.0 <NA> <NA> X <NA> <NA>\n"
        "SPEAKER talk 1 2.000 1.500 <NA> <NA> SPEAKER_00 <NA> <NA>\n"
        "SPEAKER talk 1 0.250 1.850 <NA> <NA> SPEAKER_01 <NA> <NA>\n"
        "SPEAKER talk 1 3.400 0.600 <NA> <NA> SPEAKER_01 <NA> <NA>\n"
    )
    assert read_rttm(path, 5.0, recording="talk") == diarization


def test_rttm_edge_cases(tmp_path):
    path = tmp_path / "talk.rttm"
    # An empty turn says nothing: the first to speak is still A, and one name is A.
    path.write_text(
        "SPEAKER talk 1 0.000 0.000 <NA> <NA> Y <NA> <NA>\n"
        "SPEAKER talk 1 1.000 1.000 <NA> <NA> X <NA> <NA>\n"
    )
    assert read_rttm(path, 5.0) == Diarization((Turn(1.0, 2.0, 0),), 5.0)
    # Another recording's turns may run past this audio's end.
    path.write_text(
        "SPEAKER other 1 0.000 25.000 <NA> <NA> X <NA> <NA>\n"
        "SPEAKER my_talk 1 1.000 1.000 <NA> <NA> X <NA> <NA>\n"
    )
    assert read_rttm(path, 5.0, recording="my talk").turns == (Turn(1.0, 2.0, 0),)
    # No speech is written as a comment, and read back as no speech.
    nobody = Diarization((), 5.0)
    path.write_text(format_rttm(nobody, "talk"))
    assert path.read_text().startswith(";;") and read_rttm(path, 5.0) == nobody
    # A turn past the end by less than the slack ends at the end, read and written.
    ending = Diarization((Turn(1.0, 5.004, 0),), 5.0)
    assert ending.turns == (Turn(1.0, 5.0, 0),)
    path.write_text(format_rttm(ending, "talk"))
    assert read_rttm(path, 5.0) == ending


def test_sounds_that_are_no_voices_are_not_split():
    rng = np.random.default_rng(0)
    seconds = np.arange(20 * SAMPLE_RATE) / SAMPLE_RATE
    on = (seconds % 2.0) < 1.5  # bursts with pauses, as phrases
    for sound in (
        0.1 * np.sin(2 * np.pi * 400 * seconds),
        0.05 * rng.standard_normal(len(seconds)),
    ):
        assert diarize((sound * on).astype(np.float32)).speakers <= 1


def test_tracks_are_the_mix_during_each_speakers_turns():
    mix = np.ones(5 * SAMPLE_RATE, np.float32)
    diarization = Diarization((Turn(1.0, 2.0, 0), Turn(1.5, 3.0, 1)), 5.0)
    a, b = speaker_tracks(mix, diarization)
    at = lambda track, seconds: track[int(seconds * SAMPLE_RATE)]  # noqa: E731
    assert at(a, 1.5) == 1 and at(b, 1.75) == 1  # overlap: both hear it
    assert at(a, 0.5) == 0 and at(a, 2.5) == 0 and at(b, 1.0) == 0 and at(b, 4) == 0
    assert np.all(np.abs(np.diff(a)) <= 0.5)  # faded in and out, no click


@pytest.mark.parametrize(
    "content, needles",
    [
        ("SPEAKER t 1 0.5 1.0 <NA> <NA> A <NA> <NA>\n"
         "SPEAKER t 1 1.5 1.0 <NA> <NA> B <NA> <NA>\n"
         "SPEAKER t 1 2.5 0.5 <NA> <NA> C <NA> <NA>\n", ["line 3", "third speaker"]),
        ("SPEAKER t 1 0.5 1.0 <NA> <NA> A <NA> <NA>\n"
         "SPEAKER t 1 1.5 9.0 <NA> <NA> B <NA> <NA>\n", ["line 2", "past the end"]),
        ("SPEAKER t 1 0.5 1.0 <NA> <NA> A <NA> <NA>\nhello world\n",
         ["line 2", "not an RTTM SPEAKER line"]),
        ("SPEAKER t 1 zero 1.0 <NA> <NA> A <NA> <NA>\n", ["line 1", "'zero'"]),
        ("SPEAKER t 1 -1 1.0 <NA> <NA> A <NA> <NA>\n", ["line 1", "negative"]),
        ("SPEAKER my talk 1 0.5 1.0 <NA> <NA> A <NA> <NA>\n",
         ["line 1", "10 fields"]),
        ("SPEAKER t 1 0.5 1.0 <NA> <NA> <NA> <NA> <NA>\n", ["line 1", "10 fields"]),
        ("SPEAKER t 1 0.5 1.0 <NA> <NA> A <NA> <NA>\n"
         "SPEAKER u 1 0.5 1.0 <NA> <NA> A <NA> <NA>\n", ["2 recordings"]),
    ],
)  # fmt: skip
def test_bad_rttm_is_refused_naming_the_line(tmp_path, content, needles):
    recording = tmp_path / "talk.wav"
    soundfile.write(recording, np.zeros(3 * SAMPLE_RATE, np.float32), SAMPLE_RATE)
    rttm = tmp_path / "bad.rttm"
    rttm.write_text(content)
    out = tmp_path / "out"
    result = run_cli(
        "animate", recording, "-o", out, "-f", "npz", "--diarization", rttm
    )
    assert_one_line_error(result, str(rttm), *needles)
    assert not out.exists() or not list(out.iterdir())


def test_split_options_that_cannot_apply_are_refused(tmp_path):
    mono = tmp_path / "mono.wav"
    soundfile.write(mono, np.zeros(SAMPLE_RATE, np.float32), SAMPLE_RATE)
    result = run_cli("animate", mono, "-o", tmp_path / "o", "--split", "channels")
    assert_one_line_error(result, str(mono), "mono", "--split channels")
    result = run_cli("animate", mono, mono, "-o", tmp_path / "o", "--split", "diarize")
    assert_one_line_error(result, "two files")
    result = run_cli("animate", mono, "-o", tmp_path / "o", "--split", "voices")
    assert_one_line_error(result, "--split", "voices")
    rttm = tmp_path / "x.rttm"
    result = run_cli(
        "animate", mono, "-o", tmp_path / "o", "--split", "channels",
        "--diarization", rttm,
    )  # fmt: skip
    assert_one_line_error(result, "--diarization", "--split channels")
    assert not (tmp_path / "o").exists()


def test_batch_splits_single_recordings_and_takes_rttm_from_a_manifest(
    espeak, tmp_path
):
    a, b, mix = write_spoken_dialogue(tmp_path, SPOKEN_DIALOGUE[:4], DISTINCT_VOICES)
    folder = tmp_path / "in"
    folder.mkdir()
    a.rename(folder / "pair_speaker1.wav")
    b.rename(folder / "pair_speaker2.wav")
    mix = mix.rename(folder / "mix.wav")
    out = tmp_path / "out"
    result = run_cli("batch", folder, "-o", out, "-f", "npz", "--json")
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    done = {event["clip"] for event in events if event.get("event") == "done"}
    assert done == {"mix", "pair"}
    assert (out / "mix" / "mix.rttm").is_file()
    assert not (out / "pair" / "pair.rttm").exists()
    assert not leftovers(out)

    # A manifest row may name an RTTM: here one speaker holds every turn.
    seconds = soundfile.info(mix).duration
    rttm = tmp_path / "one.rttm"
    rttm.write_text(f"SPEAKER mix 1 0.000 {seconds:.3f} <NA> <NA> S <NA> <NA>\n")
    manifest = tmp_path / "list.csv"
    manifest.write_text(f"name,speaker1,rttm\ngiven,{mix},{rttm}\n")
    result = run_cli("batch", manifest, "-o", out, "-f", "npz")
    assert result.returncode == 0, result.stderr
    assert (out / "given" / "mix.rttm").read_text().split()[3:5] == [
        "0.000",
        f"{seconds:.3f}",
    ]
    assert not speaking(out / "given" / "mix_speaker2.npz").any()


def test_batch_refuses_split_options_that_cannot_apply(tmp_path):
    from dualtalk_cli.testing import write_pair

    folder = tmp_path / "in"
    folder.mkdir()
    write_pair(folder, "talk")
    out = tmp_path / "out"
    result = run_cli("batch", folder, "-o", out, "-f", "npz", "--split", "diarize")
    assert_one_line_error(result, "--split", "no conversation is one recording")
    assert not out.exists() or not list(out.iterdir())
    # An RTTM on a row of two files: that clip fails, naming the line.
    manifest = tmp_path / "list.csv"
    rttm = tmp_path / "x.rttm"
    rttm.write_text("SPEAKER talk 1 0.0 1.0 <NA> <NA> A <NA> <NA>\n")
    pair = f"{folder / 'talk_speaker1.wav'},{folder / 'talk_speaker2.wav'}"
    manifest.write_text(f"speaker1,speaker2,rttm\n{pair},{rttm}\n")
    result = run_cli("batch", manifest, "-o", out, "-f", "npz", "--json")
    assert result.returncode == 3, result.stderr
    failed = [json.loads(line) for line in result.stdout.splitlines()][0]
    assert failed["event"] == "failed" and "line 2" in failed["message"]
    assert "two audio files" in failed["message"]
    assert not (out / "talk").exists()
