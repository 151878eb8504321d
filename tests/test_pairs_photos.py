import io
import json

import numpy as np
import pandas as pd
import pytest
import zarr
from PIL import Image

from landprompt.embedder.photos import STATUS, embed_photos, rank_and_world, sync_status
from landprompt.errors import BadInputError
from landprompt.pairs.catalog import Catalog
from landprompt.pairs.ingest import IngestOptions, ingest
from landprompt.pairs.sources import TableColumns, TableSource


class Downloads:
    """A fetch serving one JPEG URL and failing the others."""

    def __init__(self, payload: bytes):
        self.payload, self.calls = payload, []

    def __call__(self, url):
        self.calls.append(url)
        if url.endswith("good.jpg"):
            return self.payload
        raise ConnectionError("HTTP 404")


@pytest.fixture
def photo_catalog(tmp_path, pairs_data):
    """A catalog of 3 good JPEGs, a corrupt one, a missing file, a good URL and a failing URL."""
    photos = pairs_data.write_photos(tmp_path / "photos")
    table = tmp_path / "photos.csv"
    pd.DataFrame(
        {
            "id": ["meadow", "lake", "corrupt", "gone", "web", "web404", "field"],
            "lat": [45.80, 45.81, 45.82, 45.83, 45.84, 45.85, 45.86],
            "lon": [8.10] * 7,
            "path": [
                photos["meadow"],
                photos["lake"],
                photos["corrupt"],
                tmp_path / "nope.jpg",
                None,
                None,
                photos["field"],
            ],
            "url": [
                None,
                None,
                None,
                None,
                "https://example.org/good.jpg",
                "https://example.org/bad.jpg",
                None,
            ],
        }
    ).to_csv(table, index=False)
    path = tmp_path / "pairs.duckdb"
    with Catalog.open(path) as catalog:
        ingest(catalog, TableSource(table, TableColumns(id="id", path="path", url="url")), IngestOptions())
    return path, photos


def _embedding(tmp_path, name):
    group = zarr.open_group(str(tmp_path / name), mode="r")
    return np.asarray(group["embedding"][:]), np.asarray(group["status"][:]), dict(group.attrs)


def test_photo_embeddings_skip_and_record_bad_photos(tmp_path, photo_catalog, tiny_clip, pairs_data):
    path, photos = photo_catalog
    fetch = Downloads(pairs_data.jpeg_bytes((10, 200, 10)))
    report = embed_photos(path, tmp_path / "emb.zarr", tiny_clip, batch_size=2, fetch=fetch, progress=False)
    assert (report.done, report.missing, report.corrupt) == (4, 2, 1)
    vectors, status, attrs = _embedding(tmp_path, "emb.zarr")
    assert vectors.dtype == np.float16 and vectors.shape == (7, tiny_clip.embed_dim)
    assert attrs["clip_model"] == "landprompt-tiny" and attrs["clip_id"] == tiny_clip.id
    with Catalog.open(path) as catalog:
        rows = catalog.query_df(
            "SELECT photo_id, source_id, embed_status, embed_error FROM photos ORDER BY photo_id"
        )
    by_id = dict(zip(rows["source_id"], rows["photo_id"], strict=True))
    assert dict(zip(rows["source_id"], rows["embed_status"], strict=True)) == {
        "meadow": "done",
        "lake": "done",
        "corrupt": "corrupt",
        "gone": "missing",
        "web": "done",
        "web404": "missing",
        "field": "done",
    }
    assert "HTTP 404" in rows.set_index("source_id").at["web404", "embed_error"]
    expected = tiny_clip.encode_images([Image.open(photos["lake"]).convert("RGB")])[0]
    np.testing.assert_allclose(vectors[by_id["lake"]].astype(np.float32), expected, atol=2e-3)
    web = tiny_clip.encode_images([Image.open(io.BytesIO(fetch.payload)).convert("RGB")])[0]
    np.testing.assert_allclose(vectors[by_id["web"]].astype(np.float32), web, atol=2e-3)
    done = status == STATUS["done"]
    np.testing.assert_allclose(np.linalg.norm(vectors[done].astype(np.float32), axis=1), 1.0, atol=2e-3)
    assert not vectors[~done].any()
    assert list((tmp_path / "emb.zarr.cache").rglob("*"))  # the URL photo was cached

    again = embed_photos(path, tmp_path / "emb.zarr", tiny_clip, fetch=fetch, progress=False)
    assert (again.already, again.done) == (7, 0) and len(fetch.calls) == 2
    retry = embed_photos(
        path, tmp_path / "emb.zarr", tiny_clip, fetch=fetch, retry_missing=True, progress=False
    )
    assert (
        retry.missing == 2 and fetch.calls.count("https://example.org/good.jpg") == 1
    )  # served from the cache


def test_ranks_shard_by_chunk_and_agree_with_one_process(tmp_path, photo_catalog, tiny_clip, pairs_data):
    path, _ = photo_catalog
    fetch = Downloads(pairs_data.jpeg_bytes((10, 200, 10)))
    reports = [
        embed_photos(
            path,
            tmp_path / "two.zarr",
            tiny_clip,
            chunk_rows=2,
            fetch=fetch,
            rank=r,
            world_size=2,
            progress=False,
        )
        for r in (0, 1)
    ]
    assert [r.assigned for r in reports] == [4, 3]  # chunks {0, 2} -> rows 0, 1, 4, 5; {1, 3} -> 2, 3, 6
    with Catalog.open(path, read_only=True) as catalog:
        assert set(catalog.query_df("SELECT embed_status FROM photos")["embed_status"]) == {"pending"}
    counts = sync_status(path, tmp_path / "two.zarr")
    assert counts == {"done": 4, "missing": 2, "corrupt": 1}
    embed_photos(path, tmp_path / "one.zarr", tiny_clip, chunk_rows=2, fetch=fetch, progress=False)
    one, status_one, _ = _embedding(tmp_path, "one.zarr")
    two, status_two, _ = _embedding(tmp_path, "two.zarr")
    np.testing.assert_array_equal(status_one, status_two)
    np.testing.assert_allclose(one.astype(np.float32), two.astype(np.float32), atol=2e-3)
    errors = [
        json.loads(line)
        for f in (tmp_path / "two.zarr" / ".landprompt_errors").glob("*.jsonl")
        for line in f.read_text().splitlines()
    ]
    assert sorted(e["status"] for e in errors) == ["corrupt", "missing", "missing"]


def test_rank_settings_and_model_mismatch(tmp_path, photo_catalog, tiny_clip, monkeypatch):
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "3")
    assert rank_and_world() == (1, 3)
    with pytest.raises(BadInputError, match=r"rank 3 is not in 0\.\.2"):
        rank_and_world(3, 3)
    path, _ = photo_catalog
    out = tmp_path / "emb.zarr"
    embed_photos(path, out, tiny_clip, rank=0, world_size=1, progress=False)
    zarr.open_group(str(out), mode="r+").attrs["clip_id"] = "ViT-B-32/laion2b_s34b_b79k"
    with pytest.raises(BadInputError, match="use the same CLIP model"):
        embed_photos(path, out, tiny_clip, rank=0, world_size=1, progress=False)
