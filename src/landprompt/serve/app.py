"""The ``landprompt serve`` web app: concept probability tiles, top-k, points, exports and the map page.

Built on FastAPI, with the tile pieces of the TiTiler stack: morecantile's WebMercatorQuad for the tile
grid, :func:`rio_tiler.utils.render` for the PNG/GeoTIFF/NPY encoding (in the colours of every map,
:mod:`landprompt.query.colours`), and titiler-core's :class:`~titiler.core.resources.enums.ImageType`
for formats and media types. The layer itself is computed per request
(:class:`~landprompt.serve.layer.ServedCube`), not read from a file, which is why the app has its own
routes instead of a TiTiler reader factory.

Only the cubes the app was made with are served: no request path reaches the file system. Every error
is a JSON ``{"detail": ...}`` with its status code, never a traceback.
"""

from __future__ import annotations

import tempfile
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from fastapi import FastAPI, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from rasterio.transform import from_bounds
from rio_tiler.utils import render
from starlette.background import BackgroundTask
from titiler.core.resources.enums import ImageType

from landprompt.errors import BadInputError, DamagedCubeError, LandpromptError
from landprompt.query.colours import probability_rgba
from landprompt.serve.layer import (
    TILE_SIZE,
    TMS,
    NotServedError,
    OutsideCubeError,
    ServedCube,
    TileOutOfRangeError,
    TileTooCoarseError,
)

FORMATS = ("png", "tif", "npy")


@dataclass(frozen=True)
class Limits:
    """What one request may ask for, and how much work runs at once.

    Attributes:
        prompt_chars: Longest prompt (concept or versus), in characters.
        versus: Most versus prompts.
        k: Most top-k places.
        workers: Requests computing at once; others wait up to ``wait_s`` then get 503.
        wait_s: Seconds a request waits for a free worker.
        export_pixels: Largest view exported as a COG.
    """

    prompt_chars: int = 200
    versus: int = 32
    k: int = 500
    workers: int = 4
    wait_s: float = 30.0
    export_pixels: int = 16_000_000


class BusyError(LandpromptError):
    """Every worker stayed busy while the request waited."""


_STATUS: list[tuple[type[Exception], int]] = [
    (NotServedError, 404),
    (OutsideCubeError, 404),
    (TileOutOfRangeError, 400),
    (TileTooCoarseError, 400),
    (DamagedCubeError, 500),
    (BusyError, 503),
    (BadInputError, 400),
    (LandpromptError, 500),
]


Concept = Annotated[str, Query(description="The concept in plain words, e.g. 'olive groves'.")]
Versus = Annotated[
    list[str] | None, Query(description="Background prompts (repeat the parameter); default: land covers.")
]
CubeName = Annotated[str | None, Query(description="Served cube name (see /cubes); default: the first.")]
Calibrated = Annotated[bool, Query(description="Apply the calibration fitted for this concept and cube.")]


