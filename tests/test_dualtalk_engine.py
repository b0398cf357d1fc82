"""The DualTalk engine on a tiny network in the released key layout (random weights)."""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest
import soundfile

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from conftest import assert_one_line_error, run_cli  # noqa: E402
from dualtalk_cli.engines.dualtalk import DualTalkEngine  # noqa: E402
from dualtalk_cli.engines.dualtalk_model import (  # noqa: E402
    DualTalkConfig,
    DualTalkModel,
    EncoderWindow,
    normalise_audio,
    to_released_names,
)
from dualtalk_cli.errors import EngineUnavailable  # noqa: E402
from dualtalk_cli.motion import Motion  # noqa: E402
from dualtalk_cli.testing import voice, write_dataset_npz, write_pair  # noqa: E402


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    model = DualTalkModel(DualTalkConfig.tiny())
    path = tmp_path_factory.mktemp("weights") / "DualTalk.pth"
    torch.save(to_released_names(model.state_dict()), path)
    return path


@pytest.fixture(scope="module")
def tracks():
    seconds = 3.0
    a = voice(seconds, [(0.1, 1.4)], 120, seed=1)
    b = voice(seconds, [(1.6, 2.9)], 210, seed=2)
    extra = 123  # not a multiple of 640 samples
    return np.pad(a, (0, extra)), np.pad(b, (0, extra))


def engine(checkpoint, **options):
    """The tiny network on the CPU in fp32 (the published arithmetic) unless told."""
    options.setdefault("precision", "fp32")
    options.setdefault("device", "cpu")
    return DualTalkEngine(weights=checkpoint, config=DualTalkConfig.tiny(), **options)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_shapes_frames_and_determinism(checkpoint, tracks, precision):
    a, b = tracks
    n_frames = math.ceil(len(a) / 640)
    first = engine(checkpoint, precision=precision).animate(a, b, n_frames=n_frames)
    second = engine(checkpoint, precision=precision).animate(a, b, n_frames=n_frames)
    label = "dualtalk" if precision == "fp32" else f"dualtalk-{precision}"
    for motion, again in zip(first, second):
        assert motion.n_frames == n_frames
        assert motion.engine == f"{label}+procedural-eyes"
        assert motion.exp.dtype == np.float32
        assert np.isfinite(motion.exp).all() and np.abs(motion.exp).sum() > 0
        assert motion.to_network().tobytes() == again.to_network().tobytes()
        assert motion.eyelids.max() > 0.5 or motion.seconds < 4  # blinks are layered
    assert not np.array_equal(first[0].exp, first[1].exp)


def test_alternating_passes_follow_the_published_model(checkpoint, tracks):
    a, b = tracks
    the_engine = engine(checkpoint, passes=1)
    vector_a, vector_b = the_engine.predict_pair(a, b)
    model = the_engine.model
    with torch.inference_mode():
        na, nb = normalise_audio(a)[None], normalise_audio(b)[None]
        neutral = torch.zeros(1, 1, 56)
        expected_a = model.predict(na, nb, neutral)
        expected_b = model.predict(nb, na, expected_a)
    np.testing.assert_allclose(vector_a, expected_a[0].numpy(), atol=1e-5)
    np.testing.assert_allclose(vector_b, expected_b[0].numpy(), atol=1e-5)
    two = engine(checkpoint, passes=2).predict_pair(a, b)
    assert not np.allclose(two[0], vector_a)  # a second pass sees B's motion


def test_partner_motion_mode_is_one_forward(checkpoint, tracks):
    a, b = tracks
    the_engine = engine(checkpoint)
    n_frames = math.ceil(len(b) / 640)
    rng = np.random.default_rng(0)
    partner = Motion.from_network(rng.normal(0, 0.1, (n_frames - 7, 56)))
    vector = the_engine.predict_with_partner(a, b, partner)
    with torch.inference_mode():
        motion = torch.as_tensor(partner.to_network())[None]
        expected = the_engine.model.predict(
            normalise_audio(a)[None], normalise_audio(b)[None], motion
        )
    np.testing.assert_allclose(vector, expected[0].numpy(), atol=1e-5)


