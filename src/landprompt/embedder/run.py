"""Dense embedding runs: a satellite encoder over an AOI grid, chunk by chunk, into an embedding cube.

The cube's grid is the encoder's output grid (the AOI grid coarsened by the encoder's stride). Each
cube chunk reads its input window, plus a halo of half the encoder's pooling window so pooled pixels
at chunk borders see the same neighbours as in one pass over the whole grid, builds the year's monthly
composites from the source, embeds them and writes the chunk. Finished chunks are recorded by the
:class:`~landprompt.embedder.cube.CubeWriter`, so a killed run resumes where it stopped and ends
bitwise identical; chunks run in this process or as Dask tasks on a cluster.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Sequence
from contextlib import closing
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from landprompt import checks
from landprompt.distributed import run_each
from landprompt.embedder.basis import Basis
from landprompt.embedder.cube import (
    DEFAULT_CHUNK,
    ChunkWindow,
    CubeDtype,
    CubeWriter,
    ZarrFormat,
    user_attrs,
)
from landprompt.embedder.models import Encoder, pixel_latlon
from landprompt.embedder.recipe import EncoderRecipe, weights_sha256
from landprompt.eo.aoi import check_grid
from landprompt.eo.source import SceneSource
from landprompt.errors import BadInputError
from landprompt.files import require_writable
from landprompt.geo import BBox, Grid, parse_bbox, parse_crs
from landprompt.progress import progress_bar

if TYPE_CHECKING:
    from landprompt.embedder.models.sits import SitsEncoder


@dataclass(frozen=True)
class EmbedTask:
    """Everything a worker needs to embed one chunk (picklable: paths and settings, no arrays)."""

    recipe: EncoderRecipe
    source: SceneSource
    grid: Grid
    year: int
    batch_size: int = 1024
    device: str | None = None
    weights_sha256: str = ""
    features: bool = False


AOI = Grid | BBox | str | Sequence[float]
#: Values of ``embed_run(basis=...)``.
BASES = ("auto", "none", "head", "pca")


def plan_grid(aoi: AOI, resolution: float = 10.0, crs: Any = None, force: bool = False) -> Grid:
    """The input pixel grid of an AOI, size-checked.

    Args:
        aoi: A :class:`Grid` (used as it is), or a lon/lat bbox ("minlon,minlat,maxlon,maxlat", a GeoJSON
            file or 4 numbers) covered by a grid in ``crs`` (default: the UTM zone of its centre).
        resolution: Pixel size in metres, for a bbox.
        crs: CRS of the grid, for a bbox.
        force: Allow a grid beyond the sane size (:data:`landprompt.eo.aoi.MAX_PIXELS`).
    """
    if isinstance(aoi, Grid):
        return check_grid(aoi, force=force)
    box = aoi if isinstance(aoi, BBox) else parse_bbox(aoi)
    return check_grid(Grid.from_bbox(box, resolution, None if crs is None else parse_crs(crs)), force=force)


def run_attrs(
    encoder: Encoder,
    source: SceneSource,
    year: int,
    recipe: EncoderRecipe | None = None,
    digest: str | None = None,
) -> dict[str, Any]:
    """Cube attrs recording what produced it.

    The encoder (model, arguments, seed, weights hash), CLIP model, year, source and cloud mask.
    """
    spec = encoder.spec
    recipe = recipe or EncoderRecipe(encoder.registry_name or type(encoder).__name__)
    return {
        **encoder.describe(),
        **recipe.attrs(digest or weights_sha256(encoder)),
        "clip_model": spec.clip_model or "",
        "clip_pretrained": spec.clip_pretrained or "",
        "time_range": [f"{year}-01-01", f"{year}-12-31"],
        "year": year,
        "source": repr(source),
        "cloud_mask": source.cloud_mask(year),
    }


def embed_run(
    aoi: AOI,
    year: int,
    model: str,
    source: SceneSource,
    out: str | Path,
    resolution: float = 10.0,
    encoder_args: dict[str, Any] | None = None,
    seed: int = 0,
    random_weights: bool = False,
    crs: Any = None,
    chunk: int = DEFAULT_CHUNK,
    dtype: CubeDtype = "fp16",
    batch_size: int = 1024,
    device: str | None = None,
    scheduler: str | None = None,
    force: bool = False,
    progress: bool = True,
    basis: str = "auto",
    rank: int = 64,
    zarr_format: ZarrFormat = 3,
) -> Path:
    """Embed an AOI for one year into a cube at ``out``; re-running the same command resumes it.

    Args:
        aoi: A :class:`Grid`, or a lon/lat bbox ("minlon,minlat,maxlon,maxlat", a GeoJSON file, 4 numbers).
        year: Calendar year of the monthly composites.
        model: Registry name (``sits``, ``clip_rgb``) or checkpoint path.
        source: Where the Sentinel scenes come from (STAC or a local stack).
        out: Cube path (``.zarr``).
        resolution: Input pixel size in metres.
        encoder_args: Factory arguments of a registry name (e.g. ``presto_weights``, ``clip_pretrained``),
            or argument overrides of a checkpoint.
        seed: Seed of whatever the encoder's weights leave random (the same weights in every process).
        random_weights: Accept an encoder without trained weights (else refused, see
            :mod:`landprompt.embedder.recipe`).
        crs: Grid CRS (default: the UTM zone of the AOI centre).
        chunk: Cube chunk size in output pixels.
        dtype: Cube storage, ``fp16`` or ``int8``.
        batch_size: Pixels (or patches) per forward pass.
        device: Torch device (default: CUDA when available).
        scheduler: None to run here, ``"local"`` or a Dask scheduler address to run chunks as tasks.
        force: Allow an AOI beyond the sane size.
        progress: Show a progress bar with pixels/s.
        basis: ``"auto"`` (see :func:`resolve_basis`): ``"head"`` for an encoder with a linear head,
            ``"pca"`` for any other encoder wider than ``rank``, else ``"none"``; a run already begun at
            ``out`` keeps its layout. ``"none"``: format version 1, d values a pixel; ``"head"``: format
            version 4 in the basis of a linear head (exact: the head's input values a pixel, see
            :meth:`~landprompt.embedder.models.sits.SitsEncoder.head_basis`); ``"pca"``: the run is
            embedded into a version-1 staging cube next to ``out``, then rewritten in a PCA basis of
            ``rank`` fitted on a reproducible sample of its own embeddings
            (:func:`~landprompt.embedder.convert.convert_cube`) and the staging cube removed; both steps
            resume, and re-running a finished run returns its cube.
        rank: Requested rank of a PCA basis.
        zarr_format: Zarr layout of the cube: 3, or 2 for the GDAL in rasterio's wheels and QGIS
            (see :class:`~landprompt.embedder.cube.CubeWriter`).

    Returns:
        The finished cube's path.
    """
    if basis not in BASES:
        raise BadInputError(f"basis must be one of {', '.join(BASES)}, got {basis!r}")
    checks.count("batch_size", batch_size)
    checks.count("chunk", chunk)
    checks.count("rank", rank)
    require_writable(out, folder=True)
    if not 2015 <= year <= 2100:
        raise BadInputError(f"year {year} is outside the Sentinel era (2015 onwards)")
    grid = plan_grid(aoi, resolution, crs, force)
    recipe = EncoderRecipe.of(str(model), encoder_args, seed, random_weights)
    encoder, digest = _encoder(recipe, device)
    basis = resolve_basis(basis, encoder, out, rank)
    if basis == "pca":
        from landprompt.embedder.convert import convert_cube

        out = Path(out)
        if _finished(out, run_attrs(encoder, source, year, recipe, digest), encoder.output_grid(grid), dtype):
            shutil.rmtree(_staging(out), ignore_errors=True)  # a kill while it was being removed
            return out
        embed_run(
            aoi, year, model, source, _staging(out), resolution=resolution, encoder_args=encoder_args,
            seed=seed, random_weights=random_weights, crs=crs, chunk=chunk, dtype=dtype,
            batch_size=batch_size, device=device, scheduler=scheduler, force=force, progress=progress,
            basis="none",
        )  # fmt: skip
        convert_cube(_staging(out), out, rank, dtype, progress=progress, zarr_format=zarr_format)
        shutil.rmtree(_staging(out), ignore_errors=True)
        return out
    head = head_basis(encoder, basis)
    source.check_coverage(grid, year)
    task = EmbedTask(recipe, source, grid, year, batch_size, device, digest, features=head is not None)
    attrs = run_attrs(encoder, source, year, recipe, digest)
    check_same_encoder(out, attrs)
    created = not Path(out).exists()
    out_grid = encoder.output_grid(grid)
    writer = CubeWriter(
        out, out_grid, encoder.spec.embed_dim, dtype, chunk, attrs, basis=head, zarr_format=zarr_format
    )
    pending = writer.pending()
    stride = encoder.spec.output_stride
    try:
        bar = progress_bar("embedding chunks", len(writer.windows()), progress, done=writer.n_done)
        # closed on any error: Dask tasks still running are cancelled and awaited before the clean-up
        chunks = closing(run_each(_embed_and_write, pending, scheduler, threads=1, writer=writer, task=task))
        with bar as advance, chunks as written:
            pixels, start = 0, time.perf_counter()
            for window in written:
                pixels += window.shape[0] * window.shape[1] * stride**2
                advance(note=f"{pixels / max(time.perf_counter() - start, 1e-9):,.0f} px/s")
    except BaseException:
        if created and writer.n_done == 0:  # failed before its first chunk: leave nothing behind
            shutil.rmtree(out, ignore_errors=True)
        raise
    return writer.finalize()


def resolve_basis(basis: str, encoder: Encoder, out: str | Path, rank: int = 64) -> str:
    """The layout a run writes: ``basis``, or for ``"auto"`` the one that suits the encoder.

    ``"auto"`` keeps the layout of a run already begun at ``out`` (so a resume never changes it), else
    means ``"head"`` for an encoder with a linear head (exact, no second pass), ``"pca"`` for any other
    encoder whose embeddings are wider than ``rank``, and ``"none"`` for the rest (nothing to gain).
    """
    if basis != "auto":
        return basis
    begun = _begun_layout(Path(out))
    if begun is not None:
        return begun
    if _with_linear_head(encoder) is not None:
        return "head"
    return "pca" if encoder.spec.embed_dim > rank else "none"


def head_basis(encoder: Encoder, basis: str) -> Basis | None:
    """The basis a run writes its cube in directly: a linear head's for ``"head"``, else None.

    Raises:
        BadInputError: if ``basis`` is ``"head"`` and the encoder has no linear head.
    """
    if basis != "head":
        return None
    found = _with_linear_head(encoder)
    if found is None:
        raise BadInputError("basis='head' needs an encoder with a linear head (sits with head: linear)")
    return found.head_basis()


def _with_linear_head(encoder: Encoder) -> SitsEncoder | None:
    """The encoder if it has a linear head with an exact basis (checked without building it), else None."""
    from landprompt.embedder.models.sits import SitsEncoder

    return encoder if isinstance(encoder, SitsEncoder) and encoder.has_linear_head else None


def _staging(out: Path) -> Path:
    """The version-1 cube a ``pca`` run embeds into before its rewrite at ``out``."""
    return out.with_name(f".{out.name}.v1-staging")


def _begun_layout(out: Path) -> str | None:
    """The basis choice of a run already begun at ``out`` (``"none"``, ``"head"``, ``"pca"``), or None."""
    if _staging(out).exists():
        return "pca"
    stored = _stored_attrs(out)
    if stored is None or "format_version" not in stored:
        return None
    kind = (stored.get("basis") or {}).get("kind")
    return "none" if kind is None else "head" if kind == "linear_head" else "pca"


def _finished(out: Path, attrs: dict[str, Any], grid: Grid, dtype: str) -> bool:
    """Whether ``out`` is a finished cube of this run (a ``pca`` run re-run: nothing left to do).

    Raises:
        BadInputError: if ``out`` is a finished cube of another run.
    """
    stored = _stored_attrs(out)
    if stored is None or stored.get("complete") is not True:
        return False
    check_same_encoder(out, attrs)
    theirs = {k: v for k, v in user_attrs(stored).items() if k != "converted_from"}
    differ = [
        name
        for name, same in (
            ("attrs", theirs == json.loads(json.dumps(attrs))),
            ("grid", "grid" in stored and Grid.from_dict(stored["grid"]) == grid),
            ("dtype", stored.get("dtype") == dtype),
            ("layout", _begun_layout(out) == "pca"),  # a finished v1 or head cube is not this run's
        )
        if not same
    ]
    if differ:
        raise BadInputError(
            f"{out} holds another run (different {', '.join(differ)}): use a new output path or delete it"
        )
    return True


def embed_window(task: EmbedTask, window: ChunkWindow) -> tuple[np.ndarray, np.ndarray]:
    """Embed one cube chunk: read its input window with a halo, embed, crop the halo away.

    Returns:
        Embeddings [h, w, d] (or the head's features [h, w, r] when ``task.features``) and the valid
        mask [h, w] of the chunk.
    """
    encoder, digest = _encoder(task.recipe, task.device)
    if task.weights_sha256 and digest != task.weights_sha256:
        raise RuntimeError(
            f"this process built {task.recipe.model!r} with weights {digest[:12]}..., not the run's "
            f"{task.weights_sha256[:12]}...: the encoder's weights differ between processes"
        )
    stride, halo = encoder.spec.output_stride, _halo(encoder)
    rows = _input_span(window.rows, stride, halo, task.grid.rows)
    cols = _input_span(window.cols, stride, halo, task.grid.cols)
    sub = task.grid.window(slice(*rows[:2]), slice(*cols[:2]))
    composite = task.source.composite(sub, task.year, force=True)
    extra = {"features": True} if task.features else {}
    embedding, valid = encoder.embed_dense(composite, pixel_latlon(sub), batch_size=task.batch_size, **extra)
    top, left = rows[2] // stride, cols[2] // stride
    crop = (slice(top, top + window.shape[0]), slice(left, left + window.shape[1]))
    return embedding[crop], valid[crop]


def _embed_and_write(window: ChunkWindow, writer: CubeWriter, task: EmbedTask) -> ChunkWindow:
    """One task: embed one chunk and write it (chunks never share a Zarr chunk)."""
    writer.write_chunk(window, *embed_window(task, window), features=task.features)
    return window


#: Cube attrs that say which encoder embedded a cube; a resume must match them.
ENCODER_ATTRS = ("model", "arguments", "encoder_seed", "random_weights", "weights_sha256")


def check_same_encoder(out: str | Path, attrs: dict[str, Any]) -> None:
    """Refuse to resume the cube at ``out`` with another encoder than the one that started it.

    Raises:
        BadInputError: Naming what differs (seed, arguments, weights), if ``out`` is a cube begun with
            other encoder attrs.
    """
    stored = _stored_attrs(Path(out))
    if stored is None:
        return
    wanted = json.loads(json.dumps(attrs))
    differ = [key for key in ENCODER_ATTRS if key in stored and stored[key] != wanted.get(key)]
    if differ:
        shown = "; ".join(f"{key} {stored[key]!r} there, {wanted.get(key)!r} now" for key in differ)
        raise BadInputError(
            f"{out} was begun with another encoder ({shown}): resume with the same model, encoder "
            "arguments, random_weights and seed, or write to a new output path"
        )


def _stored_attrs(path: Path) -> dict[str, Any] | None:
    """The attrs of an existing Zarr group at ``path``, or None."""
    if not path.exists():
        return None
    import zarr

    try:
        return dict(zarr.open_group(str(path), mode="r").attrs)
    except Exception:  # not a Zarr group: the cube writer says so
        return None


@lru_cache(maxsize=4)
def _encoder(recipe: EncoderRecipe, device: str | None) -> tuple[Encoder, str]:
    """The encoder of a run and its weights' sha256, built once per process."""
    encoder = recipe.build(device)
    return encoder, weights_sha256(encoder)


def _halo(encoder: Encoder) -> int:
    """Input pixels around a chunk that its pooled border pixels see."""
    return encoder.spec.window // 2 if encoder.spec.output_stride == 1 else 0


def _input_span(out: slice, stride: int, halo: int, size: int) -> tuple[int, int, int]:
    """Input start, stop and the offset of the chunk's first input pixel within them."""
    start, stop = out.start * stride, min(out.stop * stride, size)
    lo, hi = max(0, start - halo), min(size, stop + halo)
    return lo, hi, start - lo
