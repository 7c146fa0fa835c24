"""The ``layered`` workload: random single-chunk reads through layered containers of 1 and
10 layers against the plain store (local disk, and requests per read on S3 SeaweedFS), and
the bytes a commit of 1% of the array uploads. ``async-route`` is the plain store read
through the async store API (a wrapper without synchronous reads), the route a layered
container's reads take: the difference between it and the plain store is that route's
cost (a thread hop per read on local disk), not the container's.

The containers hold the ``zstd-4096-c256`` array (256 chunks of 256², 64 MiB of float32):
one layer is a copy of it, compacted; ten layers are that plus nine commits, each
rewriting a different tenth of the chunks (so reads land in every layer). Timings are
interleaved (plain, 1 layer, 10 layers, then again), medians and ranges over the reps.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from bench._data import RESULTS_DIR, Workload, chunk_files, random_chunks
from bench._runner import Result

__all__ = ["run_layered"]

N_READS = 200


async def _build(source: Any, dest: Any, layers: int) -> None:
    """``source``'s array copied into the layered store ``dest`` with ``layers`` layers."""
    import asyncarr
    from asyncarr.ingest import copy_array

    await copy_array(source, dest)
    await dest.compact()
    arr = await asyncarr.open_array(dest, mode="r+")
    grid = arr.metadata.chunk_grid_shape
    coords = [(i, j) for i in range(grid[0]) for j in range(grid[1])]
    cy, cx = arr.chunks
    for k in range(layers - 1):  # a tenth of the chunks each: rewritten as they are
        async with asyncarr.transaction(dest, message=f"rewrite {k}") as st:
            t = await asyncarr.open_array(st, mode="r+")
            for i, j in coords[k :: layers - 1][: len(coords) // 10]:
                sel = (slice(i * cy, (i + 1) * cy), slice(j * cx, (j + 1) * cx))
                await t.write(await t.read(sel), sel)
    assert len((await dest.history())[0].layers) == layers


async def _ms_per_read(arr: Any, sels: list[tuple[slice, slice]]) -> float:
    start = time.perf_counter()
    for sel in sels:
        await arr.read(sel)
    return (time.perf_counter() - start) * 1000 / len(sels)


async def _local(wl: Workload, reps: int, log: Callable[[str], None]) -> list[Result]:
    import asyncarr
    from asyncarr.stores import FaultyStore, LayeredStore, LocalStore

    ds = wl.ds
    root = RESULTS_DIR / "data" / "layered"
    shutil.rmtree(root, ignore_errors=True)
    stores: dict[str, Any] = {}
    for n in (1, 10):
        log(f"    building a {n}-layer container ...")
        stores[f"layered-{n}"] = LayeredStore(LocalStore(str(root / f"l{n}")))
        await _build(str(ds.path), stores[f"layered-{n}"], n)
    arrays = {
        "asyncarr": await asyncarr.open_array(str(ds.path)),
        "async-route": await asyncarr.open_array(FaultyStore(LocalStore(str(ds.path)))),
        **{k: await asyncarr.open_array(s) for k, s in stores.items()},
    }
    labels = {
        "asyncarr": "asyncarr, plain LocalStore",
        "async-route": "plain, async store route (no sync reads)",
        "layered-1": "asyncarr, layered, 1 layer",
        "layered-10": "asyncarr, layered, 10 layers",
    }
    sels = random_chunks(ds, N_READS)
    results = {k: Result(wl.name, "random", k, labels[k], "ms/chunk") for k in arrays}
    for arr in arrays.values():  # warm up: footers cached, files in the page cache
        await _ms_per_read(arr, sels[:20])
    for _ in range(reps):
        for key, arr in arrays.items():
            results[key].values.append(await _ms_per_read(arr, sels))
    out = list(results.values())
    out.append(await _commit(stores["layered-1"], ds, wl))
    for arr in arrays.values():
        await arr.aclose()
    return out


async def _commit(store: Any, ds: Any, wl: Workload) -> Result:
    """Bytes uploaded by a commit rewriting 3 of the 256 chunks (1.2%), as a percentage
    of the bytes those chunks take (100%: nothing but the changed chunks travelled)."""
    import asyncarr

    arr = await asyncarr.open_array(store, mode="r+")
    cy, cx = arr.chunks
    region = (slice(0, cy), slice(0, 3 * cx))
    value = (await arr.read(region)) + np.float32(1.0)
    before = asyncarr.store_stats(store.base).bytes_written
    await arr.write(value, region)
    uploaded = asyncarr.store_stats(store.base).bytes_written - before
    sizes = {p.relative_to(ds.path).as_posix(): p.stat().st_size for p in chunk_files(ds.path, ds)}
    changed = sum(sizes[f"c/0/{j}"] for j in range(3))
    total = sum(sizes.values())
    return Result(
        wl.name,
        "commit",
        "commit-1pct",
        f"3 of 256 chunks: {uploaded} B uploaded, {changed} B of chunks",
        "% of changed",
        values=[100.0 * uploaded / changed],
        note=f"{100.0 * uploaded / total:.2f}% of the array's {total} B",
    )


async def _s3(wl: Workload, reps: int, log: Callable[[str], None]) -> list[Result]:
    """Requests and latency per random read on S3 (SeaweedFS; moto copies a whole object
    to serve a range of it, so a range of a large layer costs as much as the layer),
    footers cached."""
    import asyncarr
    from asyncarr.stores import LayeredStore, store_from_url
    from bench._s3 import s3_server, upload_dataset

    ds = wl.ds
    with s3_server("seaweedfs") as (endpoint, key, secret):
        loc = upload_dataset("seaweedfs", endpoint, key, secret, ds)
        options = loc.asyncarr_options()
        plain = store_from_url(loc.url, storage_options=options)
        stores: dict[str, Any] = {"asyncarr": plain}
        for n in (1, 10):
            log(f"    building a {n}-layer container on SeaweedFS ...")
            base = store_from_url(f"s3://{loc.bucket}/layered-{n}", storage_options=options)
            stores[f"layered-{n}"] = LayeredStore(base)
            await _build(plain, stores[f"layered-{n}"], n)
        sels = random_chunks(ds, N_READS)
        arrays = {name: await asyncarr.open_array(store) for name, store in stores.items()}
        requests: dict[str, Result] = {}
        latency: dict[str, Result] = {}
        for name, arr in arrays.items():
            await _ms_per_read(arr, sels[:20])
            label = "plain S3Store" if name == "asyncarr" else f"layered, {name[8:]} layer(s)"
            requests[name] = Result(wl.name, "s3-requests", name, label, "requests/read")
            latency[name] = Result(wl.name, "s3-random", name, label, "ms/chunk")
        for _ in range(reps):
            for name, arr in arrays.items():
                store = stores[name]
                counted = store.base if isinstance(store, LayeredStore) else store
                before = asyncarr.store_stats(counted).completed
                latency[name].values.append(await _ms_per_read(arr, sels))
                done = asyncarr.store_stats(counted).completed - before
                requests[name].values.append(done / len(sels))
        out = [*requests.values(), *latency.values()]
        for arr in arrays.values():
            await arr.aclose()
        for store in stores.values():
            await store.aclose()
    return out


def run_layered(wl: Workload, reps: int, log: Callable[[str], None]) -> list[Result]:
    """Every measurement of the ``layered`` workload."""
    results = asyncio.run(_local(wl, reps, log))
    try:
        results += asyncio.run(_s3(wl, reps, log))
    except Exception as exc:
        log(f"    S3 part FAILED: {type(exc).__name__}: {exc}")
        results.append(
            Result(wl.name, "s3-requests", "asyncarr", "S3", "requests/read", error=str(exc)[:300])
        )
    shutil.rmtree(RESULTS_DIR / "data" / "layered", ignore_errors=True)
    return results
