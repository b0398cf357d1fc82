"""The ``dualtalk`` command: parses arguments, reports progress and errors."""

from __future__ import annotations

import functools
import inspect
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, get_type_hints

import typer

from dualtalk_cli.errors import DualtalkError, OptionError, describe, one_line
from dualtalk_cli.options import (
    DEFAULT_ANTIALIAS,
    ComputeOptions,
    EngineOptions,
    HeadOptions,
    OutputOptions,
    choose_formats,
)
from dualtalk_cli.version import __version__

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    help="Two talking, listening 3D heads from a recorded dialogue.",
)

# Options shared by several commands, declared once.
QuietOpt = Annotated[
    bool, typer.Option("--quiet", "-q", help="Print nothing but errors.")
]
DebugOpt = Annotated[
    bool, typer.Option("--debug", help="Show the full traceback on errors.")
]
OverwriteOpt = Annotated[
    bool, typer.Option("--overwrite", help="Replace outputs that already exist.")
]
HeadOpt = Annotated[
    str, typer.Option("--head", help="Head to show: auto, builtin or flame.")
]
FlameOpt = Annotated[
    Path | None,
    typer.Option(
        "--flame",
        help="Your FLAME model (generic_model.pkl, FLAME 2023 .pkl or .npz) "
        "[default: $DUALTALK_FLAME, weights/, ~/.cache/FLAME/].",
        show_default=False,
    ),
]
FlameEyelidsOpt = Annotated[
    Path | None,
    typer.Option(
        "--flame-eyelids",
        help="Optional FLAME eyelid blendshapes: .npy (2, 5023, 3) or .npz of two.",
        show_default=False,
    ),
]
ShapeAOpt = Annotated[
    Path | None,
    typer.Option(
        "--shape-a",
        help="Identity of A (left): an NPZ (shape row 0) or a .npy of up to 300 "
        "values [default: the mean face].",
        show_default=False,
    ),
]
ShapeBOpt = Annotated[
    Path | None,
    typer.Option(
        "--shape-b", help="Identity of B (right), as --shape-a.", show_default=False
    ),
]

EngineOpt = Annotated[
    str,
    typer.Option(
        "--engine",
        help="Engine: auto (the DualTalk network when its checkpoint is found, "
        "else procedural), dualtalk or procedural.",
    ),
]
WeightsOpt = Annotated[
    Path | None,
    typer.Option(
        "--weights",
        help="DualTalk checkpoint [default: $DUALTALK_WEIGHTS, weights/DualTalk.pth].",
        show_default=False,
    ),
]
DeviceOpt = Annotated[
    str | None,
    typer.Option("--device", help="cpu, cuda, cuda:1 ... [default: cuda if any]."),
]
PassesOpt = Annotated[
    int | None,
    typer.Option(
        "--passes", min=1, max=10, help="DualTalk: alternating passes [default: 2]."
    ),
]
PrecisionOpt = Annotated[
    str | None,
    typer.Option(
        "--precision",
        help="DualTalk: the network's arithmetic, fp32 (the published model "
        "exactly), bf16, or fp16 (CUDA only) [default: bf16 where the device "
        "computes it natively, else fp32].",
        show_default=False,
    ),
]
SeedOpt = Annotated[
    int,
    typer.Option("--seed", min=0, max=2**64 - 1, help="Seed of blinks, gaze and sway."),
]
FpsOpt = Annotated[
    float | None,
    typer.Option("--fps", min=1.0, max=120.0, help="Frames per second [default: 25]."),
]
NoObjOpt = Annotated[
    bool, typer.Option("--no-obj", help="Skip the OBJ mesh sequences.")
]
NoVideoOpt = Annotated[bool, typer.Option("--no-video", help="Skip the MP4.")]
OutDirOpt = Annotated[Path, typer.Option("--out", "-o", help="Folder for the outputs.")]
SplitOpt = Annotated[
    str,
    typer.Option(
        "--split",
        help="One recording of both people: auto (stereo with one voice per "
        "channel by channel; mono, or the same mix on both channels, by voice), "
        "channels, or diarize.",
    ),
]


def _even(size: int | None) -> int | None:
    if size is not None and size % 2:
        raise typer.BadParameter("must be even (H.264 needs even frame sizes)")
    return size


