"""The main job end to end, through the CLI and the public API."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import soundfile

import dualtalk_cli
from conftest import EXAMPLES, leftovers, run_cli
from dualtalk_cli.motion import ARKIT_NAMES, load_motion
from dualtalk_cli.testing import write_dataset_npz, write_dialogue


def test_help_does_not_import_heavy_modules():
    code = (
        "import sys; from dualtalk_cli import cli;"
        "heavy = [m for m in ('torch', 'pyrender', 'transformers', 'OpenGL', 'scipy')"
        " if m in sys.modules]; print(heavy)"
    )
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
    assert run_cli("--help").returncode == 0


def test_schema_and_frame_counts(dialogue, tmp_path):
    out = tmp_path / "out"
    result = run_cli("animate", *dialogue, "-o", out, "--no-video", "--no-obj")
    assert result.returncode == 0, result.stderr
    n_samples = soundfile.info(dialogue[0]).frames
    n_frames = math.ceil(n_samples / 640)
    for name in ("a", "b"):
        with np.load(out / f"{name}.npz") as data:
            arrays = {key: data[key] for key in data.files}
        expected = {
            "exp": (n_frames, 50),
            "pose": (n_frames, 6),
            "shape": (n_frames, 100),
            "eyes": (n_frames, 6),
            "eyelids": (n_frames, 2),
            "arkit": (n_frames, 52),
            "speaking": (n_frames,),
        }
        for key, shape in expected.items():
            assert arrays[key].shape == shape, key
        for key in ("exp", "pose", "shape", "eyes", "eyelids", "arkit"):
            assert arrays[key].dtype == np.float32, key
        assert arrays["speaking"].dtype == bool
        assert tuple(arrays["arkit_names"]) == ARKIT_NAMES
        assert float(arrays["fps"]) == 25.0
        assert str(arrays["engine"]) == "procedural"
        assert int(arrays["format_version"]) == 1
        assert not np.any(arrays["exp"])  # the procedural engine leaves exp at zero
        assert set(out.iterdir()) == {out / "a.npz", out / "b.npz"}


def test_fps_and_unequal_lengths(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    path_a, _ = write_dialogue(folder, seconds=3.0)
    longer = folder / "long.flac"
    soundfile.write(longer, np.zeros(int(44100 * 3.7), np.float32), 44100)
    out = tmp_path / "out"
    result = run_cli("animate", path_a, longer, "-o", out, "--fps", "30", "--no-video")
    assert result.returncode == 0, result.stderr
    a, b = load_motion(out / "a.npz"), load_motion(out / "long.npz")
    assert a.n_frames == b.n_frames == math.ceil(3.7 * 30)
    assert a.frames_per_second == 30
    assert not b.speaking.any()  # silence only listens
    assert len(list((out / "a").glob("*.obj"))) == a.n_frames


PRINTF_V, PRINTF_F = "v %.5f %.5f %.5f\n", "f %d %d %d\n"  # what OBJ lines are


def test_obj_sequences(dialogue, tmp_path):
    out = tmp_path / "out"
    result = run_cli("animate", *dialogue, "-o", out, "--no-video")
    assert result.returncode == 0, result.stderr
    head = dualtalk_cli.load_head("builtin")
    n_frames = load_motion(out / "a.npz").n_frames
    for name in ("a", "b"):
        files = sorted((out / name).glob("*.obj"))
        assert len(files) == n_frames
        assert files[0].name == "000000.obj"
        lines = files[n_frames // 2].read_text().splitlines()
        assert sum(line.startswith("v ") for line in lines) == len(head.rest_vertices)
        assert sum(line.startswith("f ") for line in lines) == len(head.faces)
        # Byte for byte what printf writes for that frame's vertices.
        motion = load_motion(out / f"{name}.npz")
        vertices = np.concatenate(list(head.iter_vertices(motion)))[n_frames // 2]
        expected = "".join(PRINTF_V % tuple(v) for v in vertices.tolist())
        expected += "".join(PRINTF_F % tuple(f) for f in (head.faces + 1).tolist())
        assert files[n_frames // 2].read_bytes() == expected.encode()
    assert leftovers(out) == []


def test_obj_numbers_are_printfs_to_the_byte():
    from dualtalk_cli.writers import vertex_lines

    rng = np.random.default_rng(7)
    edges = [
        [0.015625, -0.015625, 1e-6],  # exact binary halves; tiny negatives
        [-1e-6, -0.0, 0.0],
        [np.nan, np.inf, -np.inf],
        [1e300, -1e20, 5e-6],
        [99999.999996, -99999.999996, 99999.99999],  # rounds up to 100 km
        [9.999995, -9.999995, 0.000015],
    ]
    cases = [
        np.array(edges),
        rng.normal(0, 0.1, (3000, 3)).astype(np.float32),
        rng.normal(0, 300, (3000, 3)),
        rng.integers(-(10**8), 10**8, (3000, 3)) / 1e5 + 0.5e-5,  # near halves
        np.zeros((0, 3)),
    ]
    for values in cases:
        expected = "".join(PRINTF_V % tuple(v) for v in values.tolist())
        assert vertex_lines(values) == expected.encode()


def test_mp4_frames_size_and_audio(dialogue, tmp_path):
    from dualtalk_cli.video import probe

    out = tmp_path / "out"
    result = run_cli("animate", *dialogue, "-o", out, "--no-obj")
    assert result.returncode == 0, result.stderr
    n_frames = load_motion(out / "a.npz").n_frames
    info = probe(out / "a_b.mp4")
    assert info["n_frames"] == n_frames
    assert (info["width"], info["height"]) == (1024, 512)
    assert info["audio_channels"] == 2
    seconds = soundfile.info(dialogue[0]).duration
    assert abs(info["audio_seconds"] - seconds) < 1 / 25 + 0.03
    assert abs(n_frames / 25 - seconds) <= 1 / 25
    assert leftovers(out) == []


def test_stereo_file_names_and_channels(tmp_path):
    out = tmp_path / "out"
    stereo = EXAMPLES / "dialogue_stereo.wav"
    result = run_cli("animate", stereo, "-o", out, "--no-video", "--no-obj")
    assert result.returncode == 0, result.stderr
    a = load_motion(out / "dialogue_stereo_speaker1.npz")
    from_mono = tmp_path / "mono"
    result = run_cli(
        "animate",
        EXAMPLES / "dialogue_speaker1.wav",
        EXAMPLES / "dialogue_speaker2.wav",
        "-o",
        from_mono,
        "--no-video",
        "--no-obj",
    )
    assert result.returncode == 0, result.stderr
    same = load_motion(from_mono / "dialogue_speaker1.npz")
    np.testing.assert_array_equal(a.pose, same.pose)


def test_determinism_and_seed(dialogue, tmp_path):
    runs = []
    for name, seed in (("one", 7), ("two", 7), ("three", 8)):
        out = tmp_path / name
        args = (
            "animate",
            *dialogue,
            "-o",
            out,
            "--seed",
            seed,
            "--no-video",
            "--no-obj",
        )
        assert run_cli(*args).returncode == 0
        runs.append((out / "a.npz").read_bytes() + (out / "b.npz").read_bytes())
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]


@pytest.fixture(scope="module")
def example_motions():
    conversation = dualtalk_cli.compute_motion(
        EXAMPLES / "dialogue_speaker1.wav", EXAMPLES / "dialogue_speaker2.wav"
    )
    turns = json.loads((EXAMPLES / "dialogue.json").read_text())["turns"]
    return conversation.motions, turns


def _frames_of(turns, speaker, fps=25.0):
    frames = set()
    for turn in turns:
        if turn["speaker"] == speaker:
            frames.update(range(int(turn["start"] * fps), int(turn["end"] * fps)))
    return np.array(sorted(frames))


def test_each_head_talks_when_its_person_speaks(example_motions):
    motions, turns = example_motions
    for index, speaker in enumerate((1, 2)):
        own = _frames_of(turns, speaker)
        other = np.setdiff1d(_frames_of(turns, 3 - speaker), own)
        jaw = motions[index].jaw_pose[:, 0]
        assert jaw[own].mean() > 5 * max(jaw[other].mean(), 1e-4), speaker
        assert motions[index].speaking[own].mean() > 0.7
        assert motions[index].speaking[other].mean() < 0.1


def test_blinks_in_both(example_motions):
    motions, _ = example_motions
    for motion in motions:
        closed = motion.eyelids[:, 0] > 0.5
        blinks = np.count_nonzero(closed[1:] & ~closed[:-1])
        per_minute = blinks / motion.seconds * 60
        assert 8 <= per_minute <= 30, per_minute


def test_listener_nods_at_phrase_ends(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    phrases = [(0.3, 2.5), (4.5, 6.7), (8.7, 10.9)]
    path_a, path_b = write_dialogue(folder, seconds=13.0, turns_a=phrases, turns_b=[])
    listener = dualtalk_cli.compute_motion(path_a, path_b).motions[1]
    assert not listener.speaking.any()
    pitch = listener.neck_pose[:, 0]  # positive tips the face down
    nods = 0
    for start, end in phrases:
        during = pitch[int(start * 25) + 5 : int(end * 25)]
        after = pitch[int(end * 25) : int(end * 25) + 35]
        nods += (after.max() - np.median(during)) > 2 * np.ptp(during) / 2 + 0.03
    assert nods >= 2, nods


def test_render_dataset_files_side_by_side(tmp_path, dialogue):
    from dualtalk_cli.video import probe

    first = write_dataset_npz(tmp_path / "clip_speaker1.npz", 40)
    second = write_dataset_npz(tmp_path / "clip_speaker2.npz", 36, seed=1)
    args = ["render", first, second, "--audio", dialogue[0], "--audio", dialogue[1]]
    result = run_cli(*args, "--size", "128")
    assert result.returncode == 0, result.stderr
    video = tmp_path / "clip_speaker1_clip_speaker2.mp4"
    info = probe(video)
    assert info["n_frames"] == 40  # the longer file; the shorter holds its last pose
    assert (info["width"], info["height"]) == (256, 128)
    assert info["audio_channels"] == 2
    assert abs(info["audio_seconds"] - 40 / 25) < 0.05
    # The note about FLAME expressions comes once, not once per file.
    assert result.stderr.count("FLAME expression") == 1


def test_render_one_head_without_audio(tmp_path):
    from dualtalk_cli.video import probe

    source = write_dataset_npz(tmp_path / "solo.npz", 30)
    out = tmp_path / "solo.mp4"
    result = run_cli("render", source, "-o", out, "--size", "128", "--quiet")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    info = probe(out)
    assert (info["n_frames"], info["width"], info["height"]) == (30, 128, 128)
    assert info["audio_channels"] == 0
    again = run_cli("render", source, "-o", out, "--size", "128")
    assert again.returncode == 2 and "--overwrite" in again.stderr


def test_odd_size_is_refused(dialogue, tmp_path):
    result = run_cli("animate", *dialogue, "-o", tmp_path / "out", "--size", "101")
    assert result.returncode == 2 and "even" in result.stderr
    assert not (tmp_path / "out").exists()


def test_info_reports_renderer_engines_and_heads():
    result = run_cli("info")
    assert result.returncode == 0, result.stderr
    assert "renderer: ok" in result.stdout
    assert "engine procedural: available" in result.stdout
    assert "head builtin: available" in result.stdout
    assert "network devices: cpu, default precision " in result.stdout


def test_progress_bar_on_a_terminal_only(dialogue, tmp_path):
    import os
    import pty
    import subprocess
    import sys

    args = ["animate", *map(str, dialogue), "--no-video"]
    piped = run_cli(*args, "-o", tmp_path / "piped")
    assert piped.returncode == 0
    assert "Writing OBJ" not in piped.stderr and "wrote" in piped.stderr
    quiet = run_cli(*args, "-o", tmp_path / "quiet", "--quiet")
    assert quiet.returncode == 0 and quiet.stdout == quiet.stderr == ""

    leader, follower = pty.openpty()
    command = [sys.executable, "-m", "dualtalk_cli", *args, "-o", str(tmp_path / "tty")]
    process = subprocess.Popen(
        command, stdin=follower, stdout=follower, stderr=follower
    )
    os.close(follower)
    screen = b""
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # the terminal closes when the process exits
            break
        if not chunk:
            break
        screen += chunk
    assert process.wait(timeout=120) == 0
    assert b"Writing OBJ meshes" in screen
