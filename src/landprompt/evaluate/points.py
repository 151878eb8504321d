"""Validation of a concept map against field observations (presence / absence at points).

:func:`evaluate_points` reads a CSV of lon/lat points (WGS84) with a presence label, takes the
probability of the concept at the cube pixel containing each point, and reports:

- ROC AUC (tied scores counted half) and average precision (tied scores taken together), by scikit-learn;
- the Brier score and the expected calibration error: with ``bins`` equal-width bins of ``p`` over
  [0, 1] (bin ``i`` holds ``i/bins <= p < (i+1)/bins``, the last one includes 1),
  ``ECE = sum_b n_b / n * |mean(present in b) - mean(p in b)|``, and the reliability table behind it.

With ``fit`` it learns a monotone recalibration (Platt or isotonic, see
:mod:`landprompt.evaluate.recalibration`) and measures it by spatial-block cross-validation: points are
grouped in square blocks of ``block_km`` km in the cube's CRS, blocks are dealt to ``n_folds`` folds at
random, and each fold's points are calibrated by a fit on the other folds only, so neighbouring points
never sit on both sides. Metrics before and after are computed on these held-out predictions pooled.
The calibration fitted on all points is then saved next to the cube (``<cube>.calibration/<slug>.json``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import xarray as xr

from landprompt import checks
from landprompt.calibration import (
    Method,
    calibration_path,
    cube_path,
    resolve_calibration,
    save_calibration,
)
from landprompt.errors import BadInputError
from landprompt.evaluate.metrics import binary_metrics
from landprompt.evaluate.recalibration import fit_calibration
from landprompt.geo import WGS84, Grid, transform_points
from landprompt.query.classes import DEFAULT_STYLE
from landprompt.query.scorer import ConceptScorer

if TYPE_CHECKING:
    from landprompt.embedder.clip import ClipModel
    from landprompt.query.session import QuerySession

REPORT_FORMAT = "landprompt-points-report"
#: Accepted label values (case-insensitive) and what they mean.
LABELS = {"1": True, "0": False, "true": True, "false": False, "yes": True, "no": False}
_LON_NAMES = ("lon", "longitude", "lng")
_LAT_NAMES = ("lat", "latitude")


# --- points ----------------------------------------------------------------------------------------


def read_points(
    path: str | os.PathLike[str],
    label_field: str = "present",
    lon_field: str | None = None,
    lat_field: str | None = None,
) -> pd.DataFrame:
    """Read observation points: a CSV with lon/lat (WGS84 degrees) and a presence label.

    Args:
        path: CSV file.
        label_field: Column of labels: 1/0, true/false or yes/no (any case).
        lon_field: Longitude column; default: the first of lon, longitude, lng (any case).
        lat_field: Latitude column; default: the first of lat, latitude (any case).

    Returns:
        DataFrame with ``lon``, ``lat`` (float) and ``present`` (bool), in file order.
    """
    path = Path(path)
    if not path.is_file():
        raise BadInputError(f"points file {path} does not exist")
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise BadInputError(f"{path} is not a readable CSV: {' '.join(str(exc).split())}") from None
    columns = list(table.columns)
    lon = _column(columns, lon_field, _LON_NAMES, "longitude", path)
    lat = _column(columns, lat_field, _LAT_NAMES, "latitude", path)
    label = _column(columns, label_field, (), "label", path)
    if table.empty:
        raise BadInputError(f"{path} has no points")
    return pd.DataFrame(
        {
            "lon": _numbers(table[lon], lon, path),
            "lat": _numbers(table[lat], lat, path),
            "present": _labels(table[label], label, path),
        }
    )


def _column(columns: list[str], given: str | None, names: Sequence[str], what: str, path: Path) -> str:
    if given is not None and given in columns:
        return given
    if given is None:
        lower = {c.lower(): c for c in columns}
        for name in names:
            if name in lower:
                return lower[name]
    wanted = given or " / ".join(names)
    raise BadInputError(f"{path} has no {what} column {wanted!r}; its columns: {', '.join(columns)}")


def _numbers(values: pd.Series, column: str, path: Path) -> np.ndarray:
    numbers = pd.to_numeric(values.str.strip(), errors="coerce").to_numpy(dtype=float)
    bad = np.flatnonzero(~np.isfinite(numbers))
    if bad.size:
        raise BadInputError(f"{path}: row {bad[0] + 1} has {column} {values.iloc[bad[0]]!r}, not a number")
    return numbers


def _labels(values: pd.Series, column: str, path: Path) -> np.ndarray:
    mapped = values.str.strip().str.lower().map(LABELS)
    bad = np.flatnonzero(mapped.isna().to_numpy())
    if bad.size:
        raise BadInputError(
            f"{path}: row {bad[0] + 1} has {column} {values.iloc[bad[0]]!r}; "
            "labels must be 1/0, true/false or yes/no"
        )
    return mapped.to_numpy(dtype=bool)


def sample_probability(
    ds: xr.Dataset, scorer: ConceptScorer, lon: np.ndarray, lat: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The probability at the cube pixel containing each lon/lat point, reading one window per chunk.

    Returns:
        Probabilities float32 [n] (NaN outside the cube or on a pixel that is not valid) and whether
        each point lies inside the cube, bool [n].
    """
    from landprompt.embedder.cube import cube_grid, read_window

    grid = cube_grid(ds)
    row, col = grid.lonlat_to_rowcol(lon, lat)
    inside = grid.contains(row, col)
    p = np.full(row.shape, np.nan, dtype=np.float32)
    chunk = _chunk_index(ds, grid, row, col)
    for key in np.unique(chunk[inside]):
        idx = np.flatnonzero(inside & (chunk == key))
        r0, c0 = row[idx].min(), col[idx].min()
        embedding, valid = read_window(ds, slice(r0, row[idx].max() + 1), slice(c0, col[idx].max() + 1))
        p[idx] = scorer.score(embedding[row[idx] - r0, col[idx] - c0], valid[row[idx] - r0, col[idx] - c0])
    return p, inside


