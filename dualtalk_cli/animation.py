"""The main job: audio of a conversation in; motion, meshes and video of both out."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from dualtalk_cli.audio import FPS, load_conversation, n_frames_for, stereo
from dualtalk_cli.engines import ENGINES, Engine, load_engine
from dualtalk_cli.errors import OutputError
from dualtalk_cli.heads import Head, load_head
from dualtalk_cli.motion import Motion, load_identity
from dualtalk_cli.writers import (
    Cancelled,
    Conversation,
    Mp4Writer,
    ObjWriter,
    Progress,
    Writer,
    get_writers,
)

DEFAULT_FORMATS = ("npz", "obj", "mp4")


@dataclass(frozen=True)
class AnimateResult:
    conversation: Conversation
    outputs: list[Path]
    engine: str
    head: str
    notes: list[str]


def output_names(
    path_a: str | os.PathLike, path_b: str | os.PathLike | None
) -> tuple[tuple[str, str], str]:
    """Output stems per speaker and the video's stem, from the input file names."""
    stem_a = Path(path_a).stem
    if path_b is None:
        return (f"{stem_a}_speaker1", f"{stem_a}_speaker2"), stem_a
    stem_b = Path(path_b).stem
    if stem_a == stem_b:
        stem_a, stem_b = f"{stem_a}_A", f"{stem_b}_B"
    return (stem_a, stem_b), f"{stem_a}_{stem_b}"


@dataclass(frozen=True)
class HeadOptions:
    """Which head to show and what it needs: ``head`` is auto, builtin or flame."""

    head: str = "auto"
    flame: str | os.PathLike | None = None  # the user's FLAME model file
    flame_eyelids: str | os.PathLike | None = None  # optional (2, 5023, 3) blendshapes

    def load(self) -> Head:
        # An explicit FLAME file means the FLAME head: never fall back silently.
        name = "flame" if self.head == "auto" and self.flame else self.head
        return load_head(name, flame=self.flame, flame_eyelids=self.flame_eyelids)


def animate(
    audio_a: str | os.PathLike,
    audio_b: str | os.PathLike | None = None,
    *,
    out_dir: str | os.PathLike,
    engine: str | Engine = "auto",
    engine_options: Mapping[str, Any] | None = None,
    head: HeadOptions | str | Head = "auto",
    formats: Sequence[str] = DEFAULT_FORMATS,
    seed: int = 0,
    frames_per_second: float = FPS,
    size: int = 512,
    shapes: Sequence[str | os.PathLike | None] = (None, None),
    overwrite: bool = False,
    progress: Progress | None = None,
    notify: Callable[[str], None] | None = None,
) -> AnimateResult:
    """Animate both speakers of a conversation and write ``formats`` into ``out_dir``.

    ``audio_b`` None means ``audio_a`` is one stereo file (channel 1 = speaker A).
    ``shapes`` gives each speaker's identity file (NPZ or .npy; None: the mean
    face). ``notify`` receives one-line remarks for the user; ``progress`` gets
    (stage, done, total) as work advances. ``engine`` and ``head`` may be loaded
    already (see ``load_engine_and_head``), so a batch pays for them once.
    """
    names, video_name = output_names(audio_a, audio_b)
    # Check every output before any work, so a clash fails in a second, not minutes.
    planned = Conversation(names=names, motions=(), video_name=video_name)
    writers = get_writers(list(formats), out_dir, overwrite=overwrite, size=size)
    prepare_output_dir(out_dir, writers, planned)
    if "mp4" in formats:
        from dualtalk_cli.render import check_renderer

        check_renderer()
    identities = [None if path is None else load_identity(path) for path in shapes]
    track_a, track_b = load_conversation(audio_a, audio_b)
    if progress:
        progress("audio", 1, 1)
    if isinstance(engine, Engine):
        the_engine, the_head = engine, None
        if {"obj", "mp4"} & set(formats):
            the_head = head if isinstance(head, Head) else _head_options(head).load()
    else:
        the_engine, the_head, setup = load_engine_and_head(
            engine, engine_options, head, formats
        )
        # Every input is checked by now, so an error stays the only line printed.
        _say(notify, setup)

    n_frames = n_frames_for(len(track_a), frames_per_second)
    motions = the_engine.animate(
        track_a,
        track_b,
        n_frames=n_frames,
        frames_per_second=frames_per_second,
        seed=seed,
    )
    motions = tuple(
        motion if identity is None else motion.with_shape(identity)
        for motion, identity in zip(motions, identities)
    )
    engine_name = the_engine.name
    # A network holds gigabytes that rendering does not need: let them go first.
    del the_engine
    _release_memory()
    if progress:
        progress("engine", 1, 1)
    conversation = Conversation(
        names=names,
        motions=motions,
        audio=stereo(track_a, track_b) if "mp4" in formats else None,
        video_name=video_name,
    )
    del track_a, track_b  # the stereo copy is all the video needs
    notes = _notes(the_head, motions)
    for note in notes:
        _say(notify, note)
    outputs = run_writers(writers, conversation, the_head, progress)
    return AnimateResult(
        conversation=conversation,
        outputs=outputs,
        engine=engine_name,
        head=the_head.name if the_head else "none",
        notes=notes,
    )


