"""Batch export: probability maps and concept analytics for many concepts, from a YAML file.

A batch file names its ``kind``, a cube, an output folder, the concepts and what the kind needs (see
``examples/batch_maps.yaml``):

- ``map`` (the default): probability maps, concepts x areas -> COG / PNG / HTML (:class:`MapJob`);
- ``change``: change maps from ``cube`` to ``cube_b``, concepts x areas -> COGs / PNG (:class:`ChangeJob`);
- ``aggregate``: indicators per polygon of ``units``, one table per concept -> CSV / GeoJSON
  (:class:`AggregateJob`);
- ``points``: validation against the observations in ``points``, one report per concept -> JSON / PNG,
  and with ``fit`` the calibration saved next to the cube (:class:`PointsJob`).

:func:`load_jobs` validates the whole file before anything runs, :func:`plan` expands it into jobs, and
:func:`run_jobs` runs the jobs whose outputs are missing, in process or on a Dask distributed cluster.
Outputs go to ``<out>/<group>/<concept-slug>.<ext>``, the group being the area (map, change), the polygon
file's name (aggregate) or the points file's name (points).

Every output is written atomically, so a file that exists is complete: a re-run skips finished jobs and
writes only the outputs a job lacks. A job ships paths, not arrays: it opens the cube itself and loads
CLIP once per process (cached by model and weights), and the background prompts are encoded once per
(model, background, style) and shared by every concept that uses them.

Example:
    >>> spec = load_jobs("examples/batch_maps.yaml")  # doctest: +SKIP
    >>> report = run_jobs(spec, scheduler="local")  # doctest: +SKIP
    >>> report.summary()  # doctest: +SKIP
    '6 done, 0 skipped, 0 failed'
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar, cast

import numpy as np
import yaml

from landprompt.batch.schema import (
    AreaKeys,
    BatchFile,
    ClipKeys,
    ConceptKeys,
    FitMethod,
    Kind,
    MapDtype,
    parse_batch,
)
from landprompt.distributed import run_each
from landprompt.embedder.clip import recorded_clip
from landprompt.embedder.cube import open_cube
from landprompt.errors import BadInputError, LandpromptError, did_you_mean
from landprompt.files import slugify
from landprompt.geo import BBox, Grid, parse_bbox
from landprompt.progress import progress_bar
from landprompt.query.maps import HTML_MAX_PIXELS, check_html_size, write_cog, write_html, write_png
from landprompt.query.probability import DEFAULT_STYLE, background_embeddings, probability_map

if TYPE_CHECKING:
    import xarray as xr

    from landprompt.calibration import QuerySettings
    from landprompt.embedder.clip import ClipModel
    from landprompt.query.scorer import ConceptScorer

Format = Literal["cog", "png", "html", "csv", "geojson", "json"]

#: File suffix of each output format of a map.
SUFFIXES: dict[str, str] = {"cog": ".tif", "png": ".png", "html": ".html"}
#: Output formats each kind of job can write, and those it writes by default.
KIND_FORMATS: dict[str, tuple[Format, ...]] = {
    "map": ("cog", "png", "html"),
    "change": ("cog", "png"),
    "aggregate": ("csv", "geojson"),
    "points": ("json", "png"),
}
DEFAULT_FORMATS: dict[str, tuple[Format, ...]] = {**KIND_FORMATS, "aggregate": ("csv",)}
#: Default ``threshold`` of the kinds that take one.
DEFAULT_THRESHOLDS = {"change": 0.2, "aggregate": 0.5}
#: Name (output folder) of the area that is the whole cube, used when a batch file lists no areas.
WHOLE_CUBE = "all"
#: Threads of the one-worker Dask cluster ``scheduler="local"`` starts in this process.
LOCAL_THREADS = min(4, os.cpu_count() or 1)

_T = TypeVar("_T")
# --- specification ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClipSpec:
    """The CLIP text tower of a batch: an open_clip model name and a pretrained tag or weights file."""

    model: str
    pretrained: str | None = None


@dataclass(frozen=True)
class Concept:
    """A concept to map.

    Attributes:
        name: Output name (its slug names the files).
        prompt: The concept in plain words.
        versus: Background prompts; ``None`` for the shipped land-cover vocabulary.
    """

    name: str
    prompt: str
    versus: tuple[str, ...] | None = None

    @property
    def slug(self) -> str:
        """File-name form of the name: lower case, runs of other characters as ``-``."""
        return slugify(self.name)


@dataclass(frozen=True)
class Area:
    """A named lon/lat window of the cube; ``bbox=None`` is the whole cube."""

    name: str
    bbox: BBox | None = None

    @property
    def slug(self) -> str:
        """Folder-name form of the name."""
        return slugify(self.name)


@dataclass(frozen=True)
class JobSpec:
    """A validated batch: which maps to make from which cube, and where to write them."""

    cube: Path
    out: Path
    clip: ClipSpec
    concepts: tuple[Concept, ...]
    areas: tuple[Area, ...] = (Area(WHOLE_CUBE),)
    style: str = DEFAULT_STYLE
    formats: tuple[Format, ...] = ("cog", "png", "html")
    dtype: MapDtype = "float32"
    kind: Kind = "map"
    cube_b: Path | None = None
    units: Path | None = None
    id_field: str | None = None
    points: Path | None = None
    label_field: str = "present"
    threshold: float | None = None
    calibrated: bool = False
    fit: FitMethod | None = None
    block_km: float = 10.0

    @classmethod
    def from_dict(cls, data: Any, base_dir: str | Path = ".") -> JobSpec:
        """Validate a parsed batch file; relative paths are relative to ``base_dir``.

        Raises:
            BadInputError: naming the offending key, e.g. ``areas[1].bbox: ...``.
        """
        return _parse_spec(data, Path(base_dir))


@dataclass(frozen=True)
class MapJob:
    """One concept over one area, and the files it writes."""

    key: str
    cube: Path
    clip: ClipSpec
    prompt: str
    versus: tuple[str, ...] | None
    bbox: BBox | None
    style: str
    dtype: MapDtype
    outputs: Mapping[Format, Path]
    title: str
    calibrated: bool = False

    def missing(self) -> dict[Format, Path]:
        """The outputs not written yet."""
        return {fmt: path for fmt, path in self.outputs.items() if not path.exists()}


@dataclass(frozen=True)
class AnalyticsJob:
    """One concept of a change, aggregate or points batch, and the files it writes (by output name)."""

    key: str
    cube: Path
    clip: ClipSpec
    prompt: str
    versus: tuple[str, ...] | None
    style: str
    outputs: Mapping[str, Path]
    title: str

    def missing(self) -> dict[str, Path]:
        """The outputs not written yet."""
        return {name: path for name, path in self.outputs.items() if not path.exists()}


@dataclass(frozen=True)
class ChangeJob(AnalyticsJob):
    """A change map of one concept over one area: outputs ``diff``, ``class`` (COGs) and ``png``."""

    cube_b: Path
    bbox: BBox | None
    threshold: float
    calibrated: bool


@dataclass(frozen=True)
class AggregateJob(AnalyticsJob):
    """Indicators of one concept per polygon: outputs ``csv`` and ``geojson``."""

    units: Path
    id_field: str | None
    threshold: float
    calibrated: bool


@dataclass(frozen=True)
class PointsJob(AnalyticsJob):
    """Validation of one concept at field points: outputs ``json``, ``png`` and (with fit) ``calibration``."""

    points: Path
    label_field: str
    fit: FitMethod | None
    block_km: float


Job = MapJob | ChangeJob | AggregateJob | PointsJob


@dataclass
class JobResult:
    """What one job did: the outputs it wrote, or the error that stopped it."""

    key: str
    written: tuple[str, ...] = ()
    error: str | None = None


@dataclass
class JobReport:
    """Outcome of :func:`run_jobs`: job keys (``<area>/<concept-slug>``) done, skipped and failed."""

    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """Whether no job failed."""
        return not self.failed

    def add(self, result: JobResult) -> None:
        """Record a job's result."""
        if result.error is None:
            self.done.append(result.key)
        else:
            self.failed[result.key] = result.error

    def summary(self) -> str:
        """One line: ``"4 done, 2 skipped, 0 failed"``."""
        return f"{len(self.done)} done, {len(self.skipped)} skipped, {len(self.failed)} failed"


