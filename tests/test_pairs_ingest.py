import json

import duckdb
import numpy as np
import pandas as pd
import pytest

from landprompt.errors import BadInputError
from landprompt.pairs.catalog import SCHEMA_VERSION, Catalog
from landprompt.pairs.cells import block_split, cell_names, laea_xy
from landprompt.pairs.ingest import IngestOptions, ingest
from landprompt.pairs.licences import LicenceFilter, licence_family, normalise_licence
from landprompt.pairs.sources import LucasSource, TableColumns, TableSource, YfccSource
from landprompt.pairs.sources.lucas import haversine_m, lucas_coordinates

# --- LUCAS (the shared real sample) -------------------------------------------------------------------


def test_lucas_sample_gives_one_place_with_six_photos_at_signed_gps(tmp_path, lucas_sample):
    with Catalog.open(tmp_path / "pairs.duckdb") as catalog:
        report = ingest(catalog, LucasSource(lucas_sample))
        assert (report.added_photos, report.added_locations) == (6, 1)
        place = catalog.query_df("SELECT * FROM locations").iloc[0]
        photos = catalog.query_df("SELECT * FROM photos ORDER BY source_id")
        links = catalog.query_df("SELECT * FROM photo_locations")
    # metadata_2018.csv: gps_lat 54.43836, gps_long 8.108829 stored positive with gps_ew "West";
    # th_long -8.108423 is already signed, and th_gps_dist says 35.29 m between them.
    assert place["lat"] == pytest.approx(54.43836)
    assert place["lon"] == pytest.approx(-8.108829)
    assert haversine_m(54.43857, -8.108423, place["lat"], place["lon"]) == pytest.approx(35.29, abs=0.5)
    assert place["country"] == "UK" and place["loc_key"] == "31603628-2018"
    labels = json.loads(place["labels"])
    assert labels["lc1"] == "D10" and labels["lu1"] == "U420" and labels["coordinates"] == "gps"
    assert labels["lc1_label"] == "Shrubland with sparse tree cover"
    assert sorted(photos["direction"]) == sorted(["N", "S", "E", "W", "point", "cover"])
    assert (photos["lat"] == place["lat"]).all() and (photos["lon"] == place["lon"]).all()
    assert photos["path"].map(lambda p: p.endswith(".jpg")).all() and photos["sha256"].str.len().eq(64).all()
    assert photos["url"].isna().sum() == 1  # the cover photo has no GISCO URL column
    assert (photos["licence"] == "EU-REUSE").all() and (photos["year"] == 2018).all()
    assert str(photos["taken_at"].iat[0].date()) == "2018-09-18"
    assert sorted(photos["photo_id"]) == list(range(6)) and len(links) == 6


def test_ingesting_twice_adds_nothing(tmp_path, lucas_sample):
    with Catalog.open(tmp_path / "pairs.duckdb") as catalog:
        ingest(catalog, LucasSource(lucas_sample))
        before = catalog.counts()
        again = ingest(catalog, LucasSource(lucas_sample))
        assert catalog.counts() == before
    assert again.added_photos == 0 and again.skipped["already_in_catalog"] == 6


def test_lucas_sign_rule_and_fallbacks():
    rows = pd.DataFrame(
        {
            "th_lat": ["54.4", "40.0", "40.0", "48.0"],
            "th_long": ["-8.1", "-3.0", "-3.0", "2.0"],
            "gps_lat": ["54.4001", "88.888888", "40.001", "48.0002"],
            "gps_long": ["8.1001", "88.888888", "3.0", "2.0001"],
            "gps_ew": ["West", "West", "East", "E"],
        }
    )
    coords = lucas_coordinates(rows, max_gps_offset_m=1000)
    assert coords["lon"].iat[0] == pytest.approx(-8.1001) and coords["coordinates"].iat[0] == "gps"
    assert coords["coordinates"].iat[1] == "th"  # placeholder GPS
    assert coords["coordinates"].iat[2] == "th"  # East given to a western point: 500 km off, implausible
    assert coords["lon"].iat[3] == pytest.approx(2.0001)


# --- catalog ---------------------------------------------------------------------------------------


