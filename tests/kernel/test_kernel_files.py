"""The kernel reads and writes local files with LocalStore's rules: keys validated the
same way, nothing resolved outside the root, FIFOs and directories are no values, values
replaced atomically (a reader sees the old or the new value, never a torn one)."""

from __future__ import annotations

import asyncio
import os
import threading
from pathlib import Path

import numpy as np
import pytest

from asyncarr import kernel as ak
from asyncarr._types import ChunkSpec
from asyncarr.codecs import BytesCodec, ZstdCodec
from asyncarr.core._pipeline import CodecPipeline
from asyncarr.errors import AsyncarrError, InvalidKeyError, StoreError
from asyncarr.stores import LocalStore

pytestmark = pytest.mark.usefixtures("kernel")

SPEC = ChunkSpec((16,), np.dtype("<i4"), -1)


@pytest.fixture
def setup(tmp_path: Path) -> tuple[LocalStore, CodecPipeline, ak.KernelChain, ak.LocalFiles]:
    root = tmp_path / "root"
    root.mkdir()
    store = LocalStore(root)
    pipeline = CodecPipeline([BytesCodec(), ZstdCodec()], SPEC)
    chain = ak.chain_for(pipeline.codecs, pipeline.spec)
    assert isinstance(chain, ak.KernelChain)
    return store, pipeline, chain, ak.LocalFiles.of(store)


def _read(chain: ak.KernelChain, files: ak.LocalFiles, key: str) -> np.ndarray | AsyncarrError:
    out = np.zeros(16, "<i4")
    try:
        outcome = ak.read_chunks(chain, out, [(key, None, None)], files=files)
    except AsyncarrError as exc:
        return exc
    assert outcome.decoded + outcome.missing == 1
    return out


BAD_KEYS = [
    "",
    "/abs",
    "a//b",
    "a/./b",
    "../x",
    "a/..",
    "a\\b",
    "a\x00b",
    "x.asyncarr.tmp",
    "d/y.asyncarr.lock",
]


@pytest.mark.parametrize("key", BAD_KEYS, ids=repr)
def test_bad_keys_are_refused_as_local_store_refuses_them(setup: tuple, key: str) -> None:
    store, _pipeline, chain, files = setup
    with pytest.raises(InvalidKeyError):
        asyncio.run(store.get(key))
    got = _read(chain, files, key)
    assert isinstance(got, InvalidKeyError) and got.key == key
    with pytest.raises(InvalidKeyError):
        ak.write_chunks(chain, np.arange(16, dtype="<i4"), [(key, None)], files=files)


def test_symbolic_links(setup: tuple, tmp_path: Path) -> None:
    store, pipeline, chain, files = setup
    root = Path(store.root)
    outside = tmp_path / "outside"
    outside.mkdir()
    value = np.arange(16, dtype="<i4")
    (outside / "v").write_bytes(pipeline.encode(value))
    (root / "c").mkdir()
    (root / "c" / "0").write_bytes(pipeline.encode(value * 2))
    os.symlink(outside / "v", root / "file-out")
    os.symlink(outside, root / "dir-out")
    os.symlink(root / "c" / "0", root / "abs-in")  # absolute, but inside the root
    os.symlink("c/0", root / "rel-in")
    os.symlink("loop", root / "loop")
    for key in ("file-out", "dir-out/v"):
        with pytest.raises(InvalidKeyError):
            asyncio.run(store.get(key))
        assert isinstance(_read(chain, files, key), InvalidKeyError)
    for key in ("abs-in", "rel-in", "c/0"):
        assert asyncio.run(store.get(key)) is not None
        np.testing.assert_array_equal(_read(chain, files, key), value * 2)
    assert isinstance(_read(chain, files, "loop"), StoreError)
    # nothing is written through a link out of the root
    with pytest.raises(InvalidKeyError):
        ak.write_chunks(chain, value, [("dir-out/new", None)], files=files)
    assert sorted(os.listdir(outside)) == ["v"]


@pytest.mark.timeout(20)
def test_fifos_and_directories_are_no_values(setup: tuple) -> None:
    store, _pipeline, chain, files = setup
    root = Path(store.root)
    os.mkfifo(root / "fifo")
    (root / "dir").mkdir()
    (root / "dir" / "x").write_bytes(b"")
    for key in ("fifo", "dir"):
        assert asyncio.run(store.get(key)) is None
        got = _read(chain, files, key)
        assert isinstance(got, np.ndarray) and (got == -1).all()  # missing: the fill value


def test_writes_where_a_directory_or_value_is_in_the_way(setup: tuple) -> None:
    store, _pipeline, chain, files = setup
    root = Path(store.root)
    value = np.arange(16, dtype="<i4")
    (root / "holder").mkdir()
    (root / "holder" / "x").write_bytes(b"1")
    (root / "empty").mkdir()
    (root / "leaf").write_bytes(b"1")
    with pytest.raises(StoreError, match="directory holding other keys"):
        ak.write_chunks(chain, value, [("holder", None)], files=files)
    ak.write_chunks(chain, value, [("empty", None)], files=files)  # an empty leftover goes
    assert (root / "empty").is_file()
    with pytest.raises(StoreError, match="parent key is a value"):
        ak.write_chunks(chain, value, [("leaf/child", None)], files=files)
    # each item fails on its own: the others are written
    outcome = ak.write_chunks(
        chain,
        value,
        [("ok/1", None), ("leaf/child", None), ("ok/2", None)],
        files=files,
        raise_errors=False,
    )
    assert outcome.stored == 2 and len(outcome.errors) == 1
    assert outcome.errors[0].key == "leaf/child"  # type: ignore[attr-defined]


def test_readers_never_see_a_torn_value(setup: tuple) -> None:
    _store, _pipeline, chain, files = setup
    values = [np.full(16, v, "<i4") for v in (1, 2, 3)]
    keys = [f"t/{i}" for i in range(8)]
    ak.write_chunks(
        chain,
        np.tile(values[0], 8),
        [(k, (slice(16 * i, 16 * i + 16),)) for i, k in enumerate(keys)],
        files=files,
    )
    stop = threading.Event()
    failures: list[object] = []

    def writer(v: np.ndarray) -> None:
        tiled = np.tile(v, 8)
        items = [(k, (slice(16 * i, 16 * i + 16),)) for i, k in enumerate(keys)]
        while not stop.is_set():
            ak.write_chunks(chain, tiled, items, files=files, workers=2)

    def reader() -> None:
        out = np.zeros(16 * 8, "<i4")
        items = [(k, None, (slice(16 * i, 16 * i + 16),)) for i, k in enumerate(keys)]
        for _ in range(200):
            try:
                ak.read_chunks(chain, out, items, files=files, workers=2)
            except AsyncarrError as exc:  # pragma: no cover - the failure being tested for
                failures.append(exc)
                return
            for i in range(8):
                part = out[16 * i : 16 * i + 16]
                if not (part == part[0]).all() or part[0] not in (1, 2, 3):
                    failures.append(part.copy())

    threads = [threading.Thread(target=writer, args=(v,)) for v in values[1:]]
    for t in threads:
        t.start()
    try:
        reader()
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert failures == []
    names = os.listdir(Path(files.root) / "t")
    assert sorted(names) == sorted(k.split("/")[1] for k in keys)  # no temporary files left