def test_windowed_encoding_matches_whole_clip(checkpoint):
    audio = normalise_audio(voice(6.0, [(0.2, 5.8)], 150))[None]
    n_frames = math.ceil(audio.shape[-1] / 640)
    encoder = engine(checkpoint).model.joint_encoder.audio_encoder1
    with torch.inference_mode():
        whole = encoder(audio, n_frames)
        parts = encoder(audio, n_frames, EncoderWindow(frames=60, overlap=20))
    assert (
        parts.shape == whole.shape == (1, n_frames, DualTalkConfig.tiny().audio_hidden)
    )
    difference = (parts - whole).abs().mean() / whole.abs().mean()
    # Windows see less context than the whole clip; they must stay close.
    assert difference < 0.15, float(difference)


def test_bad_checkpoints(checkpoint, tmp_path):
    data = checkpoint.read_bytes()
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(EngineUnavailable, match="truncated"):
        engine(truncated)

    other = tmp_path / "other.pth"
    torch.save(torch.nn.Linear(3, 4).state_dict(), other)
    with pytest.raises(EngineUnavailable, match="not the DualTalk checkpoint"):
        engine(other)

    state = torch.load(checkpoint, weights_only=True)
    missing = dict(state)
    missing.pop("synthesis_module.blendshape_predictor.weight")
    torch.save(missing, tmp_path / "missing.pth")
    with pytest.raises(EngineUnavailable, match="blendshape_predictor.weight"):
        engine(tmp_path / "missing.pth")

    extra = dict(state, **{"surprise.weight": torch.zeros(2)})
    torch.save(extra, tmp_path / "extra.pth")
    with pytest.raises(EngineUnavailable, match="surprise.weight"):
        engine(tmp_path / "extra.pth")

    with pytest.raises(EngineUnavailable, match="not found"):
        engine(tmp_path / "nowhere.pth")


def test_cli_without_checkpoint_falls_back(dialogue, tmp_path):
    env_result = run_cli(
        "animate", *dialogue, "-o", tmp_path / "x", "--engine", "dualtalk", "--no-video"
    )
    assert_one_line_error(env_result, "DualTalk checkpoint")


def test_cli_runs_the_network_and_picks_it_automatically(
    checkpoint, dialogue, tmp_path
):
    from dualtalk_cli.motion import load_motion

    env = {**os.environ, "DUALTALK_TEST_NETWORK": "tiny"}
    env["DUALTALK_WEIGHTS"] = str(checkpoint)
    out = tmp_path / "out"
    result = run_cli("animate", *dialogue, "-o", out, "--no-video", "--no-obj", env=env)
    assert result.returncode == 0, result.stderr
    # The device's default precision, named in the first line and the file.
    default = DualTalkEngine(weights=checkpoint, config=DualTalkConfig.tiny())
    first = f"engine dualtalk ({default.precision} on {default.device});"
    assert result.stderr.splitlines()[0].startswith(first)
    motion = load_motion(out / "a.npz")
    assert motion.engine == f"{default.label}+procedural-eyes"
    assert motion.n_frames == math.ceil(4.0 * 16000 / 640)
    assert np.abs(motion.exp).sum() > 0

    env.pop("DUALTALK_WEIGHTS")
    fallback = run_cli(
        "animate", *dialogue, "-o", tmp_path / "p", "--no-video", "--no-obj",
        env=env, cwd=tmp_path,
    )  # fmt: skip
    assert fallback.returncode == 0, fallback.stderr
    first = fallback.stderr.splitlines()[0]
    assert first.startswith("engine procedural (dualtalk not used: no DualTalk")


