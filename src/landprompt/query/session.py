"""A query session: a cube (or a folder of shards) kept open with its index, text tower and encoded prompts.

``open_session(path)`` returns the cached session of a cube path (a :class:`QuerySession`) or of a
folder of shards (a :class:`ShardedSession`: a ``QuerySession`` a shard, sharing one text tower),
reopened when a cube or its default index changes on disk (four ``stat`` calls a cube and query: size,
modification time and inode of the cube's root metadata, the index file and its sidecar), so repeated
queries through the module-level functions (:func:`~landprompt.query.topk.top_k`,
:func:`~landprompt.query.probability.probability_map`) pay for opening, hashing and loading once. At
most :data:`MAX_SESSIONS` sessions are kept (least recently used closed first), so a process that
queries many cubes holds the indexes of the last few only.

Concept queries are assembled by the session's :class:`~landprompt.query.text.TextTower`: prompts
encoded once (in memory and on disk), the CLIP text tower loaded only for a prompt in neither cache.
The analytics (:meth:`QuerySession.change`, :meth:`QuerySession.aggregate`) score with the session's
scorer, so their prompts are encoded once too; validation at points lives above the query stage
(:func:`landprompt.evaluate.points.evaluate_points` takes a session as its cube).
"""

from __future__ import annotations

import os
import threading
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, cast

import numpy as np
import pandas as pd
import xarray as xr

from landprompt import checks
from landprompt.embedder.cube import cube_basis, cube_grid, open_cube
from landprompt.embedder.recorded import recorded_clip
from landprompt.errors import BadInputError
from landprompt.geo import BBox, Grid, mosaic, mosaic_grid, parse_bbox
from landprompt.index.build import default_index_path, sidecar_path
from landprompt.query.classes import DEFAULT_STYLE, PixelCounter, ProgressFn, unit_classes
from landprompt.query.search import PlaceTable, merge_places, query_embedding, resolve_index, search_top_k
from landprompt.query.text import TextTower

if TYPE_CHECKING:
    from landprompt.calibration import Calibration
    from landprompt.embedder.clip import ClipModel
    from landprompt.index.search import CubeIndex
    from landprompt.query.aggregate import Units
    from landprompt.query.scorer import ConceptScorer

#: Sessions :func:`open_session` keeps open (least recently used closed first). Each holds its cube's
#: default index in memory (for a 1-million-pixel IVF-PQ index some tens of MiB) and its encoded prompts.
MAX_SESSIONS = 4
#: Shards of a :class:`ShardedSession` whose index stays loaded (most recently searched first): a folder of
#: many shards does not keep every index in memory (each tens of MB at 10^6 cells).
MAX_SHARD_INDEXES = 16

_UNSET = object()
_SESSIONS: OrderedDict[Path | tuple[Path, ...], Session] = OrderedDict()
_LOCK = threading.Lock()