SizeOpt = Annotated[
    int | None,
    typer.Option(
        "--size",
        min=64,
        max=4096,
        callback=_even,
        help="Pixels per head, square [default: 512].",
    ),
]

AntialiasOpt = Annotated[
    str | None,
    typer.Option(
        "--antialias",
        help="Video edges: msaa4 (4 samples a pixel), msaa2, ssaa2 (drawn at twice "
        f"the size, averaged) or none [default: {DEFAULT_ANTIALIAS}].",
        show_default=False,
    ),
]

STAGE_LABELS = {
    "audio": "Reading audio",
    "engine": "Animating",
    "npz": "Writing parameters",
    "obj": "Writing OBJ meshes",
    "mp4": "Rendering video",
    "clips": "Conversations",
    "evaluate": "Scoring files",
}


def main() -> None:
    """Entry point of the console script."""
    app(prog_name="dualtalk")


def _version_callback(value: bool) -> None:
    if value:
        print(f"dualtalk {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version_callback, is_eager=True, help="Show version."
        ),
    ] = False,
) -> None:
    """Two talking, listening 3D heads from a recorded dialogue."""


# The inputs of animate and export.
ConversationArg = Annotated[
    list[Path],
    typer.Argument(
        metavar="AUDIO",
        help="Speaker A's and speaker B's audio, or one recording of both: stereo "
        "with one voice per channel (left = A), or a mix, split by voice (A speaks "
        "first). WAV, FLAC, OGG or MP3.",
        show_default=False,
    ),
]
MotionFilesArg = Annotated[
    list[Path],
    typer.Argument(
        metavar="MOTION",
        help="One or two motion files (A, then B): our NPZ, the DualTalk "
        "dataset's NPZ, or a Live Link Face CSV.",
        show_default=False,
    ),
]


# Option groups: each builder's parameters become options of the commands that
# use the group, and the command receives what the builder returns.


def _engine_group(
    engine: EngineOpt = "auto",
    weights: WeightsOpt = None,
    device: DeviceOpt = None,
    passes: PassesOpt = None,
    precision: PrecisionOpt = None,
) -> EngineOptions:
    return EngineOptions(engine, weights, device, passes, precision)


def _head_group(
    head: HeadOpt = "auto",
    flame: FlameOpt = None,
    flame_eyelids: FlameEyelidsOpt = None,
) -> HeadOptions:
    return HeadOptions(head, flame, flame_eyelids)


FormatOpt = Annotated[
    str | None,
    typer.Option(
        "--format",
        "-f",
        help="Outputs, comma-separated: npz, obj, mp4, csv (Live Link Face), glb "
        "(glTF animation; brings the wav when there is audio), wav, or all "
        "[default: npz,obj,mp4].",
        show_default=False,
    ),
]


def _formats_group(
    formats: FormatOpt = None, no_obj: NoObjOpt = False, no_video: NoVideoOpt = False
) -> Any:
    """What was said about formats; checked where errors are one line."""
    return (formats, no_obj, no_video)


def _shapes_group(shape_a: ShapeAOpt = None, shape_b: ShapeBOpt = None) -> Any:
    return (shape_a, shape_b)


AudioOpt = Annotated[
    list[Path] | None,
    typer.Option(
        "--audio",
        help="The conversation's audio: one file (heard on both channels), or "
        "twice for A (left) and B (right).",
    ),
]


def _inputs_group(
    audio: AudioOpt = None, shape_a: ShapeAOpt = None, shape_b: ShapeBOpt = None
) -> Any:
    """Audio and identities to go with motion files: (audio, shapes)."""
    return (tuple(audio or ()), (shape_a, shape_b))


@dataclass(frozen=True)
class Reporting:
    """How a command talks: ``quiet`` prints only errors, ``debug`` tracebacks."""

    quiet: bool = False
    debug: bool = False


def _reporting_group(quiet: QuietOpt = False, debug: DebugOpt = False) -> Reporting:
    return Reporting(quiet, debug)


