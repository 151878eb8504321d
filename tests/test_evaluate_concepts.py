"""The LUCAS concept benchmark: the shipped suite, its rules per survey year, a planted cube, the guards."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import pytest
from affine import Affine
from typer.testing import CliRunner

from landprompt.errors import BadInputError
from landprompt.evaluate.concept_suite import (
    GROUPS,
    ConceptSuite,
    check_columns,
    concept_labels,
    load_suite,
    read_lucas,
)
from landprompt.evaluate.concepts import evaluate_concepts
from landprompt.evaluate.prompts import class_embeddings
from landprompt.geo import EUROPE_CRS, WGS84, Grid, transform_points


@pytest.fixture(scope="module")
def suite() -> ConceptSuite:
    return load_suite()


def test_the_shipped_suite(suite: ConceptSuite) -> None:
    assert len(suite.concepts) >= 40 and suite.version
    assert {c.group for c in suite.concepts} == set(GROUPS)
    assert len({c.key for c in suite.concepts}) == len(suite.concepts)
    for concept in suite.concepts:
        assert concept.source and concept.years and concept.descriptive, concept.key
    prompts = suite.prompt_set()
    keys = [c.key for c in suite.concepts]
    for style in ("classname", "ground", "aerial", "descriptive"):
        assert len(prompts.prompts(style, keys)) == len(keys)


@pytest.mark.parametrize("year", [2006, 2009, 2012, 2015, 2018, 2022])
def test_every_rule_runs_on_the_documented_columns_of_each_year(
    year: int, suite: ConceptSuite, lucas_columns: ModuleType, tmp_path: Path
) -> None:
    header = read_lucas(lucas_columns.write_headers(tmp_path)[year])
    assert len(header) == 0 and {"point_id", "lc1", "lu1", "th_lat", "th_long"} <= set(header.columns)
    check_columns(suite.concepts, header.columns, [year])  # no rule of the year names a missing column
    blank = pd.DataFrame([{**dict.fromkeys(header.columns), "survey_year": year}])
    labels = concept_labels(blank, suite.concepts)  # every rule of the year is bound and evaluated
    assert labels.shape == (1, len(suite.concepts)) and (labels.to_numpy() == -1).all()
    surveyed = [c for c in suite.concepts if year in c.years]
    assert len(surveyed) >= 40 if year != 2006 else len(surveyed) >= 30
    filled = blank.assign(lc1="B81", lu1="U110")
    labels = concept_labels(filled, suite.concepts).iloc[0]
    assert labels["olive_groves"] == 1 and labels["vineyards"] == 0 and labels["agriculture"] == 1


def test_a_rule_naming_a_column_the_year_lacks_is_refused(
    suite: ConceptSuite, lucas_columns: ModuleType
) -> None:
    check_columns(suite.concepts, lucas_columns.columns(2009), [2009])
    with pytest.raises(BadInputError, match=r"'crop_residues'.*2018 LUCAS table lacks"):
        check_columns(suite.concepts, lucas_columns.columns(2015), [2018])


def test_the_shared_2018_row_gets_the_hand_read_labels(suite: ConceptSuite, lucas_sample: Path) -> None:
    # The row: lc1 D10, lu1 U420, no grazing, wm/cprn not relevant, trees > 5 m, width < 20 m,
    # inspire shrubs 80 %, conifers 0 %, broadleaved 9 %, herbaceous 11 %, no remark, no special status.
    labels = concept_labels(read_lucas(lucas_sample), suite.concepts).iloc[0].to_dict()
    present = {"shrubland_sparse_trees", "unused", "tall_trees", "narrow_wooded_strips", "dense_shrub_cover"}
    unlabelled = {"irrigated_land", "drained_land", "impervious_surfaces", "urban_area", "herbaceous_cover"}
    assert {k for k, v in labels.items() if v == 1} == present
    assert {k for k, v in labels.items() if v == -1} == unlabelled
    assert labels["grazed_land"] == labels["stone_walls"] == labels["young_trees"] == 0


def test_bad_suites_are_refused(tmp_path: Path) -> None:
    empty = tmp_path / "empty.yaml"
    empty.write_text("format: landprompt-concept-suite\nversion: 1\nconcepts: {}\n")
    with pytest.raises(BadInputError, match="has no concepts"):
        load_suite(empty)
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "format: landprompt-concept-suite\nconcepts:\n  x: {group: land use, name: x, presence: 'lc1 = ',"
        " absence: 'true', years: [2018], source: s}\n"
    )
    with pytest.raises(BadInputError, match="presence rule"):
        load_suite(bad)


def test_replicate_metrics_equal_scikit_learns_with_sample_weights() -> None:
    from sklearn.metrics import average_precision_score, roc_auc_score

    from landprompt.evaluate.concepts import RankedScores

    rng = np.random.default_rng(5)
    for _ in range(20):
        y = rng.random(300) < 0.3
        p = np.round(rng.random(300) + 0.3 * y, 1)  # many ties
        w = rng.integers(0, 4, 300)
        auc, ap = RankedScores(y, p).weighted_metrics(w)
        assert auc == pytest.approx(roc_auc_score(y, p, sample_weight=w), abs=1e-12)
        assert ap == pytest.approx(average_precision_score(y, p, sample_weight=w), abs=1e-12)


def test_concept_metrics_of_a_hand_computed_case() -> None:
    from landprompt.evaluate.concepts import concept_metrics

    present, scores = np.array([1, 0, 1, 0], bool), np.array([0.9, 0.8, 0.3, 0.1])
    one = concept_metrics(present, scores, np.zeros(4), bootstrap=5)  # one block: every replicate is all
    assert one["auc"] == pytest.approx(0.75) and one["average_precision"] == pytest.approx((1 + 2 / 3) / 2)
    assert one["auc_interval"] == pytest.approx([0.75, 0.75]) and one["replicates"] == 5
    assert one["ap_interval"] == pytest.approx([5 / 6, 5 / 6]) and one["blocks"] == 1
    split = concept_metrics(present, scores, np.array([0, 1, 0, 1]), bootstrap=50, seed=1)
    assert split["blocks"] == 2 and 0 < split["replicates"] < 50  # one class only: skipped
    assert split["auc_interval"] == pytest.approx([0.75, 0.75])  # both blocks: the whole data


# --- a planted cube --------------------------------------------------------------------------------

VERSUS = ["sea", "a forest"]


@pytest.fixture(scope="module")
def planted(
    tmp_path_factory: pytest.TempPathFactory, tiny_clip: Any, suite: ConceptSuite, cube_data: Any
) -> SimpleNamespace:
    """The planted concept-benchmark cube and LUCAS table (``lucas_concept_cube`` in tests/data/cube/data.py).

    Olive grove points (lc1 B81) carry the dual-basis vector of "olive groves", vineyard points (B82)
    that of "vineyards", the others that of a background prompt; grazing is drawn independently.
    """
    small = ConceptSuite(
        "test",
        tuple(c for c in suite.concepts if c.key in ("olive_groves", "vineyards", "grazed_land")),
        "test",
    )
    names = tiny_clip.encode_prompts(VERSUS, small.prompt_set().templates["classname"])
    vectors = np.concatenate(
        [class_embeddings(tiny_clip, small.prompt_set(), ["olive_groves", "vineyards"], "classname"), names]
    )
    root = tmp_path_factory.mktemp("concepts")
    planted = cube_data.lucas_concept_cube(root, vectors, cube_data.clip_attrs(tiny_clip))
    planted.suite = small
    return planted


def run(planted: SimpleNamespace, clip: Any, **kwargs: Any) -> dict[str, Any]:
    options: dict[str, Any] = dict(prompts="classname", versus=VERSUS, clip=clip, block_km=0.5, bootstrap=100)
    return evaluate_concepts(planted.lucas, planted.cube, planted.suite, **{**options, **kwargs})


def test_planted_concepts_score_auc_one_and_the_others_chance(
    planted: SimpleNamespace, tiny_clip: Any
) -> None:
    report = run(planted, tiny_clip)
    results = {e["key"]: e for e in report["concepts"]}
    assert report["counts"]["used"] == 900 and report["counts"]["outside_cube"] == 0
    for key in ("olive_groves", "vineyards"):
        result = results[key]["results"]["classname"]
        assert result["auc"] == 1.0 and result["average_precision"] == 1.0
        assert result["auc_interval"] == [1.0, 1.0] and result["replicates"] == 100
    chance = results["grazed_land"]["results"]["classname"]
    assert abs(chance["auc"] - 0.5) < 0.06
    low, high = chance["auc_interval"]
    assert low < 0.5 < high and high - low < 0.2
    assert results["grazed_land"]["prevalence"] == pytest.approx(
        np.mean(pd.read_csv(planted.lucas)["grazing"] == "Signs of grazing")
    )
    assert report["mean_auc"]["classname"] == pytest.approx(np.mean([1.0, 1.0, chance["auc"]]))


def test_a_folder_of_shards_scores_like_one_cube(
    planted: SimpleNamespace, tiny_clip: Any, tmp_path: Path, cube_data: Any
) -> None:
    from landprompt.embedder.cube import write_cube

    attrs = cube_data.clip_attrs(tiny_clip)
    for name, cols in (("west", slice(0, 15)), ("east", slice(15, 30))):
        grid = Grid(EUROPE_CRS, planted.grid.transform * Affine.translation(cols.start, 0), (30, 15))
        emb = planted.emb[:, cols].astype(np.float32)
        write_cube(tmp_path / "shards" / f"{name}.zarr", emb, grid, chunk=16, attrs=attrs)
    one, shards = (
        run(planted, tiny_clip),
        evaluate_concepts(
            planted.lucas,
            tmp_path / "shards",
            planted.suite,
            "classname",
            versus=VERSUS,
            clip=tiny_clip,
            block_km=0.5,
            bootstrap=100,
        ),
    )
    assert shards["counts"] == one["counts"] and len(shards["settings"]["cubes"]) == 2
    assert shards["concepts"] == one["concepts"]


def test_too_few_positives_are_listed_not_scored(planted: SimpleNamespace, tiny_clip: Any) -> None:
    report = run(planted, tiny_clip, min_class=500, bootstrap=0)
    assert all(
        e["status"] == "too few presences or absences" and "results" not in e for e in report["concepts"]
    )
    assert report["mean_auc"]["classname"] is None
    with pytest.raises(BadInputError, match=r"unknown prompt style.*sideways"):
        run(planted, tiny_clip, prompts="classname,sideways")


def test_the_leakage_guard_drops_and_counts_points_near_training_places(
    planted: SimpleNamespace, tiny_clip: Any, tmp_path: Path
) -> None:
    from landprompt.pairs.catalog import Catalog
    from landprompt.pairs.sources.lucas import haversine_m

    path = tmp_path / "pairs.duckdb"
    places = [(planted.lat[31], planted.lon[31], "b1"), (planted.lat[600], planted.lon[600], "b2")]
    with Catalog.open(path) as catalog:
        for i, (lat, lon, block) in enumerate(places):
            catalog.execute(
                "INSERT INTO locations VALUES (?, 'lucas', ?, ?, ?, 'c', ?, NULL, NULL, 0)",
                [i, f"k{i}", lat, lon, block],
            )
        catalog.execute("INSERT INTO splits VALUES ('b1', 'train', 0.1), ('b2', 'val', 0.9)")
    report = run(planted, tiny_clip, exclude_catalog=path, exclude_km=0.25, bootstrap=0)
    expected = int((haversine_m(planted.lat, planted.lon, planted.lat[31], planted.lon[31]) <= 250).sum())
    assert 5 <= expected < 900
    assert report["counts"]["near_training_place"] == expected  # the val place excludes nothing
    assert report["counts"]["used"] == 900 - expected
    assert report["settings"]["exclude_km"] == 0.25


def test_labels_only_without_a_cube(planted: SimpleNamespace, lucas_sample: Path) -> None:
    report = evaluate_concepts(planted.lucas, None, planted.suite)
    assert "mean_auc" not in report and report["counts"]["used"] == 900
    olive = next(e for e in report["concepts"] if e["key"] == "olive_groves")
    shipped = evaluate_concepts(lucas_sample, None, None)  # the 2018 row: 2018-only fields are surveyed
    status = {e["key"]: e["status"] for e in shipped["concepts"]}
    assert status["crop_residues"] == "too few presences or absences" and shipped["settings"]["years"] == [
        2018
    ]
    assert olive["present"] == int((pd.read_csv(planted.lucas)["lc1"] == "B81").sum())


# --- the command -----------------------------------------------------------------------------------


def cli(*args: str) -> Any:
    from landprompt.cli.main import app

    return CliRunner().invoke(app, ["evaluate", "concepts", *args])


def suite_file(planted: SimpleNamespace) -> Path:
    import yaml

    path = planted.root / "suite.yaml"
    concepts = {
        c.key: {
            "group": c.group,
            "name": c.name,
            "descriptive": list(c.descriptive),
            "presence": c.presence,
            "absence": c.absence,
            "years": list(c.years),
            "source": c.source,
        }
        for c in planted.suite.concepts
    }
    path.write_text(
        yaml.safe_dump({"format": "landprompt-concept-suite", "version": "t1", "concepts": concepts})
    )
    return path


def test_the_command_writes_json_markdown_and_png(planted: SimpleNamespace, tmp_path: Path) -> None:
    out = tmp_path / "report"
    result = cli(
        "--lucas",
        str(planted.lucas),
        "--cube",
        str(planted.cube),
        "--concepts",
        str(suite_file(planted)),
        "--prompts",
        "classname,descriptive",
        "--versus",
        "sea",
        "--versus",
        "a forest",
        "--clip",
        "landprompt-tiny",
        "--pretrained",
        "none",
        "--block-km",
        "0.5",
        "--bootstrap",
        "20",
        "-o",
        str(out),
    )
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    assert report["format"] == "landprompt-concepts-report" and report["settings"]["suite_version"] == "t1"
    assert report["settings"]["prompts"] == ["classname", "descriptive"]
    assert report["settings"]["lucas_sha256"] == hashlib.sha256(planted.lucas.read_bytes()).hexdigest()
    assert set(report["mean_auc"]) == {"classname", "descriptive"}
    text = (out / "report.md").read_text()
    assert "Mean ROC AUC" in text and "olive groves" in text and "1.000 [1.000, 1.000]" in text
    assert (out / "auc.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("case", ["empty suite", "missing column", "no point in the cube"])
def test_bad_input_gives_one_line_and_writes_nothing(
    case: str, planted: SimpleNamespace, tmp_path: Path
) -> None:
    lucas, concepts = planted.lucas, suite_file(planted)
    if case == "empty suite":
        concepts = tmp_path / "empty.yaml"
        concepts.write_text("format: landprompt-concept-suite\nconcepts: {}\n")
        message = "has no concepts"
    elif case == "missing column":
        lucas = tmp_path / "lucas.csv"
        pd.read_csv(planted.lucas).drop(columns="grazing").to_csv(lucas, index=False)
        message = "'grazing', which the 2018 LUCAS table lacks"
    else:
        lucas = tmp_path / "far.csv"
        pd.read_csv(planted.lucas).assign(th_lat=40.0, th_long=-3.7).to_csv(lucas, index=False)
        message = "none of the 900 LUCAS points falls on a valid pixel"
    out = tmp_path / "out"
    result = cli(
        "--lucas",
        str(lucas),
        "--cube",
        str(planted.cube),
        "--concepts",
        str(concepts),
        "--clip",
        "landprompt-tiny",
        "--pretrained",
        "none",
        "-o",
        str(out),
    )
    assert result.exit_code != 0
    error = [line for line in result.output.splitlines() if "error:" in line]
    assert len(error) == 1 and message in " ".join(result.output.split()), result.output
    assert not out.exists()


def test_parquet_and_2022_tables_read_like_the_harmonised_csv(
    planted: SimpleNamespace, suite: ConceptSuite, tmp_path: Path
) -> None:
    import duckdb

    parquet = tmp_path / "lucas.parquet"
    duckdb.connect().execute(
        f"COPY (SELECT * FROM read_csv('{planted.lucas}')) TO '{parquet}' (FORMAT parquet)"
    )
    from_csv, from_parquet = (evaluate_concepts(p, None, planted.suite) for p in (planted.lucas, parquet))
    assert from_csv["concepts"] == from_parquet["concepts"]
    table_2022 = tmp_path / "lucas_2022.csv"
    table_2022.write_text(
        "POINT_ID,POINT_LAT,POINT_LON,SURVEY_DATE,SURVEY_LC1,SURVEY_LU1\n"
        "40001000,48.1,11.5,15/06/22,B81,U110\n"
    )
    frame = read_lucas(table_2022)
    assert frame["survey_year"].tolist() == [2022] and frame["th_long"].tolist() == ["11.5"]
    labels = concept_labels(frame, suite.concepts).iloc[0]
    assert labels["olive_groves"] == 1 and labels["agriculture"] == 1 and labels["grazed_land"] == -1
    status = {
        e["key"]: e["status"] for e in evaluate_concepts(table_2022, None, suite, min_class=1)["concepts"]
    }
    assert status["crop_residues"] == status["grazed_land"] == "not surveyed in the table's years"
    assert status["olive_groves"] == "too few presences or absences"  # present once, never absent


def test_gps_coordinates_follow_the_pairs_rule(
    planted: SimpleNamespace, tiny_clip: Any, tmp_path: Path
) -> None:
    table = pd.read_csv(planted.lucas)
    x, y = transform_points(table["th_long"].to_numpy(), table["th_lat"].to_numpy(), WGS84, EUROPE_CRS)
    lon_n, lat_n = transform_points(x, y + 300.0, EUROPE_CRS, WGS84)  # theoretical points 300 m north
    shifted = table.assign(
        th_lat=lat_n, th_long=lon_n, gps_lat=table["th_lat"], gps_long=table["th_long"].abs(), gps_ew="East"
    )
    path = tmp_path / "gps.csv"
    shifted.to_csv(path, index=False)
    by_th = evaluate_concepts(
        path, planted.cube, planted.suite, "classname", versus=VERSUS, clip=tiny_clip, bootstrap=0
    )
    by_gps = evaluate_concepts(
        path,
        planted.cube,
        planted.suite,
        "classname",
        coordinates="gps",
        versus=VERSUS,
        clip=tiny_clip,
        bootstrap=0,
    )
    assert by_th["counts"]["outside_cube"] == 90 and by_gps["counts"]["used"] == 900
    olive = next(e for e in by_gps["concepts"] if e["key"] == "olive_groves")
    assert olive["results"]["classname"]["auc"] == 1.0
