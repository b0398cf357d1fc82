"""Runners: who works on a batch's clips. Each one hands every clip to a ClipWorker.

``run_here`` works in this process; ``run_in_processes`` in ``jobs`` spawned
processes on this machine, each loading the engine and head once. The Ray
runner (``cluster``) reuses ``ClipWorker`` the same way, one per actor.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from dualtalk_cli.batch.clips import Clip
from dualtalk_cli.batch.report import EXIT_INTERRUPTED, ClipEvent
from dualtalk_cli.batch.work import (
    THREAD_VARIABLES,
    BatchOptions,
    ClipWorker,
    load_worker,
)
from dualtalk_cli.writers import Progress

Report = Callable[[ClipEvent], None]


@dataclass(frozen=True)
class Task:
    """A clip to animate and its place in the batch."""

    clip: Clip
    index: int  # 1-based
    total: int

    def event(self, kind: str, **fields: Any) -> ClipEvent:
        return ClipEvent(kind, self.clip.name, self.index, self.total, **fields)


def run_here(
    tasks: list[Task],
    out_dir: Path,
    options: BatchOptions,
    report: Report,
    progress: Progress | None = None,
    notify: Callable[[str], None] | None = None,
) -> None:
    """Every task in this process, one after another."""
    worker = ClipWorker(out_dir, options)
    if notify:
        notify(worker.animator.description)
    for task in tasks:
        report(task.event("start"))
        report(worker.run(task.clip, task.index, task.total, progress))


def run_in_processes(
    tasks: list[Task], out_dir: Path, options: BatchOptions, report: Report
) -> None:
    """Every task in ``options.jobs`` spawned processes, results as they finish."""
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    context = multiprocessing.get_context("spawn")  # no fork of a process with threads
    messages = context.SimpleQueue()
    worker_ids: set[int] = set()
    executor = ProcessPoolExecutor(
        max_workers=min(options.jobs, len(tasks)),
        mp_context=context,
        initializer=_start_worker,
        initargs=(out_dir, options, messages, os.getpid()),
    )

    def drain() -> None:
        while not messages.empty():
            kind, value = messages.get()
            if kind == "pid":
                worker_ids.add(value)
            else:
                report(value)

    futures = {executor.submit(_work_on, task): task for task in tasks}
    try:
        remaining = set(futures)
        while remaining:
            finished, remaining = wait(
                remaining, timeout=0.2, return_when=FIRST_COMPLETED
            )
            drain()
            for future in finished:
                try:
                    report(future.result())
                except Exception as error:  # the worker process died
                    message = f"worker process failed: {type(error).__name__}: {error}"
                    report(futures[future].event("failed", message=message))
        drain()
    except KeyboardInterrupt:
        drain()
        # Workers clean up their temporary files on SIGTERM, then the pool ends.
        for worker in worker_ids:
            try:
                os.kill(worker, signal.SIGTERM)
            except ProcessLookupError:
                pass
        executor.shutdown(wait=True, cancel_futures=True)
        raise
    executor.shutdown(wait=True)


class _WorkerProcess:
    """One worker process of ``run_in_processes``: its ClipWorker and its state."""

    def __init__(self, messages: Any) -> None:
        self.messages = messages
        self.busy = self.stopping = False
        self.worker: ClipWorker | None = None
        self.error: str | None = None

    def load(self, out_dir: Path, options: BatchOptions) -> None:
        # A clip's failure is reported by the parent, never raised here.
        options = replace(options, debug=False)
        self.worker, self.error = load_worker(out_dir, options)

    def stop(self, signum: int, frame: Any) -> None:
        """SIGTERM (from the parent, or because it died): a clip under way
        unwinds through the writers' clean-up; an idle worker exits now."""
        self.stopping = True
        if self.busy:
            raise KeyboardInterrupt
        os._exit(EXIT_INTERRUPTED)

    def work_on(self, task: Task) -> ClipEvent:
        if self.stopping:
            raise KeyboardInterrupt  # queued before the stop: not started
        if self.worker is None:
            return task.event("failed", message=self.error)
        self.messages.put(("event", task.event("start")))
        self.busy = True
        try:
            return self.worker.run(task.clip, task.index, task.total)
        finally:
            self.busy = False
            if self.stopping:
                # An interrupt can land inside a clean-up and cut it short.
                signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
                self.worker.clean_up(task.clip)
                os._exit(EXIT_INTERRUPTED)


_process: _WorkerProcess | None = None  # this worker process's state, set once


def _start_worker(
    out_dir: Path, options: BatchOptions, messages: Any, parent: int
) -> None:
    global _process
    # The parent decides when to stop: Ctrl-C in the terminal reaches it alone.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _process = _WorkerProcess(messages)
    signal.signal(signal.SIGTERM, _process.stop)  # also while the engine loads
    # A worker must not outlive its parent, even one killed with SIGKILL: the
    # kernel sends SIGTERM when the parent dies (checked once more afterwards,
    # in case it died before this line).
    _die_with_parent()
    if os.getppid() != parent:
        os._exit(EXIT_INTERRUPTED)
    # Share the cores instead of every process using all of them.
    threads = str(max(1, (os.cpu_count() or 1) // options.jobs))
    for variable in THREAD_VARIABLES:
        os.environ.setdefault(variable, threads)
    messages.put(("pid", os.getpid()))
    _process.load(out_dir, options)


def _die_with_parent() -> None:
    """Ask Linux for SIGTERM when the parent process dies (PR_SET_PDEATHSIG)."""
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM, 0, 0, 0)  # 1: PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # not Linux: the parent's SIGTERM on exit still stops workers


def _work_on(task: Task) -> ClipEvent:
    assert _process is not None, "the worker process was not started"
    return _process.work_on(task)
