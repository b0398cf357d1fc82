"""``run_batch``: check once, skip what is complete, hand the rest to a runner."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

from dualtalk_cli.animation import check_follows_partner, describe_setup, passed_over
from dualtalk_cli.batch.clips import Clip
from dualtalk_cli.batch.report import BatchSummary, ClipEvent
from dualtalk_cli.batch.runners import Task, run_here, run_in_processes
from dualtalk_cli.batch.work import BatchOptions, clip_plan, worker_engine
from dualtalk_cli.engines import ENGINES
from dualtalk_cli.errors import EngineUnavailable, OptionError
from dualtalk_cli.heads import load_head
from dualtalk_cli.options import (
    needs_head,
    precision_unknown,
    refuse_unused,
    unused_with_partner,
)
from dualtalk_cli.outputs import locked_folder, prepare_folder
from dualtalk_cli.writers import Progress


def run_batch(
    clips: Sequence[Clip],
    out_dir: str | Path,
    options: BatchOptions = BatchOptions(),
    *,
    on_event: Callable[[ClipEvent], None] | None = None,
    progress: Progress | None = None,
    notify: Callable[[str], None] | None = None,
) -> BatchSummary:
    """Animate ``clips`` into ``out_dir/<clip>/``; failures are reported, not raised.

    Problems with the whole batch (an option it cannot honour, an unusable
    output folder, no renderer, an engine that cannot load) raise a
    DualtalkError before any clip is touched. A KeyboardInterrupt stops the
    batch; the summary says so.
    """
    started = time.perf_counter()
    out_dir = Path(out_dir)
    engine_name = check_batch(out_dir, options)
    if options.compute.split != "auto" and all(c.audio_b is not None for c in clips):
        refuse_unused("batch", ["--split (no conversation is one recording)"])
    if options.compute.split == "channels" and any(c.diarization for c in clips):
        refuse_unused(
            "batch --split channels", ["the manifest's rttm column (turns in a mix)"]
        )
    summary = BatchSummary(total=len(clips))
    said: set[str] = set()

    def report(event: ClipEvent) -> None:
        summary.record(event)
        for note in event.notes:
            if note not in said and notify:
                said.add(note)
                notify(note)
        if on_event:
            on_event(event)
        if progress and event.event != "start":
            progress("clips", summary.finished, summary.total)

    try:
        # One batch at a time in OUT; each clip's folder is locked as it is done.
        with locked_folder(out_dir):
            _run_tasks(clips, out_dir, options, report, engine_name, progress, notify)
    except KeyboardInterrupt:
        summary.interrupted = True
    summary.seconds = time.perf_counter() - started
    return summary


def _run_tasks(
    clips: Sequence[Clip],
    out_dir: Path,
    options: BatchOptions,
    report: Callable[[ClipEvent], None],
    engine_name: str,
    progress: Progress | None,
    notify: Callable[[str], None] | None,
) -> None:
    """Skip what is complete, report what cannot run, hand the rest to a runner."""
    tasks: list[Task] = []
    for index, clip in enumerate(clips, start=1):
        task = Task(clip, index, len(clips))
        if clip.problem:
            report(task.event("failed", message=clip.problem))
        elif not options.output.overwrite and _is_complete(clip, out_dir, options):
            report(task.event("skipped", message="outputs complete"))
        else:
            tasks.append(task)
    if tasks and options.cluster is not None:
        from dualtalk_cli.batch.cluster import run_on_ray

        run_on_ray(tasks, out_dir, options, engine_name, report, notify)
    elif tasks and options.jobs <= 1:
        run_here(tasks, out_dir, options, report, progress, notify)
    elif tasks:
        # Fail in this process, once, when the head cannot be used at all.
        wanted = needs_head(options.formats)
        head = load_head(options.output.head) if wanted else None
        setup = describe_setup(worker_engine(options), engine_name, head)
        if notify:
            notify(f"{setup}; {min(options.jobs, len(tasks))} processes")
        run_in_processes(tasks, out_dir, options, report)


def _is_complete(clip: Clip, out_dir: Path, options: BatchOptions) -> bool:
    try:
        return clip_plan(clip, out_dir, options).is_complete()
    except (OSError, ValueError):
        return False  # a name the system refuses: the clip's own run says so


def check_batch(out_dir: Path, options: BatchOptions) -> str:
    """The checks that stop a batch before any clip; returns the engine's name."""
    engine = options.compute.engine
    checked = engine
    if options.cluster is not None:
        # The devices and precisions a worker can use are the worker's to check
        # (a driver without a GPU may hand work to GPU nodes); here only that
        # they are known settings of the engine.
        checked = replace(engine, device=None, precision=None)
        if engine.precision is not None and (
            unknown := precision_unknown(engine.precision)
        ):
            raise OptionError(unknown)
    if options.given_partner:
        mode = "--given-partner"
        refuse_unused(mode, unused_with_partner(options.compute, options.output))
        check_follows_partner(checked, mode)
    else:
        options.output.check_used(options.formats)
    if any(options.compute.shapes):
        refuse_unused("batch", ["identities (give them per clip in a manifest)"])
    engine_name = ENGINES.resolve(checked.name, **checked.settings())
    # With --ray, resolve did not see the device and precision: are they taken?
    refused = options.cluster and ENGINES.refused_settings(
        engine_name, engine.settings()
    )
    if refused:
        names = ", ".join(map(repr, refused))
        raise EngineUnavailable(
            f"engine '{engine_name}' cannot be used: takes no option {names}"
            f"{passed_over(checked, engine_name)}"
        )
    if options.cluster is not None:
        from dualtalk_cli.batch.cluster import import_ray

        import_ray()  # one line saying how to install it, before anything else
    prepare_folder(out_dir)
    if "mp4" in options.formats and options.cluster is None:  # Ray: each worker
        from dualtalk_cli.render import check_renderer

        check_renderer()
    return engine_name
