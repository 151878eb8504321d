"""LUCAS tables as Eurostat publishes them: upper-case columns, LUCAS<year>/ photo layout, empty files."""

import json

import pytest
from typer.testing import CliRunner

from landprompt.cli import app
from landprompt.errors import BadInputError
from landprompt.pairs.catalog import Catalog
from landprompt.pairs.ingest import ingest
from landprompt.pairs.sources import LucasSource
from landprompt.pairs.sources.lucas import normalised_columns, photo_paths


def test_upper_case_table_with_lucas_year_photo_layout(tmp_path, pairs_data):
    table = pairs_data.write_eurostat_lucas(tmp_path / "lucas")
    with Catalog.open(tmp_path / "pairs.duckdb") as catalog:
        report = ingest(catalog, LucasSource(table))
        places = catalog.query_df("SELECT * FROM locations ORDER BY loc_key")
        photos = catalog.query_df("SELECT * FROM photos ORDER BY source_id")
    assert (report.added_photos, report.added_locations) == (3, 2)
    assert list(places["loc_key"]) == ["40100100-2015", "50200200-2015"]
    assert places["lat"].iat[0] == pytest.approx(40.4170) and places["lon"].iat[0] == pytest.approx(-3.7040)
    assert json.loads(places["labels"].iat[1])["coordinates"] == "th"  # 88.888888: no GPS fix
    assert list(photos["source_id"]) == ["40100100-2015-N", "40100100-2015-P", "50200200-2015-N"]
    assert photos["path"].str.contains("/LUCAS2015/ES/401/001/40100100N.jpg").iat[0]
    assert (photos["year"] == 2015).all() and photos["url"].isna().all()


def test_photo_paths_cover_every_layout():
    url = "https://gisco-services.ec.europa.eu/lucas/photos/2018/UK/316/036/31603628N.jpg"
    assert photo_paths("31603628", "S", "2018", "UK", url) == [
        "2018/UK/316/036/31603628S.jpg",
        "LUCAS2018/UK/316/036/31603628S.jpg",
        "UK/316/036/31603628S.jpg",
        "31603628S.jpg",
        "2018/31603628S.jpg",
    ]
    assert photo_paths("31603628", "N", "2018", "UK", None)[1] == "LUCAS2018/UK/316/036/31603628N.jpg"


@pytest.mark.parametrize("content", ["", "POINT_ID,TH_LAT,TH_LONG\n"])
def test_an_empty_table_is_one_line_and_writes_nothing(tmp_path, content):
    table = tmp_path / "empty.csv"
    table.write_text(content)
    with pytest.raises(BadInputError, match=r"empty|no rows"):
        LucasSource(table)
    catalog = tmp_path / "pairs.duckdb"
    result = CliRunner().invoke(app, ["pairs", "ingest", "lucas", str(table), "--catalog", str(catalog)])
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1
    assert result.output.startswith("error:") and str(table) in result.output.replace("\n", "")
    assert not catalog.exists() and list(tmp_path.iterdir()) == [table]


def test_a_2022_table_ingests_with_the_names_the_concept_benchmark_reads(tmp_path):
    # the 2022 survey names its columns POINT_* / SURVEY_* (no TH_LAT, no year column): pairs ingest and
    # evaluate concepts normalise them with the one normalised_columns
    table = tmp_path / "lucas_2022.csv"
    table.write_text(
        "POINT_ID,POINT_NUTS0,POINT_LAT,POINT_LONG,SURVEY_DATE,SURVEY_LC1\n"
        "40100100,ES,40.4170,-3.7040,2022-06-14,B81\n"
    )
    (tmp_path / "40100100N.jpg").write_bytes(b"not checked here")
    with Catalog.open(tmp_path / "pairs.duckdb") as catalog:
        report = ingest(catalog, LucasSource(table))
        places = catalog.query_df("SELECT * FROM locations")
    assert (report.added_photos, report.added_locations) == (1, 1)
    assert list(places["loc_key"]) == ["40100100-2022"]
    assert places["lat"].iat[0] == pytest.approx(40.4170) and places["lon"].iat[0] == pytest.approx(-3.7040)
    labels = json.loads(places["labels"].iat[0])
    assert (labels["lc1"], labels["nuts0"], labels["coordinates"]) == ("B81", "ES", "th")
    assert normalised_columns(["POINT_ID", "SURVEY_LC1", "POINT_LON", "SURVEY_DATE"]) == {
        "POINT_ID": "point_id",
        "SURVEY_LC1": "lc1",
        "POINT_LON": "th_long",
        "SURVEY_DATE": "survey_date",
    }