def load_engine_and_head(
    engine: str = "auto",
    engine_options: Mapping[str, Any] | None = None,
    head: HeadOptions | str | Head = "auto",
    formats: Sequence[str] = DEFAULT_FORMATS,
) -> tuple[Engine, Head | None, str]:
    """The engine, the head (None when no format needs meshes) and a line saying
    which were chosen, and why "auto" passed over a preferred engine."""
    engine_options = dict(engine_options or {})
    the_engine = load_engine(engine, **engine_options)
    the_head = None
    if {"obj", "mp4"} & set(formats):
        the_head = head if isinstance(head, Head) else _head_options(head).load()
    return (
        the_engine,
        the_head,
        describe_setup(engine, the_engine.name, the_head, engine_options),
    )


def describe_setup(
    requested: str,
    engine_name: str,
    head: Head | None,
    engine_options: Mapping[str, Any] | None = None,
) -> str:
    """ "engine X (why auto passed over Y); head Z": what a run will use."""
    why = ""
    if requested == "auto":
        skipped = ENGINES.passed_over(engine_name, **dict(engine_options or {}))
        why = "".join(f" ({name} not used: {reason})" for name, reason in skipped)
    return f"engine {engine_name}{why}; head {_describe(head)}"


def animate_with_partner(
    audio_a: str | os.PathLike,
    audio_b: str | os.PathLike,
    partner_motion: str | os.PathLike,
    *,
    out_dir: str | os.PathLike,
    engine: Engine | None = None,
    engine_options: Mapping[str, Any] | None = None,
    seed: int = 0,
    overwrite: bool = False,
    notify: Callable[[str], None] | None = None,
) -> Path:
    """A's NPZ from both tracks and B's known motion (the published demo's mode).

    ``engine``: a DualTalk engine loaded already; else one is loaded here.
    """
    from dualtalk_cli.motion import load_motion

    (name_a, _), _ = output_names(audio_a, audio_b)
    writer = get_writers(["npz"], out_dir, overwrite=overwrite)[0]
    prepare_output_dir(out_dir, [writer], Conversation(names=(name_a,), motions=()))
    partner = load_motion(partner_motion)
    track_a, track_b = load_conversation(audio_a, audio_b)
    the_engine = engine or load_engine("dualtalk", **dict(engine_options or {}))
    if engine is None:
        _say(notify, f"engine {the_engine.name}, partner motion from {partner_motion}")
    motion = the_engine.animate_with_partner(
        track_a,
        track_b,
        partner,
        n_frames=n_frames_for(len(track_a), partner.frames_per_second),
        frames_per_second=partner.frames_per_second,
        seed=seed,
    )
    conversation = Conversation(names=(name_a,), motions=(motion,))
    return writer.write(conversation)[0]


