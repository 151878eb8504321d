"""Photo sources: LUCAS survey tables, YFCC100M dumps, the Flickr API and any CSV/Parquet table.

Each is a :class:`~landprompt.pairs.sources.base.PhotoSource` yielding batches of canonical photo rows;
:func:`landprompt.pairs.ingest.ingest` filters them into the catalog.
"""

from landprompt.pairs.sources.base import PhotoSource, SourceBatch, photo_frame
from landprompt.pairs.sources.flickr import FlickrSource
from landprompt.pairs.sources.lucas import LucasSource
from landprompt.pairs.sources.table import TableColumns, TableSource
from landprompt.pairs.sources.yfcc import YfccSource

__all__ = [
    "FlickrSource",
    "LucasSource",
    "PhotoSource",
    "SourceBatch",
    "TableColumns",
    "TableSource",
    "YfccSource",
    "photo_frame",
]
