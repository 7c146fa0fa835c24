"""The ``s3-ingest`` workloads: a local array copied into S3 on loopback, side by side.

Every repetition of a tool copies the dataset from local disk to a fresh prefix of one
bucket; the tools take turns (the starting tool rotates each round), so drift in the
machine's load hits them alike. Each tool runs once untimed first, and its copy is read
back with zarr-python and compared with the source array.

* ``asyncarr``: :func:`asyncarr.ingest.copy_array` (local path to ``s3://`` URL), on the
  bench's event loop, its S3 client kept warm between runs (as in a long-lived job). The
  encoding is unchanged, so it copies the stored chunk objects as they are.
* ``asyncarr, re-encoding``: the same with the dataset's compressor plus zstd's
  checksum, so that it decodes and encodes every chunk, as the peers below do.
* ``tensorstore``: the source opened with the ``file`` kvstore, the destination created
  with the same ``zarr.json`` on the ``s3`` kvstore, ``dest.write(source)``.
* ``zarr-python + obstore``: zarr-python 3 with ``zarr.storage.ObjectStore`` over
  obstore's S3 store (its fastest S3 store), ``dest[...] = source[...]`` with
  ``async.concurrency`` at the bench's S3 concurrency.
* Limits: every encoded object of the dataset (chunk or shard files, read into memory
  before the timing) PUT with the same concurrency, by obstore (``raw PUTs obstore``)
  and by asyncarr's S3 store through its runtime (``raw PUTs asyncarr``): the transport
  alone, no Zarr.

Besides MB/s of the array, the ``cpu`` rows give the bench process's CPU time (user and
system, every thread: tensorstore's and obstore's included; not the S3 server's, the
latency proxy's or codec worker processes') per MiB of encoded bytes uploaded. For the
raw PUT rows that is the transport's client CPU per MiB PUT.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import resource
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bench._data import Dataset, Workload, chunk_files
from bench._runner import Result, Runner
from bench._s3 import REGION, S3_CONCURRENCY, S3Location

__all__ = ["INGEST_TOOLS", "IngestRunner", "ingest_location", "run_ingest"]

INGEST_TOOLS = (
    "asyncarr-reencode",
    "tensorstore",
    "zarr-obstore",
    "raw-put-obstore",
    "raw-put-asyncarr",
)
"""The ``--tools`` keys of the s3-ingest peers and limits (asyncarr always runs)."""

MiB = 1 << 20


def _process_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@dataclass
class _Tool:
    key: str
    label: str
    run: Callable[[str], None]
    """Copies the dataset to the prefix given (timed)."""
    check: Callable[[str], bool]
    """Whether the prefix holds what it should (untimed, after the warm-up)."""
    close: Callable[[], None] = lambda: None
    limit: bool = False
    mbps: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    error: str = ""


class IngestRunner:
    """Runs one ``s3-ingest`` workload against one S3 endpoint (maybe a latency proxy)."""

    def __init__(
        self,
        loop: asyncio.Runner,
        wl: Workload,
        data: np.ndarray[Any, Any],
        loc: S3Location,
        *,
        reps: int,
        log: Callable[[str], None] = print,
    ) -> None:
        self.loop = loop
        self.wl = wl
        self.ds: Dataset = wl.ds
        self.data = data
        self.loc = loc
        self.reps = reps
        self.log = log
        root = self.ds.path
        self.objects = {
            p.relative_to(root).as_posix(): p.read_bytes() for p in chunk_files(root, self.ds)
        }
        self.metadata = {m: (root / m).read_bytes() for m in self.ds.metadata_files()}
        self.encoded = sum(len(v) for v in self.objects.values())

    # -- checks --------------------------------------------------------------------------
    def _zarr_reads_back(self, prefix: str) -> bool:
        import zarr

        store = self._obstore_zarr_store()
        arr = zarr.open_array(store=store, path=prefix, mode="r")
        with zarr.config.set({"async.concurrency": S3_CONCURRENCY}):
            return bool(np.array_equal(arr[...], self.data))

    def _objects_there(self, prefix: str) -> bool:
        client = self.loc.client()
        found = 0
        for page in client.get_paginator("list_objects_v2").paginate(
            Bucket=self.loc.bucket, Prefix=prefix + "/"
        ):
            found += len(page.get("Contents") or [])
        return found == len(self.objects)

    def _remove(self, prefix: str) -> None:
        """Delete a run's objects (untimed), so that the servers' disks do not fill up."""
        client = self.loc.client()
        for page in client.get_paginator("list_objects_v2").paginate(
            Bucket=self.loc.bucket, Prefix=prefix + "/"
        ):
            keys = [{"Key": o["Key"]} for o in page.get("Contents") or []]
            if keys:
                client.delete_objects(Bucket=self.loc.bucket, Delete={"Objects": keys})

    # -- the tools -----------------------------------------------------------------------
    def _asyncarr(self, *, reencode: bool = False) -> _Tool:
        from asyncarr.ingest import copy_array
        from asyncarr.stores import store_from_url

        options = self.loc.asyncarr_options()
        # held open for the whole workload: the shared S3 client stays warm between runs
        keeper = store_from_url(f"s3://{self.loc.bucket}", storage_options=options)
        # the dataset's compressor with a checksum: every chunk is decoded and encoded
        compressor = {"id": "zstd", "level": 3, "checksum": True} if reencode else None

        def run(prefix: str) -> None:
            self.loop.run(
                copy_array(
                    str(self.ds.path),
                    f"s3://{self.loc.bucket}/{prefix}",
                    dest_options=options,
                    compressor=compressor,
                )
            )

        return _Tool(
            "asyncarr-reencode" if reencode else "asyncarr",
            "asyncarr copy_array, re-encoding" if reencode else "asyncarr copy_array",
            run,
            self._zarr_reads_back,
            close=lambda: self.loop.run(keeper.aclose()),
        )

    def _tensorstore(self) -> _Tool:
        import tensorstore as ts

        os.environ["AWS_ACCESS_KEY_ID"] = self.loc.access_key
        os.environ["AWS_SECRET_ACCESS_KEY"] = self.loc.secret_key
        context = ts.Context({"s3_request_concurrency": {"limit": S3_CONCURRENCY}})
        metadata = json.loads(self.metadata["zarr.json"])
        source = ts.open(
            {"driver": "zarr3", "kvstore": {"driver": "file", "path": f"{self.ds.path}/"}},
            context=context,
            read=True,
        ).result()

        def run(prefix: str) -> None:
            kvstore = {
                "driver": "s3",
                "bucket": self.loc.bucket,
                "path": f"{prefix}/",
                "endpoint": self.loc.endpoint,
                "aws_region": REGION,
                "aws_credentials": {"type": "environment"},
            }
            dest = ts.open(
                {"driver": "zarr3", "kvstore": kvstore, "metadata": metadata},
                context=context,
                create=True,
                write=True,
            ).result()
            dest.write(source).result()

        return _Tool("tensorstore", "tensorstore", run, self._zarr_reads_back)

    def _obstore_s3(self) -> Any:
        from obstore.store import S3Store

        return S3Store(
            self.loc.bucket,
            endpoint=self.loc.endpoint,
            access_key_id=self.loc.access_key,
            secret_access_key=self.loc.secret_key,
            region=REGION,
            client_options={"allow_http": True, "pool_max_idle_per_host": str(S3_CONCURRENCY)},
        )

    def _obstore_zarr_store(self) -> Any:
        from zarr.storage import ObjectStore

        if not hasattr(self, "_zarr_store"):
            self._zarr_store = ObjectStore(self._obstore_s3())
        return self._zarr_store

    def _zarr(self) -> _Tool:
        import zarr

        source = zarr.open_array(str(self.ds.path), mode="r")
        store = self._obstore_zarr_store()
        meta = source.metadata

        def run(prefix: str) -> None:
            with zarr.config.set({"async.concurrency": S3_CONCURRENCY}):
                dest = zarr.create_array(
                    store=store,
                    name=prefix,
                    shape=source.shape,
                    chunks=source.chunks,
                    shards=source.shards,
                    dtype=source.dtype,
                    compressors=source.compressors,
                    filters=source.filters,
                    fill_value=meta.fill_value,
                    zarr_format=3,
                )
                dest[...] = source[...]

        return _Tool("zarr-obstore", "zarr-python + obstore", run, self._zarr_reads_back)

    def _raw_obstore(self) -> _Tool:
        import obstore

        store = self._obstore_s3()

        async def put_all(prefix: str) -> None:
            sem = asyncio.Semaphore(S3_CONCURRENCY)

            async def put(key: str, value: bytes) -> None:
                async with sem:
                    await obstore.put_async(store, f"{prefix}/{key}", value)

            await asyncio.gather(*(put(k, v) for k, v in self.objects.items()))

        return _Tool(
            "raw-put-obstore",
            f"raw PUTs obstore ×{S3_CONCURRENCY}",
            lambda prefix: self.loop.run(put_all(prefix)),
            self._objects_there,
            limit=True,
        )

    def _raw_asyncarr(self) -> _Tool:
        from asyncarr.runtime import managed
        from asyncarr.stores import store_from_url

        store = store_from_url(
            f"s3://{self.loc.bucket}", storage_options=self.loc.asyncarr_options()
        )
        io = managed(store)

        async def put_all(prefix: str) -> None:
            sem = asyncio.Semaphore(S3_CONCURRENCY)

            async def put(key: str, value: bytes) -> None:
                async with sem:
                    await io.set(f"{prefix}/{key}", value)

            await asyncio.gather(*(put(k, v) for k, v in self.objects.items()))

        return _Tool(
            "raw-put-asyncarr",
            f"raw PUTs asyncarr S3Store ×{S3_CONCURRENCY}",
            lambda prefix: self.loop.run(put_all(prefix)),
            self._objects_there,
            close=lambda: self.loop.run(store.aclose()),
            limit=True,
        )

    def _tools(self, wanted: set[str]) -> Iterator[_Tool]:
        makers: dict[str, Callable[[], _Tool]] = {
            "asyncarr": self._asyncarr,
            "asyncarr-reencode": lambda: self._asyncarr(reencode=True),
            "tensorstore": self._tensorstore,
            "zarr-obstore": self._zarr,
            "raw-put-obstore": self._raw_obstore,
            "raw-put-asyncarr": self._raw_asyncarr,
        }
        for key, make in makers.items():
            if wanted and key != "asyncarr" and key not in wanted:
                continue
            try:
                yield make()
            except ImportError as exc:
                self.log(f"    {key}: not run ({exc})")

    # -- running -------------------------------------------------------------------------
    def _once(self, tool: _Tool, prefix: str) -> tuple[float, float]:
        cpu0, t0 = _process_cpu(), time.perf_counter()
        tool.run(prefix)
        seconds = time.perf_counter() - t0
        return seconds, _process_cpu() - cpu0

    def run(self, wanted: set[str]) -> list[Result]:
        tools = list(self._tools(wanted))
        tag = secrets.token_hex(3)
        for tool in tools:  # warm-up and check
            prefix = f"{tag}/{tool.key}/warm"
            try:
                self._once(tool, prefix)
                if not tool.check(prefix):
                    tool.error = "the copy read back differently from the source"
            except Exception as exc:
                tool.error = f"warm-up: {type(exc).__name__}: {exc}"[:300]
            if tool.error:
                self.log(f"    {tool.label}: FAILED: {tool.error}")
            self._remove(prefix)
        live = [t for t in tools if not t.error]
        for rnd in range(self.reps):
            k = rnd % max(1, len(live))
            for tool in live[k:] + live[:k]:
                if tool.error:
                    continue
                prefix = f"{tag}/{tool.key}/{rnd}"
                try:
                    seconds, cpu = self._once(tool, prefix)
                except Exception as exc:
                    tool.error = f"repetition {rnd + 1}: {type(exc).__name__}: {exc}"[:300]
                    self.log(f"    {tool.label}: FAILED: {tool.error}")
                    continue
                finally:
                    self._remove(prefix)
                tool.mbps.append(self.ds.nbytes / seconds / 1e6)
                tool.cpu.append(cpu * 1e3 / (self.encoded / MiB))
        for tool in tools:
            with contextlib.suppress(Exception):
                tool.close()
        return list(self._results(tools))

    def _results(self, tools: list[_Tool]) -> Iterator[Result]:
        name = self.wl.name
        for tool in tools:
            mbps = Result(name, "ingest", tool.key, tool.label, "MB/s", limit=tool.limit)
            cpu = Result(name, "cpu", tool.key, tool.label, "ms CPU/MiB", limit=tool.limit)
            mbps.values, cpu.values = tool.mbps, tool.cpu
            mbps.error = cpu.error = tool.error
            for r in (mbps, cpu):
                if r.values:
                    self.log(f"    {r.label:<44} {r.median:9.2f} {r.unit}  [{r.lo:.2f}–{r.hi:.2f}]")
                yield r


@contextlib.contextmanager
def ingest_location(server: str) -> Iterator[S3Location]:
    """A fresh ``moto`` or ``seaweedfs`` server with an empty bucket for the copies."""
    from bench._s3 import s3_server

    with s3_server(server) as (endpoint, key, secret):
        loc = S3Location(
            server=server,
            endpoint=endpoint,
            bucket=f"ingest-{secrets.token_hex(4)}",
            prefix="",
            access_key=key,
            secret_key=secret,
        )
        loc.client().create_bucket(Bucket=loc.bucket)
        yield loc


def run_ingest(
    loop: asyncio.Runner,
    runner: Runner,
    workloads: list[Workload],
    data: Callable[[tuple[int, int]], np.ndarray[Any, Any]],
    *,
    wanted: set[str],
    log: Callable[[str], None] = print,
) -> None:
    """Every ``s3-ingest`` workload, one server of each kind for all its workloads; the
    results go to ``runner.results`` (a server that fails is an error row, not a crash)."""
    from bench._proxy import latency_proxy

    for server in dict.fromkeys(w.s3_server for w in workloads if w.s3_server):
        group = [w for w in workloads if w.s3_server == server]
        try:
            log(f"\n  starting {server} on 127.0.0.1 for {len(group)} s3-ingest workloads ...")
            with ingest_location(server) as loc:
                for wl in group:
                    log(f"\n[{wl.name}] {wl.title}")
                    with contextlib.ExitStack() as stack:
                        where = loc
                        if wl.latency_ms > 0:
                            where = loc.via(
                                stack.enter_context(latency_proxy(loc.endpoint, wl.latency_ms))
                            )
                        ingest = IngestRunner(
                            loop, wl, data(wl.ds.shape), where, reps=runner.reps, log=log
                        )
                        runner.results.extend(ingest.run(wanted))
        except Exception as exc:
            log(f"  S3 server {server} FAILED: {type(exc).__name__}: {exc}")
            for wl in group:
                error = f"{server} unavailable: {exc}"[:300]
                runner.results.append(
                    Result(wl.name, "ingest", "asyncarr", "asyncarr", "MB/s", error=error)
                )
