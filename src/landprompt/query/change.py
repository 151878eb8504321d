"""Change maps: where the probability of a concept rose or fell between two cubes of the same grid.

:func:`change_map` scores both cubes chunk by chunk (the same window of each at a time) with one
encoding of the concept and its background, and returns an :class:`xarray.Dataset` [y, x]:

- ``p_a``, ``p_b``: float32 probabilities in cube A (earlier) and cube B (later), NaN where not valid;
- ``diff``: float32 ``p_b - p_a`` in [-1, 1], NaN where either is not valid;
- ``class``: uint8 codes :data:`STABLE` (0), :data:`GAIN` (1, ``diff > threshold``), :data:`LOSS`
  (2, ``diff < -threshold``) and :data:`NODATA` (255, either cube not valid).

:func:`write_change` writes ``diff`` as a float32 COG, ``class`` as a uint8 COG (codes 0/1/2, nodata
255, a colour table and nearest-neighbour overviews) beside it, and a PNG quicklook of ``diff`` on a
diverging scale (RdBu: red loss, blue gain).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import rioxarray  # noqa: F401  (registers the .rio accessor)
import xarray as xr

from landprompt.calibration import Calibration
from landprompt.errors import BadInputError
from landprompt.geo import BBox, Grid
from landprompt.query.classes import DEFAULT_STYLE, PixelCounter, ProgressFn
from landprompt.query.scorer import ConceptScorer

if TYPE_CHECKING:
    from landprompt.embedder.clip import ClipModel

STABLE, GAIN, LOSS, NODATA = 0, 1, 2, 255
#: Meaning of each ``class`` code.
CHANGE_CLASSES = {STABLE: "stable", GAIN: "gain", LOSS: "loss", NODATA: "nodata"}
#: Outputs :func:`write_change` knows, and the suffix each adds to the stem of the ``.tif`` path.
CHANGE_OUTPUTS = {"diff": ".tif", "class": "_class.tif", "png": ".png"}
#: Colour-table entry (RGBA) of each class code in the class COG: grey stable, blue gain, red loss.
CLASS_COLOURS = {
    STABLE: (200, 200, 200, 255),
    GAIN: (33, 102, 172, 255),
    LOSS: (178, 24, 43, 255),
    NODATA: (0, 0, 0, 0),
}

CalibrationArg = Calibration | str | os.PathLike[str] | bool | None


def change_map(
    cube_a: str | os.PathLike[str] | xr.Dataset,
    cube_b: str | os.PathLike[str] | xr.Dataset,
    concept: str | ConceptScorer,
    versus: Sequence[str] | None = None,
    clip: ClipModel | None = None,
    threshold: float = 0.2,
    bbox: BBox | str | Sequence[float] | None = None,
    style: str = DEFAULT_STYLE,
    logit_scale: float | None = None,
    calibration: CalibrationArg = None,
    progress: ProgressFn | None = None,
) -> xr.Dataset:
    """Map the change in probability of a concept from cube A (earlier) to cube B (later).

    Args:
        cube_a: The earlier cube (path, or Dataset from ``open_cube``).
        cube_b: The later cube, on the same grid (CRS, transform, shape) and in the same CLIP space.
        concept: The concept in plain words, or a :class:`ConceptScorer` (then ``versus``, ``clip``,
            ``style`` and ``logit_scale`` are unused).
        versus: Background prompts (default: the shipped land-cover vocabulary).
        clip: CLIP model; default: the one cube A names.
        threshold: Change in probability above which a pixel is a gain (below minus it, a loss).
        bbox: Optional lon/lat window.
        style: Prompt template style.
        logit_scale: Softmax temperature; default: the CLIP model's.
        calibration: ``True`` applies each cube's own calibration of the concept
            (``<cube>.calibration/<slug>.json``); a :class:`Calibration` or JSON path applies to both.
        progress: Called with ``(pixels done, pixels in all)`` after each chunk.

    Returns:
        Dataset with ``p_a``, ``p_b``, ``diff`` and ``class`` [y, x], the cubes' CRS and transform.

    Raises:
        BadInputError: if the cubes differ in grid or embedding space, or the threshold is not in [0, 1).
    """
    from landprompt.embedder.cube import open_cube

    _check_threshold(threshold)
    ds_a, ds_b = (c if isinstance(c, xr.Dataset) else open_cube(c) for c in (cube_a, cube_b))
    grid = check_same_grid(ds_a, ds_b)
    scorer = ConceptScorer.of(concept, versus, clip, style, logit_scale, cube=ds_a)
    rows, cols = grid.slices_of_bbox(bbox) if bbox is not None else (slice(0, grid.rows), slice(0, grid.cols))
    sub = grid.window(rows, cols)
    calibration = _loaded(calibration)
    scorers = (scorer.calibrated_for(cube_a, calibration), scorer.calibrated_for(cube_b, calibration))
    p = _probabilities(ds_a, ds_b, *scorers, rows, cols, PixelCounter(progress, sub.rows * sub.cols))
    attrs = {**scorer.attrs(), "cube_a": _name(cube_a), "cube_b": _name(cube_b)}
    return change_from_maps(_map(p[..., 0], sub), _map(p[..., 1], sub), threshold, attrs)


def change_shards(
    pairs: Sequence[tuple[xr.Dataset, xr.Dataset, slice, slice]],
    scorer: ConceptScorer,
    threshold: float = 0.2,
    calibration: CalibrationArg = None,
    progress: ProgressFn | None = None,
    attrs: Mapping[str, Any] | None = None,
) -> xr.Dataset:
    """The change map of shards paired earlier/later: :func:`change_map` over the mosaic of the shards.

    ``p_a`` and ``p_b`` are the mosaic (:func:`~landprompt.geo.mosaic`: where shards overlap, the later
    pair's pixels valid in both years win) of the pairs' probabilities, ``diff`` and ``class`` computed
    from them.

    Args:
        pairs: Each earlier shard, the later shard on its grid, and the window (rows, columns) to map.
            The shards must share one grid CRS, resolution and pixel lattice.
        scorer: The concept's scorer, without calibration.
        threshold: Change in probability above which a pixel is a gain (below minus it, a loss).
        calibration: ``True`` applies each shard's own calibration of the concept; a calibration or its
            JSON file applies to all.
        progress: Called with ``(pixels done, pixels in all)`` after each chunk.
        attrs: Extra attributes of the result (e.g. ``cube_a`` and ``cube_b``).

    Raises:
        BadInputError: for shards of a pair not on one grid, shards not on one lattice, or a threshold
            not in [0, 1).
    """
    from landprompt.geo import mosaic

    _check_threshold(threshold)
    grids = [check_same_grid(a, b).window(rows, cols) for a, b, rows, cols in pairs]
    tick = PixelCounter(progress, sum(g.rows * g.cols for g in grids))
    given = _loaded(calibration)

    def fill(i: int, out: np.ndarray | None) -> np.ndarray:
        a, b, rows, cols = pairs[i]
        scorers = (scorer.calibrated_for(a, given), scorer.calibrated_for(b, given))
        return _probabilities(a, b, *scorers, rows, cols, tick, out)

    grid, p = mosaic(grids, fill, 2)
    attrs = {**scorer.attrs(), **dict(attrs or {})}
    return change_from_maps(_map(p[..., 0], grid), _map(p[..., 1], grid), threshold, attrs)


def _probabilities(
    ds_a: xr.Dataset,
    ds_b: xr.Dataset,
    scorer_a: ConceptScorer,
    scorer_b: ConceptScorer,
    rows: slice,
    cols: slice,
    tick: PixelCounter,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Probabilities (h, w, 2) in cube A and cube B over a window, the same chunk of both at a time.

    Written into ``out`` (every pixel, NaN where not valid) when given, else into a new array.
    """
    from landprompt.embedder.cube import read_window

    shape = (rows.stop - rows.start, cols.stop - cols.start, 2)
    p = np.empty(shape, dtype=np.float32) if out is None else out
    p.fill(np.nan)
    for window, prob in scorer_a.iter_chunks(ds_a, rows, cols):
        place = (
            slice(window.rows.start - rows.start, window.rows.stop - rows.start),
            slice(window.cols.start - cols.start, window.cols.stop - cols.start),
        )
        p[(*place, 0)] = prob
        p[(*place, 1)] = scorer_b.score(*read_window(ds_b, window.rows, window.cols))
        tick(window.shape[0] * window.shape[1])
    return p


def _loaded(calibration: CalibrationArg) -> CalibrationArg:
    """A calibration file read once, being the same for every cube (``True``, each cube's own, as given)."""
    from landprompt.calibration import load_calibration

    return load_calibration(calibration) if isinstance(calibration, str | os.PathLike) else calibration


def _check_threshold(threshold: float) -> None:
    if not 0 <= threshold < 1:
        raise BadInputError(f"the change threshold must be in [0, 1), got {threshold}")


def change_from_maps(
    p_a: xr.DataArray, p_b: xr.DataArray, threshold: float = 0.2, attrs: Mapping[str, Any] | None = None
) -> xr.Dataset:
    """The change Dataset of two probability maps on the same grid (e.g. two ``read_map`` COGs)."""
    if p_a.shape != p_b.shape or p_a.rio.crs != p_b.rio.crs or p_a.rio.transform() != p_b.rio.transform():
        raise BadInputError("the two maps are not on the same grid (CRS, transform and shape must match)")
    diff = (p_b - p_a).astype(np.float32)
    codes = classify_change(diff.values, threshold)
    ds = xr.Dataset(
        {
            "p_a": p_a.astype(np.float32),
            "p_b": p_b.astype(np.float32),
            "diff": diff,
            "class": (("y", "x"), codes),
        }
    )
    ds["class"].attrs.update(
        flag_values=list(CHANGE_CLASSES), flag_meanings=" ".join(CHANGE_CLASSES.values()), nodata=NODATA
    )
    ds.attrs.update({**dict(attrs or {}), "threshold": float(threshold)})
    for name in ds.data_vars:
        ds[name].attrs.update(ds.attrs)
    return ds.rio.write_crs(p_a.rio.crs).rio.write_transform(p_a.rio.transform())


def classify_change(diff: np.ndarray, threshold: float) -> np.ndarray:
    """uint8 class codes of a probability difference: gain, loss, stable or nodata (NaN)."""
    codes = np.full(diff.shape, STABLE, dtype=np.uint8)
    with np.errstate(invalid="ignore"):
        codes[diff > threshold] = GAIN
        codes[diff < -threshold] = LOSS
    codes[np.isnan(diff)] = NODATA
    return codes


def check_same_grid(ds_a: xr.Dataset, ds_b: xr.Dataset) -> Grid:
    """The common grid of two cubes; :class:`BadInputError` says what differs if they have none."""
    from landprompt.embedder.cube import cube_grid

    a, b = cube_grid(ds_a), cube_grid(ds_b)
    differ = []
    if a.crs != b.crs:
        differ.append(f"CRS {a.crs.to_string()} vs {b.crs.to_string()}")
    if not a.transform.almost_equals(b.transform):
        differ.append(f"transform {tuple(a.transform)[:6]} vs {tuple(b.transform)[:6]}")
    if a.shape != b.shape:
        differ.append(f"shape {a.shape} vs {b.shape}")
    if ds_a.sizes["d"] != ds_b.sizes["d"]:
        differ.append(f"embedding dimension {ds_a.sizes['d']} vs {ds_b.sizes['d']}")
    clips = [ds.attrs.get("clip_model") for ds in (ds_a, ds_b)]
    if all(clips) and clips[0] != clips[1]:
        differ.append(f"CLIP model {clips[0]} vs {clips[1]}")
    if differ:
        raise BadInputError(
            f"the two cubes are not on the same grid ({'; '.join(differ)}): embed both on one grid"
        )
    return a


def change_paths(path: str | os.PathLike[str]) -> dict[str, Path]:
    """The files of a change map written as ``path`` (``change.tif``): diff, class and PNG paths."""
    path = Path(path)
    if path.suffix.lower() not in (".tif", ".tiff"):
        raise BadInputError(f"a change map is written as a .tif file, got {path.name!r}")
    return {name: path.with_name(path.stem + suffix) for name, suffix in CHANGE_OUTPUTS.items()}


def write_change(
    ds: xr.Dataset,
    outputs: Mapping[str, str | os.PathLike[str]],
    title: str = "",
    tags: Mapping[str, str] | None = None,
) -> list[Path]:
    """Write the outputs of a change map, all or none.

    Args:
        ds: From :func:`change_map`.
        outputs: Output name (``diff``, ``class``, ``png``; see :func:`change_paths`) -> path.
        title: PNG title (default: ``change in P(<concept>)``).
        tags: Extra GDAL metadata of both COGs (e.g. provenance).

    Returns:
        The written paths.
    """
    from landprompt.files import atomic_path
    from landprompt.query.maps import write_class_cog, write_cog, write_png

    unknown = set(outputs) - set(CHANGE_OUTPUTS)
    if unknown:
        raise BadInputError(f"unknown change outputs {sorted(unknown)}; known: {', '.join(CHANGE_OUTPUTS)}")
    title = title or f"change in P({ds.attrs.get('concept', '')})"
    with ExitStack() as stack:
        tmp = {name: stack.enter_context(atomic_path(Path(path))) for name, path in outputs.items()}
        if "diff" in tmp:
            write_cog(ds["diff"], tmp["diff"], tags=tags)
        if "class" in tmp:
            codes = ds["class"].copy()
            codes.attrs = {**ds.attrs, "classes": "0 stable, 1 gain, 2 loss; 255 nodata"}
            write_class_cog(codes.rename("class"), tmp["class"], CLASS_COLOURS, nodata=NODATA, tags=tags)
        if "png" in tmp:
            label = "change in probability (B - A)"
            write_png(
                ds["diff"], tmp["png"], title=title, cmap="RdBu", label=label, vmin=-1, vmax=1, tags=tags
            )
    return [Path(path) for path in outputs.values()]


def change_summary(ds: xr.Dataset) -> dict[str, Any]:
    """Pixels and hectares of each class (hectares need a projected grid in metres)."""
    codes, counts = np.unique(ds["class"].values, return_counts=True)
    pixels = {CHANGE_CLASSES[int(c)]: int(n) for c, n in zip(codes, counts, strict=True)}
    summary: dict[str, Any] = {"pixels": {name: pixels.get(name, 0) for name in CHANGE_CLASSES.values()}}
    if ds.rio.crs is not None and ds.rio.crs.is_projected:
        rx, ry = ds.rio.resolution()
        hectares = abs(rx * ry) / 1e4
        summary["hectares"] = {
            name: n * hectares for name, n in summary["pixels"].items() if name != "nodata"
        }
    return summary


def _map(values: np.ndarray, grid: Grid) -> xr.DataArray:
    da = xr.DataArray(values, dims=("y", "x"), coords={"y": grid.y_coords(), "x": grid.x_coords()})
    return da.rio.write_crs(grid.crs).rio.write_transform(grid.transform)


def _name(cube: str | os.PathLike[str] | xr.Dataset) -> str:
    if isinstance(cube, xr.Dataset):
        return str(cube.encoding.get("source", ""))
    return str(cube)