def test_catalog_refuses_foreign_files_and_versions(tmp_path):
    with pytest.raises(BadInputError, match="no pairs catalog"):
        Catalog.open(tmp_path / "missing.duckdb", create=False)
    other = tmp_path / "other.duckdb"
    duckdb.connect(str(other)).execute("CREATE TABLE t (a INT)").close()
    with pytest.raises(BadInputError, match="not a landprompt pairs catalog"):
        Catalog.open(other)
    path = tmp_path / "pairs.duckdb"
    Catalog.open(path).close()
    con = duckdb.connect(str(path))
    con.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    con.close()
    with pytest.raises(BadInputError, match=f"reads version {SCHEMA_VERSION}"):
        Catalog.open(path)


def test_splits_are_per_block_seeded_and_stable():
    x, y = (
        np.array([3_262_500.0, 3_262_900.0, 3_275_000.0]),
        np.array([3_587_100.0, 3_589_900.0, 3_587_100.0]),
    )
    assert list(cell_names(x, y, 10_000)) == ["10kmE326N358", "10kmE326N358", "10kmE327N358"]
    assert list(cell_names(x, y, 1_000)) == ["1kmE3262N3587", "1kmE3262N3589", "1kmE3275N3587"]
    fractions = (0.8, 0.1, 0.1)
    assert block_split("10kmE326N358", 0, fractions) == block_split("10kmE326N358", 0, fractions)
    draws = [block_split(f"10kmE{i}N{j}", 7, fractions) for i in range(40) for j in range(40)]
    shares = pd.Series([s for s, _ in draws]).value_counts(normalize=True)
    assert shares["train"] == pytest.approx(0.8, abs=0.04) and shares["test"] == pytest.approx(0.1, abs=0.03)
    assert block_split("10kmE326N358", 1, fractions)[1] != block_split("10kmE326N358", 0, fractions)[1]


# --- licences --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "url", "expected"),
    [
        ("Attribution License", "http://creativecommons.org/licenses/by/2.0/", "CC-BY-2.0"),
        ("Attribution-NonCommercial-ShareAlike License", None, "CC-BY-NC-SA"),
        ("CC BY-SA 4.0", None, "CC-BY-SA-4.0"),
        ("cc0", None, "CC0-1.0"),
        (None, "https://creativecommons.org/publicdomain/mark/1.0/", "PDM-1.0"),
        ("All Rights Reserved", "", "ARR"),
        ("something else", None, "UNKNOWN"),
    ],
)
def test_licence_normalisation(value, url, expected):
    assert normalise_licence(value, url) == expected


def test_licence_filter_terms_groups_and_patterns():
    keep = LicenceFilter.parse(["CC-BY,CC0", "public-domain"])
    assert keep is not None
    assert [keep.accepts(x) for x in ("CC-BY-2.0", "CC-BY-4.0", "CC0-1.0", "PDM-1.0")] == [True] * 4
    assert [keep.accepts(x) for x in ("CC-BY-SA-2.0", "CC-BY-NC-2.0", "ARR", "UNKNOWN")] == [False] * 4
    pattern = LicenceFilter.parse(["CC-BY*"])
    assert pattern is not None and pattern.accepts("CC-BY-NC-ND-2.0") and not pattern.accepts("CC0-1.0")
    assert licence_family("CC-BY-SA-4.0") == "CC-BY-SA"
    assert LicenceFilter.parse([]) is None
    with pytest.raises(BadInputError, match="unknown licence 'GPL'"):
        LicenceFilter.parse(["GPL"])


# --- YFCC100M --------------------------------------------------------------------------------------


