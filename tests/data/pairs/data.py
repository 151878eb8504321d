#!/usr/bin/env python3
"""Generate tiny inputs of every photo source (fixed seed): YFCC100M dump lines, Flickr API recordings,
photo tables and JPEG photos.

TorchGeo-style test-data script: ``python tests/data/pairs/data.py OUT_DIR`` writes an example of each;
the tests call the functions into temporary folders instead of committing files.
"""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

import numpy as np
from PIL import Image

SEED = 0
CC_BY = ("Attribution License", "http://creativecommons.org/licenses/by/2.0/")
CC_BY_NC = ("Attribution-NonCommercial License", "http://creativecommons.org/licenses/by-nc/2.0/")
CC0 = ("Public Domain Dedication (CC0)", "https://creativecommons.org/publicdomain/zero/1.0/")
ARR = ("All Rights Reserved", "")


def yfcc_line(
    photo_id: int,
    lat: float | None,
    lon: float | None,
    taken: str = "2019-06-01 12:00:00.0",
    user: str = "10000001@N00",
    licence: tuple[str, str] = CC_BY,
    accuracy: int = 16,
    video: bool = False,
    title: str = "a field",
    tags: str = "field,summer",
) -> str:
    """One line of the 25-column YFCC100M dataset file."""
    fields = [
        str(photo_id),  # 0 line number
        str(photo_id),  # 1 photo id
        f"{photo_id:032x}",  # 2 hash
        user,  # 3 NSID
        quote_plus(f"user {user[:4]}"),  # 4 nickname
        taken,  # 5 date taken
        "1400000000",  # 6 date uploaded
        "Canon+EOS",  # 7 device
        quote_plus(title),  # 8 title
        "",  # 9 description
        quote_plus(tags).replace("%2C", ","),  # 10 user tags
        "",  # 11 machine tags
        "" if lon is None else f"{lon:.6f}",  # 12 longitude
        "" if lat is None else f"{lat:.6f}",  # 13 latitude
        str(accuracy) if lat is not None else "",  # 14 accuracy
        f"http://www.flickr.com/photos/{user}/{photo_id}/",  # 15 page URL
        f"http://farm1.staticflickr.com/1/{photo_id}_abc.jpg",  # 16 download URL
        licence[0],  # 17 licence name
        licence[1],  # 18 licence URL
        "1",  # 19 server
        "1",  # 20 farm
        "abc",  # 21 secret
        "def",  # 22 secret original
        "jpg",  # 23 extension
        "1" if video else "0",  # 24 marker
    ]
    assert len(fields) == 25
    return "\t".join(fields)


