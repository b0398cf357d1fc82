"""The Ray runner: a batch's clips on a Ray cluster, one actor per worker.

Each actor (``ClusterWorker``) loads the engine and head once, through the same
``ClipWorker`` as local runs, and animates one clip at a time. The driver hands
clips to idle actors and reports results as they finish. Outputs are written
by the workers into OUT when every node sees that folder, or sent back and
written here with ``collect``. A worker that dies mid-clip is replaced and the
clip tried again (``MAX_ATTEMPTS`` in all); a node that cannot load the engine
is reported once and gets no clips. Ray is imported only here, and only when a
batch asks for a cluster.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import secrets
import shutil
import signal
import sys
import tempfile
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from dualtalk_cli.animation import engine_asked
from dualtalk_cli.batch.report import ClipEvent
from dualtalk_cli.batch.work import (
    THREAD_VARIABLES,
    BatchOptions,
    ClipWorker,
    clip_plan,
    load_worker,
    remove_leftovers,
    worker_engine,
)
from dualtalk_cli.errors import DualtalkError, OptionError, describe

MAX_ATTEMPTS = 3  # tries of one clip when its worker dies under it
START_TIMEOUT_S = 600.0  # for a worker to be placed and load the engine
CLEAN_UP_WAIT_S = 20.0  # for a killed worker to free a clip's folder
INSTALL_HINT = 'Ray is not installed: pip install "dualtalk-cli[ray]"'

Report = Callable[[ClipEvent], None]
Notify = Callable[[str], None]


def import_ray() -> Any:
    """The ray module, or one line saying how to install it."""
    # 'ray start' clusters ask for the token it saved (Ray 2.59 and later), and
    # Ray reads this when imported; a client that sends a token still reaches
    # a cluster that asks for none.
    token_file = Path.home() / ".ray" / "auth_token"
    given = ("RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")
    if any(os.environ.get(name) for name in given) or token_file.is_file():
        os.environ.setdefault("RAY_AUTH_MODE", "token")
    try:
        import ray
    except ImportError:
        raise DualtalkError(INSTALL_HINT) from None
    return ray


class ClusterWorker:
    """One Ray actor: a ClipWorker loaded once, animating one clip at a time."""

    def __init__(
        self, out_dir: str, options: BatchOptions, collect: bool, marker: str | None
    ) -> None:
        import socket

        self.host = socket.gethostname()
        self.error: str | None = None
        self.worker: ClipWorker | None = None
        if marker is not None and not Path(marker).is_file():
            self.error = (
                f"does not see the output folder {out_dir} (put OUT on storage "
                "every node sees, or pass --collect)"
            )
            return
        # Collected outputs are written here first, then sent to the driver.
        self.scratch = Path(tempfile.mkdtemp(prefix="dualtalk-")) if collect else None
        if self.scratch is not None:  # a worker that ends normally removes it
            import atexit

            atexit.register(shutil.rmtree, self.scratch, ignore_errors=True)
        try:
            if "mp4" in options.formats:
                from dualtalk_cli.render import check_renderer

                check_renderer()
        except DualtalkError as error:
            self.error = f"cannot load the engine or head: {error}"
            return
        self.worker, self.error = load_worker(Path(self.scratch or out_dir), options)

    def hello(self) -> dict[str, Any]:
        """Who this worker is, and why it cannot work (None: it can)."""
        return {"host": self.host, "pid": os.getpid(), "error": self.error}

    def run(self, clip: Any, index: int, total: int) -> tuple[ClipEvent, list]:
        """Animate one clip: its event, and with ``collect`` its files as
        (path relative to the clip's folder, bytes) pairs."""
        assert self.worker is not None, self.error
        if self.scratch is None:
            return self.worker.run(clip, index, total), []
        folder = self.scratch / clip.name
        try:
            event = self.worker.run(clip, index, total)
            files = []
            for output in event.outputs:  # what the clip wrote, nothing else
                path = Path(output)
                inside = sorted(path.rglob("*")) if path.is_dir() else [path]
                for part in inside:
                    if part.is_file():
                        relative = str(part.relative_to(folder))
                        files.append((relative, part.read_bytes()))
            return event, files
        finally:
            shutil.rmtree(folder, ignore_errors=True)


@dataclass
class _Slot:
    """A worker of the pool: its actor and where it runs."""

    actor: Any
    node: str  # Ray's node id
    host: str = ""
    pid: int = 0


@dataclass
class _Pool:
    """The cluster's workers, created node by node, replaced when they die."""

    ray: Any
    factory: Any  # the ray.remote class
    resources: dict[str, Any]  # its options: CPUs, GPUs, environment
    arguments: tuple
    notify: Notify | None
    bad_nodes: dict[str, str] = field(default_factory=dict)  # node id: why

    def start(self, nodes: dict[str, int]) -> list[_Slot]:
        """As many workers per node as ``nodes`` says; those that can work."""
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        slots = []
        for node, count in nodes.items():
            for _ in range(count):
                strategy = NodeAffinitySchedulingStrategy(node, soft=False)
                actor = self.factory.options(
                    **self.resources, scheduling_strategy=strategy
                ).remote(*self.arguments)
                slots.append(_Slot(actor, node))
        # All greeted at once: workers with no room cost one timeout, not one each.
        hellos = [slot.actor.hello.remote() for slot in slots]
        ready = set(
            self.ray.wait(hellos, num_returns=len(hellos), timeout=START_TIMEOUT_S)[0]
        )
        return [
            slot
            for slot, hello in zip(slots, hellos)
            if self._greet(slot, hello, hello in ready)
        ]

    def replace(self, slot: _Slot) -> _Slot | None:
        """A new worker on the dead one's node, if that node still lives."""
        self.kill(slot)
        alive = {node["NodeID"] for node in self.ray.nodes() if node["Alive"]}
        if slot.node not in alive or slot.node in self.bad_nodes:
            return None
        started = self.start({slot.node: 1})
        return started[0] if started else None

    def kill(self, slot: _Slot) -> None:
        try:
            self.ray.kill(slot.actor)
        except Exception:  # already gone
            pass

    def _greet(self, slot: _Slot, hello: Any, ready: bool) -> bool:
        """Whether the worker answered ``hello`` in time and can animate; a node
        that cannot is reported once. A worker the cluster had no room for is not."""
        if not ready:
            self.kill(slot)
            if self.notify:
                self.notify(
                    f"a worker was not started within {START_TIMEOUT_S:g} s (the "
                    "cluster's resources are taken); going on without it"
                )
            return False
        try:
            answer = self.ray.get(hello)
        except self.ray.exceptions.RayError as error:
            answer = {"host": slot.node[:12], "pid": 0, "error": _short(error)}
        slot.host, slot.pid = answer["host"], answer["pid"]
        if answer["error"] is None:
            return True
        if slot.node not in self.bad_nodes:
            self.bad_nodes[slot.node] = f"node {answer['host']}: {answer['error']}"
            if self.notify:
                self.notify(f"{self.bad_nodes[slot.node]}; it gets no clips")
        self.kill(slot)
        return False


def run_on_ray(
    tasks: list,
    out_dir: Path,
    options: BatchOptions,
    engine_name: str,
    report: Report,
    notify: Notify | None = None,
) -> None:
    """Every task on the Ray cluster ``options.cluster`` names."""
    ray = import_ray()
    # Ray's driver prints the cluster's error reports (a worker died, memory
    # pressure) to stdout, which holds only JSON lines: they go to stderr with
    # --debug, else nowhere (the batch reports every failure itself).
    with contextlib.redirect_stdout(sys.stderr if options.debug else _Discard()):
        _run_on_ray(ray, tasks, out_dir, options, engine_name, report, notify)


class _Discard(io.TextIOBase):
    """A text stream that keeps nothing."""

    def write(self, text: str) -> int:
        return len(text)


def _run_on_ray(
    ray: Any,
    tasks: list,
    out_dir: Path,
    options: BatchOptions,
    engine_name: str,
    report: Report,
    notify: Notify | None,
) -> None:
    cluster = options.cluster
    assert cluster is not None
    # Workers run elsewhere, in another folder: they get absolute paths, and
    # the events say them as given here.
    given_out, out_dir = Path(out_dir), Path(out_dir).absolute()
    tasks = [replace(task, clip=_absolute_clip(task.clip)) for task in tasks]

    def as_given(event: ClipEvent) -> None:
        outputs = tuple(
            str(given_out / Path(path).relative_to(out_dir))
            if Path(path).is_relative_to(out_dir)
            else path
            for path in event.outputs
        )
        report(replace(event, outputs=outputs))

    handler = signal.getsignal(signal.SIGTERM)
    marker = None
    try:
        # Ray installs its own SIGTERM handler (an exit); ours cancels the
        # batch cleanly. Signals wait until it is back.
        held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        try:
            _connect(ray, cluster.address)
            signal.signal(signal.SIGTERM, handler)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, held)
        resources = ray.cluster_resources()
        network = engine_name == "dualtalk"
        gpus = cluster.gpus_per_worker
        if gpus is None:  # only the network uses a GPU
            gpus = 1.0 if network and resources.get("GPU", 0) > 0 else 0.0
        cpus = cluster.cpus_per_worker
        if cpus is None:
            cpus = 4.0 if network and not gpus else 1.0
        if not cpus and not gpus:
            raise OptionError("a worker needs a CPU or a GPU (--cpus-per-worker 0)")
        nodes = _workers_per_node(ray, cpus, gpus, len(tasks), cluster.max_workers)
        if not nodes:
            raise DualtalkError(
                f"the Ray cluster has no room for a worker of {cpus:g} CPUs and "
                f"{gpus:g} GPUs (it has {resources.get('CPU', 0):g} CPUs, "
                f"{resources.get('GPU', 0):g} GPUs)"
            )
        if not cluster.collect:
            marker = Path(out_dir) / f".dualtalk-ray-{secrets.token_hex(4)}"
            marker.touch()
        where = (
            "sent back and written here (--collect)"
            if cluster.collect
            else f"written by the workers into {out_dir} (storage every node sees)"
        )
        shown = engine_asked(worker_engine(options), engine_name)
        if notify:
            workers, machines = sum(nodes.values()), len(nodes)
            notify(
                f"Ray cluster {cluster.address}: {workers} worker"
                f"{'s' * (workers != 1)} on {machines} node{'s' * (machines != 1)}, "
                f"{cpus:g} CPUs and {gpus:g} GPUs each, engine {shown}; "
                f"outputs {where}"
            )
        worker_options = replace(
            _resolved(options, engine_name), cluster=None, debug=False
        )
        threads = str(max(1, int(cpus)))
        variables = dict.fromkeys(THREAD_VARIABLES, threads)
        if not gpus:  # Ray shows a worker without GPUs all of them
            variables["CUDA_VISIBLE_DEVICES"] = ""
        resources = {
            "num_cpus": cpus,
            "num_gpus": gpus,
            "max_restarts": 0,
            "runtime_env": {"env_vars": variables},
        }
        arguments = (
            str(out_dir),
            worker_options,
            cluster.collect,
            None if marker is None else str(marker),
        )
        pool = _Pool(ray, ray.remote(ClusterWorker), resources, arguments, notify)
        slots = pool.start(nodes)
        if not slots:
            reasons = "; ".join(pool.bad_nodes.values()) or "no worker started"
            raise DualtalkError(f"no Ray worker can animate: {reasons}")
        _dispatch(ray, pool, slots, tasks, out_dir, options, as_given, notify)
    finally:
        if marker is not None:
            marker.unlink(missing_ok=True)
        ray.shutdown()