class _Session(ABC):
    """What both kinds of session share: prompts, scorers and one concept's map, through the text tower."""

    path: Path | None
    text: TextTower

    def encode(self, prompts: str | Sequence[str], style: str = DEFAULT_STYLE) -> np.ndarray:
        """Prompt-ensemble embeddings (n, d) of prompts, each encoded once (see :meth:`.TextTower.encode`).

        With the cube's own CLIP model, encoded prompts are also kept on disk
        (:mod:`~landprompt.query.prompt_cache`): a prompt asked again, in any process, loads no text tower.
        """
        return self.text.encode(prompts, style)

    def scorer(
        self,
        prompt: str,
        versus: Sequence[str] | None = None,
        style: str = DEFAULT_STYLE,
        calibrated: Calibration | str | os.PathLike[str] | bool | None = None,
        logit_scale: float | None = None,
    ) -> ConceptScorer:
        """The scorer of a concept in plain words against its background, calibrated if asked.

        Args:
            prompt: The concept.
            versus: Background prompts (default: the shipped vocabulary without the concept).
            style: Prompt template style.
            calibrated: A calibration, its file, ``True`` for the one fitted for this cube (or folder of
                shards) and concept (``<path>.calibration/<slug>.json``), or ``None``/``False``; checked
                against the query.
            logit_scale: Softmax temperature (default: the CLIP model's).
        """
        from landprompt.calibration import resolve_calibration
        from landprompt.query.scorer import ConceptScorer

        if calibrated is True and self.path is None:
            raise BadInputError(
                "a session without a path (a list of shards, a cube in memory) has no calibration of its "
                "own: give the calibration file"
            )
        calibration = resolve_calibration(calibrated, self.path or "", prompt.strip())
        return ConceptScorer.from_tower(self.text, prompt, versus, style, logit_scale, calibration)

    @abstractmethod
    def probability_maps(
        self,
        concepts: Sequence[str] | np.ndarray,
        versus: Sequence[str] | np.ndarray | None = None,
        bbox: BBox | str | Sequence[float] | None = None,
        style: str = DEFAULT_STYLE,
        logit_scale: float | None = None,
        progress: ProgressFn | None = None,
    ) -> xr.DataArray:
        """Probabilities of many concepts in one pass: DataArray [concept, y, x].

        ``progress`` is called with ``(pixels done, pixels in all)`` after each chunk.
        """

    @property
    @abstractmethod
    def datasets(self) -> list[xr.Dataset]:
        """The open cube(s): one cube's, or the shards' in their order."""

    def aggregate(
        self,
        concept: str,
        units: str | os.PathLike[str] | Units,
        id_field: str | None = None,
        threshold: float = 0.5,
        versus: Sequence[str] | None = None,
        style: str = DEFAULT_STYLE,
        logit_scale: float | None = None,
        calibration: Calibration | str | os.PathLike[str] | bool | None = None,
        progress: ProgressFn | None = None,
    ) -> pd.DataFrame:
        """Indicators of a concept per polygon (:func:`~landprompt.query.aggregate.aggregate`).

        Scored with the session's scorer (prompts encoded once); arguments as the function's. Over a
        folder of shards (:func:`~landprompt.query.aggregate.aggregate_shards`) polygons may straddle
        shards: only the chunks some polygon's bounds reach are read, and where shards overlap a pixel
        counts once (the later shard's valid pixel, as in :meth:`probability_maps`); the shards must share
        one grid CRS, resolution and pixel lattice. ``calibration=True`` applies each cube's (shard's) own
        calibration; a calibration or its file applies to all.
        """
        from landprompt.query.aggregate import aggregate_shards

        scorer = self.scorer(concept, versus, style, None, logit_scale)
        return aggregate_shards(self.datasets, scorer, units, id_field, threshold, calibration, progress)

    def probability_map(
        self,
        concept: str | np.ndarray,
        versus: Sequence[str] | np.ndarray | None = None,
        bbox: BBox | str | Sequence[float] | None = None,
        style: str = DEFAULT_STYLE,
        logit_scale: float | None = None,
        progress: ProgressFn | None = None,
    ) -> xr.DataArray:
        """Probability of one concept at every pixel, as :func:`.probability.probability_map` gives it.

        A concept embedding is named ``embedding`` in the ``concept`` attr (the first row of several).
        """
        if isinstance(concept, str):
            maps = self.probability_maps([concept], versus, bbox, style, logit_scale, progress)
            name = str(maps.concept.values[0])
        else:
            vectors = np.atleast_2d(np.asarray(concept, np.float32))[:1]
            maps = self.probability_maps(vectors, versus, bbox, style, logit_scale, progress)
            name = "embedding"
        da = maps.isel(concept=0, drop=True).rename("probability")
        da.attrs = {"concept": name, **da.attrs}
        if isinstance(concept, str) and not isinstance(versus, np.ndarray):  # a query a calibration can match
            da.attrs.update(self.text.settings(concept, versus, style, da.attrs["logit_scale"]).to_attrs())
        return da