def _with_groups(**groups: Callable[..., Any]) -> Callable[[Any], Any]:
    """Add each group builder's parameters to a command, which then receives
    the builder's result under the group's name (a keyword-only parameter)."""

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        def evaluated(function: Callable[..., Any]) -> list[inspect.Parameter]:
            hints = get_type_hints(function, include_extras=True)
            return [
                parameter.replace(annotation=hints[parameter.name])
                for parameter in inspect.signature(function).parameters.values()
            ]

        added = {name: evaluated(builder) for name, builder in groups.items()}
        own = [p for p in evaluated(command) if p.name not in groups]
        keyword_only = inspect.Parameter.KEYWORD_ONLY
        assert all(p.kind != keyword_only for p in own), "keyword-only: groups only"

        @functools.wraps(command)
        def with_groups(**values: Any) -> Any:
            given = {p.name: values[p.name] for p in own}
            for name, builder in groups.items():
                given[name] = builder(**{p.name: values[p.name] for p in added[name]})
            return command(**given)

        # A name used twice (by the command and a group) fails here, at import.
        parameters = own + [p for group in added.values() for p in group]
        with_groups.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
        with_groups.__annotations__ = {p.name: p.annotation for p in parameters}
        return with_groups

    return decorate


# What animate and batch share; animate adds the identities.
ANIMATION_GROUPS = {
    "engine": _engine_group,
    "head": _head_group,
    "formats": _formats_group,
}


@app.command("animate")
@_with_groups(**ANIMATION_GROUPS, shapes=_shapes_group, reporting=_reporting_group)
def animate_command(
    audio: ConversationArg,
    out: OutDirOpt = Path("out"),
    partner_motion: Annotated[
        Path | None,
        typer.Option(
            "--partner-motion",
            help="B's known motion (NPZ): predict only A, as the published demo "
            "does, and write A's NPZ.",
            show_default=False,
        ),
    ] = None,
    split: SplitOpt = "auto",
    diarization: Annotated[
        Path | None,
        typer.Option(
            "--diarization",
            help="Who speaks when in one recording, as RTTM (pyannote's, or a "
            "corrected <stem>.rttm of ours), instead of the built-in diarizer.",
            show_default=False,
        ),
    ] = None,
    seed: SeedOpt = 0,
    fps: FpsOpt = None,
    size: SizeOpt = None,
    antialias: AntialiasOpt = None,
    overwrite: OverwriteOpt = False,
    *,
    engine: EngineOptions,
    head: HeadOptions,
    formats: tuple[str | None, bool, bool],
    shapes: tuple[Path | None, Path | None],
    reporting: Reporting,
) -> None:
    """Animate both speakers: parameters (NPZ), meshes (OBJ) and a side-by-side MP4.

    One recording split by voice also gets <stem>.rttm: who speaks when.
    """
    if not 1 <= len(audio) <= 2:
        raise typer.BadParameter(
            "give two audio files (A and B) or one stereo file", param_hint="AUDIO"
        )
    if partner_motion is not None and len(audio) != 2:
        raise typer.BadParameter("--partner-motion needs two audio files")

    def run(progress, say):
        from dualtalk_cli.animation import animate, animate_with_partner

        compute = ComputeOptions(engine, fps, seed, shapes, split, diarization)
        output = OutputOptions(
            choose_formats(*formats), size, head, overwrite, antialias
        )
        if partner_motion is not None:
            path = animate_with_partner(
                (audio[0], audio[1]),
                partner_motion,
                out_dir=out,
                compute=compute,
                output=output,
                notify=say,
            )
            say(f"wrote {path}")
            return
        result = animate(
            audio[0],
            audio[1] if len(audio) > 1 else None,
            out_dir=out,
            compute=compute,
            output=output,
            progress=progress,
            notify=say,
        )
        motion = result.conversation.motions[0]
        say(
            f"{motion.seconds:.1f} s, {motion.n_frames} frames at "
            f"{motion.frames_per_second:g} fps"
        )
        for path in result.outputs:
            say(f"wrote {path}")

    _run(run, reporting)


