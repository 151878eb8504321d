"""Map outputs: Cloud-Optimised GeoTIFF, PNG quicklook with colour bar and scale bar, HTML map.

Every writer takes a georeferenced ``xarray.DataArray`` [y, x] (rioxarray CRS and transform) of
probabilities in [0, 1] with NaN as nodata, and writes atomically: a temporary sibling file is
renamed into place, so an interrupted export never leaves a half-written map.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Literal, cast

import numpy as np
import rasterio
import rioxarray  # also registers the .rio accessor
import xarray as xr
from rasterio.io import MemoryFile
from rio_cogeo.cogeo import cog_translate
from rio_cogeo.profiles import cog_profiles

from landprompt.errors import BadInputError
from landprompt.files import atomic_path
from landprompt.query.colours import COLORMAP, legend_colours, probability_rgba

#: uint8 maps store round(p * 254); 255 is nodata.
UINT8_SCALE = 254
UINT8_NODATA = 255
#: Largest map (pixels) :func:`write_html` embeds; larger maps belong in a COG.
HTML_MAX_PIXELS = 4_000_000
#: Web Mercator, the CRS of Leaflet maps: an image overlay is stretched linearly in it.
WEB_MERCATOR = "EPSG:3857"


def _check_map(da: xr.DataArray) -> None:
    if da.ndim != 2 or da.dims != ("y", "x"):
        raise BadInputError(f"a map must be a 2-D DataArray with dims (y, x), got {da.dims}")
    if da.rio.crs is None:
        raise BadInputError("the map has no CRS: write one with da.rio.write_crs(...)")


def write_cog(
    da: xr.DataArray,
    path: str | Path,
    dtype: Literal["float32", "uint8"] = "float32",
    blocksize: int = 256,
    tags: Mapping[str, str] | None = None,
) -> Path:
    """Write a probability map as a Cloud-Optimised GeoTIFF with internal overviews.

    Args:
        da: Probabilities [y, x] in [0, 1], NaN where there is no data.
        path: Output ``.tif`` path.
        dtype: ``float32`` (nodata NaN) or ``uint8`` (``round(p * 254)``, nodata 255, GDAL scale 1/254).
        blocksize: Internal tile size.
        tags: Extra GDAL metadata (e.g. :func:`~landprompt.query.provenance.provenance_tags`), added
            to the DataArray's scalar attrs.

    Returns:
        The written path.
    """
    _check_map(da)
    values = np.asarray(da.values, dtype=np.float32)
    if dtype == "uint8":
        data = np.where(np.isnan(values), UINT8_NODATA, np.rint(np.clip(values, 0, 1) * UINT8_SCALE))
        data, nodata = data.astype(np.uint8), float(UINT8_NODATA)
    elif dtype == "float32":
        data, nodata = values, float("nan")
    else:
        raise BadInputError(f"map dtype must be float32 or uint8, got {dtype!r}")
    _write_cog_array(
        da,
        data,
        path,
        nodata=nodata,
        blocksize=blocksize,
        tags=tags,
        scale=1 / UINT8_SCALE if dtype == "uint8" else None,
        resampling="average",
    )
    return Path(path)


def write_class_cog(
    da: xr.DataArray,
    path: str | Path,
    colours: Mapping[int, tuple[int, int, int, int]],
    nodata: int = UINT8_NODATA,
    blocksize: int = 256,
    tags: Mapping[str, str] | None = None,
) -> Path:
    """Write a class map (uint8 codes) as a COG with a colour table and nearest-neighbour overviews.

    Zoomed-out views then show real classes (never an average such as 0.5), in the table's colours.

    Args:
        da: Class codes [y, x] (any integer dtype, values 0-255), ``nodata`` where there is no data.
        path: Output ``.tif`` path.
        colours: Code -> RGBA colour of the GeoTIFF colour table.
        nodata: The nodata code.
        blocksize: Internal tile size.
        tags: Extra GDAL metadata, added to the DataArray's scalar attrs.

    Returns:
        The written path.
    """
    _check_map(da)
    data = np.asarray(da.values)
    if data.size and (data.min() < 0 or data.max() > 255):
        raise BadInputError("class codes must lie in 0-255 to be written as uint8")
    _write_cog_array(
        da,
        data.astype(np.uint8),
        path,
        nodata=float(nodata),
        blocksize=blocksize,
        tags=tags,
        colours=dict(colours),
        resampling="nearest",
    )
    return Path(path)


def _write_cog_array(
    da: xr.DataArray,
    data: np.ndarray,
    path: str | Path,
    nodata: float,
    blocksize: int,
    tags: Mapping[str, str] | None,
    resampling: Literal["nearest", "average"],
    scale: float | None = None,
    colours: dict[int, tuple[int, int, int, int]] | None = None,
) -> None:
    """Write one band with ``da``'s georeferencing, name and tags as a COG, atomically."""
    profile = {
        "driver": "GTiff",
        "height": data.shape[0],
        "width": data.shape[1],
        "count": 1,
        "dtype": data.dtype.name,
        "crs": da.rio.crs,
        "transform": da.rio.transform(),
        "nodata": nodata,
    }
    predictor = 3 if data.dtype == np.float32 else 2
    cog_profile = cog_profiles.get("deflate")
    cog_profile.update(blockxsize=blocksize, blockysize=blocksize, predictor=predictor)
    metadata = {k: str(v) for k, v in da.attrs.items() if isinstance(v, str | int | float)}
    metadata.update(tags or {})
    with MemoryFile() as memfile, atomic_path(path) as tmp:
        with memfile.open(**profile) as dst:
            dst.write(data, 1)
            if scale is not None:
                dst.scales = (scale,)
            if colours is not None:
                dst.write_colormap(1, colours)
            if da.name:
                dst.set_band_description(1, str(da.name))
            dst.update_tags(**metadata)
        with memfile.open() as src:
            cog_translate(
                src,
                str(tmp),
                cog_profile,
                nodata=nodata,
                overview_resampling=resampling,
                overview_level=_overview_levels(data.shape, blocksize),
                in_memory=True,
                quiet=True,
            )


