"""The batch file of ``landprompt query export`` as pydantic models: every key, its type, default and meaning.

Validating a :class:`JobSpec` checks the file's shape (known keys, types, choices, ranges, which keys a kind
takes); :meth:`JobSpec.checked` then checks it against the data (the cube opens, the inputs read, the areas
overlap the cube, the CLIP model exists, ...) and resolves its relative paths. Either way an error is one
line naming the key path. ``landprompt query export --schema`` prints :func:`json_schema`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError, field_validator, model_validator
from pydantic_core import PydanticKnownError

from landprompt.embedder.cube import cube_grid, open_cube
from landprompt.errors import BadInputError, did_you_mean
from landprompt.files import slugify
from landprompt.geo import BBox, parse_bbox
from landprompt.query.maps import HTML_MAX_PIXELS, check_html_size
from landprompt.query.probability import DEFAULT_STYLE
from landprompt.schema import FilePath, Flag, key, schema_error

Kind = Literal["map", "change", "aggregate", "points"]

#: Keys (top level or in defaults) that only some kinds take.
KIND_KEYS: dict[str, tuple[Kind, ...]] = {
    "cube_b": ("change",),
    "units": ("aggregate",),
    "points": ("points",),
    "areas": ("map", "change"),
    "id_field": ("aggregate",),
    "label_field": ("points",),
    "dtype": ("map",),
    "threshold": ("change", "aggregate"),
    "calibrated": ("map", "change", "aggregate"),
    "fit": ("points",),
    "block_km": ("points",),
}
#: Output formats each kind can write, and those it writes by default.
KIND_FORMATS: dict[str, tuple[str, ...]] = {
    "map": ("cog", "png", "html"),
    "change": ("cog", "png"),
    "aggregate": ("csv", "geojson"),
    "points": ("json", "png"),
}
DEFAULT_FORMATS = {**KIND_FORMATS, "aggregate": ("csv",)}
#: Default ``threshold`` of the kinds that take one.
DEFAULT_THRESHOLDS = {"change": 0.2, "aggregate": 0.5}


def _words(value: Any) -> Any:
    """Non-empty text, stripped."""
    if not isinstance(value, str) or not value.strip():
        raise PydanticKnownError("string_type")
    return value.strip()


def _some(message: str) -> BeforeValidator:
    """A list that is ``None`` or not empty; anything else is refused with ``message``."""

    def check(value: Any) -> Any:
        if value is not None and (not isinstance(value, list) or not value):
            raise ValueError(message)
        return value

    return BeforeValidator(check)


def _real(value: Any) -> bool:
    """Whether ``value`` is a number (not ``true``/``false``)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


Words = Annotated[str, BeforeValidator(_words)]
"""Non-empty text (surrounding spaces dropped)."""
Versus = Annotated[
    list[Words] | None, _some("give a list of background prompts, or null for the shipped vocabulary")
]


