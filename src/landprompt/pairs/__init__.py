"""Paired data: geo-located ground photos, their places, and Sentinel-1/2 time series at each place.

The flow (each step resumable, each module small):

- :mod:`~landprompt.pairs.sources` read photo sources (LUCAS survey tables, YFCC100M dumps, the Flickr
  API, any CSV/Parquet table) into batches of canonical photo rows;
- :mod:`~landprompt.pairs.ingest` filters them (coordinates, Europe, licence, duplicates, bursts,
  thinning) into the DuckDB :mod:`~landprompt.pairs.catalog`;
- :mod:`~landprompt.pairs.fetch` plans one sample per place and year and writes each place's monthly
  S1/S2 chip time series (read by :mod:`~landprompt.eo.chips`) into the Zarr
  :mod:`~landprompt.pairs.store`, partition by partition on Dask;
- :mod:`~landprompt.embedder.photos` (in the embedder stage) embeds the photos with CLIP;
- :mod:`~landprompt.pairs.stats` counts and maps what was built.

Submodules are imported explicitly (``from landprompt.pairs.catalog import Catalog``) so that importing
this package stays cheap.
"""
