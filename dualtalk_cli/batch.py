"""Many conversations in one run: find them, animate each, resume, report.

The engine and the head are loaded once (once per worker process with
``jobs`` > 1). Each conversation's outputs go to ``OUT_DIR/<clip>/`` exactly as
``animate`` writes them; a clip whose outputs all exist is skipped, so running
the same batch again finishes only what is missing.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from dualtalk_cli.animation import (
    DEFAULT_FORMATS,
    HeadOptions,
    animate,
    animate_with_partner,
    describe_setup,
    load_engine_and_head,
    output_names,
    prepare_output_dir,
)
from dualtalk_cli.audio import FPS
from dualtalk_cli.errors import DualtalkError, first_line
from dualtalk_cli.motion import split_speaker_name
from dualtalk_cli.writers import Conversation, Progress, get_writers

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3")
MANIFEST_COLUMNS = ("name", "speaker1", "speaker2", "shape1", "shape2")

# Exit codes of a batch, for scripts.
EXIT_OK = 0
EXIT_SOME_FAILED = 3
EXIT_INTERRUPTED = 130


class ManifestError(DualtalkError):
    """A manifest CSV cannot be used as a whole."""


@dataclass(frozen=True)
class Clip:
    """One conversation of a batch; ``audio_b`` None means a stereo file."""

    name: str
    audio_a: Path
    audio_b: Path | None = None
    shapes: tuple[Path | None, Path | None] = (None, None)
    problem: str | None = None  # found while listing: the clip fails without work


@dataclass(frozen=True)
class BatchSettings:
    """How every clip is animated: the options ``animate`` takes."""

    engine: str = "auto"
    engine_options: dict[str, Any] = field(default_factory=dict)
    head: HeadOptions = HeadOptions()
    formats: tuple[str, ...] = DEFAULT_FORMATS
    seed: int = 0
    frames_per_second: float = FPS
    size: int = 512
    overwrite: bool = False  # redo complete clips too
    # The paper's test protocol: each speaker predicted given the partner's
    # ground-truth motion (<clip>_speakerK.npz beside the audio); NPZ only.
    given_partner: bool = False


@dataclass(frozen=True)
class ClipEvent:
    """Something that happened to one clip: start, done, skipped or failed."""

    event: str
    clip: str
    index: int  # 1-based position in the batch
    total: int
    seconds: float | None = None  # wall time of the clip's work
    outputs: tuple[str, ...] = ()
    message: str | None = None  # why it was skipped or failed
    notes: tuple[str, ...] = ()

    def to_json(self) -> str:
        """One JSON line; empty fields are left out."""
        fields = {k: v for k, v in asdict(self).items() if v is not None and v != ()}
        return json.dumps(fields, ensure_ascii=False)  # tuples become lists


@dataclass
class BatchSummary:
    """How a batch ended."""

    total: int
    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (clip, why)
    interrupted: bool = False
    seconds: float = 0.0

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return EXIT_INTERRUPTED
        return EXIT_SOME_FAILED if self.failed else EXIT_OK

    def record(self, event: ClipEvent) -> None:
        if event.event == "done":
            self.done.append(event.clip)
        elif event.event == "skipped":
            self.skipped.append(event.clip)
        elif event.event == "failed":
            self.failed.append((event.clip, event.message or "failed"))

    def to_json(self) -> str:
        return json.dumps(
            {
                "event": "summary",
                "total": self.total,
                "done": len(self.done),
                "skipped": len(self.skipped),
                "failed": len(self.failed),
                "interrupted": self.interrupted,
                "seconds": round(self.seconds, 3),
                "exit_code": self.exit_code,
            }
        )


def find_clips(source: str | os.PathLike) -> list[Clip]:
    """The conversations in a folder, or listed by a manifest CSV, sorted by name.

    In a folder, ``<clip>_speaker1.<ext>`` and ``<clip>_speaker2.<ext>`` form a
    pair (as in the DualTalk dataset) and any other audio file is a stereo
    conversation. Problems that concern one clip (a missing partner, a name used
    twice) are kept on that clip, so the rest of the batch still runs.
    """
    source = Path(source)
    if not source.exists():
        raise DualtalkError("not found", source)
    if source.is_file():
        if source.suffix.lower() != ".csv":
            raise DualtalkError(
                "give a folder of audio files or a manifest .csv", source
            )
        clips = read_manifest(source)
    else:
        clips = _clips_in_folder(source)
    if not clips:
        raise DualtalkError(
            "no conversations found (expected <clip>_speaker1/_speaker2 audio pairs "
            f"or stereo files: {', '.join(AUDIO_EXTENSIONS)})",
            source,
        )
    return _mark_clashes(sorted(clips, key=lambda clip: clip.name))


def _clips_in_folder(folder: Path) -> list[Clip]:
    pairs: dict[str, dict[int, list[Path]]] = {}
    clips = []
    try:
        entries = sorted(folder.iterdir())
    except OSError as error:
        raise DualtalkError(f"cannot list folder ({error.strerror})", folder) from None
    for path in entries:
        if path.name.startswith(".") or path.suffix.lower() not in AUDIO_EXTENSIONS:
            continue
        if not path.is_file():
            continue
        parsed = split_speaker_name(path.stem)
        if parsed:
            clip, speaker = parsed
            pairs.setdefault(clip, {1: [], 2: []})[speaker].append(path)
        else:
            clips.append(Clip(name=path.stem, audio_a=path))
    for name, speakers in pairs.items():
        clips.append(_pair(name, speakers[1], speakers[2]))
    return clips


def _pair(name: str, firsts: list[Path], seconds: list[Path]) -> Clip:
    """The clip of a ``_speaker1``/``_speaker2`` pair, or the reason there is none."""
    for number, found in ((1, firsts), (2, seconds)):
        if len(found) > 1:
            listed = ", ".join(path.name for path in found)
            return Clip(
                name,
                found[0],
                problem=f"two audio files for speaker {number}: {listed}",
            )
    if not seconds:
        return Clip(
            name, firsts[0], problem=f"{firsts[0]}: no {name}_speaker2 audio beside it"
        )
    if not firsts:
        return Clip(
            name,
            seconds[0],
            problem=f"{seconds[0]}: no {name}_speaker1 audio beside it",
        )
    return Clip(name, firsts[0], seconds[0])


def read_manifest(path: str | os.PathLike) -> list[Clip]:
    """Clips from a CSV with a header naming ``speaker1`` and optionally ``speaker2``
    (empty: speaker1 is stereo), ``name``, ``shape1`` and ``shape2``. Relative
    paths are relative to the CSV's folder."""
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8-sig") as file:
            rows = list(csv.DictReader(file))
            header = [] if not rows else list(rows[0])
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise ManifestError(f"not a readable CSV file ({error})", path) from None
    if rows and "speaker1" not in header:
        raise ManifestError(
            "needs a header row with a speaker1 column "
            f"(columns: {', '.join(MANIFEST_COLUMNS)})",
            path,
        )
    unknown = [column for column in header if column not in MANIFEST_COLUMNS]
    if unknown:
        raise ManifestError(
            f"unknown columns {unknown} (known: {', '.join(MANIFEST_COLUMNS)})", path
        )
    clips = []
    for line, row in enumerate(rows, start=2):

        def resolve(column: str, row: dict = row) -> Path | None:
            value = (row.get(column) or "").strip()
            return (path.parent / value) if value else None

        audio_a, audio_b = resolve("speaker1"), resolve("speaker2")
        name = (row.get("name") or "").strip()
        if audio_a is None:
            if any((value or "").strip() for value in row.values()):
                clips.append(
                    Clip(
                        name or f"line{line}",
                        path,
                        problem=f"{path}: line {line}: no speaker1 file",
                    )
                )
            continue
        if not name:
            parsed = split_speaker_name(audio_a.stem)
            name = parsed[0] if parsed and audio_b is not None else audio_a.stem
        problem = None
        if name in (".", "..") or "/" in name or "\\" in name:
            problem = f"{path}: line {line}: name {name!r} is not a folder name"
        clips.append(
            Clip(
                name, audio_a, audio_b, (resolve("shape1"), resolve("shape2")), problem
            )
        )
    return clips


