"""The zero-shot harness on synthetic benchmarks with planted answers: oracle 100 %, random about chance."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
import xarray as xr
from affine import Affine

from landprompt.cli.evaluate import summary_table
from landprompt.embedder.clip import ClipModel
from landprompt.embedder.cube import write_cube
from landprompt.embedder.models import create_encoder, save_checkpoint
from landprompt.errors import BadInputError
from landprompt.evaluate import class_embeddings, load_prompt_set, parse_settings, run_evaluation
from landprompt.evaluate.datasets import EUROSAT_CLASSES, BigEarthNet, bigearthnet19
from landprompt.geo import Grid

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def filled_month(composite: xr.Dataset) -> xr.DataArray:
    """The S2 bands of the one month a single-date composite holds [band, y, x]."""
    s2 = composite["s2"]
    return s2.isel(time=int(np.flatnonzero(np.isfinite(s2.values).any(axis=(1, 2, 3)))[0]))


class EuroSATOracle:
    """Encoder-like: reads the class planted in B2 (value % 10) and returns that class's text embedding."""

    def __init__(self, text: np.ndarray) -> None:
        self.text = text

    def embed_dense(
        self, composite: xr.Dataset, latlon: np.ndarray | None = None, batch_size: int = 1024
    ) -> tuple[np.ndarray, np.ndarray]:
        month = filled_month(composite)
        assert np.all(month.sel(s2_band="B8A").values // 100 == 13)  # B8A is EuroSAT's 13th file band
        assert np.all(month.sel(s2_band="B2").values // 100 == 2)
        k = int(month.sel(s2_band="B2").values.flat[0]) % 10
        h, w = month.shape[-2:]
        return np.broadcast_to(self.text[k], (h, w, self.text.shape[1])).copy(), np.ones((h, w), dtype=bool)


class BigEarthNetOracle:
    """Encoder-like: looks up a patch's labels from its planted code and returns a vector whose cosine
    with the class text embeddings is equal and highest for exactly those classes."""

    def __init__(self, text: np.ndarray, labels: dict[int, tuple[int, ...]]) -> None:
        self.text, self.labels = text, labels

    def embed_dense(
        self, composite: xr.Dataset, latlon: np.ndarray | None = None, batch_size: int = 1024
    ) -> tuple[np.ndarray, np.ndarray]:
        code = int(filled_month(composite).values.flat[0])
        target = -np.ones(len(self.text))
        target[list(self.labels[code])] = 1.0
        vector = np.linalg.pinv(self.text) @ target  # text @ vector == target (19 classes < 32 dims)
        h, w = composite.sizes["y"], composite.sizes["x"]
        return np.broadcast_to(vector, (h, w, len(vector))).astype(np.float32), np.ones((h, w), dtype=bool)


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread() -> Iterator[None]:
    """The tiny models gain nothing from threads, and on a busy machine OpenMP spinning makes 2 threads
    25x slower than 1 (0.5 s vs 0.02 s per sample); restore the setting afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def eurosat_root(tmp_path_factory: pytest.TempPathFactory, eval_data: Any) -> Path:
    return eval_data.make_eurosat_ms(tmp_path_factory.mktemp("eurosat"), per_class=3, size=4)


@pytest.fixture(scope="module")
def classname_text(tiny_clip: ClipModel) -> np.ndarray:
    return class_embeddings(tiny_clip, load_prompt_set("eurosat"), EUROSAT_CLASSES, "classname")


# --- single-label ----------------------------------------------------------------------------------------


def test_oracle_scores_100_percent_and_writes_reports(
    eurosat_root: Path, tiny_clip: ClipModel, classname_text: np.ndarray, tmp_path: Path
) -> None:
    out = tmp_path / "report"
    report = run_evaluation(
        "eurosat",
        eurosat_root,
        EuroSATOracle(classname_text),
        tiny_clip,
        "classname,descriptive",
        out_dir=out,
    )
    first, second = report["results"]
    assert first["setting"] == "classname" and first["top1"] == 1.0 and first["balanced_accuracy"] == 1.0
    assert np.trace(first["confusion_matrix"]) == 30
    assert 0.0 <= second["top1"] <= 1.0 and second["setting"] == "descriptive"

    document = json.loads((out / "report.json").read_text())
    assert {
        "format",
        "created",
        "dataset",
        "model",
        "clip",
        "prompts",
        "protocol",
        "chance",
        "results",
        "versions",
        "seconds",
        "files",
    } <= set(document)
    assert document["dataset"]["samples_scored"] == 30 and document["dataset"]["settings"]["month"] == 7
    assert document["dataset"]["root"] == str(eurosat_root) and document["dataset"]["limit"] is None
    assert document["model"]["argument"] == "EuroSATOracle" and document["clip"]["id"] == tiny_clip.id
    assert document["prompts"]["templates"]["classname"] == ["{}"]
    assert document["chance"]["balanced_accuracy"] == pytest.approx(0.1)
    assert {"landprompt", "torch", "open_clip_torch", "numpy"} <= set(document["versions"])

    markdown = (out / "report.md").read_text()
    assert "| prompts | top1 (%) | balanced_accuracy (%) |" in markdown
    assert "| `classname` | 100.0 | 100.0 |" in markdown and "| AnnualCrop | 3 |" in markdown
    assert "| chance | 10.0 | 10.0 |" in markdown  # 30 samples, 3 per class: majority top-1 10 %
    for result in document["results"]:
        assert (out / result["confusion_png"]).read_bytes()[:8] == PNG_SIGNATURE
    predictions = pd.read_csv(out / "predictions.csv")
    assert len(predictions) == 30 and (predictions["true"] == predictions["predicted[classname]"]).all()
    assert not list(out.glob(".*"))  # no temporary file left behind


def test_random_encoder_scores_about_chance(eurosat_root: Path, tiny_clip: ClipModel) -> None:
    report = run_evaluation("eurosat", eurosat_root, "random", tiny_clip, "classname", limit=20, seed=0)
    [result] = report["results"]
    assert report["dataset"]["samples_drawn"] == 20 and report["dataset"]["samples_available"] == 30
    assert report["model"]["baseline"] == "random initialisation (seed 0)"
    assert report["model"]["encoder"] == "sits"
    top1, balanced = result["top1"], result["balanced_accuracy"]
    print(f"\nrandom encoder: top-1 {top1:.2f}, balanced {balanced:.2f} (chance 0.1)")  # pytest -s
    assert 0.0 <= result["top1"] <= 0.5 and result["balanced_accuracy"] <= 0.5  # chance is 0.1


def test_checkpoint_brings_its_clip_model(eurosat_root: Path, tmp_path: Path) -> None:
    encoder = create_encoder("sits", clip_dim=32, depth=1, clip_model="landprompt-tiny", pretrained=False)
    config = save_checkpoint(encoder, tmp_path / "ckpt")
    report = run_evaluation("eurosat", eurosat_root, config, styles="generic", limit=10)
    assert report["clip"]["name"] == "landprompt-tiny"
    assert report["model"]["checkpoint_sha256"] == json.loads(config.read_text())["weights"]["sha256"]
    assert report["dataset"]["samples_scored"] == 10


def test_clip_rgb_baseline(eurosat_root: Path, tiny_clip: ClipModel, tmp_path: Path, eval_data: Any) -> None:
    report = run_evaluation("eurosat", eurosat_root, "clip_rgb", tiny_clip, "aerial,ground", limit=10)
    assert report["model"]["arguments"]["patch"] == 4  # one patch per sample
    assert report["dataset"]["samples_scored"] == 10
    rgb = eval_data.make_eurosat_rgb(tmp_path / "rgb", per_class=1)
    report = run_evaluation("eurosat-rgb", rgb, "clip_rgb", tiny_clip, "aerial+ground")
    assert report["dataset"]["samples_scored"] == 10 and 0 <= report["results"][0]["top1"] <= 1
    with pytest.raises(BadInputError, match="RGB images only: use an image encoder"):
        run_evaluation("eurosat-rgb", rgb, "random", tiny_clip)


# --- multi-label -----------------------------------------------------------------------------------------


def test_bigearthnet_oracle_map_and_f1(tiny_clip: ClipModel, tmp_path: Path, eval_data: Any) -> None:
    root = eval_data.make_bigearthnet(tmp_path / "ben", size=6)
    text = class_embeddings(tiny_clip, load_prompt_set("bigearthnet"), bigearthnet19().classes, "classname")
    labels = {
        eval_data.patch_code(i): bigearthnet19().convert(names)
        for i, names in enumerate(eval_data.BEN_LABELS)
    }
    report = run_evaluation("bigearthnet", root, BigEarthNetOracle(text, labels), tiny_clip, "classname")
    [result] = report["results"]
    assert result["mAP"] == pytest.approx(1.0) and result["micro_f1"] == 1.0 and result["macro_f1"] == 1.0
    assert report["dataset"]["samples_scored"] == 6  # the patch with only a dropped class is left out
    assert result["labels_per_sample"]["true"] == result["labels_per_sample"]["predicted"]
    assert "softmax" in report["protocol"]["prediction"] and "confusion_png" not in result
    assert BigEarthNet(root).settings()["samples_with_s1"] == 6


# --- LUCAS against a cube --------------------------------------------------------------------------------


def test_lucas_points_against_a_planted_cube(tiny_clip: ClipModel, tmp_path: Path, eval_data: Any) -> None:
    text = class_embeddings(tiny_clip, load_prompt_set("lucas"), tuple("ABCDEFGH"), "ground")
    grid = Grid("EPSG:32629", Affine(10, 0, 600_000, 0, -10, 6_030_000), (20, 20))
    rng = np.random.default_rng(0)
    embedding = rng.normal(size=(20, 20, text.shape[1])).astype(np.float32)
    valid = np.ones((20, 20), dtype=bool)
    rows, cols, lc1 = [], [], []
    for k, letter in enumerate("ABCDEFGH"):
        for r in (2 * k + 1, 2 * k + 2):
            c = 3 + k
            embedding[r, c] = text[k]
            rows.append(r)
            cols.append(c)
            lc1.append(f"{letter}{k}1")
    valid[0, 0] = False
    lon, lat = grid.rowcol_to_lonlat(np.array([*rows, 0]), np.array([*cols, 0]))
    points = [
        {"point_id": i, "th_lat": la, "th_long": lo, "lc1": code}
        for i, (lo, la, code) in enumerate(zip(lon, lat, [*lc1, "E10"], strict=True))
    ]
    points.append({"point_id": 99, "th_lat": 40.0, "th_long": -3.0, "lc1": "C10"})  # outside the cube
    csv = eval_data.make_lucas(tmp_path / "lucas" / "metadata_2018.csv", points)
    cube = write_cube(tmp_path / "cube.zarr", embedding, grid, valid, attrs={"clip_model": "landprompt-tiny"})
    report = run_evaluation(
        "lucas", csv, clip=tiny_clip, styles="ground", cube=cube, out_dir=tmp_path / "out"
    )
    [result] = report["results"]
    assert report["dataset"]["samples_drawn"] == 18 and report["dataset"]["samples_scored"] == 16
    assert result["top1"] == 1.0 and result["balanced_accuracy"] == 1.0
    assert report["model"]["content_hash"] and report["model"]["clip_model"] == "landprompt-tiny"
    predictions = pd.read_csv(tmp_path / "out" / "predictions.csv", keep_default_na=False)
    assert (
        predictions["scored"].sum() == 16
        and (predictions.loc[~predictions["scored"], "predicted[ground]"] == "").all()
    )
    with pytest.raises(BadInputError, match="embedding cube"):
        run_evaluation("lucas", csv, clip=tiny_clip)


# --- prompts ---------------------------------------------------------------------------------------------


def test_prompt_styles_and_ensembles(tiny_clip: ClipModel) -> None:
    prompts = load_prompt_set("eurosat")
    assert set(prompts.styles) >= {"classname", "generic", "satellite", "aerial", "ground", "descriptive"}
    assert prompts.prompts("generic", ["River"]) == [["a satellite image of river."]]
    assert len(prompts.prompts("descriptive", ["River"])[0]) >= 2
    assert all(len(prompts.sentences["descriptive"][c]) >= 3 for c in EUROSAT_CLASSES)
    embeddings = {s: class_embeddings(tiny_clip, prompts, EUROSAT_CLASSES, s) for s in ("aerial", "ground")}
    both = class_embeddings(tiny_clip, prompts, EUROSAT_CLASSES, "aerial+ground")
    mean = embeddings["aerial"] + embeddings["ground"]
    np.testing.assert_allclose(both, mean / np.linalg.norm(mean, axis=1, keepdims=True), atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(both, axis=1), 1.0, atol=1e-6)
    descriptive = class_embeddings(tiny_clip, prompts, ["River"], "descriptive")[0]
    sentences = tiny_clip.encode_text(prompts.sentences["descriptive"]["River"]).mean(axis=0)
    np.testing.assert_allclose(descriptive, sentences / np.linalg.norm(sentences), atol=1e-6)
    for name in ("bigearthnet", "lucas", "eurosat-rgb"):
        assert load_prompt_set(name).names
    assert set(load_prompt_set("bigearthnet").names) == set(bigearthnet19().classes)
    assert parse_settings("Aerial, ground,aerial+ground") == ["aerial", "ground", "aerial+ground"]
    with pytest.raises(BadInputError, match="unknown prompt style 'sketch'"):
        prompts.prompts("sketch", ["River"])
    with pytest.raises(BadInputError, match="joined by"):
        parse_settings("aerial,,ground")


def test_user_prompt_file_extends_the_shipped_set(
    tmp_path: Path, eurosat_root: Path, tiny_clip: ClipModel, classname_text: np.ndarray
) -> None:
    document = {
        "templates": {"rs": ["a remote sensing image of {}."]},
        "classes": {
            c: {"senclip_aerial": [f"aerial view of {c}", "seen from above"]} for c in EUROSAT_CLASSES
        },
    }
    document["classes"]["SeaLake"]["name"] = "Sea or Lake"
    document["classes"]["River"]["aerial"] = ["a river seen from a plane"]  # a sentence style named aerial
    path = tmp_path / "senclip.json"
    path.write_text(json.dumps(document))
    prompts = load_prompt_set("eurosat", path)
    assert prompts.prompts("rs", ["SeaLake", "Forest"]) == [
        ["a remote sensing image of Sea or Lake."],
        ["a remote sensing image of forest."],  # shipped name kept
    ]
    assert prompts.prompts("senclip_aerial", ["River"]) == [["aerial view of River", "seen from above"]]
    assert "aerial" in prompts.sentences and "aerial" not in prompts.templates
    assert prompts.sentences["descriptive"]["River"]  # shipped sentences kept
    report = run_evaluation(
        "eurosat",
        eurosat_root,
        EuroSATOracle(classname_text),
        tiny_clip,
        "senclip_aerial,rs",
        limit=10,
        prompt_file=path,
        score_norm="class-mean",
    )
    assert report["prompts"]["source"].endswith(" + " + str(path))
    assert report["prompts"]["sentence_styles"] == ["senclip_aerial"] and report["prompts"]["templates"]["rs"]
    assert report["protocol"]["score_normalisation"] == "class-mean"
    with pytest.raises(
        BadInputError, match=r"style 'aerial' has no sentences for class\(es\) \['AnnualCrop'"
    ):
        run_evaluation("eurosat", eurosat_root, "random", tiny_clip, "aerial", prompt_file=path)
    with pytest.raises(BadInputError, match="unknown score normalisation"):
        run_evaluation("eurosat", eurosat_root, "random", tiny_clip, score_norm="softmax")


# --- errors and the CLI body -----------------------------------------------------------------------------


def test_harness_errors(eurosat_root: Path, tiny_clip: ClipModel, classname_text: np.ndarray) -> None:
    with pytest.raises(BadInputError, match="embeds into 16 dimensions but CLIP"):
        run_evaluation("eurosat", eurosat_root, EuroSATOracle(classname_text[:, :16]), tiny_clip, limit=10)
    with pytest.raises(BadInputError, match="needs a model"):
        run_evaluation("eurosat", eurosat_root, None, tiny_clip)
    with pytest.raises(BadInputError, match="baseline lives in a CLIP model's space"):
        run_evaluation("eurosat", eurosat_root, "clip_rgb")
    with pytest.raises(BadInputError, match="unknown prompt style"):
        run_evaluation("eurosat", eurosat_root, "random", tiny_clip, "classname,sketch")


def evaluate_cli(root: Path, out: Path, *args: str) -> Any:
    """``landprompt evaluate eurosat`` with the tiny random CLIP; returns the runner's result."""
    from typer.testing import CliRunner

    from landprompt.cli import app

    tiny = ["--clip", "landprompt-tiny", "--pretrained", "none"]
    return CliRunner().invoke(app, ["evaluate", "eurosat", "--root", str(root), "-o", str(out), *tiny, *args])


def test_evaluate_command_and_summary(eurosat_root: Path, tmp_path: Path) -> None:
    args = ("--model", "clip_rgb", "--prompts", "classname,generic", "--limit", "10", "--month", "5")
    result = evaluate_cli(eurosat_root, tmp_path / "out", *args)
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["dataset"]["settings"]["month"] == 5 and (tmp_path / "out" / "report.md").is_file()
    table = summary_table(report)
    assert table.row_count == 3 and [c.header for c in table.columns][:2] == ["prompts", "top1 (%)"]


PRESTO = Path(__file__).parents[1].parent / "shared" / "data" / "presto" / "default_model.pt"


@pytest.mark.slow  # the real Presto architecture built twice (1.1 s); test_models loads its weights fast
@pytest.mark.skipif(
    not PRESTO.is_file(), reason="the shared Presto weights (../shared/data/presto) are missing"
)
def test_presto_weights_option_builds_a_seeded_sits(eurosat_root: Path, tmp_path: Path) -> None:
    for name in ("a", "b"):
        result = evaluate_cli(
            eurosat_root, tmp_path / name, "--model", "sits", "--presto-weights", str(PRESTO)
        )
        assert result.exit_code == 0, result.output
    reports = [json.loads((tmp_path / name / "report.json").read_text()) for name in ("a", "b")]
    model = reports[0]["model"]
    assert model["encoder"] == "sits" and model["arguments"]["presto_weights"] == str(PRESTO.resolve())
    assert model["arguments"]["clip_dim"] == 32
    assert reports[0]["results"][0]["top1"] == reports[1]["results"][0]["top1"]  # same seeded head
    refused = evaluate_cli(
        eurosat_root, tmp_path / "c", "--model", "clip_rgb", "--presto-weights", str(PRESTO)
    )
    assert refused.exit_code != 0 and "error: --presto-weights builds --model sits" in refused.output
    assert not (tmp_path / "c" / "report.json").exists()
