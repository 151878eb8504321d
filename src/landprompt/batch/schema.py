"""The batch file of ``landprompt query export`` as pydantic models: every key, its type, default and meaning.

These models check the file's shape (known keys, types, choices, ranges, which keys a kind takes);
:func:`~landprompt.batch.jobs.load_jobs` then checks what needs the data (the cube opens, a bbox overlaps
it, a CLIP model exists, formats suit the kind) and builds the :class:`~landprompt.batch.jobs.JobSpec`.
``landprompt query export --schema`` prints :func:`json_schema`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticKnownError

from landprompt.schema import Flag, key, schema_error

Kind = Literal["map", "change", "aggregate", "points"]
MapDtype = Literal["float32", "uint8"]
FitMethod = Literal["platt", "isotonic"]

#: Keys (top level or in defaults) that only some kinds take.
KIND_KEYS: dict[str, tuple[Kind, ...]] = {
    "areas": ("map", "change"),
    "cube_b": ("change",),
    "units": ("aggregate",),
    "id_field": ("aggregate",),
    "points": ("points",),
    "label_field": ("points",),
    "dtype": ("map",),
    "threshold": ("change", "aggregate"),
    "calibrated": ("map", "change", "aggregate"),
    "fit": ("points",),
    "block_km": ("points",),
}


def _words(value: Any) -> Any:
    """Non-empty text, stripped."""
    if not isinstance(value, str) or not value.strip():
        raise PydanticKnownError("string_type")
    return value.strip()


Words = Annotated[str, BeforeValidator(_words)]
"""Non-empty text (surrounding spaces dropped)."""


def _prompts(value: Any) -> Any:
    if value is not None and (not isinstance(value, list) or not value):
        raise ValueError("give a list of background prompts, or null for the shipped vocabulary")
    return value


def _real(value: Any) -> bool:
    """Whether ``value`` is a number (not ``true``/``false``)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


Versus = Annotated[list[Words] | None, BeforeValidator(_prompts)]


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
    prompt: Words | None = key(None, "The concept in plain words; default: the name.")
    versus: Versus = key(None, "This concept's background prompts (null: the shipped vocabulary).")

    @model_validator(mode="before")
    @classmethod
    def _from_prompt(cls, value: Any) -> Any:
        return {"prompt": value} if isinstance(value, str) else value

    @model_validator(mode="after")
    def _named(self) -> ConceptKeys:
        if self.prompt is None and self.name is None:
            raise ValueError("a concept needs a prompt (and optionally a name)")
        return self


class AreaKeys(_Keys):
    """A named window of the cube."""

    name: Words = key(..., "Names the area's output folder (slugged).")
    bbox: Any = key(
        None, "'minlon,minlat,maxlon,maxlat' in degrees, or a GeoJSON file; null: the whole cube."
    )


class DefaultKeys(_Keys):
    """Settings shared by every job of the file."""

    versus: Versus = key(
        None, "Background prompts each concept competes with (null: the shipped vocabulary)."
    )
    style: Words | None = key(None, "Prompt template style: classname, ground, satellite or aerial.")
    formats: Words | list[Any] | None = key(
        None, "Output formats (each kind takes its own; see the example)."
    )
    dtype: MapDtype = key("float32", "[map] COG encoding: float32 (0-1, NaN nodata) or uint8.", title="dtype")
    threshold: float | None = key(None, "[change, aggregate] Change counted as gain/loss, or presence level.")
    calibrated: Flag = key(False, "[map, change, aggregate] Apply each concept's saved calibration.")
    fit: FitMethod | None = key(
        None, "[points] Calibration to fit: platt or isotonic.", title="calibration method"
    )
    block_km: float = key(10.0, "[points] Side of the spatial cross-validation blocks, km.")

    @field_validator("threshold", mode="before")
    @classmethod
    def _probability(cls, value: Any) -> Any:
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < 1
        ):
            raise ValueError(f"must be a probability in [0, 1), got {value!r}")
        return value

    @field_validator("block_km", mode="before")
    @classmethod
    def _km(cls, value: Any) -> Any:
        if not (_real(value) and 0 < value < float("inf")):
            raise ValueError(f"must be a positive number of km, got {value!r}")
        return value


class BatchFile(_Keys):
    """A batch file: a kind, a cube, an output folder, the concepts and what the kind needs."""

    kind: Kind = key("map", "What every job makes: map, change, aggregate or points.", title="job kind")
    cube: Words = key(..., "The embedding cube (.zarr), relative to the file's folder.")
    cube_b: Words | None = key(None, "[change] The later cube, on the same grid.")
    units: Words | None = key(None, "[aggregate] GeoJSON or GeoPackage polygons.")
    id_field: Words | None = key(None, "[aggregate] Property naming each polygon (default: feature id).")
    points: Words | None = key(None, "[points] CSV with lon, lat (WGS84) and a presence label.")
    label_field: Words = key("present", "[points] Column of the label: 1/0, true/false or yes/no.")
    out: Words = key(..., "Output folder.")
    clip: ClipKeys | None = key(None, "The CLIP text tower; default: the model the cube names.")
    defaults: DefaultKeys = key(default_factory=DefaultKeys, description="Settings shared by every job.")
    concepts: list[ConceptKeys] = key(..., "At least one concept: a prompt, or {name:, prompt:, versus:}.")
    areas: list[AreaKeys] | None = key(None, "[map, change] Areas to map; default: the whole cube.")

    @model_validator(mode="before")
    @classmethod
    def _keys_of_kind(cls, data: Any) -> Any:
        """Refuse the keys the batch's kind does not take; null defaults become the defaults."""
        if not isinstance(data, dict):
            return data
        if data.get("defaults") is None:
            data = {**data, "defaults": {}}
        kind = data.get("kind", "map")
        if kind not in KIND_KEYS["calibrated"] + ("points",):
            return data  # the kind itself is refused by validation
        defaults = data["defaults"] if isinstance(data["defaults"], dict) else {}
        for path, name in [(k, k) for k in data] + [(f"defaults.{k}", k) for k in defaults]:
            kinds = KIND_KEYS.get(name)
            if kinds is not None and kind not in kinds:
                only = " or ".join(kinds)
                raise ValueError(f"{path}: applies to kind {only} only, and this batch is kind {kind}")
        return data

    @field_validator("concepts", mode="before")
    @classmethod
    def _some_concepts(cls, value: Any) -> Any:
        if not isinstance(value, list) or not value:
            raise ValueError("give a list of at least one concept (a prompt, or {name:, prompt:, versus:})")
        return value

    @field_validator("areas", mode="before")
    @classmethod
    def _some_areas(cls, value: Any) -> Any:
        if value is not None and (not isinstance(value, list) or not value):
            raise ValueError("give a list of {name:, bbox:} areas, or leave areas out to map the whole cube")
        return value


def parse_batch(data: Any) -> BatchFile:
    """Check a parsed batch file's keys and values.

    Raises:
        BadInputError: One line naming the key (``defaults.dtype: unknown dtype 'float64'; ...``).
    """
    try:
        return BatchFile.model_validate(data)
    except ValidationError as err:
        raise schema_error(err, BatchFile, where="the batch file") from None


def json_schema() -> dict[str, Any]:
    """The JSON Schema of a batch file (``landprompt query export --schema``)."""
    return BatchFile.model_json_schema()
