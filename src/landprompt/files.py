"""File helpers every stage shares: output checks, atomic writes, stale-file clean-up, content hashes."""

from __future__ import annotations

import glob
import hashlib
import json
import os
import re
import shutil
import socket
import tempfile
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Any

from landprompt.errors import BadInputError

#: Marker in the names of files being written (see :func:`atomic_path`).
PART = ".part"
#: ``.NAME.HOST.PID.RANDOM.part`` with an optional ``.SUFFIX``: HOST is :func:`host_tag`, RANDOM is
#: mkstemp's or uuid's 8 characters.
_PART_NAME = re.compile(
    rf"\..+\.(?P<host>[A-Za-z0-9-]+)\.(?P<pid>\d+)\.[a-z0-9_]{{8}}{re.escape(PART)}(\.[^.]*)?"
)
#: The ``.NAME.PID.RANDOM.part.SUFFIX`` names of releases before the host was added (one release's
#: compatibility: :func:`remove_stale_parts` still removes them, see :func:`_old_part_pid`).
_OLD_PART_NAME = re.compile(
    rf"\.(?P<name>.+)\.(?P<pid>\d+)\.[a-z0-9_]{{8}}{re.escape(PART)}(?P<suffix>\.[^.]*)?"
)
#: Marker in the names of old copies set aside while a new one replaces them (:func:`swap_into_place`).
ASIDE = ".aside"
_ASIDE_NAME = re.compile(
    rf"\.(?P<name>.+)\.(?P<host>[A-Za-z0-9-]+)\.(?P<pid>\d+)\.[a-z0-9]{{8}}{re.escape(ASIDE)}"
)
#: Folders this process has cleaned of stale parts (:func:`remove_stale_parts_once`).
_CLEANED: set[str] = set()
_CLEANED_LOCK = threading.Lock()


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary sibling path that replaces ``path`` only if the block succeeds.

    The temporary name carries the writer's host and pid (``.NAME.HOST.PID.RANDOM.part.SUFFIX``) so
    that a later writer on the same host can remove it if this process was killed
    (:func:`remove_stale_parts`).
    The file gets the mode ``open()`` would give it (0o666 less the umask), not ``mkstemp``'s 0o600,
    so colleagues, web servers and shared folders can read what landprompt writes.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_parts_once(path.parent)
    fd, tmp_name = tempfile.mkstemp(prefix=part_prefix(path), suffix=f"{PART}{path.suffix}", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        if tmp.is_file():
            os.chmod(tmp, _umask_mode())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


class ChangedMeanwhileError(OSError):
    """A file changed between the read and the write of a compare-and-swap (:func:`write_json`)."""


def write_json(
    path: str | Path, value: Any, *, indent: int = 2, allow_nan: bool = True, expect: bytes | None = None
) -> Path:
    """Write ``value`` as indented JSON with a final newline, atomically (:func:`atomic_path`).

    The value is serialised before anything is written, so a value JSON refuses leaves no file.

    Args:
        path: The file.
        value: A JSON-able value.
        indent: JSON indent.
        allow_nan: Write NaN and infinities (not strict JSON).
        expect: Compare-and-swap: replace ``path`` only if it still holds these bytes (read by the
            caller before it computed ``value``), checked after the new file is written, just before
            the rename; else raise :class:`ChangedMeanwhileError` and leave ``path`` as it is.
    """
    text = json.dumps(value, indent=indent, allow_nan=allow_nan) + "\n"
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
        if expect is not None and _read_or_none(Path(path)) != expect:
            raise ChangedMeanwhileError(f"{path} changed while it was being rewritten")
    return Path(path)


def _read_or_none(path: Path) -> bytes | None:
    """The bytes of a file, or None if it is missing."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


def part_path(path: str | Path) -> Path:
    """A fresh temporary sibling name for a store or file being written: ``.NAME.HOST.PID.RANDOM.part``.

    Write a whole store there, then rename it into place; :func:`remove_stale_parts` removes it if
    the writer is killed first.
    """
    path = Path(path)
    return path.with_name(f"{part_prefix(path)}{uuid.uuid4().hex[:8]}{PART}")


def part_prefix(path: str | Path) -> str:
    """The start of this process's temporary names for ``path``: ``.NAME.HOST.PID.`` (for ``tempfile``).

    Add 8 random characters and ``.part`` (and a suffix) to make a name :func:`remove_stale_parts` knows.
    """
    return f".{Path(path).name}.{host_tag()}.{os.getpid()}."


@cache
def host_tag() -> str:
    """This machine's name as it goes into temporary names: letters, digits and ``-`` only."""
    return re.sub(r"[^A-Za-z0-9-]+", "-", socket.gethostname()).strip("-") or "localhost"


def place_exclusively(src: Path, dst: Path) -> None:
    """Rename the finished file or store ``src`` to ``dst`` unless something is there already.

    Of two writers racing for one path, one wins; the other gets a :class:`BadInputError` (its
    ``src`` is left for the caller to remove).
    """
    restore_set_aside(dst)  # a swap killed half-way: the old copy is still there, to be refused
    try:
        if dst.exists() or dst.is_symlink():
            raise FileExistsError(dst)
        os.rename(src, dst)  # a store onto a non-empty folder fails: of two writers, one wins
    except OSError as exc:
        raise BadInputError(
            f"{dst} already exists (another writer may have created it while this one ran): choose "
            "another path or overwrite it"
        ) from exc


def swap_into_place(src: Path, dst: Path) -> None:
    """Move the finished file or store ``src`` to ``dst``, replacing whatever is there.

    The old ``dst`` is first renamed aside (an :func:`aside_path` name, which the part clean-up never
    matches; removed afterwards), so ``dst`` is at every moment either the old whole or the new whole,
    never a mixture. A writer killed between the two renames leaves the old copy aside;
    :func:`restore_set_aside` (run by the next write, and by :func:`~landprompt.embedder.cube.open_cube`)
    puts it back.
    """
    restore_set_aside(dst)
    if not (dst.exists() or dst.is_symlink()):
        os.replace(src, dst)
        return
    old = aside_path(dst)
    os.replace(dst, old)
    os.replace(src, dst)
    _remove(old)


def aside_path(path: str | Path) -> Path:
    """A fresh name for the old ``path`` while it is replaced: ``.NAME.HOST.PID.RANDOM.aside``."""
    path = Path(path)
    return path.with_name(f"{part_prefix(path)}{uuid.uuid4().hex[:8]}{ASIDE}")


def restore_set_aside(path: str | Path) -> Path | None:
    """Undo a :func:`swap_into_place` killed half-way: restore ``path`` from the copy it set aside.

    Only copies set aside by writers of this host that no longer run are touched: when ``path`` is
    missing, the newest is renamed back to it; when ``path`` is there, they are left-overs of a swap
    killed after it finished, and are removed.

    Returns:
        The restored ``path``, or None if nothing was restored.
    """
    path = Path(path)
    try:
        candidates = list(path.parent.glob(f"{glob.escape('.' + path.name)}.*{ASIDE}"))
    except OSError:
        return None
    aged = []
    for candidate in candidates:
        match = _ASIDE_NAME.fullmatch(candidate.name)
        mine = match is not None and match["name"] == path.name and match["host"] == host_tag()
        if mine and match is not None and not _pid_alive(int(match["pid"])):
            try:  # a rename sets the ctime: the newest aside sorts last
                aged.append((candidate.lstat().st_ctime_ns, candidate))
            except OSError:  # another process restored or removed it since the listing
                continue
    if not aged:
        return None
    dead = [candidate for _, candidate in sorted(aged)]
    restored = None
    if not (path.exists() or path.is_symlink()):
        try:
            os.rename(dead.pop(), path)
            restored = path
        except OSError:  # another process restored it first, or wrote a new one
            pass
    for left_over in dead:
        try:
            _remove(left_over)
        except OSError:
            continue
    return restored


def _remove(path: Path) -> None:
    """Remove a file, link or folder tree."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


def remove_stale_parts_once(folder: str | Path) -> None:
    """:func:`remove_stale_parts` the first time this process writes into ``folder``; later calls do nothing.

    A writer killed while this process runs leaves its part until the next process writes there.
    """
    key = os.path.abspath(folder)
    with _CLEANED_LOCK:
        if key in _CLEANED:
            return
        _CLEANED.add(key)
    remove_stale_parts(folder)


def remove_stale_parts(folder: str | Path) -> list[Path]:
    """Remove the ``.part`` files and stores that writers which are no longer running left in ``folder``.

    Only names of the :func:`atomic_path` / :func:`part_path` form written on this host whose pid is
    not a live process are removed; a live writer's file, a part written on another host (a shared
    folder: its pid says nothing here), and anything else are left alone. Parts named by the release
    before hosts were added (``.NAME.PID.RANDOM.part``) are removed on the same terms (one release's
    compatibility; see :func:`_old_part_pid`).

    Returns:
        The paths removed.
    """
    removed: list[Path] = []
    try:
        candidates = list(Path(folder).glob(f".*{PART}*"))
    except OSError:
        return removed
    for candidate in candidates:
        match = _PART_NAME.fullmatch(candidate.name)
        pid = int(match["pid"]) if match is not None and match["host"] == host_tag() else None
        pid = _old_part_pid(candidate) if pid is None else pid
        if pid is None or _pid_alive(pid):
            continue
        try:
            _remove(candidate)
        except OSError:  # another cleaner was first, or the folder is read-only: not ours to fail on
            continue
        removed.append(candidate)
    return removed


def _old_part_pid(part: Path) -> int | None:
    """The writer's pid of a part named before hosts were (``.NAME.PID.RANDOM.part``); None if not one.

    Such a name is told from another host's ``.NAME.HOST.PID.RANDOM.part`` by what ``NAME`` would be:
    a file's part ends in ``NAME``'s own suffix (``.map.tif.PID.RANDOM.part.tif``), a store's part is
    that of a ``.zarr`` store or of a ``NAME`` that is there (an old copy set aside while it was replaced).
    """
    match = _OLD_PART_NAME.fullmatch(part.name)
    if match is None:
        return None
    name, suffix = match["name"], match["suffix"] or ""
    own = Path(name).suffix
    if suffix == own or (not suffix and (own == ".zarr" or (part.parent / name).exists())):
        return int(match["pid"])
    return None


def _pid_alive(pid: int) -> bool:
    """Whether a process with this pid runs on this machine."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, owned by another user
        return True
    return True


def require_writable(path: str | Path, *, folder: bool = False) -> Path:
    """Check, before any work, that an output can be written at ``path``.

    Args:
        path: The output file (or folder, with ``folder=True``).
        folder: The output is a folder or store; otherwise an existing folder at ``path`` is refused.

    Raises:
        BadInputError: If ``path`` is a folder where a file goes (or a file where a folder goes), or
            its nearest existing parent is not a writable folder.
    """
    path = Path(path)
    if not folder and path.is_dir():
        raise BadInputError(f"output {path} is a folder: give a file path")
    if folder and path.exists() and not path.is_dir():
        raise BadInputError(f"output {path} is a file, not a folder: give another path or remove it")
    parent = path.parent if not folder or not path.exists() else path
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise BadInputError(f"cannot create {path}: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise BadInputError(f"cannot write {path}: folder {parent} is not writable; choose another location")
    return path


def _umask_mode() -> int:
    """The mode ``open()`` gives a new file: 0o666 less the process umask."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def file_sha256(path: str | Path) -> str:
    """sha256 (hex) of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def slugify(name: str) -> str:
    """Lower-case ``name`` and replace runs of characters other than a-z and 0-9 by ``-`` (for file names)."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
