"""Client CPU per S3 PUT: asyncarr's lean write path, its botocore path, obstore.

``python -m bench.put_cpu [--server seaweedfs|moto] [--rounds N] [--size BYTES]``

Each round PUTs the same N objects (256 × 1 MiB by default, random bytes) with 32 in
flight through each client in turn (the order alternates every round), on one event
loop in this process, against a loopback server started for the run. Per PUT it
reports the event-loop thread's CPU time (``time.thread_time``: where asyncarr does all
its work) and the whole process's (``getrusage``: obstore's Rust threads included; not
the server's), as the median and range over the rounds, and MB/s.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

__all__ = ["main"]

INFLIGHT = 32


def _process_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _round(
    put: Callable[[str, bytes], Awaitable[Any]], tag: str, payloads: list[bytes], n: int
) -> tuple[float, float, float]:
    """(seconds, loop-thread CPU, process CPU) of ``n`` PUTs, ``INFLIGHT`` at a time."""
    sem = asyncio.Semaphore(INFLIGHT)

    async def one(i: int) -> None:
        async with sem:
            await put(f"{tag}/c{i}", payloads[i % len(payloads)])

    await put(f"{tag}/warm", b"x")
    t0, c0, p0 = time.perf_counter(), time.thread_time(), _process_cpu()
    await asyncio.gather(*(one(i) for i in range(n)))
    return time.perf_counter() - t0, time.thread_time() - c0, _process_cpu() - p0


async def _measure(loc: Any, rounds: int, n: int, size: int) -> dict[str, list[Any]]:
    import obstore
    from obstore.store import S3Store as ObstoreS3

    from asyncarr.config import StoreLimits
    from asyncarr.stores._s3 import S3Store

    def asyncarr_store(lean: bool) -> S3Store:
        return S3Store(
            loc.bucket,
            endpoint_url=loc.endpoint,
            region_name=loc.region,
            aws_access_key_id=loc.access_key,
            aws_secret_access_key=loc.secret_key,
            addressing_style="path",
            lean_writes=lean,
            limits=StoreLimits(max_concurrency=INFLIGHT),
        )

    lean, boto = asyncarr_store(True), asyncarr_store(False)
    ob = ObstoreS3(
        loc.bucket,
        endpoint=loc.endpoint,
        access_key_id=loc.access_key,
        secret_access_key=loc.secret_key,
        region=loc.region,
        client_options={"allow_http": True, "pool_max_idle_per_host": str(INFLIGHT)},
    )
    clients: dict[str, Callable[[str, bytes], Awaitable[Any]]] = {
        "asyncarr lean": lean.set,
        "asyncarr botocore": boto.set,
        "obstore": lambda key, value: obstore.put_async(ob, key, value),
    }
    payloads = [os.urandom(size) for _ in range(8)]
    rows: dict[str, list[Any]] = {name: [] for name in clients}
    order = list(clients)
    for r in range(rounds):
        for name in order if r % 2 == 0 else order[::-1]:
            rows[name].append(await _round(clients[name], f"{name[:5]}{r}", payloads, n))
    await lean.aclose()
    await boto.aclose()
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.put_cpu", description=__doc__)
    parser.add_argument("--server", choices=("seaweedfs", "moto"), default="seaweedfs")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--puts", type=int, default=256)
    parser.add_argument("--size", type=int, default=1 << 20, help="bytes per object")
    args = parser.parse_args(argv)
    from bench._ingest import ingest_location

    with ingest_location(args.server) as loc:
        rows = asyncio.run(_measure(loc, args.rounds, args.puts, args.size))
    print(
        f"{args.server}: {args.puts} PUTs of {args.size} bytes, {INFLIGHT} in flight, "
        f"{args.rounds} rounds (median [min-max]; load average {os.getloadavg()[0]:.1f})"
    )
    for name, samples in rows.items():
        loop_ms = [c / args.puts * 1e3 for _, c, _ in samples]
        proc_ms = [p / args.puts * 1e3 for _, _, p in samples]
        mbps = [args.puts * args.size / w / 1e6 for w, _, _ in samples]

        def fmt(xs: list[float], digits: int = 2) -> str:
            return f"{statistics.median(xs):.{digits}f} [{min(xs):.{digits}f}-{max(xs):.{digits}f}]"

        print(
            f"  {name:<18} loop-thread CPU/PUT {fmt(loop_ms)} ms   process CPU/PUT "
            f"{fmt(proc_ms)} ms   {fmt(mbps, 0)} MB/s"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
