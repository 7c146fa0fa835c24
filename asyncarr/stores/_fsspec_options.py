"""``storage_options`` as fsspec spells them (s3fs, gcsfs, adlfs), for the built-in stores.

Users of zarr-python, xarray and dask bring fsspec's option names. Where a name has an
exact asyncarr equivalent it is translated (``key`` -> ``aws_access_key_id``,
``client_kwargs={"endpoint_url": ...}`` -> ``endpoint_url``, ...); where asyncarr has no
such setting, or another way to say it, a :class:`ConfigError` names the asyncarr
spelling to use instead. Giving both spellings with different values is an error.
Values are never shown in messages (they may be secrets).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from asyncarr.errors import ConfigError

__all__ = ["translate_fsspec_options"]

_S3_RENAMES = {
    "key": "aws_access_key_id",
    "username": "aws_access_key_id",
    "secret": "aws_secret_access_key",
    "password": "aws_secret_access_key",
    "token": "aws_session_token",
}
_S3_CLIENT_KWARGS = {
    "endpoint_url": "endpoint_url",
    "region_name": "region_name",
    "aws_access_key_id": "aws_access_key_id",
    "aws_secret_access_key": "aws_secret_access_key",
    "aws_session_token": "aws_session_token",
}
_S3_CONFIG_KWARGS = {"connect_timeout": "connect_timeout", "read_timeout": "read_timeout"}
_S3_REFUSED = {
    "use_ssl": "put the scheme in endpoint_url instead (endpoint_url='http://host:port')",
    "requester_pays": "asyncarr does not send requester-pays requests",
    "s3_additional_kwargs": "asyncarr sends no extra request parameters",
    "version_aware": "asyncarr reads the current version of each object",
}
_AZURE_REFUSED = {
    name: "pass a credential object instead: storage_options={'account_name': ..., "
    "'credential': azure.identity.aio.ClientSecretCredential(tenant_id, client_id, "
    "client_secret)}"
    for name in ("client_id", "client_secret", "tenant_id")
}
_GCS_TOKENS = {"cloud": "google_default"}
"""gcsfs ``token`` values with another asyncarr spelling."""
_GCS_REFUSED_TOKENS = {
    "browser": "log in with 'gcloud auth application-default login' and use token='google_default'",
    "cache": "use token='google_default' (application default credentials) or a key file path",
}


def _put(out: dict[str, Any], scheme: str, name: str, value: Any, spelled: str) -> None:
    """Set ``out[name]`` from fsspec's ``spelled``, refusing a different value given
    under asyncarr's own name too."""
    if name in out and out[name] != value:
        raise ConfigError(
            f"storage_options for {scheme}:// give both {spelled!r} (fsspec's spelling) and "
            f"{name!r} with different values; give {name!r} only"
        )
    out[name] = value


def _refuse(scheme: str, name: str, advice: str) -> ConfigError:
    return ConfigError(
        f"storage_options[{name!r}] (an fsspec option) has no asyncarr equivalent for "
        f"{scheme}://: {advice}"
    )


def _nested(
    scheme: str, out: dict[str, Any], option: str, value: Any, renames: Mapping[str, str]
) -> None:
    """Translate a nested fsspec mapping (``client_kwargs``, ``config_kwargs``)."""
    if not isinstance(value, Mapping):
        raise ConfigError(f"storage_options[{option!r}] must be a mapping, got {value!r}")
    for key, item in value.items():
        if option == "config_kwargs" and key == "s3" and isinstance(item, Mapping):
            for s3_key, s3_item in item.items():
                if s3_key != "addressing_style":
                    raise _refuse(scheme, f"{option}['s3'][{s3_key!r}]", _s3_known())
                _put(
                    out, scheme, "addressing_style", s3_item, f"{option}['s3']['addressing_style']"
                )
            continue
        target = renames.get(key)
        if target is None:
            raise _refuse(scheme, f"{option}[{key!r}]", _s3_known())
        _put(out, scheme, target, item, f"{option}[{key!r}]")


def _s3_known() -> str:
    return (
        "asyncarr's S3 options are endpoint_url, region_name, aws_access_key_id, "
        "aws_secret_access_key, aws_session_token, profile, anon, addressing_style, "
        "connect_timeout, read_timeout, limits, ... (see docs/stores.md)"
    )


def _s3(options: Mapping[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in options.items() if k not in _S3_RENAMES}
    for name in ("client_kwargs", "config_kwargs"):
        out.pop(name, None)
    for name, value in options.items():
        if name in _S3_REFUSED:
            raise _refuse("s3", name, _S3_REFUSED[name])
        if name in _S3_RENAMES and value is not None:
            _put(out, "s3", _S3_RENAMES[name], value, name)
        elif name == "client_kwargs":
            _nested("s3", out, name, value, _S3_CLIENT_KWARGS)
        elif name == "config_kwargs":
            _nested("s3", out, name, value, _S3_CONFIG_KWARGS)
    return out


def _gcs(options: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(options)
    token = out.get("token")
    if isinstance(token, str):
        if token in _GCS_REFUSED_TOKENS:
            raise _refuse("gs", f"token={token!r}", _GCS_REFUSED_TOKENS[token])
        out["token"] = _GCS_TOKENS.get(token, token)
    return out


def _azure(options: Mapping[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in options.items() if k != "account_host"}
    for name in options:
        if name in _AZURE_REFUSED:
            raise _refuse("az", name, _AZURE_REFUSED[name])
    host = options.get("account_host")
    if host is not None:
        _put(out, "az", "account_url", f"https://{host}", "account_host")
    return out


_BY_SCHEME: dict[str, Callable[[Mapping[str, Any]], dict[str, Any]]] = {
    "s3": _s3,
    "gs": _gcs,
    "gcs": _gcs,
    "az": _azure,
    "abfs": _azure,
    "abfss": _azure,
}


def translate_fsspec_options(scheme: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """``options`` with fsspec's spellings turned into asyncarr's for ``scheme``'s
    built-in store (unchanged for other schemes)."""
    translate = _BY_SCHEME.get(scheme)
    return translate(options) if translate is not None else dict(options)
