"""Choices and bounds are refused by the command line (typer ``Literal``, ``min=``/``max=``) before work."""

import typing
from pathlib import Path

import pytest
from typer.testing import CliRunner

from landprompt.cli import app

CUBE = "c.zarr"
RUN = ["embed", "run", "--aoi", "11,43,11.1,43.1", "--year", "2023", "-o", "x.zarr"]
EUROSAT = ["evaluate", "eurosat", "--root", "r", "-o", "ev"]
CONCEPTS = ["evaluate", "concepts", "--lucas", "l.csv", "-o", "ev"]
FETCH = ["pairs", "fetch", "--catalog", "c.duckdb", "--store", "s.zarr"]
PHOTOS = ["pairs", "photos", "--catalog", "c.duckdb", "-o", "p.zarr"]

CASES = {
    "topk-k": (["query", "topk", CUBE, "a lake", "-k", "0"], "-k"),
    "topk-min-distance": (["query", "topk", CUBE, "a lake", "--min-distance", "-1"], "--min-distance"),
    "serve-port": (["serve", CUBE, "--port", "70000"], "--port"),
    "serve-workers": (["serve", CUBE, "--workers", "0"], "--workers"),
    "embed-basis": ([*RUN, "--basis", "svd"], "--basis"),
    "embed-l2a-offset": ([*RUN, "--l2a-offset", "-999"], "--l2a-offset"),
    "embed-rank": ([*RUN, "--rank", "0"], "--rank"),
    "embed-dilate": ([*RUN, "--dilate", "-1"], "--dilate"),
    "convert-rank": (["cube", "convert", CUBE, "n.zarr", "--rank", "0"], "--rank"),
    "eval-score-norm": ([*EUROSAT, "--score-norm", "softmax"], "--score-norm"),
    "eval-coordinates": ([*EUROSAT, "--coordinates", "utm"], "--coordinates"),
    "eval-month": ([*EUROSAT, "--month", "13"], "--month"),
    "eval-batch-size": ([*EUROSAT, "--batch-size", "0"], "--batch-size"),
    "eval-limit": ([*EUROSAT, "--limit", "0"], "--limit"),
    "concepts-coordinates": ([*CONCEPTS, "--coordinates", "utm"], "--coordinates"),
    "concepts-bootstrap": ([*CONCEPTS, "--bootstrap", "-1"], "--bootstrap"),
    "concepts-exclude-km": ([*CONCEPTS, "--exclude-km", "-2"], "--exclude-km"),
    "concepts-block-km": ([*CONCEPTS, "--block-km", "-1"], "--block-km"),
    "concepts-min-class": ([*CONCEPTS, "--min-class", "0"], "--min-class"),
    "flickr-per-page": (
        ["pairs", "ingest", "flickr", "1,2,3,4", "--catalog", "c.duckdb", "--per-page", "501"],
        "--per-page",
    ),
    "flickr-max-pages": (
        ["pairs", "ingest", "flickr", "1,2,3,4", "--catalog", "c.duckdb", "--max-pages", "0"],
        "--max-pages",
    ),
    "fetch-dilate": ([*FETCH, "--dilate", "-1"], "--dilate"),
    "photos-threads": ([*PHOTOS, "--threads", "0"], "--threads"),
    "photos-batch-size": ([*PHOTOS, "--batch-size", "0"], "--batch-size"),
    "train-stop-at": (["train", "t.yaml", "--stop-at", "0"], "--stop-at"),
    "change-threshold": (
        ["query", "change", CUBE, CUBE, "a lake", "-o", "c.tif", "--threshold", "1.5"],
        "--threshold",
    ),
    "change-threshold-negative": (
        ["query", "change", CUBE, CUBE, "a lake", "-o", "c.tif", "--threshold", "-0.1"],
        "--threshold",
    ),
    "aggregate-threshold": (
        ["query", "aggregate", CUBE, "a lake", "--units", "u.geojson", "--threshold", "2"],
        "--threshold",
    ),
    "aggregate-threshold-negative": (
        ["query", "aggregate", CUBE, "a lake", "--units", "u.geojson", "--threshold", "-1"],
        "--threshold",
    ),
}


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_the_command_line_refuses_before_any_work(
    case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    argv, flag = CASES[case]
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, argv)
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 2 and len(lines) == 1, result.output
    assert lines[0].startswith(f"error: Invalid value for '{flag}'"), lines[0]
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_the_new_choices_are_the_library_ones() -> None:
    from landprompt.cli import common
    from landprompt.embedder.run import BASES
    from landprompt.eo.l2a import L2A_OFFSET_CHOICES
    from landprompt.evaluate.datasets.lucas import Coordinates
    from landprompt.evaluate.zeroshot import SCORE_NORMS

    assert typing.get_args(common.Basis) == BASES
    assert typing.get_args(common.L2aOffset) == L2A_OFFSET_CHOICES
    assert typing.get_args(common.ScoreNorm) == SCORE_NORMS
    assert typing.get_args(common.Coordinates) == typing.get_args(Coordinates)


def test_flickr_bbox_argument_shares_the_bbox_help() -> None:
    from typer.main import get_command

    from landprompt.cli.common import BBOX_HELP

    flickr = get_command(app).commands["pairs"].commands["ingest"].commands["flickr"]  # type: ignore[attr-defined]
    assert next(p for p in flickr.params if p.name == "bbox").help == BBOX_HELP
