"""Object stores behind one small interface: local folders, S3 and Cloud Storage.

``open_store("s3://bucket/prefix")`` returns a :class:`ObjectStore` whose keys
are relative to the prefix. Every store lists objects with the sizes,
versions and checksums it has, streams reads, writes atomically (nothing
partially written is ever visible under the final key) and verifies what it
wrote against the checksums of what was read. This package does not import
torch; boto3 and google-cloud-storage are imported only by the store that
needs them.
"""

from __future__ import annotations

from .base import (
    ObjectInfo,
    ObjectStore,
    WriteResult,
)
from .errors import (
    DestinationBusyError,
    IntegrityError,
    ObjectNotFoundError,
    SourceChangedError,
    StorageError,
    StoreConfigError,
    TransientStorageError,
    UnwritableKeyError,
)
from .local import LocalStore
from .uri import open_store, parse_store_uri

__all__ = [
    "DestinationBusyError", "IntegrityError", "LocalStore", "ObjectInfo", "ObjectNotFoundError", "ObjectStore",
    "SourceChangedError", "StorageError", "StoreConfigError", "TransientStorageError", "UnwritableKeyError",
    "WriteResult", "open_store", "parse_store_uri",
]
