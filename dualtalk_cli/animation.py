"""The main job: a conversation's audio in; both speakers' motion, meshes and video out.

As whisper's ``transcribe`` returns a result that its CLI then writes,
``compute_motion`` returns both speakers' motion and writes nothing, and
``animate`` plans the outputs, computes, then writes. ``Animator`` holds an
engine and a head loaded once, so a batch pays for them once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from dualtalk_cli.audio import FPS, SAMPLE_RATE, n_frames_for, stereo
from dualtalk_cli.engines import ENGINES, Engine, load_engine
from dualtalk_cli.errors import EngineUnavailable, OptionError, OutputError
from dualtalk_cli.heads import Head, load_head
from dualtalk_cli.motion import Conversation, Motion, load_identity, load_motion
from dualtalk_cli.options import (
    AUDIO_FORMATS,
    DEFAULT_FORMATS,
    ComputeOptions,
    EngineOptions,
    HeadOptions,
    OutputOptions,
    PathLike,
    needs_head,
    refuse_unused,
    unused_with_partner,
)
from dualtalk_cli.outputs import OutputPlan, OutputTransaction, distinct_stems
from dualtalk_cli.recording import ConversationAudio
from dualtalk_cli.writers import Progress, write_outputs

Notify = Callable[[str], None]


@dataclass(frozen=True)
class AnimateResult:
    """What ``animate`` computed and the files it wrote."""

    conversation: Conversation
    outputs: list[Path]


@dataclass(frozen=True)
class Animator:
    """An engine, and the head that shows its motion (None: no meshes needed)."""

    engine: Engine
    head: Head | None
    description: str  # "engine X (why auto passed over Y); head Z", for the user

    @classmethod
    def load(cls, engine: EngineOptions, head: HeadOptions | None) -> Animator:
        """Load the engine, and the head unless ``head`` is None."""
        the_engine = load_engine(engine)
        the_head = None if head is None else load_head(head)
        return cls(the_engine, the_head, describe_setup(engine, the_engine, the_head))


def describe_setup(
    requested: EngineOptions, engine: Engine | str, head: Head | None
) -> str:
    """ "engine X (why auto passed over Y); head Z": what a run will use."""
    if isinstance(engine, str):  # not loaded here: say what was asked
        name, shown = engine, engine_asked(requested, engine)
    else:
        name, shown = engine.name, engine.summary
    return f"engine {shown}{passed_over(requested, name)}; head {_describe(head)}"


def engine_asked(requested: EngineOptions, name: str) -> str:
    """An engine not loaded here, as a first line names it: with the precision
    asked for (None: each worker's device decides)."""
    return f"{name} ({requested.precision})" if requested.precision else name


def passed_over(requested: EngineOptions, name: str) -> str:
    """ " (dualtalk not used: why)" for each engine "auto" skipped before ``name``."""
    if requested.name != "auto":
        return ""
    skipped = ENGINES.passed_over(name, **requested.settings())
    return "".join(f" ({other} not used: {reason})" for other, reason in skipped)


def compute_motion(
    audio_a: PathLike,
    audio_b: PathLike | None = None,
    options: ComputeOptions = ComputeOptions(),
    engine: Engine | None = None,
) -> Conversation:
    """Both speakers' motion for a conversation; reads its inputs, writes nothing.

    ``audio_b`` None means ``audio_a`` is one recording of both, split as
    ``options.split`` says. ``engine``: one loaded already; else the one
    ``options.engine`` names.
    """
    audio = _read_audio(audio_a, audio_b, options)
    identities = _read_identities(options)
    speakers = audio.speakers()
    engine = engine or load_engine(options.engine)
    conversation = _run_engine(engine, speakers.tracks, options, identities)
    return replace(conversation, diarization=speakers.diarization)


def animate(
    audio_a: PathLike,
    audio_b: PathLike | None = None,
    *,
    out_dir: PathLike,
    compute: ComputeOptions = ComputeOptions(),
    output: OutputOptions = OutputOptions(),
    animator: Animator | None = None,
    progress: Progress | None = None,
    notify: Notify | None = None,
) -> AnimateResult:
    """Animate both speakers of a conversation and write their outputs into ``out_dir``.

    ``audio_b`` None means ``audio_a`` is one recording of both, split as
    ``compute.split`` says (a split by voice also writes its RTTM).
    ``animator``: an engine and head loaded already (a batch loads them once).
    ``notify`` receives one-line remarks; ``progress`` (stage, done, total).
    """
    output.check_used(output.chosen_formats(DEFAULT_FORMATS))
    audio = _read_audio(audio_a, audio_b, compute)
    formats = output.chosen_formats(DEFAULT_FORMATS, diarized=audio.diarized)
    if animator is not None and animator.head is None and needs_head(formats):
        raise OptionError("the animator has no head, and meshes or video are asked")
    plan = OutputPlan.for_audio(out_dir, (audio_a, audio_b), formats)
    # Every check before any work, so a clash fails in a second, not minutes.
    with plan.writing(output.overwrite) as transaction:
        if "mp4" in formats:
            from dualtalk_cli.render import check_renderer

            check_renderer()
        identities = _read_identities(compute)
        speakers = audio.speakers()
        if speakers.diarization is not None:
            _say(notify, audio.describe(speakers))
        del audio
        if progress:
            progress("audio", 1, 1)
        loaded_here = animator is None
        if animator is None:
            head_options = output.head if needs_head(formats) else None
            animator = Animator.load(compute.engine, head_options)
            # Every input is checked by now, so an error stays the only line.
            _say(notify, animator.description)
        head = animator.head
        conversation = replace(
            _run_engine(animator.engine, speakers.tracks, compute, identities),
            diarization=speakers.diarization,
        )
        if set(AUDIO_FORMATS) & set(formats):
            conversation = replace(conversation, audio=speakers.heard())
        del speakers  # the stereo copy is all the video needs
        if loaded_here:
            del animator  # a network holds gigabytes that rendering does not need
        _release_memory()
        if progress:
            progress("engine", 1, 1)
        _say_notes(head, conversation.motions, formats, notify)
        outputs = write_outputs(transaction, plan, output, conversation, head, progress)
    return AnimateResult(conversation, outputs)


def animate_with_partner(
    audio: tuple[PathLike, PathLike],
    partner_motion: PathLike,
    *,
    out_dir: PathLike,
    compute: ComputeOptions = ComputeOptions(),
    output: OutputOptions = OutputOptions(),
    engine: Engine | None = None,
    notify: Notify | None = None,
) -> Path:
    """A's NPZ from both tracks ``audio`` = (A, B) and B's known motion.

    The published demo's mode, and the paper's test protocol. ``engine``: one
    that follows a partner's motion, loaded already; else ``compute.engine``.
    Options this mode cannot honour (``unused_with_partner``) are refused.
    """
    refuse_unused("--partner-motion", unused_with_partner(compute, output))
    if engine is None:
        check_follows_partner(compute.engine, "--partner-motion")
    plan = OutputPlan.for_audio(out_dir, audio, ("npz",))
    plan = replace(plan, stems=plan.stems[:1])
    with plan.writing(output.overwrite) as transaction:
        track_a, track_b = _read_audio(*audio, compute).speakers().tracks
        identity, _ = _read_identities(compute)
        partner = load_motion(partner_motion)
        if engine is None:
            engine = load_engine(compute.engine)
            _say(
                notify, f"engine {engine.summary}, partner motion from {partner_motion}"
            )
        motion = engine.animate_with_partner(
            track_a, track_b, partner, seed=compute.seed
        )
        if identity is not None:
            motion = motion.with_shape(identity)
        conversation = Conversation((motion,))
        (path,) = write_outputs(transaction, plan, output, conversation, None)
    return path


def check_follows_partner(options: EngineOptions, mode: str) -> None:
    """Fail, before loading anything, if the engine cannot follow a partner."""
    name = options.name  # a named engine's capability decides before its settings
    if name == "auto":
        name = ENGINES.resolve(name, **options.settings())
    if not ENGINES.implementation(name).follows_partner:
        raise EngineUnavailable(
            f"{mode} needs the DualTalk network (an engine that follows a "
            f"partner's known motion); this run would use "
            f"{name}{passed_over(options, name)}"
        )


@dataclass(frozen=True)
class MotionFiles:
    """Existing motion to write again: one file per speaker (our NPZ, the
    DualTalk dataset's, or a Live Link Face CSV), the conversation's audio (one
    file heard on both channels, or A then B) and identities that replace the
    files' own (None keeps a file's)."""

    motions: tuple[PathLike, ...]
    audio: tuple[PathLike, ...] = ()
    shapes: tuple[PathLike | None, ...] = ()

    def __post_init__(self) -> None:
        if any(path is not None for path in self.shapes[len(self.motions) :]):
            raise OptionError("an identity was given for a head with no motion file")


def render_video(
    motion_paths: Sequence[PathLike],
    out_path: PathLike,
    *,
    audio_paths: Sequence[PathLike] = (),
    shapes: Sequence[PathLike | None] = (),
    output: OutputOptions = OutputOptions(),
    progress: Progress | None = None,
    notify: Notify | None = None,
) -> list[Path]:
    """A video of one head, or two side by side, from NPZ files (ours or DualTalk's).

    ``output.formats`` may add "obj": the meshes go beside the video, one folder
    per file. ``shapes`` replaces each file's identity (NPZ or .npy), in order.
    """
    out_path = Path(out_path)
    if out_path.suffix.lower() != ".mp4":
        raise OutputError("the video must end in .mp4", out_path)
    formats = output.chosen_formats(("mp4",))
    if "mp4" not in formats or "npz" in formats:
        raise OutputError("render writes the video, and OBJ meshes beside it")
    files = MotionFiles(tuple(motion_paths), tuple(audio_paths), tuple(shapes))
    stems = distinct_stems(motion_paths)
    plan = OutputPlan(out_path.parent, stems, out_path.stem, formats)
    with plan.writing(output.overwrite) as transaction:
        return _write_motions(transaction, plan, files, output, progress, notify)


def export_motion(
    files: MotionFiles,
    out_dir: PathLike,
    output: OutputOptions = OutputOptions(),
    progress: Progress | None = None,
    notify: Notify | None = None,
) -> list[Path]:
    """Existing motion written into ``out_dir`` in ``output.formats``, named as
    ``animate`` names its outputs, from the files' stems; no engine runs."""
    if output.formats is not None and "wav" in output.formats and not files.audio:
        raise OptionError("the wav format needs the conversation's audio (--audio)")
    formats = output.chosen_formats(DEFAULT_FORMATS, has_audio=bool(files.audio))
    output.check_used(formats)
    stems = distinct_stems(files.motions)
    plan = OutputPlan(Path(out_dir), stems, "_".join(stems), formats)
    with plan.writing(output.overwrite) as transaction:
        return _write_motions(transaction, plan, files, output, progress, notify)


def read_motion_file(path: PathLike) -> Motion:
    """A motion from an NPZ (ours or the dataset's) or a Live Link Face CSV."""
    if Path(path).suffix.lower() == ".csv":
        from dualtalk_cli.livelink import read_livelink_csv

        return read_livelink_csv(path)
    return load_motion(path)


def _write_motions(
    transaction: OutputTransaction,
    plan: OutputPlan,
    files: MotionFiles,
    output: OutputOptions,
    progress: Progress | None,
    notify: Notify | None,
) -> list[Path]:
    if "mp4" in plan.formats:
        from dualtalk_cli.render import check_renderer

        check_renderer()
    motions = [read_motion_file(path) for path in files.motions]
    for index, path in enumerate(files.shapes):
        if path is not None:
            motions[index] = motions[index].with_shape(load_identity(path))
    rates = {motion.frames_per_second for motion in motions}
    if len(rates) > 1:
        raise OutputError(f"the parameter files differ in fps ({sorted(rates)})")
    motions = pad_motions(motions)
    audio = _video_audio(files.audio, motions[0]) if files.audio else None
    head = None
    if needs_head(plan.formats):
        head = load_head(output.head)
        _say(notify, f"head {_describe(head)}")
    _say_notes(head, motions, plan.formats, notify)
    if "glb" in plan.formats and audio is None:
        _say(notify, "no --audio: the GLB is written without its WAV")
    conversation = Conversation(tuple(motions), audio)
    return write_outputs(transaction, plan, output, conversation, head, progress)


def _video_audio(paths: Sequence[PathLike], motion: Motion) -> np.ndarray:
    """(N, 2) audio as long as ``motion``: one file on both channels, or A and B."""
    from dualtalk_cli.audio import load_audio, pad_to_same_length

    tracks = pad_to_same_length(*[load_audio(path) for path in paths])
    length = round(motion.seconds * SAMPLE_RATE)
    tracks = [np.pad(t, (0, max(0, length - len(t))))[:length] for t in tracks]
    return stereo(tracks[0], tracks[-1])


def _run_engine(
    engine: Engine,
    tracks: tuple[np.ndarray, np.ndarray],
    options: ComputeOptions,
    identities: tuple[np.ndarray | None, ...],
) -> Conversation:
    """Both motions from ``tracks``, with each speaker's identity applied."""
    fps = float(options.frames_per_second or FPS)
    motions = engine.animate(
        *tracks,
        n_frames=n_frames_for(len(tracks[0]), fps),
        frames_per_second=fps,
        seed=options.seed,
    )
    return Conversation(
        tuple(
            motion if identity is None else motion.with_shape(identity)
            for motion, identity in zip(motions, identities)
        )
    )


def _read_audio(
    audio_a: PathLike, audio_b: PathLike | None, options: ComputeOptions
) -> ConversationAudio:
    """The conversation's audio, read, with the split ``options`` asks for."""
    return ConversationAudio.read(audio_a, audio_b, options.split, options.diarization)


def _read_identities(options: ComputeOptions) -> tuple[np.ndarray | None, ...]:
    """Each speaker's identity (None: the mean face)."""
    return tuple(
        None if path is None else load_identity(path) for path in options.shapes
    )


def _describe(head: Head | None) -> str:
    return "none" if head is None else head.description


def _say_notes(
    head: Head | None,
    motions: Sequence[Motion],
    formats: Sequence[str],
    notify: Notify | None,
) -> None:
    """What the head and the formats cannot show of ``motions``, said once per
    run rather than once per speaker."""
    notes = []
    if head is not None:
        notes = next((found for m in motions if (found := head.notes(m))), [])
    if head is not None and "glb" in formats:
        notes += head.rig_notes(motions)
    if "csv" in formats:
        from dualtalk_cli.livelink import cannot_express

        notes += cannot_express(motions)
    for note in notes:
        _say(notify, note)


def _say(notify: Notify | None, message: str) -> None:
    if notify:
        notify(message)


def pad_motions(motions: list[Motion]) -> list[Motion]:
    """Hold each motion's last frame so all have the longest one's frame count."""
    longest = max(motion.n_frames for motion in motions)
    padded = []
    for motion in motions:
        extra = longest - motion.n_frames
        if extra:
            fields = {
                key: np.concatenate([value, np.repeat(value[-1:], extra, axis=0)])
                for key, value in motion.__dict__.items()
                if isinstance(value, np.ndarray)
            }
            motion = replace(motion, **fields)
        padded.append(motion)
    return padded


def _release_memory() -> None:
    """Return freed memory to the system (glibc keeps large freed blocks)."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass  # not glibc: nothing to trim
