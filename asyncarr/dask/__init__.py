"""The dask integration (layer L6, the ``dask`` extra).

- :func:`from_url`: a ``dask.array.Array`` whose tasks read blocks of a Zarr array through
  asyncarr, chunked along the array's shards (or chunks) by default.
- :func:`store`: writes a dask array into an asyncarr array; blocks aligned to the
  destination's shards (or chunks) are written whole, with no read-modify-write.

Both work with every dask scheduler: threads, ``scheduler="processes"`` and
``dask.distributed``. The array handle travels in the task graph once, pickled as what
reopens it (store, path, mode, metadata); a worker loads it without I/O and connects on
its first block. Inside one worker process every task shares one event loop, one
connection pool per store endpoint and one concurrency budget per endpoint: with N worker
processes, up to N times ``limits.max_concurrency`` requests reach an endpoint at once
(see the docs on sizing the limits for a cluster).
"""

from __future__ import annotations

try:
    import dask.array as _dask_array  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the environment
    from asyncarr.errors import MissingExtraError

    raise MissingExtraError("asyncarr.dask", "dask", "dask") from exc

from asyncarr.dask._read import from_url
from asyncarr.dask._write import MisalignedWritesWarning, store

__all__ = ["MisalignedWritesWarning", "from_url", "store"]