def _dispatch(
    ray: Any,
    pool: _Pool,
    slots: list[_Slot],
    tasks: list,
    out_dir: Path,
    options: BatchOptions,
    report: Report,
    notify: Notify | None,
) -> None:
    """Hand clips to idle workers until all are reported."""
    collect = options.cluster is not None and options.cluster.collect
    pending = deque((task, 1) for task in tasks)
    idle = list(slots)
    running: dict[Any, tuple[_Slot, Any, int]] = {}
    try:
        while pending or running:
            while pending and idle:
                slot = idle.pop()
                task, attempt = pending.popleft()
                clip = task.clip
                ref = slot.actor.run.remote(clip, task.index, task.total)
                running[ref] = (slot, task, attempt)
                if attempt == 1:
                    report(task.event("start"))
            if not running:  # clips left, and no worker to take them
                for task, _ in pending:
                    message = "no Ray worker left to animate it"
                    report(task.event("failed", message=message))
                return
            finished, _ = ray.wait(list(running), num_returns=1, timeout=0.5)
            for ref in finished:
                slot, task, attempt = running.pop(ref)
                try:
                    event, files = ray.get(ref)
                except ray.exceptions.RayActorError as error:
                    # The worker died (killed, out of memory): replace it, and
                    # try the clip again on a fresh one.
                    reason = f"its Ray worker on {slot.host} died ({_short(error)})"
                    if not collect:
                        # Also waits for the dying worker to free the folder.
                        _clean_up(task.clip, out_dir, options)
                    if attempt < MAX_ATTEMPTS:
                        pending.appendleft((task, attempt + 1))
                        if notify:
                            notify(f"{task.clip.name}: {reason}; trying again")
                    else:
                        message = f"{reason}, {attempt} times"
                        report(task.event("failed", message=message))
                    fresh = pool.replace(slot)
                    if fresh is not None:
                        idle.append(fresh)
                    continue
                except ray.exceptions.RayError as error:
                    report(task.event("failed", message=_short(error)))
                    idle.append(slot)
                    continue
                if collect:
                    event = _write_collected(event, files, task.clip, out_dir, options)
                report(event)
                idle.append(slot)
    except BaseException:
        # Ctrl-C, or the cluster lost: stop every worker, then remove what the
        # clips under way left.
        for slot, _, _ in running.values():
            pool.kill(slot)
        for ref, (_, task, _) in running.items():
            try:
                ray.get(ref, timeout=30)
            except Exception:  # killed: as intended
                pass
            _clean_up(task.clip, out_dir, options)
        raise


