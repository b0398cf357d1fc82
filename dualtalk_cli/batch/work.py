"""The work on one clip of a batch: the one code path every runner calls."""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path

from dualtalk_cli.animation import (
    Animator,
    animate,
    animate_with_partner,
    check_follows_partner,
)
from dualtalk_cli.batch.clips import Clip
from dualtalk_cli.batch.report import ClipEvent
from dualtalk_cli.errors import DualtalkError, OptionError, describe
from dualtalk_cli.options import (
    ComputeOptions,
    EngineOptions,
    OutputOptions,
    needs_head,
)
from dualtalk_cli.outputs import OutputPlan, locked_folder
from dualtalk_cli.writers import Progress

# Threads each worker's libraries use: its share, not the machine's.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "LP_NUM_THREADS")


@dataclass(frozen=True)
class ClusterOptions:
    """Where and how a batch runs on Ray (None: chosen from the cluster)."""

    address: str  # auto, local, ray://host:port, or host:port of a head
    gpus_per_worker: float | None = None  # None: 1 when the cluster has GPUs
    cpus_per_worker: float | None = None  # None: 1, or 4 for the network on CPU
    collect: bool = False  # send outputs back to the driver, which writes them
    max_workers: int | None = None  # None: as many as the cluster fits

    def __post_init__(self) -> None:
        for name in ("gpus_per_worker", "cpus_per_worker"):
            value = getattr(self, name)
            if value is not None and not value >= 0:
                flag = "--" + name.replace("_", "-")
                raise OptionError(f"{flag} must be 0 or more, not {value}")


@dataclass(frozen=True)
class BatchOptions:
    """How every clip of a batch is animated, and how the batch runs."""

    compute: ComputeOptions = ComputeOptions()
    output: OutputOptions = OutputOptions()  # overwrite: redo complete clips too
    # The paper's test protocol: each speaker predicted given the partner's
    # ground-truth motion (<clip>_speakerK.npz beside the audio); NPZ only.
    given_partner: bool = False
    jobs: int = 1  # conversations worked on at once, in separate processes
    debug: bool = False  # stop at the first failing clip, with its traceback
    cluster: ClusterOptions | None = None  # run on Ray instead of this machine

    @property
    def formats(self) -> tuple[str, ...]:
        return ("npz",) if self.given_partner else self.output.chosen_formats()


def worker_engine(options: BatchOptions) -> EngineOptions:
    """The engine each clip's worker loads. The paper's protocol scores against
    published numbers: the published arithmetic (fp32), unless asked otherwise."""
    engine = options.compute.engine
    if options.given_partner and engine.precision is None:
        engine = replace(engine, precision="fp32")
    return engine


def clip_plan(clip: Clip, out_dir: Path, options: BatchOptions) -> OutputPlan:
    """Every output of ``clip``, in ``out_dir/<clip>/`` as ``animate`` names them."""
    audio = (clip.audio_a, clip.audio_b)
    return OutputPlan.for_audio(Path(out_dir) / clip.name, audio, options.formats)


def clip_compute(clip: Clip, compute: ComputeOptions) -> ComputeOptions:
    """The batch's compute options for ``clip``: its identities and RTTM; a
    ``--split`` applies to the clips that are one recording."""
    split = compute.split if clip.audio_b is None else "auto"
    return replace(
        compute, shapes=clip.shapes, split=split, diarization=clip.diarization
    )


def partner_motion_files(clip: Clip) -> tuple[Path, Path]:
    """The ground-truth NPZ beside each speaker's audio, for ``given_partner``."""
    if clip.audio_b is None:
        raise DualtalkError(
            "is one recording of both; the partner's motion needs "
            "<clip>_speaker1/_speaker2 audio with NPZ files beside it",
            clip.audio_a,
        )
    files = (clip.audio_a.with_suffix(".npz"), clip.audio_b.with_suffix(".npz"))
    for path in files:
        if not path.is_file():
            raise DualtalkError("not found (the partner's ground-truth motion)", path)
    return files


class ClipWorker:
    """Animates clips one at a time with an engine and a head loaded once."""

    def __init__(self, out_dir: Path, options: BatchOptions) -> None:
        self.out_dir = Path(out_dir)
        self.options = options
        head = options.output.head if needs_head(options.formats) else None
        if options.given_partner:  # before a setting of the network is added
            check_follows_partner(options.compute.engine, "--given-partner")
        self.animator = Animator.load(worker_engine(options), head)

    def run(
        self, clip: Clip, index: int, total: int, progress: Progress | None = None
    ) -> ClipEvent:
        """Animate ``clip``; its errors become a failed event, never an exception."""
        started = time.perf_counter()
        plan = clip_plan(clip, self.out_dir, self.options)
        notes: list[str] = []
        try:
            # An interrupted clip may have some outputs: redone with the rest.
            # (animate removes what the interrupted run left, under its lock.)
            redo = self.options.output.overwrite or plan.any_exists()
            if self.options.given_partner:
                outputs = self._given_partners(clip, plan.out_dir, redo)
            else:
                outputs = animate(
                    clip.audio_a,
                    clip.audio_b,
                    out_dir=plan.out_dir,
                    compute=clip_compute(clip, self.options.compute),
                    output=replace(self.options.output, overwrite=redo),
                    animator=self.animator,
                    progress=progress,
                    notify=notes.append,
                ).outputs
        except Exception as error:  # a bug on one clip must not lose the others
            if self.options.debug:
                raise
            _remove_if_empty(plan.out_dir)
            message = describe(error)
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

    def clean_up(self, clip: Clip) -> None:
        """Remove what an interrupted ``run`` of ``clip`` may have left, when no
        other run holds its folder (a last resort: the writers clean up too)."""
        remove_leftovers(clip, self.out_dir, self.options)

    def _given_partners(self, clip: Clip, folder: Path, redo: bool) -> list[Path]:
        """Each speaker's NPZ from both tracks and the other's ground-truth motion."""
        motion_a, motion_b = partner_motion_files(clip)
        assert clip.audio_b is not None  # a stereo clip has no partner files
        outputs = []
        for own, other, partner, shape in (
            (clip.audio_a, clip.audio_b, motion_b, clip.shapes[0]),
            (clip.audio_b, clip.audio_a, motion_a, clip.shapes[1]),
        ):
            outputs.append(
                animate_with_partner(
                    (own, other),
                    partner,
                    out_dir=folder,
                    compute=replace(self.options.compute, shapes=(shape, None)),
                    output=OutputOptions(overwrite=redo),
                    engine=self.animator.engine,
                )
            )
        return outputs


def remove_leftovers(clip: Clip, out_dir: Path, options: BatchOptions) -> bool:
    """Remove what an interrupted run of ``clip`` left in ``out_dir``, and its
    folder if that is then empty. False while another run holds the folder."""
    plan = clip_plan(clip, out_dir, options)
    try:
        with locked_folder(plan.out_dir):
            plan.remove_leftovers()
    except DualtalkError:
        return False  # another run (or a dying worker) holds it
    except OSError:
        return True  # the folder is gone, or was never made
    _remove_if_empty(plan.out_dir)
    return True


def load_worker(
    out_dir: Path, options: BatchOptions
) -> tuple[ClipWorker | None, str | None]:
    """A ClipWorker, or None and why the engine or head cannot load."""
    try:
        return ClipWorker(out_dir, options), None
    except DualtalkError as error:
        return None, f"cannot load the engine or head: {error}"


def _remove_if_empty(folder: Path) -> None:
    try:
        folder.rmdir()  # only succeeds when nothing was written
    except (OSError, ValueError):
        pass
