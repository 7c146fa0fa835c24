"""Run the Azurite blob emulator on 127.0.0.1 for tests.

Azurite comes from npm, pinned and installed into the project-local
``.cache/npm`` by ``scripts/install-azurite.sh``; ``$ASYNCARR_AZURITE_BLOB``
may point at another ``azurite-blob`` executable.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from asyncarr.testing._procs import ServerProcess, free_port, run_server, wait_for_http

__all__ = [
    "AZURITE_ACCOUNT",
    "AZURITE_KEY",
    "AzuriteServer",
    "azurite_connection_string",
    "find_azurite_blob",
    "new_container_name",
    "start_azurite",
]

AZURITE_ACCOUNT = "devstoreaccount1"
"""The emulator's built-in account."""
AZURITE_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)
"""The emulator's well-known (public) account key."""
INSTALL_SCRIPT = "scripts/install-azurite.sh"
_ENV_EXECUTABLE = "ASYNCARR_AZURITE_BLOB"


def _repo_root() -> Path:
    return Path(__file__).resolve().parents[2]


def find_azurite_blob() -> str:
    """Path of the ``azurite-blob`` executable; ``FileNotFoundError`` says how to install it."""
    override = os.environ.get(_ENV_EXECUTABLE)
    candidate = (
        Path(override)
        if override
        else (_repo_root() / ".cache" / "npm" / "node_modules" / ".bin" / "azurite-blob")
    )
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return str(candidate)
    source = f"${_ENV_EXECUTABLE}" if override else "the project-local npm cache"
    raise FileNotFoundError(
        f"Azurite (azurite-blob) not found at {candidate} ({source}). The Azure store tests "
        f"need it: run `{INSTALL_SCRIPT}` (installs azurite@3.35.0 into .cache/npm; needs "
        f"Node.js and npm) or set ${_ENV_EXECUTABLE} to an azurite-blob executable."
    )


def azurite_connection_string(account_url: str) -> str:
    """A connection string for the emulator's account at ``account_url``."""
    return (
        f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};"
        f"AccountKey={AZURITE_KEY};BlobEndpoint={account_url};"
    )


def new_container_name(tag: str = "t") -> str:
    """A fresh, valid container name."""
    return f"{tag}{uuid.uuid4().hex[:24]}"


@dataclass(frozen=True)
class AzuriteServer:
    """A running Azurite blob service (account ``devstoreaccount1``)."""

    process: ServerProcess = field(repr=False)
    account_url: str
    """``http://127.0.0.1:<port>/devstoreaccount1``"""
    account_name: str = AZURITE_ACCOUNT
    account_key: str = field(default=AZURITE_KEY, repr=False)

    @property
    def connection_string(self) -> str:
        return azurite_connection_string(self.account_url)


@contextlib.contextmanager
def start_azurite(executable: str | None = None) -> Iterator[AzuriteServer]:
    """Run ``azurite-blob`` in memory on a free loopback port until the block ends."""
    exe = executable or find_azurite_blob()
    port = free_port()
    cmd = [
        exe, "--blobHost", "127.0.0.1", "--blobPort", str(port), "--inMemoryPersistence",
        "--skipApiVersionCheck", "--disableTelemetry", "--silent",
    ]  # fmt: skip
    account_url = f"http://127.0.0.1:{port}/{AZURITE_ACCOUNT}"

    def ready(server: ServerProcess) -> None:
        # Any HTTP answer (400/403 without auth) means the service is up.
        wait_for_http(f"{account_url}?comp=list", timeout=60, ok=lambda s: s < 500,
                      proc=server.proc)  # fmt: skip

    with run_server(cmd, port=port, ready=ready, name="azurite") as proc:
        yield AzuriteServer(proc, account_url)
