"""ZipStore: the conformance suite plus zip-specific behaviour."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from asyncarr._types import ByteRange, OffsetRange, SuffixRange
from asyncarr.abc import Store
from asyncarr.errors import (
    ConfigError,
    ReadOnlyStoreError,
    StoreError,
    UnsupportedOperationError,
)
from asyncarr.stores import store_from_url
from asyncarr.stores._zip import ZipStore
from asyncarr.testing import StoreTests
from asyncarr.testing._procs import StoreLocation

PAYLOAD = bytes(range(256)) * 40


def _assert_valid_zip(path: Path) -> list[str]:
    """The archive is a valid zip with one entry per name; returns the names."""
    with zipfile.ZipFile(path) as zf:
        assert zf.testzip() is None
        names = zf.namelist()
    assert len(names) == len(set(names)), "duplicate entries left in the archive"
    return names


class TestZipStore(StoreTests):
    conditional_writes = False
    close_before_pickling = True
    many_keys = 1100

    @pytest.fixture
    async def store(self, tmp_path: Path) -> AsyncIterator[Store]:
        path = tmp_path / "store.zip"
        s = ZipStore(path, mode="w")
        yield s
        await s.aclose()
        _assert_valid_zip(path)  # every test leaves a valid, compacted archive

    @pytest.fixture
    async def read_only_store(self, store: ZipStore) -> Store:
        return store.with_read_only()


async def test_reopen_closed_archive(tmp_path: Path) -> None:
    path = tmp_path / "a.zip"
    async with ZipStore(path, mode="w") as store:
        await store.set("zarr.json", b"{}")
        await store.set("c/0", PAYLOAD)
        await store.set("c/1", b"old")
        await store.set("c/1", b"new")  # overwritten: one entry survives
        await store.set("gone", b"x")
        await store.delete("gone")
        assert await store.get("c/1") == b"new"
        assert not await store.exists("gone")
    assert sorted(_assert_valid_zip(path)) == ["c/0", "c/1", "zarr.json"]
    reader = ZipStore(path, read_only=True)  # the default mode of a read-only store is "r"
    assert reader.read_only
    assert reader.mode == "r"
    assert await reader.get("c/1") == b"new"
    assert await reader.get("c/0", ByteRange(5, 9)) == PAYLOAD[5:9]
    assert sorted([k async for k in reader.list_prefix("")]) == ["c/0", "c/1", "zarr.json"]
    with pytest.raises(ReadOnlyStoreError):
        await reader.set("k", b"v")
    with pytest.raises(UnsupportedOperationError):
        reader.with_read_only(False)
    await reader.aclose()
    # appending keeps what was there
    async with ZipStore(path, mode="a") as appender:
        await appender.set("c/2", b"two")
        assert await appender.get("c/0") == PAYLOAD
    assert sorted(_assert_valid_zip(path)) == ["c/0", "c/1", "c/2", "zarr.json"]


async def test_reads_zip_written_by_zipfile(tmp_path: Path) -> None:
    path = tmp_path / "py.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("stored/zarr.json", b'{"zarr_format": 3}', compress_type=zipfile.ZIP_STORED)
        zf.writestr("deflated/c/0", PAYLOAD, compress_type=zipfile.ZIP_DEFLATED)
        zf.writestr("lzma/c/0", PAYLOAD, compress_type=zipfile.ZIP_LZMA)
        zf.mkdir("stored/empty-dir")
        zf.writestr("../evil", b"x")  # not a valid key: never listed
    async with ZipStore(path, mode="r") as store:
        assert sorted([k async for k in store.list_prefix("")]) == [
            "deflated/c/0",
            "lzma/c/0",
            "stored/zarr.json",
        ]
        assert await store.list_dir("") == ["deflated", "lzma", "stored"]
        assert await store.get("stored/zarr.json") == b'{"zarr_format": 3}'
        for key in ("deflated/c/0", "lzma/c/0"):
            assert await store.get(key) == PAYLOAD
            assert await store.getsize(key) == len(PAYLOAD)
            assert await store.get(key, ByteRange(100, 200)) == PAYLOAD[100:200]
            assert await store.get(key, SuffixRange(7)) == PAYLOAD[-7:]
            assert await store.get_ranges(
                key, [ByteRange(0, 3), OffsetRange(len(PAYLOAD) - 2)]
            ) == [
                PAYLOAD[:3],
                PAYLOAD[-2:],
            ]
        assert await store.get("stored/empty-dir") is None


async def test_compressed_store(tmp_path: Path) -> None:
    path = tmp_path / "c.zip"
    async with ZipStore(path, mode="w", compression="deflated", compresslevel=9) as store:
        await store.set("k", PAYLOAD)
        assert await store.get("k", ByteRange(10, 20)) == PAYLOAD[10:20]
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo("k")
        assert info.compress_type == zipfile.ZIP_DEFLATED
        assert info.compress_size < len(PAYLOAD)
        assert zf.read("k") == PAYLOAD


async def test_second_writer_gets_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "w.zip"
    store = ZipStore(path, mode="w")
    await store.set("k", b"v")
    with pytest.raises(StoreError, match="one writer at a time"):
        ZipStore(path, mode="a")
    with pytest.raises(StoreError, match="open for writing elsewhere"):
        ZipStore(path, mode="r")
    script = (
        "import sys\n"
        "from asyncarr.errors import StoreError\n"
        "from asyncarr.stores._zip import ZipStore\n"
        "try:\n"
        "    ZipStore(sys.argv[1], mode='w')\n"
        "except StoreError as exc:\n"
        "    print('refused:', exc)\n"
        "else:\n"
        "    print('opened')\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script, str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=str(Path(__file__).resolve().parents[2]),
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("refused:")
    assert "one writer at a time" in out.stdout
    await store.aclose()
    assert _assert_valid_zip(path) == ["k"]  # the refused writer did not truncate it
    again = ZipStore(path, mode="a")  # free again once closed
    await again.aclose()


async def test_closed_store_and_bad_files(tmp_path: Path) -> None:
    path = tmp_path / "x.zip"
    store = ZipStore(path, mode="x")
    await store.set("k", b"v")
    view = store.with_read_only()
    await view.aclose()  # closing a view leaves the archive open
    assert await store.get("k") == b"v"
    await store.aclose()
    for call in (store.get("k"), store.exists("k"), store.set("k", b"v")):
        with pytest.raises(StoreError, match="closed"):
            await call
    with pytest.raises(StoreError, match="already exists"):
        ZipStore(path, mode="x")
    with pytest.raises(StoreError):
        ZipStore(tmp_path / "missing.zip", mode="r")
    (tmp_path / "junk.zip").write_bytes(b"not a zip at all" * 10)
    for mode in ("r", "a"):
        with pytest.raises(StoreError, match="not a valid zip"):
            ZipStore(tmp_path / "junk.zip", mode=mode)
    assert (tmp_path / "junk.zip").read_bytes() == b"not a zip at all" * 10


async def test_url_forms_and_options(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, zip_location: StoreLocation
) -> None:
    monkeypatch.chdir(tmp_path)
    store = store_from_url(zip_location.url, storage_options={"mode": "w"})
    assert isinstance(store, ZipStore)
    assert store.mode == "w"
    await store.set("k", b"v")
    await store.aclose()
    reader = store_from_url(zip_location.url, read_only=True)
    assert isinstance(reader, ZipStore)
    assert await reader.get("k") == b"v"
    await reader.aclose()
    rel = store_from_url("zip://rel.zip")
    assert isinstance(rel, ZipStore)
    assert rel.path == str(tmp_path / "rel.zip")
    assert rel.mode == "a"
    assert rel.endpoint_key == f"zip:{tmp_path / 'rel.zip'}"
    await rel.aclose()
    with pytest.raises(ConfigError, match="unknown storage_options"):
        store_from_url("zip://rel.zip", storage_options={"fsync": True})
    with pytest.raises(ConfigError, match="read_only"):
        store_from_url("zip://rel.zip", read_only=True, storage_options={"mode": "w"})
    with pytest.raises(ConfigError, match="compression"):
        ZipStore(tmp_path / "n.zip", compression="zstd")
    with pytest.raises(ConfigError, match="mode"):
        ZipStore(tmp_path / "n.zip", mode="rw")
