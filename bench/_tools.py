"""The tools under comparison, behind one small interface.

A :class:`Tool` opens a :class:`Target` (an array on local disk, in memory
or on S3) and returns a :class:`Handle` whose ``read_full``, ``read_many``
and ``write_full`` are what the runner times. Opening, filling memory
stores and closing are never timed.

asyncarr runs on one :class:`asyncio.Runner` owned by the runner (its async
API, as an async service would use it); zarr-python and zarrs use zarr's
blocking API, tensorstore its futures.
"""

from __future__ import annotations

import asyncio
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from bench._data import Dataset, chunk_files
from bench._s3 import RawGetter, S3Location, object_keys

__all__ = ["Handle", "Target", "Tool", "peer_tools", "target_files"]

Selection = tuple[slice, slice]


@dataclass
class Target:
    """Where an array lives for one tool: local path, memory seed files or S3."""

    kind: str
    ds: Dataset
    path: Path | None = None
    files: dict[str, bytes] = field(default_factory=dict)
    """Memory targets: the store's keys and values to start from."""
    s3: S3Location | None = None
    dask: str = ""
    """The dask scheduler of a ``sum`` workload: ``threads`` or ``cluster``."""


def target_files(root: Path, ds: Dataset, *, metadata_only: bool = False) -> dict[str, bytes]:
    """The dataset's files as ``{key: bytes}`` (to seed in-memory stores)."""
    out = {m: (root / m).read_bytes() for m in ds.metadata_files()}
    if not metadata_only:
        for p in chunk_files(root, ds):
            out[p.relative_to(root).as_posix()] = p.read_bytes()
    return out


class Handle:
    """An open array; subclasses implement the timed operations."""

    note: str = ""
    """Set when the tool did not run the way its label says (e.g. a fallback)."""

    def read_full(self) -> np.ndarray[Any, Any]:
        raise NotImplementedError

    def read_many(self, sels: Sequence[Selection]) -> np.ndarray[Any, Any]:
        """Read each selection in turn; returns the last block."""
        raise NotImplementedError

    def write_full(self, data: np.ndarray[Any, Any]) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Release the array (not timed)."""


class Tool:
    """A library configuration that can open targets."""

    key: str = ""
    label: str = ""
    ops: tuple[str, ...] = ("read", "write", "random")
    """The operations this tool can run."""
    checkable: bool = True
    """Whether its reads return the array (limits and raw GETs return nothing to check)."""
    is_limit: bool = False
    """A hardware/transport limit rather than a Zarr implementation."""

    def unsupported(self, target: Target) -> str | None:
        """Why this tool cannot run on ``target``, or None."""
        return None

    def open(self, target: Target, *, write: bool) -> Handle:
        raise NotImplementedError


# -- asyncarr --------------------------------------------------------------------------------
class _AsyncarrHandle(Handle):
    def __init__(self, runner: asyncio.Runner, arr: Any) -> None:
        self.runner = runner
        self.arr = arr

    def read_full(self) -> np.ndarray[Any, Any]:
        out: np.ndarray[Any, Any] = self.runner.run(self.arr.read())
        return out

    async def _many(self, sels: Sequence[Selection]) -> np.ndarray[Any, Any]:
        last: Any = None
        for sel in sels:
            last = await self.arr.read(sel)
        return np.asarray(last)

    def read_many(self, sels: Sequence[Selection]) -> np.ndarray[Any, Any]:
        return self.runner.run(self._many(sels))

    def write_full(self, data: np.ndarray[Any, Any]) -> None:
        self.runner.run(self.arr.write(data))

    def close(self) -> None:
        self.runner.run(self.arr.aclose())


class AsyncarrTool(Tool):
    """asyncarr's async API with its default executor and store limits."""

    key = "asyncarr"
    label = "asyncarr"

    def __init__(self, runner: asyncio.Runner) -> None:
        self.runner = runner

    def open(self, target: Target, *, write: bool) -> Handle:
        import asyncarr

        mode: Literal["r", "r+"] = "r+" if write else "r"
        if target.kind == "local":
            coro = asyncarr.open_array(str(target.path), mode=mode)
        elif target.kind == "memory":
            coro = asyncarr.open_array(asyncarr.MemoryStore(dict(target.files)), mode=mode)
        else:
            assert target.s3 is not None
            coro = asyncarr.open_array(
                target.s3.url, mode=mode, storage_options=target.s3.asyncarr_options()
            )
        return _AsyncarrHandle(self.runner, self.runner.run(coro))