def _mark_clashes(clips: list[Clip]) -> list[Clip]:
    """Clips that would write into the same folder all fail, naming each other."""
    by_name: dict[str, list[Clip]] = {}
    for clip in clips:
        by_name.setdefault(clip.name, []).append(clip)
    marked = []
    for clip in clips:
        others = by_name[clip.name]
        if len(others) > 1 and clip.problem is None:
            files = ", ".join(str(other.audio_a) for other in others)
            clip = Clip(
                clip.name,
                clip.audio_a,
                clip.audio_b,
                clip.shapes,
                problem=f"{len(others)} conversations would share the output folder "
                f"{clip.name}/ ({files})",
            )
        marked.append(clip)
    return marked


def planned_outputs(
    clip: Clip, out_dir: str | os.PathLike, settings: BatchSettings
) -> list[Path]:
    """Every final path ``animate`` writes for ``clip``."""
    names, video_name = output_names(clip.audio_a, clip.audio_b)
    planned = Conversation(names=names, motions=(), video_name=video_name)
    formats = ["npz"] if settings.given_partner else list(settings.formats)
    writers = get_writers(formats, Path(out_dir) / clip.name)
    return [path for writer in writers for path in writer.outputs(planned)]


def is_complete(
    clip: Clip, out_dir: str | os.PathLike, settings: BatchSettings
) -> bool:
    """Whether every output of ``clip`` exists (each is renamed into place whole)."""
    return all(path.exists() for path in planned_outputs(clip, out_dir, settings))