def _write_collected(
    event: ClipEvent, files: list, clip: Any, out_dir: Path, options: BatchOptions
) -> ClipEvent:
    """Write a collected clip's files into OUT/<clip>/ as one transaction."""
    if event.event != "done":
        return event
    plan = clip_plan(clip, out_dir, options)
    folder = plan.out_dir
    redo = options.output.overwrite or plan.any_exists()
    try:
        with plan.writing(overwrite=redo) as transaction:
            folders: dict[str, Path] = {}  # an OBJ sequence's temporary folder
            for relative, data in files:
                top, *inside = Path(relative).parts
                if not inside:
                    target = transaction.file(folder / top)
                else:
                    if top not in folders:
                        folders[top] = transaction.folder(folder / top)
                    target = folders[top].joinpath(*inside)
                    target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
    except Exception as error:  # writing here failed: the clip failed
        return replace(event, event="failed", message=describe(error), outputs=())
    names = dict.fromkeys(Path(relative).parts[0] for relative, _ in files)
    return replace(event, outputs=tuple(str(folder / name) for name in names))


def _clean_up(clip: Any, out_dir: Path, options: BatchOptions) -> None:
    """Remove what a killed worker left of ``clip`` in OUT.

    The worker's process may take a moment to die and free the clip's folder
    lock, so this waits for it a little.
    """
    import time

    deadline = time.monotonic() + CLEAN_UP_WAIT_S
    while not remove_leftovers(clip, out_dir, options):
        if time.monotonic() > deadline:
            return
        time.sleep(0.2)


