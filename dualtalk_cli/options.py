"""The options of a run, as typed, frozen objects built once and passed whole.

``ComputeOptions`` says what to compute (the engine and its settings, frame rate,
seed, identities); ``OutputOptions`` what to write (formats, video size, the head
that shows the motion, replacing). ``None`` means "not given": the mode's
default applies, and an option that is given where it has no effect is refused.
All of them pickle, so ``batch`` hands them to worker processes as they are.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from pathlib import Path

from dualtalk_cli.audio import FPS_RANGE
from dualtalk_cli.errors import OptionError
from dualtalk_cli.outputs import LAYOUT

# The formats a user chooses, in the order written; the RTTM comes by itself
# when a recording is split by voice.
FORMATS = tuple(name for name in LAYOUT if name != "rttm")
DEFAULT_FORMATS = ("npz", "obj", "mp4")
MESH_FORMATS = ("obj", "mp4", "glb")  # the formats that need a head
SPLITS = ("auto", "channels", "diarize")  # how one recording becomes two speakers
PRECISIONS = ("fp32", "bf16", "fp16")  # the network's arithmetic; fp16 on CUDA only
DEFAULT_SIZE = 512  # pixels per head in the video, square
# How video edges are smoothed: name -> (MSAA samples per pixel, supersampling
# factor per side). Supersampling draws the frame larger and averages each
# block of pixels. bench/bench_antialias.py measures them.
ANTIALIAS = {"msaa4": (4, 1), "msaa2": (2, 1), "ssaa2": (0, 2), "none": (0, 1)}
DEFAULT_ANTIALIAS = "msaa4"
MAX_SEED = 2**64 - 1  # seeds are 64-bit: a larger one would wrap silently

PathLike = str | os.PathLike


def _given(options: object, skip: tuple[str, ...] = ("name",)) -> dict[str, object]:
    """The fields of a dataclass that were given (not None), by name."""
    return {
        field.name: getattr(options, field.name)
        for field in fields(options)  # type: ignore[arg-type]
        if field.name not in skip and getattr(options, field.name) is not None
    }


@dataclass(frozen=True)
class EngineOptions:
    """Which engine computes the motion, and its settings (None: its default)."""

    name: str = "auto"  # auto, or a name from the engine registry
    weights: Path | None = None  # DualTalk: the checkpoint
    device: str | None = None  # DualTalk: cpu, cuda, cuda:1 ...
    passes: int | None = None  # DualTalk: alternating passes
    # DualTalk: one of PRECISIONS (the engine checks it against its device);
    # None: the device's default (fp32 for batch --given-partner).
    precision: str | None = None

    def settings(self) -> dict[str, object]:
        """The settings given, as the engine's constructor takes them."""
        return _given(self)

    @property
    def chosen(self) -> str:
        return self.name


@dataclass(frozen=True)
class HeadOptions:
    """Which head shows the motion, and the files it needs (None: not given)."""

    name: str = "auto"  # auto, builtin or flame
    flame: Path | None = None  # the user's FLAME model file
    flame_eyelids: Path | None = None  # optional (2, 5023, 3) blendshapes

    def settings(self) -> dict[str, object]:
        """The settings given, as the head's constructor takes them."""
        return _given(self)

    @property
    def chosen(self) -> str:
        """The head asked for: an explicit FLAME file means the FLAME head."""
        return "flame" if self.name == "auto" and self.flame else self.name


@dataclass(frozen=True)
class ComputeOptions:
    """What to compute: engine, frame rate, seed and each speaker's identity."""

    engine: EngineOptions = EngineOptions()
    frames_per_second: float | None = None  # None: 25, or the partner's rate
    seed: int = 0
    # Identity files of A and B (NPZ or .npy); None: the mean face.
    shapes: tuple[PathLike | None, PathLike | None] = (None, None)
    # One recording of both: "auto" splits distinct stereo channels by channel
    # and a mix by voice; "channels" or "diarize" force one. ``diarization``:
    # an RTTM file that says who speaks when, instead of the diarizer.
    split: str = "auto"
    diarization: PathLike | None = None

    def __post_init__(self) -> None:
        fps = self.frames_per_second
        if fps is not None and not FPS_RANGE[0] <= fps <= FPS_RANGE[1]:
            low, high = FPS_RANGE
            raise OptionError(f"--fps must be within {low:g}..{high:g}, not {fps}")
        if len(self.shapes) != 2:
            raise OptionError("give one identity (or None) per speaker")
        if not 0 <= self.seed <= MAX_SEED:
            raise OptionError(f"--seed must be within 0..{MAX_SEED}, not {self.seed}")
        if self.split not in SPLITS:
            raise OptionError(
                f"--split must be one of {', '.join(SPLITS)}, not {self.split!r}"
            )
        if self.diarization is not None and self.split == "channels":
            raise OptionError(
                "--diarization says who speaks when in a mix: not with --split channels"
            )

    @property
    def splits_one_recording(self) -> bool:
        """Whether a split of one recording was asked for explicitly."""
        return self.split != "auto" or self.diarization is not None


