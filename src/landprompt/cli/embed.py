"""``landprompt eo`` (Sentinel inputs) and ``landprompt embed`` (dense embedding runs)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from landprompt.cli.common import console, sub_app

eo_app = sub_app("Sentinel-1/2 inputs: band specs, monthly composites, offline stacks.")
app = sub_app("Dense embedding runs: an encoder over an area -> an embedding cube.")

AoiOption = Annotated[
    str, typer.Option("--aoi", "--bbox", help="Lon/lat 'minlon,minlat,maxlon,maxlat' or a GeoJSON file.")
]
YearOption = Annotated[int, typer.Option("--year", help="Calendar year of the monthly composites.")]
SourceOption = Annotated[
    str,
    typer.Option(
        "--source",
        help="pc (Planetary Computer), earth-search, stac:URL, a static catalog.json, or a local stack path.",
    ),
]
ResolutionOption = Annotated[float, typer.Option("--resolution", help="Pixel size in metres.")]
CrsOption = Annotated[str | None, typer.Option("--crs", help="Grid CRS, e.g. EPSG:3035 (default: UTM zone).")]
ForceOption = Annotated[bool, typer.Option("--force", help="Allow an area beyond 10^8 pixels.")]
DilateOption = Annotated[int, typer.Option("--dilate", help="Grow cloud/shadow masks by N pixels.")]


@eo_app.command("bands")
def eo_bands() -> None:
    """The Sentinel-1/2 bands landprompt reads, with their units and normalisation."""
    from landprompt.eo.bands import BANDS

    table = Table(title="bands")
    for column in ("band", "sensor", "resolution (m)", "units", "normalised as"):
        table.add_column(column)
    for spec in BANDS.values():
        table.add_row(
            spec.name, spec.sensor, f"{spec.resolution:g}", spec.units, f"(x + {spec.shift:g}) / {spec.div:g}"
        )
    console.print(table)


@eo_app.command("composite")
def eo_composite(
    aoi: AoiOption,
    year: YearOption,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output .zarr or .nc file.")],
    source: SourceOption = "pc",
    resolution: ResolutionOption = 10.0,
    crs: CrsOption = None,
    dilate: DilateOption = 0,
    force: ForceOption = False,
) -> None:
    """Monthly median S1/S2 composites of one year over an area (s2, s1: [time, band, y, x])."""
    from landprompt.embedder.run import plan_grid
    from landprompt.eo.open import open_source
    from landprompt.errors import BadInputError
    from landprompt.files import atomic_path

    if out.suffix not in (".zarr", ".nc"):
        raise BadInputError(f"--out must end in .zarr or .nc, got {out.name!r}")
    grid = plan_grid(aoi, resolution, crs, force)
    composite = open_source(source, dilate).composite(grid, year, force=force)
    if out.suffix == ".nc":
        with atomic_path(out) as tmp:
            composite.to_netcdf(tmp)
    else:
        composite.to_zarr(out, mode="w", zarr_format=3)
    console.print(f"wrote {dict(composite.sizes)} composites of {year} to {out}")


@eo_app.command("fetch")
def eo_fetch(
    aoi: AoiOption,
    year: YearOption,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder (GeoTIFF stack) or .zarr/.nc.")],
    source: SourceOption = "pc",
    resolution: ResolutionOption = 10.0,
    crs: CrsOption = None,
    force: ForceOption = False,
) -> None:
    """Download a year of scenes once into a local stack, for offline runs (--source PATH later)."""
    from landprompt.embedder.run import plan_grid
    from landprompt.eo.local import write_geotiff_stack, write_scene_cube
    from landprompt.eo.open import open_source

    grid = plan_grid(aoi, resolution, crs, force)
    scenes = open_source(source).scenes(grid, year, force=force)
    if out.suffix in (".zarr", ".nc"):
        console.print(f"wrote {write_scene_cube(scenes, out)}")
    else:
        console.print(f"wrote {len(write_geotiff_stack(scenes, out))} GeoTIFFs to {out}")


@app.command("run")
def embed_run_command(
    aoi: AoiOption,
    year: YearOption,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output embedding cube (.zarr).")],
    model: Annotated[
        str, typer.Option("--model", help="Encoder name (sits, clip_rgb) or checkpoint.")
    ] = "clip_rgb",
    source: SourceOption = "pc",
    resolution: ResolutionOption = 10.0,
    crs: CrsOption = None,
    chunk: Annotated[int, typer.Option(help="Cube chunk size in output pixels.")] = 256,
    dtype: Annotated[str, typer.Option(help="Cube storage: fp16 or int8.")] = "fp16",
    batch_size: Annotated[int, typer.Option(help="Pixels (or patches) per forward pass.")] = 1024,
    device: Annotated[str | None, typer.Option(help="Torch device (default: cuda if available).")] = None,
    scheduler: Annotated[
        str | None, typer.Option(help="Dask scheduler address, or 'local'; default: run here.")
    ] = None,
    dilate: DilateOption = 0,
    force: ForceOption = False,
    basis: Annotated[
        str, typer.Option(help="'pca': store the cube in a PCA basis (format 2); 'none': version 1.")
    ] = "none",
    rank: Annotated[int, typer.Option(help="Rank of a PCA basis (grown to keep 99.9 % variance).")] = 64,
) -> None:
    """Embed an area for one year into a cube; the same command resumes a killed run."""
    from landprompt.embedder.run import embed_run
    from landprompt.eo.open import open_source

    path = embed_run(
        aoi,
        year,
        model,
        open_source(source, dilate),
        out,
        resolution=resolution,
        crs=crs,
        chunk=chunk,
        dtype=dtype,  # type: ignore[arg-type]
        batch_size=batch_size,
        device=device,
        scheduler=scheduler,
        force=force,
        basis=basis,
        rank=rank,
    )
    console.print(f"wrote the embedding cube {path}")
