"""Building blocks of the pydantic schemas (training config, batch file): strict types, one-line errors.

YAML hands over plain values; these types refuse the lenient readings pydantic would otherwise allow
(``true`` as 1, ``"yes"`` as true, ``2.5`` as an integer), and :func:`schema_error` turns a
``ValidationError`` into the project's one-line :class:`~landprompt.errors.BadInputError` naming the key path.
:func:`read_yaml` reads a user's YAML file with the command line's ``--set`` overrides.
"""

from __future__ import annotations

import copy
import os
import typing
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any, TypeVar

import yaml
from pydantic import BeforeValidator, Field, FiniteFloat, Strict, TypeAdapter, ValidationError
from pydantic_core import PydanticKnownError, PydanticUndefined

from landprompt.errors import BadInputError, did_you_mean


def _number(value: Any) -> Any:
    """Refuse ``true``/``false`` where a number is due (pydantic would read them as 1.0 and 0.0)."""
    if isinstance(value, bool):
        raise PydanticKnownError("float_type")
    return value


def _text(value: Any) -> Any:
    """Refuse anything but a string with more than spaces; drop the surrounding spaces."""
    if not isinstance(value, str) or not value.strip():
        raise PydanticKnownError("string_type")
    return value.strip()


def checked(test: Callable[[Any], bool], message: str) -> BeforeValidator:
    """A check of the value as given: where ``test`` fails, the error is ``{message}, got {value!r}``."""

    def check(value: Any) -> Any:
        if not test(value):
            raise ValueError(f"{message}, got {value!r}")
        return value

    return BeforeValidator(check)


def _section(value: Any) -> Any:
    """An empty section (``augment:`` with no keys) takes every default."""
    return {} if value is None else value


Int = Annotated[int, Strict()]
"""An integer (``true`` and ``2.5`` refused)."""
Real = Annotated[FiniteFloat, BeforeValidator(_number)]
"""A finite number; numeric strings such as ``1e-3`` (text in YAML 1.1) are read as numbers."""
Flag = Annotated[bool, Strict()]
"""``true`` or ``false`` only."""
Text = Annotated[str, BeforeValidator(_text)]
"""A non-empty string (surrounding spaces dropped)."""
FilePath = Annotated[Path, BeforeValidator(_text)]
"""A path written as a non-empty string."""
_T = TypeVar("_T")
_M = TypeVar("_M")
Section = Annotated[_T, BeforeValidator(_section)]
"""A nested section (``Section[AugmentConfig]``); left empty (null), it takes every default."""


def key(default: Any = PydanticUndefined, description: str = "", **limits: Any) -> Any:
    """A described field (pydantic ``Field``): ``key(0, "Seeds the run.", ge=0)``; ``...`` makes it required.

    Typed ``Any`` so that type checkers read it as a plain default, as pydantic does.
    """
    return Field(default, description=description, **limits)


