"""GCS credentials: where access tokens come from, and fetching them in one attempt."""

from __future__ import annotations

import functools
import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from asyncarr.errors import ConfigError

__all__ = [
    "CREDENTIALS_ENV",
    "Credentials",
    "NoToken",
    "one_attempt_token",
    "resolve_credentials",
]

CREDENTIALS_ENV = "GOOGLE_APPLICATION_CREDENTIALS"


@dataclass(frozen=True)
class Credentials:
    """Where access tokens come from. Never printed: only :attr:`kind` is."""

    kind: str  # "anonymous" | "default" | "file" (a path) | "info" (JSON text) | "token"
    source: Any = None

    @property
    def cache_key(self) -> tuple[str, str]:
        """Identifies the credentials for session sharing (holds no secret)."""
        if self.kind == "info":
            return (self.kind, hashlib.sha256(str(self.source).encode()).hexdigest())
        return (self.kind, str(id(self.source)) if self.kind == "token" else str(self.source))


def _check_key_file(path: str, origin: str) -> Credentials:
    """File credentials, once ``path`` proved to be a Google credentials JSON file."""
    problem = ""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        if not isinstance(data, dict) or "type" not in data:
            problem = "has no 'type' field (expected a service-account or authorized-user JSON)"
    except OSError as exc:
        problem = f"cannot be read ({exc.strerror or type(exc).__name__})"
    except ValueError:
        problem = "is not valid JSON"
    if problem:
        raise ConfigError(f"the GCS credentials file {path!r} given by {origin} {problem}")
    return Credentials("file", os.path.abspath(path))


def resolve_credentials(credentials: object, anon: bool) -> Credentials:
    if anon:
        return Credentials("anonymous")
    if credentials is None or credentials in ("google_default", "default"):
        env_path = os.environ.get(CREDENTIALS_ENV)
        return _check_key_file(env_path, CREDENTIALS_ENV) if env_path else Credentials("default")
    if isinstance(credentials, str | os.PathLike):
        return _check_key_file(os.fspath(credentials), "storage_options")
    if isinstance(credentials, Mapping):
        if "type" not in credentials:
            raise ConfigError("GCS credentials given as a dict need a 'type' field")
        return Credentials("info", json.dumps(dict(credentials), sort_keys=True))
    if callable(getattr(credentials, "get", None)):
        return Credentials("token", credentials)
    raise ConfigError(
        "GCS credentials must be a path to a JSON key file, a dict, 'anon', "
        f"'google_default' or a gcloud.aio.auth.Token; got {type(credentials).__name__}"
    )


@functools.cache
def one_attempt_token(token_cls: type) -> type:
    """``token_cls`` fetching its access token in one attempt: gcloud-aio retries five
    times over seconds, also when the token endpoint refuses for good; asyncarr's runtime
    retries what is transient (:meth:`~asyncarr.stores._gcs.GCSStore._ensure_token`)."""
    from tenacity import stop_after_attempt

    once = token_cls.acquire_access_token.retry_with(stop=stop_after_attempt(1))  # type: ignore[attr-defined]
    return type("OneAttemptToken", (token_cls,), {"acquire_access_token": once})


class NoToken:
    """Stands in for a Token on anonymous clients so none is ever created."""

    async def get(self) -> None:
        return None
