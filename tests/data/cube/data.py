"""Planted embedding cubes for the tests (fixed seeds): concepts planted along their dual-basis vectors.

A pixel planted along the dual-basis vector of one of N prompt embeddings has a positive cosine with that
prompt only and zero with the others, so it is won by exactly that concept in a probability map. The
helpers build such embeddings (``dual_basis``, ``concept_duals``, ``halves``, ``plant``); ``analytics_cubes``
and ``served_cube`` write the shared fixtures of the concept analytics and the tile server,
``lucas_concept_cube`` the cube and LUCAS table of the concept benchmark. Other kinds of planted
embeddings: ``linear_head_embeddings`` (a linear head's output), ``planted_places`` (places close to a
query vector, for top-k), ``clip_like`` and ``legacy_cube`` (older cube format versions).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
from affine import Affine

#: The concept and the background prompts planted in the shared cubes.
CONCEPT = "olive groves"
VERSUS = ("sea", "a forest")
#: 10 m pixels in UTM 32N near 43.3 N 11.2 E (Tuscany).
TRANSFORM = Affine(10.0, 0, 680_000.0, 0, -10.0, 4_800_000.0)


def unit(x: np.ndarray) -> np.ndarray:
    """``x`` scaled to unit length along the last axis, as float32."""
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def dual_basis(vectors: np.ndarray) -> np.ndarray:
    """Unit rows ``d_i`` with ``d_i . v_j = 0`` for ``i != j`` and ``> 0`` for ``i == j`` (float64)."""
    dual = np.linalg.solve(vectors @ vectors.T, vectors)
    return dual / np.linalg.norm(dual, axis=1, keepdims=True)


def concept_duals(clip: Any, names: tuple[str, ...] | list[str]) -> np.ndarray:
    """The dual basis of the concepts' prompt-ensemble embeddings (``concept_embedding``), one row each."""
    from landprompt.query.classes import concept_embedding

    return dual_basis(np.stack([concept_embedding(clip, name) for name in names]))


def halves(shape: tuple[int, int], split: int, left: int = 1, right: int = 2) -> np.ndarray:
    """Integer labels [h, w]: ``left`` in the columns before ``split``, ``right`` from it on."""
    return np.where(np.arange(shape[1])[None, :] < split, left, right) * np.ones((shape[0], 1), int)


def plant(dual: np.ndarray, labels: np.ndarray, rng: np.random.Generator, noise: float = 0.02) -> np.ndarray:
    """Unit float32 embeddings [h, w, d]: each pixel's dual vector plus Gaussian noise of sd ``noise``."""
    return unit(dual[labels] + rng.normal(0, noise, (*labels.shape, dual.shape[1])))


def clip_attrs(clip: Any) -> dict[str, str]:
    """The cube attributes naming the CLIP model the embeddings are aligned with."""
    return {"clip_model": clip.name, "clip_pretrained": ""}


def analytics_cubes(folder: Path, clip: Any) -> SimpleNamespace:
    """Planted cubes for the concept analytics (tests/test_analytics*.py).

    48 x 48 pixels of 10 m (UTM 32N), chunks of 16. "olive groves" competes with "sea" (left half) and
    "a forest" (right half), each planted along its dual-basis vector: ``year1`` has olive groves in
    ``loss_block``, ``year2`` in ``gain_block`` instead; ``mixture`` mixes olive groves and sea with a
    random weight per pixel, so its probabilities spread over (0, 1). Row 0 of year1 and mixture and
    column 47 of year2 are no-data. Returns a ``SimpleNamespace`` of the paths, grid, blocks and masks.
    """
    from landprompt.embedder.cube import write_cube
    from landprompt.geo import Grid

    grid = Grid("EPSG:32632", TRANSFORM, (48, 48))
    dual = concept_duals(clip, (CONCEPT, *VERSUS))
    rng = np.random.default_rng(11)
    gain_block, loss_block = (slice(8, 16), slice(4, 20)), (slice(30, 36), slice(30, 40))

    def planted(olive: tuple[slice, slice]) -> np.ndarray:
        labels = halves(grid.shape, 24)
        labels[olive] = 0
        return plant(dual, labels, rng)

    weight = rng.uniform(0, 1, (48, 48, 1))  # drawn first: the seeded stream fixes every test's numbers
    year1, year2 = planted(loss_block), planted(gain_block)
    mixture = unit(weight * dual[0] + (1 - weight) * dual[1])
    valid_a, valid_b = np.ones((48, 48), bool), np.ones((48, 48), bool)
    valid_a[0], valid_b[:, 47] = False, False
    attrs = clip_attrs(clip)
    layers = (("year1", year1, valid_a), ("year2", year2, valid_b), ("mixture", mixture, valid_a))
    cubes = {
        name: write_cube(folder / f"{name}.zarr", emb, grid, valid=valid, chunk=16, attrs=attrs)
        for name, emb, valid in layers
    }
    return SimpleNamespace(
        **cubes,
        grid=grid,
        concept=CONCEPT,
        versus=list(VERSUS),
        gain_block=gain_block,
        loss_block=loss_block,
        valid_a=valid_a,
        valid_b=valid_b,
        root=folder,
    )


