"""The one reader of array files (.npy and .npz) for every input the tool takes.

Hostile files are refused before they cost memory: only the arrays asked for
are read, and their declared shapes and sizes are checked before anything is
decompressed (a 2 MB NPZ can declare gigabytes of zeros).
"""

from __future__ import annotations

import math
import os
import stat
import zipfile
import zlib
from collections.abc import Collection
from pathlib import Path
from typing import BinaryIO

import numpy as np

from dualtalk_cli.errors import DualtalkError, first_line

NPY_KEY = ""  # the key under which an .npy file's single array is returned
# The most one file may declare in the arrays read: above any real input (four
# hours of motion at 120 fps take about 1.5 GB), below a bomb's damage.
MAX_FILE_BYTES = 2 << 30

# What numpy raises on a file that is not an array file, is damaged, or holds
# pickled objects (which are never loaded).
_READ_ERRORS = (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error)


def open_input(path: str | os.PathLike, error: type[DualtalkError]) -> BinaryIO:
    """An input file opened for reading; a folder, a FIFO or a device is refused
    in one line (a FIFO without a writer would block forever)."""
    path = Path(path)
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise error("file not found", path) from None
    except (OSError, ValueError) as reason:  # ValueError: a NUL in the name
        said = getattr(reason, "strerror", None) or reason
        raise error(f"cannot read ({said})", path) from None
    if stat.S_ISDIR(mode):
        raise error("is a directory, not a file", path)
    if not stat.S_ISREG(mode):
        raise error("is not a regular file (a pipe or a device?)", path)
    try:
        return open(path, "rb")
    except OSError as reason:
        raise error(f"cannot read ({reason.strerror})", path) from None


def read_arrays(
    path: str | os.PathLike,
    error: type[DualtalkError],
    what: str = "array file",
    keys: Collection[str] | None = None,
    *,
    max_rows: int | None = None,
    source: BinaryIO | None = None,
) -> dict[str, np.ndarray]:
    """The arrays of an .npz file by name, or an .npy file's as ``{NPY_KEY: array}``.

    ``keys``: read only these members of an .npz (those missing are left out);
    None reads all. ``max_rows``: refuse an array with more rows (frames).
    ``source``: an open binary file to read instead of ``path``, which still
    names it in errors. Anything unreadable, or declaring more than
    MAX_FILE_BYTES, raises ``error`` naming ``path``. Pickles are never loaded.
    """
    file = source if source is not None else open_input(path, error)
    try:
        if file.read(4) != b"PK\x03\x04":
            file.seek(0)
            header = _header(file, path, error, None, max_rows)
            _check_total(header[3], path, error)
            return {NPY_KEY: _read_data(file, header, path, error)}
        file.seek(0)
        with zipfile.ZipFile(file) as archive:
            members = {
                name[: -len(".npy")]: name
                for name in archive.namelist()
                if name.endswith(".npy")
            }
            wanted = [key for key in keys or members if key in members]
            headers = {}
            for key in wanted:  # every header first: nothing decompressed yet
                with archive.open(members[key]) as member:
                    headers[key] = _header(member, path, error, key, max_rows)
            _check_total(sum(header[3] for header in headers.values()), path, error)
            arrays = {}
            for key in wanted:
                with archive.open(members[key]) as member:
                    _header(member, path, error, key, max_rows)
                    arrays[key] = _read_data(member, headers[key], path, error)
            return arrays
    except _READ_ERRORS as reason:
        said = first_line(reason) or type(reason).__name__
        raise error(f"not a readable {what} ({said})", path) from None
    finally:
        if source is None:
            file.close()


Header = tuple[tuple[int, ...], bool, np.dtype, int, str]


def _header(
    file: BinaryIO,
    path: str | os.PathLike,
    error: type[DualtalkError],
    key: str | None,
    max_rows: int | None,
) -> Header:
    """(shape, fortran order, dtype, size in bytes, name) from an .npy header."""
    fmt = np.lib.format
    version = fmt.read_magic(file)
    read = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
    shape, fortran, dtype = read(file)
    named = "the array" if key is None else f"'{key}'"
    if dtype.hasobject:
        raise error(f"{named} holds Python objects, not numbers", path)
    if max_rows is not None and shape and shape[0] > max_rows:
        raise error(
            f"{named} declares {shape[0]} frames; at most {max_rows} are read", path
        )
    return shape, fortran, dtype, math.prod(shape) * dtype.itemsize, named


def _check_total(size: int, path: str | os.PathLike, error: type[DualtalkError]):
    if size > MAX_FILE_BYTES:
        raise error(
            f"declares {size / 2**30:.1f} GiB of arrays; refusing files over "
            f"{MAX_FILE_BYTES // 2**30} GiB",
            path,
        )


def _read_data(
    file: BinaryIO, header: Header, path: str | os.PathLike, error: type[DualtalkError]
) -> np.ndarray:
    """The array's data, read straight into its own memory."""
    shape, fortran, dtype, size, named = header
    buffer = np.empty(size, np.uint8)
    view, done = memoryview(buffer), 0
    while done < size:
        count = file.readinto(view[done:])
        if not count:
            raise error(f"{named} is truncated", path)
        done += count
    return buffer.view(dtype).reshape(shape, order="F" if fortran else "C")
