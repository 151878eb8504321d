"""Embedding runs from a registry name are reproducible: same arguments, same bytes, across processes."""

import json
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

from kill import run_killed
from landprompt.embedder.cube import open_cube
from landprompt.embedder.recipe import EncoderRecipe, weights_sha256
from landprompt.embedder.run import embed_run
from landprompt.eo.local import LocalSource
from landprompt.errors import BadInputError

PRESTO = Path(__file__).parents[1] / ".." / "shared" / "data" / "presto" / "default_model.pt"


def store_files(path: Path) -> dict[str, bytes]:
    return {
        str(f.relative_to(path)): f.read_bytes()
        for f in sorted(path.rglob("*"))
        if f.is_file() and ".landprompt_progress" not in f.parts
    }


def cli(*args: str) -> subprocess.CompletedProcess:
    """The landprompt command line in a fresh process (so nothing is shared with this one)."""
    code = "from landprompt.cli import app; app()"
    return subprocess.run(
        [sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True, timeout=600
    )


def run_args(l2a_fixture, out: Path, *extra: str) -> list[str]:
    lon0, lat0, lon1, lat1 = l2a_fixture.grid.bbox
    aoi = f"{lon0 + 1e-4},{lat0 + 1e-4},{lon1 - 1e-4},{lat1 - 1e-4}"
    return [
        "embed",
        "run",
        "--aoi",
        aoi,
        "--year",
        "2022",
        "--out",
        str(out),
        "--model",
        "sits",
        "--source",
        str(l2a_fixture.offset_free),
        "--chunk",
        "8",
        "--device",
        "cpu",
        *extra,
    ]


@pytest.mark.slow  # two embedding runs in subprocesses
def test_two_runs_in_two_processes_give_byte_identical_cubes(l2a_fixture, tmp_path):
    a, b = tmp_path / "a.zarr", tmp_path / "b.zarr"
    for out in (a, b):
        done = cli(*run_args(l2a_fixture, out, "--random-weights"))
        assert done.returncode == 0, done.stderr
    assert store_files(a) == store_files(b)
    attrs = open_cube(a).attrs
    assert attrs["encoder_seed"] == 0 and attrs["random_weights"] is True
    assert len(attrs["weights_sha256"]) == 64 and attrs["arguments"]["presto_weights"] is None

    other = cli(*run_args(l2a_fixture, tmp_path / "c.zarr", "--random-weights", "--seed", "1"))
    assert other.returncode == 0, other.stderr
    assert open_cube(tmp_path / "c.zarr").attrs["weights_sha256"] != attrs["weights_sha256"]

    refused = cli(*run_args(l2a_fixture, a, "--random-weights", "--seed", "1"))
    assert refused.returncode != 0
    assert (
        "was begun with another encoder" in refused.stderr and "encoder_seed 0 there, 1 now" in refused.stderr
    )


def test_untrained_encoder_is_refused_unless_asked_for(l2a_fixture, tmp_path):
    from typer.testing import CliRunner

    from landprompt.cli import app

    result = CliRunner().invoke(app, run_args(l2a_fixture, tmp_path / "x.zarr"))
    assert result.exit_code != 0
    assert "has no trained weights without --presto-weights" in result.output
    assert "--model CHECKPOINT, or --random-weights" in result.output and "_weights" not in result.output
    assert not (tmp_path / "x.zarr").exists()
    stray = CliRunner().invoke(app, run_args(l2a_fixture, tmp_path / "x.zarr", "--pretrained", "laion2b"))
    assert stray.exit_code != 0 and "--pretrained do(es) not apply to --model sits" in stray.output
    weights = tmp_path / "w.pt"
    missing = CliRunner().invoke(
        app, run_args(l2a_fixture, tmp_path / "x.zarr", "--presto-weights", str(weights))
    )
    assert missing.exit_code != 0 and f"--presto-weights {weights} does not exist" in missing.output
    with pytest.raises(BadInputError, match=r"^random_weights=True and presto_weights contradict"):
        EncoderRecipe.of("sits", {"presto_weights": "w.pt"}, random_weights=True).build("cpu")
    with pytest.raises(BadInputError, match=r"without presto_weights .* random_weights=True"):
        EncoderRecipe.of("sits").build("cpu")


def test_weights_error_puts_flag_names_in_but_leaves_a_checkpoint_path_as_given(l2a_fixture, tmp_path):
    from typer.testing import CliRunner

    from landprompt.cli import app

    checkpoint = tmp_path / "random_weights=True presto_weights {checkpoint}" / "model.pt"
    args = run_args(l2a_fixture, tmp_path / "x.zarr", "--random-weights")
    args[args.index("sits")] = str(checkpoint)
    result = CliRunner().invoke(app, args, terminal_width=1000)
    assert result.exit_code != 0
    assert f"--random-weights builds a registered encoder; {str(checkpoint)!r} is a checkpoint" in (
        " ".join(result.output.split())
    )
    with pytest.raises(BadInputError) as refused:
        EncoderRecipe.of(str(checkpoint), random_weights=True).build("cpu")
    assert (
        str(refused.value)
        == f"random_weights=True builds a registered encoder; {str(checkpoint)!r} is a checkpoint"
    )
    again = pickle.loads(pickle.dumps(refused.value))  # as from a worker process
    assert type(again) is type(refused.value) and str(again) == str(refused.value)


@pytest.mark.slow  # a subprocess killed mid-run, then reruns
def test_sigkilled_run_resumed_in_another_process_is_byte_identical(l2a_fixture, tmp_path):
    killed, reference = tmp_path / "killed.zarr", tmp_path / "reference.zarr"
    body = f"""
        from landprompt.cli import app
        app({json.dumps(run_args(l2a_fixture, killed, "--random-weights", "--seed", "3"))})
    """
    run_killed(tmp_path, "landprompt.embedder.cube:CubeWriter.write_chunk", 4, body)
    import zarr

    assert zarr.open_group(str(killed), mode="r").attrs.get("complete") is not True  # killed half-way
    for out in (killed, reference):
        done = cli(*run_args(l2a_fixture, out, "--random-weights", "--seed", "3"))
        assert done.returncode == 0, done.stderr
    assert store_files(killed) == store_files(reference)


@pytest.mark.slow  # the real Presto architecture built 3 times (1.2 s); test_models loads its weights fast
@pytest.mark.skipif(
    not PRESTO.is_file(), reason="the shared Presto weights (../shared/data/presto) are missing"
)
def test_presto_weights_option_builds_the_same_encoder_everywhere(l2a_fixture, tmp_path):
    recipe = EncoderRecipe.of("sits", {"presto_weights": PRESTO.resolve()}, seed=0)
    digest = weights_sha256(recipe.build("cpu"))
    assert weights_sha256(recipe.build("cpu")) == digest  # the head is seeded: same weights again
    cube = embed_run(
        l2a_fixture.grid,
        2022,
        "sits",
        LocalSource(l2a_fixture.offset_free),
        tmp_path / "p.zarr",
        encoder_args=recipe.arguments,
        chunk=8,
        progress=False,
        device="cpu",
    )
    attrs = open_cube(cube).attrs
    assert attrs["weights_sha256"] == digest and attrs["random_weights"] is False
    assert attrs["arguments"]["presto_weights"] == str(PRESTO.resolve())
