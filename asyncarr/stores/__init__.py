"""Store backends (layer L2). Cloud SDKs are imported lazily, per backend."""

from asyncarr.stores._memory import MemoryStore
from asyncarr.stores._registry import (
    register_store,
    registered_schemes,
    store_from_url,
    unregister_store,
)

__all__ = [
    "MemoryStore",
    "register_store",
    "registered_schemes",
    "store_from_url",
    "unregister_store",
]
