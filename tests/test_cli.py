import json
import typing

import pytest
import rasterio
from typer.testing import CliRunner

from landprompt import __version__
from landprompt.cli import app

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, list(args))


def error_line(result) -> str:
    lines = [line for line in result.output.splitlines() if line.strip() and not line.startswith("warning:")]
    assert len(lines) == 1, result.output
    return lines[0]


def test_version_and_help():
    assert __version__ in invoke("--version").output
    result = invoke("--help")
    assert result.exit_code == 0
    for command in ("demo", "cube", "index", "query"):
        assert command in result.output


def _leaf_commands(command, path=()):
    """(path, command) of every command of the app that runs something (not a group)."""
    subcommands = getattr(command, "commands", None)
    if not subcommands:
        yield path, command
        return
    for name, sub in subcommands.items():
        yield from _leaf_commands(sub, (*path, name))


def test_every_command_help_has_examples():
    import typer

    commands = list(_leaf_commands(typer.main.get_command(app)))
    assert len(commands) >= 28  # demo, eo, pairs, train, embed, cube, index, query, evaluate commands
    for path, _ in commands:
        result = runner.invoke(app, [*path, "--help"], terminal_width=200)
        assert result.exit_code == 0, result.output
        _, found, examples = result.output.partition("Examples:")
        assert found and f"landprompt {' '.join(path)}" in examples, f"{' '.join(path)}: no example"


def test_demo_command(tmp_path):
    result = invoke("demo", "--out", str(tmp_path / "d"), "--concept", "a forest")
    assert result.exit_code == 0, result.output
    assert "Synthetic embeddings" in result.output
    assert (tmp_path / "d" / "a_forest_probability.tif").is_file()
    assert (tmp_path / "d" / "a_forest_probability.png").is_file()
    assert "100.0%" in result.output


def test_demo_rejects_an_unplanted_concept(tmp_path):
    result = invoke("demo", "--out", str(tmp_path / "d"), "--concept", "glaciers")
    assert result.exit_code == 2
    assert "the demo plants" in error_line(result)
    assert not (tmp_path / "d").exists()


def test_cube_info(demo_run):
    result = invoke("cube", "info", str(demo_run.cube))
    assert result.exit_code == 0, result.output
    assert "EPSG:32632" in result.output and "valid_fraction" in result.output


def test_not_a_cube_is_one_line_and_exit_2(tmp_path):
    (tmp_path / "plain").mkdir()
    for path in (tmp_path / "missing.zarr", tmp_path / "plain"):
        result = invoke("cube", "info", str(path))
        assert result.exit_code == 2
        assert error_line(result).startswith("error:")


def test_query_topk_formats(demo_run, tmp_path):
    result = invoke(
        "query", "topk", str(demo_run.cube), "a lake", "-k", "3", "--format", "csv", "--min-distance", "200"
    )
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    assert lines[0] == "rank,row,col,lon,lat,x,y,score" and len(lines) == 4
    assert result.stderr.startswith("warning: CLIP landprompt-tiny has RANDOM weights")
    out = tmp_path / "lake.geojson"
    result = invoke("query", "topk", str(demo_run.cube), "a lake", "-k", "2", "-o", str(out))
    assert result.exit_code == 0, result.output
    assert len(json.loads(out.read_text())["features"]) == 2
    assert invoke("query", "topk", str(demo_run.cube), "a lake", "-k", "2").exit_code == 0


def test_query_map_writes_cog_png_and_html(demo_run, tmp_path):
    out = tmp_path / "forest.tif"
    result = invoke(
        "query",
        "map",
        str(demo_run.cube),
        "a forest",
        "-o",
        str(out),
        "--png",
        "--html",
        "--versus",
        "a lake",
        "--versus",
        "grassland",
        "--dtype",
        "uint8",
    )
    assert result.exit_code == 0, result.output
    with rasterio.open(out) as src:
        assert src.dtypes[0] == "uint8" and src.nodata == 255
    assert out.with_suffix(".png").is_file() and out.with_suffix(".html").is_file()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["  "], "empty prompt"),
        (["a lake", "--bbox", "0,0,1,1"], "outside the grid"),
        (["a lake", "--bbox", "1,2,3"], "4 numbers"),
    ],
)
def test_query_map_bad_input_writes_nothing(demo_run, tmp_path, args, message):
    out = tmp_path / "m.tif"
    result = invoke("query", "map", str(demo_run.cube), *args, "-o", str(out))
    assert result.exit_code == 2
    assert message in error_line(result)
    assert list(tmp_path.iterdir()) == []


def test_index_build_and_bad_factory(demo_run, tmp_path):
    out = tmp_path / "demo.faiss"
    result = invoke("index", "build", str(demo_run.cube), "-o", str(out), "--factory", "IVF16,Flat")
    assert result.exit_code == 0, result.output
    assert "IVF16,Flat" in result.output and out.is_file()
    result = invoke(
        "index", "build", str(demo_run.cube), "-o", str(tmp_path / "bad.faiss"), "--factory", "Nope"
    )
    assert result.exit_code == 2
    assert "unknown FAISS factory" in error_line(result)
    assert not (tmp_path / "bad.faiss").exists()


def test_evaluate_commands_cover_every_benchmark():
    from landprompt.cli.evaluate import BENCHMARK_NAMES
    from landprompt.evaluate.datasets import BENCHMARKS

    assert tuple(BENCHMARKS) == BENCHMARK_NAMES
    result = invoke("evaluate", "--help")
    for name in BENCHMARK_NAMES:
        assert name in result.output


def test_evaluate_eurosat_sample_from_the_command_line(tmp_path):
    from pathlib import Path

    root = Path(__file__).parents[1].parent / "shared" / "data" / "eurosat-ms-sample"
    if not root.is_dir():
        pytest.skip(f"shared EuroSAT sample missing at {root}")
    result = invoke(
        "evaluate",
        "eurosat",
        "--root",
        str(root),
        "--model",
        "random",
        "--clip",
        "landprompt-tiny",
        "--pretrained",
        "none",
        "--out",
        str(tmp_path / "ev"),
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "ev" / "report.json").is_file() and (tmp_path / "ev" / "report.md").is_file()
    bad = invoke("evaluate", "eurosat", "--root", str(tmp_path / "nope"), "--model", "random")
    assert bad.exit_code != 0 and error_line(bad).startswith("error:")


def test_the_command_line_choices_are_the_library_types() -> None:
    from landprompt.calibration import Method
    from landprompt.cli import common
    from landprompt.embedder.cube import CubeDtype
    from landprompt.query.maps import write_cog

    map_dtype = typing.get_type_hints(write_cog)["dtype"]
    assert typing.get_args(common.CubeDtype) == typing.get_args(CubeDtype)
    assert typing.get_args(common.MapDtype) == typing.get_args(map_dtype)
    assert typing.get_args(common.FitMethod) == typing.get_args(Method)


def test_the_demo_clip_is_the_tiny_model() -> None:
    from landprompt.cli.main import DEMO_CLIP
    from landprompt.embedder.clip import TINY_MODEL

    assert DEMO_CLIP == TINY_MODEL