class DatasetSession(_Session):
    """An open cube's maps and scorers through its text tower: a cube Dataset, perhaps only in memory.

    No path, so no index, staleness or calibration of its own: :class:`QuerySession` adds those for a
    cube path; :func:`.probability.probability_map` maps a Dataset through this.

    Args:
        ds: An embedding cube (:func:`~landprompt.embedder.cube.open_cube`, or built in memory).
        clip: CLIP model for text prompts (default: the one named in the cube's attrs, loaded only for
            a prompt not cached).
        text: A text tower to share; default: the cube's own.
    """

    path: Path | None = None

    def __init__(self, ds: xr.Dataset, clip: ClipModel | None = None, text: TextTower | None = None) -> None:
        self.ds = ds
        self.grid = cube_grid(ds)
        self.text = text if text is not None else TextTower(ds, clip)
        self.dim = int(ds.sizes["d"])

    def probability_maps(
        self,
        concepts: Sequence[str] | np.ndarray,
        versus: Sequence[str] | np.ndarray | None = None,
        bbox: BBox | str | Sequence[float] | None = None,
        style: str = DEFAULT_STYLE,
        logit_scale: float | None = None,
        progress: ProgressFn | None = None,
    ) -> xr.DataArray:
        """Probabilities of many concepts in one pass over the cube: DataArray [concept, y, x].

        Each concept competes with the same background (``versus``, default the shipped vocabulary
        without the concepts themselves). ``progress`` is called with ``(pixels done, pixels in all)``
        after each chunk.
        """
        rows, cols = self._window(bbox)
        names, vectors, background, scale = self.text.classes(concepts, versus, style, logit_scale)
        values = self.probability_window(rows, cols, vectors, background, scale, progress=progress)
        attrs = {"logit_scale": scale, "n_background": len(background), "style": style}
        return map_stack(values, names, self.grid.window(rows, cols), attrs)

    @property
    def datasets(self) -> list[xr.Dataset]:
        """The open cube, as a list (a :class:`ShardedSession`'s shards' cubes, for either kind)."""
        return [self.ds]

    def map_grid(self, bbox: BBox | str | Sequence[float] | None = None) -> Grid:
        """The grid of the map :meth:`probability_maps` makes over ``bbox`` (sized before any scoring)."""
        return self.grid.window(*self._window(bbox))

    def _window(self, bbox: BBox | str | Sequence[float] | None) -> tuple[slice, slice]:
        """The pixel window (rows, columns) of a lon/lat bbox; the whole cube without one."""
        if bbox is None:
            return slice(0, self.grid.rows), slice(0, self.grid.cols)
        return self.grid.slices_of_bbox(bbox)

    def probability_window(
        self,
        rows: slice,
        cols: slice,
        concepts: np.ndarray,
        background: np.ndarray,
        logit_scale: float,
        progress: ProgressFn | PixelCounter | None = None,
        out: np.ndarray | None = None,
    ) -> np.ndarray:
        """Probabilities (h, w, m) of concepts (m, d) against a background (k, d) over a pixel window.

        The building block of maps and tiles: no text tower, no georeferencing; NaN where not valid.

        Args:
            rows: The window's rows in the cube.
            cols: Its columns.
            concepts: Concept vectors (m, d).
            background: Background vectors (k, d).
            logit_scale: Softmax temperature.
            progress: Called with ``(pixels done, pixels in all)`` after each chunk; or a
                :class:`~landprompt.query.classes.PixelCounter` the chunks count into, shared by several
                windows (a mosaic's).
            out: float32 (h, w, m) to write every pixel into (the window's place in a mosaic, say) and
                return; default: a new array.

        Raises:
            BadInputError: If the concepts and the background differ in width.
        """
        from landprompt.query.scoring import iter_probabilities

        concepts, background = unit_classes(concepts, background)
        h, w = rows.stop - rows.start, cols.stop - cols.start
        out = np.empty((h, w, len(concepts)), dtype=np.float32) if out is None else out
        tick = progress if isinstance(progress, PixelCounter) else PixelCounter(progress, h * w)
        for window, _ in iter_probabilities(self.ds, concepts, background, logit_scale, rows, cols, out=out):
            tick(window.shape[0] * window.shape[1])  # every chunk writes its part of out
        return out


