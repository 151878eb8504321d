"""The batch file of ``landprompt query export`` as pydantic models: every key, its type, default and meaning.

Validating a :class:`JobSpec` checks the file's shape (known keys, types, choices, ranges, which keys a kind
takes); :meth:`JobSpec.checked` then checks it against the data (the cube opens, the inputs read, the areas
overlap the cube, the CLIP model exists, ...) and resolves its relative paths. Either way an error is one
line naming the key path. ``landprompt query export --schema`` prints :func:`json_schema`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, model_validator

from landprompt.errors import BadInputError
from landprompt.files import slugify
from landprompt.geo import BBox, parse_bbox
from landprompt.query.classes import DEFAULT_STYLE
from landprompt.query.maps import HTML_MAX_PIXELS, check_html_size
from landprompt.schema import FilePath, Flag, Section, Text, checked, key, read_yaml, validated

if TYPE_CHECKING:
    from landprompt.query.session import Session

#: Output formats each kind can write, and those it writes by default.
KIND_FORMATS = {
    "map": ("cog", "png", "html"),
    "change": ("cog", "png"),
    "aggregate": ("csv", "geojson"),
    "points": ("json", "png"),
}
DEFAULT_FORMATS = {**KIND_FORMATS, "aggregate": ("csv",)}
#: Default ``threshold`` of the kinds that take one.
DEFAULT_THRESHOLDS = {"change": 0.2, "aggregate": 0.5}


def _real(value: Any) -> bool:
    """Whether ``value`` is a number (not ``true``/``false``)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def _some(what: str) -> BeforeValidator:
    """A list that is ``None`` or not empty; anything else is refused with ``give {what}``."""
    return checked(lambda v: v is None or (isinstance(v, list) and bool(v)), f"give {what}")


def _style(style: Any) -> Any:
    """A known prompt template style (null: the default one)."""
    from landprompt.embedder.prompts import get_templates

    if isinstance(style, str) and style.strip():
        get_templates(style)
    return DEFAULT_STYLE if style is None else style


Versus = Annotated[
    list[Text] | None, _some("a list of background prompts, or null for the shipped vocabulary")
]
Probability = Annotated[float, checked(lambda v: _real(v) and 0 <= v < 1, "must be a probability in [0, 1)")]
Km = Annotated[float, checked(lambda v: _real(v) and 0 < v < float("inf"), "must be a positive number of km")]
Formats = Annotated[
    list[Text] | None,
    _some("a list of formats (each kind takes its own; see the example)"),
    BeforeValidator(lambda value: [value] if isinstance(value, str) else value),
]


