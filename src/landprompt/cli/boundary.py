"""The command line's one error boundary: errors a user can cause become one line, bugs keep their traceback.

Readers raise :class:`~landprompt.errors.LandpromptError` where they know the cause; this module maps
what is left of the I/O and format errors a user can cause (a folder that cannot be written, a path that
is a folder, a truncated GeoTIFF, a corrupt JPEG, a damaged Zarr chunk, a JSON or text file that does not
decode, an unreadable FAISS index) to one line naming the file and what to do. The file is the one the
error's ``filename`` names (a reader whose library errors name none sets it with
:func:`~landprompt.errors.about_file`), or the one the library's message names: it is never guessed.
Anything else is a bug: its traceback is shown (``--debug`` or ``LANDPROMPT_DEBUG=1`` also show the
traceback of user errors).
"""

from __future__ import annotations

import errno
import json
import os
from traceback import walk_tb
from types import FrameType, TracebackType
from typing import Any

from landprompt.errors import LandpromptError

#: Environment variable that, set to a non-empty value other than ``0``, shows every traceback.
DEBUG_ENV = "LANDPROMPT_DEBUG"
#: Exit code of a file that cannot be read or written (permissions, a folder in the way, disk full).
EXIT_IO = 5
#: Exit code of an input file that is damaged or not of the expected format.
EXIT_DAMAGED = 4
#: Modules whose RuntimeError/ValueError means "this stored data does not decode" (codecs, Zarr, FAISS).
_FORMAT_MODULES = (
    "zarr",
    "numcodecs",
    "zstandard",
    "faiss",
    "crc32c",
    "blosc",
    "tifffile",
    "PIL",
    "rasterio",
)

_OS_ADVICE = {
    errno.EACCES: "check its permissions or choose another location",
    errno.EPERM: "check its permissions or choose another location",
    errno.EROFS: "the file system is read-only: choose another location",
    errno.ENOSPC: "the disk is full: free space or choose another location",
    errno.EDQUOT: "the disk quota is exceeded: free space or choose another location",
    errno.EISDIR: "it is a folder: give a file path",
    errno.ENOTDIR: "a part of the path is a file, not a folder: fix the path",
    errno.ENOENT: "it does not exist: check the path",
    errno.EEXIST: "it already exists: remove it or choose another path",
    errno.ENAMETOOLONG: "the name is too long: choose a shorter path",
}


def debug_enabled(ctx: Any = None) -> bool:
    """Whether tracebacks are wanted: ``--debug`` on the root command or ``LANDPROMPT_DEBUG`` set."""
    if os.environ.get(DEBUG_ENV, "") not in ("", "0"):
        return True
    root = ctx.find_root() if ctx is not None else None
    return bool(root is not None and root.params.get("debug"))


def user_error(exc: BaseException) -> tuple[str, int] | None:
    """One line and an exit code for an error a user can cause, or None for a bug."""
    if isinstance(exc, LandpromptError):
        return " ".join(str(exc).split()), exc.exit_code
    if isinstance(exc, MemoryError):
        return "out of memory: use a smaller --bbox, chunk or batch size", 1
    name = getattr(exc, "filename", None)
    where = f"{name}: " if name else ""
    if isinstance(exc, UnicodeDecodeError):
        return f"{where}is not a UTF-8 text file ({_reason(exc)}): give the right file", EXIT_DAMAGED
    if isinstance(exc, json.JSONDecodeError):
        return (
            f"{where}is not valid JSON ({_reason(exc)}): it is damaged; restore or recreate it",
            EXIT_DAMAGED,
        )
    if isinstance(exc, OSError) and _from_format_library(exc):  # rasterio, PIL: unreadable content
        return (
            f"{where}cannot be read ({_reason(exc)}): it is damaged or not of the expected format",
            EXIT_DAMAGED,
        )
    if isinstance(exc, ConnectionError | TimeoutError):
        return f"{where}{_reason(exc)}: a service could not be reached; check the network and retry", EXIT_IO
    if isinstance(exc, OSError):
        advice = _OS_ADVICE.get(exc.errno or 0, "check the path and its permissions")
        return f"{where}{exc.strerror or _reason(exc)}: {advice}", EXIT_IO
    if (isinstance(exc, RuntimeError) and _raised_in_format_library(exc)) or _is_zarr_error(exc):
        return (
            f"{where}stored data does not decode ({_reason(exc)}): it is damaged or of another format; "
            "restore or recreate it",
            EXIT_DAMAGED,
        )
    return None


def _reason(exc: BaseException) -> str:
    """The exception's message on one line, kept short."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def _is_zarr_error(exc: BaseException) -> bool:
    """A Zarr metadata or codec error (``zarr.errors``): the store is damaged or not a Zarr store."""
    return type(exc).__module__.startswith(("zarr.errors", "numcodecs"))


def _from_format_library(exc: OSError) -> bool:
    """An OSError about file content (rasterio, PIL), not about the file system."""
    return exc.errno is None and _raised_in_format_library(exc)


def _raised_in_format_library(exc: BaseException) -> bool:
    """Whether the innermost frames of the traceback belong to a codec, Zarr, FAISS or image library."""
    if type(exc).__module__.split(".")[0] in _FORMAT_MODULES:
        return True
    frames = _frames(exc.__traceback__)[-3:]
    return any(_module_of(frame) in _FORMAT_MODULES for frame in frames)


def _module_of(frame: Any) -> str:
    return str(frame.f_globals.get("__name__", "")).split(".")[0]


def _frames(tb: TracebackType | None) -> list[FrameType]:
    """The frames of a traceback, outermost first."""
    return [frame for frame, _ in walk_tb(tb)]