def _overview_levels(shape: tuple[int, ...], blocksize: int) -> int:
    """Number of 2x overviews until the map fits in one block (at least one)."""
    return max(1, math.ceil(math.log2(max(max(shape) / blocksize, 1.0))))


def read_map(path: str | Path) -> xr.DataArray:
    """Read a map written by :func:`write_cog` back as probabilities [y, x] with NaN nodata.

    A uint8 class map (:func:`write_class_cog`, no scale) comes back as its codes, NaN for nodata.
    """
    with rasterio.open(path) as src:
        data = src.read(1).astype(np.float32)
        if src.dtypes[0] == "uint8":
            nodata = data == (UINT8_NODATA if src.nodata is None else src.nodata)
            if not math.isclose(src.scales[0], 1.0):
                data = data / UINT8_SCALE
            data[nodata] = np.nan
    da = cast(xr.DataArray, rioxarray.open_rasterio(path)).squeeze("band", drop=True)
    return da.copy(data=data)


def write_png(
    da: xr.DataArray,
    path: str | Path,
    title: str = "",
    cmap: str = COLORMAP,
    label: str = "probability",
    vmin: float = 0.0,
    vmax: float = 1.0,
    tags: Mapping[str, str] | None = None,
) -> Path:
    """Write a PNG quicklook: the map in map coordinates, a colour bar and a scale bar.

    ``vmin``/``vmax`` set the colour range (e.g. -1, 1 with ``cmap="RdBu"`` for a change map). The
    provenance tags among the map's attrs, and ``tags``, are stored as PNG text chunks.
    """
    import matplotlib

    from landprompt.query.provenance import provenance_of

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from mpl_toolkits.axes_grid1.anchored_artists import AnchoredSizeBar

    _check_map(da)
    left, bottom, right, top = da.rio.bounds()
    fig, ax = plt.subplots(figsize=(7, 6), dpi=110)
    colormap = plt.get_cmap(cmap).with_extremes(bad="#bdbdbd")
    image = ax.imshow(
        np.ma.masked_invalid(da.values),
        cmap=colormap,
        vmin=vmin,
        vmax=vmax,
        extent=(left, right, bottom, top),
    )
    fig.colorbar(image, ax=ax, shrink=0.8, label=label)
    crs = da.rio.crs
    if crs.is_projected:
        length = _nice_length((right - left) / 5)
        text = f"{length / 1000:g} km" if length >= 1000 else f"{length:g} m"
        ax.add_artist(AnchoredSizeBar(ax.transData, length, text, "lower right", pad=0.5, frameon=True))
        ax.set_xlabel(f"easting (m), {crs.to_string()}")
        ax.set_ylabel("northing (m)")
    else:
        ax.set_xlabel(f"longitude, {crs.to_string()}")
        ax.set_ylabel("latitude")
    ax.ticklabel_format(style="plain", useOffset=False)
    ax.tick_params(labelsize=7)
    ax.set_title(title or str(da.name or ""))
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", metadata={**provenance_of(da.attrs), **(tags or {})})
    plt.close(fig)
    return Path(path)