def read_yaml(path: str | os.PathLike[str], what: str = "YAML file", overrides: Iterable[str] = ()) -> Any:
    """The parsed YAML file at ``path``, with the command line's ``--set`` overrides applied.

    Args:
        path: The file.
        what: What the file is, for the errors (``batch file b.yaml does not exist``).
        overrides: ``dotted.key=value`` items.

    Raises:
        BadInputError: If the file does not exist or is not valid YAML, or an override is malformed.
    """
    path = Path(path)
    if not path.is_file():
        raise BadInputError(f"{what} {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise BadInputError(f"{path} is not valid YAML: {' '.join(str(exc).split())}") from None
    return apply_overrides(data, overrides)


def apply_overrides(raw: Any, overrides: Iterable[str]) -> Any:
    """A copy of ``raw`` with ``dotted.key=value`` overrides applied (values parsed as YAML).

    ``raw`` other than a mapping is returned as it is, for validation to refuse.
    """
    if not isinstance(raw, Mapping):
        return raw
    out: dict[str, Any] = copy.deepcopy(dict(raw))
    for item in overrides:
        dotted, sep, text = item.partition("=")
        *sections, name = parts = dotted.strip().split(".")
        if not sep or not all(parts):
            raise BadInputError(f"override {item!r} must look like section.key=value")
        node = out
        for i, part in enumerate(sections):
            if node.get(part) is None:  # a missing or empty section (``augment:``)
                node[part] = {}
            node = node[part]
            if not isinstance(node, dict):
                raise BadInputError(f"override {item!r}: {'.'.join(parts[: i + 1])} is not a section")
        try:
            node[name] = yaml.safe_load(text)
        except yaml.YAMLError as err:
            raise BadInputError(f"override {item!r}: the value is not valid YAML: {err}") from err
    return out


_UNKNOWN = ("extra_forbidden", "unexpected_keyword_argument")
#: How a pydantic error type reads after the key path (``{name}`` fields come from the error's context).
_WORDING = {
    "int_type": "must be an integer",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "finite_number": "must be a finite number",
    "bool_type": "must be true or false",
    "string_type": "must be a non-empty string",
    "greater_than": "must be > {gt}",
    "greater_than_equal": "must be >= {ge}",
    "less_than": "must be < {lt}",
    "less_than_equal": "must be <= {le}",
    "literal_error": "must be one of {expected}",
    "dict_type": "must be a mapping of names to values",
    "list_type": "must be a list",
    "model_type": "must be a mapping of keys",
    "dataclass_type": "must be a mapping of keys",
}


_ADAPTERS: dict[Any, TypeAdapter[Any]] = {}


def adapter(model: type[_M]) -> TypeAdapter[_M]:
    """The one ``TypeAdapter`` of a model (building one is costly: made once, kept)."""
    if model not in _ADAPTERS:
        _ADAPTERS[model] = TypeAdapter(model)
    return _ADAPTERS[model]


def validated(model: type[_M], data: Any, see: str = "", *, where: str = "") -> _M:
    """``data`` validated as ``model``; a problem raises :func:`schema_error`'s one line (same arguments)."""
    try:
        return adapter(model).validate_python(data)
    except ValidationError as err:
        raise schema_error(err, model, see, where=where) from None


def schema_error(err: ValidationError, model: Any, see: str = "", *, where: str = "") -> BadInputError:
    """The first problem of a pydantic ``ValidationError`` as one line naming the key path.

    Two phrasings: by default ``optim.lr must be > 0.0, got -1`` and ``unknown key optim.lrr in optim;
    did you mean optim.lr?`` (the training config); with ``where`` (what the root is called, e.g. "the
    batch file") ``defaults.dtype: unknown dtype 'float64'; choose one of float32, uint8`` and
    ``defaults: unknown key 'colour'; did you mean ...`` (the batch file). A validator's own ``ValueError``
    text is kept as written (prefixed with its key path in the second phrasing).

    Args:
        err: What pydantic raised.
        model: The model (BaseModel or pydantic dataclass) that was validated, to list known keys.
        see: A file documenting every key, named after a missing one.
        where: The name of the root for the ``path: message`` phrasing; empty for the first phrasing.
    """
    errors = err.errors(include_url=False)
    first = next(
        (e for e in errors if e["type"] in _UNKNOWN), errors[0]
    )  # a misspelt key explains a missing one
    loc = tuple(first["loc"])
    path, parent = _dotted(loc) or where or "the config", _dotted(loc[:-1])
    kind, ctx, value = first["type"], dict(first.get("ctx") or {}), first.get("input")
    at = f"{path}: " if where else ""
    if kind in _UNKNOWN:
        known = list(model_fields(model, loc[:-1]))
        listed = f"known keys: {', '.join(known)}"
        if where:
            hint = did_you_mean(str(loc[-1]), known, before="") or listed
            return BadInputError(f"{f'{parent}: ' if parent else ''}unknown key {loc[-1]!r}; {hint}")
        prefix = f"{parent}." if parent else ""
        hint = did_you_mean(str(loc[-1]), known, show=lambda key: prefix + key, before="") or listed
        return BadInputError(f"unknown key {path} in {parent or 'the config'}; {hint}")
    if kind == "missing":
        if where:
            return BadInputError(f"{path}: required key is missing")
        what = "section" if model_fields(model, loc) else "key"
        return BadInputError(f"missing {what} {path} (required{f'; see {see} for every key' if see else ''})")
    if kind in ("value_error", "assertion_error") and "error" in ctx:
        return BadInputError(f"{at if loc else ''}{ctx['error']}")
    if "expected" in ctx:  # "'mean' or 'sample'" -> "mean, sample"
        ctx["expected"] = str(ctx["expected"]).replace("'", "").replace(" or ", ", ")
        info = model_fields(model, loc[:-1]).get(str(loc[-1]))
        if where and info is not None and info.title:
            return BadInputError(f"{at}unknown {info.title} {value!r}; choose one of {ctx['expected']}")
    wording = (
        _WORDING[kind].format(**ctx) if kind in _WORDING else first["msg"][:1].lower() + first["msg"][1:]
    )
    sep = ";" if kind == "literal_error" else ","
    return BadInputError(f"{at or f'{path} '}{wording}{sep} got {value!r}")


def model_fields(model: Any, loc: tuple[int | str, ...] = ()) -> dict[str, Any]:
    """The fields of the model found at ``loc`` inside ``model`` (list indices skipped); empty if none."""
    fields: dict[str, Any] = getattr(model, "__pydantic_fields__", {})
    for part in loc:
        if isinstance(part, int):
            continue
        if part not in fields:
            return {}
        kinds, fields = [fields[part].annotation], {}
        while kinds and not fields:
            kind = kinds.pop()
            fields = getattr(kind, "__pydantic_fields__", {})
            kinds.extend(typing.get_args(kind))
    return fields


def _dotted(loc: tuple[int | str, ...]) -> str:
    """``jobs[0].out`` for the location ``("jobs", 0, "out")``."""
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".")
