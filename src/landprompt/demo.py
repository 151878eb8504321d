"""Offline demo: a synthetic region with planted embeddings -> embedding cube -> probability map.

The region's pixel embeddings are synthetic: each pixel is planted from the CLIP text embedding of its
land cover (a lake, a forest, crop fields, a village, grassland) plus noise. The demo writes them as an
embedding cube, asks for one concept and writes the probability map as a COG and a PNG. It exercises
the real code path of every stage it touches; only the satellite encoder is replaced by the planting.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from affine import Affine
from pyproj import CRS

from landprompt.embedder.clip import TINY_MODEL, ClipModel, load_clip
from landprompt.embedder.cube import open_cube, write_cube
from landprompt.errors import BadInputError
from landprompt.files import require_writable
from landprompt.geo import Grid
from landprompt.query.maps import write_cog, write_png
from landprompt.query.probability import probability_map

#: Planted land covers, in label order (label 0 is the background).
LAND_COVERS = ("grassland", "a lake", "a forest", "crop fields", "a village")

#: CLIP's logit scale after training (open_clip clamps it there); used in place of a random model's.
TRAINED_LOGIT_SCALE = 100.0

#: The synthetic region: 256 x 256 pixels of 10 m in UTM zone 32N (southern Tuscany).
DEMO_GRID = Grid(CRS.from_epsg(32632), Affine(10.0, 0, 680_000.0, 0, -10.0, 4_800_000.0), (256, 256))


@dataclass
class DemoResult:
    """What the demo made and how well the map recovers the planted concept."""

    cube: Path
    cog: Path
    png: Path
    concept: str
    clip: str
    planted_pixels: int
    mapped_pixels: int
    mean_inside: float
    mean_outside: float
    agreement: float
    notes: list[str] = field(default_factory=list)


def planted_land_cover(rows: int, cols: int) -> np.ndarray:
    """Label raster (rows, cols) of :data:`LAND_COVERS`: a lake, a forest, fields with hedges, a village."""
    r, c = np.mgrid[0:rows, 0:cols] / np.array([rows, cols]).reshape(2, 1, 1)
    labels = np.zeros((rows, cols), dtype=np.uint8)
    lake = ((r - 0.28) / 0.16) ** 2 + ((c - 0.28) / 0.2) ** 2 <= 1
    forest = np.zeros_like(lake)
    for cr, cc, radius in ((0.22, 0.72, 0.15), (0.32, 0.82, 0.12), (0.12, 0.86, 0.1)):
        forest |= (r - cr) ** 2 + (c - cc) ** 2 <= radius**2
    in_fields = (r >= 0.58) & (r < 0.94) & (c >= 0.06) & (c < 0.56)
    hedges = (np.abs(((r - 0.58) * 4 / 0.36) % 1) < 0.06) | (np.abs(((c - 0.06) * 5 / 0.5) % 1) < 0.05)
    village = (r >= 0.64) & (r < 0.86) & (c >= 0.68) & (c < 0.9)
    labels[lake], labels[forest], labels[in_fields & ~hedges], labels[village] = 1, 2, 3, 4
    return labels


def planted_embeddings(
    class_vectors: np.ndarray, labels: np.ndarray, noise: float = 0.3, seed: int = 0
) -> np.ndarray:
    """Unit pixel embeddings (rows, cols, d) planted from class text vectors plus Gaussian noise.

    Each land cover is planted along its vector of the dual basis of the class vectors (the direction
    that matches its own text embedding and is orthogonal to the others'), as image embeddings share
    little of the common component of text embeddings (CLIP's modality gap); ``noise`` is the noise norm
    relative to the unit signal.
    """
    dual = np.linalg.solve(class_vectors @ class_vectors.T, class_vectors)
    dual /= np.linalg.norm(dual, axis=1, keepdims=True)
    rng = np.random.default_rng(seed)
    dim = class_vectors.shape[1]
    pixels = dual[labels] + rng.normal(0, noise / np.sqrt(dim), (*labels.shape, dim))
    return (pixels / np.linalg.norm(pixels, axis=-1, keepdims=True)).astype(np.float32)


def run_demo(
    out: str | Path = "demo-output",
    concept: str = "a lake",
    clip: ClipModel | None = None,
    seed: int = 0,
    overwrite: bool = False,
) -> DemoResult:
    """Build the synthetic region, write its cube, map ``concept`` and compare with what was planted.

    ``clip`` is the text tower the pixels are planted from and the concept is scored with; None: the
    tiny model (:data:`~landprompt.embedder.clip.TINY_MODEL`) with random weights, enough as planting
    and scoring share it. An earlier demo's cube in ``out`` is replaced; any other ``out/cube.zarr``
    only with ``overwrite``.
    """
    if concept not in LAND_COVERS:
        raise BadInputError(f"the demo plants {', '.join(LAND_COVERS)}; pick one of them as the concept")
    out = Path(out)
    require_writable(out, folder=True)
    if not overwrite and not _replaceable(out / "cube.zarr"):
        raise BadInputError(
            f"{out / 'cube.zarr'} exists and is not a demo cube: choose another --out or add --overwrite"
        )
    clip = clip or load_clip(TINY_MODEL)
    labels = planted_land_cover(*DEMO_GRID.shape)
    embeddings = planted_embeddings(clip.encode_prompts(list(LAND_COVERS), _templates()), labels, seed=seed)
    valid = _swath_valid(*DEMO_GRID.shape)
    attrs = {"model": "synthetic-planted", "clip_model": clip.name, "clip_pretrained": clip.pretrained or ""}
    cube_path = write_cube(out / "cube.zarr", embeddings, DEMO_GRID, valid=valid, attrs=attrs, overwrite=True)

    versus = [name for name in LAND_COVERS if name != concept]
    # Random weights carry no learnt temperature: use the value trained CLIP models reach.
    logit_scale = TRAINED_LOGIT_SCALE if clip.is_random else None
    prob = probability_map(open_cube(cube_path), concept, versus=versus, clip=clip, logit_scale=logit_scale)
    stem = re.sub(r"[^a-z0-9]+", "_", concept.lower()).strip("_")
    cog = write_cog(prob, out / f"{stem}_probability.tif")
    png = write_png(prob, out / f"{stem}_probability.png", title=f"P({concept}) - synthetic demo region")

    planted = (labels == LAND_COVERS.index(concept)) & valid
    mapped = (prob.values > 0.5) & valid
    return DemoResult(
        cube=cube_path,
        cog=cog,
        png=png,
        concept=concept,
        clip=f"{clip.id} ({clip.weights})",
        planted_pixels=int(planted.sum()),
        mapped_pixels=int(mapped.sum()),
        mean_inside=float(np.nanmean(prob.values[planted])),
        mean_outside=float(np.nanmean(prob.values[~planted & valid])),
        agreement=float((planted == mapped)[valid].mean()),
        notes=[_picture_note(concept), "the grey corner at the bottom left is no data (outside the swath)"],
    )


def _templates() -> list[str]:
    from landprompt.embedder.prompts import get_templates
    from landprompt.query.classes import DEFAULT_STYLE

    return get_templates(DEFAULT_STYLE)


def _swath_valid(rows: int, cols: int) -> np.ndarray:
    """Valid-data mask with a no-data triangle in the bottom-left corner, like a swath edge."""
    r, c = np.mgrid[0:rows, 0:cols]
    return ~((rows - r) + c < min(rows, cols) // 6)


def _picture_note(concept: str) -> str:
    where = {
        "a lake": "a bright ellipse in the upper left",
        "a forest": "a bright cluster of three overlapping discs in the upper right",
        "crop fields": "a bright block of 4 x 5 parcels in the lower left, split by dark hedge lines",
        "a village": "a bright square in the lower right",
        "grassland": "bright everywhere but the lake, forest, parcels and village (hedge lines bright too)",
    }[concept]
    return f"the PNG should show {where}, the rest dark"


def _replaceable(cube: Path) -> bool:
    """Whether the demo may write ``cube``: nothing is there, or an earlier demo's cube."""
    if not (cube.exists() or cube.is_symlink()):
        return True
    try:
        return bool(open_cube(cube).attrs.get("model") == "synthetic-planted")
    except BadInputError:
        return False
