"""files: temporary names carry the host, stale parts are cleaned once a folder, swaps can be undone."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from landprompt import files
from landprompt.files import (
    ASIDE,
    aside_path,
    atomic_path,
    host_tag,
    part_path,
    remove_stale_parts,
    restore_set_aside,
    swap_into_place,
)


@pytest.fixture
def dead_pid() -> int:
    """The pid of a process that has ended."""
    done = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    return int(done.stdout)


def test_parts_of_other_hosts_are_left_alone(tmp_path: Path, dead_pid: int) -> None:
    mine = tmp_path / f".cube.zarr.{host_tag()}.{dead_pid}.0123abcd.part"
    other_host = tmp_path / f".cube.zarr.worker-7.{dead_pid}.0123abcd.part"  # a write on an NFS peer
    for path in (mine, other_host):
        (path / "c").mkdir(parents=True)
    assert remove_stale_parts(tmp_path) == [mine]
    assert other_host.is_dir()
    assert part_path(tmp_path / "x.zarr").name.startswith(f".x.zarr.{host_tag()}.{os.getpid()}.")


def test_a_folder_is_listed_for_stale_parts_once_a_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, dead_pid: int
) -> None:
    monkeypatch.setattr(files, "_CLEANED", set())
    listed: list[Path] = []
    original = files.remove_stale_parts
    monkeypatch.setattr(
        files, "remove_stale_parts", lambda folder: listed.append(Path(folder)) or original(folder)
    )
    stale = tmp_path / f".a.txt.{host_tag()}.{dead_pid}.abcd1234.part.txt"
    stale.write_text("x")
    for n in range(3):
        with atomic_path(tmp_path / f"{n}.txt") as tmp:
            tmp.write_text(str(n))
    assert listed == [tmp_path] and not stale.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["0.txt", "1.txt", "2.txt"]


def _killed_between_renames(dst: Path, new: Path, pid: int) -> Path:
    """What a writer killed between the two renames of :func:`swap_into_place` leaves: no ``dst``."""
    old = aside_path(dst)
    old = old.with_name(old.name.replace(f".{os.getpid()}.", f".{pid}."))
    os.replace(dst, old)
    assert new.exists() and not dst.exists()
    return old


def test_a_swap_killed_half_way_keeps_the_old_copy_from_the_clean_up(tmp_path: Path, dead_pid: int) -> None:
    dst = tmp_path / "map.tif"
    dst.write_text("old")
    new = tmp_path / f".map.tif.{host_tag()}.{dead_pid}.abcd1234.part"
    new.write_text("new, unfinished")
    old = _killed_between_renames(dst, new, dead_pid)
    assert remove_stale_parts(tmp_path) == [new]  # another writer's clean-up: the old copy stays
    assert old.read_text() == "old" and ASIDE in old.name
    assert restore_set_aside(dst) == dst
    assert dst.read_text() == "old" and not old.exists()


def test_the_next_swap_restores_or_clears_what_a_killed_swap_set_aside(tmp_path: Path, dead_pid: int) -> None:
    dst, new = tmp_path / "store", tmp_path / "new"
    (dst / "a").mkdir(parents=True)
    new.write_text("n")
    old = _killed_between_renames(dst, new, dead_pid)
    replacement = part_path(dst)
    replacement.write_text("newest")
    swap_into_place(replacement, dst)  # restores the old copy first, then swaps it out whole
    assert dst.read_text() == "newest" and not old.exists()
    assert [p.name for p in tmp_path.iterdir() if ASIDE in p.name] == []
    live = aside_path(dst)  # a live writer's copy (this process) is not touched
    live.write_text("mid-swap")
    assert restore_set_aside(dst) is None and live.exists()


def test_open_cube_restores_a_cube_a_killed_overwrite_set_aside(tmp_path: Path, dead_pid: int) -> None:
    import numpy as np
    from affine import Affine

    from landprompt.embedder.cube import open_cube, write_cube
    from landprompt.geo import Grid

    grid = Grid("EPSG:32632", Affine(10.0, 0, 680_000.0, 0, -10.0, 4_800_000.0), (8, 8))
    emb = np.random.default_rng(0).normal(size=(8, 8, 4)).astype(np.float32)
    path = write_cube(tmp_path / "c.zarr", emb, grid, chunk=8)
    _killed_between_renames(path, tmp_path, dead_pid)
    np.testing.assert_allclose(open_cube(path)["embedding"].to_numpy(), emb, atol=1e-2)


def test_a_copy_another_process_restores_meanwhile_is_no_crash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, dead_pid: int
) -> None:
    """Two processes open a cube a killed overwrite set aside: one renames it back while the other lists."""
    dst = tmp_path / "store"
    older, newer = (aside_path(dst) for _ in range(2))
    older, newer = (p.with_name(p.name.replace(f".{os.getpid()}.", f".{dead_pid}.")) for p in (older, newer))
    older.write_text("older")
    newer.write_text("newer")

    def other_process_restores(pid: int) -> bool:
        if newer.exists():
            os.rename(newer, dst)
        return False

    monkeypatch.setattr(files, "_pid_alive", other_process_restores)
    assert restore_set_aside(dst) is None  # restored by the other one; the older copy is a left-over
    assert dst.read_text() == "newer" and not older.exists()


def test_parts_named_before_hosts_were_are_cleaned_too(tmp_path: Path, dead_pid: int) -> None:
    """``.NAME.PID.RANDOM.part`` names of the previous release: their last NAME piece is no host."""
    (tmp_path / "map.tif").write_text("swapped")
    old_file = tmp_path / f".a.txt.{dead_pid}.ab_d1234.part.txt"  # atomic_path's mkstemp name
    old_store = tmp_path / f".cube.zarr.{dead_pid}.0123abcd.part"  # part_path of a cube
    old_aside = tmp_path / f".map.tif.{dead_pid}.0123abcd.part"  # the old swap's set-aside copy
    live = tmp_path / f".b.txt.{os.getpid()}.abcd1234.part.txt"
    other_host_file = tmp_path / f".a.txt.worker-7.{dead_pid}.abcd1234.part.txt"
    other_host_store = tmp_path / f".map.tif.worker-7.{dead_pid}.0123abcd.part"
    for path in (old_file, old_aside, live, other_host_file, other_host_store):
        path.write_text("x")
    (old_store / "c").mkdir(parents=True)
    assert sorted(remove_stale_parts(tmp_path)) == sorted([old_file, old_store, old_aside])
    assert live.exists() and other_host_file.exists() and other_host_store.exists()
