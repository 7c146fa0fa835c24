"""S3 on loopback for the benchmarks: servers, uploads and the raw-GET baseline.

moto is started as its plain threaded server (``python -m moto.server``): the
test fixture's request serialisation, which makes conditional writes atomic,
would cap read concurrency and is not what a user runs. SeaweedFS comes from
:func:`asyncarr.testing._servers_s3.seaweedfs_s3_server`. Either server can
sit behind :func:`bench._proxy.latency_proxy` to add a per-request delay.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from bench._data import Dataset, chunk_files

__all__ = [
    "S3_CONCURRENCY",
    "S3Location",
    "RawGetter",
    "object_keys",
    "s3_server",
    "upload_dataset",
]

S3_CONCURRENCY = 32
"""Requests in flight for every S3 reader (asyncarr, tensorstore, raw GETs)."""
REGION = "us-east-1"


@dataclass(frozen=True)
class S3Location:
    """An array in a bucket and how to reach it (credentials never printed)."""

    server: str
    endpoint: str
    bucket: str
    prefix: str
    access_key: str = field(repr=False)
    secret_key: str = field(repr=False)
    region: str = REGION

    def via(self, endpoint: str) -> S3Location:
        """The same array reached through another endpoint (a latency proxy)."""
        return replace(self, endpoint=endpoint)

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"

    def asyncarr_options(self) -> dict[str, Any]:
        from asyncarr import StoreLimits

        return {
            "endpoint_url": self.endpoint,
            "aws_access_key_id": self.access_key,
            "aws_secret_access_key": self.secret_key,
            "region_name": self.region,
            "addressing_style": "path",
            "limits": StoreLimits(max_concurrency=S3_CONCURRENCY),
        }

    def tensorstore_kvstore(self) -> dict[str, Any]:
        return {
            "driver": "s3",
            "bucket": self.bucket,
            "path": self.prefix.rstrip("/") + "/",
            "endpoint": self.endpoint,
            "aws_region": self.region,
            "aws_credentials": {"type": "environment"},
            "context": {"s3_request_concurrency": {"limit": S3_CONCURRENCY}},
        }

    def client(self, **config: Any) -> Any:
        """A synchronous botocore client (setup only, never timed)."""
        from botocore.config import Config
        from botocore.session import get_session

        return get_session().create_client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=self.region,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            config=Config(s3={"addressing_style": "path"}, **config),
        )


@contextlib.contextmanager
def _moto() -> Iterator[tuple[str, str, str]]:
    from asyncarr.testing._procs import free_port, run_server, wait_for_http

    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]

    def ready(proc: Any) -> None:
        wait_for_http(f"{endpoint}/", timeout=60, proc=proc.proc)

    with run_server(cmd, port=port, ready=ready, name="bench-moto"):
        yield endpoint, f"AKIABENCH{secrets.token_hex(6).upper()}", secrets.token_urlsafe(24)


@contextlib.contextmanager
def _seaweedfs() -> Iterator[tuple[str, str, str]]:
    from asyncarr.testing._servers_s3 import seaweedfs_s3_server

    with seaweedfs_s3_server() as server:
        yield server.endpoint, server.access_key, server.secret_key


@contextlib.contextmanager
def s3_server(name: str) -> Iterator[tuple[str, str, str]]:
    """(endpoint, access key, secret key) of a fresh ``moto`` or ``seaweedfs`` server.

    A missing server package or binary is a loud error, never a silent skip.
    """
    factory = {"moto": _moto, "seaweedfs": _seaweedfs}[name]
    with factory() as found:
        yield found


def upload_dataset(
    server: str, endpoint: str, access_key: str, secret_key: str, ds: Dataset
) -> S3Location:
    """Copy the dataset's files byte for byte into a fresh bucket."""
    loc = S3Location(
        server=server,
        endpoint=endpoint,
        bucket=f"bench-{secrets.token_hex(4)}",
        prefix=ds.name,
        access_key=access_key,
        secret_key=secret_key,
    )
    client = loc.client(max_pool_connections=16, retries={"total_max_attempts": 5})
    client.create_bucket(Bucket=loc.bucket)
    root = ds.path
    files = [root / m for m in ds.metadata_files()] + list(chunk_files(root, ds))

    def put(p: Path) -> None:
        key = f"{loc.prefix}/{p.relative_to(root).as_posix()}"
        client.put_object(Bucket=loc.bucket, Key=key, Body=p.read_bytes())

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(put, files))
    return loc


def object_keys(loc: S3Location, ds: Dataset) -> list[str]:
    """The chunk object keys of the uploaded dataset (metadata excluded)."""
    return [f"{loc.prefix}/{p.relative_to(ds.path).as_posix()}" for p in chunk_files(ds.path, ds)]


class RawGetter:
    """GETs every chunk object with aiobotocore, ``concurrency`` requests in flight.

    The client lives on the caller's event loop (``runner``) across
    repetitions, so its connection pool stays warm like the other tools'.
    """

    def __init__(
        self,
        runner: asyncio.Runner,
        loc: S3Location,
        keys: list[str],
        concurrency: int = S3_CONCURRENCY,
    ) -> None:
        self.runner = runner
        self.loc = loc
        self.keys = keys
        self.concurrency = concurrency
        self._stack = contextlib.AsyncExitStack()
        self._client: Any = runner.run(self._open())

    async def _open(self) -> Any:
        from aiobotocore.config import AioConfig
        from aiobotocore.session import get_session

        config = AioConfig(
            max_pool_connections=self.concurrency,
            s3={"addressing_style": "path"},
            retries={"total_max_attempts": 1},
        )
        return await self._stack.enter_async_context(
            get_session().create_client(
                "s3",
                endpoint_url=self.loc.endpoint,
                region_name=self.loc.region,
                aws_access_key_id=self.loc.access_key,
                aws_secret_access_key=self.loc.secret_key,
                config=config,
            )
        )

    async def _get_all(self) -> int:
        sem = asyncio.Semaphore(self.concurrency)
        client = self._client

        async def get(key: str) -> int:
            async with sem:
                resp = await client.get_object(Bucket=self.loc.bucket, Key=key)
                async with resp["Body"] as body:
                    return len(await body.read())

        sizes = await asyncio.gather(*(get(k) for k in self.keys))
        if min(sizes) <= 0:
            raise RuntimeError("raw GET returned an empty object")
        return sum(sizes)

    def get_all(self) -> int:
        """GET every key; returns the bytes received."""
        return self.runner.run(self._get_all())

    def close(self) -> None:
        self.runner.run(self._stack.aclose())
