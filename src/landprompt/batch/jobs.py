"""The jobs of a batch, one class per kind: what each makes from a concept (and an area) and where it writes.

Outputs go to ``<out>/<group>/<concept-slug>.<ext>``, the group being the area (map, change), the polygon
file's name (aggregate) or the points file's name (points). A job ships paths, not arrays: in its worker it
loads CLIP once per process (cached by model and weights), and the cube's query session encodes each prompt
once, so concepts share their background's encoding.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, cast

from landprompt.calibration import Calibration, calibration_path, resolve_calibration
from landprompt.query.change import CHANGE_OUTPUTS
from landprompt.query.scorer import ConceptScorer

if TYPE_CHECKING:
    import xarray as xr

    from landprompt.batch.spec import ClipKeys, ConceptKeys, JobSpec
    from landprompt.embedder.clip import ClipModel
    from landprompt.geo import BBox
    from landprompt.query.session import Session

_LOCK = threading.Lock()  # one model load or text encoding at a time per process (threaded workers)
_PYPLOT_LOCK = threading.Lock()  # the PNGs are drawn with pyplot, which is not thread-safe


@dataclass(frozen=True)
class Job(ABC):
    """One concept of a batch over one area (maps, change maps) or one input file, and the files it writes.

    Attributes:
        group: The output folder: the area's slug, or the polygon or points file's.
        where: The area's or the file's name, in titles.
        bbox: The area's lon/lat box (``None``: the whole cube).
    """

    spec: JobSpec
    concept: ConceptKeys
    group: str
    where: str
    bbox: BBox | None = None
    #: File-name suffix of each output; the outputs of a format, where they are not the one of its name;
    #: the title of the PNG and HTML outputs.
    SUFFIXES: ClassVar[dict[str, str]] = {}
    OUTPUTS_OF: ClassVar[dict[str, tuple[str, ...]]] = {}
    TITLE: ClassVar[str] = "P({prompt}) - {where}"

    @property
    def prompt(self) -> str:
        """The concept in plain words."""
        return self.concept.prompt

    @property
    def versus(self) -> tuple[str, ...] | None:
        """The concept's background prompts (``None``: the shipped vocabulary)."""
        return self.spec.versus_of(self.concept)

    @property
    def background(self) -> list[str]:
        """The prompts the concept competes with (:func:`~landprompt.query.classes.background_prompts`)."""
        from landprompt.query.classes import background_prompts

        return background_prompts([self.prompt], self.versus)

    @property
    def threshold(self) -> float:
        """The batch's threshold (change maps and indicators)."""
        return self.spec.threshold

    @property
    def key(self) -> str:
        """``<group>/<concept-slug>``, naming the job in the report."""
        return f"{self.group}/{self.concept.slug}"

    @property
    def outputs(self) -> dict[str, Path]:
        """Output name -> path, for each format of the batch."""
        folder = self.spec.out / self.group
        names = [name for fmt in self.spec.formats for name in self.OUTPUTS_OF.get(fmt, (fmt,))]
        return {name: folder / f"{self.concept.slug}{self.SUFFIXES[name]}" for name in names}

    @property
    def title(self) -> str:
        """Title of the PNG and HTML outputs."""
        return self.TITLE.format(prompt=self.prompt, where=self.where)

    def missing(self) -> dict[str, Path]:
        """The outputs not written yet."""
        return {name: path for name, path in self.outputs.items() if not path.exists()}

    @abstractmethod
    def make(self, todo: dict[str, Path]) -> None:
        """Compute the job's product and write the outputs ``todo`` (name -> path)."""


class MapJob(Job):
    """A probability map of one concept over one area: outputs ``cog``, ``png`` and ``html``."""

    SUFFIXES: ClassVar = {"cog": ".tif", "png": ".png", "html": ".html"}

    def make(self, todo: dict[str, Path]) -> None:
        """Score the area and write the map in each format."""
        from landprompt.query.maps import write_cog, write_html, write_png

        da = _probability(self)
        for fmt, path in todo.items():
            if fmt == "cog":
                write_cog(da, path, dtype=self.spec.defaults.dtype)
            elif fmt == "png":
                with _PYPLOT_LOCK:
                    write_png(da, path, title=self.title)
            else:
                write_html(da, path, title=self.title)


class ChangeJob(Job):
    """A change map of one concept over one area: outputs ``diff``, ``class`` (the COGs) and ``png``."""

    SUFFIXES: ClassVar = CHANGE_OUTPUTS
    OUTPUTS_OF: ClassVar = {"cog": ("diff", "class")}
    TITLE: ClassVar = "change in P({prompt}) - {where}"

    def make(self, todo: dict[str, Path]) -> None:
        """Score both cubes and write the change map."""
        from landprompt.query.change import write_change

        spec, session = self.spec, _encoded(self)  # of folders, each shard paired by file name
        ds = session.change(
            cast(Path, spec.cube_b),
            self.prompt,
            self.versus,
            self.threshold,
            self.bbox,
            spec.defaults.style,
            calibration=spec.defaults.calibrated,
        )
        tags = _provenance(self)
        with _PYPLOT_LOCK:
            write_change(ds, todo, title=self.title, tags=tags)