class QuerySession(DatasetSession):
    """One cube, opened once, with its default index and text tower (:class:`.TextTower`).

    Args:
        cube: Embedding cube path.
        clip: CLIP model for text prompts (default: the one named in the cube's attrs, loaded only for
            a prompt not cached).
        text: A text tower to share (the shards of a :class:`ShardedSession` share one); default: the
            cube's own.
    """

    path: Path

    def __init__(
        self, cube: str | Path, clip: ClipModel | None = None, text: TextTower | None = None
    ) -> None:
        self.path = Path(cube).resolve()
        index = default_index_path(self.path)
        self._watched = tuple(
            os.fspath(p) for p in (self.path / "zarr.json", self.path / ".zattrs", index, sidecar_path(index))
        )
        self.stamp = _stamp(self._watched)
        super().__init__(open_cube(self.path), clip, text)
        self.basis = cube_basis(self.ds)
        self._index: object = _UNSET
        self._places: PlaceTable | None = None

    # --- loaded pieces -------------------------------------------------------------------------
    @property
    def clip(self) -> ClipModel:
        """The CLIP text tower, loaded on first use."""
        return self.text.clip

    @property
    def index(self) -> CubeIndex | None:
        """The cube's fresh default index (checked against the cube once), or None without one."""
        if self._index is _UNSET:
            from landprompt.index.search import CubeIndex

            self._index = CubeIndex.for_cube(self.path)
            index_file, sidecar = self._watched[2:]
            if _stamp([index_file]) == self.stamp[2:3]:  # the same index file: a sidecar changed since
                self.stamp = (*self.stamp[:3], *_stamp([sidecar]))  # is its fingerprint record, not stale
        return self._index  # type: ignore[return-value]

    @property
    def places(self) -> PlaceTable:
        """The cube grid's places-table builder (its CRS work done once)."""
        if self._places is None:
            self._places = PlaceTable(self.grid)
        return self._places

    @property
    def stale(self) -> bool:
        """Whether the cube or its index changed on disk since the session opened."""
        return _stamp(self._watched) != self.stamp

    def close(self) -> None:
        """Release what the session holds: its index, places table and the cube's open arrays.

        A caller still holding the session can go on: the index is loaded again when asked for.
        """
        self.release_index()
        self.ds.encoding.pop("landprompt_arrays", None)
        self.ds.close()

    def release_index(self) -> None:
        """Drop the loaded index and places table (loaded again when next searched)."""
        self._index, self._places = _UNSET, None

    # --- queries -------------------------------------------------------------------------------
    def top_k(
        self,
        query: str | np.ndarray,
        k: int = 20,
        min_distance_m: float = 0.0,
        bbox: BBox | str | Sequence[float] | None = None,
        style: str = DEFAULT_STYLE,
        *,
        index: str | Path | CubeIndex | None = "auto",
        progress: ProgressFn | None = None,
    ) -> pd.DataFrame:
        """The ``k`` best distinct places (see :func:`landprompt.query.topk.top_k`), through the index.

        ``index="auto"`` is the session's default index (an exact scan without one, or with a ``bbox``).
        """
        vector = self.encode(query, style)[0] if isinstance(query, str) else query_embedding(self.ds, query)
        searcher = None
        if bbox is None:
            searcher = self.index if index == "auto" else resolve_index(self.path, index)
        return search_top_k(
            self.ds, self.grid, self.places, vector, k, min_distance_m, bbox, searcher, progress
        )

    # --- analytics -------------------------------------------------------------------------------
    def change(
        self,
        later: str | os.PathLike[str] | xr.Dataset | QuerySession,
        concept: str,
        versus: Sequence[str] | None = None,
        threshold: float = 0.2,
        bbox: BBox | str | Sequence[float] | None = None,
        style: str = DEFAULT_STYLE,
        logit_scale: float | None = None,
        calibration: Calibration | str | os.PathLike[str] | bool | None = None,
        progress: ProgressFn | None = None,
    ) -> xr.Dataset:
        """The change in probability of a concept from this cube (earlier) to ``later``.

        :func:`~landprompt.query.change.change_map` with the session's scorer (prompts encoded once).

        Args:
            later: The later cube (path, Dataset or session), on this cube's grid and CLIP space.
            concept: The concept in plain words.
            versus: Background prompts (default: the shipped land-cover vocabulary).
            threshold: Change in probability above which a pixel is a gain (below minus it, a loss).
            bbox: Optional lon/lat window.
            style: Prompt template style.
            logit_scale: Softmax temperature; default: the CLIP model's.
            calibration: ``True`` applies each cube's own calibration of the concept; a calibration or
                its JSON file applies to both.
            progress: Called with ``(pixels done, pixels in all)`` after each chunk.

        Raises:
            BadInputError: If ``later`` is a folder of shards (:func:`check_pairable`).
        """
        from landprompt.query.change import change_map

        check_pairable(self, later)
        if isinstance(later, (str, os.PathLike)):  # opened once per process (one cube: checked above)
            later = cast(QuerySession, open_session(later))
        cube_b = later.ds if isinstance(later, QuerySession) else later
        scorer = self.scorer(concept, versus, style, None, logit_scale)
        return change_map(
            self.ds,
            cube_b,
            scorer,
            threshold=threshold,
            bbox=bbox,
            calibration=calibration,
            progress=progress,
        )


