"""Azure Blob store configuration: storage options, connection strings and ``az://`` /
``abfs://`` URLs turned into where the account is and how to authenticate."""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from asyncarr.abc import normalize_prefix
from asyncarr.config import StoreLimits
from asyncarr.errors import ConfigError, InvalidKeyError

__all__ = [
    "AzureConfig",
    "check_container",
    "parse_azure_url",
    "resolve_config",
    "scrub",
]

_ENV_CONNECTION_STRING = "AZURE_STORAGE_CONNECTION_STRING"
_DEV_ACCOUNT = "devstoreaccount1"
# The public, documented key of the local storage emulator (UseDevelopmentStorage=true).
_DEV_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)
_CRED_KEYS = ("account_name", "account_key", "sas_token", "credential")
_OPTIONS = frozenset(
    {"connection_string", "account_url", "anon", "limits", "timeouts", *_CRED_KEYS}
)

_CONTAINER_RE = re.compile(r"^(?:\$root|\$web|\$logs|[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9])){2,62})$")
# Credentials that can show up in SDK messages: SAS signatures, keys, auth headers.
_SECRET_RE = re.compile(
    r"(?i)(sig=|AccountKey=|SharedAccessSignature=|SharedKey(?:Lite)? [^:\s]+:|Bearer )"
    r"[^&;\s'\"<>]+"
)


def scrub(text: str, secrets: Sequence[str]) -> str:
    """``text`` with credentials (known secrets, SAS signatures, keys) masked."""
    for secret in secrets:
        if secret and len(secret) >= 6:
            text = text.replace(secret, "***")
    return _SECRET_RE.sub(r"\1***", text)


# -- configuration ------------------------------------------------------------------------
@dataclass(frozen=True, repr=False)
class AzureConfig:
    """Where the account is and how to authenticate (never printed: holds secrets)."""

    account_url: str  # blob service URL without query, e.g. https://acct.blob.core.windows.net
    account_name: str | None
    credential: Any
    fingerprint: tuple[object, ...]  # identifies (endpoint, credential) without the secret
    secrets: tuple[str, ...]  # strings to mask in error messages
    connect_timeout: float
    read_timeout: float


def _parse_connection_string(conn: str) -> tuple[str, str | None, str | None, str | None]:
    """``(account_url, account_name, account_key, sas_token)`` from a connection string."""
    fields: dict[str, str] = {}
    for part in filter(str.strip, conn.split(";")):
        name, sep, value = part.partition("=")
        if not sep:
            raise ConfigError("malformed Azure connection string: expected Key=Value;... pairs")
        fields[name.strip().lower()] = value.strip()
    if fields.get("usedevelopmentstorage", "").lower() == "true":
        return f"http://127.0.0.1:10000/{_DEV_ACCOUNT}", _DEV_ACCOUNT, _DEV_KEY, None
    account = fields.get("accountname")
    url = fields.get("blobendpoint")
    if not url and not account:
        raise ConfigError("Azure connection string names neither BlobEndpoint nor AccountName")
    protocol = fields.get("defaultendpointsprotocol", "https")
    url = url or f"{protocol}://{account}.blob.{fields.get('endpointsuffix', 'core.windows.net')}"
    return url, account, fields.get("accountkey"), fields.get("sharedaccesssignature")


def _account_from_url(account_url: str) -> str | None:
    """The account an endpoint URL names (emulators: ``http://127.0.0.1:10000/<account>``)."""
    parts = urlsplit(account_url)
    host = parts.hostname or ""
    with contextlib.suppress(ValueError):
        if host == "localhost" or ipaddress.ip_address(host):
            return parts.path.strip("/").split("/", 1)[0] or None
    return host.split(".", 1)[0] or None


def _timeouts(value: object, default_read: float | None) -> tuple[float, float]:
    """``(connect, read)`` seconds from ``timeouts`` (seconds or a connect/read mapping)."""
    read = default_read if default_read is not None else 300.0
    spec: Mapping[str, Any] = (
        value if isinstance(value, Mapping) else {} if value is None else {"read": value}
    )
    out = (spec.get("connect", min(10.0, spec.get("read", read))), spec.get("read", read))
    if set(spec) - {"connect", "read"} or any(
        isinstance(v, bool) or not isinstance(v, int | float) or v <= 0 for v in out
    ):
        raise ConfigError(f"storage_options['timeouts'] must be seconds > 0 or a mapping "
                          f"{{'connect': s, 'read': s}}, got {value!r}")  # fmt: skip
    return float(out[0]), float(out[1])


