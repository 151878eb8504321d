"""Saved monotone recalibrations of concept probabilities: their form, files and application.

A :class:`Calibration` maps a raw probability ``p`` to a calibrated one, monotonically:

- ``platt``: ``sigmoid(a * logit(p) + b)`` with ``a >= 0`` (parameters ``a``, ``b``);
- ``isotonic``: a non-decreasing step function given by its knots ``x``, ``y``, linearly interpolated
  between them and flat beyond them.

A calibration is fitted for one query (concept, background prompts, prompt style, logit scale, CLIP
model): applying it to probabilities of another query is refused. It is saved next to the cube as
``<cube>.calibration/<concept-slug>.json`` (see :meth:`Calibration.to_dict` for the format).

This module sits below :mod:`landprompt.query` and :mod:`landprompt.evaluate` (both use it) and imports
neither. Fitting a calibration to field observations is evaluation's job
(:mod:`landprompt.evaluate.recalibration`); the scorer that applies one while streaming a cube is
:class:`landprompt.query.scorer.ConceptScorer`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast, get_args

import numpy as np
import xarray as xr

from landprompt.errors import BadInputError
from landprompt.files import slugify, write_json

Method = Literal["platt", "isotonic"]

CALIBRATION_FORMAT = "landprompt-calibration"
CALIBRATION_VERSION = 1
#: Probabilities are clipped to [EPS, 1 - EPS] before taking their logit.
EPS = 1e-6
#: Values :meth:`Calibration.apply` recalibrates at a time.
APPLY_BLOCK = 1 << 20


# --- query settings --------------------------------------------------------------------------------


@dataclass(frozen=True)
class QuerySettings:
    """What a probability means: the concept and what it competed with, at which temperature.

    Attributes:
        concept: The concept in plain words.
        versus: Background prompts as given; ``None`` for the shipped land-cover vocabulary.
        style: Prompt template style of the ensembles.
        logit_scale: Softmax temperature.
        clip: Id of the CLIP model whose text tower encoded the prompts (``None``: unknown).
    """

    concept: str
    versus: tuple[str, ...] | None
    style: str
    logit_scale: float
    clip: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return {
            "concept": self.concept,
            "versus": None if self.versus is None else list(self.versus),
            "style": self.style,
            "logit_scale": self.logit_scale,
            "clip": self.clip,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> QuerySettings:
        """Inverse of :meth:`to_dict`."""
        versus = data.get("versus")
        return cls(
            str(data["concept"]),
            None if versus is None else tuple(versus),
            str(data["style"]),
            float(data["logit_scale"]),
            data.get("clip"),
        )

    def to_attrs(self) -> dict[str, Any]:
        """The query as a map's scalar attrs: ``versus`` as JSON (``null``: the vocabulary), and ``clip``."""
        attrs = self.to_dict()
        attrs["versus"] = json.dumps(attrs["versus"])
        return attrs if self.clip else {k: v for k, v in attrs.items() if k != "clip"}

    @classmethod
    def from_attrs(cls, attrs: Mapping[str, Any]) -> QuerySettings:
        """The query a map's attrs record (:meth:`to_attrs`).

        Raises:
            BadInputError: If the attrs do not record the concept, background, style and logit scale.
        """
        missing = [key for key in ("concept", "versus", "style", "logit_scale") if key not in attrs]
        if missing:
            raise BadInputError(
                f"the map does not record the query it was scored with (no {', '.join(missing)} attrs): "
                "calibrate a map made from prompts by probability_map, or score it with the calibration"
            )
        try:
            versus = json.loads(attrs["versus"])
        except (TypeError, ValueError):
            raise BadInputError(f"the map's versus attr is not JSON: {attrs['versus']!r}") from None
        return cls.from_dict({**attrs, "versus": versus})

    def differences(self, other: QuerySettings) -> list[str]:
        """Names and values of the settings that differ from ``other`` (CLIP only when both know it)."""
        pairs = {
            "concept": (self.concept.lower(), other.concept.lower()),
            "versus": (_lower(self.versus), _lower(other.versus)),
            "style": (self.style, other.style),
            "logit_scale": (round(self.logit_scale, 4), round(other.logit_scale, 4)),
            "clip": (self.clip, other.clip) if self.clip and other.clip else (None, None),
        }
        return [f"{name} {a!r} vs {b!r}" for name, (a, b) in pairs.items() if a != b]


