"""Top-k through a cached query session: the places table, the staleness check, the bounded prompt cache
and a copied cube's index that verifies once."""

import os
import shutil
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from affine import Affine

import landprompt
from landprompt.embedder.basis import fit_pca
from landprompt.embedder.cube import open_cube, write_cube
from landprompt.geo import Grid
from landprompt.index import search
from landprompt.index.build import IndexInfo, build_index, default_index_path, sidecar_path
from landprompt.query import prompt_cache
from landprompt.query import session as session_module
from landprompt.query import text as text_module
from landprompt.query.session import QuerySession, open_session

GRID = Grid(3035, Affine(10.0, 0.0, 4_000_000.0, 0.0, -10.0, 3_000_000.0), (40, 50))


@pytest.fixture
def indexed(tmp_path, unit):
    """A version-2 cube (40 x 50, d = 32, rank 8) with its default index, and its embeddings."""
    rng = np.random.default_rng(0)
    emb = unit(rng.normal(size=(*GRID.shape, 32)))
    cube = write_cube(tmp_path / "c.zarr", emb, GRID, chunk=16, basis=fit_pca(emb.reshape(-1, 32), 8))
    build_index(cube, progress=False)
    return SimpleNamespace(cube=cube, emb=emb)


def test_index_top_k_matches_an_exact_scan_with_lon_lat_and_crs(indexed):
    query = indexed.emb[11, 23]
    places = landprompt.top_k(indexed.cube, query, k=5)
    scan = landprompt.top_k(open_cube(indexed.cube), query, k=5, index=None)
    assert list(places.columns) == ["rank", "row", "col", "lon", "lat", "x", "y", "score"]
    assert list(places["rank"]) == [1, 2, 3, 4, 5]
    assert (places.loc[0, "row"], places.loc[0, "col"]) == (11, 23)
    assert places[["row", "col"]].equals(scan[["row", "col"]])
    lon, lat = GRID.rowcol_to_lonlat(places["row"].to_numpy(), places["col"].to_numpy())
    np.testing.assert_allclose(places["lon"], lon, atol=1e-9)
    np.testing.assert_allclose(places["lat"], lat, atol=1e-9)
    assert places.attrs["crs"] == "EPSG:3035" and places["score"].is_monotonic_decreasing
    assert places.index.tolist() == [0, 1, 2, 3, 4]


def test_the_cached_session_is_reopened_when_the_cube_or_its_index_changes(indexed):
    first = open_session(indexed.cube)
    landprompt.top_k(indexed.cube, indexed.emb[0, 0], k=3)
    assert open_session(indexed.cube) is first and not first.stale
    build_index(indexed.cube, progress=False, factory="Flat")  # the index replaced
    assert first.stale
    second = open_session(indexed.cube)
    assert second is not first and second.index is not None and second.index.info.factory == "Flat"
    os.utime(indexed.cube / "zarr.json", ns=(0, 10**18))  # the cube's metadata rewritten
    assert second.stale and open_session(indexed.cube) is not second


def test_the_prompt_cache_keeps_the_most_recently_used(indexed, monkeypatch, unit):
    encoded: list[str] = []

    class Clip:
        name = id = "fake"
        embed_dim = 32

        def encode_prompts(self, names, templates):
            encoded.extend(names)
            return np.stack([unit(np.random.default_rng(len(n)).normal(size=32)) for n in names])

    monkeypatch.setattr(text_module, "PROMPT_CACHE_SIZE", 3)
    session = QuerySession(indexed.cube, clip=Clip())  # type: ignore[arg-type]
    first = session.encode(["a", "bb", "a"])
    assert first.shape == (3, 32) and np.array_equal(first[0], first[2]) and encoded == ["a", "bb"]
    session.encode(["ccc", "dddd"])  # four prompts: "a", the least recently used, is dropped
    assert [name for name, _ in session.text._prompts] == ["bb", "ccc", "dddd"]
    session.encode("bb")  # a hit: no encoding, "bb" becomes the most recently used
    session.encode("a")  # encoded again; "ccc" dropped
    assert encoded == ["a", "bb", "ccc", "dddd", "a"]
    assert [name for name, _ in session.text._prompts] == ["dddd", "bb", "a"]
    np.testing.assert_array_equal(session.encode("a")[0], first[0])


