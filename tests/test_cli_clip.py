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
    assert "cube" not in result.output  # there is none to record a tag


def test_evaluate_opens_no_cube_for_a_benchmark_that_reads_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from landprompt.cli import common

    opened: list[object] = []
    original = common._single_cube
    monkeypatch.setattr(common, "_single_cube", lambda cube: opened.append(cube) or original(cube))
    args = ("--root", str(tmp_path / "none"), "--model", "random", "--cube", str(tmp_path / "c.zarr"))
    result = invoke("evaluate", "eurosat", *args, "--clip", "landprompt-tiny", "--pretrained", "none")
    assert result.exit_code != 0 and "RANDOM weights" in result.output  # it got as far as the data
    assert opened == [None]


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


@pytest.fixture
def local_dir_model(tmp_path: Path) -> tuple[str, object]:
    """A ``local-dir:`` folder holding the tiny architecture with seed-5 weights, and that model."""
    import json

    from safetensors.torch import save_file

    from landprompt.embedder.clip import TINY_MODEL, load_clip

    model = load_clip(TINY_MODEL, device="cpu", seed=5)
    folder = tmp_path / "tiny-folder"
    folder.mkdir()
    config = json.loads((Path(model_configs_dir()) / f"{TINY_MODEL}.json").read_text())
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": config, "preprocess_cfg": {}}))
    save_file(model.model.state_dict(), str(folder / "open_clip_model.safetensors"))
    return f"local-dir:{folder}", model


def model_configs_dir() -> Path:
    import landprompt.embedder.clip as clip_module

    return Path(clip_module.__file__).parent / "model_configs"


def test_a_name_with_its_own_weights_loads_them_without_pretrained(
    local_dir_model: tuple[str, object], capsys: pytest.CaptureFixture[str]
) -> None:
    """hf-hub:/local-dir: names take no --pretrained; they used to be refused without one."""
    import numpy as np

    from landprompt.cli.common import named_clip

    name, saved = local_dir_model
    model = named_clip(name, None, device="cpu")
    assert not model.is_random and model.id == name
    words = ["a lake", "a forest"]
    np.testing.assert_allclose(model.encode_text(words), saved.encode_text(words), atol=1e-6)  # type: ignore[attr-defined]
    assert "RANDOM" not in capsys.readouterr().err


def test_a_name_with_its_own_weights_refuses_pretrained_none(local_dir_model: tuple[str, object]) -> None:
    from landprompt.cli.common import named_clip
    from landprompt.errors import BadInputError

    with pytest.raises(BadInputError, match="brings its own weights"):
        named_clip(local_dir_model[0], "none", device="cpu")


def test_a_cube_of_a_hub_model_gives_no_random_weights_warning(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import xarray as xr

    from landprompt.cli import common

    def cube_of(name: str) -> None:
        monkeypatch.setattr(common, "_single_cube", lambda _cube: xr.Dataset(attrs={"clip_model": name}))

    cube_of("hf-hub:laion/CLIP-ViT-B-32-laion2B-s34B-b79K")
    assert common.clip_or_none(None, None, Path("c.zarr")) is None
    assert "RANDOM" not in capsys.readouterr().err
    cube_of("ViT-B-32")  # no tag recorded: random weights, said so
    assert common.clip_or_none(None, None, Path("c.zarr")) is None
    assert "ViT-B-32 has RANDOM weights" in capsys.readouterr().err