def remove_leftovers(folder: Path) -> None:
    """Delete temporary files a killed run left behind (``.NAME.partial...``)."""
    if not folder.is_dir():
        return
    for path in folder.iterdir():
        if path.name.startswith(".") and (
            ".partial" in path.name or path.name.endswith(".previous")
        ):
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)


def run_batch(
    clips: Sequence[Clip],
    out_dir: str | os.PathLike,
    settings: BatchSettings = BatchSettings(),
    *,
    jobs: int = 1,
    on_event: Callable[[ClipEvent], None] | None = None,
    progress: Progress | None = None,
    notify: Callable[[str], None] | None = None,
    debug: bool = False,
) -> BatchSummary:
    """Animate ``clips`` into ``out_dir/<clip>/``; failures are reported, not raised.

    Problems with the whole batch (an unusable output folder, no renderer, an
    engine that cannot load) raise a DualtalkError before any clip is touched.
    A KeyboardInterrupt stops the batch; the summary says so.
    """
    from dualtalk_cli.engines import ENGINES

    started = time.perf_counter()
    out_dir = Path(out_dir)
    # Cheap checks first: a batch that cannot run says so before any clip.
    engine_name = ENGINES.resolve(settings.engine, **settings.engine_options)
    if settings.given_partner and engine_name != "dualtalk":
        raise DualtalkError(
            "--given-partner needs the DualTalk network (engine dualtalk); "
            f"this run would use {engine_name}"
        )
    prepare_output_dir(out_dir, [], Conversation(names=(), motions=()))
    if settings.given_partner:
        settings = replace(settings, formats=("npz",))
    if "mp4" in settings.formats:
        from dualtalk_cli.render import check_renderer

        check_renderer()
    summary = BatchSummary(total=len(clips))
    said: set[str] = set()

    def report(event: ClipEvent) -> None:
        summary.record(event)
        for note in event.notes:
            if note not in said:
                said.add(note)
                _say(notify, note)
        if on_event:
            on_event(event)
        if progress and event.event != "start":
            finished = len(summary.done) + len(summary.skipped) + len(summary.failed)
            progress("clips", finished, summary.total)

    pending: list[tuple[int, Clip]] = []
    for index, clip in enumerate(clips, start=1):
        if clip.problem:
            report(
                ClipEvent("failed", clip.name, index, len(clips), message=clip.problem)
            )
        elif not settings.overwrite and is_complete(clip, out_dir, settings):
            message = "outputs complete"
            report(ClipEvent("skipped", clip.name, index, len(clips), message=message))
        else:
            pending.append((index, clip))
    try:
        if pending and jobs <= 1:
            _run_here(
                pending, len(clips), out_dir, settings, report, progress, notify, debug
            )
        elif pending:
            _run_in_workers(
                pending,
                len(clips),
                out_dir,
                settings,
                engine_name,
                jobs,
                report,
                notify,
            )
    except KeyboardInterrupt:
        summary.interrupted = True
    summary.seconds = time.perf_counter() - started
    return summary


