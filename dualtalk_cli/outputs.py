"""Where a conversation's outputs go, and how they are written without half-files.

An ``OutputPlan`` names every output of one conversation before any work: one
stem per speaker, the video's stem, the formats. Writers, the video encoder,
``animate`` and ``batch`` all take their paths, temporary names, the "already
exists" check and the clean-up of leftovers from here.

A run writes as a transaction (``OutputPlan.writing``): it holds a lock on the
output folder, so a second run on the same folder fails at once with one line;
every output is written under a unique temporary name created exclusively; and
all of them are renamed into place together at the end. An interrupted or
failed run leaves what was there before it, untouched, and nothing of its own.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import os
import secrets
import shutil
import signal
import tempfile
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from dualtalk_cli.errors import OutputError

# Per format: the file extension ("" for a folder) and whether each speaker gets
# one (True) or the conversation gets one (False). A new format adds a line.
LAYOUT: dict[str, tuple[str, bool]] = {
    "npz": (".npz", True),
    "obj": ("", True),
    "mp4": (".mp4", False),
    "csv": (".csv", True),
    "glb": (".glb", False),
    "wav": (".wav", False),
    "rttm": (".rttm", False),  # who speaks when: written when a recording is split
}
PARTIAL = ".partial"  # marks a temporary name: ".NAME.XXXXXXXX.partial[.ext]"
PREVIOUS = ".previous"  # an output being replaced: ".NAME.XXXXXXXX.previous"
# The most a temporary name adds to an output's name: "." + "." + 8 random
# characters + ".partial" + the longest extension (".rttm").
TEMPORARY_EXTRA = 2 + 8 + len(PARTIAL) + max(len(ext) for ext, _ in LAYOUT.values())


def output_stems(
    audio_a: str | os.PathLike, audio_b: str | os.PathLike | None
) -> tuple[tuple[str, str], str]:
    """Each speaker's output stem and the video's stem, from the input file names.

    Two files: their stems (``_A``/``_B`` added when equal), the video joins them.
    One stereo file ``talk``: ``talk_speaker1``, ``talk_speaker2`` and ``talk``.
    """
    if audio_b is None:
        stem = Path(audio_a).stem
        return (f"{stem}_speaker1", f"{stem}_speaker2"), stem
    stem_a, stem_b = distinct_stems((audio_a, audio_b))
    return (stem_a, stem_b), f"{stem_a}_{stem_b}"


def distinct_stems(paths: Sequence[str | os.PathLike]) -> tuple[str, ...]:
    """The files' stems, as output stems: two equal ones become ``_A``, ``_B``."""
    stems = tuple(Path(path).stem for path in paths)
    if len(stems) == 2 and stems[0] == stems[1]:
        return (f"{stems[0]}_A", f"{stems[1]}_B")
    return stems


