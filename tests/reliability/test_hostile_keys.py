"""Hostile keys and paths: nothing escapes a local store's root, and nothing changes.

Every local store type (memory, local directory, zip archive) refuses keys
that are absolute, climb with ``..``, hold NUL bytes or backslashes, or are
empty, with :class:`InvalidKeyError` naming the key; the store and the
filesystem around it are left exactly as they were.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from _reliability_helpers import snapshot

import asyncarr
from asyncarr._types import ByteRange
from asyncarr.abc import Store
from asyncarr.errors import InvalidKeyError, UnsupportedOperationError
from asyncarr.stores import MemoryStore
from asyncarr.stores._local import LocalStore
from asyncarr.stores._zip import ZipStore

BAD_KEYS = [
    "../escape",
    "a/../../escape",
    "..",
    "a/..",
    "/etc/passwd",
    "/escape",
    "a\x00b",
    "escape\x00/../x",
    "a\\..\\..\\escape",
    "",
    "a//b",
    "./a",
    "a/./b",
    "a/",
]
BAD_PREFIXES = ["../", "../escape/", "a/../../", "/etc/", "./", "a\x00/", "a\\..\\"]

StoreFactory = Callable[[Path], Store]
STORES: dict[str, StoreFactory] = {
    "memory": lambda tmp: MemoryStore(),
    "local": lambda tmp: LocalStore(tmp / "root" / "store"),
    "zip": lambda tmp: ZipStore(tmp / "root" / "store.zip", mode="w"),
}


@pytest.fixture(params=sorted(STORES))
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    (tmp_path / "root").mkdir()
    s = STORES[request.param](tmp_path)
    await s.set("a/b", b"keep")
    await s.set("escape", b"inside")
    yield s
    await s.aclose()


def files_below(path: Path) -> set[str]:
    return {str(p.relative_to(path)) for p in path.rglob("*")}


def operations(store: Store, key: str) -> dict[str, Callable[[], Awaitable[object]]]:
    ops: dict[str, Callable[[], Awaitable[object]]] = {
        "get": lambda: store.get(key),
        "get_range": lambda: store.get(key, ByteRange(0, 2)),
        "get_ranges": lambda: store.get_ranges(key, [ByteRange(0, 1)]),
        "exists": lambda: store.exists(key),
        "getsize": lambda: store.getsize(key),
        "set": lambda: store.set(key, b"evil"),
        "set_if_not_exists": lambda: store.set_if_not_exists(key, b"evil"),
        "delete": lambda: store.delete(key),
    }
    if store.supports_conditional_writes:
        ops["get_versioned"] = lambda: store.get_versioned(key)
        ops["set_if_version"] = lambda: store.set_if_version(key, b"evil", None)
    return ops


@pytest.mark.parametrize("key", BAD_KEYS, ids=repr)
async def test_bad_keys_are_refused_and_change_nothing(
    store: Store, key: str, tmp_path: Path
) -> None:
    before, files = await snapshot(store), files_below(tmp_path)
    for name, op in operations(store, key).items():
        with pytest.raises(InvalidKeyError) as info:
            await op()
        assert info.value.key == key, name
        assert repr(key) in str(info.value), name
    assert await snapshot(store) == before
    assert files_below(tmp_path) == files
    assert not (tmp_path / "escape").exists() and not (tmp_path / "root" / "escape").exists()


@pytest.mark.parametrize("prefix", BAD_PREFIXES, ids=repr)
async def test_bad_listing_prefixes_are_refused(store: Store, prefix: str, tmp_path: Path) -> None:
    before, files = await snapshot(store), files_below(tmp_path)
    with pytest.raises(InvalidKeyError):
        [k async for k in store.list_prefix(prefix)]
    with pytest.raises(InvalidKeyError):
        await store.list_dir(prefix)
    with pytest.raises(InvalidKeyError):
        await store.delete_prefix(prefix)
    assert await snapshot(store) == before
    assert files_below(tmp_path) == files


async def test_bad_prefix_errors_name_the_whole_prefix() -> None:
    store = MemoryStore()
    for prefix in ("../escape/", "a/../../x"):
        with pytest.raises(InvalidKeyError) as info:
            await store.delete_prefix(prefix)
        assert repr(prefix) in str(info.value)


async def test_zip_store_refuses_conditional_writes_before_looking_at_keys(
    tmp_path: Path,
) -> None:
    """Zip has no versions: bad keys there get UnsupportedOperationError, still no change."""
    async with ZipStore(tmp_path / "z.zip", mode="w") as store:
        await store.set("a", b"1")
        for key in ("../x", "/x"):
            with pytest.raises(UnsupportedOperationError):
                await store.set_if_version(key, b"evil", None)
        assert await snapshot(store) == {"a": b"1"}


# -- array paths built from hostile node paths ----------------------------------------------
@pytest.mark.parametrize("path", ["../up", "a/../../up", "a\x00b", "a\\..\\up"], ids=repr)
async def test_array_paths_cannot_escape_the_store(store: Store, path: str) -> None:
    before = await snapshot(store)
    with pytest.raises(InvalidKeyError) as created:
        await asyncarr.create_array(store, shape=(4,), dtype="int32", path=path)
    with pytest.raises(InvalidKeyError) as opened:
        await asyncarr.open_array(store, path=path)
    for err in (created.value, opened.value):
        assert (err.key is not None and err.key.endswith("zarr.json")) or ".zarray" in str(err.key)
        assert repr(err.key) in str(err)
    assert await snapshot(store) == before


# -- symlinks and foreign archives --------------------------------------------------------------
async def test_symlinks_out_of_a_local_store_are_refused(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_bytes(b"secret")
    root = tmp_path / "store"
    root.mkdir()
    os.symlink(outside, root / "dirlink")
    os.symlink(outside / "secret", root / "filelink")
    store = LocalStore(root)
    reads = {"get", "get_range", "get_ranges", "exists", "getsize", "get_versioned"}

    def refused(key: str, names: set[str]) -> list[Callable[[], Awaitable[object]]]:
        return [op for name, op in operations(store, key).items() if name in names]

    # reading through either link, and writing anything below the directory link
    checks = [("dirlink/secret", set(operations(store, "x"))), ("filelink", reads)]
    checks.append(("dirlink/new", {"set", "set_if_not_exists", "set_if_version"}))
    for key, names in checks:
        for op in refused(key, names):
            with pytest.raises(InvalidKeyError, match="outside the store root") as info:
                await op()
            assert info.value.key == key
    assert [k async for k in store.list_prefix("")] == []  # links out are never listed
    # writing the file link's key replaces the link itself, inside the root
    await store.set("filelink", b"mine")
    assert (root / "filelink").is_file() and not (root / "filelink").is_symlink()
    assert files_below(outside) == {"secret"}
    assert (outside / "secret").read_bytes() == b"secret"
    await store.aclose()


async def test_foreign_zip_members_outside_the_root_are_invisible(tmp_path: Path) -> None:
    path = tmp_path / "foreign.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("ok", b"fine")
        zf.writestr("../evil", b"evil")
        zf.writestr("/abs", b"evil")
        zf.writestr("dir/", b"")
    async with ZipStore(path, read_only=True) as store:
        assert [k async for k in store.list_prefix("")] == ["ok"]
        assert await store.get("ok") == b"fine"
        for key in ("../evil", "/abs"):
            with pytest.raises(InvalidKeyError):
                await store.get(key)