def _lower(names: tuple[str, ...] | None) -> tuple[str, ...] | None:
    return None if names is None else tuple(n.strip().lower() for n in names)


# --- calibration -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Calibration:
    """A monotone map from raw to calibrated probabilities, with its provenance.

    Attributes:
        method: ``"platt"`` (parameters ``a``, ``b``) or ``"isotonic"`` (knots ``x``, ``y``).
        parameters: The fitted parameters.
        query: The query the raw probabilities came from; ``None`` skips the compatibility check.
        n_points: Number of observations it was fitted on.
        metrics: Metrics recorded with it (e.g. held-out metrics before and after).
        created: ISO 8601 UTC time of the fit.
        cube: Path of the cube it was fitted on.
    """

    method: Method
    parameters: dict[str, Any]
    query: QuerySettings | None = None
    n_points: int = 0
    metrics: dict[str, Any] = field(default_factory=dict)
    created: str = ""
    cube: str | None = None

    def apply(self, p: np.ndarray) -> np.ndarray:
        """Calibrated probabilities (float32, same shape); NaN stays NaN.

        Computed in float32, :data:`APPLY_BLOCK` values at a time, so a whole map needs no float64 copy.
        """
        p = np.asarray(p, dtype=np.float32)
        out = np.empty(p.shape, np.float32)
        flat_in, flat_out = p.reshape(-1), out.reshape(-1)
        for start in range(0, flat_in.size, APPLY_BLOCK):
            block = slice(start, start + APPLY_BLOCK)
            flat_out[block] = self._apply(flat_in[block])
        return out

    def _apply(self, p: np.ndarray) -> np.ndarray:
        with np.errstate(invalid="ignore", over="ignore"):  # NaN in, NaN out
            if self.method == "platt":
                a, b = np.float32(self.parameters["a"]), np.float32(self.parameters["b"])
                return sigmoid(a * logit(p) + b)
            return np.interp(p, self.parameters["x"], self.parameters["y"])

    def check(self, query: QuerySettings) -> None:
        """Raise :class:`BadInputError` unless this calibration was fitted for ``query``."""
        if self.query is None:
            return
        differ = self.query.differences(query)
        if differ:
            raise BadInputError(
                f"the calibration of {self.query.concept!r} was fitted for another query "
                f"({'; '.join(differ)}): query with the same settings, or fit it again"
            )

    def to_dict(self) -> dict[str, Any]:
        """The JSON document of a calibration file.

        Keys: ``format`` (``"landprompt-calibration"``), ``format_version`` (1), ``method``,
        ``parameters`` (``{"a", "b"}`` or ``{"x": [...], "y": [...]}``), ``query`` (concept, versus,
        style, logit_scale, clip), ``n_points``, ``metrics``, ``created`` (ISO 8601 UTC), ``cube``.
        """
        return {
            "format": CALIBRATION_FORMAT,
            "format_version": CALIBRATION_VERSION,
            "method": self.method,
            "parameters": self.parameters,
            "query": None if self.query is None else self.query.to_dict(),
            "n_points": self.n_points,
            "metrics": self.metrics,
            "created": self.created,
            "cube": self.cube,
        }

    @classmethod
    def from_dict(cls, data: Any) -> Calibration:
        """Inverse of :meth:`to_dict`; raises :class:`BadInputError` on anything else."""
        if not isinstance(data, dict) or data.get("format") != CALIBRATION_FORMAT:
            raise BadInputError("not a landprompt calibration file (no format: landprompt-calibration)")
        if data.get("format_version") != CALIBRATION_VERSION:
            raise BadInputError(f"calibration format version {data.get('format_version')!r} is not supported")
        method = cast(Method, data.get("method"))
        if method not in get_args(Method):
            raise BadInputError(f"unknown calibration method {method!r}; known: platt, isotonic")
        try:
            query = None if data.get("query") is None else QuerySettings.from_dict(data["query"])
            return cls(
                method,
                _check_parameters(method, data["parameters"]),
                query,
                int(data.get("n_points", 0)),
                dict(data.get("metrics") or {}),
                str(data.get("created", "")),
                data.get("cube"),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise BadInputError(f"malformed calibration file: {exc}") from None


def _check_parameters(method: str, parameters: Any) -> dict[str, Any]:
    if method == "platt":
        return {"a": float(parameters["a"]), "b": float(parameters["b"])}
    x, y = (np.asarray(parameters[k], dtype=float) for k in ("x", "y"))
    if x.ndim != 1 or x.shape != y.shape or x.size == 0 or np.any(np.diff(x) < 0) or np.any(np.diff(y) < 0):
        raise ValueError("isotonic knots x, y must be equal-length non-decreasing lists")
    return {"x": x.tolist(), "y": y.tolist()}


def logit(p: np.ndarray) -> np.ndarray:
    """``log(p / (1 - p))`` of probabilities clipped to ``[EPS, 1 - EPS]``."""
    p = np.clip(p, EPS, 1 - EPS)
    return np.log(p) - np.log1p(-p)


def sigmoid(z: np.ndarray) -> np.ndarray:
    """``1 / (1 + exp(-z))`` without overflow."""
    return np.exp(-np.logaddexp(0.0, -z))


# --- files -----------------------------------------------------------------------------------------


def calibration_path(cube: str | os.PathLike[str], concept: str) -> Path:
    """Where the calibration of a concept for a cube lives: ``<cube>.calibration/<concept-slug>.json``.

    The cube path is resolved first (a symlinked cube's calibration lives next to its target), so a
    calibration saved through a link is the one a session, which opens the resolved cube, applies.
    """
    slug = slugify(concept)
    if not slug:
        raise BadInputError(f"{concept!r} has no letter or digit to name a calibration file by")
    cube = Path(cube).resolve()
    return cube.with_name(f"{cube.name}.calibration") / f"{slug}.json"


def save_calibration(calibration: Calibration, path: str | os.PathLike[str]) -> Path:
    """Write a calibration as JSON, atomically."""
    return write_json(Path(path), calibration.to_dict())


def load_calibration(path: str | os.PathLike[str]) -> Calibration:
    """Read a calibration file written by :func:`save_calibration`."""
    path = Path(path)
    if not path.is_file():
        raise BadInputError(
            f"no calibration at {path}: fit one with `landprompt evaluate points CUBE CONCEPT "
            "--points OBS.csv --fit platt`"
        )
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadInputError(f"{path} is not valid JSON: {exc}") from None
    try:
        return Calibration.from_dict(data)
    except BadInputError as exc:
        raise BadInputError(f"{path}: {exc}") from None


def resolve_calibration(
    value: Calibration | str | os.PathLike[str] | bool | None,
    cube: xr.Dataset | str | os.PathLike[str],
    concept: str,
) -> Calibration | None:
    """The calibration meant by ``value``: itself, a JSON file, ``True`` for the cube's own, or none."""
    if value is None or value is False:
        return None
    if isinstance(value, Calibration):
        return value
    if value is True:
        return load_calibration(calibration_path(cube_path(cube), concept))
    return load_calibration(value)


def cube_path(cube: xr.Dataset | str | os.PathLike[str]) -> Path:
    """The path of a cube given as a path or as the Dataset :func:`open_cube` returned."""
    if not isinstance(cube, xr.Dataset):
        return Path(cube)
    source = cube.encoding.get("source")
    if not source:
        raise BadInputError("the cube Dataset does not say where it was read from: pass the cube's path")
    return Path(source)


def apply_calibration(da: xr.DataArray, calibration: Calibration | str | os.PathLike[str]) -> xr.DataArray:
    """Calibrate a probability map (e.g. from :func:`~landprompt.query.probability.probability_map`).

    A calibration fitted for a query (``calibration.query``) applies only to a map whose attrs record
    that query (:meth:`QuerySettings.to_attrs`: concept, versus, style, logit scale and, where known,
    the CLIP model); any other map is refused. NaN stays NaN; the result's attrs record the method.
    """
    if not isinstance(calibration, Calibration):
        calibration = load_calibration(calibration)
    if calibration.query is not None:
        calibration.check(QuerySettings.from_attrs(da.attrs))
    out = da.copy(data=calibration.apply(da.values))
    out.attrs.update(calibration=calibration.method)
    return out