@dataclass(frozen=True)
class OutputOptions:
    """What to write: formats, the video's size, the head, replacing outputs."""

    formats: tuple[str, ...] | None = None  # None: the mode's default
    size: int | None = None  # None: DEFAULT_SIZE
    head: HeadOptions = HeadOptions()
    overwrite: bool = False
    antialias: str | None = None  # None: DEFAULT_ANTIALIAS

    def __post_init__(self) -> None:
        if self.formats is not None:
            unknown = [name for name in self.formats if name not in FORMATS]
            if unknown:
                known = ", ".join(FORMATS)
                raise OptionError(f"unknown output format {unknown[0]!r} ({known})")
            # A fixed order, so a plan and its outputs do not depend on spelling.
            ordered = tuple(name for name in FORMATS if name in self.formats)
            object.__setattr__(self, "formats", ordered)
        if self.size is not None and (self.size % 2 or not 64 <= self.size <= 4096):
            raise OptionError(
                f"--size must be even and within 64..4096 (H.264 needs even frame "
                f"sizes), not {self.size}"
            )
        if self.antialias is not None and self.antialias not in ANTIALIAS:
            raise OptionError(
                f"--antialias must be one of {', '.join(ANTIALIAS)}, "
                f"not {self.antialias!r}"
            )

    def chosen_formats(
        self,
        default: tuple[str, ...] = DEFAULT_FORMATS,
        has_audio: bool = True,
        diarized: bool = False,
    ) -> tuple:
        """The formats to write: those given, else the mode's ``default``; a GLB
        brings the conversation's WAV, which engines play beside it, when there
        is audio to write; a recording split by voice brings its RTTM."""
        formats = set(default if self.formats is None else self.formats)
        if "glb" in formats and has_audio:
            formats.add("wav")
        if diarized:
            formats.add("rttm")
        return tuple(name for name in LAYOUT if name in formats)

    @property
    def video_size(self) -> int:
        return DEFAULT_SIZE if self.size is None else self.size

    @property
    def video_antialias(self) -> str:
        return DEFAULT_ANTIALIAS if self.antialias is None else self.antialias

    def check_used(self, formats: tuple[str, ...]) -> None:
        """Refuse what has no effect when writing ``formats``: never silence."""
        unused = []
        if self.size is not None and "mp4" not in formats:
            unused.append("--size (no video is written)")
        if self.antialias is not None and "mp4" not in formats:
            unused.append("--antialias (no video is written)")
        if self.head != HeadOptions() and not needs_head(formats):
            unused.append("--head/--flame/--flame-eyelids (no meshes or video)")
        if unused:
            raise OptionError(f"{'; '.join(unused)}: these options have no effect")


AUDIO_FORMATS = ("mp4", "wav")  # the formats that carry the conversation's audio


def choose_formats(
    listed: str | None, no_obj: bool = False, no_video: bool = False
) -> tuple[str, ...] | None:
    """The formats of ``--format a,b`` ("all": every one) less ``--no-obj`` and
    ``--no-video``; None when nothing was said (the mode's default)."""
    if listed is None and not (no_obj or no_video):
        return None
    names = [name.strip() for name in (listed or ",".join(DEFAULT_FORMATS)).split(",")]
    if "all" in names:
        names = list(FORMATS)
    unknown = [name for name in names if name not in FORMATS]
    if unknown or not any(names):
        shown = unknown[0] if unknown else listed
        raise OptionError(
            f"unknown output format {shown!r} (known: {', '.join(FORMATS)}, all)"
        )
    skipped = {"obj"} if no_obj else set()
    skipped |= {"mp4"} if no_video else set()
    chosen = tuple(name for name in FORMATS if name in names and name not in skipped)
    if not chosen:
        raise OptionError("no output format is left to write")
    return chosen


def precision_unknown(precision: str) -> str | None:
    """Why ``precision`` is no precision of the network, or None."""
    if precision in PRECISIONS:
        return None
    return f"--precision must be one of {', '.join(PRECISIONS)}, not {precision!r}"


def needs_head(formats: tuple[str, ...]) -> bool:
    """Whether writing ``formats`` draws meshes, so needs a head."""
    return bool(set(MESH_FORMATS) & set(formats))


def refuse_unused(mode: str, unused: list[str]) -> None:
    """One line refusing the options ``unused`` that ``mode`` cannot honour."""
    if unused:
        raise OptionError(f"{mode} cannot honour {', '.join(unused)}")


def unused_with_partner(compute: ComputeOptions, output: OutputOptions) -> list[str]:
    """Options a prediction from the partner's known motion cannot honour.

    That mode runs the network once per speaker at the partner's frame rate and
    writes only the predicted speaker's NPZ.
    """
    unused = []
    if compute.engine.passes is not None:
        unused.append("--passes (one pass, no alternation)")
    if compute.frames_per_second is not None:
        unused.append("--fps (the partner motion's frame rate is used)")
    if compute.shapes[1] is not None:
        unused.append("--shape-b (only A's motion is written)")
    if compute.splits_one_recording:
        unused.append("--split/--diarization (two audio files are given)")
    if output.head != HeadOptions():
        unused.append("--head/--flame/--flame-eyelids (no meshes or video)")
    if output.size is not None:
        unused.append("--size (no video)")
    if output.antialias is not None:
        unused.append("--antialias (no video)")
    if output.formats not in (None, ("npz",)):
        unused.append("--format/--no-obj/--no-video (only NPZ is written)")
    return unused