#: The served cube: 256 x 256 pixels, chunks of 64, "olive groves" planted in ``BLOCK``.
SERVED_SHAPE = (256, 256)
SERVED_CHUNK = 64
BLOCK = (slice(64, 128), slice(128, 192))


@dataclass(frozen=True)
class ServedCubeFixture:
    path: Path
    grid: object
    planted: np.ndarray  # bool [256, 256]
    valid: np.ndarray


def served_cube(folder: Path, clip: Any, seed: int = 0) -> ServedCubeFixture:
    """A planted version-2 cube for the tile server tests, with its overviews.

    256 x 256 pixels of 10 m (UTM 32N), chunks of 64: "olive groves" planted in ``BLOCK`` (rows 64:128,
    cols 128:192), "sea" on the left half and "a forest" on the right elsewhere; row 0 is no-data.
    Stored in a PCA basis (format version 2, int8 codes) with the overview pyramid written.
    """
    from landprompt.embedder.basis import fit_pca
    from landprompt.embedder.cube import write_cube
    from landprompt.embedder.overviews import build_overviews
    from landprompt.geo import Grid

    grid = Grid("EPSG:32632", TRANSFORM, SERVED_SHAPE)
    dual = concept_duals(clip, (CONCEPT, *VERSUS))
    labels = halves(SERVED_SHAPE, SERVED_SHAPE[1] // 2)
    labels[BLOCK] = 0
    emb = plant(dual, labels, np.random.default_rng(seed))
    valid = np.ones(SERVED_SHAPE, bool)
    valid[0] = False
    sample = emb[::4, ::4].reshape(-1, emb.shape[-1])
    basis = fit_pca(sample, rank=8, min_variance=None, seed=seed)
    path = write_cube(
        folder / "planted.zarr",
        emb,
        grid,
        valid=valid,
        chunk=SERVED_CHUNK,
        dtype="int8",
        attrs=clip_attrs(clip),
        basis=basis,
    )
    build_overviews(path)
    return ServedCubeFixture(path, grid, labels == 0, valid)


def linear_head_embeddings(
    shape: tuple[int, int], dim: int, rank: int, seed: int = 0, bias: float | None = 1.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray]:
    """A linear head's features and output: embeddings in a rank-``rank`` affine subspace, then unit.

    Args:
        shape: Grid shape (h, w).
        dim: Embedding dimension.
        rank: Width of the head's input features.
        seed: Seed of the features, weight and bias (drawn in that order).
        bias: Scale of the Gaussian bias; None for a head without one.

    Returns:
        ``(z, weight, bias, embeddings)``: features [h, w, rank], weight [dim, rank], bias [dim] or None
        (all float32), and the unit float32 embeddings ``unit(z @ weight.T + bias)`` [h, w, dim].
    """
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(*shape, rank)).astype(np.float32)
    weight = rng.normal(size=(dim, rank)).astype(np.float32)
    b = None if bias is None else (bias * rng.normal(size=dim)).astype(np.float32)
    return z, weight, b, unit(z @ weight.T + (0 if b is None else b))