def _chunk_index(ds: xr.Dataset, grid: Grid, row: np.ndarray, col: np.ndarray) -> np.ndarray:
    """An id of the storage chunk holding each pixel (so each chunk is read once)."""
    chunks = ds["valid"].chunks
    sizes = chunks if chunks is not None else ((grid.rows,), (grid.cols,))
    row_edges, col_edges = (np.cumsum(s) for s in sizes)
    i = np.searchsorted(row_edges, row, side="right")
    j = np.searchsorted(col_edges, col, side="right")
    return i * (len(col_edges) + 1) + j


# --- spatial cross-validation ----------------------------------------------------------------------


def spatial_blocks(x: np.ndarray, y: np.ndarray, block_size: float) -> np.ndarray:
    """Id (0 .. blocks - 1) of the square block of side ``block_size`` (map units) holding each point."""
    cells = np.stack([np.floor(np.asarray(x) / block_size), np.floor(np.asarray(y) / block_size)], axis=1)
    return np.unique(cells, axis=0, return_inverse=True)[1].ravel()


def spatial_folds(
    x: np.ndarray, y: np.ndarray, block_size: float, n_folds: int = 5, seed: int = 0
) -> tuple[np.ndarray, int]:
    """Fold of each point by square spatial blocks: all points of a block fall in the same fold.

    Args:
        x: Map x of the points (e.g. easting in metres).
        y: Map y of the points.
        block_size: Block side, in the map units.
        n_folds: Folds wanted (fewer when there are fewer blocks).
        seed: Seed of the random dealing of blocks to folds.

    Returns:
        Fold of each point (0 .. folds - 1) and the number of blocks.
    """
    if block_size <= 0:
        raise BadInputError(f"the block size must be positive, got {block_size}")
    block = spatial_blocks(x, y, block_size)
    n_blocks = int(block.max()) + 1
    if n_blocks < 2:
        raise BadInputError(
            f"all points lie in one block of {block_size:g} map units: choose a smaller block size"
        )
    dealt = np.random.default_rng(seed).permutation(n_blocks) % min(n_folds, n_blocks)
    return dealt[block], n_blocks


def cross_validated_calibration(
    p: np.ndarray, present: np.ndarray, folds: np.ndarray, method: Method
) -> np.ndarray:
    """Calibrated probabilities where each fold is calibrated by a fit on the other folds."""
    out = np.empty(p.shape, dtype=np.float32)
    for fold in np.unique(folds):
        held = folds == fold
        out[held] = fit_calibration(p[~held], present[~held], method).apply(p[held])
    return out


# --- the whole validation --------------------------------------------------------------------------