class _Keys(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ClipKeys(_Keys):
    """The CLIP text tower that encodes the prompts."""

    model: Words = key(..., "An open_clip model name (ViT-B-32, ...) or landprompt-tiny.")
    pretrained: Words | None = key(
        None, "A pretrained tag, a local weights file, or null for random weights."
    )


class ConceptKeys(_Keys):
    """A concept: a prompt in plain words, or this mapping."""

    name: Words | None = key(None, "Names the output files (slugged); default: the prompt.")
    prompt: Words = key(None, "The concept in plain words; default: the name.")
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

    name: Words = key(..., "Names the area's output folder (slugged).")
    bbox: Any = key(
        None, "'minlon,minlat,maxlon,maxlat' in degrees, or a GeoJSON file; null: the whole cube."
    )

    @property
    def slug(self) -> str:
        """Folder-name form of the name."""
        return slugify(self.name)


class DefaultKeys(_Keys):
    """Settings shared by every job of the file."""

    versus: Versus = key(
        None, "Background prompts each concept competes with (null: the shipped vocabulary)."
    )
    style: Words = key(DEFAULT_STYLE, "Prompt template style: classname, ground, satellite or aerial.")
    formats: list[Words] | None = key(None, "Output formats (each kind takes its own; see the example).")
    dtype: Literal["float32", "uint8"] = key(
        "float32", "[map] COG encoding: float32 (0-1, NaN nodata) or uint8.", title="dtype"
    )
    threshold: float | None = key(None, "[change, aggregate] Change counted as gain/loss, or presence level.")
    calibrated: Flag = key(False, "[map, change, aggregate] Apply each concept's saved calibration.")
    fit: Literal["platt", "isotonic"] | None = key(
        None, "[points] Calibration to fit: platt or isotonic.", title="calibration method"
    )
    block_km: float = key(10.0, "[points] Side of the spatial cross-validation blocks, km.")

    @field_validator("style", mode="before")
    @classmethod
    def _style(cls, style: Any) -> Any:
        """A known template style; null is the default one."""
        from landprompt.embedder.prompts import get_templates

        if isinstance(style, str) and style.strip():
            get_templates(style.strip())
        return DEFAULT_STYLE if style is None else style

    @field_validator("formats", mode="before")
    @classmethod
    def _listed(cls, value: Any) -> Any:
        value = [value] if isinstance(value, str) else value
        if value is not None and (not isinstance(value, list) or not value):
            raise ValueError("give a list of formats (each kind takes its own; see the example)")
        return value

    @field_validator("threshold", mode="before")
    @classmethod
    def _probability(cls, value: Any) -> Any:
        if value is not None and not (_real(value) and 0 <= value < 1):
            raise ValueError(f"must be a probability in [0, 1), got {value!r}")
        return value

    @field_validator("block_km", mode="before")
    @classmethod
    def _km(cls, value: Any) -> Any:
        if not (_real(value) and 0 < value < float("inf")):
            raise ValueError(f"must be a positive number of km, got {value!r}")
        return value


class JobSpec(_Keys):
    """A batch file: a kind, a cube, an output folder, the concepts and what the kind needs."""

    model_config = ConfigDict(title="BatchFile")
    kind: Kind = key("map", "What every job makes: map, change, aggregate or points.", title="job kind")
    cube: FilePath = key(..., "The embedding cube (.zarr), relative to the file's folder.")
    cube_b: FilePath | None = key(None, "[change] The later cube, on the same grid.")
    units: FilePath | None = key(None, "[aggregate] GeoJSON or GeoPackage polygons.")
    id_field: Words | None = key(None, "[aggregate] Property naming each polygon (default: feature id).")
    points: FilePath | None = key(None, "[points] CSV with lon, lat (WGS84) and a presence label.")
    label_field: Words = key("present", "[points] Column of the label: 1/0, true/false or yes/no.")
    out: FilePath = key(..., "Output folder.")
    clip: ClipKeys | None = key(None, "The CLIP text tower; default: the model the cube names.")
    defaults: DefaultKeys = key(default_factory=DefaultKeys, description="Settings shared by every job.")
    concepts: Annotated[
        list[ConceptKeys],
        _some("give a list of at least one concept (a prompt, or {name:, prompt:, versus:})"),
    ] = key(..., "At least one concept: a prompt, or {name:, prompt:, versus:}.")
    areas: Annotated[
        list[AreaKeys] | None,
        _some("give a list of {name:, bbox:} areas, or leave areas out to map the whole cube"),
    ] = key(None, "[map, change] Areas to map; default: the whole cube.")

    @model_validator(mode="before")
    @classmethod
    def _keys_of_kind(cls, data: Any) -> Any:
        """Refuse the keys the batch's kind does not take; null defaults become the defaults."""
        if not isinstance(data, dict):
            return data
        if data.get("defaults") is None:
            data = {**data, "defaults": {}}
        kind = data.get("kind", "map")
        if kind not in KIND_FORMATS:
            return data  # the kind itself is refused by validation
        defaults = data["defaults"] if isinstance(data["defaults"], dict) else {}
        for path, name in [(k, k) for k in data] + [(f"defaults.{k}", k) for k in defaults]:
            kinds = KIND_KEYS.get(name)
            if kinds is not None and kind not in kinds:
                only = " or ".join(kinds)
                raise ValueError(f"{path}: applies to kind {only} only, and this batch is kind {kind}")
        return data

    @model_validator(mode="after")
    def _consistent(self) -> JobSpec:
        """Checks across keys: the kind's formats, names that make unique file names, real backgrounds."""
        choices = KIND_FORMATS[self.kind]
        for i, fmt in enumerate(self.formats):
            if fmt not in choices:
                raise ValueError(
                    f"defaults.formats[{i}]: unknown format {fmt!r}; choose one of {', '.join(choices)}"
                )
        _unique("defaults.formats", "formats", list(self.formats))
        _unique("concepts", "concept names", [concept.slug for concept in self.concepts])
        _unique("areas", "area names", [area.slug for area in self.areas or []])
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
        from landprompt.query.change import check_same_grid

        paths = {name: getattr(self, name) for name in ("cube", "cube_b", "units", "points", "out")}
        spec = self.model_copy(update={k: (base / v.expanduser()).absolute() for k, v in paths.items() if v})
        with _at("cube"):
            ds = open_cube(spec.cube)
        inputs = {
            "cube_b": lambda path: check_same_grid(ds, open_cube(path)),
            "units": lambda path: read_units(path, spec.id_field),
            "points": lambda path: read_points(path, spec.label_field),
        }
        for name, read in inputs.items():
            if spec.kind not in KIND_KEYS[name]:
                continue
            with _at(name):
                if getattr(spec, name) is None:
                    raise BadInputError("required key is missing")
                read(getattr(spec, name))
        if spec.out.exists() and not spec.out.is_dir():
            raise BadInputError(f"out: {spec.out} exists and is not a folder")
        grid, areas = cube_grid(ds), []
        for i, area in enumerate(spec.regions):
            where = f"areas[{i}]" if spec.areas else "areas"
            with _at(f"{where}.bbox"):
                bbox = None if area.bbox is None else _bbox(area.bbox, base)
                window = grid.window(*grid.slices_of_bbox(bbox)) if bbox else grid
            areas.append(area.model_copy(update={"bbox": bbox}))
            if "html" in spec.formats:
                with _at(where, hint="; or drop html from defaults.formats"):
                    check_html_size(window.shape, HTML_MAX_PIXELS)
        with _at("defaults.calibrated"):
            for concept in spec.concepts if spec.defaults.calibrated else []:
                for cube in filter(None, (spec.cube, spec.cube_b)):
                    load_calibration(calibration_path(cube, concept.prompt))
        clip = _checked_clip(spec.clip, base) if spec.clip else _clip_of_cube(ds.attrs)
        return spec.model_copy(update={"clip": clip, "areas": areas if spec.areas else None})


@contextmanager
def _at(path: str, hint: str = "") -> Iterator[None]:
    """Name the key path before a :class:`BadInputError` raised inside (``areas[1].bbox: ...``)."""
    try:
        yield
    except BadInputError as exc:
        raise type(exc)(f"{path}: {exc}{hint}") from None  # a damaged cube keeps its own exit code


def _unique(path: str, what: str, names: list[str]) -> None:
    """Names that make file names: each with a letter or digit, none repeated."""
    if "" in names:
        raise ValueError(f"{path}[{names.index('')}].name: no letter or digit to name the output files by")
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
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
    import open_clip

    from landprompt.embedder import clip  # noqa: F401  (registers landprompt-tiny)

    if ":" not in keys.model and keys.model not in open_clip.list_models():
        hint = did_you_mean(keys.model, open_clip.list_models(), n=3, show=str)
        raise BadInputError(f"clip.model: unknown CLIP model {keys.model!r}{hint}")
    weights = (base / Path(keys.pretrained).expanduser()).absolute() if keys.pretrained else None
    return keys.model_copy(update={"pretrained": str(weights)}) if weights and weights.is_file() else keys


def _clip_of_cube(attrs: Any) -> ClipKeys:
    from landprompt.embedder.clip import recorded_clip

    named = recorded_clip(attrs)
    if named is None:
        raise BadInputError(
            "clip: the cube does not name its CLIP model: add clip: {model: NAME, pretrained: TAG}"
        )
    return ClipKeys(model=named[0], pretrained=named[1])


def parse_batch(data: Any, base: str | Path | None = None) -> JobSpec:
    """Check a parsed batch file's keys and values, and with ``base`` (its folder) its data.

    Raises:
        BadInputError: One line naming the key (``defaults.dtype: unknown dtype 'float64'; ...``).
    """
    try:
        spec = JobSpec.model_validate(data)
    except ValidationError as err:
        raise schema_error(err, JobSpec, where="the batch file") from None
    return spec if base is None else spec.checked(Path(base))


def load_jobs(path: str | Path) -> JobSpec:
    """Read and check a batch file (YAML) and its data; nothing is written.

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
        return parse_batch(data, path.parent)
    except BadInputError as exc:
        raise type(exc)(f"{path}: {exc}") from None


def json_schema() -> dict[str, Any]:
    """The JSON Schema of a batch file (``landprompt query export --schema``)."""
    return JobSpec.model_json_schema()