@pytest.mark.parametrize("offline", [True, False])
def test_download_without_network_fails_at_once(tmp_path, offline):
    import time

    env = {**os.environ, "HF_HUB_OFFLINE": "1" if offline else "0"}
    # No proxy and no reachable Hub here; a real outage looks the same.
    env["HF_ENDPOINT"] = "http://127.0.0.1:9"
    start = time.monotonic()
    result = run_cli("download", "--to", tmp_path / "w", env=env)
    assert time.monotonic() - start < 30
    assert_one_line_error(result, "cannot download", "DualTalk.pth")
    assert not list((tmp_path / "w").glob("*.pth"))


def test_cli_partner_motion_mode(checkpoint, dialogue, tmp_path):
    from dualtalk_cli.engines.dualtalk import DualTalkEngine
    from dualtalk_cli.motion import load_motion

    rng = np.random.default_rng(1)
    n_frames = math.ceil(4.0 * 16000 / 640)
    partner = Motion.from_network(rng.normal(0, 0.1, (n_frames, 56)))
    partner.save(tmp_path / "b_known.npz")
    env = {**os.environ, "DUALTALK_TEST_NETWORK": "tiny"}
    out = tmp_path / "out"
    args = ("animate", *dialogue, "-o", out, "--weights", checkpoint)
    args += ("--precision", "fp32", "--device", "cpu")
    result = run_cli(*args, "--partner-motion", tmp_path / "b_known.npz", env=env)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["a.npz"]
    from dualtalk_cli.audio import load_conversation

    a, b = load_conversation(*dialogue)
    expected = engine(checkpoint).predict_with_partner(a, b, partner)
    np.testing.assert_allclose(
        load_motion(out / "a.npz").to_network(), expected, atol=1e-5
    )
    assert DualTalkEngine.name == "dualtalk"


def test_batch_with_the_network_in_two_processes(checkpoint, tmp_path):
    """Each worker loads the network once; results match a single process."""
    from dualtalk_cli.motion import load_motion

    folder = tmp_path / "clips"
    folder.mkdir()
    for index in range(2):
        write_pair(folder, f"c{index}", seed=index)
    env = {**os.environ, "DUALTALK_TEST_NETWORK": "tiny"}
    common = ("--weights", checkpoint, "--no-video", "--no-obj", "--engine", "dualtalk")
    common += ("--precision", "fp32", "--device", "cpu")
    one, two = tmp_path / "one", tmp_path / "two"
    first = run_cli("batch", folder, "-o", one, *common, env=env)
    assert first.returncode == 0, first.stderr
    assert first.stderr.startswith("engine dualtalk (fp32 on cpu);")
    second = run_cli("batch", folder, "-o", two, *common, "-j", "2", env=env)
    assert second.returncode == 0, second.stderr
    for name in ("c0/c0_speaker1.npz", "c1/c1_speaker2.npz"):
        motion = load_motion(two / name)
        assert motion.engine == "dualtalk+procedural-eyes"
        np.testing.assert_allclose(
            motion.to_network(), load_motion(one / name).to_network(), atol=1e-5
        )