def evaluate_points(
    cube: str | os.PathLike[str] | xr.Dataset | QuerySession,
    concept: str | ConceptScorer,
    points: str | os.PathLike[str] | pd.DataFrame,
    label_field: str = "present",
    fit: Method | None = None,
    block_km: float = 10.0,
    n_folds: int = 5,
    bins: int = 10,
    versus: Sequence[str] | None = None,
    clip: ClipModel | None = None,
    style: str = DEFAULT_STYLE,
    logit_scale: float | None = None,
    calibrated: bool = False,
    save: bool = True,
    seed: int = 0,
) -> dict[str, Any]:
    """Score a concept map against presence/absence points; optionally fit and save a recalibration.

    Args:
        cube: Path of a cube, the Dataset from ``open_cube``, or a query session
            (:func:`~landprompt.query.session.open_session`: a concept in words is then scored with the
            session's scorer, its prompts encoded once a session).
        concept: The concept in plain words, or a :class:`ConceptScorer` (then ``versus``, ``clip``,
            ``style`` and ``logit_scale`` are unused).
        points: CSV file (see :func:`read_points`) or a DataFrame with lon, lat, present.
        label_field: Label column of the CSV.
        fit: ``"platt"`` or ``"isotonic"`` to learn a recalibration; ``None`` only evaluates.
        block_km: Side of the spatial blocks of the cross-validation, in km of the cube's CRS.
        n_folds: Cross-validation folds.
        bins: Equal-width bins of the ECE and reliability table.
        versus: Background prompts (default: the shipped land-cover vocabulary).
        clip: CLIP model; default: the one the cube names.
        style: Prompt template style.
        logit_scale: Softmax temperature; default: the CLIP model's.
        calibrated: Evaluate the probabilities after the cube's saved calibration of the concept.
        save: Save the fitted calibration next to the cube.
        seed: Seed of the dealing of blocks to folds.

    Returns:
        The JSON-able report: counts, query, ``metrics`` (all points), and with ``fit``
        ``cross_validation`` (``before`` / ``after`` on held-out points) and ``calibration``.

    Raises:
        BadInputError: for unreadable points, no point on valid cube pixels, labels of one class only,
            or ``fit`` together with ``calibrated``.
    """
    from landprompt.embedder.cube import cube_grid, open_cube
    from landprompt.query.session import QuerySession

    if fit is not None and calibrated:
        raise BadInputError("--fit learns a calibration from raw probabilities: leave out --calibrated")
    checks.finite("the block size (--block-km)", block_km, positive=True)
    checks.count("the number of folds (--folds)", n_folds, 2)
    checks.count("the number of bins (--bins)", bins, 1)
    table = points if isinstance(points, pd.DataFrame) else read_points(points, label_field)
    if isinstance(cube, QuerySession):
        if isinstance(concept, str) and clip is None:
            concept = cube.scorer(concept, versus, style, None, logit_scale)
        cube = cube.ds
    ds = cube if isinstance(cube, xr.Dataset) else open_cube(cube)
    scorer = ConceptScorer.of(concept, versus, clip, style, logit_scale, cube=ds)
    concept = scorer.query.concept
    scorer = scorer.with_calibration(resolve_calibration(calibrated, cube, concept))
    lon, lat = table["lon"].to_numpy(float), table["lat"].to_numpy(float)
    p, inside = sample_probability(ds, scorer, lon, lat)
    used = ~np.isnan(p)
    counts = _counts(table["present"].to_numpy(bool), inside, used, concept)
    present, p = table["present"].to_numpy(bool)[used], p[used].astype(np.float64)
    report: dict[str, Any] = {
        "format": REPORT_FORMAT,
        "cube": _source(cube),
        "points": None if isinstance(points, pd.DataFrame) else str(points),
        "query": scorer.query.to_dict(),
        "calibrated": calibrated,
        "counts": counts,
        "bins": bins,
        "metrics": binary_metrics(present, p, bins),
    }
    if fit is not None:
        x, y = transform_points(lon[used], lat[used], WGS84, cube_grid(ds).crs)
        folds, n_blocks = spatial_folds(x, y, block_km * 1000.0, n_folds, seed)
        held_out = cross_validated_calibration(p, present, folds, fit)
        report["cross_validation"] = {
            "method": fit,
            "block_km": block_km,
            "folds": int(folds.max()) + 1,
            "blocks": n_blocks,
            "before": report["metrics"],
            "after": binary_metrics(present, held_out, bins),
        }
        report["calibration"] = _fit_and_save(report, p, present, fit, scorer, cube, concept, save)
    return report


