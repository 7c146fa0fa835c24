"""dask reductions: ``asyncarr.dask.from_url(...).sum().compute()`` against
``dask.array.from_zarr`` (zarr-python) on the same array, with dask's threaded scheduler
and with a ``dask.distributed`` LocalCluster of two worker processes (loopback).

Building the dask array (opening the Zarr array) is not timed; ``compute`` is, graph
submission and result included. The cluster is started once, on first use, and closed at
the end of the run (:func:`close_cluster`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from bench._tools import Handle, Target, Tool

__all__ = ["close_cluster", "dask_tools"]

_cluster: dict[str, Any] = {}


def _client() -> Any:
    """The LocalCluster's client (two worker processes, dask's default threads each)."""
    if "client" not in _cluster:
        from distributed import Client, LocalCluster

        cluster = LocalCluster(
            n_workers=2,
            processes=True,
            host="127.0.0.1",
            dashboard_address="127.0.0.1:0",
            worker_dashboard_address="127.0.0.1:0",
        )
        _cluster["cluster"] = cluster
        _cluster["client"] = Client(cluster, set_as_default=False)
    return _cluster["client"]


def close_cluster() -> None:
    """Stop the LocalCluster if one was started."""
    client = _cluster.pop("client", None)
    cluster = _cluster.pop("cluster", None)
    if client is not None:
        client.close()
    if cluster is not None:
        cluster.close()


class _SumHandle(Handle):
    def __init__(self, darr: Any, scheduler: str) -> None:
        self.darr = darr
        self.scheduler = scheduler

    def read_full(self) -> np.ndarray[Any, Any]:
        total = self.darr.sum()
        if self.scheduler == "cluster":
            return np.asarray(_client().compute(total, sync=True))
        return np.asarray(total.compute(scheduler="threads"))


class _DaskSumTool(Tool):
    ops = ("sum",)

    def unsupported(self, target: Target) -> str | None:
        if not target.dask or target.kind != "local":
            return "dask sums run on the dask workloads"
        return None

    def dask_array(self, target: Target) -> Any:
        raise NotImplementedError

    def open(self, target: Target, *, write: bool) -> Handle:
        handle = _SumHandle(self.dask_array(target), target.dask)
        blocks = handle.darr.numblocks
        handle.note = f"{np.prod(blocks)} block(s) of {handle.darr.chunksize}"
        return handle


class AsyncarrDaskTool(_DaskSumTool):
    """``asyncarr.dask.from_url`` with its default blocks (``"auto"``), or the array's
    chunks (the blocks ``from_zarr`` makes)."""

    def __init__(self, chunks: str) -> None:
        self.chunks = chunks
        self.key = "asyncarr" if chunks == "auto" else "dask-asyncarr-chunks"
        self.label = f"asyncarr.dask.from_url (chunks={chunks!r})"

    def dask_array(self, target: Target) -> Any:
        import asyncarr.dask

        return asyncarr.dask.from_url(str(target.path), chunks=self.chunks)


class ZarrDaskTool(_DaskSumTool):
    """``dask.array.from_zarr`` on zarr-python's array (its default blocks: the chunks)."""

    key = "dask-zarr"
    label = "dask.array.from_zarr (zarr-python)"

    def dask_array(self, target: Target) -> Any:
        import dask.array as da

        return da.from_zarr(str(target.path))


def dask_tools() -> list[Tool]:
    """The dask tools, if dask and distributed are installed."""
    try:
        import dask.array  # noqa: F401
        import distributed  # noqa: F401
    except ImportError:
        return []
    return [AsyncarrDaskTool("auto"), AsyncarrDaskTool("chunks"), ZarrDaskTool()]