def create_app(cubes: Sequence[ServedCube], limits: Limits | None = None) -> FastAPI:
    """The web app serving ``cubes`` (the first is the default of requests that name none)."""
    from landprompt import __version__
    from landprompt.serve.page import asset, page_html

    if not cubes:
        raise BadInputError("nothing to serve: give an embedding cube or a folder of cubes")
    limits = limits or Limits()
    served = {cube.name: cube for cube in cubes}
    if len(served) != len(cubes):
        raise BadInputError("two served cubes have the same name: serve them from differently named folders")
    slots = threading.BoundedSemaphore(limits.workers)
    app = FastAPI(
        title="landprompt",
        version=__version__,
        description="Type a concept in plain words and see where it is: probability tiles from an "
        "embedding cube, top-k places, point probabilities.",
    )

    @contextmanager
    def worker() -> Iterator[None]:
        if not slots.acquire(timeout=limits.wait_s):
            raise BusyError(f"the server is busy (all {limits.workers} workers): try again shortly")
        try:
            yield
        finally:
            slots.release()

    def cube_of(name: str | None) -> ServedCube:
        if name is None:
            return cubes[0]
        if name not in served:
            raise NotServedError(f"no cube named {name!r} is served; served: {', '.join(served)}")
        return served[name]

    def check_prompts(concept: str, versus: list[str] | None) -> None:
        for prompt in [concept, *(versus or [])]:
            if len(prompt) > limits.prompt_chars:
                raise BadInputError(f"a prompt may have at most {limits.prompt_chars} characters")
        if versus and len(versus) > limits.versus:
            raise BadInputError(f"at most {limits.versus} versus prompts, got {len(versus)}")

    @app.exception_handler(Exception)
    async def _errors(request: Request, exc: Exception) -> JSONResponse:
        status = next((code for kind, code in _STATUS if isinstance(exc, kind)), 500)
        detail = (
            str(exc) if isinstance(exc, LandpromptError) else f"internal error: {type(exc).__name__}: {exc}"
        )
        return JSONResponse({"detail": detail.splitlines()[0] if detail else type(exc).__name__}, status)

    for kind, _ in _STATUS:
        app.add_exception_handler(kind, _errors)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def index() -> str:
        return page_html([cube.info() for cube in cubes])

    @app.get("/assets/{name}", include_in_schema=False)
    def assets(name: str) -> Response:
        body, media = asset(name)
        return Response(body, media_type=media)

    @app.get("/cubes", summary="The served cubes: name, bounds, CRS, CLIP model, dims")
    def list_cubes() -> list[dict[str, Any]]:
        return [cube.info() for cube in cubes]

    @app.get(
        "/tiles/WebMercatorQuad/{z}/{x}/{y}.{fmt}",
        summary="Probability tile of a concept (png: colour map + transparent nodata; tif/npy: raw values)",
        responses={200: {"content": {ImageType[f].mediatype: {} for f in FORMATS}}},
    )
    def tile(
        z: int,
        x: int,
        y: int,
        fmt: str,
        concept: Concept,
        versus: Versus = None,
        calibrated: Calibrated = False,
        cube: CubeName = None,
    ) -> Response:
        if fmt not in FORMATS:
            raise TileOutOfRangeError(f"tile format must be one of {', '.join(FORMATS)}, got {fmt!r}")
        check_prompts(concept, versus)
        served_cube = cube_of(cube)
        with worker():
            query = served_cube.query(concept, versus, calibrated)
            values, fraction, index = served_cube.tile(z, x, y, query)
        return Response(encode_tile(values, fraction, index, fmt), media_type=ImageType[fmt].mediatype)

    @app.get("/topk", summary="The k best distinct places of a concept, as GeoJSON")
    def topk(
        concept: Concept,
        k: Annotated[int, Query(ge=1, description="Number of places (at most the server's limit).")] = 20,
        min_distance: Annotated[float, Query(ge=0, description="Metres between places.")] = 0.0,
        cube: CubeName = None,
    ) -> JSONResponse:
        from landprompt.query.topk import places_geojson

        check_prompts(concept, None)
        if k > limits.k:
            raise BadInputError(f"k may be at most {limits.k}, got {k}")
        served_cube = cube_of(cube)
        with worker():
            places = served_cube.top_k(served_cube.query(concept), k, min_distance)
        return JSONResponse(places_geojson(places), media_type="application/geo+json")

    @app.get("/point", summary="Score and probability of a concept at a lon/lat point")
    def point(
        lon: Annotated[float, Query(ge=-180, le=180)],
        lat: Annotated[float, Query(ge=-90, le=90)],
        concept: Concept,
        versus: Versus = None,
        calibrated: Calibrated = False,
        cube: CubeName = None,
    ) -> dict[str, Any]:
        check_prompts(concept, versus)
        served_cube = cube_of(cube)
        with worker():
            return {
                "concept": concept,
                **served_cube.point(lon, lat, served_cube.query(concept, versus, calibrated)),
            }

    @app.get("/export.tif", summary="The probability map of a lon/lat bbox as a Cloud-Optimised GeoTIFF")
    def export(
        concept: Concept,
        bbox: Annotated[str, Query(description="west,south,east,north in degrees")],
        versus: Versus = None,
        calibrated: Calibrated = False,
        cube: CubeName = None,
    ) -> FileResponse:
        from landprompt.geo import parse_bbox
        from landprompt.query.maps import write_cog

        check_prompts(concept, versus)
        served_cube = cube_of(cube)
        box = parse_bbox(bbox)
        with worker():
            da = served_cube.export(served_cube.query(concept, versus, calibrated), box, limits.export_pixels)
            folder = Path(tempfile.mkdtemp(prefix="landprompt-export-"))
            try:
                path = write_cog(da, folder / "probability.tif")
            except BaseException:
                _remove(folder)  # the response's clean-up never runs for a failed write
                raise
        return FileResponse(
            path,
            media_type=ImageType.tif.mediatype,
            filename=f"{served_cube.name}-probability.tif",
            background=BackgroundTask(_remove, folder),
        )

    return app


def encode_tile(values: np.ndarray, fraction: np.ndarray, tile: Any, fmt: str) -> bytes:
    """Encode a tile's probabilities: PNG in the colour map (alpha = valid fraction), else float32 values.

    ``tif`` and ``npy`` hold the probabilities (NaN nodata) and the valid fraction x 255 as a mask band.
    """
    alpha = np.rint(np.clip(fraction, 0, 1) * 255).astype(np.uint8)
    if fmt == "png":
        rgba = probability_rgba(values)  # the colours of the HTML maps and the page's legend
        return render(np.moveaxis(rgba[..., :3], -1, 0), alpha, img_format=ImageType.png.driver, ZLEVEL=1)
    options: dict[str, Any] = {}
    if fmt == "tif":
        options = {
            **ImageType.tif.profile,
            "crs": TMS.rasterio_crs,
            "transform": from_bounds(*TMS.xy_bounds(tile), TILE_SIZE, TILE_SIZE),
            "nodata": None,
        }
    return render(values[None].astype(np.float32), alpha, img_format=ImageType[fmt].driver, **options)


def _remove(folder: Path) -> None:
    import shutil

    shutil.rmtree(folder, ignore_errors=True)