def _source(cube: str | os.PathLike[str] | xr.Dataset) -> str | None:
    if isinstance(cube, xr.Dataset):
        return cube.encoding.get("source")
    return str(cube)


def _counts(labels: np.ndarray, inside: np.ndarray, used: np.ndarray, concept: str) -> dict[str, int]:
    counts = {
        "points": int(labels.size),
        "used": int(used.sum()),
        "outside_cube": int((~inside).sum()),
        "on_nodata": int((inside & ~used).sum()),
        "present": int(labels[used].sum()),
        "absent": int((~labels[used]).sum()),
    }
    if counts["used"] == 0:
        raise BadInputError(
            f"none of the {counts['points']} points falls on a valid cube pixel "
            f"({counts['outside_cube']} outside the cube, {counts['on_nodata']} on no-data): check lon/lat"
        )
    if counts["present"] == 0 or counts["absent"] == 0:
        kind = "present" if counts["absent"] == 0 else "absent"
        raise BadInputError(
            f"all {counts['used']} usable points are {kind}: ROC AUC, average precision and a calibration "
            f"of {concept!r} are undefined without both presences and absences"
        )
    return counts


def _fit_and_save(
    report: dict[str, Any],
    p: np.ndarray,
    present: np.ndarray,
    method: Method,
    scorer: ConceptScorer,
    cube: str | os.PathLike[str] | xr.Dataset,
    concept: str,
    save: bool,
) -> dict[str, Any]:
    """Fit the calibration on every point, record the held-out metrics with it, save it if asked."""
    cv = report["cross_validation"]
    summary = {
        phase: {k: cv[phase][k] for k in ("auc", "average_precision", "ece", "brier")}
        for phase in ("before", "after")
    }
    metrics = {"held_out": summary, "block_km": cv["block_km"], "folds": cv["folds"]}
    calibration = fit_calibration(p, present, method, scorer.query, report["cube"], metrics)
    entry: dict[str, Any] = {"method": method, "parameters": calibration.parameters, "path": None}
    if save:
        path = save_calibration(calibration, calibration_path(cube_path(cube), concept))
        entry["path"] = str(path)
    return entry


# --- outputs ---------------------------------------------------------------------------------------


def write_points_report(report: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write a report as JSON (indent 2, NaN as null), atomically."""
    from landprompt.evaluate.report import write_json

    return write_json(report, Path(path))


def write_reliability_png(report: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """Draw the reliability diagram of a report (raw, and calibrated on held-out points) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from landprompt.files import atomic_path

    curves = {"raw": report["metrics"]}
    if "cross_validation" in report:
        curves[f"{report['cross_validation']['method']} (held out)"] = report["cross_validation"]["after"]
    fig, (top, bottom) = plt.subplots(
        2, 1, figsize=(5.5, 6.5), dpi=110, sharex=True, gridspec_kw={"height_ratios": [3, 1]}
    )
    top.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="perfect")
    width = 1 / report["bins"]
    for n, (name, metrics) in enumerate(curves.items()):
        table = pd.DataFrame(metrics["reliability"])
        filled = table["count"] > 0
        top.plot(
            table["mean_probability"][filled],
            table["observed"][filled],
            marker="o",
            label=f"{name}: ECE {metrics['ece']:.3f}, AUC {metrics['auc']:.3f}",
        )
        offset = (n - (len(curves) - 1) / 2) * width / len(curves)
        bottom.bar(table["lower"] + width / 2 + offset, table["count"], width=width / len(curves), label=name)
    top.set(xlim=(0, 1), ylim=(0, 1), ylabel="observed frequency of presence")
    top.set_title(f"Reliability of P({report['query']['concept']}) at {report['counts']['used']} points")
    top.legend(fontsize=8, loc="upper left")
    bottom.set(xlabel="predicted probability", ylabel="points")
    fig.tight_layout()
    with atomic_path(Path(path)) as tmp:
        fig.savefig(tmp, format="png", metadata=report.get("provenance"))  # PNG text chunks
    plt.close(fig)
    return Path(path)
