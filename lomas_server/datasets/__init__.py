"""Where datasets come from (connectors), how they are shaped to their metadata, and a cache."""

from lomas_server.arrow_schema import arrow_schema, empty_arrow
from lomas_server.datasets.cache import DatasetCache
from lomas_server.datasets.conform import conform_to_metadata, conformed_table, to_arrow
from lomas_server.datasets.dummy import make_dummy
from lomas_server.datasets.sources import (
    DatasetSource,
    HttpSource,
    LocalFileSource,
    S3Source,
    source_from_description,
    source_from_location,
)

__all__ = [
    "DatasetCache",
    "DatasetSource",
    "HttpSource",
    "LocalFileSource",
    "S3Source",
    "arrow_schema",
    "conform_to_metadata",
    "conformed_table",
    "empty_arrow",
    "make_dummy",
    "source_from_description",
    "source_from_location",
    "to_arrow",
]