@app.command("render")
@_with_groups(head=_head_group, inputs=_inputs_group, reporting=_reporting_group)
def render_command(
    motions: Annotated[
        list[Path],
        typer.Argument(
            metavar="NPZ",
            help="One parameter file (one head) or two (side by side): ours or the "
            "DualTalk dataset's NPZ.",
            show_default=False,
        ),
    ],
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="The MP4 to write [default: beside P.npz]."),
    ] = None,
    obj: Annotated[
        bool, typer.Option("--obj", help="Also write OBJ meshes beside the video.")
    ] = False,
    size: SizeOpt = None,
    antialias: AntialiasOpt = None,
    overwrite: OverwriteOpt = False,
    *,
    head: HeadOptions,
    inputs: tuple[tuple[Path, ...], tuple[Path | None, Path | None]],
    reporting: Reporting,
) -> None:
    """Render a video from parameter files: one head, or two side by side."""
    audio, shapes = inputs
    if not 1 <= len(motions) <= 2:
        raise typer.BadParameter("give one or two NPZ files", param_hint="MOTIONS")
    if len(audio) > 2:
        raise typer.BadParameter("give --audio at most twice", param_hint="--audio")
    target = out or motions[0].with_name("_".join(p.stem for p in motions) + ".mp4")

    def run(progress, say):
        from dualtalk_cli.animation import render_video

        formats = ("obj", "mp4") if obj else None
        paths = render_video(
            motions,
            target,
            audio_paths=audio,
            shapes=shapes,
            output=OutputOptions(formats, size, head, overwrite, antialias),
            progress=progress,
            notify=say,
        )
        for path in paths:
            say(f"wrote {path}")

    _run(run, reporting)


@app.command("export")
@_with_groups(
    head=_head_group,
    formats=_formats_group,
    inputs=_inputs_group,
    reporting=_reporting_group,
)
def export_command(
    motions: MotionFilesArg,
    out: OutDirOpt = Path("out"),
    size: SizeOpt = None,
    antialias: AntialiasOpt = None,
    overwrite: OverwriteOpt = False,
    *,
    head: HeadOptions,
    formats: tuple[str | None, bool, bool],
    inputs: tuple[tuple[Path, ...], tuple[Path | None, Path | None]],
    reporting: Reporting,
) -> None:
    """Convert motion files to any output format, without running an engine."""
    audio, shapes = inputs
    if not 1 <= len(motions) <= 2 or len(audio) > 2:
        raise typer.BadParameter("give one or two motion files, and --audio at most "
                                 "twice")  # fmt: skip

    def run(progress, say):
        from dualtalk_cli.animation import MotionFiles, export_motion

        files = MotionFiles(tuple(motions), audio, shapes)
        output = OutputOptions(
            choose_formats(*formats), size, head, overwrite, antialias
        )
        for path in export_motion(files, out, output, progress, notify=say):
            say(f"wrote {path}")

    _run(run, reporting)