class _Keys(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ClipKeys(_Keys):
    """The CLIP text tower that encodes the prompts."""

    model: Text = key(..., "An open_clip model name (ViT-B-32, ...) or landprompt-tiny.")
    pretrained: Text | None = key(None, "A pretrained tag, a local weights file, or null for random weights.")


class ConceptKeys(_Keys):
    """A concept: a prompt in plain words, or this mapping."""

    name: Text | None = key(None, "Names the output files (slugged); default: the prompt.")
    prompt: Text = key(None, "The concept in plain words; default: the name.")
    versus: Versus = key(None, "This concept's background prompts (null: the shipped vocabulary).")

    @model_validator(mode="before")
    @classmethod
    def _from_prompt(cls, value: Any) -> Any:
        """A bare prompt is ``{prompt: ...}``; a concept given only a name takes it as its prompt."""
        if isinstance(value, str):
            return {"prompt": value}
        if isinstance(value, dict) and value.get("prompt") is None:
            if value.get("name") is None:
                raise ValueError("a concept needs a prompt (and optionally a name)")
            return {**value, "prompt": value["name"]}
        return value

    @property
    def slug(self) -> str:
        """File-name form of the name (default: the prompt): lower case, other characters as ``-``."""
        return slugify(self.name or self.prompt)


class AreaKeys(_Keys):
    """A named window of the cube."""

    name: Text = key(..., "Names the area's output folder (slugged).")
    bbox: Any = key(
        None, "'minlon,minlat,maxlon,maxlat' in degrees, or a GeoJSON file; null: the whole cube."
    )


class DefaultKeys(_Keys):
    """Settings shared by every job of the file."""

    versus: Versus = key(
        None, "Background prompts each concept competes with (null: the shipped vocabulary)."
    )
    style: Annotated[str, BeforeValidator(_style)] = key(
        DEFAULT_STYLE, "Prompt template style: classname, ground, satellite or aerial."
    )
    formats: Formats = key(None, "Output formats (each kind takes its own; see the example).")
    dtype: Literal["float32", "uint8"] = key(
        "float32", "[map] COG encoding: float32 (0-1, NaN nodata) or uint8.", title="dtype"
    )
    threshold: Probability | None = key(
        None, "[change, aggregate] Change counted as gain/loss, or presence level."
    )
    calibrated: Flag = key(
        False,
        "[map, change, aggregate] Apply each concept's saved calibration (<cube>.calibration/). Of "
        "folders of shards, change and aggregate apply each shard's own: every shard of both folders "
        "needs one, checked before any job runs (even a shard no area or polygon reaches).",
    )
    fit: Literal["platt", "isotonic"] | None = key(
        None, "[points] Calibration to fit: platt or isotonic.", title="calibration method"
    )
    block_km: Km = key(10.0, "[points] Side of the spatial cross-validation blocks, km.")


class JobSpec(_Keys):
    """A batch file: a kind, a cube, an output folder, the concepts and what the kind needs."""

    model_config = ConfigDict(title="BatchFile")
    kind: Literal["map", "change", "aggregate", "points"] = key(
        "map", "What every job makes: map, change, aggregate or points.", title="job kind"
    )
    cube: FilePath = key(
        ...,
        "The embedding cube (.zarr), relative to the file's folder; for map, change and aggregate also a "
        "folder of cube shards (the mosaic of its *.zarr).",
    )
    cube_b: FilePath | None = key(
        None, "[change] The later cube, on the same grid (a folder of shards: named as cube's shards)."
    )
    units: FilePath | None = key(None, "[aggregate] GeoJSON or GeoPackage polygons.")
    id_field: Text | None = key(None, "[aggregate] Property naming each polygon (default: feature id).")
    points: FilePath | None = key(None, "[points] CSV with lon, lat (WGS84) and a presence label.")
    label_field: Text = key("present", "[points] Column of the label: 1/0, true/false or yes/no.")
    out: FilePath = key(..., "Output folder.")
    clip: ClipKeys | None = key(None, "The CLIP text tower; default: the model the cube names.")
    defaults: Section[DefaultKeys] = key(default_factory=DefaultKeys, description="Settings of every job.")
    concepts: Annotated[
        list[ConceptKeys], _some("a list of at least one concept (a prompt, or {name:, prompt:, versus:})")
    ] = key(..., "At least one concept: a prompt, or {name:, prompt:, versus:}.")
    areas: Annotated[
        list[AreaKeys] | None,
        _some("a list of {name:, bbox:} areas, or leave areas out to map the whole cube"),
    ] = key(None, "[map, change] Areas to map; default: the whole cube.")

    @model_validator(mode="before")
    @classmethod
    def _keys_of_kind(cls, data: Any) -> Any:
        """Refuse the keys the batch's kind does not take."""
        if not isinstance(data, dict):
            return data
        kind, defaults = data.get("kind", "map"), data.get("defaults")
        if kind not in KIND_FORMATS:
            return data  # the kind itself is refused by validation
        inner = [f"defaults.{name}" for name in defaults] if isinstance(defaults, dict) else []
        for path in [*data, *inner]:
            kinds = KIND_KEYS.get(path.removeprefix("defaults."), (kind,))
            if kind not in kinds:
                raise ValueError(
                    f"{path}: applies to kind {' or '.join(kinds)} only, and this batch is kind {kind}"
                )
        return data

    @model_validator(mode="after")
    def _consistent(self) -> JobSpec:
        """Checks across keys: the kind's inputs and formats, unique file names, real backgrounds."""
        for name in ("cube_b", "units", "points"):
            if self.kind in KIND_KEYS[name] and getattr(self, name) is None:
                raise ValueError(f"{name}: required key is missing")
        choices = KIND_FORMATS[self.kind]
        for i, fmt in enumerate(self.formats):
            if fmt not in choices:
                raise ValueError(
                    f"defaults.formats[{i}]: unknown format {fmt!r}; choose one of {', '.join(choices)}"
                )
        _unique("defaults.formats", "formats", self.formats)
        _unique("concepts", "concept names", [concept.slug for concept in self.concepts])
        _unique("areas", "area names", [slugify(area.name) for area in self.areas or []])
        for i, concept in enumerate(self.concepts):
            versus = self.versus_of(concept)
            if versus is not None and all(v.lower() == concept.prompt.lower() for v in versus):
                raise ValueError(
                    f"concepts[{i}]: the background (versus) of {concept.prompt!r} holds nothing but "
                    "the concept itself"
                )
        return self

    @property
    def formats(self) -> tuple[str, ...]:
        """The output formats: ``defaults.formats``, else the kind's default ones."""
        return tuple(self.defaults.formats or DEFAULT_FORMATS[self.kind])

    @property
    def threshold(self) -> float:
        """``defaults.threshold``, else the kind's default one (of change and aggregate batches)."""
        threshold = self.defaults.threshold
        return DEFAULT_THRESHOLDS[self.kind] if threshold is None else threshold

    @property
    def regions(self) -> list[AreaKeys]:
        """The areas to map: ``areas``, else the whole cube (into the folder ``all``)."""
        return self.areas or [AreaKeys(name="all")]

    def versus_of(self, concept: ConceptKeys) -> tuple[str, ...] | None:
        """A concept's background prompts: its own ``versus`` where it has the key, else the default one."""
        versus = concept.versus if "versus" in concept.model_fields_set else self.defaults.versus
        return None if versus is None else tuple(versus)

    def checked(self, base: Path) -> JobSpec:
        """This batch checked against the data, its paths relative to ``base`` (the batch file's folder).

        In the batch returned, paths are absolute, each area's box is a :class:`~landprompt.geo.BBox`, and
        ``clip``, if the file leaves it out, is the model the cube names.

        Raises:
            BadInputError: One line naming the key (``areas[1].bbox: ...``).
        """
        from landprompt.calibration import calibration_path, load_calibration
        from landprompt.evaluate.points import read_points
        from landprompt.query.aggregate import read_units
        from landprompt.query.session import ShardedSession, cube_paths, open_session

        paths = {name: getattr(self, name) for name in ("cube", "cube_b", "units", "points", "out")}
        spec = self.model_copy(update={k: (base / v.expanduser()).absolute() for k, v in paths.items() if v})
        with _at("cube"):
            session = open_session(spec.cube)  # one cube, or a folder of shards in one CLIP space
            if spec.kind == "points" and isinstance(session, ShardedSession):
                raise BadInputError(f"{spec.cube} is a folder of shards: kind points takes one cube")
        reads: dict[str, Callable[[Path], Any]] = {
            "cube_b": lambda path: _check_later(session, path),
            "units": lambda path: read_units(path, spec.id_field),
            "points": lambda path: read_points(path, spec.label_field),
        }
        for name, read in reads.items():  # the kind's own inputs (others were refused)
            if getattr(spec, name) is not None:
                with _at(name):
                    read(getattr(spec, name))
        if spec.out.exists() and not spec.out.is_dir():
            raise BadInputError(f"out: {spec.out} exists and is not a folder")
        areas = []
        for i, area in enumerate(spec.regions):
            where = f"areas[{i}]" if spec.areas else "areas"
            with _at(f"{where}.bbox"):
                bbox = None if area.bbox is None else _bbox(area.bbox, base)
                window = session.map_grid(bbox)  # of a folder: the mosaic of the shards the box touches
            areas.append(area.model_copy(update={"bbox": bbox}))
            if "html" in spec.formats:
                with _at(where, hint="; or drop html from defaults.formats"):
                    check_html_size(window.shape, HTML_MAX_PIXELS)
        inputs = [path for path in (spec.cube, spec.cube_b) if path is not None]
        if spec.kind != "map":  # change and aggregate over shards apply each shard's own calibration
            inputs = [shard for path in inputs for shard in cube_paths(path)]
        with _at("defaults.calibrated"):
            for concept in spec.concepts if spec.defaults.calibrated else []:
                for cube in inputs:
                    load_calibration(calibration_path(cube, concept.prompt))
        attrs = (session.shards[0] if isinstance(session, ShardedSession) else session).ds.attrs
        clip = _checked_clip(spec.clip, base) if spec.clip else _clip_of_cube(attrs)
        return spec.model_copy(update={"clip": clip, "areas": areas if spec.areas else None})


def _check_later(earlier: Session, later: Path) -> None:
    """Check the later input of a change against the earlier one (a cube or a folder of shards).

    A cube must be on the earlier cube's grid; a folder must hold shards named as the earlier folder's,
    each on its earlier shard's grid.
    """
    from landprompt.query.change import check_same_grid
    from landprompt.query.session import ShardedSession, check_pairable, open_session, paired_shards

    check_pairable(earlier, later)
    other = open_session(later)
    if isinstance(earlier, ShardedSession) and isinstance(other, ShardedSession):
        pairs = paired_shards(earlier, other)
        for path, shard in zip(earlier.cubes, earlier.shards, strict=True):
            check_same_grid(shard.ds, pairs[path].ds)
    elif not isinstance(earlier, ShardedSession) and not isinstance(other, ShardedSession):
        check_same_grid(earlier.ds, other.ds)


#: Keys (top level or in defaults) that only some kinds take: those whose description starts ``[kind, ...]``.
KIND_KEYS = {
    name: tuple(match.group(1).split(", "))
    for model in (JobSpec, DefaultKeys)
    for name, info in model.model_fields.items()
    if (match := re.match(r"\[([a-z, ]+)\] ", info.description or ""))
}


@contextmanager
def _at(path: str, hint: str = "") -> Iterator[None]:
    """Name the key path before a :class:`BadInputError` raised inside (``areas[1].bbox: ...``)."""
    try:
        yield
    except BadInputError as exc:
        raise type(exc)(f"{path}: {exc}{hint}") from None  # a damaged cube keeps its own exit code


def _unique(path: str, what: str, names: Iterable[str]) -> None:
    """Names that make file names: each with a letter or digit, none repeated."""
    names = list(names)
    if "" in names:
        raise ValueError(f"{path}[{names.index('')}].name: no letter or digit to name the output files by")
    if repeated := sorted({name for name in names if names.count(name) > 1}):
        raise ValueError(
            f"{path}: {what} must be unique (after lower-casing and slugging); repeated: {repeated}"
        )


def _bbox(value: Any, base: Path) -> BBox:
    """A box written as text or numbers, or the bounds of a GeoJSON file (relative to ``base``)."""
    if isinstance(value, str) and value.strip().lower().endswith((".json", ".geojson")):
        return parse_bbox(base / value.strip())
    if isinstance(value, str) or (isinstance(value, list) and all(map(_real, value))):
        return parse_bbox(value)
    raise BadInputError(f"give 'minlon,minlat,maxlon,maxlat' or a GeoJSON file, got {value!r}")


def _checked_clip(keys: ClipKeys, base: Path) -> ClipKeys:
    """An open_clip model name, checked without loading it; a weights file relative to ``base``."""
    from landprompt.embedder.clip import check_model_name

    with _at("clip.model"):
        check_model_name(keys.model)
    weights = (base / Path(keys.pretrained).expanduser()).absolute() if keys.pretrained else None
    return keys.model_copy(update={"pretrained": str(weights)}) if weights and weights.is_file() else keys


def _clip_of_cube(attrs: Any) -> ClipKeys:
    """The CLIP model the cube's attrs name."""
    from landprompt.embedder.recorded import recorded_clip

    if (named := recorded_clip(attrs)) is None:
        raise BadInputError(
            "clip: the cube does not name its CLIP model: add clip: {model: NAME, pretrained: TAG}"
        )
    return ClipKeys(model=named[0], pretrained=named[1])


def parse_batch(data: Any, base: str | Path | None = None) -> JobSpec:
    """Check a parsed batch file's keys and values, and with ``base`` (its folder) its data.

    Raises:
        BadInputError: One line naming the key (``defaults.dtype: unknown dtype 'float64'; ...``).
    """
    spec = validated(JobSpec, data, where="the batch file")
    return spec if base is None else spec.checked(Path(base))


def load_jobs(path: str | Path, overrides: Iterable[str] = ()) -> JobSpec:
    """Read and check a batch file (YAML) and its data; nothing is written.

    Relative paths in the file (cube, out, GeoJSON areas, weights files) are relative to the file's folder.
    ``overrides`` (``defaults.threshold=0.3``, values read as YAML) replace keys of the file.

    Raises:
        BadInputError: if the file is missing or not YAML, or a key is unknown, missing or invalid; the
            message names the file and the key.
    """
    path = Path(path)
    data = read_yaml(path, "batch file", overrides)
    with _at(str(path)):
        return parse_batch(data, path.parent)


json_schema = JobSpec.model_json_schema
"""The JSON Schema of a batch file (``landprompt query export --schema``)."""