def planted_places(
    query: np.ndarray, shape: tuple[int, int], places: list[tuple[int, int]], seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Embeddings [h, w, d] orthogonal to ``query`` except 3 x 3 pixel places close to it, and valid [h, w].

    Place ``i`` (top-left corner ``places[i]``) lies at ``0.95 - 0.05 i`` along the query plus noise, its
    centre pixel nearest the query of all its pixels, so the places rank in the given order. The first 5
    rows are no-data.
    """
    rng = np.random.default_rng(seed)
    dim = query.shape[-1]
    emb = rng.normal(size=(*shape, dim)).astype(np.float32)
    emb -= (emb @ query)[..., None] * query  # background: orthogonal to the query
    emb = unit(emb)
    for rank, (r, c) in enumerate(places):
        strength = 0.95 - 0.05 * rank
        noise = unit(rng.normal(size=(3, 3, dim)))
        emb[r : r + 3, c : c + 3] = unit(strength * query + 0.1 * noise)
        emb[r + 1, c + 1] = unit(query + 0.01 * noise[1, 1])  # each place's centre is its best pixel
    valid = np.ones(shape, bool)
    valid[:5, :] = False  # a no-data strip
    return emb, valid


def lucas_concept_cube(
    folder: Path, vectors: np.ndarray, attrs: dict[str, str], seed: int = 3
) -> SimpleNamespace:
    """A 30 x 30 cube of 100 m pixels (EPSG:3035) with one LUCAS 2018 point per pixel, and its table.

    ``vectors`` are the embeddings of two concepts and two background prompts; each pixel is planted along
    the dual-basis vector of one of them (shares 0.2, 0.2, 0.3, 0.3), and its point has the land cover of
    that kind (lc1 B81 olive groves, B82 vineyards, E20, C10); grazing is drawn independently, half and
    half. Writes ``cube.zarr`` and ``lucas.csv`` in ``folder``; returns a ``SimpleNamespace`` of the cube,
    the table, the points' ``lat``/``lon``, ``root``, ``grid`` and the embeddings ``emb`` [30, 30, d].
    """
    import pandas as pd

    from landprompt.embedder.cube import write_cube
    from landprompt.geo import EUROPE_CRS, WGS84, Grid, transform_points

    dual = dual_basis(vectors)
    rng = np.random.default_rng(seed)
    kind = rng.choice(4, size=(30, 30), p=[0.2, 0.2, 0.3, 0.3])
    grid = Grid(EUROPE_CRS, Affine(100.0, 0, 4_000_000.0, 0, -100.0, 3_000_000.0), (30, 30))
    cube = write_cube(folder / "cube.zarr", dual[kind].astype(np.float32), grid, chunk=16, attrs=attrs)
    rows, cols = np.divmod(np.arange(900), 30)
    x, y = grid.transform * (cols + 0.5, rows + 0.5)
    lon, lat = transform_points(np.asarray(x), np.asarray(y), EUROPE_CRS, WGS84)
    codes = np.array(["B81", "B82", "E20", "C10"])[kind[rows, cols]]
    grazing = np.where(rng.random(900) < 0.5, "Signs of grazing", "No signs of grazing")
    table = pd.DataFrame(
        {
            "point_id": np.arange(900) + 40_000_000,
            "year": 2018,
            "th_lat": lat,
            "th_long": lon,
            "lc1": codes,
            "lu1": "U110",
            "grazing": grazing,
        }
    )
    table.to_csv(folder / "lucas.csv", index=False)
    return SimpleNamespace(
        cube=cube, lucas=folder / "lucas.csv", lat=lat, lon=lon, root=folder, grid=grid, emb=dual[kind]
    )


def clip_like(shape: tuple[int, int], dim: int, rank: int, seed: int = 0) -> np.ndarray:
    """Unit embeddings (*shape, dim) as CLIP's: a large shared mean plus small rank-``rank`` variations."""
    rng = np.random.default_rng(seed)
    mean = unit(rng.normal(size=dim))
    axes = np.linalg.qr(rng.normal(size=(dim, rank)))[0]
    z = rng.normal(size=(*shape, rank)) * np.linspace(0.3, 0.05, rank)
    return unit(mean + z @ axes.T)


def legacy_cube(
    path: Path, embeddings: np.ndarray, grid: Any, version: int, rank: int, chunk: int = 16
) -> Path:
    """An int8 cube of format version 2 or 3 (PCA codes ``[u, a t]`` with a per-pixel scale), written as
    those versions wrote it, so that tests can check this landprompt still reads them.

    landprompt writes version 4 only: the cube writer runs here with the encoder and layout of those
    versions put in (a per-pixel ``scale``, float32 in version 2, float16 in version 3; the basis kept
    as fitted, not in its diagonal form).
    """
    from unittest import mock

    import dask.array as da
    import zarr

    from landprompt.embedder import cube as cube_module
    from landprompt.embedder import integrity
    from landprompt.embedder.basis import Basis

    sample = embeddings.reshape(-1, embeddings.shape[-1]).astype(np.float64)
    mean = sample.mean(axis=0)
    axes = np.linalg.svd(sample - mean, full_matrices=False)[2][:rank].T
    norm_scale = float(np.median(np.abs((sample - mean) @ axes).max(axis=1))) if version == 3 else 1.0
    basis = Basis(axes, mean, "pca", {"requested_rank": rank}, norm_scale=norm_scale)
    scale_dtype = np.dtype(np.float16 if version == 3 else np.float32)
    layout = cube_module._template

    def template(*args: Any, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        ds, encoding = layout(*args, **kwargs)
        ds["scale"] = (("y", "x"), da.zeros(grid.shape, dtype=scale_dtype, chunks=(chunk, chunk)))
        ds["scale"].attrs["coordinates"] = "spatial_ref"
        compressors = cube_module._compressors("scale", scale_dtype)
        encoding["scale"] = {
            "chunks": (chunk, chunk),
            "fill_value": 0,
            "_FillValue": None,
            "compressors": compressors,
        }
        ds.attrs[integrity.INTEGRITY_ATTR] = integrity.integrity_attr(["code", "valid", "scale"])
        return ds, encoding

    def encode(values: np.ndarray, valid: Any, shape: Any, basis: Basis, dtype: str, features: bool) -> Any:
        arr, ok = cube_module._checked_window(values, valid, (*shape, basis.dim), "embedding")
        codes = basis.codes_from_embeddings(arr)
        codes[~ok] = 0
        ok &= np.any(codes != 0, axis=-1)
        scale = (np.abs(codes).max(axis=-1) / np.float32(127)).astype(scale_dtype).astype(np.float32)
        q = np.rint(codes / np.where(scale > 0, scale, np.float32(1))[..., None])
        return {
            "code": np.clip(q, -127, 127).astype(np.int8),
            "scale": scale.astype(scale_dtype),
            "valid": ok,
        }

    with (
        mock.patch.object(cube_module, "BASIS_FORMAT_VERSION", version),
        mock.patch.object(Basis, "diagonal", lambda self: self),  # versions 2, 3 kept the fitted basis
        mock.patch.object(cube_module, "_template", template),
        mock.patch.object(cube_module, "_encode_codes", encode),
    ):
        cube_module.write_cube(path, embeddings, grid, dtype="int8", chunk=chunk, basis=basis)
    if version == 2:  # version 2 had no norm_scale attr
        group = zarr.open_group(str(path), mode="r+")
        attrs = dict(group.attrs["basis"])
        del attrs["norm_scale"]
        group.attrs["basis"] = attrs
    return path


def side_by_side_shards(folder: Path, clip: Any, split: int = 20, seed: int = 5) -> SimpleNamespace:
    """One planted cube and the same pixels as two shards side by side (tests/test_session_shards.py).

    48 x 48 pixels of 10 m (UTM 32N), chunks of 16: "olive groves" mixed with "sea" (left half) or
    "a forest" (right half) with a random weight per pixel (drawn with ``seed``); row 0 is no-data.
    ``whole.zarr`` holds them all; ``shards/west.zarr`` the columns before ``split`` and
    ``shards/east.zarr`` the rest, each on its window of the same grid. Returns a ``SimpleNamespace`` of
    the paths, grid and embeddings.
    """
    from landprompt.embedder.cube import write_cube
    from landprompt.geo import Grid

    grid = Grid("EPSG:32632", TRANSFORM, (48, 48))
    dual = concept_duals(clip, (CONCEPT, *VERSUS))
    weight = np.random.default_rng(seed).uniform(0, 1, (48, 48, 1))
    emb = unit(weight * dual[0] + (1 - weight) * dual[halves(grid.shape, 24)])
    valid = np.ones(grid.shape, bool)
    valid[0] = False
    attrs = clip_attrs(clip)
    whole = write_cube(folder / "whole.zarr", emb, grid, valid=valid, chunk=16, attrs=attrs)
    parts = {"west": slice(0, split), "east": slice(split, 48)}
    shards = {
        name: write_cube(
            folder / "shards" / f"{name}.zarr",
            emb[:, cols],
            grid.window(slice(0, 48), cols),
            valid=valid[:, cols],
            chunk=16,
            attrs=attrs,
        )
        for name, cols in parts.items()
    }
    return SimpleNamespace(
        whole=whole, folder=folder / "shards", **shards, grid=grid, emb=emb, valid=valid, split=split
    )