@dataclass(frozen=True)
class OutputPlan:
    """The outputs of one conversation: folder, stems and formats."""

    out_dir: Path
    stems: tuple[str, ...]  # one per speaker, in speaker order
    video_stem: str
    formats: tuple[str, ...]

    @classmethod
    def for_audio(
        cls,
        out_dir: str | os.PathLike,
        audio: tuple[str | os.PathLike, str | os.PathLike | None],
        formats: tuple[str, ...],
    ) -> OutputPlan:
        """The plan for a conversation given as (A, B) files, or (stereo, None)."""
        stems, video_stem = output_stems(*audio)
        return cls(Path(out_dir), stems, video_stem, tuple(formats))

    def paths(self, output_format: str) -> list[Path]:
        """The final paths of one format, in speaker order."""
        extension, per_speaker = LAYOUT[output_format]
        stems = self.stems if per_speaker else (self.video_stem,)
        return [self.out_dir / f"{stem}{extension}" for stem in stems]

    def all_paths(self) -> list[Path]:
        """Every final path, format by format."""
        return [path for name in self.formats for path in self.paths(name)]

    def is_complete(self) -> bool:
        """Whether every output exists (each is renamed into place only whole)."""
        return all(path.exists() for path in self.all_paths())

    def any_exists(self) -> bool:
        return any(path.exists() for path in self.all_paths())

    @contextlib.contextmanager
    def writing(self, overwrite: bool = False) -> Iterator[OutputTransaction]:
        """The outputs as one transaction, committed when the block ends.

        Creates the folder, locks it (another run there fails at once), removes
        what killed runs left, and checks every output before any work. On an
        exception nothing of this run stays, and a folder it created empty is
        removed again.
        """
        created = not self.out_dir.exists()
        prepare_folder(self.out_dir)
        with locked_folder(self.out_dir):
            try:
                self.remove_leftovers()
                self.check(overwrite)
                with OutputTransaction() as transaction:
                    yield transaction
                    transaction.commit()
            except BaseException:
                # Only the lock's holder may: another run may be using it.
                if created:
                    with contextlib.suppress(OSError):
                        self.out_dir.rmdir()  # only when nothing is in it
                raise

    def check(self, overwrite: bool = False) -> None:
        """Fail, before any work, on a name the file system cannot hold, or an
        output that exists without ``overwrite`` or is in the way."""
        check_names(self.out_dir, [path.name for path in self.all_paths()])
        for name in self.formats:
            is_folder = LAYOUT[name][0] == ""
            for path in self.paths(name):
                if not path.exists():
                    continue
                if not overwrite:
                    raise OutputError(
                        "already exists; pass --overwrite to replace it", path
                    )
                if path.is_dir() != is_folder:
                    kind = "folder" if path.is_dir() else "file"
                    raise OutputError(f"is a {kind} in the way of this output", path)

    def remove_leftovers(self) -> None:
        """Delete what a killed run left of this plan's outputs, in any format."""
        if not self.out_dir.is_dir():
            return
        finals = {path.name for name in LAYOUT for path in self.paths(name)}
        for path in self.out_dir.iterdir():
            if any(path.name.startswith(f".{name}.") for name in finals) and (
                PARTIAL in path.name or path.name.endswith(PREVIOUS)
            ):
                _remove(path)


def prepare_folder(folder: str | os.PathLike) -> None:
    """Create ``folder`` for outputs, or fail in one line if it cannot hold them."""
    folder = Path(folder)
    try:
        if folder.exists() and not folder.is_dir():
            raise OutputError("is a file, not a folder for the outputs", folder)
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OutputError(f"cannot create folder ({error.strerror})", folder) from None
    try:
        # Only a real file shows that the folder takes new files (/proc, say,
        # exists and passes os.access, yet refuses them).
        handle, probe = tempfile.mkstemp(prefix=".dualtalk-", dir=folder)
        os.close(handle)
        os.unlink(probe)
    except OSError as error:
        raise OutputError(f"cannot write here ({error.strerror})", folder) from None


def name_problem(name: str, extra: int = TEMPORARY_EXTRA, longest: int = 255) -> str:
    """Why ``name`` cannot be an output's name here ("" when it can).

    ``extra``: what a temporary name adds; ``longest``: the file system's limit.
    """
    if name in ("", ".", "..") or "\0" in name or "/" in name:
        return "is not a usable file or folder name"
    try:
        size = len(os.fsencode(name))
    except UnicodeError:
        return "cannot be encoded as a file name here"
    if size + extra > longest:
        return (
            f"is too long for a file name here ({size} bytes; at most "
            f"{longest - extra} with its temporary suffix)"
        )
    return ""


def check_names(folder: Path, names: list[str]) -> None:
    """Fail in one line on an output name the file system cannot hold."""
    try:
        longest = os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError):
        longest = 255
    for name in names:
        problem = name_problem(name, longest=longest)
        if problem:
            raise OutputError(f"output name {problem}", folder / name)


@contextlib.contextmanager
def locked_folder(folder: Path) -> Iterator[None]:
    """Hold the output lock of ``folder``; fail at once if another run holds it.

    An advisory lock on the folder itself (flock), so nothing is left behind,
    and a killed run's lock goes with its process.
    """
    handle = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise OutputError(
                "another dualtalk run is writing into this folder; wait for it "
                "to finish or choose another output folder",
                folder,
            ) from None
        yield
    finally:
        os.close(handle)