def animate_clip(
    clip: Clip,
    out_dir: Path,
    settings: BatchSettings,
    engine: Any,
    head: Any,
    *,
    index: int,
    total: int,
    progress: Progress | None = None,
    debug: bool = False,
) -> ClipEvent:
    """Animate one clip with a loaded engine and head; errors become a failed event."""
    started = time.perf_counter()
    folder = out_dir / clip.name
    remove_leftovers(folder)
    # An interrupted clip has some outputs already: they are redone with the rest.
    redo = settings.overwrite or any(
        p.exists() for p in planned_outputs(clip, out_dir, settings)
    )
    notes: list[str] = []
    try:
        if settings.given_partner:
            outputs = _animate_given_partners(clip, folder, settings, engine, redo)
        else:
            outputs = animate(
                clip.audio_a,
                clip.audio_b,
                out_dir=folder,
                engine=engine,
                head=head,
                formats=settings.formats,
                seed=settings.seed,
                frames_per_second=settings.frames_per_second,
                size=settings.size,
                shapes=clip.shapes,
                overwrite=redo,
                progress=progress,
                notify=notes.append,
            ).outputs
    except DualtalkError as error:
        if debug:
            raise
        _remove_if_empty(folder)
        return ClipEvent("failed", clip.name, index, total, message=str(error))
    except Exception as error:  # a bug on one clip must not lose the others
        if debug:
            raise
        _remove_if_empty(folder)
        message = f"internal error: {type(error).__name__}: {first_line(error)}"
        return ClipEvent("failed", clip.name, index, total, message=message)
    return ClipEvent(
        "done",
        clip.name,
        index,
        total,
        seconds=round(time.perf_counter() - started, 3),
        outputs=tuple(str(path) for path in outputs),
        notes=tuple(notes),
    )


def partner_motion_files(clip: Clip) -> tuple[Path, Path]:
    """The ground-truth NPZ beside each speaker's audio, for ``given_partner``."""
    if clip.audio_b is None:
        raise DualtalkError(
            "is one stereo file; the partner's motion needs "
            "<clip>_speaker1/_speaker2 audio with NPZ files beside it",
            clip.audio_a,
        )
    files = (clip.audio_a.with_suffix(".npz"), clip.audio_b.with_suffix(".npz"))
    for path in files:
        if not path.is_file():
            raise DualtalkError("not found (the partner's ground-truth motion)", path)
    return files


def _animate_given_partners(
    clip: Clip, folder: Path, settings: BatchSettings, engine: Any, redo: bool
) -> list[Path]:
    """Each speaker's NPZ from both tracks and the other's ground-truth motion."""
    motion_a, motion_b = partner_motion_files(clip)
    outputs = []
    for own, other, partner in (
        (clip.audio_a, clip.audio_b, motion_b),
        (clip.audio_b, clip.audio_a, motion_a),
    ):
        outputs.append(
            animate_with_partner(
                own,
                other,
                partner,
                out_dir=folder,
                engine=engine,
                seed=settings.seed,
                overwrite=redo,
            )
        )
    return outputs


def _remove_if_empty(folder: Path) -> None:
    try:
        folder.rmdir()  # only succeeds when nothing was written
    except OSError:
        pass


def _run_here(
    pending, total, out_dir, settings, report, progress, notify, debug
) -> None:
    engine, head, setup = load_engine_and_head(
        settings.engine, settings.engine_options, settings.head, settings.formats
    )
    _say(notify, setup)
    for index, clip in pending:
        report(ClipEvent("start", clip.name, index, total))
        report(
            animate_clip(
                clip,
                out_dir,
                settings,
                engine,
                head,
                index=index,
                total=total,
                progress=progress,
                debug=debug,
            )
        )


