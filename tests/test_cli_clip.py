"""Every command taking ``--clip``/``--pretrained`` loads CLIP one way (``cli.common.named_clip``)."""

from pathlib import Path

import pytest
from typer.testing import CliRunner

from landprompt.cli import app

runner = CliRunner()
NEEDS = "needs --pretrained TAG|FILE|none"


def invoke(*args: str):
    return runner.invoke(app, list(args))


def lines(result) -> list[str]:
    return [line for line in result.output.splitlines() if line.strip()]


def test_pairs_photos_refuses_a_model_without_weights(tmp_path: Path) -> None:
    """The default ViT-B-32 without --pretrained used to embed every photo with random weights."""
    result = invoke(
        "pairs", "photos", "--catalog", str(tmp_path / "c.duckdb"), "-o", str(tmp_path / "p.zarr")
    )
    assert result.exit_code != 0
    assert lines(result) == [
        f"error: --clip ViT-B-32 {NEEDS}: a tag of the model, a weights file, or "
        "--pretrained none for random weights (tests only)"
    ]
    assert not (tmp_path / "p.zarr").exists()


def test_pairs_photos_takes_pretrained_none_with_a_warning(tmp_path: Path) -> None:
    args = ("--catalog", str(tmp_path / "c.duckdb"), "-o", str(tmp_path / "p.zarr"))
    result = invoke("pairs", "photos", *args, "--clip", "landprompt-tiny", "--pretrained", "none")
    assert "unknown pretrained tag" not in result.output
    assert "warning: CLIP landprompt-tiny has RANDOM weights" in result.output


def test_evaluate_refuses_a_clip_without_weights(tmp_path: Path) -> None:
    result = invoke(
        "evaluate", "eurosat", "--root", str(tmp_path), "--model", "random", "--clip", "landprompt-tiny"
    )
    assert result.exit_code != 0 and lines(result)[0].startswith(f"error: --clip landprompt-tiny {NEEDS}")


@pytest.mark.parametrize("extra", [(), ("--pretrained", "none")])
def test_demo_runs_with_random_weights_by_default_and_on_request(
    tmp_path: Path, extra: tuple[str, ...]
) -> None:
    result = invoke("demo", "--out", str(tmp_path / "d"), *extra)
    assert result.exit_code == 0, result.output
    assert (
        "landprompt-tiny/random(0)" in result.output and (tmp_path / "d" / "a_lake_probability.tif").is_file()
    )


def test_demo_refuses_another_model_without_weights(tmp_path: Path) -> None:
    result = invoke("demo", "--out", str(tmp_path / "d"), "--clip", "ViT-B-32")
    assert result.exit_code != 0 and lines(result)[0].startswith(f"error: --clip ViT-B-32 {NEEDS}")
    assert not (tmp_path / "d").exists()


@pytest.mark.parametrize("command", [("demo",), ("pairs", "photos"), ("evaluate", "eurosat")])
def test_pretrained_help_is_true_for_commands_without_a_cube_default(command: tuple[str, ...]) -> None:
    from typer.main import get_command

    cli = get_command(app)
    for name in command:
        cli = cli.commands[name]  # type: ignore[attr-defined]
    help_text = next(p for p in cli.params if p.name == "pretrained").help
    assert "'none' for random" in help_text and "the tag the cube records" not in help_text
