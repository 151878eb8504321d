"""The LUCAS concept benchmark: do concept maps rank the LUCAS points that have a concept first?

:func:`evaluate_concepts` labels the points of a LUCAS table with a concept suite
(:mod:`~landprompt.evaluate.concept_suite`), keeps the points on valid pixels of the cube(s), drops the
points within ``exclude_km`` of a place the pairs catalog trains on, and scores each concept at each
point per prompt setting with :class:`~landprompt.query.scorer.ConceptScorer` (the concept's text
embedding in that setting against the background vocabulary encoded in the same styles). Per concept and
setting it reports points, prevalence, ROC AUC and average precision (scikit-learn's definitions,
computed by :class:`RankedScores`) with spatial-block bootstrap intervals, and per setting the suite's
mean AUC over the scored concepts.

**Bootstrap.** Points are grouped in square blocks of ``block_km`` km (EPSG:3035). Each replicate draws
a concept's blocks with replacement, as many as it has, and weighs each point by how often its block was
drawn; replicates with one class only are skipped. The interval is the central ``confidence`` share of
the replicates (each replicate's AUC and AP from one sort of the scores: :class:`RankedScores`).
Concepts with fewer than ``min_class`` presences or absences are listed, not scored.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from landprompt import __version__
from landprompt.errors import BadInputError
from landprompt.evaluate.concept_suite import Concept, ConceptSuite, concept_labels, load_suite, read_lucas
from landprompt.evaluate.prompts import PromptSet, class_embeddings, parse_setting, parse_settings
from landprompt.files import file_sha256
from landprompt.progress import progress_bar

if TYPE_CHECKING:
    from landprompt.embedder.clip import ClipModel

REPORT_FORMAT = "landprompt-concepts-report"
DEFAULT_SETTINGS = "classname,ground,aerial,descriptive"


def evaluate_concepts(
    lucas: str | os.PathLike[str],
    cube: str | os.PathLike[str] | None = None,
    concepts: str | os.PathLike[str] | ConceptSuite | None = None,
    prompts: str | Sequence[str] = DEFAULT_SETTINGS,
    coordinates: str = "th",
    exclude_catalog: str | os.PathLike[str] | None = None,
    exclude_km: float = 2.0,
    versus: Sequence[str] | None = None,
    clip: ClipModel | None = None,
    block_km: float = 50.0,
    bootstrap: int = 200,
    confidence: float = 0.95,
    min_class: int = 10,
    seed: int = 0,
    progress: bool = False,
) -> dict[str, Any]:
    """Run the concept benchmark (module docstring); without ``cube`` only the labels are counted.

    Args:
        lucas: LUCAS table, CSV or Parquet, of any survey year(s).
        cube: An embedding cube, or a folder of cube shards (``*.zarr``).
        concepts: Suite file or suite; default: the shipped suite.
        prompts: Prompt settings, ``"classname,ground,aerial,descriptive"``; ``+`` ensembles styles.
        coordinates: ``"th"`` (theoretical point) or ``"gps"`` (GPS fix when plausible, else ``th``).
        exclude_catalog: Pairs catalog whose training places are kept away from the points.
        exclude_km: Radius of that exclusion.
        versus: Background prompts; default: the shipped land-cover vocabulary.
        clip: CLIP model of the prompts; default: the one the cube names.
        block_km: Side of the bootstrap's spatial blocks.
        bootstrap: Bootstrap replicates (0: no intervals).
        confidence: Coverage of the intervals.
        min_class: Fewest presences and absences a concept needs to be scored.
        seed: Seed of the bootstrap.
        progress: Show a progress bar while scoring.

    Returns:
        The JSON-able report (see ``docs/evaluation.md``).

    Raises:
        BadInputError: For a bad option, an unreadable table or suite, a rule naming a column the table
            lacks in a year the concept covers, or no point on a valid pixel of the cube(s).
    """
    _check_options(coordinates, exclude_km, block_km, bootstrap, confidence, min_class)
    suite = concepts if isinstance(concepts, ConceptSuite) else load_suite(concepts)
    settings = parse_settings(prompts)
    styles = suite.prompt_set().styles
    unknown = sorted({style for s in settings for style in parse_setting(s)} - set(styles))
    if unknown:
        raise BadInputError(f"unknown prompt style(s) {', '.join(unknown)}; known: {', '.join(styles)}")
    frame = read_lucas(lucas)
    labels = concept_labels(frame, suite.concepts)
    lat, lon = _coordinates(frame, coordinates)
    years = sorted(int(y) for y in np.unique(frame["survey_year"]))
    counts: dict[str, int] = {"rows": len(frame), "no_coordinates": int((~np.isfinite(lat)).sum())}
    keep = np.isfinite(lat)
    if exclude_catalog is not None:
        near = np.zeros(len(frame), dtype=bool)
        near[keep] = near_places(lat[keep], lon[keep], training_places(exclude_catalog), exclude_km)
        counts["near_training_place"] = int(near.sum())
        keep &= ~near
    report: dict[str, Any] = {
        "format": REPORT_FORMAT,
        "landprompt_version": __version__,
        "settings": {
            "lucas": str(lucas),
            "lucas_sha256": file_sha256(Path(lucas)),
            "suite": suite.source,
            "suite_version": suite.version,
            "cube": None if cube is None else str(cube),
            "coordinates": coordinates,
            "exclude_catalog": None if exclude_catalog is None else str(exclude_catalog),
            "exclude_km": exclude_km if exclude_catalog is not None else None,
            "prompts": settings,
            "versus": None if versus is None else list(versus),
            "block_km": block_km,
            "bootstrap": bootstrap,
            "confidence": confidence,
            "min_class": min_class,
            "seed": seed,
            "years": years,
        },
        "counts": counts,
    }
    if cube is None:
        counts["used"] = int(keep.sum())
        entries = [_entry(c, labels[c.key].to_numpy()[keep], min_class, years) for c in suite.concepts]
        report["concepts"] = [{k: v for k, v in e.items() if k != "_labels"} for e in entries]
        return report
    embeddings, used = _point_embeddings(cube, lon, lat, keep, counts)
    report["settings"]["cubes"] = [str(p) for p in _cube_list(cube)]
    if clip is None:
        from landprompt.embedder.cube import open_cube
        from landprompt.query.classes import clip_for_cube

        clip = clip_for_cube(open_cube(_cube_list(cube)[0]))
    from landprompt.evaluate.points import spatial_blocks

    report["settings"]["clip"] = clip.id
    x, y = _europe_xy(lon[used], lat[used])
    blocks = spatial_blocks(x, y, block_km * 1000.0)
    entries = [_entry(c, labels[c.key].to_numpy()[used], min_class, years) for c in suite.concepts]
    scored = [(c, e) for c, e in zip(suite.concepts, entries, strict=True) if e["status"] == "scored"]
    scores = _score(clip, suite.prompt_set(), [c for c, _ in scored], settings, versus, embeddings)
    with progress_bar("scoring concepts", len(scored), progress, transient=True) as advance:
        for i, (concept, entry) in enumerate(scored):
            labelled = entry.pop("_labels")
            mask = labelled >= 0
            rng_seed = [seed, suite.concepts.index(concept)]
            entry["results"] = {
                setting: concept_metrics(
                    labelled[mask] == 1,
                    scores[setting][i][mask],
                    blocks[mask],
                    bootstrap,
                    confidence,
                    rng_seed,
                )
                for setting in settings
            }
            advance()
    for entry in entries:
        entry.pop("_labels", None)
    report["concepts"] = entries
    report["mean_auc"] = {
        s: _mean([e["results"][s]["auc"] for e in entries if e["status"] == "scored"]) for s in settings
    }
    return report


def _check_options(
    coordinates: str, exclude_km: float, block_km: float, bootstrap: int, confidence: float, min_class: int
) -> None:
    if coordinates not in ("th", "gps"):
        raise BadInputError(f"coordinates must be th or gps, got {coordinates!r}")
    if not exclude_km > 0 or not block_km > 0:
        raise BadInputError(f"exclude_km and block_km must be positive, got {exclude_km} and {block_km}")
    if bootstrap < 0 or not 0 < confidence < 1 or min_class < 1:
        raise BadInputError("bootstrap must be >= 0, confidence in (0, 1), min_class >= 1")


def _coordinates(frame: pd.DataFrame, coordinates: str) -> tuple[np.ndarray, np.ndarray]:
    """Lat, lon of every row (NaN where unusable) by the ``pairs`` LUCAS source's rule."""
    from landprompt.pairs.sources.lucas import lucas_coordinates

    columns = frame if coordinates == "gps" else frame[["th_lat", "th_long"]]
    coords = lucas_coordinates(columns)
    return coords["lat"].to_numpy(float), coords["lon"].to_numpy(float)