def test_batch_given_partner_is_the_papers_protocol(checkpoint, tmp_path):
    """Each speaker from both tracks and the partner's ground truth, then scored."""
    from dualtalk_cli.audio import load_conversation
    from dualtalk_cli.motion import load_motion

    data = tmp_path / "test"
    data.mkdir()
    n_frames = math.ceil(1.5 * 16000 / 640)
    for index, clip in enumerate(("p", "q")):
        a = voice(1.5, [(0.1, 0.7)], 120, seed=index)
        b = voice(1.5, [(0.8, 1.4)], 210, seed=index + 9)
        for speaker, track in ((1, a), (2, b)):
            soundfile.write(data / f"{clip}_speaker{speaker}.wav", track, 16000)
            write_dataset_npz(data / f"{clip}_speaker{speaker}.npz", n_frames, speaker)
    mono = voice(1.5, [(0.1, 0.7)], 120)
    soundfile.write(data / "mix.wav", np.stack([mono, mono], 1), 16000)
    env = {**os.environ, "DUALTALK_TEST_NETWORK": "tiny"}
    out = tmp_path / "out"
    args = ("batch", data, "-o", out, "--given-partner", "--weights", checkpoint)
    args += ("--device", "cpu")
    result = run_cli(*args, "--json", env=env)
    assert result.returncode == 3, result.stderr  # one recording has no partner
    assert result.stderr.startswith("engine dualtalk (fp32 on cpu);"), result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    done = {e["clip"] for e in events if e["event"] == "done"}
    failed = {e["clip"]: e["message"] for e in events if e["event"] == "failed"}
    assert done == {"p", "q"} and "one recording" in failed["mix"]
    assert sorted(p.name for p in (out / "q").iterdir()) == [
        "q_speaker1.npz",
        "q_speaker2.npz",
    ]
    # The same as predicting speaker 2 alone given speaker 1's ground truth.
    a, b = load_conversation(data / "q_speaker2.wav", data / "q_speaker1.wav")
    partner = load_motion(data / "q_speaker1.npz")
    expected = engine(checkpoint).predict_with_partner(a, b, partner)
    predicted = load_motion(out / "q" / "q_speaker2.npz")
    np.testing.assert_allclose(predicted.to_network(), expected, atol=1e-5)
    # The paper's protocol uses the published arithmetic unless told otherwise.
    assert predicted.engine == "dualtalk+procedural-eyes"
    scores = run_cli("evaluate", out, data, "--format", "json")
    assert scores.returncode == 0, scores.stderr
    assert json.loads(scores.stdout)["n_files"] == 4

    procedural = run_cli(*args, "--engine", "procedural", env=env)
    assert_one_line_error(procedural, "--given-partner needs the DualTalk network")


def test_fp32_is_the_plain_model_to_the_byte(checkpoint, tracks):
    """fp32 runs the model's own calls, with no autocast: the same bytes."""
    a, b = tracks
    the_engine = engine(checkpoint, passes=2)
    model, window = the_engine.model, the_engine.window
    with torch.inference_mode():
        na, nb = normalise_audio(a)[None], normalise_audio(b)[None]
        a_target, b_partner = model.encode_audio(na, nb, window)
        b_target, a_partner = model.encode_audio(nb, na, window)
        motion_b = torch.zeros(1, a_target.shape[1], 56)
        for _ in range(2):
            motion_a = model(a_target, b_partner, motion_b)
            motion_b = model(b_target, a_partner, motion_a)
        partner = torch.as_tensor(np.asarray(motion_b[0]) * 0.5)[None]
        given = model.predict(na, nb, partner, window)
    pair = the_engine.predict_pair(a, b)
    assert pair[0].tobytes() == motion_a[0].numpy().tobytes()
    assert pair[1].tobytes() == motion_b[0].numpy().tobytes()
    known = Motion.from_network(partner[0].numpy())
    alone = the_engine.predict_with_partner(a, b, known)
    assert alone.tobytes() == given[0].numpy().tobytes()


def test_reduced_precision_stays_close_to_fp32(checkpoint, tracks):
    """bf16 runs the same network in other arithmetic: float32 out, near fp32."""
    a, b = tracks
    exact = engine(checkpoint).predict_pair(a, b)
    reduced = engine(checkpoint, precision="bf16").predict_pair(a, b)
    for full, low in zip(exact, reduced):
        assert low.dtype == np.float32 and low.shape == full.shape
        assert not np.array_equal(low, full)  # autocast did take effect
        scale = np.abs(full).mean()
        assert np.abs(low - full).mean() < 0.05 * scale, np.abs(low - full).mean()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="fp16 needs CUDA")