def _nice_length(target: float) -> float:
    """The largest 1, 2 or 5 x 10^n not above ``target``."""
    exponent = 10 ** math.floor(math.log10(target))
    return max(m * exponent for m in (1, 2, 5) if m * exponent <= target)


def write_html(
    da: xr.DataArray,
    path: str | Path,
    title: str = "",
    cmap: str = COLORMAP,
    max_pixels: int = HTML_MAX_PIXELS,
    tags: Mapping[str, str] | None = None,
) -> Path:
    """Write a self-contained HTML map (Leaflet, inlined) of a small area that works offline.

    The map is reprojected to Web Mercator and embedded as a PNG data URI in an image overlay; the
    page carries Leaflet's script and styles inline (see :mod:`~landprompt.query.html_page`), so the
    overlay, colour legend, title, scale and layer control show without a network; base map tiles
    load only when online. The page opens fitted to the map's bounds.

    Args:
        da: Probabilities [y, x] in [0, 1], NaN where there is no data (transparent).
        path: Output ``.html`` path.
        title: Title shown above the map (default: the DataArray's name).
        cmap: Matplotlib colormap name.
        max_pixels: Largest map accepted, in pixels.
        tags: Provenance tags written as ``<meta>`` tags, with those among the map's attrs.

    Returns:
        The written path.

    Raises:
        BadInputError: If the map is not a georeferenced 2-D map or has more than ``max_pixels``.
    """
    from landprompt.query.html_page import leaflet_page
    from landprompt.query.provenance import provenance_of

    _check_map(da)
    check_html_size(da.shape, max_pixels)
    mercator = _to_web_mercator(da)
    bounds = _latlon_bounds(mercator)
    label = title or str(da.name or "probability")
    meta = {**provenance_of(da.attrs), **(tags or {})}
    overlay = _png_data_uri(probability_rgba(mercator.values, cmap))
    page = leaflet_page(label, overlay, bounds, legend_colours(cmap), meta=meta)
    with atomic_path(path) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return Path(path)


def check_html_size(shape: tuple[int, ...], max_pixels: int = HTML_MAX_PIXELS) -> None:
    """Raise :class:`BadInputError` if a map of ``shape`` (rows, cols) is too large for :func:`write_html`."""
    rows, cols = shape
    if rows * cols > max_pixels:
        raise BadInputError(
            f"the map is {rows} x {cols} pixels, more than the {max_pixels:,} an HTML map embeds: "
            "write a COG instead, or choose a smaller bbox"
        )


def _to_web_mercator(da: xr.DataArray) -> xr.DataArray:
    """Reproject a map to Web Mercator (nearest neighbour, NaN nodata)."""
    from rasterio.enums import Resampling

    source = da.astype(np.float32).rio.write_nodata(np.nan, encoded=False)
    return source.rio.reproject(WEB_MERCATOR, resampling=Resampling.nearest, nodata=np.nan)


def _latlon_bounds(da: xr.DataArray) -> list[list[float]]:
    """Leaflet bounds ``[[south, west], [north, east]]`` of a Web Mercator map."""
    from landprompt.geo import WGS84, transform_points

    left, bottom, right, top = da.rio.bounds()
    lons, lats = transform_points([left, right], [bottom, top], WEB_MERCATOR, WGS84)
    return [[float(lats[0]), float(lons[0])], [float(lats[1]), float(lons[1])]]


def _png_data_uri(rgba: np.ndarray) -> str:
    """Encode an RGBA image as a ``data:image/png;base64,...`` URI."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(rgba, mode="RGBA").save(buffer, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