class ShardedSession(_Session):
    """The shards of one region (a folder of cubes, e.g. Europe's tiles), each a :class:`QuerySession`.

    The shards share one :class:`.TextTower` (each prompt encoded once for all of them), so they must
    share one CLIP space: the same CLIP model, embedding width and recorded logit scale. Each keeps its
    own index (loaded when first searched) and staleness stamp.

    Args:
        cubes: A folder of shards (``*.zarr`` in it, see :func:`cube_paths`) or a list of cube paths.
        clip: CLIP model for text prompts (default: the one the shards name).

    Raises:
        BadInputError: Without shards, or with shards of different CLIP spaces.
    """

    def __init__(
        self,
        cubes: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
        clip: ClipModel | None = None,
        reuse: Sequence[QuerySession] = (),
    ) -> None:
        if isinstance(cubes, (str, os.PathLike)):
            self.path: Path | None = Path(cubes).resolve()
            self.cubes = cube_paths(cubes)
            self._listing = cube_paths(self.path)  # the folder's shards, to notice one added or removed
        else:
            self.path, self.cubes = None, [Path(c) for c in cubes]
        if not self.cubes:
            raise BadInputError("no cubes to search: give at least one embedding cube")
        kept = {shard.path: shard for shard in reuse}  # open shards of this region's last session
        tower = reuse[0].text if reuse else None
        first = kept.get(Path(self.cubes[0]).resolve()) or QuerySession(self.cubes[0], clip, tower)
        self.text = first.text
        self._searched: OrderedDict[int, QuerySession] = OrderedDict()  # shards by last search, oldest first
        self.shards = [first]
        try:
            for path in self.cubes[1:]:
                self.shards.append(kept.get(Path(path).resolve()) or QuerySession(path, clip, self.text))
            _check_one_space(self.shards)
        except BaseException:  # the shards opened so far are released, not left to the collector
            for shard in self.shards:
                if shard not in reuse:
                    shard.close()
            raise
        self.dim = first.dim

    @property
    def datasets(self) -> list[xr.Dataset]:
        """The shards' open cubes, in the shards' order."""
        return [shard.ds for shard in self.shards]

    @property
    def where(self) -> str:
        """The folder of the shards (of the first shard, for a list of cubes)."""
        return str(self.path or self.cubes[0].parent)

    @property
    def stale(self) -> bool:
        """Whether a shard or its index changed on disk, or the folder's shards did, since opening."""
        moved = self.path is not None and cube_paths(self.path) != self._listing
        return moved or any(shard.stale for shard in self.shards)

    def close(self) -> None:
        """Close every shard's session (see :meth:`QuerySession.close`)."""
        for shard in self.shards:
            shard.close()

    def top_k(
        self,
        query: str | np.ndarray,
        k: int = 20,
        min_distance_m: float = 0.0,
        bbox: BBox | str | Sequence[float] | None = None,
        style: str = DEFAULT_STYLE,
        *,
        index: str | Path | CubeIndex | None = "auto",
        progress: ProgressFn | None = None,
    ) -> pd.DataFrame:
        """The ``k`` best distinct places over the shards (those ``bbox`` touches), merged.

        Each shard is searched with its own index (``index="auto"``) or scanned (``None``, or inside a
        ``bbox``); the results are merged by score and suppressed again across shard borders
        (:func:`~landprompt.query.search.merge_places`). ``progress`` is called with ``(shards done,
        shards in all)`` after each shard.

        Returns:
            The :func:`~landprompt.query.topk.top_k` columns plus ``cube``, the shard of each place.
        """
        if not (index is None or (isinstance(index, str) and index == "auto")):
            raise BadInputError("each shard is searched with its own index: give index='auto' or None")
        k = checks.count("k", k)
        min_distance_m = checks.finite("min distance (metres)", min_distance_m, 0.0) or 0.0
        if isinstance(query, str):
            vector = self.encode(query, style)[0]
        else:
            vector = query_embedding(self.shards[0].ds, query)
        touched = self._windows(bbox)
        tables = []
        for n, (cube, shard, _, _) in enumerate(touched, start=1):
            places = shard.top_k(vector, k, min_distance_m, bbox, index=index)
            tables.append(places.assign(cube=str(cube)))
            self._searched.pop(id(shard), None)
            self._searched[id(shard)] = shard
            while len(self._searched) > MAX_SHARD_INDEXES:
                self._searched.popitem(last=False)[1].release_index()
            if progress is not None:
                progress(n, len(touched))
        return merge_places(tables, k, min_distance_m)

    def probability_maps(
        self,
        concepts: Sequence[str] | np.ndarray,
        versus: Sequence[str] | np.ndarray | None = None,
        bbox: BBox | str | Sequence[float] | None = None,
        style: str = DEFAULT_STYLE,
        logit_scale: float | None = None,
        progress: ProgressFn | None = None,
    ) -> xr.DataArray:
        """Probabilities of many concepts over the mosaic of the shards ``bbox`` touches (all without).

        The shards must share one grid CRS, resolution and pixel lattice
        (:func:`~landprompt.geo.mosaic_grid`); pixels no shard covers are NaN, and where shards overlap
        the later one's valid pixels win. The mosaic is held in memory: give a ``bbox`` over large
        regions. Each shard writes its window straight into its place in the mosaic, unless an earlier
        shard covers part of it. ``progress`` is called with ``(pixels done, pixels in all)`` of the
        touched shards' windows after each chunk.

        Returns:
            DataArray [concept, y, x] on the mosaic grid, as :meth:`QuerySession.probability_maps`.
        """
        names, vectors, background, scale = self.text.classes(concepts, versus, style, logit_scale)
        touched = self._windows(bbox)
        windows = [shard.grid.window(rows, cols) for _, shard, rows, cols in touched]
        tick = PixelCounter(progress, sum(window.rows * window.cols for window in windows))

        def fill(n: int, out: np.ndarray | None) -> np.ndarray:
            _, shard, rows, cols = touched[n]
            return shard.probability_window(rows, cols, vectors, background, scale, tick, out=out)

        grid, out = mosaic(windows, fill, len(names))
        attrs = {"logit_scale": scale, "n_background": len(background), "style": style}
        return map_stack(out, names, grid, attrs)

    def change(
        self,
        later: str | os.PathLike[str] | ShardedSession,
        concept: str,
        versus: Sequence[str] | None = None,
        threshold: float = 0.2,
        bbox: BBox | str | Sequence[float] | None = None,
        style: str = DEFAULT_STYLE,
        logit_scale: float | None = None,
        calibration: Calibration | str | os.PathLike[str] | bool | None = None,
        progress: ProgressFn | None = None,
    ) -> xr.Dataset:
        """The change of a concept from these shards (earlier) to ``later``'s, over their mosaic.

        Shards are paired by file name; each pair is mapped as :meth:`QuerySession.change` maps it, and
        the result is the mosaic of the pairs ``bbox`` touches
        (:func:`~landprompt.query.change.change_shards`: where shards overlap the later shard's valid
        pixels win, as in :meth:`probability_maps`).

        Args:
            later: The later folder of shards (or its session): the same tiles, each on its earlier
                shard's grid.
            concept: The concept in plain words.
            versus: Background prompts (default: the shipped land-cover vocabulary).
            threshold: Change in probability above which a pixel is a gain (below minus it, a loss).
            bbox: Optional lon/lat window.
            style: Prompt template style.
            logit_scale: Softmax temperature; default: the CLIP model's.
            calibration: ``True`` applies each shard's own calibration of the concept; a calibration or
                its JSON file applies to all.
            progress: Called with ``(pixels done, pixels in all)`` after each chunk.

        Raises:
            BadInputError: If ``later`` is one cube, its shards are not named as these, or a pair is not
                on one grid.
        """
        from landprompt.query.change import change_shards

        check_pairable(self, later)
        other = later if isinstance(later, ShardedSession) else open_session(later)
        assert isinstance(other, ShardedSession)  # a folder of shards, as check_pairable found
        pairs = paired_shards(self, other)
        touched = self._windows(bbox)
        return change_shards(
            [(shard.ds, pairs[cube].ds, rows, cols) for cube, shard, rows, cols in touched],
            self.scorer(concept, versus, style, None, logit_scale),
            threshold,
            calibration,
            progress,
            {"cube_a": self.where, "cube_b": other.where},
        )

    def map_grid(self, bbox: BBox | str | Sequence[float] | None = None) -> Grid:
        """The grid of the mosaic :meth:`probability_maps` makes over ``bbox`` (sized before any scoring).

        Raises:
            BadInputError: If ``bbox`` misses every shard, or the shards it touches are not on one lattice.
        """
        return mosaic_grid([shard.grid.window(rows, cols) for _, shard, rows, cols in self._windows(bbox)])[0]

    def _windows(
        self, bbox: BBox | str | Sequence[float] | None
    ) -> list[tuple[Path, QuerySession, slice, slice]]:
        """Each shard a lon/lat bbox touches (every shard without one), with its pixel window."""
        box = None if bbox is None else bbox if isinstance(bbox, BBox) else parse_bbox(bbox)
        touched = []
        for cube, shard in zip(self.cubes, self.shards, strict=True):
            if box is None:
                touched.append((cube, shard, slice(0, shard.grid.rows), slice(0, shard.grid.cols)))
                continue
            try:
                rows, cols = shard.grid.slices_of_bbox(box)
            except BadInputError:  # the bbox misses this shard
                continue
            touched.append((cube, shard, rows, cols))
        if not touched:
            raise BadInputError(
                f"bbox {tuple(box or ())} lies outside every one of the {len(self.shards)} shards"
            )
        return touched


