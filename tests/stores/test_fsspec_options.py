"""What zarr-python and fsspec users type first: fsspec's storage_options spellings are
translated (or refused with asyncarr's spelling), mistyped URLs and bare zip paths get
the fix, and errors say where (the store's URL or directory), never "the store root"."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import asyncarr.sync as az
from asyncarr.errors import ConfigError, ContainsArrayError, NodeNotFoundError
from asyncarr.stores import register_store, store_from_url, unregister_store
from asyncarr.stores._fsspec_options import translate_fsspec_options
from asyncarr.testing._servers_s3 import S3TestServer

SECRET = "fsspec-secret-9d1e"


@pytest.mark.servers
def test_s3fs_spellings_open_a_real_bucket(moto_s3_server: S3TestServer) -> None:
    server = moto_s3_server
    bucket = server.create_bucket()
    try:
        s3fs_style = {
            "key": server.access_key,
            "secret": server.secret_key,
            "client_kwargs": {"endpoint_url": server.endpoint, "region_name": server.region},
            "config_kwargs": {"s3": {"addressing_style": "path"}, "read_timeout": 30},
        }
        url = f"s3://{bucket}/fsspec"
        with az.create_array(url, shape=(6,), dtype="i2", storage_options=s3fs_style) as arr:
            arr[:] = np.arange(6)
        with az.open_array(url, storage_options=server.storage_options()) as again:
            assert again[:].tolist() == list(range(6))
    finally:
        server.delete_bucket(bucket)


def test_s3fs_spellings_translate_one_to_one() -> None:
    out = translate_fsspec_options(
        "s3",
        {
            "key": "AK",
            "secret": SECRET,
            "token": "ST",
            "anon": False,
            "client_kwargs": {"endpoint_url": "http://127.0.0.1:1", "region_name": "r"},
            "config_kwargs": {"connect_timeout": 3, "s3": {"addressing_style": "virtual"}},
            "limits": {"max_concurrency": 8},
        },
    )
    assert out == {
        "aws_access_key_id": "AK",
        "aws_secret_access_key": SECRET,
        "aws_session_token": "ST",
        "anon": False,
        "endpoint_url": "http://127.0.0.1:1",
        "region_name": "r",
        "connect_timeout": 3,
        "addressing_style": "virtual",
        "limits": {"max_concurrency": 8},
    }
    same = {"key": "AK", "aws_access_key_id": "AK"}
    assert translate_fsspec_options("s3", same) == {"aws_access_key_id": "AK"}


@pytest.mark.parametrize(
    ("options", "says"),
    [
        ({"use_ssl": False}, "endpoint_url='http://host:port'"),
        ({"client_kwargs": {"verify": False}}, "aws_access_key_id"),
        ({"config_kwargs": {"s3": {"payload_signing_enabled": True}}}, "addressing_style"),
        (
            {"secret": "other-value", "aws_secret_access_key": SECRET},
            "give 'aws_secret_access_key' only",
        ),
        ({"client_kwargs": "http://x"}, "must be a mapping"),
    ],
)
def test_s3fs_spellings_without_an_equivalent_are_refused(
    options: dict[str, object], says: str
) -> None:
    with pytest.raises(ConfigError, match=None) as info:
        store_from_url("s3://bucket-name/x", storage_options=options)
    assert says in str(info.value)
    assert SECRET not in str(info.value) and "other-value" not in str(info.value)


def test_gcsfs_and_adlfs_spellings() -> None:
    assert translate_fsspec_options("gs", {"token": "cloud"}) == {"token": "google_default"}
    with pytest.raises(ConfigError, match="google_default"):
        store_from_url("gs://bucket/x", storage_options={"token": "browser"})
    assert translate_fsspec_options("az", {"account_host": "acct.blob.core.windows.net"}) == {
        "account_url": "https://acct.blob.core.windows.net"
    }
    with pytest.raises(ConfigError, match="ClientSecretCredential"):
        store_from_url("az://container/x", storage_options={"client_id": "id"})


def test_a_scheme_registered_by_the_user_gets_its_options_as_given(tmp_path: Path) -> None:
    seen: list[dict[str, object]] = []

    def factory(url: str, *, read_only: bool, storage_options: dict[str, object]) -> object:
        seen.append(dict(storage_options))
        return store_from_url(str(tmp_path))

    register_store("s3", factory, replace=True)  # type: ignore[arg-type]
    try:
        store_from_url("s3://bucket/x", storage_options={"key": "k"})
    finally:
        unregister_store("s3")
    assert seen == [{"key": "k"}]


@pytest.mark.parametrize(
    ("url", "fix"),
    [
        ("s3:/bucket/run1", "did you mean s3://bucket/run1?"),
        ("s3:bucket", "did you mean s3://bucket?"),
        ("gs:/bucket", "did you mean gs://bucket?"),
        ("data/archive.zip", "zip://data/archive.zip"),
        ("data/ARCHIVE.ZIP/", "zip://data/ARCHIVE.ZIP/"),
    ],
)
def test_url_mistakes_get_the_fix(url: str, fix: str) -> None:
    with pytest.raises(ConfigError) as info:
        az.open_array(url)
    assert fix in str(info.value)


def test_a_directory_named_like_a_zip_is_still_a_directory(tmp_path: Path) -> None:
    folder = tmp_path / "looks.zip"
    folder.mkdir()
    with az.create_array(str(folder), shape=(2,), dtype="u1") as arr:
        arr[:] = 7
    assert az.open_array(str(folder))[:].tolist() == [7, 7]


def test_errors_name_where_not_the_store_root(tmp_path: Path) -> None:
    url = str(tmp_path / "named.zarr")
    az.create_array(url, shape=(2,), dtype="u1").close()
    with pytest.raises(ContainsArrayError) as exists:
        az.create_array(url, shape=(2,), dtype="u1")
    with pytest.raises(NodeNotFoundError) as missing:
        az.open_array(str(tmp_path / "nothing.zarr"))
    with pytest.raises(NodeNotFoundError) as missing_path:
        az.open_array(url, path="a/b")
    for error, where in [
        (exists, "named.zarr"),
        (missing, "nothing.zarr"),
        (missing_path, "'a/b' in LocalStore("),
    ]:
        assert where in str(error.value)
        assert "store root" not in str(error.value)
