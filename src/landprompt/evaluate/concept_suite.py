"""Concept suites: plain-word concepts with presence / absence rules over LUCAS survey columns.

A suite is a YAML file (the shipped one: ``data/concepts/lucas_concepts.yaml``)::

    format: landprompt-concept-suite
    version: 1                # the suite's own version, recorded in every report
    concepts:
      olive_groves:
        group: land cover     # land cover | land use | land management | structure and sealing
        name: olive groves    # fills the prompt templates (the prompt-set format's ``name``)
        descriptive: [...]    # sentences, used as they are (the prompt-set format's sentence style)
        presence: "lc1 = 'B81'"                       # DuckDB SQL predicate over the LUCAS columns
        absence: "regexp_matches(lc1, '^[A-H]') AND lc1 <> 'B81'"
        years: [2006, 2009, 2012, 2015, 2018, 2022]   # surveys where the fields exist
        source: "LUCAS C3 classification, lc1 code B81 (olive groves)"

A point is *present* where ``presence`` is true, *absent* where ``absence`` is true and ``presence``
is not, and unlabelled otherwise (NULL counts as false). Rules only see the points of their ``years``.

**LUCAS tables.** CSV or Parquet, read by DuckDB with every column as text. Column names are
normalised as ``pairs ingest lucas`` does (:func:`landprompt.pairs.sources.lucas.normalised_columns`:
lower case, and the 2022 survey's ``SURVEY_*`` / ``POINT_*`` names mapped to the harmonised ones).
The survey year of a row is its ``year`` column, else the year of its ``survey_date``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd

from landprompt.errors import BadInputError
from landprompt.evaluate.prompts import PromptSet, default_templates
from landprompt.pairs.sources.lucas import normalised_columns
from landprompt.schema import read_yaml

SUITE_FORMAT = "landprompt-concept-suite"
SURVEY_YEARS: tuple[int, ...] = (2006, 2009, 2012, 2015, 2018, 2022)
GROUPS: tuple[str, ...] = ("land cover", "land use", "land management", "structure and sealing")


def shipped_suite_path() -> Path:
    """The shipped suite file."""
    from importlib.resources import files

    return Path(str(files("landprompt.evaluate").joinpath("data", "concepts", "lucas_concepts.yaml")))


@dataclass(frozen=True)
class Concept:
    """One concept of a suite: its prompts and its labelling rules."""

    key: str
    group: str
    name: str
    descriptive: tuple[str, ...]
    presence: str
    absence: str
    years: tuple[int, ...]
    source: str

    def columns(self) -> frozenset[str]:
        """The LUCAS columns the two rules name (lower case)."""
        return rule_columns(self.presence) | rule_columns(self.absence)


@dataclass(frozen=True)
class ConceptSuite:
    """A versioned list of concepts, read from a YAML file."""

    version: str
    concepts: tuple[Concept, ...]
    source: str

    def prompt_set(self) -> PromptSet:
        """The concepts as a prompt set: names for the template styles, ``descriptive`` sentences."""
        names = {c.key: c.name for c in self.concepts}
        sentences = {"descriptive": {c.key: c.descriptive for c in self.concepts if c.descriptive}}
        templates = {k: v for k, v in default_templates().items() if k != "descriptive"}
        return PromptSet("lucas-concepts", names, templates, sentences, (self.source,))


def load_suite(path: str | os.PathLike[str] | None = None) -> ConceptSuite:
    """Read and check a concept suite (default: the shipped one).

    Raises:
        BadInputError: If the file is not a suite, has no concept, or a concept lacks a field, names an
            unknown group or year, or has a rule that is not one SQL expression.
    """
    path = Path(path) if path is not None else shipped_suite_path()
    document = read_yaml(path, "concept suite")
    if not isinstance(document, dict) or document.get("format") != SUITE_FORMAT:
        raise BadInputError(f"{path} is not a concept suite (it needs 'format: {SUITE_FORMAT}')")
    entries = document.get("concepts") or {}
    if not isinstance(entries, dict) or not entries:
        raise BadInputError(f"the concept suite {path} has no concepts: nothing to evaluate")
    concepts = tuple(_concept(str(key), entry, path) for key, entry in entries.items())
    return ConceptSuite(str(document.get("version", "")), concepts, str(path))


def _concept(key: str, entry: Any, path: Path) -> Concept:
    where = f"{path}: concept {key!r}"
    if not isinstance(entry, dict):
        raise BadInputError(f"{where} must be a mapping of name, presence, absence, years, source")
    missing = [k for k in ("name", "presence", "absence", "years", "source") if not entry.get(k)]
    if missing:
        raise BadInputError(f"{where} lacks {', '.join(missing)}")
    group = str(entry.get("group", ""))
    if group not in GROUPS:
        raise BadInputError(f"{where} has group {group!r}; groups: {', '.join(GROUPS)}")
    years = entry["years"]
    if not isinstance(years, list) or any(y not in SURVEY_YEARS for y in years):
        raise BadInputError(f"{where}: years must be a list of survey years {list(SURVEY_YEARS)}")
    descriptive = entry.get("descriptive") or []
    if isinstance(descriptive, str) or not isinstance(descriptive, list):
        raise BadInputError(f"{where}: descriptive must be a list of sentences")
    for rule in ("presence", "absence"):
        try:
            rule_columns(str(entry[rule]))
        except BadInputError as exc:
            raise BadInputError(f"{where}: {rule} rule: {exc}") from None
    return Concept(
        key,
        group,
        str(entry["name"]),
        tuple(str(s) for s in descriptive),
        str(entry["presence"]),
        str(entry["absence"]),
        tuple(int(y) for y in years),
        str(entry["source"]),
    )


@cache
def rule_columns(rule: str) -> frozenset[str]:
    """Columns a rule names, from DuckDB's parse tree of ``SELECT (rule)``.

    Raises:
        BadInputError: If the rule is not a single SQL expression.
    """
    row = _parser().execute("SELECT json_serialize_sql(?)", [f"SELECT ({rule})"]).fetchone()
    tree = json.loads(row[0] if row else '{"error": true}')
    if tree.get("error") or len(tree.get("statements", [])) != 1:
        raise BadInputError(f"{rule!r} is not one SQL expression ({tree.get('error_message', 'several')})")
    return frozenset(_column_refs(tree["statements"][0]))


@cache
def _parser() -> duckdb.DuckDBPyConnection:
    """One in-memory DuckDB connection for parsing rules."""
    return duckdb.connect()


def _column_refs(node: Any) -> Iterable[str]:
    if isinstance(node, dict):
        if node.get("class") == "COLUMN_REF":
            yield str(node["column_names"][-1]).lower()
        for value in node.values():
            yield from _column_refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _column_refs(value)


# --- LUCAS tables ----------------------------------------------------------------------------------


def read_lucas(path: str | os.PathLike[str]) -> pd.DataFrame:
    """A LUCAS table (CSV or Parquet) with every column as text, names normalised, and ``survey_year``.

    Raises:
        BadInputError: If the file is missing or unreadable, lacks coordinates, or a row has no year.
    """
    path = Path(path)
    if not path.is_file():
        raise BadInputError(f"LUCAS table {path} does not exist")
    parquet = path.suffix.lower() in (".parquet", ".pq")
    reader = "read_parquet(?)" if parquet else "read_csv(?, all_varchar=true, header=true)"
    try:
        frame = duckdb.connect().execute(f"SELECT COLUMNS(*)::VARCHAR FROM {reader}", [str(path)]).df()
    except duckdb.Error as exc:
        raise BadInputError(
            f"LUCAS table {path} is not readable: {' '.join(str(exc).split())[:200]}"
        ) from None
    frame = frame.astype(object).where(frame.notna(), None).copy()
    frame.columns = list(normalised_columns(list(frame.columns)).values())
    for column in ("th_lat", "th_long"):
        if column not in frame:
            raise BadInputError(f"LUCAS table {path} lacks column {column!r}: is it a LUCAS survey table?")
    frame["survey_year"] = survey_years(frame, path)
    return frame


def survey_years(frame: pd.DataFrame, path: str | os.PathLike[str] = "table") -> np.ndarray:
    """Survey year of every row: ``year``, else the year of ``survey_date``.

    Raises:
        BadInputError: If a row has neither.
    """
    from landprompt.pairs.sources.lucas import survey_dates

    years = pd.to_numeric(frame.get("year", pd.Series(None, index=frame.index)), errors="coerce")
    if "survey_date" in frame:
        years = years.fillna(survey_dates(frame["survey_date"].fillna("")).dt.year)
    missing = np.flatnonzero(years.isna().to_numpy())
    if missing.size:
        raise BadInputError(f"{path}: row {missing[0] + 1} has no survey year (no 'year', no 'survey_date')")
    return years.to_numpy(dtype=np.int64)


def check_columns(concepts: Sequence[Concept], columns: Iterable[str], years: Iterable[int]) -> None:
    """Refuse a concept whose rules name a column the table lacks in one of the concept's years.

    Raises:
        BadInputError: Naming the concept, the column and the survey year.
    """
    have = set(columns)
    present = sorted(set(int(y) for y in years))
    for concept in concepts:
        lacking = sorted(concept.columns() - have)
        used = [y for y in present if y in concept.years]
        if lacking and used:
            raise BadInputError(
                f"concept {concept.key!r} needs column {lacking[0]!r}, which the {used[0]} LUCAS table "
                f"lacks: fix the rule, or drop {used[0]} from the concept's years"
            )


def concept_labels(frame: pd.DataFrame, concepts: Sequence[Concept]) -> pd.DataFrame:
    """Labels of every row for every concept: 1 present, 0 absent, -1 unlabelled or not surveyed.

    Rules run in DuckDB over ``frame`` (columns as text); a concept only labels rows of its years.

    Raises:
        BadInputError: If a rule names a missing column (with the year) or fails to run.
    """
    check_columns(concepts, frame.columns, frame["survey_year"])
    con = duckdb.connect()
    con.register("lucas_input", frame.assign(__row=np.arange(len(frame))))
    selects = []
    for i, c in enumerate(concepts):
        if c.columns() - set(frame.columns):  # not surveyed in the table's years (checked above)
            selects.append(f"-1::TINYINT AS c{i}")
            continue
        years = ", ".join(str(y) for y in c.years)
        selects.append(
            f"CASE WHEN survey_year NOT IN ({years}) THEN -1 WHEN coalesce(({c.presence}), false) THEN 1 "
            f"WHEN coalesce(({c.absence}), false) THEN 0 ELSE -1 END::TINYINT AS c{i}"
        )
    out = np.empty((len(frame), len(concepts)), dtype=np.int8)
    for start in range(0, len(concepts), 50):  # keep each statement a readable size
        part = selects[start : start + 50]
        sql = f"SELECT {', '.join(part)} FROM lucas_input ORDER BY __row"
        try:
            result = con.execute(sql).fetchnumpy()
        except duckdb.Error as exc:
            raise BadInputError(_rule_error(concepts[start : start + len(part)], con, exc)) from None
        for i in range(start, start + len(part)):
            out[:, i] = result[f"c{i}"]
    return pd.DataFrame(out, columns=[c.key for c in concepts], index=frame.index)


def _rule_error(concepts: Sequence[Concept], con: duckdb.DuckDBPyConnection, exc: Exception) -> str:
    """The first concept whose rule fails on its own, and DuckDB's reason."""
    for c in concepts:
        for kind, rule in (("presence", c.presence), ("absence", c.absence)):
            try:
                con.execute(f"SELECT coalesce(({rule}), false) FROM lucas_input LIMIT 1").fetchall()
            except duckdb.Error as err:
                return f"concept {c.key!r}: its {kind} rule fails: {' '.join(str(err).split())[:200]}"
    return f"a concept rule fails: {' '.join(str(exc).split())[:200]}"
