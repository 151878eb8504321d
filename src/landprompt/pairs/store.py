"""The sample store: each place's monthly Sentinel-1/2 chip time series, one row per catalog sample.

A Zarr v3 group (format ``sample-store``, version 1); row ``i`` is the catalog sample with
``store_row = i`` (:mod:`landprompt.pairs.catalog`):

==========  ====================  =========  =======================================================
array       shape                 dtype      values
==========  ====================  =========  =======================================================
``s2``      [N, T, 10, P, P]      uint16     B2, B3, B4, B5, B6, B7, B8, B8A, B11, B12 reflectance
                                             x 1e4 (monthly median), 0 = no data
``s1``      [N, T, 2, P, P]       float16    VV, VH backscatter in dB (monthly median), NaN = no data
``valid``   [N, T, 2]             bool       S2, S1 observed that month (any pixel of the chip)
``months``  [N, T]                int8       month of each step, 0 = January (-1: row not planned)
``latlon``  [N, 2]                float64    the place's latitude, longitude (NaN: row not planned)
``year``    [N]                   int16      the calendar year of the series (0: row not planned)
==========  ====================  =========  =======================================================

T = 12 (January to December of ``year``), P = the chip size (default 5 pixels of 10 m, centred on the
place in its UTM zone, :mod:`landprompt.eo.chips`). Arrays are chunked ``chunk_rows`` rows at a time
(whole rows), Blosc-zstd compressed with byte shuffle. Group attributes: ``landprompt_format``,
``format_version``, ``chip``, ``resolution_m``, ``months``, ``s2_bands``, ``s1_bands``, ``units``,
``catalog_id`` (the catalog the rows belong to) and ``created_at``.

Rows are planned (``latlon``, ``months``, ``year``) before they are fetched, and written in batches; zarr
writes every chunk atomically (temporary file + rename), so a killed writer never leaves a torn chunk.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.codecs import BloscCodec

from landprompt.eo.bands import S1_BAND_NAMES, S2_BAND_NAMES
from landprompt.errors import BadInputError

FORMAT_NAME = "sample-store"
FORMAT_VERSION = 1
MONTHS = 12
DEFAULT_CHIP = 5
DEFAULT_CHUNK_ROWS = 256
RESOLUTION_M = 10.0
Rows = Sequence[int] | np.ndarray
"""Store row numbers."""


@dataclass(frozen=True)
class ChipArrays:
    """Store-ready chips of ``n`` rows (see the module table for dtypes and no-data values)."""

    s2: np.ndarray
    s1: np.ndarray
    valid: np.ndarray

    def __len__(self) -> int:
        return int(self.s2.shape[0])

    @classmethod
    def from_float(cls, s2: np.ndarray, s1: np.ndarray) -> ChipArrays:
        """Convert float32 composites (NaN = no data) to the store's types.

        Args:
            s2: Reflectance x 1e4 [n, T, 10, P, P]; rounded, clipped to 1..65535 (0 stays no data).
            s1: dB [n, T, 2, P, P].
        """
        finite = np.isfinite(s2)
        values = np.clip(np.rint(np.where(finite, s2, 0)), 1, 65535)
        s2_u16 = np.where(finite, values, 0).astype(np.uint16)
        s2_valid = finite.all(axis=2).any(axis=(-2, -1))
        s1_valid = np.isfinite(s1).all(axis=2).any(axis=(-2, -1))
        return cls(s2_u16, s1.astype(np.float16), np.stack([s2_valid, s1_valid], axis=-1))

    def take(self, index: Any) -> ChipArrays:
        """The rows at ``index``."""
        return ChipArrays(self.s2[index], self.s1[index], self.valid[index])


class SampleStore:
    """A sample store on disk; create with :meth:`create`, open with :meth:`open`.

    Attributes:
        path: The Zarr group.
        group: The open zarr group.
    """

    def __init__(self, path: Path, group: zarr.Group) -> None:
        self.path, self.group = path, group

    @classmethod
    def create(
        cls,
        path: str | Path,
        chip: int = DEFAULT_CHIP,
        catalog_id: str = "",
        chunk_rows: int = DEFAULT_CHUNK_ROWS,
        attrs: dict[str, Any] | None = None,
    ) -> SampleStore:
        """An empty store (0 rows) for chips of ``chip`` x ``chip`` pixels.

        Raises:
            BadInputError: if ``path`` exists, or the chip or chunk size is not positive.
        """
        path = Path(path)
        if path.exists():
            raise BadInputError(f"{path} exists: open it, or choose a new path for a new sample store")
        if chip < 1 or chunk_rows < 1:
            raise BadInputError(f"chip and chunk_rows must be >= 1, got {chip} and {chunk_rows}")
        group = zarr.open_group(str(path), mode="w-", zarr_format=3)
        shuffle = BloscCodec(cname="zstd", clevel=5, shuffle="shuffle")
        bits = BloscCodec(cname="zstd", clevel=5, shuffle="bitshuffle")
        layout: dict[str, tuple[tuple[int, ...], str, Any, tuple[str, ...], BloscCodec]] = {
            "s2": (
                (MONTHS, len(S2_BAND_NAMES), chip, chip),
                "uint16",
                0,
                ("row", "time", "s2_band", "y", "x"),
                shuffle,
            ),
            "s1": (
                (MONTHS, len(S1_BAND_NAMES), chip, chip),
                "float16",
                np.nan,
                ("row", "time", "s1_band", "y", "x"),
                shuffle,
            ),
            "valid": ((MONTHS, 2), "bool", False, ("row", "time", "sensor"), bits),
            "months": ((MONTHS,), "int8", -1, ("row", "time"), shuffle),
            "latlon": ((2,), "float64", np.nan, ("row", "latlon"), shuffle),
            "year": ((), "int16", 0, ("row",), shuffle),
        }
        for name, (tail, dtype, fill, dims, codec) in layout.items():
            group.create_array(
                name,
                shape=(0, *tail),
                chunks=(chunk_rows, *tail),
                dtype=dtype,
                fill_value=fill,
                compressors=[codec],
                dimension_names=dims,
            )
        group.attrs.update(
            {
                "landprompt_format": FORMAT_NAME,
                "format_version": FORMAT_VERSION,
                "chip": chip,
                "resolution_m": RESOLUTION_M,
                "months": MONTHS,
                "s2_bands": list(S2_BAND_NAMES),
                "s1_bands": list(S1_BAND_NAMES),
                "units": {"s2": "reflectance x 1e4, 0 = no data", "s1": "dB, NaN = no data"},
                "catalog_id": catalog_id,
                "created_at": datetime.now(UTC).isoformat(),
                **(attrs or {}),
            }
        )
        return cls(path, group)

    @classmethod
    def open(cls, path: str | Path, mode: str = "r") -> SampleStore:
        """Open a store (``mode`` ``"r"`` or ``"r+"``).

        Raises:
            BadInputError: if ``path`` is not a sample store or has an unknown format version.
        """
        path = Path(path)
        try:
            group = zarr.open_group(str(path), mode=mode)  # type: ignore[arg-type]
        except (FileNotFoundError, ValueError, KeyError, zarr.errors.GroupNotFoundError) as exc:
            raise BadInputError(f"{path} is not a sample store (cannot open it as a Zarr group)") from exc
        attrs = dict(group.attrs)
        if attrs.get("landprompt_format") != FORMAT_NAME:
            raise BadInputError(f"{path} is a Zarr group but not a landprompt sample store")
        if attrs.get("format_version") != FORMAT_VERSION:
            raise BadInputError(
                f"{path} is sample store version {attrs.get('format_version')}; this landprompt reads "
                f"version {FORMAT_VERSION}"
            )
        return cls(path, group)

    @classmethod
    def open_or_create(
        cls, path: str | Path, chip: int, catalog_id: str, chunk_rows: int = DEFAULT_CHUNK_ROWS
    ) -> SampleStore:
        """Open the store of ``catalog_id`` at ``path`` for writing, or create it.

        Raises:
            BadInputError: if the existing store belongs to another catalog or has another chip size.
        """
        if not Path(path).exists():
            return cls.create(path, chip, catalog_id, chunk_rows)
        store = cls.open(path, mode="r+")
        if store.catalog_id != catalog_id:
            raise BadInputError(
                f"{path} belongs to catalog {store.catalog_id}, not {catalog_id}: use the store made "
                "with this catalog, or a new store path"
            )
        if store.chip != chip:
            raise BadInputError(f"{path} holds {store.chip} px chips, not {chip}: keep chip={store.chip}")
        return store

    # --- properties -------------------------------------------------------------------------------
    @property
    def n_rows(self) -> int:
        """Rows in the store (planned or not)."""
        return int(self.array("s2").shape[0])

    @property
    def chip(self) -> int:
        """Chip size in pixels."""
        return int(self.group.attrs["chip"])  # type: ignore[arg-type]

    @property
    def catalog_id(self) -> str:
        """The catalog the rows belong to."""
        return str(self.group.attrs.get("catalog_id", ""))

    def array(self, name: str) -> zarr.Array:
        """One of the store's arrays."""
        node = self.group[name]
        assert isinstance(node, zarr.Array)
        return node

    # --- writing ---------------------------------------------------------------------------------
    def resize(self, n_rows: int) -> None:
        """Grow every array to ``n_rows`` rows (new rows hold the no-data fill values)."""
        if n_rows < self.n_rows:
            raise BadInputError(f"a sample store never shrinks: {n_rows} < {self.n_rows} rows")
        if n_rows == self.n_rows:
            return
        for name in ("s2", "s1", "valid", "months", "latlon", "year"):
            arr = self.array(name)
            arr.resize((n_rows, *arr.shape[1:]))

    def write_places(self, rows: Rows, lat: np.ndarray, lon: np.ndarray, year: np.ndarray) -> None:
        """Record planned rows: ``latlon``, ``year`` and ``months`` (0-11)."""
        where = np.asarray(rows, np.int64)
        months = np.broadcast_to(np.arange(MONTHS, dtype=np.int8), (len(where), MONTHS))
        latlon = np.stack([np.asarray(lat, np.float64), np.asarray(lon, np.float64)], axis=-1)
        for index, run in _runs(where):
            self.array("latlon")[run] = latlon[index]
            self.array("year")[run] = np.asarray(year, np.int16)[index]
            self.array("months")[run] = months[index]

    def write_chips(self, rows: Rows, chips: ChipArrays) -> None:
        """Write fetched chips at their store rows (any order; contiguous runs are written at once)."""
        where = np.asarray(rows, np.int64)
        if len(where) != len(chips):
            raise ValueError(f"{len(where)} rows for {len(chips)} chips")
        if len(where) and where.max() >= self.n_rows:
            raise ValueError(f"row {where.max()} is beyond the store's {self.n_rows} rows")
        for index, run in _runs(where):
            part = chips.take(index)
            self.array("s2")[run] = part.s2
            self.array("s1")[run] = part.s1
            self.array("valid")[run] = part.valid

    # --- reading ---------------------------------------------------------------------------------
    def read(self, rows: slice | Rows) -> dict[str, np.ndarray]:
        """Every array at ``rows`` (a slice, or row numbers in any order)."""
        names = ("s2", "s1", "valid", "months", "latlon", "year")
        if isinstance(rows, slice):
            return {n: np.asarray(self.array(n)[rows]) for n in names}
        where = np.asarray(rows, np.int64)
        out = {n: np.empty((len(where), *self.array(n).shape[1:]), self.array(n).dtype) for n in names}
        for index, run in _runs(where):
            for n in names:
                out[n][index] = self.array(n)[run]
        return out


def _runs(rows: np.ndarray) -> Iterator[tuple[np.ndarray, slice]]:
    """(positions in ``rows``, store slice) for each run of consecutive row numbers (rows are unique)."""
    order = np.argsort(rows, kind="stable")
    ordered = rows[order]
    if len(ordered) > 1 and (np.diff(ordered) == 0).any():
        raise ValueError("store rows must be unique")
    breaks = np.flatnonzero(np.diff(ordered) != 1) + 1
    for chunk in np.split(np.arange(len(ordered)), breaks):
        if len(chunk):
            yield order[chunk], slice(int(ordered[chunk[0]]), int(ordered[chunk[-1]]) + 1)
