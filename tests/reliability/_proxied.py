"""Stores of every server-backed kind reached through a fault proxy (imported by module
name by the hostile-server tests).

:func:`proxied_store` starts a :class:`~asyncarr.testing.FaultProxy` in front of the
real server of ``kind`` and returns a :class:`Proxied`: where to write directly
(:attr:`Proxied.direct_url`, honest) and where to read through the proxy
(:attr:`Proxied.url`), whose :meth:`~asyncarr.testing.FaultProxy.hostile` rules then
decide what the store gets.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import pytest

from asyncarr.testing._fixtures_azure import create_container, delete_container
from asyncarr.testing._fixtures_gcs import new_gcs_bucket
from asyncarr.testing._proxy import FaultProxy
from asyncarr.testing._servers_azure import azurite_connection_string

KINDS = ("s3", "s3-botocore", "gcs", "azure", "http")
"""Every server-backed store kind the proxy can stand in front of (``s3``: the lean read
path, ``s3-botocore``: every read through botocore)."""


@dataclass
class Proxied:
    kind: str
    proxy: FaultProxy
    direct_url: str
    """Where to write the test data (not through the proxy; a local folder for HTTP)."""
    direct_options: dict[str, Any]
    url: str
    """The same place, through the proxy."""
    options: dict[str, Any] = field(default_factory=dict)

    def with_limits(self, limits: Any) -> dict[str, Any]:
        """:attr:`options` with ``limits`` (a mapping or a StoreLimits)."""
        return {**self.options, "limits": limits}


def _port(url: str) -> int:
    port = urlsplit(url).port
    assert port is not None, url
    return port


@contextlib.contextmanager
def proxied_store(kind: str, request: pytest.FixtureRequest) -> Iterator[Proxied]:
    """A :class:`Proxied` place of ``kind`` (one of :data:`KINDS`), cleaned up afterwards."""
    if kind in ("s3", "s3-botocore"):
        server = request.getfixturevalue("moto_s3_server")
        bucket = server.create_bucket()
        extra = {"lean_reads": False} if kind == "s3-botocore" else {}
        with FaultProxy(_port(server.endpoint)) as proxy:
            try:
                yield Proxied(
                    kind,
                    proxy,
                    f"s3://{bucket}/data",
                    server.storage_options(),
                    f"s3://{bucket}/data",
                    server.storage_options(endpoint_url=proxy.url, **extra),
                )
            finally:
                server.delete_bucket(bucket)
    elif kind == "gcs":
        server = request.getfixturevalue("gcs_server")
        bucket = new_gcs_bucket(server)
        with FaultProxy(_port(server.endpoint)) as proxy:
            yield Proxied(
                kind,
                proxy,
                f"gs://{bucket}/data",
                {"endpoint": server.endpoint, "anon": True},
                f"gs://{bucket}/data",
                {"endpoint": proxy.url, "anon": True},
            )
    elif kind == "azure":
        server = request.getfixturevalue("azurite_server")
        container = f"h{uuid.uuid4().hex[:20]}"
        create_container(server, container)
        account = urlsplit(server.account_url).path
        try:
            with FaultProxy(_port(server.account_url)) as proxy:
                yield Proxied(
                    kind,
                    proxy,
                    f"az://{container}/data",
                    {"connection_string": server.connection_string},
                    f"az://{container}/data",
                    {"connection_string": azurite_connection_string(proxy.url + account)},
                )
        finally:
            delete_container(server, container)
    elif kind == "http":
        location = request.getfixturevalue("http_location")
        server = request.getfixturevalue("http_server")
        with FaultProxy(server.port) as proxy:
            yield Proxied(
                kind,
                proxy,
                str(location.local_dir),
                {},
                proxy.url + urlsplit(location.url).path,
                {},
            )
    else:
        raise ValueError(f"unknown kind {kind!r}")