#: A session of one cube or of a folder of shards: what :func:`open_session` returns.
Session = QuerySession | ShardedSession


def map_stack(values: np.ndarray, names: Sequence[str], grid: Grid, attrs: dict[str, object]) -> xr.DataArray:
    """Probabilities (h, w, m) of named concepts as a georeferenced DataArray [concept, y, x]."""
    da = xr.DataArray(
        np.moveaxis(values, -1, 0),
        dims=("concept", "y", "x"),
        coords={"concept": list(names), "y": grid.y_coords(), "x": grid.x_coords()},
        name="probability",
    )
    da.attrs.update(attrs)
    return da.rio.write_crs(grid.crs, inplace=True).rio.write_transform(grid.transform, inplace=True)


def cube_paths(path: str | os.PathLike[str]) -> list[Path]:
    """A cube, or the cubes (``*.zarr``) of a folder of shards."""
    path = Path(path)
    if path.is_dir() and not any((path / name).exists() for name in ("zarr.json", ".zgroup")):  # Zarr v3, v2
        shards = sorted(p for p in path.glob("*.zarr") if p.is_dir())
        if shards:
            return shards
    return [path]


def is_shard_folder(path: str | os.PathLike[str]) -> bool:
    """Whether a path is a folder of shards rather than one cube (see :func:`cube_paths`)."""
    return cube_paths(path) != [Path(path)]