def _run_in_workers(
    pending, total, out_dir, settings, engine_name, jobs, report, notify
) -> None:
    """Clips in ``jobs`` processes, each loading the engine and head once."""
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    # Fail in the parent, once, when the head cannot be used at all.
    needs_head = bool({"obj", "mp4"} & set(settings.formats))
    head = settings.head.load() if needs_head else None
    setup = describe_setup(settings.engine, engine_name, head, settings.engine_options)
    _say(notify, f"{setup}; {jobs} processes")
    context = multiprocessing.get_context("spawn")  # no fork of a process with threads
    messages = context.SimpleQueue()
    worker_ids: set[int] = set()
    executor = ProcessPoolExecutor(
        max_workers=min(jobs, len(pending)),
        mp_context=context,
        initializer=_start_worker,
        initargs=(out_dir, settings, jobs, messages),
    )

    def drain() -> None:
        while not messages.empty():
            kind, value = messages.get()
            if kind == "pid":
                worker_ids.add(value)
            else:
                report(value)

    futures = {
        executor.submit(_work_on, clip, index, total): (index, clip)
        for index, clip in pending
    }
    try:
        remaining = set(futures)
        while remaining:
            finished, remaining = wait(
                remaining, timeout=0.2, return_when=FIRST_COMPLETED
            )
            drain()
            for future in finished:
                index, clip = futures[future]
                try:
                    report(future.result())
                except Exception as error:  # the worker process died
                    message = f"worker process failed: {type(error).__name__}: {error}"
                    report(
                        ClipEvent("failed", clip.name, index, total, message=message)
                    )
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


# State of a worker process, set once by _start_worker.
_worker: dict[str, Any] = {}


def _start_worker(
    out_dir: Path, settings: BatchSettings, jobs: int, messages: Any
) -> None:
    # The parent decides when to stop: Ctrl-C in the terminal reaches it alone.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _stop_worker)
    # Share the cores instead of every process using all of them.
    threads = str(max(1, (os.cpu_count() or 1) // jobs))
    for variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "LP_NUM_THREADS"):
        os.environ.setdefault(variable, threads)
    _worker.update(out_dir=out_dir, settings=settings, messages=messages, busy=False)
    messages.put(("pid", os.getpid()))
    try:
        engine, head, _ = load_engine_and_head(
            settings.engine, settings.engine_options, settings.head, settings.formats
        )
        _worker.update(engine=engine, head=head)
    except DualtalkError as error:
        _worker["error"] = f"cannot load the engine or head: {error}"


def _stop_worker(signum: int, frame: Any) -> None:
    _worker["stopping"] = True
    if _worker.get("busy"):
        raise KeyboardInterrupt  # unwinds through the writers' clean-up
    os._exit(EXIT_INTERRUPTED)


def _work_on(clip: Clip, index: int, total: int) -> ClipEvent:
    if _worker.get("stopping"):
        raise KeyboardInterrupt  # queued before the stop: not started
    if "error" in _worker:
        return ClipEvent("failed", clip.name, index, total, message=_worker["error"])
    _worker["messages"].put(("event", ClipEvent("start", clip.name, index, total)))
    _worker["busy"] = True
    try:
        return animate_clip(
            clip,
            _worker["out_dir"],
            _worker["settings"],
            _worker["engine"],
            _worker["head"],
            index=index,
            total=total,
        )
    finally:
        _worker["busy"] = False


def format_summary(summary: BatchSummary) -> list[str]:
    """The final table: counts, then each failed clip with its reason."""
    lines = [
        f"{summary.total} conversations in {summary.seconds:.1f} s"
        + (
            " (interrupted: run the same command again to finish)"
            if summary.interrupted
            else ""
        ),
        f"  done     {len(summary.done):>5}",
        f"  skipped  {len(summary.skipped):>5}",
        f"  failed   {len(summary.failed):>5}",
    ]
    if summary.interrupted:
        left = (
            summary.total
            - len(summary.done)
            - len(summary.skipped)
            - len(summary.failed)
        )
        lines.append(f"  not run  {left:>5}")
    lines += [f"  failed: {clip}: {why}" for clip, why in summary.failed]
    return lines


def _say(notify: Callable[[str], None] | None, message: str) -> None:
    if notify:
        notify(message)