def _entry(concept: Concept, labels: np.ndarray, min_class: int, years: Sequence[int]) -> dict[str, Any]:
    """A concept's counts and whether it has enough of both classes to be scored."""
    present, absent = int((labels == 1).sum()), int((labels == 0).sum())
    n = present + absent
    status = "scored" if min(present, absent) >= min_class else "too few presences or absences"
    if not set(concept.years) & set(years):
        status = "not surveyed in the table's years"
    entry: dict[str, Any] = {
        "key": concept.key,
        "name": concept.name,
        "group": concept.group,
        "source": concept.source,
        "points": n,
        "present": present,
        "absent": absent,
        "prevalence": present / n if n else None,
        "status": status,
        "_labels": labels,
    }
    return entry


# --- places and points -----------------------------------------------------------------------------


def training_places(catalog: str | os.PathLike[str]) -> np.ndarray:
    """(lat, lon) of the catalog's places in training blocks (and in blocks without a split)."""
    from landprompt.pairs.catalog import Catalog

    with Catalog.open(Path(catalog), read_only=True) as opened:
        places = opened.query_df(
            "SELECT l.lat, l.lon FROM locations l LEFT JOIN splits s USING (block_id) "
            "WHERE (s.split IS NULL OR s.split = 'train') AND l.lat IS NOT NULL AND l.lon IS NOT NULL"
        )
    return places[["lat", "lon"]].to_numpy(dtype=np.float64).reshape(-1, 2)


