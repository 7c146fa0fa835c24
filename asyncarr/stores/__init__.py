"""Store backends (layer L2). Cloud SDKs are imported lazily, per backend.

Local, memory, zip, fault-injection and layered (versioned container) stores are
importable from here; the
cloud backends (``S3Store``, ``GCSStore``, ``AzureBlobStore``,
``MongoDBStore``, ``HTTPStore``) live in their own modules and are usually
opened by URL through :func:`store_from_url`.
"""

from asyncarr.stores._faulty import FaultRule, FaultStats, FaultyStore
from asyncarr.stores._layered import LayeredStore
from asyncarr.stores._local import LocalStore, translate_os_error
from asyncarr.stores._memory import MemoryStore
from asyncarr.stores._registry import (
    register_store,
    registered_schemes,
    store_from_url,
    unregister_store,
)
from asyncarr.stores._zip import ZipStore

__all__ = [
    "FaultRule",
    "FaultStats",
    "FaultyStore",
    "LayeredStore",
    "LocalStore",
    "MemoryStore",
    "ZipStore",
    "register_store",
    "registered_schemes",
    "store_from_url",
    "translate_os_error",
    "unregister_store",
]