#: One side of a change: a cube or a folder of shards, as a path, a cube's Dataset or a session.
ChangeSide = str | os.PathLike[str] | xr.Dataset | Session


def check_pairable(earlier: ChangeSide, later: ChangeSide) -> None:
    """Refuse a folder of shards paired with one cube: a change takes two cubes or two folders of shards.

    Raises:
        BadInputError: One line naming the folder and the cube.
    """
    sides = [(_sharded(side), _side_name(side)) for side in (earlier, later)]
    if sides[0][0] != sides[1][0]:
        (_, folder), (_, one) = sorted(sides, reverse=True)  # the folder first
        raise BadInputError(
            f"{folder} is a folder of shards but {one} is one cube: give two cubes, or two folders of "
            "shards (paired by file name)"
        )


def _sharded(side: ChangeSide) -> bool:
    if isinstance(side, (QuerySession, xr.Dataset)):
        return False
    return isinstance(side, ShardedSession) or is_shard_folder(side)


def _side_name(side: ChangeSide) -> str:
    if isinstance(side, ShardedSession):
        return side.where
    if isinstance(side, QuerySession):
        return str(side.path)
    if isinstance(side, xr.Dataset):
        return str(side.encoding.get("source", "the cube"))
    return str(side)


def paired_shards(earlier: ShardedSession, later: ShardedSession) -> dict[Path, QuerySession]:
    """The later shard of each earlier shard's path: the one of the same file name.

    Raises:
        BadInputError: If the two sessions' shards are not named alike.
    """
    names = [path.name for path in earlier.cubes]
    theirs = {path.name: shard for path, shard in zip(later.cubes, later.shards, strict=True)}
    if sorted(names) != sorted(theirs) or len(set(names)) != len(names):
        missing, extra = sorted(set(names) - set(theirs)), sorted(set(theirs) - set(names))
        raise BadInputError(
            f"the later shards are not named as the earlier ones (only earlier: "
            f"{', '.join(missing) or 'none'}; only later: {', '.join(extra) or 'none'}): "
            "shards are paired by file name"
        )
    return {path: theirs[path.name] for path in earlier.cubes}