def write_yfcc_dump(path: Path, lines: list[str]) -> Path:
    """A dump file of the given lines."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def flickr_photo(
    photo_id: int,
    lat: float,
    lon: float,
    owner: str = "111@N01",
    license: str = "4",
    taken: str = "2021-07-01 10:00:00",
    accuracy: int = 16,
) -> dict[str, Any]:
    """One photo of a ``flickr.photos.search`` answer with the extras landprompt asks for."""
    return {
        "id": str(photo_id),
        "owner": owner,
        "secret": "abc",
        "server": "1",
        "farm": 1,
        "title": f"photo {photo_id}",
        "ispublic": 1,
        "isfriend": 0,
        "isfamily": 0,
        "license": license,
        "datetaken": taken,
        "datetakengranularity": 0,
        "datetakenunknown": "0",
        "ownername": f"owner {owner}",
        "latitude": f"{lat:.6f}",
        "longitude": f"{lon:.6f}",
        "accuracy": str(accuracy),
        "context": 0,
        "tags": "alps meadow",
        "url_l": f"https://live.staticflickr.com/1/{photo_id}_abc_b.jpg",
        "height_l": 768,
        "width_l": 1024,
    }


FLICKR_LICENSES = {
    "licenses": {
        "license": [
            {"id": 0, "name": "All Rights Reserved", "url": ""},
            {"id": 4, "name": "Attribution License", "url": "https://creativecommons.org/licenses/by/2.0/"},
            {
                "id": 9,
                "name": "Public Domain Dedication (CC0)",
                "url": "https://creativecommons.org/publicdomain/zero/1.0/",
            },
            {"id": 11, "name": "CC BY 4.0", "url": "https://creativecommons.org/licenses/by/4.0/"},
        ]
    },
    "stat": "ok",
}


def record_flickr(folder: Path, n_photos: int, per_page: int, seed: int = SEED) -> list[Path]:
    """Recorded answers of a paged search (``search-<page>.json``) and ``licenses.json``.

    Photos are spread over the Alps (45.5-46.5 N, 7-9 E), alternating licences 4 (CC BY 2.0),
    9 (CC0) and 11 (CC BY 4.0), one per owner so that no burst rule applies.
    """
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    photos = [
        flickr_photo(
            5000 + i,
            45.5 + rng.random(),
            7 + 2 * rng.random(),
            owner=f"{i}@N01",
            license=("4", "9", "11")[i % 3],
        )
        for i in range(n_photos)
    ]
    pages = max(1, -(-n_photos // per_page))
    written = [folder / "licenses.json"]
    written[0].write_text(json.dumps(FLICKR_LICENSES))
    for page in range(1, pages + 1):
        chunk = photos[(page - 1) * per_page : page * per_page]
        answer = {
            "photos": {"page": page, "pages": pages, "perpage": per_page, "total": n_photos, "photo": chunk},
            "stat": "ok",
        }
        path = folder / f"search-{page}.json"
        path.write_text(json.dumps(answer))
        written.append(path)
    return written


def jpeg_bytes(colour: tuple[int, int, int], size: tuple[int, int] = (48, 32), seed: int = SEED) -> bytes:
    """A small JPEG: a flat colour with some noise."""
    rng = np.random.default_rng(seed)
    pixels = np.clip(np.array(colour)[None, None] + rng.integers(-20, 20, (size[1], size[0], 3)), 0, 255)
    buffer = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8)).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def write_photos(folder: Path) -> dict[str, Path]:
    """Three good JPEGs, a byte copy of the first, and a truncated (corrupt) JPEG."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, colour in (("meadow", (80, 160, 60)), ("lake", (40, 90, 180)), ("field", (200, 180, 90))):
        paths[name] = folder / f"{name}.jpg"
        paths[name].write_bytes(jpeg_bytes(colour, seed=len(name)))
    paths["meadow_copy"] = folder / "meadow_copy.jpg"
    paths["meadow_copy"].write_bytes(paths["meadow"].read_bytes())
    paths["corrupt"] = folder / "corrupt.jpg"
    paths["corrupt"].write_bytes(paths["lake"].read_bytes()[:200])
    return paths


EUROSTAT_LUCAS_COLUMNS = (
    "POINT_ID",
    "NUTS0",
    "TH_LAT",
    "TH_LONG",
    "GPS_LAT",
    "GPS_LONG",
    "GPS_EW",
    "SURVEY_DATE",
    "LC1",
    "LU1",
)


def write_eurostat_lucas(folder: Path, year: int = 2015) -> Path:
    """A LUCAS table as Eurostat's yearly files spell it (upper-case columns, no GISCO URL columns) and
    its photos in the survey's ``LUCAS<year>/<NUTS0>/<id[:3]>/<id[3:6]>/<id><letter>.jpg`` layout.

    Two points: 40100100 (ES, GPS west of Greenwich, N and P photos) and 50200200 (DE, no GPS fix:
    88.888888, N photo). Returns the table's path.
    """
    rows = [
        ("40100100", "ES", "40.4168", "-3.7038", "40.4170", "3.7040", "W", "21/06/15", "B11", "U111"),
        ("50200200", "DE", "52.5200", "13.4050", "88.888888", "88.888888", "", "02/07/15", "C10", "U120"),
    ]
    folder.mkdir(parents=True, exist_ok=True)
    shade = 0
    for point, country, *_ in rows:
        for letter in ("N", "P") if point == "40100100" else ("N",):
            shade += 60  # distinct files: identical bytes would be deduplicated
            path = folder / f"LUCAS{year}" / country / point[:3] / point[3:6] / f"{point}{letter}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(jpeg_bytes((40, shade, 40)))
    table = folder / f"EU_{year}_20200213.CSV"
    lines = [",".join(EUROSTAT_LUCAS_COLUMNS), *(",".join(r) for r in rows)]
    table.write_text("\n".join(lines) + "\n")
    return table


if __name__ == "__main__":
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "generated"
    write_yfcc_dump(out / "yfcc100m_dataset.tsv", [yfcc_line(1, 45.8, 8.1), yfcc_line(2, None, None)])
    record_flickr(out / "flickr", n_photos=7, per_page=3)
    print(write_photos(out / "photos"))
