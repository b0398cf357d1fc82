"""`dualtalk batch --ray`: a real Ray cluster on loopback, started by the tests."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO, assert_one_line_error, leftovers, run_cli
from dualtalk_cli.testing import write_pair

pytest.importorskip("ray")


@pytest.fixture(scope="module")
def cluster():
    """The address of a Ray head on this machine (2 CPUs), stopped afterwards.

    Its workers get the tests' tiny network, as the processes of local runs do.
    """
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # Ray's sockets live in the temporary folder: a short path, as Unix needs.
    folder = tempfile.mkdtemp(prefix="rt", dir="/tmp")
    log = Path(folder) / "start.log"
    ray = Path(sys.executable).with_name("ray")
    command = [
        str(ray), "start", "--head", "--block", f"--port={port}", "--num-cpus=2",
        "--num-gpus=0", "--include-dashboard=false", "--disable-usage-stats",
        f"--temp-dir={folder}",
    ]  # fmt: skip
    env = {**os.environ, "DUALTALK_TEST_NETWORK": "tiny"}
    with open(log, "w") as output:
        head = subprocess.Popen(
            command, stdout=output, stderr=subprocess.STDOUT, env=env,
            start_new_session=True,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 90
        while "Ray runtime started" not in log.read_text():
            if head.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"ray start failed:\n{log.read_text()[-2000:]}")
            time.sleep(0.5)
        yield f"127.0.0.1:{port}"
    finally:
        head.send_signal(signal.SIGTERM)  # stops what it started
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
            head.wait()
        shutil.rmtree(folder, ignore_errors=True)


def make_clips(folder: Path, count: int, seconds: float = 2.0) -> Path:
    folder.mkdir()
    for index in range(count):
        write_pair(folder, f"clip{index}", seconds=seconds, seed=index)
    return folder


def start_batch(clips: Path, out: Path, cluster: str) -> tuple[subprocess.Popen, list]:
    """A Ray batch in its own process, once its first clip has started; and the
    lines it printed so far."""
    command = [sys.executable, "-m", "dualtalk_cli", "batch", str(clips), "-o",
               str(out), "--ray", cluster, "-f", "npz,obj", "--json"]  # fmt: skip
    batch = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO
    )
    lines = [batch.stdout.readline()]
    while '"start"' not in lines[-1]:
        assert lines[-1], batch.stderr.read()
        lines.append(batch.stdout.readline())
    return batch, lines


def events(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines()]


def kinds(found: list[dict], kind: str) -> set[str]:
    return {event["clip"] for event in found if event["event"] == kind}


def test_ray_batch_is_local_batch_and_resumes(cluster, tmp_path):
    clips = make_clips(tmp_path / "in", 3)
    local = run_cli("batch", clips, "-o", tmp_path / "local", "-f", "npz")
    assert local.returncode == 0, local.stderr
    out = tmp_path / "ray"
    args = ("batch", clips, "-o", out, "--ray", cluster)
    result = run_cli(*args, "-f", "npz,obj", "--json")
    assert result.returncode == 0, result.stderr
    first = result.stderr.splitlines()[0]
    assert (
        first.startswith(f"Ray cluster {cluster}: 2 workers")
        and "by the workers" in first
    )
    assert kinds(events(result.stdout), "done") == {f"clip{k}" for k in range(3)}
    for k in range(3):
        for speaker in (1, 2):
            name = f"clip{k}/clip{k}_speaker{speaker}.npz"
            assert (out / name).read_bytes() == (tmp_path / "local" / name).read_bytes()
        assert len(list((out / f"clip{k}" / f"clip{k}_speaker1").glob("*.obj"))) == 50

    # Run again: every clip is complete, and skipped.
    again = run_cli(*args, "-f", "npz,obj", "--json")
    assert again.returncode == 0, again.stderr
    assert kinds(events(again.stdout), "skipped") == {f"clip{k}" for k in range(3)}

    # Outputs sent back and written here give the same files.
    collected = tmp_path / "collected"
    result = run_cli("batch", clips, "-o", collected, "--ray", cluster, "--collect",
                     "-f", "npz,obj")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "sent back and written here" in result.stderr.splitlines()[0]
    for k in range(3):
        name = f"clip{k}/clip{k}_speaker2.npz"
        assert (collected / name).read_bytes() == (
            tmp_path / "local" / name
        ).read_bytes()
        objs = sorted((collected / f"clip{k}" / f"clip{k}_speaker2").iterdir())
        assert [p.name for p in objs] == sorted(
            p.name for p in (out / f"clip{k}" / f"clip{k}_speaker2").iterdir()
        )
    assert not leftovers(collected) and not leftovers(out)


def test_a_killed_worker_is_replaced_and_every_clip_completes(cluster, tmp_path):
    clips = make_clips(tmp_path / "in", 4, seconds=2.5)
    out = tmp_path / "out"
    batch, lines = start_batch(clips, out, cluster)
    workers = subprocess.run(
        ["pgrep", "-f", "ray::ClusterWorker"], capture_output=True, text=True
    ).stdout.split()
    assert workers, "no worker process found"
    os.kill(int(workers[0]), signal.SIGKILL)
    stdout, stderr = batch.communicate(timeout=300)
    assert batch.returncode == 0, stderr
    found = events("".join(lines) + stdout)
    assert kinds(found, "done") == {f"clip{k}" for k in range(4)}
    assert "trying again" in stderr
    assert not leftovers(out)


def test_sigterm_on_the_driver_stops_the_batch_without_partial_files(cluster, tmp_path):
    clips = make_clips(tmp_path / "in", 3, seconds=3.0)
    out = tmp_path / "out"
    batch, _ = start_batch(clips, out, cluster)
    time.sleep(0.5)  # the clips are under way
    batch.send_signal(signal.SIGTERM)
    stdout, stderr = batch.communicate(timeout=120)
    assert batch.returncode == 130, stderr
    assert "interrupted" in stderr
    assert not leftovers(out)
    for folder in out.iterdir():  # a clip is whole, or not there at all
        assert sorted(p.name for p in folder.iterdir()) == [
            f"{folder.name}_speaker1", f"{folder.name}_speaker1.npz",
            f"{folder.name}_speaker2", f"{folder.name}_speaker2.npz",
        ]  # fmt: skip
    # The same command again finishes the batch.
    result = run_cli("batch", clips, "-o", out, "--ray", cluster, "-f", "npz,obj")
    assert result.returncode == 0, result.stderr
    assert len(list(out.iterdir())) == 3


def test_given_partner_on_ray_is_the_same_as_here(cluster, tmp_path):
    torch = pytest.importorskip("torch")
    from dualtalk_cli.engines.dualtalk_model import (
        DualTalkConfig,
        DualTalkModel,
        to_released_names,
    )
    from dualtalk_cli.testing import write_dataset_npz

    torch.manual_seed(0)
    checkpoint = tmp_path / "DualTalk.pth"
    model = DualTalkModel(DualTalkConfig.tiny())
    torch.save(to_released_names(model.state_dict()), checkpoint)
    data = make_clips(tmp_path / "test", 1)
    for speaker in (1, 2):
        write_dataset_npz(data / f"clip0_speaker{speaker}.npz", 50, speaker)
    env = {**os.environ, "DUALTALK_TEST_NETWORK": "tiny"}
    args = ("batch", data, "--given-partner", "--weights", checkpoint)
    here = run_cli(*args, "-o", tmp_path / "here", env=env)
    assert here.returncode == 0, here.stderr
    there = run_cli(*args, "-o", tmp_path / "there", "--ray", cluster,
                    "--cpus-per-worker", "1", env=env)  # fmt: skip
    assert there.returncode == 0, there.stderr
    assert "engine dualtalk" in there.stderr.splitlines()[0]
    # The network's float sums follow the thread count: equal within 1e-5.
    from dualtalk_cli.motion import load_motion

    for speaker in (1, 2):
        name = f"clip0/clip0_speaker{speaker}.npz"
        made = load_motion(tmp_path / "there" / name).to_network()
        expected = load_motion(tmp_path / "here" / name).to_network()
        np.testing.assert_allclose(made, expected, atol=1e-5)


def test_ray_options_are_refused_where_they_cannot_apply(tmp_path):
    clips = make_clips(tmp_path / "in", 1)
    out = tmp_path / "out"
    result = run_cli("batch", clips, "-o", out, "--collect")
    assert_one_line_error(result, "--collect needs --ray")
    result = run_cli("batch", clips, "-o", out, "--gpus-per-worker", "1")
    assert_one_line_error(result, "--ray")
    result = run_cli("batch", clips, "-o", out, "--ray", "auto", "--cpus-per-worker",
                     "-1")  # fmt: skip
    assert_one_line_error(result, "--cpus-per-worker must be 0 or more")
    # Without Ray installed: one line saying how to install it.
    hide_ray = (
        "import sys; sys.modules['ray'] = None; from dualtalk_cli.cli import main; "
        f"sys.argv = ['dualtalk', 'batch', {str(clips)!r}, '-o', {str(out)!r}, "
        "'--ray', 'auto']; main()"
    )
    result = subprocess.run(
        [sys.executable, "-c", hide_ray], capture_output=True, text=True
    )
    assert_one_line_error(result, "pip install", "dualtalk-cli[ray]")
    assert not out.exists()


def test_local_batch_imports_nothing_of_ray(tmp_path):
    clips = make_clips(tmp_path / "in", 1)
    script = (
        "import sys; from dualtalk_cli.batch import find_clips, run_batch, "
        "BatchOptions; from dualtalk_cli.options import OutputOptions; "
        f"s = run_batch(find_clips({str(clips)!r}), {str(tmp_path / 'out')!r}, "
        "BatchOptions(output=OutputOptions(formats=('npz',)))); "
        "assert s.exit_code == 0; assert 'ray' not in sys.modules, 'ray imported'"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
