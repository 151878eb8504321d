"""Fixes: topk on a folder of one shard, top_k(opened Dataset) uses the cube's index, wrong-width CLIP."""

from __future__ import annotations

import re
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
from affine import Affine
from typer.testing import CliRunner

from landprompt.cli import app
from landprompt.embedder.cube import open_cube, write_cube
from landprompt.errors import BadInputError
from landprompt.geo import Grid
from landprompt.index.build import build_index
from landprompt.index.search import CubeIndex
from landprompt.query.topk import top_k

GRID = Grid("EPSG:32632", Affine(10.0, 0, 680_000.0, 0, -10.0, 4_800_000.0), (20, 24))


def small_cube(folder: Path, dim: int, clip_name: str) -> Path:
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(*GRID.shape, dim)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=-1, keepdims=True)
    return write_cube(
        folder / "a.zarr", emb, GRID, chunk=8, attrs={"clip_model": clip_name, "clip_pretrained": ""}
    )


def test_topk_on_a_folder_with_one_shard(tmp_path: Path, tiny_clip) -> None:  # type: ignore[no-untyped-def]
    small_cube(tmp_path / "shards", tiny_clip.embed_dim, tiny_clip.name)
    result = CliRunner().invoke(
        app, ["query", "topk", str(tmp_path / "shards"), "a lake", "-k", "3", "--format", "csv"]
    )
    assert result.exit_code == 0, result.output
    assert len(result.stdout.strip().splitlines()) == 4  # header + 3 places


def test_top_k_of_an_opened_dataset_uses_the_cubes_index(tmp_path: Path) -> None:
    path = small_cube(tmp_path, 16, "landprompt-tiny")
    build_index(path, progress=False)
    query = np.eye(16, dtype=np.float32)[0]
    with mock.patch.object(CubeIndex, "search", autospec=True, side_effect=CubeIndex.search) as search:
        from_path = top_k(path, query, k=4)
        from_dataset = top_k(open_cube(path), query, k=4)
    assert search.call_count >= 2  # both went through the index
    assert from_dataset[["row", "col"]].equals(from_path[["row", "col"]])


def test_a_clip_of_the_wrong_width_names_both_models(tmp_path: Path, tiny_clip) -> None:  # type: ignore[no-untyped-def]
    path = small_cube(tmp_path, tiny_clip.embed_dim + 4, "ViT-B-32")
    with pytest.raises(
        BadInputError, match=rf"CLIP {re.escape(tiny_clip.id)} embeds text in {tiny_clip.embed_dim}.*ViT-B-32"
    ):
        top_k(path, "a lake", clip=tiny_clip, index=None)


@pytest.mark.parametrize(("command", "name"), [(["query", "export"], "batch"), (["train"], "train")])
def test_example_files_ship_with_the_package(command: list[str], name: str) -> None:
    import yaml

    from landprompt.examples import example_text

    result = CliRunner().invoke(app, [*command, "--example"])
    assert result.exit_code == 0, result.output
    assert result.stdout == example_text(name) and isinstance(yaml.safe_load(result.stdout), dict)
    bare = CliRunner().invoke(app, command)
    assert bare.exit_code != 0 and "--example" in bare.output


def test_py_typed_is_shipped() -> None:
    from importlib.resources import files

    assert (files("landprompt") / "py.typed").is_file()


def test_random_clip_weights_only_when_asked_for(tmp_path: Path, tiny_clip) -> None:  # type: ignore[no-untyped-def]
    cube = small_cube(tmp_path, tiny_clip.embed_dim, tiny_clip.name)  # records no pretrained tag
    args = ["query", "topk", str(cube), "a lake", "-k", "2", "--format", "csv", "--clip", tiny_clip.name]
    refused = CliRunner().invoke(app, args)
    assert refused.exit_code == 2
    assert "needs --pretrained TAG" in refused.stderr and "--pretrained none" in refused.stderr
    asked = CliRunner().invoke(app, [*args, "--pretrained", "none"])
    assert asked.exit_code == 0, asked.output
    assert asked.stderr.startswith(f"warning: CLIP {tiny_clip.name} has RANDOM weights")
    assert len(asked.stdout.strip().splitlines()) == 3