@app.command("batch")
@_with_groups(**ANIMATION_GROUPS, reporting=_reporting_group)
def batch_command(
    source: Annotated[
        Path,
        typer.Argument(
            metavar="IN",
            help="A folder of <clip>_speaker1/_speaker2 audio pairs (the DualTalk "
            "dataset's layout) and single recordings of both, or a manifest CSV "
            "with columns speaker1[,speaker2,name,shape1,shape2,rttm].",
            show_default=False,
        ),
    ],
    out: OutDirOpt = Path("out"),
    jobs: Annotated[
        int | None,
        typer.Option(
            "--jobs",
            "-j",
            min=1,
            max=4096,
            help="Conversations worked on at once [default: 1; on Ray, as many "
            "workers as the cluster fits].",
            show_default=False,
        ),
    ] = None,
    ray: Annotated[
        str | None,
        typer.Option(
            "--ray",
            help="Run on a Ray cluster: auto (the one 'ray start' made), "
            "ray://host:port, host:port of its head, or local (start one here). "
            'Needs pip install "dualtalk-cli[ray]".',
            show_default=False,
        ),
    ] = None,
    gpus_per_worker: Annotated[
        float | None,
        typer.Option(
            "--gpus-per-worker",
            help="Ray: GPUs of each worker [default: 1 when the cluster has GPUs].",
            show_default=False,
        ),
    ] = None,
    cpus_per_worker: Annotated[
        float | None,
        typer.Option(
            "--cpus-per-worker",
            help="Ray: CPUs of each worker [default: 1; 4 for the DualTalk network "
            "without a GPU].",
            show_default=False,
        ),
    ] = None,
    collect: Annotated[
        bool,
        typer.Option(
            "--collect",
            help="Ray: send each clip's outputs back and write them here, when "
            "OUT is not on storage every node sees.",
        ),
    ] = False,
    json_lines: Annotated[
        bool,
        typer.Option(
            "--json", help="Print one JSON line per clip event on stdout, for scripts."
        ),
    ] = False,
    given_partner: Annotated[
        bool,
        typer.Option(
            "--given-partner",
            help="The DualTalk paper's test protocol: predict each speaker given "
            "the partner's ground-truth motion (<clip>_speakerK.npz beside the "
            "audio). Writes NPZ only; needs the DualTalk network.",
        ),
    ] = False,
    split: SplitOpt = "auto",
    seed: SeedOpt = 0,
    fps: FpsOpt = None,
    size: SizeOpt = None,
    antialias: AntialiasOpt = None,
    overwrite: Annotated[
        bool,
        typer.Option("--overwrite", help="Redo conversations that are complete too."),
    ] = False,
    *,
    engine: EngineOptions,
    head: HeadOptions,
    formats: tuple[str | None, bool, bool],
    reporting: Reporting,
) -> None:
    """Animate every conversation in a folder into OUT/<clip>/, as animate would.

    Complete clips are skipped, so running it again finishes an interrupted
    batch. Exit code: 0 all done or skipped, 3 some clips failed, 2 the batch
    could not start, 130 interrupted.
    """

    def run(progress, say):
        from dualtalk_cli.batch import (
            BatchOptions,
            ClusterOptions,
            find_clips,
            format_summary,
            run_batch,
        )

        if ray is None and (gpus_per_worker, cpus_per_worker) != (None, None):
            raise OptionError("--gpus-per-worker and --cpus-per-worker need --ray")
        if ray is None and collect:
            raise OptionError("--collect needs --ray")
        if ray is None and jobs is not None and jobs > 64:
            raise OptionError(f"--jobs must be at most 64 without --ray, not {jobs}")
        cluster = None
        if ray is not None:
            cluster = ClusterOptions(
                ray, gpus_per_worker, cpus_per_worker, collect, max_workers=jobs
            )
        clips = find_clips(source)
        options = BatchOptions(
            compute=ComputeOptions(engine, fps, seed, split=split),
            output=OutputOptions(
                choose_formats(*formats), size, head, overwrite, antialias
            ),
            given_partner=given_partner,
            jobs=1 if jobs is None or cluster else jobs,
            debug=reporting.debug,
            cluster=cluster,
        )

        stdout = sys.stdout  # JSON lines only: Ray's messages go elsewhere

        def on_event(event):
            if json_lines:
                print(event.to_json(), file=stdout, flush=True)
            position = f"[{event.index}/{event.total}] {event.clip}"
            if event.event == "done":
                say(f"{position}: done in {event.seconds:.1f} s")
            elif event.event == "skipped":
                say(f"{position}: skipped ({event.message})")
            elif event.event == "failed" and not json_lines:
                say(f"{position}: failed: {event.message}")

        summary = run_batch(
            clips, out, options, on_event=on_event, progress=progress, notify=say
        )
        if json_lines:
            print(summary.to_json(), file=stdout, flush=True)
        lines = format_summary(summary)
        if reporting.quiet:
            lines = [line for line in lines if "failed:" in line]
        for line in lines:
            print(line, file=sys.stderr)
        return summary.exit_code

    _run(run, reporting)