class OutputTransaction:
    """Outputs written under unique temporary names, renamed into place together.

    ``file`` and ``folder`` create a temporary beside a final path, exclusively;
    ``commit`` renames every one onto its final name (replacing an earlier
    output only then) with Ctrl-C and SIGTERM held back, and rolls back if a
    rename fails. Leaving the ``with`` block without a commit removes them all.
    """

    def __init__(self) -> None:
        self.pending: list[tuple[Path, Path]] = []  # (temporary, final)
        self.closed = False  # committed or aborted: no more temporaries
        self._guard = threading.Lock()  # writers run in threads

    def file(self, final: Path) -> Path:
        """A new, empty temporary file for ``final``."""
        # Ctrl-C between creating and recording it would leave it behind.
        with _signals_held():
            try:
                handle, name = tempfile.mkstemp(
                    prefix=f".{final.name}.", suffix=f"{PARTIAL}{final.suffix}",
                    dir=final.parent,
                )  # fmt: skip
            except OSError as error:
                raise output_error(error, final) from None
            try:
                os.fchmod(handle, 0o666 & ~_umask())  # as open() would, not 0600
            finally:
                os.close(handle)
            return self._add(Path(name), final)

    def folder(self, final: Path) -> Path:
        """A new, empty temporary folder for ``final``."""
        with _signals_held():
            try:
                name = tempfile.mkdtemp(
                    prefix=f".{final.name}.", suffix=PARTIAL, dir=final.parent
                )
                os.chmod(name, 0o777 & ~_umask())  # as mkdir() would, not 0700
            except OSError as error:
                raise output_error(error, final) from None
            return self._add(Path(name), final)

    def _add(self, temporary: Path, final: Path) -> Path:
        with self._guard:
            if not self.closed:
                self.pending.append((temporary, final))
                return temporary
        # A writer thread that outlived the transaction: nothing may stay.
        _remove(temporary)
        raise OutputError("the run was stopped", final)

    def commit(self) -> list[Path]:
        """Rename every temporary onto its final name, all or none."""
        done: list[tuple[Path, Path, Path | None]] = []
        with _signals_held(), self._guard:
            self.closed = True
            self._commit(done)
        for _, _, previous in done:
            if previous is not None:
                _remove(previous)
        committed = [final for _, final in self.pending]
        self.pending = []
        return committed

    def _commit(self, done: list[tuple[Path, Path, Path | None]]) -> None:
        final = Path()
        try:
            for temporary, final in self.pending:
                previous = _set_aside(final)
                try:
                    os.replace(temporary, final)
                except OSError:
                    if previous is not None:
                        os.replace(previous, final)
                    raise
                done.append((temporary, final, previous))
        except OSError as error:
            failed = final
            for temporary, final, previous in reversed(done):
                os.replace(final, temporary)  # removed with the rest by abort
                if previous is not None:
                    os.replace(previous, final)
            raise output_error(error, failed) from None

    def abort(self) -> None:
        """Remove every temporary; the final names keep what they had."""
        with _signals_held(), self._guard:
            self.closed = True
            for temporary, _ in self.pending:
                _remove(temporary)
            self.pending = []

    def __enter__(self) -> OutputTransaction:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.abort()  # nothing left after a commit; everything after a failure


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    """Hold Ctrl-C and SIGTERM back (they arrive when the block ends)."""
    held = {signal.SIGINT, signal.SIGTERM}
    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)


@functools.cache
def _umask() -> int:
    """The process's umask (read once: reading it means setting it)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _set_aside(final: Path) -> Path | None:
    """Move an existing output out of the way of its replacement."""
    if not (final.exists() or final.is_symlink()):
        return None
    previous = final.with_name(f".{final.name}.{secrets.token_hex(4)}{PREVIOUS}")
    os.replace(final, previous)
    return previous


@contextlib.contextmanager
def writing_error(final: Path) -> Iterator[None]:
    """An OS error while writing ``final`` (disk full, say) as one line naming it."""
    try:
        yield
    except OSError as error:
        raise output_error(error, final) from None


@contextlib.contextmanager
def atomic_file(path: Path) -> Iterator[Path]:
    """Yield a new temporary file beside ``path``; rename onto it on success."""
    with OutputTransaction() as transaction:
        yield transaction.file(path)
        transaction.commit()


def output_error(error: OSError, path: Path) -> OutputError:
    """The one-line error for an OS error while writing ``path``."""
    reasons = {errno.ENOSPC: "disk full", errno.EFBIG: "file too large for this disk"}
    reason = reasons.get(error.errno, error.strerror or str(error))
    return OutputError(f"cannot write ({reason})", path)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
