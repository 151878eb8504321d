"""A query session: a cube kept open with its index, CLIP text tower and encoded prompts.

``open_session(path)`` returns the cached session of a cube path, reopened when the cube or its default
index changes on disk (four ``stat`` calls a query: size, modification time and inode of the cube's root
metadata, the index file and its sidecar), so repeated queries through the module-level functions
(:func:`~landprompt.query.topk.top_k`, :func:`~landprompt.query.probability.probability_map`) pay for
opening, hashing and loading once. At most :data:`MAX_SESSIONS` sessions are kept (least recently used
closed first), so a process that queries many shards holds the indexes of the last few only.

Concept queries are assembled by the session's :class:`~landprompt.query.text.TextTower`: prompts
encoded once (in memory and on disk), the CLIP text tower loaded only for a prompt in neither cache.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import xarray as xr

from landprompt.embedder.cube import cube_basis, cube_grid, open_cube
from landprompt.geo import BBox
from landprompt.index.build import default_index_path, sidecar_path
from landprompt.query.classes import DEFAULT_STYLE, ProgressFn, unit_rows
from landprompt.query.search import PlaceTable, query_embedding, resolve_index, search_top_k
from landprompt.query.text import TextTower

if TYPE_CHECKING:
    from landprompt.calibration import Calibration
    from landprompt.embedder.clip import ClipModel
    from landprompt.index.search import CubeIndex
    from landprompt.query.scorer import ConceptScorer

#: Sessions :func:`open_session` keeps open (least recently used closed first). Each holds its cube's
#: default index in memory (for a 1-million-pixel IVF-PQ index some tens of MiB) and its encoded prompts.
MAX_SESSIONS = 4

_UNSET = object()
_SESSIONS: OrderedDict[Path, QuerySession] = OrderedDict()
_LOCK = threading.Lock()


class QuerySession:
    """One cube, opened once, with its default index and text tower (:class:`.TextTower`).

    Args:
        cube: Embedding cube path.
        clip: CLIP model for text prompts (default: the one named in the cube's attrs, loaded only for
            a prompt not cached).
    """

    def __init__(self, cube: str | Path, clip: ClipModel | None = None) -> None:
        self.path = Path(cube).resolve()
        index = default_index_path(self.path)
        self._watched = tuple(
            os.fspath(p) for p in (self.path / "zarr.json", self.path / ".zattrs", index, sidecar_path(index))
        )
        self.stamp = _stamp(self._watched)
        self.ds = open_cube(self.path)
        self.grid = cube_grid(self.ds)
        self.basis = cube_basis(self.ds)
        self.text = TextTower(self.ds, clip)
        self.dim = int(self.ds.sizes["d"])
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
        self._index, self._places = _UNSET, None
        self.ds.encoding.pop("landprompt_arrays", None)
        self.ds.close()

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
            calibrated: A calibration, its file, ``True`` for the one fitted for this cube and concept
                (``<cube>.calibration/<slug>.json``), or ``None``/``False``; checked against the query.
            logit_scale: Softmax temperature (default: the CLIP model's).
        """
        from landprompt.calibration import resolve_calibration
        from landprompt.query.scorer import ConceptScorer

        calibration = resolve_calibration(calibrated, self.path, prompt.strip())
        return ConceptScorer.from_tower(self.text, prompt, versus, style, logit_scale, calibration)

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

    def probability_map(
        self,
        concept: str | np.ndarray,
        versus: Sequence[str] | np.ndarray | None = None,
        bbox: BBox | str | Sequence[float] | None = None,
        style: str = DEFAULT_STYLE,
        logit_scale: float | None = None,
    ) -> xr.DataArray:
        """Probability of one concept at every pixel, as :func:`.probability.probability_map` gives it."""
        maps = self.probability_maps(
            [concept] if isinstance(concept, str) else concept, versus, bbox, style, logit_scale
        )
        da = maps.isel(concept=0, drop=True).rename("probability")
        if isinstance(concept, str) and not isinstance(versus, np.ndarray):  # a query a calibration can match
            da.attrs.update(self.text.settings(concept, versus, style, da.attrs["logit_scale"]).to_attrs())
        return da

    def probability_maps(
        self,
        concepts: Sequence[str] | np.ndarray,
        versus: Sequence[str] | np.ndarray | None = None,
        bbox: BBox | str | Sequence[float] | None = None,
        style: str = DEFAULT_STYLE,
        logit_scale: float | None = None,
    ) -> xr.DataArray:
        """Probabilities of many concepts in one pass over the cube: DataArray [concept, y, x].

        Each concept competes with the same background (``versus``, default the shipped vocabulary
        without the concepts themselves).
        """
        rows, cols = (
            self.grid.slices_of_bbox(bbox)
            if bbox is not None
            else (slice(0, self.grid.rows), slice(0, self.grid.cols))
        )
        names, vectors, background, scale = self.text.classes(concepts, versus, style, logit_scale)
        values = self.probability_window(rows, cols, vectors, background, scale)
        sub = self.grid.window(rows, cols)
        da = xr.DataArray(
            np.moveaxis(values, -1, 0),
            dims=("concept", "y", "x"),
            coords={"concept": names, "y": sub.y_coords(), "x": sub.x_coords()},
            name="probability",
        )
        da.attrs.update(logit_scale=scale, n_background=len(background), style=style)
        return da.rio.write_crs(self.grid.crs, inplace=True).rio.write_transform(sub.transform, inplace=True)

    def probability_window(
        self,
        rows: slice,
        cols: slice,
        concepts: np.ndarray,
        background: np.ndarray,
        logit_scale: float,
    ) -> np.ndarray:
        """Probabilities (h, w, m) of concepts (m, d) against a background (k, d) over a pixel window.

        The building block of maps and tiles: no text tower, no georeferencing; NaN where not valid.
        """
        from landprompt.query.scoring import iter_probabilities

        concepts, background = unit_rows(concepts), unit_rows(background)
        h, w = rows.stop - rows.start, cols.stop - cols.start
        out = np.empty((h, w, len(concepts)), dtype=np.float32)
        for _ in iter_probabilities(self.ds, concepts, background, logit_scale, rows, cols, out=out):
            pass  # every chunk writes its part of out
        return out


def open_session(cube: str | Path, clip: ClipModel | None = None) -> QuerySession:
    """The query session of a cube path: cached per path, reopened when the cube or its index changed.

    The :data:`MAX_SESSIONS` most recently used sessions are kept; an older one is closed
    (:meth:`QuerySession.close`).

    Args:
        cube: Embedding cube path.
        clip: A CLIP model to use instead of the one named in the cube (a new session is opened).
    """
    path = Path(cube).resolve()
    closed = []
    with _LOCK:
        session = _SESSIONS.get(path)
        if session is None or session.stale or (clip is not None and session.text.given is not clip):
            if session is not None:
                closed.append(session)
            session = QuerySession(path, clip)
            _SESSIONS[path] = session
        _SESSIONS.move_to_end(path)
        while len(_SESSIONS) > MAX_SESSIONS:
            closed.append(_SESSIONS.popitem(last=False)[1])
    for old in closed:
        old.close()
    return session


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