@app.command("evaluate")
def evaluate_command(
    predictions: Annotated[
        Path,
        typer.Argument(
            metavar="PRED",
            help="Predicted motion: a folder (searched recursively, e.g. a batch's "
            "output) or one file; our NPZ or the published [T, 56] .npy.",
            show_default=False,
        ),
    ],
    ground_truth: Annotated[
        Path,
        typer.Argument(
            metavar="GT",
            help="Folder of DualTalk dataset NPZ files, <clip>_speaker1/2.npz.",
            show_default=False,
        ),
    ],
    output_format: Annotated[
        str, typer.Option("--format", help="Table as text, json or csv on stdout.")
    ] = "text",
    per_file: Annotated[
        Path | None,
        typer.Option(
            "--per-file",
            help="Also write every file's metrics to this CSV.",
            show_default=False,
        ),
    ] = None,
    overwrite: OverwriteOpt = False,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Score predicted motion with the DualTalk paper's metrics (FD, P-FD, MSE, SID,
    rPCC for expression, jaw and head pose), each clip against its ground truth."""
    if output_format not in ("text", "json", "csv"):
        raise typer.BadParameter("use text, json or csv", param_hint="--format")

    def run(progress, say):
        from dualtalk_cli.evaluate import (
            check_report_path,
            evaluate,
            format_csv,
            format_json,
            format_text,
            write_report,
        )

        if per_file is not None:  # fail now, not after minutes of scoring
            inputs = (predictions, ground_truth)
            check_report_path(per_file, overwrite=overwrite, inputs=inputs)
        elif overwrite:
            raise OptionError("--overwrite has no effect without --per-file")
        evaluation = evaluate(predictions, ground_truth, progress=progress, notify=say)
        formatter = {"text": format_text, "json": format_json, "csv": format_csv}
        sys.stdout.write(formatter[output_format](evaluation))
        if per_file is not None:
            report = format_csv(evaluation, per_file=True)
            say(f"wrote {write_report(per_file, report, overwrite=overwrite)}")

    _run(run, Reporting(quiet, debug))


@app.command("download")
def download_command(
    folder: Annotated[
        Path | None,
        typer.Option("--to", help="Folder for DualTalk.pth [default: weights/]."),
    ] = None,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Fetch the DualTalk checkpoint (about 2.6 GB) from the Hugging Face Hub."""

    def run(progress, say):
        from dualtalk_cli.weights import download_checkpoint

        say(f"wrote {download_checkpoint(folder)}")

    _run(run, Reporting(quiet, debug))


@app.command("info")
def info_command(debug: DebugOpt = False) -> None:
    """Show versions, whether video rendering works, and the engines and heads."""

    def run(progress, say):
        from dualtalk_cli.info import collect_info

        for line in collect_info():
            print(line)

    _run(run, Reporting(quiet=True, debug=debug))


def _run(
    job: Callable[[Any, Callable[[str], None]], int | None], reporting: Reporting
) -> None:
    """Run ``job(progress, say)`` and turn failures into one line and an exit code.

    ``job`` may return an exit code; SIGTERM stops it as Ctrl-C does, so the
    writers still remove their temporary files.
    """
    quiet, debug = reporting.quiet, reporting.debug
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        with _progress_reporter(not quiet and sys.stderr.isatty()) as (progress, echo):

            def say(message: str) -> None:
                if not quiet:
                    echo(one_line(message))

            code = job(progress, say)
        if code:
            raise typer.Exit(code)
    except DualtalkError as error:
        if debug:
            raise
        print(f"dualtalk: error: {error}", file=sys.stderr)
        raise typer.Exit(error.exit_code) from None
    except KeyboardInterrupt:
        if debug:
            raise
        print("dualtalk: interrupted; no partial outputs were left", file=sys.stderr)
        raise typer.Exit(130) from None
    except (typer.Exit, typer.Abort, SystemExit):
        raise
    except OSError as error:  # the system refused a file: the user's to fix
        if debug:
            raise
        print(f"dualtalk: error: {describe(error)}", file=sys.stderr)
        raise typer.Exit(2) from None
    except Exception as error:  # a bug: keep it to one line unless --debug
        if debug:
            raise
        print(
            f"dualtalk: {describe(error)} (run again with --debug for the traceback)",
            file=sys.stderr,
        )
        raise typer.Exit(1) from None


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


@contextmanager
def _progress_reporter(enabled: bool) -> Iterator[tuple[Any, Callable[[str], None]]]:
    """(progress callback, printer): a rich bar on a terminal, else plain stderr."""
    if not enabled:
        yield None, lambda message: print(message, file=sys.stderr)
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = (
        TextColumn("{task.description:<20}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    # stdout stays the caller's (batch --json writes there), not the bar's.
    with Progress(*columns, console=Console(stderr=True), redirect_stdout=False) as bar:
        tasks: dict[str, Any] = {}

        def update(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(STAGE_LABELS.get(stage, stage), total=total)
            bar.update(tasks[stage], completed=done, total=total)

        yield update, lambda message: bar.console.print(message, highlight=False)
