"""Options as typed objects: what is refused, the compute/write split, output plans."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest

import dualtalk_cli
from conftest import assert_one_line_error, run_cli
from dualtalk_cli.batch import BatchOptions
from dualtalk_cli.errors import DualtalkError, OptionError
from dualtalk_cli.motion import load_motion
from dualtalk_cli.options import (
    ComputeOptions,
    EngineOptions,
    HeadOptions,
    OutputOptions,
)
from dualtalk_cli.outputs import OutputPlan
from dualtalk_cli.testing import write_dataset_npz

NO_NETWORK = {**os.environ, "DUALTALK_WEIGHTS": "", "DUALTALK_FLAME": ""}


def one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert "\n" not in message
    return message


def test_misspelt_or_foreign_engine_settings_are_refused():
    with pytest.raises(DualtalkError) as error:
        dualtalk_cli.load_engine("procedural", wieghts="x.pth")
    assert "no engine takes an option 'wieghts'" in one_line(error)
    with pytest.raises(DualtalkError) as error:
        dualtalk_cli.load_engine("procedural", passes=3)
    assert "engine 'procedural'" in one_line(error) and "'passes'" in one_line(error)
    engine = dualtalk_cli.load_engine(EngineOptions("procedural"))
    assert engine.name == "procedural"


def test_misspelt_or_foreign_head_settings_are_refused(tmp_path):
    with pytest.raises(DualtalkError) as error:
        dualtalk_cli.load_head("builtin", flaem=tmp_path / "x.pkl")
    assert "no head takes an option 'flaem'" in one_line(error)
    with pytest.raises(DualtalkError) as error:
        dualtalk_cli.load_head("builtin", flame=tmp_path / "x.pkl")
    assert "head 'builtin'" in one_line(error) and "'flame'" in one_line(error)
    head = dualtalk_cli.load_head(HeadOptions("builtin"))
    assert head.name == "builtin"


def test_engine_settings_auto_cannot_honour_are_refused_not_dropped(dialogue, tmp_path):
    # Without a checkpoint "auto" is the procedural engine, which has no device.
    args = ("animate", *dialogue, "-o", tmp_path / "o", "--no-video", "--no-obj")
    result = run_cli(*args, "--device", "cpu", env=NO_NETWORK, cwd=tmp_path)
    assert_one_line_error(result, "'device' needs the dualtalk engine", "checkpoint")
    assert not (tmp_path / "o" / "a.npz").exists()


@pytest.mark.parametrize(
    "options, named",
    [
        (("--passes", "3"), "--passes"),
        (("--fps", "30"), "--fps"),
        (("--size", "128"), "--size"),
        (("--no-video",), "--no-obj/--no-video"),
        (("--head", "builtin"), "--head"),
        (("--shape-b", "SHAPE"), "--shape-b"),
    ],
)
def test_partner_motion_refuses_what_it_cannot_honour(
    dialogue, tmp_path, options, named
):
    partner = write_dataset_npz(tmp_path / "b_known.npz", 100)
    options = tuple(str(partner) if value == "SHAPE" else value for value in options)
    out = tmp_path / "out"
    args = ("animate", *dialogue, "-o", out, "--partner-motion", partner, *options)
    result = run_cli(*args, env=NO_NETWORK, cwd=tmp_path)
    assert_one_line_error(result, "--partner-motion cannot honour", named)
    assert not out.exists() or not any(out.iterdir())


def test_partner_motion_needs_an_engine_that_follows_a_partner(dialogue, tmp_path):
    partner = write_dataset_npz(tmp_path / "b_known.npz", 100)
    args = ("animate", *dialogue, "-o", tmp_path / "out", "--partner-motion", partner)
    result = run_cli(*args, "--engine", "procedural", env=NO_NETWORK)
    assert_one_line_error(result, "--partner-motion needs the DualTalk network")


def test_given_partner_batch_refuses_what_it_cannot_honour(dialogue, tmp_path):
    folder = dialogue[0].parent
    args = ("batch", folder, "-o", tmp_path / "out", "--given-partner")
    result = run_cli(*args, env=NO_NETWORK, cwd=tmp_path)
    assert_one_line_error(result, "--given-partner needs the DualTalk network")
    refused = run_cli(*args, "--size", "64", env=NO_NETWORK, cwd=tmp_path)
    assert_one_line_error(refused, "--given-partner cannot honour", "--size")


def test_options_without_effect_are_refused(dialogue, tmp_path):
    out = tmp_path / "out"
    result = run_cli("animate", *dialogue, "-o", out, "--no-video", "--size", "128")
    assert_one_line_error(result, "--size", "no effect")
    flame = tmp_path / "generic_model.pkl"
    flame.write_bytes(b"")
    nothing_drawn = ("--no-video", "--no-obj", "--flame", flame)
    result = run_cli("animate", *dialogue, "-o", out, *nothing_drawn)
    assert_one_line_error(result, "--flame", "no effect")
    assert not (out / "a.npz").exists()
    with pytest.raises(OptionError, match="unknown output format 'gif'"):
        OutputOptions(formats=("npz", "gif"))
    with pytest.raises(OptionError, match="even"):
        OutputOptions(size=101)


def test_compute_motion_reads_and_writes_nothing(dialogue, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    before = sorted(tmp_path.rglob("*"))
    options = ComputeOptions(EngineOptions("procedural"), seed=3)
    conversation = dualtalk_cli.compute_motion(*dialogue, options)
    assert sorted(tmp_path.rglob("*")) == before  # nothing written anywhere here
    first, second = conversation.motions
    assert first.n_frames == second.n_frames == conversation.n_frames == 100
    assert first.speaking.any() and second.speaking.any()
    # The same motion animate writes, byte for byte.
    out = tmp_path / "out"
    args = ("animate", *dialogue, "-o", out, "--seed", "3", "--no-video", "--no-obj")
    result = run_cli(*args, env=NO_NETWORK)
    assert result.returncode == 0, result.stderr
    first.save(tmp_path / "computed.npz")
    assert (tmp_path / "computed.npz").read_bytes() == (out / "a.npz").read_bytes()


def test_animate_api_takes_option_objects(dialogue, tmp_path):
    identity = tmp_path / "who.npy"
    np.save(identity, np.full(10, 0.25, np.float32))
    result = dualtalk_cli.animate(
        *dialogue,
        out_dir=tmp_path / "out",
        compute=ComputeOptions(frames_per_second=30, shapes=(identity, None)),
        output=OutputOptions(formats=("npz",)),
    )
    assert [path.name for path in result.outputs] == ["a.npz", "b.npz"]
    motion = load_motion(tmp_path / "out" / "a.npz")
    assert motion.frames_per_second == 30 and motion.n_frames == 120
    np.testing.assert_array_equal(motion.shape[:, :10], 0.25)


def test_options_pickle_for_worker_processes(tmp_path):
    options = BatchOptions(
        ComputeOptions(EngineOptions("dualtalk", tmp_path / "w.pth", "cpu", 3), 30),
        OutputOptions(("npz", "mp4"), 128, HeadOptions("flame", tmp_path / "f.pkl")),
        jobs=2,
    )
    assert pickle.loads(pickle.dumps(options)) == options
    assert options.compute.engine.settings() == {
        "weights": tmp_path / "w.pth",
        "device": "cpu",
        "passes": 3,
    }


def test_output_plan_names_and_leftovers(tmp_path):
    plan = OutputPlan.for_audio(
        tmp_path, ("x/a.wav", "y/b.flac"), ("npz", "obj", "mp4")
    )
    assert [p.name for p in plan.all_paths()] == ["a.npz", "b.npz", "a", "b", "a_b.mp4"]
    same = OutputPlan.for_audio(tmp_path, ("x/t.wav", "y/t.wav"), ("npz",))
    assert same.stems == ("t_A", "t_B")
    stereo = OutputPlan.for_audio(tmp_path, ("talk.wav", None), ("npz", "mp4"))
    assert [p.name for p in stereo.all_paths()] == [
        "talk_speaker1.npz",
        "talk_speaker2.npz",
        "talk.mp4",
    ]
    plan.check()
    (tmp_path / ".a.npz.x1y2z3w4.partial.npz").write_bytes(b"half")
    (tmp_path / ".a_b.mp4.partial.mp4").write_bytes(b"half")
    (tmp_path / ".b.k9j8h7g6.partial").mkdir()
    (tmp_path / ".a.npz.0123abcd.previous").write_bytes(b"old")
    (tmp_path / ".unrelated.partial").write_bytes(b"someone else's")
    (tmp_path / "a.npz").write_bytes(b"done")
    plan.remove_leftovers()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        ".unrelated.partial",
        "a.npz",
    ]
    assert plan.any_exists() and not plan.is_complete()
    with pytest.raises(DualtalkError, match="--overwrite"):
        plan.check()
    plan.check(overwrite=True)


def test_render_rejects_a_plan_it_cannot_write(tmp_path):
    source = write_dataset_npz(tmp_path / "x.npz")
    with pytest.raises(DualtalkError, match="render writes the video"):
        dualtalk_cli.render_video(
            [source], tmp_path / "x.mp4", output=OutputOptions(formats=("npz",))
        )
    assert not Path(tmp_path / "x.mp4").exists()


def test_render_and_evaluate_refuse_options_without_effect(tmp_path):
    source = write_dataset_npz(tmp_path / "x.npz")
    other = write_dataset_npz(tmp_path / "y.npz")
    result = run_cli("render", source, "--shape-b", other, "-o", tmp_path / "x.mp4")
    assert_one_line_error(result, "identity", "no motion file")
    assert not (tmp_path / "x.mp4").exists()
    scores = run_cli("evaluate", tmp_path, tmp_path, "--overwrite")
    assert_one_line_error(scores, "--overwrite has no effect without --per-file")


def test_partner_mode_says_why_the_network_is_missing(dialogue, tmp_path):
    partner = write_dataset_npz(tmp_path / "b_known.npz", 100)
    args = ("animate", *dialogue, "-o", tmp_path / "out", "--partner-motion", partner)
    result = run_cli(*args, env=NO_NETWORK, cwd=tmp_path)
    assert_one_line_error(result, "--partner-motion needs the DualTalk network")
    assert "no DualTalk checkpoint found" in result.stderr
    assert not (tmp_path / "out").exists()  # refused before any folder is made