class AggregateJob(Job):
    """Indicators of one concept per polygon: outputs ``csv`` and ``geojson``."""

    SUFFIXES: ClassVar = {"csv": ".csv", "geojson": ".geojson"}

    def make(self, todo: dict[str, Path]) -> None:
        """Score the polygons and write the table in each format."""
        from landprompt.query.aggregate import read_units, write_indicators

        spec, session = self.spec, _encoded(self)  # of a folder, each pixel counted once
        units = read_units(cast(Path, spec.units), spec.id_field)
        style, calibration = spec.defaults.style, spec.defaults.calibrated
        table = session.aggregate(
            self.prompt, units, None, self.threshold, self.versus, style, calibration=calibration
        )
        tags = _provenance(self)
        for path in todo.values():
            write_indicators(table, path, units, metadata=tags)


class PointsJob(Job):
    """Validation of one concept at field points: outputs ``json``, ``png`` and (with fit) ``calibration``."""

    SUFFIXES: ClassVar = {"json": ".json", "png": "_reliability.png"}

    @property
    def outputs(self) -> dict[str, Path]:
        """Output name -> path; with ``fit``, the calibration saved next to the cube."""
        fitted = (
            {"calibration": calibration_path(self.spec.cube, self.prompt)} if self.spec.defaults.fit else {}
        )
        return {**super().outputs, **fitted}

    def make(self, todo: dict[str, Path]) -> None:
        """Score the points, fit the calibration if asked, and write the report."""
        from landprompt.evaluate.points import evaluate_points, write_points_report, write_reliability_png

        spec, defaults = self.spec, self.spec.defaults
        report = evaluate_points(
            spec.cube,
            _scorer(self),
            cast(Path, spec.points),
            spec.label_field,
            fit=defaults.fit,
            block_km=defaults.block_km,
            save="calibration" in todo,
        )
        report["provenance"] = _provenance(self)
        if "json" in todo:
            write_points_report(report, todo["json"])
        if "png" in todo:
            with _PYPLOT_LOCK:
                write_reliability_png(report, todo["png"])


KINDS: dict[str, type[Job]] = {
    "map": MapJob,
    "change": ChangeJob,
    "aggregate": AggregateJob,
    "points": PointsJob,
}


# --- in the job's worker ---------------------------------------------------------------------------


def _probability(job: MapJob) -> xr.DataArray:
    """The job's probability map, calibrated if the batch says so, with its provenance in its attrs."""
    from landprompt.calibration import apply_calibration
    from landprompt.query.probability import probability_map

    spec = job.spec
    calibration = resolve_calibration(spec.defaults.calibrated, spec.cube, job.prompt)
    scorer = _scorer(job, calibration)  # checked against the query
    classes, query = scorer.classes, scorer.query
    da = probability_map(
        spec.cube, classes[0], classes[1:], job.bbox, style=query.style, logit_scale=query.logit_scale
    )
    da.attrs.update(scorer.attrs(), job=job.key)
    if scorer.calibration is not None:
        da = apply_calibration(da, scorer.calibration)
    da.attrs.update(_provenance(job))
    return da


def _scorer(job: Job, calibration: Calibration | None = None) -> ConceptScorer:
    """The job's concept scorer (:meth:`QuerySession.scorer`); each prompt is encoded once per process.

    The prompts are encoded under the lock (one text encoding at a time per process).
    """
    session = _session(job)
    with _LOCK:
        return session.scorer(job.prompt, job.versus, job.spec.defaults.style, calibration)


def _encoded(job: Job) -> Session:
    """The job's session, with the job's prompts encoded under the lock.

    Its ``change`` and ``aggregate`` find them in its text tower rather than encoding outside the lock.
    """
    _scorer(job)
    return _session(job)


def _session(job: Job) -> Session:
    """The query session of the job's cube or folder of shards, with the batch's CLIP model."""
    from landprompt.query.session import open_session

    return open_session(job.spec.cube, _clip(job.spec.clip))


def _provenance(job: Job) -> dict[str, str]:
    """Provenance tags of a job's outputs."""
    from landprompt.query.provenance import provenance_tags, with_cube_b
    from landprompt.query.session import cube_paths, open_session

    spec = job.spec
    applied = None
    if spec.defaults.calibrated:  # a prompt with no letter or digit has no calibration file name
        applied = str(calibration_path(spec.cube, job.prompt)) if isinstance(job, MapJob) else "cube"
    clip, style, cubes = _clip(spec.clip), spec.defaults.style, cube_paths(spec.cube)
    datasets = _session(job).datasets  # the hashes from the cubes the job's session holds open
    tags = provenance_tags(cubes, clip, job.prompt, job.background, style, applied, datasets)
    if spec.cube_b is None:
        return tags
    return with_cube_b(tags, cube_paths(spec.cube_b), open_session(spec.cube_b).datasets)


def _clip(keys: ClipKeys | None) -> ClipModel:
    """The batch's CLIP model, loaded once per process (the threads of a worker share it)."""
    with _LOCK:
        return _load_clip(keys)


@lru_cache(maxsize=4)
def _load_clip(keys: ClipKeys | None) -> ClipModel:
    from landprompt.embedder.clip import load_clip

    assert keys is not None  # load_jobs names the cube's model where the file does not
    return load_clip(keys.model, keys.pretrained)