def render_video(
    motion_paths: Sequence[str | os.PathLike],
    out_path: str | os.PathLike,
    *,
    audio_paths: Sequence[str | os.PathLike] = (),
    head: HeadOptions | str = "auto",
    size: int = 512,
    shapes: Sequence[str | os.PathLike | None] = (),
    obj: bool = False,
    overwrite: bool = False,
    progress: Progress | None = None,
    notify: Callable[[str], None] | None = None,
) -> list[Path]:
    """A video of one head, or two side by side, from NPZ files (ours or DualTalk's).

    With ``obj`` the meshes go beside the video too, one folder per file.
    ``shapes`` replaces each file's identity (NPZ or .npy), in file order.
    """
    from dualtalk_cli.audio import load_audio, pad_to_same_length
    from dualtalk_cli.motion import load_motion

    out_path = Path(out_path)
    if out_path.suffix.lower() != ".mp4":
        raise OutputError("the video must end in .mp4", out_path)
    names = tuple(Path(p).stem for p in motion_paths)
    formats = ["obj", "mp4"] if obj else ["mp4"]
    writers = get_writers(formats, out_path.parent, overwrite=overwrite, size=size)
    planned = Conversation(names=names, motions=(), video_name=out_path.stem)
    prepare_output_dir(out_path.parent, writers, planned)
    from dualtalk_cli.render import check_renderer

    check_renderer()
    motions = [load_motion(path) for path in motion_paths]
    for index, path in enumerate(shapes):
        if path is not None and index < len(motions):
            motions[index] = motions[index].with_shape(load_identity(path))
    rates = {motion.frames_per_second for motion in motions}
    if len(rates) > 1:
        raise OutputError(f"the parameter files differ in fps ({sorted(rates)})")
    motions = pad_motions(motions)
    audio = None
    if audio_paths:
        tracks = pad_to_same_length(*[load_audio(path) for path in audio_paths])
        seconds = motions[0].n_frames / motions[0].frames_per_second
        length = round(seconds * 16000)
        tracks = [np.pad(t, (0, max(0, length - len(t))))[:length] for t in tracks]
        audio = stereo(tracks[0], tracks[1] if len(tracks) > 1 else tracks[0])
    the_head = _head_options(head).load()
    _say(notify, f"head {_describe(the_head)}")
    for note in _notes(the_head, motions):
        _say(notify, note)
    conversation = Conversation(
        names=names, motions=tuple(motions), audio=audio, video_name=out_path.stem
    )
    return run_writers(writers, conversation, the_head, progress)


def _head_options(head: HeadOptions | str) -> HeadOptions:
    return head if isinstance(head, HeadOptions) else HeadOptions(head=head)


def _describe(head: Head | None) -> str:
    return "none" if head is None else head.description


def _notes(head: Head | None, motions: Sequence[Motion]) -> list[str]:
    """What ``head`` cannot show, said once per run rather than once per speaker."""
    if head is None:
        return []
    return next((found for motion in motions if (found := head.notes(motion))), [])


def _say(notify: Callable[[str], None] | None, message: str) -> None:
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


def prepare_output_dir(
    out_dir: str | os.PathLike, writers: list[Writer], conversation: Conversation
) -> None:
    """Create ``out_dir`` and fail early if it is unusable or an output exists."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputError("is a file, not a folder for the outputs", out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OutputError(f"cannot create folder ({error.strerror})", out_dir) from None
    if not os.access(out_dir, os.W_OK | os.X_OK):
        raise OutputError("is not writable", out_dir)
    for writer in writers:
        writer.check(conversation)


def run_writers(
    writers: list[Writer],
    conversation: Conversation,
    head: Head | None,
    progress: Progress | None = None,
) -> list[Path]:
    """Run the writers in order; OBJ writing overlaps rendering in a thread."""
    overlap = any(isinstance(writer, Mp4Writer) for writer in writers)
    cancelled = threading.Event()
    outputs: dict[Writer, list[Path]] = {}
    errors: list[BaseException] = []

    def write_in_background(writer: Writer) -> None:
        try:
            outputs[writer] = writer.write(conversation, head, progress, cancelled)
        except BaseException as error:  # re-raised in the calling thread below
            errors.append(error)
            cancelled.set()

    threads: list[threading.Thread] = []
    try:
        for writer in writers:
            if overlap and isinstance(writer, ObjWriter):
                thread = threading.Thread(target=write_in_background, args=(writer,))
                thread.start()
                threads.append(thread)
            else:
                outputs[writer] = writer.write(conversation, head, progress, cancelled)
    except Cancelled:
        pass  # a background writer failed; its error is raised below
    except BaseException:
        cancelled.set()
        raise
    finally:
        for thread in threads:
            thread.join()
    for error in errors:
        if not isinstance(error, Cancelled):
            raise error
    return [path for writer in writers for path in outputs.get(writer, [])]


def _release_memory() -> None:
    """Return freed memory to the system (glibc keeps large freed blocks)."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass  # not glibc: nothing to trim