def _copy(cube, to):
    """Copy a cube and its index the way ``cp -r`` does: same bytes, new modification times."""
    shutil.copytree(cube, to, copy_function=shutil.copyfile)
    index = default_index_path(cube)
    for file in (index, sidecar_path(index)):
        shutil.copyfile(file, to.parent / (to.stem + file.name.removeprefix(cube.stem)))
    return to


def test_a_copied_cube_is_verified_once_then_its_fingerprint_is_recorded(indexed, tmp_path, monkeypatch):
    copy = _copy(indexed.cube, tmp_path / "copy" / "c.zarr")
    verified = []
    monkeypatch.setattr(search, "verify", lambda cube, progress: verified.append(cube) or _ok())
    index = search.CubeIndex.for_cube(copy)
    assert index is not None and verified == [copy]
    recorded = IndexInfo.load(sidecar_path(default_index_path(copy)))
    assert recorded.cube == index.info.cube and recorded.cube_files != index.info.cube_files
    monkeypatch.setattr(
        search, "_VERIFIED", set(), raising=False
    )  # as a new process: the sidecar makes it cheap
    search.CubeIndex.for_cube(copy)
    assert verified == [copy]  # the second open is cheap: no verify
    assert IndexInfo.load(sidecar_path(default_index_path(indexed.cube))).cube == str(indexed.cube.resolve())
    session = open_session(copy)  # a session that loads the index (and records) keeps itself fresh
    places = session.top_k(indexed.emb[3, 4], k=1)
    assert (places.loc[0, "row"], places.loc[0, "col"]) == (3, 4) and not session.stale


def test_a_copied_cube_whose_sidecar_cannot_be_written_is_verified_once_a_process(
    indexed, tmp_path, monkeypatch
):
    copy = _copy(indexed.cube, tmp_path / "copy" / "c.zarr")
    sidecar = sidecar_path(default_index_path(copy))
    before = sidecar.read_bytes()

    def read_only(self, path, expect=None):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(IndexInfo, "save", read_only)
    monkeypatch.setattr(search, "_VERIFIED", set(), raising=False)
    verified = []
    monkeypatch.setattr(search, "verify", lambda cube, progress: verified.append(cube) or _ok())
    for _ in range(3):
        assert search.CubeIndex.for_cube(copy) is not None
    assert verified == [copy] and sidecar.read_bytes() == before
    (copy / "zarr.json").touch()  # a file touched since: its digests are checked again
    assert search.CubeIndex.for_cube(copy) is not None and verified == [copy, copy]


def test_opening_an_index_against_a_copy_of_its_cube_leaves_its_sidecar(indexed, tmp_path, monkeypatch):
    copy = tmp_path / "elsewhere" / "c.zarr"
    shutil.copytree(indexed.cube, copy, copy_function=shutil.copyfile)  # the cube alone, new mtimes
    sidecar = sidecar_path(default_index_path(indexed.cube))
    before = sidecar.read_bytes()
    monkeypatch.setattr(search, "_VERIFIED", set(), raising=False)
    index = search.CubeIndex.open(default_index_path(indexed.cube), copy)
    assert index.info.cube == str(indexed.cube.resolve())
    assert sidecar.read_bytes() == before  # still names the original cube, with its fingerprint
    assert search.CubeIndex.open(default_index_path(indexed.cube)).info == IndexInfo.load(sidecar)


def test_recording_a_fingerprint_loses_to_a_build_that_lands_meanwhile(indexed, tmp_path, monkeypatch):
    copy = _copy(indexed.cube, tmp_path / "copy" / "c.zarr")
    sidecar = sidecar_path(default_index_path(copy))
    rebuilt = replace(IndexInfo.load(sidecar), factory="IVF4,Flat", nprobe=2)
    original_parse = IndexInfo.from_bytes.__func__
    loads = []

    def load_then_a_build_lands(cls, raw, path):
        info = original_parse(cls, raw, path)
        loads.append(path)
        if len(loads) == 2:  # the record's read: a concurrent build writes its sidecar right after
            rebuilt.save(path)
        return info

    monkeypatch.setattr(IndexInfo, "from_bytes", classmethod(load_then_a_build_lands))
    monkeypatch.setattr(search, "_VERIFIED", set(), raising=False)
    monkeypatch.setattr(search, "verify", lambda cube, progress: _ok())
    assert search.CubeIndex.for_cube(copy) is not None
    assert len(loads) == 2
    monkeypatch.undo()
    assert IndexInfo.load(sidecar) == rebuilt  # the build's sidecar, not the old one with a new fingerprint