def _resolved(options: BatchOptions, engine_name: str) -> BatchOptions:
    """``options`` naming the engine, head and files this driver found, as
    absolute paths, so that every worker loads those (a worker has another
    folder and environment)."""
    from dualtalk_cli.options import needs_head

    engine = replace(options.compute.engine, name=engine_name)
    if engine_name == "dualtalk" and engine.weights is None:
        from dualtalk_cli.engines.dualtalk import find_weights

        engine = replace(engine, weights=find_weights())
    head = options.output.head
    if needs_head(options.formats):
        from dualtalk_cli.heads import HEADS

        name = HEADS.resolve(head.chosen, **head.settings())
        head = replace(head, name=name)
        if name == "flame" and head.flame is None:
            from dualtalk_cli.heads.flame import find_flame_model

            head = replace(head, flame=find_flame_model())
    engine = replace(engine, weights=_absolute(engine.weights))
    head = replace(
        head, flame=_absolute(head.flame), flame_eyelids=_absolute(head.flame_eyelids)
    )
    return replace(
        options,
        compute=replace(options.compute, engine=engine),
        output=replace(options.output, head=head),
    )


def _absolute_clip(clip: Any) -> Any:
    """``clip`` with every file as an absolute path."""
    return replace(
        clip,
        audio_a=_absolute(clip.audio_a),
        audio_b=_absolute(clip.audio_b),
        shapes=tuple(_absolute(path) for path in clip.shapes),
        diarization=_absolute(clip.diarization),
    )