def near_places(lat: np.ndarray, lon: np.ndarray, places: np.ndarray, km: float) -> np.ndarray:
    """Whether each point lies within ``km`` (great circle) of any place (a haversine ball tree)."""
    if len(places) == 0 or len(lat) == 0:
        return np.zeros(len(lat), dtype=bool)
    from sklearn.neighbors import BallTree

    tree = BallTree(np.radians(places), metric="haversine")
    points = np.radians(np.stack([lat, lon], axis=1))
    return tree.query_radius(points, r=km / 6371.0088, count_only=True) > 0


def _cube_list(cube: str | os.PathLike[str]) -> list[Path]:
    from landprompt.query.topk import cube_paths

    return cube_paths(Path(cube))


def _point_embeddings(
    cube: str | os.PathLike[str], lon: np.ndarray, lat: np.ndarray, keep: np.ndarray, counts: dict[str, int]
) -> tuple[np.ndarray, np.ndarray]:
    """Embeddings of the kept points from the first shard holding each on a valid pixel.

    Returns:
        Embeddings [used points, d] and the ``used`` mask over all rows.

    Raises:
        BadInputError: If no kept point falls on a valid pixel.
    """
    from landprompt.embedder.cube import cube_grid, open_cube
    from landprompt.evaluate.datasets.lucas import point_embeddings

    todo = np.flatnonzero(keep)
    lonlat = np.stack([lon[todo], lat[todo]], axis=1)
    valid = np.zeros(len(todo), dtype=bool)
    inside = np.zeros(len(todo), dtype=bool)
    out: np.ndarray | None = None
    for path in _cube_list(cube):
        ds = open_cube(path)
        rows, cols = cube_grid(ds).lonlat_to_rowcol(lonlat[:, 0], lonlat[:, 1])
        inside |= cube_grid(ds).contains(rows, cols)
        wanted = np.flatnonzero(~valid)
        embedding, ok = point_embeddings(ds, lonlat[wanted])
        if out is None:
            out = np.zeros((len(todo), embedding.shape[1]), dtype=np.float32)
        out[wanted[ok]] = embedding[ok]
        valid[wanted[ok]] = True
    counts["outside_cube"] = int((~inside).sum())
    counts["on_nodata"] = int((inside & ~valid).sum())
    counts["used"] = int(valid.sum())
    if not valid.any() or out is None:
        raise BadInputError(
            f"none of the {len(todo)} LUCAS points falls on a valid pixel of {cube} "
            f"({counts['outside_cube']} outside it, {counts['on_nodata']} on no-data): "
            "is it the right table and cube?"
        )
    used = np.zeros(len(keep), dtype=bool)
    used[todo[valid]] = True
    return out[valid], used