def test_recording_a_fingerprint_reads_the_sidecar_once(indexed, tmp_path, monkeypatch):
    copy = _copy(indexed.cube, tmp_path / "copy" / "c.zarr")
    sidecar = sidecar_path(default_index_path(copy))
    before = sidecar.read_bytes()
    reads = []
    for method in ("read_bytes", "read_text"):
        original = getattr(Path, method)

        def counted(self, *args, _original=original, **kwargs):
            if self == sidecar:
                reads.append(self)
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(Path, method, counted)
    monkeypatch.setattr(search, "_VERIFIED", set(), raising=False)
    monkeypatch.setattr(search, "verify", lambda cube, progress: _ok())
    assert search.CubeIndex.for_cube(copy) is not None
    monkeypatch.undo()
    assert len(reads) == 3  # to open the index, to record the fingerprint, to compare before the swap
    assert sidecar.read_bytes() != before  # recorded


def test_a_copied_cube_that_fails_verify_is_refused_and_not_recorded(indexed, tmp_path):
    copy = _copy(indexed.cube, tmp_path / "copy" / "c.zarr")
    chunks = copy / "code" / "c"
    (chunks / "0/1/0").write_bytes((chunks / "0/0/0").read_bytes())  # valid bytes, the wrong chunk
    sidecar = sidecar_path(default_index_path(copy))
    before = sidecar.read_bytes()
    with pytest.raises(landprompt.errors.BadInputError, match="is stale"):
        search.CubeIndex.for_cube(copy)
    assert sidecar.read_bytes() == before


def _ok():
    return SimpleNamespace(ok=True)


@pytest.fixture
def tiny_cube(tmp_path, monkeypatch, unit):
    """A cube naming the tiny CLIP model (random weights), and an empty prompt cache folder."""
    from landprompt.embedder.clip import TINY_MODEL

    monkeypatch.setenv(prompt_cache.CACHE_ENV, str(tmp_path / "cache"))
    emb = unit(np.random.default_rng(0).normal(size=(*GRID.shape, 32)))
    return write_cube(tmp_path / "t.zarr", emb, GRID, chunk=16, attrs={"clip_model": TINY_MODEL})


def _cached(root):
    return sorted(root.rglob("*.npy"))


def test_a_prompt_asked_again_loads_no_text_tower(tiny_cube, tmp_path, monkeypatch, tiny_clip):
    first = QuerySession(tiny_cube).encode(["olive groves", "vineyards"])
    assert len(_cached(tmp_path / "cache")) == 2
    monkeypatch.setattr(text_module, "clip_for_cube", _no_text_tower)
    again = QuerySession(tiny_cube)  # a new session (or process): the vectors come from disk
    np.testing.assert_array_equal(again.encode(["vineyards", "olive groves"]), first[::-1])
    assert again.text.loaded is None
    with pytest.raises(AssertionError, match="text tower loaded"):  # another style: other templates
        again.encode("olive groves", style="satellite")
    given = QuerySession(tiny_cube, clip=tiny_clip)  # a caller's model: encoded, never stored
    given.encode("hedgerows")
    assert len(_cached(tmp_path / "cache")) == 2


def test_a_damaged_or_unwritable_prompt_cache_is_skipped(tiny_cube, tmp_path, monkeypatch):
    expected = QuerySession(tiny_cube).encode("olive groves")
    (stored,) = _cached(tmp_path / "cache")
    stored.write_bytes(b"not a numpy file")
    np.testing.assert_array_equal(QuerySession(tiny_cube).encode("olive groves"), expected)
    assert np.array_equal(np.load(stored), expected[0])  # re-encoded and written again
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    monkeypatch.setenv(prompt_cache.CACHE_ENV, str(blocked))  # the cache folder cannot be made
    np.testing.assert_array_equal(QuerySession(tiny_cube).encode("olive groves"), expected)


def test_the_cache_key_follows_the_weights_file(tmp_path):
    weights = tmp_path / "w.pt"
    weights.write_bytes(b"weights")
    attrs = {"clip_model": "ViT-B-32", "clip_pretrained": str(weights)}
    before = prompt_cache.model_identity(attrs)
    os.utime(weights, ns=(0, 10**18))
    assert prompt_cache.model_identity(attrs) != before
    assert prompt_cache.model_identity({"clip_model": "hf-hub:org/model"}) is None
    assert prompt_cache.model_identity({}) is None
    tag = prompt_cache.model_identity({"clip_model": "ViT-B-32", "clip_pretrained": "laion2b_s34b_b79k"})
    assert tag != prompt_cache.model_identity({"clip_model": "ViT-B-32"})


