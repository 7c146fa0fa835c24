"""The S3 store's clients: aiobotocore (imported lazily) and the lean request path, shared
per (settings, event loop).

One aiobotocore client is shared by every store with the same endpoint, region,
credentials, addressing style and client settings *in the same event loop* (an aiohttp
session belongs to one loop), reference-counted by :mod:`._client_pool`. Beside it sits
the lean path (:mod:`._s3_lean`, :mod:`._s3_write`): value reads and writes leave
botocore's per-request pipeline once botocore has shown the way to a bucket.
"""

from __future__ import annotations

import functools
import hashlib
import threading
import types
from dataclasses import dataclass, field, fields
from typing import Any

from asyncarr.errors import MissingExtraError
from asyncarr.stores._client_pool import Lease, LoopClientPool
from asyncarr.stores._s3_lean import LeanReader
from asyncarr.stores._s3_logging import mask_session_tokens
from asyncarr.stores._s3_write import LeanWriter

__all__ = ["ClientLease", "ClientSettings", "S3Clients", "client_pool", "sdk"]


@functools.cache
def sdk() -> Any:
    """aiobotocore and friends, imported on first use; a missing extra is a clear error."""
    try:
        import aiohttp
        import botocore.exceptions
        from aiobotocore.config import AioConfig
        from aiobotocore.session import AioSession
        from botocore import UNSIGNED
    except ImportError as exc:
        raise MissingExtraError("the S3 store", "s3", "aiobotocore") from exc
    return types.SimpleNamespace(
        session_cls=AioSession,
        config_cls=AioConfig,
        errors=botocore.exceptions,
        unsigned=UNSIGNED,
        aiohttp=aiohttp,
    )


@dataclass(frozen=True)
class ClientSettings:
    """Everything that decides which shared client a store uses.

    Secrets are excluded from ``repr`` and only their fingerprint is hashed
    into the cache key.
    """

    endpoint_url: str | None
    region_name: str | None
    profile: str | None
    anon: bool
    addressing_style: str
    connect_timeout: float
    read_timeout: float
    max_pool_connections: int
    lean_reads: bool = True
    lean_writes: bool = True
    aws_access_key_id: str | None = field(default=None, repr=False)
    aws_secret_access_key: str | None = field(default=None, repr=False)
    aws_session_token: str | None = field(default=None, repr=False)

    def cache_key(self) -> tuple[object, ...]:
        public = tuple(getattr(self, f.name) for f in fields(self) if f.repr)
        secret = repr((self.aws_access_key_id, self.aws_secret_access_key, self.aws_session_token))
        return (*public, hashlib.sha256(secret.encode()).hexdigest())

    async def open_client(self) -> S3Clients:
        """New clients for these settings, bound to the running loop."""
        s3 = await self._open_botocore()
        lean = None
        if self.lean_reads or self.lean_writes:
            lean = LeanReader(
                s3,
                connections=self.max_pool_connections,
                connect_timeout=self.connect_timeout,
                read_timeout=self.read_timeout,
            )
        return S3Clients(
            s3,
            lean,
            reader=lean if self.lean_reads else None,
            writer=LeanWriter(lean) if lean is not None and self.lean_writes else None,
        )

    async def _open_botocore(self) -> Any:
        """A new aiobotocore client for these settings, bound to the running loop."""
        found = sdk()
        config_kwargs: dict[str, Any] = {
            "retries": {"total_max_attempts": 1, "mode": "standard"},
            "connect_timeout": self.connect_timeout,
            "read_timeout": self.read_timeout,
            "max_pool_connections": self.max_pool_connections,
            "warm_up_loader_caches": True,
        }
        if self.addressing_style != "auto":
            config_kwargs["s3"] = {"addressing_style": self.addressing_style}
        if self.anon:
            config_kwargs["signature_version"] = found.unsigned
        # one session per thread and profile: it caches the parsed service model
        sessions: dict[str | None, Any] = _thread_state.__dict__.setdefault("sessions", {})
        if self.profile not in sessions:
            sessions[self.profile] = found.session_cls(profile=self.profile)
        session = sessions[self.profile]
        creds: dict[str, Any] = {}
        if not self.anon and self.aws_access_key_id is not None:
            creds = {
                "aws_access_key_id": self.aws_access_key_id,
                "aws_secret_access_key": self.aws_secret_access_key,
                "aws_session_token": self.aws_session_token,
            }
        mask_session_tokens(self.aws_session_token)  # botocore logs them at DEBUG level
        creator = session.create_client(
            "s3",
            region_name=self.region_name,
            endpoint_url=self.endpoint_url,
            config=found.config_cls(**config_kwargs),
            **creds,
        )
        return await creator.__aenter__()


@dataclass(eq=False)
class S3Clients:
    """What one pool entry holds: the aiobotocore client and, unless disabled, the lean
    path that reads and writes values once botocore has shown it the way."""

    s3: Any
    lean: LeanReader | None
    """Routes and connections of the lean path (``None``: every call goes to botocore)."""
    reader: LeanReader | None = None
    """:attr:`lean` where value reads take it (``lean_reads``)."""
    writer: LeanWriter | None = None
    """Value writes and deletes over :attr:`lean` (``lean_writes``)."""


async def _close_client(clients: S3Clients) -> None:
    try:
        if clients.lean is not None:
            await clients.lean.aclose()
    finally:
        await clients.s3.__aexit__(None, None, None)


client_pool: LoopClientPool[tuple[object, ...], S3Clients] = LoopClientPool(
    "S3", close=_close_client
)
ClientLease = Lease[tuple[object, ...], S3Clients]
_thread_state = threading.local()