@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_each_precision_runs_on_cuda(checkpoint, tracks, precision):
    from dualtalk_cli.engines.devices import native_bf16

    if precision == "bf16" and not native_bf16("cuda"):
        pytest.skip("this GPU has no bf16")
    a, b = tracks
    cpu = engine(checkpoint).predict_pair(a, b)
    cuda = engine(checkpoint, device="cuda", precision=precision).predict_pair(a, b)
    for on_cpu, on_cuda in zip(cpu, cuda):
        assert on_cuda.dtype == np.float32
        assert np.abs(on_cuda - on_cpu).mean() < 0.05 * np.abs(on_cpu).mean()


def test_cli_precision_fp32_is_the_engine_and_bf16_differs(
    checkpoint, dialogue, tmp_path
):
    from dualtalk_cli.audio import load_conversation
    from dualtalk_cli.motion import load_motion

    env = {**os.environ, "DUALTALK_TEST_NETWORK": "tiny"}
    common = ("--weights", checkpoint, "-f", "npz", "--engine", "dualtalk")
    common += ("--device", "cpu")
    files = {}
    for precision in ("fp32", "bf16"):
        out = tmp_path / precision
        result = run_cli(
            "animate", *dialogue, "-o", out, *common, "--precision", precision, env=env
        )
        assert result.returncode == 0, result.stderr
        files[precision] = load_motion(out / "a.npz")
    a, b = load_conversation(*dialogue)
    n_frames = files["fp32"].n_frames
    expected = engine(checkpoint).animate(a, b, n_frames=n_frames)[0]
    assert files["fp32"].to_network().tobytes() == expected.to_network().tobytes()
    assert files["bf16"].engine == "dualtalk-bf16+procedural-eyes"
    assert not np.array_equal(files["bf16"].exp, files["fp32"].exp)


@pytest.mark.parametrize(
    "flags, needles",
    [
        (("--precision", "fp16", "--device", "cpu"), ("fp16 needs a CUDA device",)),
        (("--precision", "fp8"), ("--precision must be one of fp32, bf16, fp16",)),
        (
            ("--precision", "bf16", "--engine", "procedural"),
            ("engine 'procedural' cannot be used: takes no option", "'precision'"),
        ),
        (("--device", "gpu"), ("--device must be cpu, cuda or cuda:N, not 'gpu'",)),
        pytest.param(
            ("--device", "cuda"),
            ("--device cuda: no CUDA device is available here",),
            marks=pytest.mark.skipif(torch.cuda.is_available(), reason="has CUDA"),
        ),
    ],
)
def test_cli_refuses_a_precision_it_cannot_compute(
    checkpoint, dialogue, tmp_path, flags, needles
):
    env = {**os.environ, "DUALTALK_TEST_NETWORK": "tiny"}
    out = tmp_path / "out"
    result = run_cli(
        "animate", *dialogue, "-o", out, "--weights", checkpoint, "-f", "npz", *flags,
        env=env,
    )  # fmt: skip
    assert_one_line_error(result, *needles)
    assert not out.exists() or not list(out.iterdir())


def test_a_network_without_a_finite_output_is_one_line(checkpoint, dialogue, tmp_path):
    """A broken checkpoint (NaN in the last layer) writes nothing."""
    state = torch.load(checkpoint, weights_only=True)
    key = "synthesis_module.blendshape_predictor.bias"
    state[key] = torch.full_like(state[key], float("nan"))
    broken = tmp_path / "broken.pth"
    torch.save(state, broken)
    env = {**os.environ, "DUALTALK_TEST_NETWORK": "tiny"}
    out = tmp_path / "out"
    result = run_cli(
        "animate", *dialogue, "-o", out, "--weights", broken, "--precision", "fp32",
        "--device", "cpu", env=env,
    )  # fmt: skip
    assert_one_line_error(
        result, "not finite in fp32", "checkpoint or the audio", after_start=True
    )
    assert not out.exists() or not list(out.iterdir())