@pytest.mark.slow
def test_the_cli_answers_a_cached_prompt_without_importing_torch(tiny_cube, tmp_path):
    import subprocess
    import sys

    build_index(tiny_cube, progress=False)
    script = (
        "import sys\nfrom landprompt.cli import app\n"
        "try:\n    app(sys.argv[1:])\nexcept SystemExit as exit:\n    assert not exit.code, exit.code\n"
        "print('torch imported:', 'torch' in sys.modules)\n"
    )
    command = [sys.executable, "-c", script, "query", "topk", str(tiny_cube), "olive groves", "-k", "3"]
    env = {**os.environ, "PYTHONPATH": str(Path(landprompt.__file__).parents[1])}
    outputs = [subprocess.run(command, capture_output=True, text=True, env=env, check=True) for _ in range(2)]
    assert "torch imported: True" in outputs[0].stdout  # the first call encodes the prompt
    assert "torch imported: False" in outputs[1].stdout  # the second reads it from the cache
    assert outputs[0].stdout.split("torch")[0] == outputs[1].stdout.split("torch")[0]  # the same places


def _no_text_tower(*args, **kwargs):
    raise AssertionError("text tower loaded")


def test_with_every_prompt_cached_a_map_loads_no_clip(tiny_cube, monkeypatch):
    """Maps, scorers and calibrated queries take the prompts, logit scale and model id from the disk cache."""
    from landprompt.calibration import Calibration, calibration_path, save_calibration
    from landprompt.embedder import clip as clip_module
    from landprompt.query.probability import probability_map
    from landprompt.query.scorer import ConceptScorer

    versus = ["water", "towns"]
    first = QuerySession(tiny_cube)
    expected = first.probability_map("olive groves", versus)
    scorer = first.scorer("olive groves", versus)
    save_calibration(
        Calibration("platt", {"a": 2.0, "b": 0.0}, scorer.query), calibration_path(tiny_cube, "olive groves")
    )
    monkeypatch.setattr(clip_module, "load_clip", _no_text_tower)  # a new process: nothing loaded
    monkeypatch.setattr(session_module, "_SESSIONS", type(session_module._SESSIONS)())
    again = QuerySession(tiny_cube)
    np.testing.assert_array_equal(again.probability_map("olive groves", versus), expected)
    calibrated = again.scorer("olive groves", versus, calibrated=True)
    assert calibrated.query == scorer.query and calibrated.calibration is not None
    np.testing.assert_array_equal(probability_map(tiny_cube, "olive groves", versus).values, expected.values)
    from_text = ConceptScorer.from_text("olive groves", versus, cube=open_cube(tiny_cube))
    assert from_text.query == scorer.query and np.array_equal(from_text.classes, scorer.classes)
    assert again.text.loaded is None
    with pytest.raises(AssertionError, match="text tower loaded"):  # a prompt not cached loads it
        again.probability_map("hedgerows", versus)


def test_open_session_keeps_the_most_recently_used_and_closes_the_others(tmp_path, monkeypatch, unit):
    emb = unit(np.random.default_rng(1).normal(size=(*GRID.shape, 8)))
    cubes = [write_cube(tmp_path / f"s{i}.zarr", emb, GRID, chunk=16) for i in range(3)]
    monkeypatch.setattr(session_module, "_SESSIONS", type(session_module._SESSIONS)())
    monkeypatch.setattr(session_module, "MAX_SESSIONS", 2)
    closed: list[Path] = []
    close = QuerySession.close
    monkeypatch.setattr(QuerySession, "close", lambda self: closed.append(self.path) or close(self))
    first, second = open_session(cubes[0]), open_session(cubes[1])
    assert open_session(cubes[0]) is first  # a hit: the first becomes the most recently used
    open_session(cubes[2])  # three sessions: the second, least recently used, is closed
    assert list(session_module._SESSIONS) == [cubes[0].resolve(), cubes[2].resolve()]
    assert closed == [cubes[1].resolve()]
    window = second.probability_window(slice(0, 4), slice(0, 4), emb[0, 0], emb[5, 5], 10.0)
    assert window.shape == (4, 4, 1) and np.isfinite(window).all()  # a holder can go on after close
    assert open_session(cubes[1]) is not second