# -- zarr-python (default, tuned, zarrs pipeline) ----------------------------------------------
class _ZarrHandle(Handle):
    def __init__(self, arr: Any, config: dict[str, Any]) -> None:
        self.arr = arr
        self.config = config

    def read_full(self) -> np.ndarray[Any, Any]:
        import zarr

        with zarr.config.set(self.config):
            return np.asarray(self.arr[...])

    def read_many(self, sels: Sequence[Selection]) -> np.ndarray[Any, Any]:
        import zarr

        last: Any = None
        with zarr.config.set(self.config):
            for sel in sels:
                last = self.arr[sel]
        return np.asarray(last)

    def write_full(self, data: np.ndarray[Any, Any]) -> None:
        import zarr

        with zarr.config.set(self.config):
            self.arr[...] = data


class ZarrTool(Tool):
    """zarr-python's blocking API under a given ``zarr.config``."""

    def __init__(self, key: str, label: str, config: dict[str, Any]) -> None:
        self.key = key
        self.label = label
        self.config = config

    def unsupported(self, target: Target) -> str | None:
        if target.kind == "s3":
            return "zarr-python needs s3fs or obstore for S3 (not part of the bench extra)"
        return None

    def _store(self, target: Target) -> Any:
        import zarr.storage
        from zarr.core.buffer import cpu

        if target.kind == "memory":
            return zarr.storage.MemoryStore(
                {k: cpu.Buffer.from_bytes(v) for k, v in target.files.items()}
            )
        return zarr.storage.LocalStore(str(target.path), read_only=False)

    def open(self, target: Target, *, write: bool) -> Handle:
        import zarr

        config = self.config
        if target.ds.rectilinear:  # (experimental in zarr-python 3, behind a flag)
            config = {**config, "array.rectilinear_chunks": True}
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with zarr.config.set(config):
                arr = zarr.open_array(store=self._store(target), mode="r+" if write else "r")
        handle = _ZarrHandle(arr, config)
        handle.note = self._fallback_note(arr, caught)
        return handle

    def _fallback_note(self, arr: Any, caught: list[warnings.WarningMessage]) -> str:
        pipeline = arr._async_array.codec_pipeline
        wanted = self.config.get("codec_pipeline.path", "")
        got = f"{type(pipeline).__module__}.{type(pipeline).__qualname__}"
        if wanted.startswith("zarrs.") and (
            getattr(pipeline, "impl", True) is None or not got.startswith("zarrs.")
        ):
            why = (
                "; ".join(str(w.message) for w in caught)[:80] or f"store not supported, got {got}"
            )
            return f"FALLBACK: zarrs silently used zarr's default pipeline ({why})"
        if wanted and wanted.rsplit(".", 1)[-1] not in got:
            return f"asked for {wanted}, got {got}"
        return ""


def _fused_pipeline() -> str | None:
    try:
        from zarr.core import codec_pipeline
    except ImportError:
        return None
    if hasattr(codec_pipeline, "FusedCodecPipeline"):
        return "zarr.core.codec_pipeline.FusedCodecPipeline"
    return None