def _absolute(path: str | os.PathLike | None) -> Path | None:
    return None if path is None else Path(path).absolute()


def _connect(ray: Any, address: str) -> None:
    """Join (or, for "local", start) the cluster, quietly; one line on failure."""
    # (import_ray has already set up the token that 'ray start' clusters ask for.)
    settings: dict[str, Any] = {
        "address": address,  # "local": always a new instance, here
        "log_to_driver": False,
        "logging_level": logging.ERROR,
    }
    if address == "local":  # another cluster keeps its own setting
        settings["include_dashboard"] = False
    try:
        ray.init(**settings)
    except (
        ConnectionError,
        RuntimeError,
        ValueError,
        ray.exceptions.RayError,
    ) as error:
        hint = " (start one with 'ray start --head', or use --ray local)"
        raise DualtalkError(
            f"cannot reach the Ray cluster {address!r}: {_short(error)}"
            f"{hint if address == 'auto' else ''}"
        ) from None


def _workers_per_node(
    ray: Any, cpus: float, gpus: float, clips: int, jobs: int | None
) -> dict[str, int]:
    """How many workers each alive node takes: what its resources fit, at most
    one per clip, and at most ``jobs`` in all (None: no limit)."""
    fits = {}
    for node in ray.nodes():
        if not node.get("Alive"):
            continue
        have = node.get("Resources", {})
        counts = []
        if cpus:
            counts.append(int(have.get("CPU", 0) // cpus))
        if gpus:
            counts.append(int(have.get("GPU", 0) // gpus))
        if min(counts) > 0:
            fits[node["NodeID"]] = min(counts)
    limit = min(clips, jobs) if jobs else clips
    chosen: dict[str, int] = {}
    while sum(chosen.values()) < limit and any(fits.values()):
        for node in list(fits):  # spread: one per node in turn
            if fits[node] and sum(chosen.values()) < limit:
                chosen[node] = chosen.get(node, 0) + 1
                fits[node] -= 1
    return chosen


def _short(error: BaseException) -> str:
    """The first meaningful line of a Ray error."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0][:300] if lines else type(error).__name__
