"""The xarray integration (layer L6, the ``xarray`` extra).

- The ``"asyncarr"`` engine: ``xarray.open_dataset(url, engine="asyncarr")`` and
  ``xarray.open_datatree(url, engine="asyncarr")`` open Zarr v2 and v3 stores through
  asyncarr, lazily, giving the datasets xarray's own Zarr engine gives.
- :func:`to_zarr` writes a dataset as ``Dataset.to_zarr`` does (CF encoding by xarray's
  encoders, dimension names, consolidated metadata), through asyncarr.
"""

from __future__ import annotations

try:
    import xarray as _xarray  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the environment
    from asyncarr.errors import MissingExtraError

    raise MissingExtraError("asyncarr.xarray", "xarray", "xarray") from exc

from asyncarr.xarray._array import AsyncarrBackendArray
from asyncarr.xarray._backend import AsyncarrBackendEntrypoint, AsyncarrDataStore, open_stores
from asyncarr.xarray._write import to_zarr

__all__ = [
    "AsyncarrBackendArray",
    "AsyncarrBackendEntrypoint",
    "AsyncarrDataStore",
    "open_stores",
    "to_zarr",
]