def _europe_xy(lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    from landprompt.geo import EUROPE_CRS, WGS84, transform_points

    return transform_points(lon, lat, WGS84, EUROPE_CRS)


# --- scoring and metrics ---------------------------------------------------------------------------


def _score(
    clip: ClipModel,
    prompt_set: PromptSet,
    concepts: Sequence[Concept],
    settings: Sequence[str],
    versus: Sequence[str] | None,
    embeddings: np.ndarray,
) -> dict[str, list[np.ndarray]]:
    """Probability of every concept at every point, per setting: setting -> [concept] -> [points]."""
    from landprompt.calibration import QuerySettings
    from landprompt.query.classes import class_matrix, default_vocabulary
    from landprompt.query.scorer import ConceptScorer

    names = list(versus) if versus is not None else default_vocabulary()
    keys = [c.key for c in concepts]
    out: dict[str, list[np.ndarray]] = {}
    steps = [(s, i) for s in settings for i in range(len(concepts))]
    vectors: dict[str, np.ndarray] = {}
    backgrounds: dict[str, np.ndarray] = {}
    for setting, i in steps:
        if setting not in vectors:
            vectors[setting] = class_embeddings(clip, prompt_set, keys, setting) if keys else np.zeros(0)
            backgrounds[setting] = _background(clip, prompt_set, names, setting)
            out[setting] = []
        concept = concepts[i]
        other = np.array([n.strip().lower() != concept.name.strip().lower() for n in names])
        query = QuerySettings(
            concept.name, None if versus is None else tuple(versus), setting, clip.logit_scale, clip.id
        )
        scorer = ConceptScorer(class_matrix(vectors[setting][i], backgrounds[setting][other]), query)
        out[setting].append(scorer.score(embeddings).astype(np.float64))
    return out


def _background(clip: ClipModel, prompt_set: PromptSet, names: Sequence[str], setting: str) -> np.ndarray:
    """The background prompts in a setting: each style's templates (sentence styles: the names alone)."""
    rows = []
    for style in parse_setting(setting):
        templates = prompt_set.templates.get(style) or prompt_set.templates["classname"]
        rows.append(clip.encode_prompts(list(names), templates))
    mean = np.mean(rows, axis=0)
    return (mean / np.linalg.norm(mean, axis=1, keepdims=True)).astype(np.float32)


def concept_metrics(
    present: np.ndarray,
    scores: np.ndarray,
    blocks: np.ndarray,
    bootstrap: int = 200,
    confidence: float = 0.95,
    seed: int | Sequence[int] = 0,
) -> dict[str, Any]:
    """ROC AUC and average precision with spatial-block bootstrap intervals (module docstring).

    Args:
        present: Labels [n] (True: present).
        scores: Scores [n].
        blocks: Spatial block of each point [n].
        bootstrap: Replicates (0: no intervals).
        confidence: Coverage of the intervals.
        seed: Seed of the block draws.

    Returns:
        ``auc``, ``average_precision``, ``auc_interval``, ``ap_interval`` ([low, high] or None),
        ``replicates`` (those with both classes) and ``blocks``.
    """
    y, p = np.asarray(present, dtype=bool), np.asarray(scores, dtype=np.float64)
    _, block = np.unique(blocks, return_inverse=True)
    n_blocks = int(block.max()) + 1
    rng = np.random.default_rng(seed)
    curves = RankedScores(y, p)
    aucs, aps = [], []
    for _ in range(bootstrap):
        weight = np.bincount(rng.integers(0, n_blocks, n_blocks), minlength=n_blocks)[block]
        if not (weight * y).any() or not (weight * ~y).any():
            continue
        auc, ap = curves.weighted_metrics(weight)
        aucs.append(auc)
        aps.append(ap)
    tail = (1 - confidence) / 2 * 100
    auc, ap = curves.weighted_metrics(np.ones(y.size))
    return {
        "auc": auc,
        "average_precision": ap,
        "auc_interval": np.percentile(aucs, [tail, 100 - tail]).tolist() if aucs else None,
        "ap_interval": np.percentile(aps, [tail, 100 - tail]).tolist() if aps else None,
        "replicates": len(aucs),
        "blocks": n_blocks,
    }


class RankedScores:
    """Scores sorted once, so that each bootstrap replicate's AUC and AP cost two ``bincount`` s.

    With weights ``w`` (a replicate's block draws) and the distinct scores in decreasing order, ``pos_g`` /
    ``neg_g`` the weight of the presences / absences scoring ``g`` and ``tp_g`` / ``fp_g`` their running
    sums: ``AUC = sum_g pos_g (N - fp_g + neg_g / 2) / (P N)`` (ties count half) and
    ``AP = sum_g pos_g / P * tp_g / (tp_g + fp_g)``: the values of scikit-learn's ``roc_auc_score`` and
    ``average_precision_score`` with ``sample_weight=w`` (tested against them), at a twentieth of their
    time for a 200-replicate bootstrap (they sort and validate the points again at each call).
    """

    def __init__(self, present: np.ndarray, scores: np.ndarray) -> None:
        self.order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
        ordered = np.asarray(scores, dtype=np.float64)[self.order]
        self.group = np.r_[0, np.cumsum(ordered[1:] != ordered[:-1])]
        self.present = np.asarray(present, dtype=bool)[self.order]
        self.groups = int(self.group[-1]) + 1

    def weighted_metrics(self, weight: np.ndarray) -> tuple[float, float]:
        """(ROC AUC, average precision) of the scores with these point weights (both classes weighed)."""
        w = np.asarray(weight, dtype=np.float64)[self.order]
        pos = np.bincount(self.group, weights=w * self.present, minlength=self.groups)
        neg = np.bincount(self.group, weights=w * ~self.present, minlength=self.groups)
        tp, fp = np.cumsum(pos), np.cumsum(neg)
        total_pos, total_neg = tp[-1], fp[-1]
        auc = float(np.sum(pos * (total_neg - fp + neg / 2)) / (total_pos * total_neg))
        precision = np.divide(tp, tp + fp, out=np.zeros_like(tp), where=(tp + fp) > 0)
        return auc, float(np.sum(pos * precision) / total_pos)


def _mean(values: Sequence[float]) -> float | None:
    return float(np.mean(values)) if values else None
