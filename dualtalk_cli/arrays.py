"""The one reader of array files (.npy and .npz) for every input the tool takes."""

from __future__ import annotations

import os
import zipfile
import zlib
from typing import BinaryIO

import numpy as np

from dualtalk_cli.errors import DualtalkError, first_line

NPY_KEY = ""  # the key under which an .npy file's single array is returned

# What numpy raises on a file that is not an array file, is damaged, or holds
# pickled objects (which are never loaded).
_READ_ERRORS = (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error)


def read_arrays(
    path: str | os.PathLike,
    error: type[DualtalkError],
    what: str = "array file",
    source: BinaryIO | None = None,
) -> dict[str, np.ndarray]:
    """The arrays of an .npz file by name, or an .npy file's as ``{NPY_KEY: array}``.

    ``source`` is an open binary file to read instead of ``path`` (``path`` still
    names it in errors). Anything unreadable raises ``error`` naming ``path``:
    "not a readable <what> (reason)". Pickled objects are refused, never loaded.
    """
    try:
        loaded = np.load(source if source is not None else path, allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            return {NPY_KEY: np.asarray(loaded)}
        with loaded:
            return {key: loaded[key] for key in loaded.files}
    except _READ_ERRORS as reason:
        said = first_line(reason) or type(reason).__name__
        raise error(f"not a readable {what} ({said})", path) from None