# --- loading and planning --------------------------------------------------------------------------


def load_jobs(path: str | Path) -> JobSpec:
    """Read and validate a batch file (YAML); nothing is written.

    Relative paths in the file (cube, out, GeoJSON areas, weights files) are relative to the file's folder.

    Raises:
        BadInputError: if the file is missing or not YAML, or a key is unknown, missing or invalid; the
            message names the file and the key.
    """
    path = Path(path)
    if not path.is_file():
        raise BadInputError(f"batch file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise BadInputError(f"{path} is not valid YAML: {' '.join(str(exc).split())}") from None
    try:
        return JobSpec.from_dict(data, path.parent)
    except BadInputError as exc:
        raise type(exc)(f"{path}: {exc}") from None


def plan(spec: JobSpec) -> list[Job]:
    """Expand a batch into jobs.

    Maps and change maps: one job per area and concept (area by area); indicators and validations: one
    job per concept.
    """
    if spec.kind == "map":
        return [_job(spec, area, concept) for area in spec.areas for concept in spec.concepts]
    if spec.kind == "change":
        return [_change_job(spec, area, concept) for area in spec.areas for concept in spec.concepts]
    if spec.kind == "aggregate":
        return [_aggregate_job(spec, concept) for concept in spec.concepts]
    return [_points_job(spec, concept) for concept in spec.concepts]


def _job(spec: JobSpec, area: Area, concept: Concept) -> MapJob:
    folder = spec.out / area.slug
    return MapJob(
        **_common(spec, area.slug, concept, f"P({concept.prompt}) - {area.name}"),
        bbox=area.bbox,
        dtype=spec.dtype,
        outputs={fmt: folder / f"{concept.slug}{SUFFIXES[fmt]}" for fmt in spec.formats},
        calibrated=spec.calibrated,
    )


def _common(spec: JobSpec, group: str, concept: Concept, title: str) -> dict[str, Any]:
    """The fields every analytics job has."""
    return {
        "key": f"{group}/{concept.slug}",
        "cube": spec.cube,
        "clip": spec.clip,
        "prompt": concept.prompt,
        "versus": concept.versus,
        "style": spec.style,
        "title": title,
    }


def _change_job(spec: JobSpec, area: Area, concept: Concept) -> ChangeJob:
    from landprompt.query.change import change_paths

    paths = change_paths(spec.out / area.slug / f"{concept.slug}.tif")
    names = [name for fmt in spec.formats for name in (("diff", "class") if fmt == "cog" else (fmt,))]
    return ChangeJob(
        **_common(spec, area.slug, concept, f"change in P({concept.prompt}) - {area.name}"),
        outputs={name: paths[name] for name in names},
        cube_b=cast(Path, spec.cube_b),
        bbox=area.bbox,
        threshold=_threshold(spec),
        calibrated=spec.calibrated,
    )


def _aggregate_job(spec: JobSpec, concept: Concept) -> AggregateJob:
    units = cast(Path, spec.units)
    group = slugify(units.stem) or "units"
    suffixes = {"csv": ".csv", "geojson": ".geojson"}
    return AggregateJob(
        **_common(spec, group, concept, f"P({concept.prompt}) per polygon of {units.name}"),
        outputs={fmt: spec.out / group / f"{concept.slug}{suffixes[fmt]}" for fmt in spec.formats},
        units=units,
        id_field=spec.id_field,
        threshold=_threshold(spec),
        calibrated=spec.calibrated,
    )


def _points_job(spec: JobSpec, concept: Concept) -> PointsJob:
    from landprompt.calibration import calibration_path

    points = cast(Path, spec.points)
    group = slugify(points.stem) or "points"
    suffixes = {"json": ".json", "png": "_reliability.png"}
    outputs: dict[str, Path] = {
        fmt: spec.out / group / f"{concept.slug}{suffixes[fmt]}" for fmt in spec.formats
    }
    if spec.fit is not None:
        outputs["calibration"] = calibration_path(spec.cube, concept.prompt)
    return PointsJob(
        **_common(spec, group, concept, f"P({concept.prompt}) at {points.name}"),
        outputs=outputs,
        points=points,
        label_field=spec.label_field,
        fit=spec.fit,
        block_km=spec.block_km,
    )


def _threshold(spec: JobSpec) -> float:
    return spec.threshold if spec.threshold is not None else DEFAULT_THRESHOLDS[spec.kind]


# --- running ---------------------------------------------------------------------------------------


def run_jobs(
    spec: JobSpec, scheduler: str | None = None, progress: bool = True, *, overwrite: bool = False
) -> JobReport:
    """Make every map of a batch that is not made yet.

    Jobs whose outputs all exist are skipped; a job with some outputs writes only the missing ones. A
    failing job is reported and the others go on.

    Args:
        spec: The batch, from :func:`load_jobs`.
        scheduler: ``None`` runs the jobs here, one after the other. ``"local"`` starts a Dask
            ``LocalCluster`` in this process, one worker with :data:`LOCAL_THREADS` threads sharing one
            CLIP model (starts in milliseconds; map reads, CLIP, softmax and GDAL release the GIL).
            Anything else is the address of a running Dask scheduler (``tcp://host:8786``), e.g. of
            ``dask scheduler`` plus ``dask worker --nworkers N`` processes on one or more machines.
        progress: Show a progress bar.
        overwrite: Rewrite every output, even existing ones.

    Returns:
        The report of jobs done, skipped and failed (with their error messages).
    """
    report = JobReport()
    pending = []
    for job in plan(spec):
        if overwrite or job.missing():
            pending.append(job)
        else:
            report.skipped.append(job.key)
    if not pending:
        return report
    with progress_bar("maps", len(pending), enabled=progress) as advance:
        results = run_each(
            run_job, pending, scheduler, threads=LOCAL_THREADS, on_error=_died, overwrite=overwrite
        )
        for result in results:
            report.add(result)
            advance(note=f"{result.key} {'[red]failed[/red]' if result.error else 'done'}")
    return report


def _died(job: Job, exc: Exception) -> JobResult:
    """The result of a job whose task itself died (e.g. its worker was killed)."""
    return JobResult(job.key, error=_describe(exc))


def run_job(job: Job, overwrite: bool = False) -> JobResult:
    """Run one job: compute its product and write its missing outputs (all of them with ``overwrite``).

    Never raises: an error is returned in :attr:`JobResult.error`, so one failure does not stop a batch.
    """
    outputs = job.outputs if overwrite else job.missing()
    todo: dict[str, Path] = {str(name): path for name, path in outputs.items()}
    try:
        if isinstance(job, MapJob):
            da = _probability(job)
            for fmt, path in todo.items():
                _write(cast(Format, fmt), da, path, job)
        elif isinstance(job, ChangeJob):
            _run_change(job, todo)
        elif isinstance(job, AggregateJob):
            _run_aggregate(job, todo)
        else:
            _run_points(job, todo)
    except Exception as exc:  # reported per job, the batch goes on
        return JobResult(job.key, error=_describe(exc))
    return JobResult(job.key, written=tuple(todo))


# --- one job, in its worker ------------------------------------------------------------------------

_LOCK = threading.RLock()  # one model load / text encoding at a time per process (threaded workers)
_PYPLOT_LOCK = threading.Lock()  # write_png draws with pyplot, which is not thread-safe


def _probability(job: MapJob) -> xr.DataArray:
    """The job's probability map; the background encoding is shared with the other concepts."""
    clip = _clip(job.clip)
    names, vectors = _background(job.clip, job.versus, job.style)
    keep = np.array([name.lower() != job.prompt.lower() for name in names])
    da = probability_map(
        open_cube(job.cube), job.prompt, versus=vectors[keep], bbox=job.bbox, clip=clip, style=job.style
    )
    da.attrs.update(clip=clip.id, job=job.key)
    if job.calibrated:
        from landprompt.calibration import apply_calibration, calibration_path, load_calibration

        calibration = load_calibration(calibration_path(job.cube, job.prompt))
        calibration.check(_query(job.prompt, job.versus, job.style, clip))
        da = apply_calibration(da, calibration)
    calibrated = str(calibration_path(job.cube, job.prompt)) if job.calibrated else None
    da.attrs.update(_provenance(job, calibrated))
    return da


def _provenance(job: MapJob | AnalyticsJob, calibration: str | None) -> dict[str, str]:
    """Provenance tags of a job's outputs (its background without the concept, as it was scored)."""
    from landprompt.query.provenance import provenance_tags, with_cube_b

    names, _ = _background(job.clip, job.versus, job.style)
    background = [name for name in names if name.lower() != job.prompt.lower()]
    tags = provenance_tags(job.cube, _clip(job.clip), job.prompt, background, job.style, calibration)
    return with_cube_b(tags, job.cube_b) if isinstance(job, ChangeJob) else tags


def _query(prompt: str, versus: tuple[str, ...] | None, style: str, clip: ClipModel) -> QuerySettings:
    from landprompt.calibration import QuerySettings

    return QuerySettings(prompt, versus, style, clip.logit_scale, clip.id)


def _scorer(job: AnalyticsJob) -> ConceptScorer:
    """The job's concept scorer; the background encoding is shared with the other concepts."""
    from landprompt.query.probability import class_matrix, concept_embedding
    from landprompt.query.scorer import ConceptScorer

    clip = _clip(job.clip)
    names, vectors = _background(job.clip, job.versus, job.style)
    keep = np.array([name.lower() != job.prompt.lower() for name in names])
    with _LOCK:
        concept = concept_embedding(clip, job.prompt, job.style)
    return ConceptScorer(
        class_matrix(concept, vectors[keep]), _query(job.prompt, job.versus, job.style, clip)
    )


def _run_change(job: ChangeJob, todo: dict[str, Path]) -> None:
    from landprompt.query.change import change_map, write_change

    ds = change_map(
        job.cube, job.cube_b, _scorer(job), threshold=job.threshold, bbox=job.bbox, calibration=job.calibrated
    )
    tags = _provenance(job, "cube" if job.calibrated else None)
    with _PYPLOT_LOCK:
        write_change(ds, todo, title=job.title, tags=tags)


def _run_aggregate(job: AggregateJob, todo: dict[str, Path]) -> None:
    from landprompt.query.aggregate import aggregate, read_units, write_indicators

    units = read_units(job.units, job.id_field)
    table = aggregate(job.cube, _scorer(job), units, threshold=job.threshold, calibration=job.calibrated)
    tags = _provenance(job, "cube" if job.calibrated else None)
    for path in todo.values():
        write_indicators(table, path, units, metadata=tags)


def _run_points(job: PointsJob, todo: dict[str, Path]) -> None:
    from landprompt.evaluate.points import evaluate_points, write_points_report, write_reliability_png

    report = evaluate_points(
        job.cube,
        _scorer(job),
        job.points,
        job.label_field,
        fit=job.fit,
        block_km=job.block_km,
        save="calibration" in todo,
    )
    report["provenance"] = _provenance(job, None)
    if "json" in todo:
        write_points_report(report, todo["json"])
    if "png" in todo:
        with _PYPLOT_LOCK:
            write_reliability_png(report, todo["png"])


def _clip(spec: ClipSpec) -> ClipModel:
    """The CLIP model of a spec, loaded once per process."""
    with _LOCK:
        return _load_clip(spec)


@lru_cache(maxsize=4)
def _load_clip(spec: ClipSpec) -> ClipModel:
    from landprompt.embedder.clip import load_clip

    return load_clip(spec.model, spec.pretrained)


def _background(
    clip: ClipSpec, versus: tuple[str, ...] | None, style: str
) -> tuple[tuple[str, ...], np.ndarray]:
    """Background prompts and their embeddings, encoded once per process and (model, versus, style)."""
    with _LOCK:
        return _encode_background(clip, versus, style)


@lru_cache(maxsize=64)
def _encode_background(
    clip: ClipSpec, versus: tuple[str, ...] | None, style: str
) -> tuple[tuple[str, ...], np.ndarray]:
    from landprompt.query.probability import default_vocabulary

    names = tuple(name.strip() for name in (versus or default_vocabulary()))
    return names, background_embeddings(_clip(clip), "", names, style)


def _write(fmt: Format, da: xr.DataArray, path: Path, job: MapJob) -> None:
    if fmt == "cog":
        write_cog(da, path, dtype=job.dtype)
    elif fmt == "png":
        with _PYPLOT_LOCK:
            write_png(da, path, title=job.title)
    else:
        write_html(da, path, title=job.title)


def _describe(exc: BaseException) -> str:
    """One line for a report: the message of user errors, the type and message of others."""
    text = " ".join(str(exc).split())
    return text if isinstance(exc, LandpromptError) else f"{type(exc).__name__}: {text}"


# --- validation ------------------------------------------------------------------------------------


@contextmanager
def _at(key: str | int) -> Iterator[None]:
    """Prefix the message of a :class:`BadInputError` raised inside with its key path (``areas[1].bbox``)."""
    try:
        yield
    except BadInputError as exc:
        keys, message = (key, *getattr(exc, "keys", ())), getattr(exc, "message", str(exc))
        path = "".join(f"[{k}]" if isinstance(k, int) else f".{k}" for k in keys).lstrip(".")
        error = type(exc)(f"{path}: {message}")
        error.keys, error.message = keys, message  # type: ignore[attr-defined]
        raise error from None


def _parse_spec(data: Any, base: Path) -> JobSpec:
    """The batch's keys checked by :class:`~landprompt.batch.schema.BatchFile`, then against the data."""
    from landprompt.embedder.cube import cube_grid

    keys = parse_batch(data)
    with _at("cube"):
        cube = _path(keys.cube, base)
        ds = open_cube(cube)
        grid = cube_grid(ds)
    inputs = _parse_inputs(keys, base, ds)
    with _at("out"):
        out = _path(keys.out, base)
        if out.exists() and not out.is_dir():
            raise BadInputError(f"{out} exists and is not a folder")
    with _at("clip"):
        clip = _parse_clip(keys.clip, base) if keys.clip is not None else _clip_of_cube(ds.attrs)
    defaults = keys.defaults
    with _at("defaults"):
        style = _parse_style(defaults.style or DEFAULT_STYLE)
        formats = _parse_formats(
            list(DEFAULT_FORMATS[keys.kind]) if defaults.formats is None else defaults.formats,
            KIND_FORMATS[keys.kind],
        )
    versus = None if defaults.versus is None else tuple(defaults.versus)
    with _at("concepts"):
        concepts = _parse_concepts(keys.concepts, versus)
    with _at("areas"):
        areas = _parse_areas(keys.areas, base, grid, "html" in formats)
    options = {name: getattr(defaults, name) for name in ("threshold", "calibrated", "fit", "block_km")}
    spec = JobSpec(
        cube, out, clip, concepts, areas, style, formats, defaults.dtype, keys.kind, **inputs, **options
    )
    if spec.calibrated:
        with _at("defaults"), _at("calibrated"):
            _check_calibrations(spec)
    return spec


def _parse_inputs(keys: BatchFile, base: Path, ds: xr.Dataset) -> dict[str, Any]:
    """The inputs a kind reads besides the cube, checked: the later cube, the polygons or the points."""
    if keys.kind == "change":
        from landprompt.query.change import check_same_grid

        with _at("cube_b"):
            cube_b = _path(_required(keys.cube_b), base)
            check_same_grid(ds, open_cube(cube_b))
        return {"cube_b": cube_b}
    if keys.kind == "aggregate":
        from landprompt.query.aggregate import read_units

        with _at("units"):
            units = _path(_required(keys.units), base)
            read_units(units, keys.id_field)
        return {"units": units, "id_field": keys.id_field}
    if keys.kind == "points":
        from landprompt.evaluate.points import read_points

        with _at("points"):
            points = _path(_required(keys.points), base)
            read_points(points, keys.label_field)
        return {"points": points, "label_field": keys.label_field}
    return {}


def _check_calibrations(spec: JobSpec) -> None:
    """Every concept of a calibrated batch has a calibration for each cube it reads."""
    from landprompt.calibration import calibration_path, load_calibration

    cubes = [spec.cube] + ([spec.cube_b] if spec.cube_b is not None else [])
    for concept in spec.concepts:
        for cube in cubes:
            load_calibration(calibration_path(cube, concept.prompt))


def _parse_clip(keys: ClipKeys, base: Path) -> ClipSpec:
    with _at("model"):
        _check_clip_name(keys.model)
    pretrained = keys.pretrained
    if pretrained is not None and _path(pretrained, base).is_file():
        pretrained = str(_path(pretrained, base))
    return ClipSpec(keys.model, pretrained)


def _clip_of_cube(attrs: Mapping[str, Any]) -> ClipSpec:
    named = recorded_clip(attrs)
    if named is None:
        raise BadInputError("the cube does not name its CLIP model: add clip: {model: NAME, pretrained: TAG}")
    return ClipSpec(*named)


def _check_clip_name(model: str) -> None:
    """Check an open_clip model name without loading it (``hf-hub:``/``local-dir:`` names pass)."""
    import open_clip

    from landprompt.embedder import clip  # noqa: F401  (registers landprompt-tiny)

    if ":" in model or model in open_clip.list_models():
        return
    raise BadInputError(
        f"unknown CLIP model {model!r}{did_you_mean(model, open_clip.list_models(), n=3, show=str)}"
    )


def _parse_concepts(items: list[ConceptKeys], default_versus: tuple[str, ...] | None) -> tuple[Concept, ...]:
    concepts = [_item(i, _parse_concept, item, default_versus) for i, item in enumerate(items)]
    _check_unique([c.slug for c in concepts], "concept names")
    return tuple(concepts)


def _parse_concept(keys: ConceptKeys, default_versus: tuple[str, ...] | None) -> Concept:
    prompt = cast(str, keys.prompt or keys.name)  # the schema wants one of them
    name = keys.name or prompt
    if not slugify(name):
        with _at("name"):
            raise BadInputError(f"{name!r} has no letter or digit to name its files by")
    versus = default_versus
    if "versus" in keys.model_fields_set:
        versus = None if keys.versus is None else tuple(keys.versus)
    if versus is not None and all(v.lower() == prompt.lower() for v in versus):
        raise BadInputError(f"the background (versus) of {prompt!r} holds nothing but the concept itself")
    return Concept(name, prompt, versus)


def _parse_areas(items: list[AreaKeys] | None, base: Path, grid: Grid, html: bool) -> tuple[Area, ...]:
    if items is None:
        areas = [Area(WHOLE_CUBE)]
    else:
        areas = [_item(i, _parse_area, item, base, grid, html) for i, item in enumerate(items)]
    _check_unique([a.slug for a in areas], "area names")
    if html and items is None:
        _check_html(grid.shape)
    return tuple(areas)


def _parse_area(keys: AreaKeys, base: Path, grid: Grid, html: bool) -> Area:
    if not slugify(keys.name):
        with _at("name"):
            raise BadInputError(f"{keys.name!r} has no letter or digit to name a folder by")
    if keys.bbox is None:
        shape = grid.shape
        bbox = None
    else:
        with _at("bbox"):
            bbox = _parse_bbox(keys.bbox, base)
            rows, cols = grid.slices_of_bbox(bbox)
            shape = (rows.stop - rows.start, cols.stop - cols.start)
    if html:
        _check_html(shape)
    return Area(keys.name, bbox)


def _parse_bbox(value: Any, base: Path) -> BBox:
    if isinstance(value, str) and value.strip().lower().endswith((".json", ".geojson")):
        return parse_bbox(_path(value, base))
    if isinstance(value, str) or (
        isinstance(value, list) and all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
    ):
        return parse_bbox(value)
    raise BadInputError(f"give 'minlon,minlat,maxlon,maxlat' or a GeoJSON file, got {value!r}")


def _check_html(shape: tuple[int, int]) -> None:
    try:
        check_html_size(shape, HTML_MAX_PIXELS)
    except BadInputError as exc:
        raise BadInputError(f"{exc}; or drop html from defaults.formats") from None


def _parse_style(value: Any) -> str:
    from landprompt.embedder.prompts import get_templates

    with _at("style"):
        get_templates(value)
    return value


def _parse_formats(value: Any, choices: tuple[Format, ...]) -> tuple[Format, ...]:
    with _at("formats"):
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list) or not items:
            raise BadInputError(f"give a list of formats out of {', '.join(choices)}")
        formats = tuple(_item(i, _parse_choice, v, choices, "format") for i, v in enumerate(items))
        _check_unique(list(formats), "formats")
    return cast(tuple[Format, ...], formats)


def _item(index: int, parse: Callable[..., _T], *args: Any) -> _T:
    """``parse(*args)`` for list item ``index``: errors name it (``formats[1]: ...``)."""
    with _at(index):
        return parse(*args)


def _parse_choice(value: Any, choices: tuple[str, ...], what: str) -> str:
    if value not in choices:
        raise BadInputError(f"unknown {what} {value!r}; choose one of {', '.join(choices)}")
    return str(value)


def _required(value: str | None) -> str:
    if value is None:
        raise BadInputError("required key is missing")
    return value


def _path(value: str, base: Path) -> Path:
    return (base / Path(value).expanduser()).absolute()


def _check_unique(names: list[str], what: str) -> None:
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise BadInputError(f"{what} must be unique (after lower-casing and slugging); repeated: {repeated}")