# -- tensorstore -------------------------------------------------------------------------------
class _TensorstoreHandle(Handle):
    def __init__(self, arr: Any) -> None:
        self.arr = arr

    def read_full(self) -> np.ndarray[Any, Any]:
        return np.asarray(self.arr.read().result())

    def read_many(self, sels: Sequence[Selection]) -> np.ndarray[Any, Any]:
        last: Any = None
        for sel in sels:
            last = self.arr[sel].read().result()
        return np.asarray(last)

    def write_full(self, data: np.ndarray[Any, Any]) -> None:
        self.arr.write(data).result()


class TensorstoreTool(Tool):
    """tensorstore's zarr3/zarr drivers with default context resources."""

    key = "tensorstore"
    label = "tensorstore"

    def unsupported(self, target: Target) -> str | None:
        if target.ds.rectilinear:
            return "tensorstore reads regular chunk grids only"
        return None

    def open(self, target: Target, *, write: bool) -> Handle:
        import tensorstore as ts

        driver = "zarr3" if target.ds.zarr_format == 3 else "zarr"
        context = ts.Context()
        if target.kind == "local":
            kvstore: dict[str, Any] = {"driver": "file", "path": f"{target.path}/"}
        elif target.kind == "memory":
            kvstore = {"driver": "memory"}
            kv = ts.KvStore.open(kvstore, context=context).result()
            futures = [kv.write(k, v) for k, v in target.files.items()]
            for f in futures:
                f.result()
        else:
            assert target.s3 is not None
            os.environ["AWS_ACCESS_KEY_ID"] = target.s3.access_key
            os.environ["AWS_SECRET_ACCESS_KEY"] = target.s3.secret_key
            kvstore = target.s3.tensorstore_kvstore()
        arr = ts.open(
            {"driver": driver, "kvstore": kvstore}, context=context, read=True, write=write
        ).result()
        return _TensorstoreHandle(arr)


# -- raw S3 GETs -------------------------------------------------------------------------------
class _RawGetHandle(Handle):
    def __init__(self, getter: RawGetter) -> None:
        self.getter = getter

    def read_full(self) -> np.ndarray[Any, Any]:
        self.getter.get_all()
        return np.empty(0)

    def close(self) -> None:
        self.getter.close()


class RawGetTool(Tool):
    """Every chunk object fetched with aiobotocore (no decoding): the S3 limit."""

    key = "raw-get"
    ops = ("read",)
    checkable = False
    is_limit = True

    def __init__(self, runner: asyncio.Runner, concurrency: int) -> None:
        self.runner = runner
        self.concurrency = concurrency
        self.label = f"raw GETs ×{concurrency}"

    def unsupported(self, target: Target) -> str | None:
        return None if target.kind == "s3" else "raw GETs are the S3 limit only"

    def open(self, target: Target, *, write: bool) -> Handle:
        assert target.s3 is not None
        keys = object_keys(target.s3, target.ds)
        return _RawGetHandle(RawGetter(self.runner, target.s3, keys, self.concurrency))


def peer_tools(runner: asyncio.Runner) -> list[Tool]:
    """asyncarr first, then every peer that is installed."""
    tools: list[Tool] = [
        AsyncarrTool(runner),
        ZarrTool("zarr", "zarr-python", {}),
    ]
    fused = _fused_pipeline()
    tuned: dict[str, Any] = {"async.concurrency": 64}
    if fused:
        tuned["codec_pipeline.path"] = fused
    tools.append(
        ZarrTool(
            "zarr-tuned",
            "zarr-python tuned (concurrency 64, "
            + ("FusedCodecPipeline)" if fused else "FusedCodecPipeline n/a)"),
            tuned,
        )
    )
    try:
        import zarrs  # noqa: F401

        tools.append(
            ZarrTool(
                "zarrs", "zarr-python + zarrs", {"codec_pipeline.path": "zarrs.ZarrsCodecPipeline"}
            )
        )
    except ImportError:
        pass
    try:
        import tensorstore  # noqa: F401

        tools.append(TensorstoreTool())
    except ImportError:
        pass
    return tools