def test_yfcc_dump_counts_and_skips_bad_rows(tmp_path, pairs_data):
    d = pairs_data
    lines = [
        d.yfcc_line(1, 45.80, 8.10),
        d.yfcc_line(2, None, None),  # no coordinates
        d.yfcc_line(3, 40.71, -74.00),  # New York: outside Europe
        d.yfcc_line(4, 45.81, 8.11, video=True),
        d.yfcc_line(5, 45.82, 8.12, accuracy=6),  # city-level position
        d.yfcc_line(6, 45.83, 8.13, licence=d.ARR, user="2@N00"),
        d.yfcc_line(1, 45.80, 8.10),  # the same photo twice
        "1\tbroken line",
    ]
    dump = d.write_yfcc_dump(tmp_path / "yfcc.tsv", lines)
    with Catalog.open(tmp_path / "pairs.duckdb") as catalog:
        report = ingest(catalog, YfccSource(dump))
        photo = catalog.query_df("SELECT * FROM photos WHERE source_id = '1'").iloc[0]
    assert report.read == 8 and report.added_photos == 2
    assert report.to_dict()["skipped"] == {
        "bad_row": 1,
        "duplicate_id": 1,
        "low_accuracy": 1,
        "no_coordinates": 1,
        "outside_europe": 1,
        "video": 1,
    }
    assert photo["licence"] == "CC-BY-2.0" and photo["user_id"] == "10000001@N00"
    assert photo["title"] == "a field" and photo["tags"] == "field,summer"
    assert (
        photo["url"].startswith("http://farm1.staticflickr.com/")
        and str(photo["taken_at"]) == "2019-06-01 12:00:00"
    )


def test_licence_filter_at_ingest(tmp_path, pairs_data):
    d = pairs_data
    lines = [
        d.yfcc_line(1, 45.8, 8.1, user="1@N00"),
        d.yfcc_line(2, 45.9, 8.2, licence=d.CC_BY_NC, user="2@N00"),
        d.yfcc_line(3, 46.0, 8.3, licence=d.CC0, user="3@N00"),
        d.yfcc_line(4, 46.1, 8.4, licence=d.ARR, user="4@N00"),
    ]
    dump = d.write_yfcc_dump(tmp_path / "yfcc.tsv", lines)
    with Catalog.open(tmp_path / "pairs.duckdb") as catalog:
        report = ingest(
            catalog, YfccSource(dump), IngestOptions(licences=LicenceFilter.parse(["CC-BY", "CC0"]))
        )
        kept = sorted(catalog.query_df("SELECT licence FROM photos")["licence"])
        params = json.loads(catalog.query_df("SELECT params FROM provenance")["params"].iat[0])
    assert kept == ["CC-BY-2.0", "CC0-1.0"] and report.skipped["licence"] == 2
    assert params["licences"] == ["CC-BY", "CC0"]


def test_bursts_keep_one_photo_per_user_place_and_time(tmp_path, pairs_data):
    d = pairs_data
    lines = [
        d.yfcc_line(1, 45.80000, 8.10000, taken="2019-06-01 12:00:00.0", user="a@N00"),
        d.yfcc_line(2, 45.80010, 8.10010, taken="2019-06-01 12:03:00.0", user="a@N00"),  # 14 m, 3 min
        d.yfcc_line(3, 45.80020, 8.10000, taken="2019-06-01 12:20:00.0", user="a@N00"),  # 20 min later
        d.yfcc_line(4, 45.81000, 8.10000, taken="2019-06-01 12:04:00.0", user="a@N00"),  # 1.1 km away
        d.yfcc_line(5, 45.80000, 8.10000, taken="2019-06-01 12:01:00.0", user="b@N00"),  # another user
    ]
    first = d.write_yfcc_dump(tmp_path / "a.tsv", lines)
    later = d.write_yfcc_dump(
        tmp_path / "b.tsv", [d.yfcc_line(6, 45.8, 8.1, taken="2019-06-01 12:05:00.0", user="a@N00")]
    )
    with Catalog.open(tmp_path / "pairs.duckdb") as catalog:
        report = ingest(catalog, YfccSource(first))
        assert sorted(catalog.query_df("SELECT source_id FROM photos")["source_id"]) == ["1", "3", "4", "5"]
        assert report.skipped["burst"] == 1
        assert ingest(catalog, YfccSource(later)).skipped["burst"] == 1  # against photo 1 in the catalog