def _check_one_space(shards: Sequence[QuerySession]) -> None:
    """Refuse shards that differ in CLIP model, embedding width or recorded logit scale."""
    first = shards[0]
    for shard in shards[1:]:
        for what, a, b in (
            ("CLIP model", _clip_name(first.ds), _clip_name(shard.ds)),
            ("embedding width", first.dim, shard.dim),
            ("logit scale", first.ds.attrs.get("logit_scale"), shard.ds.attrs.get("logit_scale")),
        ):
            if a != b:
                raise BadInputError(
                    f"shards {first.path.name} and {shard.path.name} differ in {what} ({a} vs {b}): "
                    "the shards of one session must share one CLIP space"
                )


def open_session(
    cube: str | os.PathLike[str] | Sequence[str | os.PathLike[str]], clip: ClipModel | None = None
) -> Session:
    """The query session of a cube, a folder of shards or a list of shards; cached, reopened when stale.

    A cube path gives a :class:`QuerySession`; a folder of shards (see :func:`cube_paths`) or a list of
    cube paths a :class:`ShardedSession`. Sessions are cached per path (per list of paths) and reopened
    when a cube or its index changed on disk (or a folder's shards did). The :data:`MAX_SESSIONS` most
    recently used sessions are kept (a sharded session counts once); an older one is closed.

    Args:
        cube: Embedding cube path, folder of shards, or list of cube paths.
        clip: A CLIP model to use instead of the one named in the cube (a new session is opened).
    """
    key: Path | tuple[Path, ...] = (
        Path(cube).resolve()
        if isinstance(cube, (str, os.PathLike))
        else tuple(Path(c).resolve() for c in cube)
    )
    closed: list[QuerySession | ShardedSession] = []
    with _LOCK:
        session = _SESSIONS.get(key)
        if session is None or session.stale or (clip is not None and session.text.given is not clip):
            reuse: list[QuerySession] = []
            if isinstance(session, ShardedSession) and (clip is None or session.text.given is clip):
                reuse = [shard for shard in session.shards if not shard.stale]  # one changed shard: reopen it
            if isinstance(session, ShardedSession):
                closed += [shard for shard in session.shards if shard not in reuse]
            elif session is not None:
                closed.append(session)
            sharded = not isinstance(cube, (str, os.PathLike)) or cube_paths(cube) != [Path(cube)]
            session = ShardedSession(cube, clip, reuse) if sharded else QuerySession(cube, clip)  # type: ignore[arg-type]
            _SESSIONS[key] = session
        _SESSIONS.move_to_end(key)
        while len(_SESSIONS) > MAX_SESSIONS:
            closed.append(_SESSIONS.popitem(last=False)[1])
    for old in closed:
        old.close()
    return session


def _clip_name(ds: xr.Dataset) -> str:
    """The CLIP model (and weights) a cube's attrs name, in words."""
    named = recorded_clip(ds.attrs)
    return "none named" if named is None else " ".join(part for part in named if part)


def _stamp(paths: Sequence[str]) -> tuple[tuple[int, int, int] | None, ...]:
    """Size, mtime and inode of each file (None where missing).

    The files are the cube's root metadata (Zarr v3 or v2), its default index file and sidecar.
    """
    return tuple(_file_stamp(p) for p in paths)


def _file_stamp(path: str) -> tuple[int, int, int] | None:
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return stat.st_size, stat.st_mtime_ns, stat.st_ino