def resolve_config(options: Mapping[str, Any], limits: StoreLimits) -> AzureConfig:
    """Turn storage options (and ``$AZURE_STORAGE_CONNECTION_STRING``) into a :class:`AzureConfig`."""
    if unknown := set(options) - _OPTIONS:
        raise ConfigError(f"unknown storage_options for az://: {sorted(unknown)}")
    opt = {k: v for k, v in options.items() if v is not None and k not in ("limits", "timeouts")}
    anon = opt.pop("anon", False)
    if not isinstance(anon, bool):
        raise ConfigError(f"storage_options['anon'] must be a bool, got {anon!r}")
    if bad := sorted(k for k, v in opt.items() if k != "credential" and not isinstance(v, str)):
        raise ConfigError(f"storage_options {bad} must be strings")
    explicit = {"account_url", "account_key", "sas_token", "credential"} & set(opt)
    conn = opt.get("connection_string")
    if conn is None and not explicit and not anon:
        conn = os.environ.get(_ENV_CONNECTION_STRING) or None
    name, key, sas, credential = (opt.get(k) for k in _CRED_KEYS)
    url: str | None
    if conn is not None:
        if explicit or anon:
            raise ConfigError(
                "connection_string cannot be combined with account_url, account_key, "
                f"sas_token, credential or anon (got {sorted(explicit) or ['anon']})"
            )
        url, conn_name, key, sas = _parse_connection_string(conn)
        name = name or conn_name
    elif not (url := opt.get("account_url") or (name and f"https://{name}.blob.core.windows.net")):
        raise ConfigError(
            "no Azure account: pass storage_options connection_string, account_url "
            "or account_name (or set $AZURE_STORAGE_CONNECTION_STRING)"
        )
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(
            "Azure account_url must be http(s)://, e.g. https://acct.blob.core.windows.net"
        )
    url = f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"
    name = name or _account_from_url(url)
    given = [n for n, v in zip(_CRED_KEYS[1:], (key, sas or parts.query, credential)) if v]
    if len(given) + anon != 1:
        problem = "more than one Azure credential" if given else "no Azure credential"
        raise ConfigError(
            f"{problem} (got {given + ['anon'] * anon}): give one of account_key, sas_token (or "
            "a SAS query in account_url), credential, anon=True or a connection_string"
        )
    if isinstance(credential, str):  # a bare string credential is a SAS token
        sas, credential = credential, None
    elif isinstance(credential, Mapping):  # {"account_name": ..., "account_key": ...}
        name, key = credential.get("account_name", name), credential.get("account_key")
        credential = None
    sas = sas or parts.query
    secrets: tuple[str, ...] = ()
    fingerprint: tuple[object, ...] = ("anon",)
    if key:
        if not name:
            raise ConfigError("account_key needs account_name (or an account_url naming it)")
        credential = {"account_name": name, "account_key": key}
        fingerprint, secrets = ("key", name, hashlib.sha256(key.encode()).hexdigest()), (key,)
    elif sas:
        credential = sas = sas.lstrip("?")
        sig = re.search(r"(?:^|&)sig=([^&]+)", sas)
        secrets = (sas, sig.group(1)) if sig else (sas,)
        fingerprint = ("sas", hashlib.sha256(sas.encode()).hexdigest())
    elif credential is not None:
        fingerprint = ("object", id(credential))
    connect, read = _timeouts(options.get("timeouts"), limits.retry.request_timeout)
    return AzureConfig(url, name, credential, (url, *fingerprint), secrets, connect, read)


def parse_azure_url(url: str) -> tuple[str, str, str | None, str | None]:
    """``(container, prefix, account, account_url)`` from an ``az://`` / ``abfs://`` URL.

    ``abfs://container@account.dfs.core.windows.net/path`` names the account
    (and cloud) too; the blob endpoint of that account is returned then.
    """
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("az", "abfs", "abfss"):
        raise ConfigError(f"not an Azure URL (az:// or abfs://): {url!r}")
    if parts.query or parts.fragment:
        raise ConfigError(f"Azure URLs take no query or fragment: {url!r}")
    container, _, host = parts.netloc.partition("@")
    account = account_url = None
    if host:
        labels = host.lower().split(".")
        account = labels[0]
        if len(labels) > 2 and labels[1] in ("dfs", "blob"):
            account_url = f"https://{account}.blob.{'.'.join(labels[2:])}"
        elif len(labels) > 1:
            raise ConfigError(
                f"expected container@account.dfs.core.windows.net in Azure URL, got {url!r}"
            )
    if not container:
        raise ConfigError(f"Azure URL needs a container, e.g. az://container/prefix (got {url!r})")
    check_container(container)
    try:
        prefix = normalize_prefix(parts.path.strip("/"))
    except InvalidKeyError as exc:
        raise ConfigError(f"invalid path in Azure URL {url!r}: {exc}") from exc
    return container, prefix, account, account_url


def check_container(container: str) -> None:
    if not _CONTAINER_RE.match(container):
        raise ConfigError(
            f"invalid Azure container name {container!r}: 3-63 characters of lowercase "
            "letters, digits and single hyphens, starting and ending with a letter or digit"
        )