def test_thinning_caps_photos_per_cell(tmp_path, pairs_data):
    d = pairs_data
    lines = [d.yfcc_line(i, 45.8 + i * 1e-4, 8.1, user=f"{i}@N00") for i in range(1, 7)]  # one 1 km cell
    lines.append(d.yfcc_line(7, 46.5, 8.1, user="7@N00"))  # another cell
    dump = d.write_yfcc_dump(tmp_path / "yfcc.tsv", lines)
    with Catalog.open(tmp_path / "pairs.duckdb") as catalog:
        report = ingest(catalog, YfccSource(dump), IngestOptions(max_per_cell=2))
        cells = catalog.query_df("SELECT cell_id, count(*) AS n FROM photos GROUP BY 1")
        assert report.skipped["thinned"] == 4 and sorted(cells["n"]) == [1, 2]
        chosen = set(catalog.query_df("SELECT source_id FROM photos")["source_id"])
    with Catalog.open(tmp_path / "again.duckdb") as catalog:
        ingest(catalog, YfccSource(dump), IngestOptions(max_per_cell=2))
        assert set(catalog.query_df("SELECT source_id FROM photos")["source_id"]) == chosen  # reproducible


# --- tables ----------------------------------------------------------------------------------------


def _photo_table(folder, pairs_data):
    photos = pairs_data.write_photos(folder / "photos")
    return pd.DataFrame(
        {
            "photo": ["m", "l", "f", "copy", "nocoord", "far", "url-only"],
            "latitude": [45.80, 45.90, 46.00, 45.95, None, 10.0, 46.10],
            "longitude": [8.10, 8.20, 8.30, 8.25, 8.00, 8.00, 8.40],
            "when": ["2020-05-01 10:00"] * 7,
            "file": [
                "photos/meadow.jpg",
                "photos/lake.jpg",
                str(photos["field"]),
                "photos/meadow_copy.jpg",
                "photos/lake.jpg",
                "photos/lake.jpg",
                None,
            ],
            "link": [None] * 6 + ["https://example.org/p.jpg"],
            "rights": ["CC BY 4.0"] * 7,
        }
    )


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_table_ingest_counts_bad_rows_and_byte_duplicates(tmp_path, pairs_data, suffix):
    table = _photo_table(tmp_path, pairs_data)
    path = tmp_path / f"photos{suffix}"
    if suffix == ".csv":
        table.to_csv(path, index=False)
    else:
        con = duckdb.connect()
        con.register("t", table)
        con.execute(f"COPY t TO '{path}' (FORMAT parquet)")
        con.close()
    columns = TableColumns(
        lat="latitude", lon="longitude", id="photo", time="when", path="file", url="link", licence="rights"
    )
    with Catalog.open(tmp_path / "pairs.duckdb") as catalog:
        report = ingest(catalog, TableSource(path, columns, name="mine"))
        photos = catalog.query_df("SELECT * FROM photos ORDER BY photo_id")
    assert report.to_dict()["skipped"] == {"duplicate_bytes": 1, "no_coordinates": 1, "outside_europe": 1}
    assert list(photos["source_id"]) == ["m", "l", "f", "url-only"]
    assert (photos["source"] == "table:mine").all() and (photos["licence"] == "CC-BY-4.0").all()
    assert photos["path"].iat[0] == str((tmp_path / "photos" / "meadow.jpg").resolve())
    assert photos["url"].iat[3] == "https://example.org/p.jpg" and photos["path"].isna().iat[3]


def test_table_with_missing_columns_says_which(tmp_path):
    path = tmp_path / "t.csv"
    pd.DataFrame({"y": [45.0], "x": [8.0]}).to_csv(path, index=False)
    with (
        Catalog.open(tmp_path / "pairs.duckdb") as catalog,
        pytest.raises(BadInputError, match=r"lacks column\(s\) lat="),
    ):
        ingest(catalog, TableSource(path))


def test_pairs_view_joins_photos_and_samples(tmp_path, lucas_sample):
    with Catalog.open(tmp_path / "pairs.duckdb") as catalog:
        ingest(catalog, LucasSource(lucas_sample))
        x, y = laea_xy(np.array([-8.108829]), np.array([54.43836]))
        block = cell_names(x, y, catalog.block_m)[0]
        assert catalog.query_df("SELECT block_id FROM locations")["block_id"].iat[0] == block
        assert catalog.query_df("SELECT count(*) AS n FROM pairs")["n"].iat[0] == 0  # no samples yet
