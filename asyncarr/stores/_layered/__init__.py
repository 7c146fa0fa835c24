"""Layered containers: a versioned store of many arrays in a few immutable objects on any
base store (layers of values with a footer index, numbered manifests created with
put-if-absent). See ``docs/layered.md``."""

from asyncarr.stores._layered._container import use_runtime
from asyncarr.stores._layered._maintenance import GCReport, build_pack
from asyncarr.stores._layered._manifest import Manifest
from asyncarr.stores._layered._store import LayeredStore
from asyncarr.stores._layered._url import layered_store_from_url, split_object_url

__all__ = [
    "GCReport",
    "LayeredStore",
    "Manifest",
    "build_pack",
    "layered_store_from_url",
    "split_object_url",
    "use_runtime",
]
