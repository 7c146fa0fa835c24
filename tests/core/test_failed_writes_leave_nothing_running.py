"""A write or read that fails, or is cancelled, has stopped all of its chunk operations
when it raises: none lands later, over the caller's next write or in the array created
next at its place (found with a remote store whose one refused upload left the others of
the batch running, and with codec worker threads that went on storing the chunks of a
cancelled write)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

import asyncarr
from asyncarr.config import ExecutorConfig
from asyncarr.errors import PermissionDeniedError
from asyncarr.runtime import set_executor
from asyncarr.stores import MemoryStore


class _SlowRefusingStore(MemoryStore):
    """Like a remote store: ``set`` takes a while; while ``armed`` it refuses one key."""

    armed = False

    @property
    def supports_sync_writes(self) -> bool:
        return False  # the event loop uploads the chunks, as for object stores

    async def set(self, key: str, value: bytes) -> None:
        if self.armed:
            if key == "c/0/0":
                raise PermissionDeniedError("refused", store=self, key=key)
            await asyncio.sleep(0.3)
        await super().set(key, value)

    async def get(
        self, key: str, byte_range: object = None, *, max_size: int | None = None
    ) -> bytes | None:  # type: ignore[override]
        if self.armed and key == "c/0/0":
            raise PermissionDeniedError("refused", store=self, key=key)
        if self.armed and key.startswith("c/"):
            await asyncio.sleep(0.3)
        return await super().get(key, byte_range, max_size=max_size)  # type: ignore[arg-type]


def _others() -> list[asyncio.Task[object]]:
    return [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]


async def test_a_failed_write_stops_its_other_uploads_before_raising() -> None:
    store = _SlowRefusingStore()
    arr = await asyncarr.create_array(store, shape=(160, 160), chunks=(10, 10), dtype="i4")
    store.armed = True
    with pytest.raises(PermissionDeniedError):
        await arr.write(np.full((160, 160), 1, "i4"))
    assert _others() == []
    store.armed = False
    await arr.write(np.full((160, 160), 2, "i4"))
    await asyncio.sleep(0.5)  # an upload of the failed write would have landed by now
    np.testing.assert_array_equal(await arr.read(), np.full((160, 160), 2, "i4"))


async def test_a_failed_read_stops_its_other_fetches_before_raising() -> None:
    store = _SlowRefusingStore()
    arr = await asyncarr.create_array(store, shape=(160, 160), chunks=(10, 10), dtype="i4")
    await arr.write(np.full((160, 160), 1, "i4"))
    store.armed = True
    with pytest.raises(PermissionDeniedError):
        await arr.read()
    assert _others() == []


@pytest.mark.parametrize(
    ("mode", "where"), [("threads", "local"), ("threads", "memory"), ("processes", "local")]
)
async def test_a_cancelled_write_stores_nothing_after_it_returns(
    tmp_path: Path, mode: str, where: str
) -> None:
    """Codec workers store the chunks they encode themselves (local files, memory): once
    the cancelled write has raised, none of them stores another one, so the array
    re-created at its place stays empty."""
    set_executor(ExecutorConfig(mode=mode, max_workers=2))  # type: ignore[arg-type]
    try:
        target: object = str(tmp_path / "a") if where == "local" else MemoryStore()
        kw: dict[str, object] = {"shape": (2048, 2048), "chunks": (32, 32), "dtype": "i4"}
        arr = await asyncarr.create_array(target, **kw)  # type: ignore[arg-type]
        await arr.write(np.full((64, 64), 7, "i4"), (slice(0, 64), slice(0, 64)))
        write = asyncio.ensure_future(arr.write(np.ones((2048, 2048), "i4")))
        while await arr.nchunks_initialized() < 8 and not write.done():
            await asyncio.sleep(0.005)
        write.cancel()
        with pytest.raises(asyncio.CancelledError):
            await write
        fresh = await asyncarr.create_array(
            arr.store if where == "memory" else target,  # type: ignore[arg-type]
            overwrite=True,
            **kw,  # type: ignore[arg-type]
        )
        await asyncio.sleep(0.3)  # a chunk still being stored would have landed by now
        assert await fresh.nchunks_initialized() == 0
        assert not (await fresh.read()).any()
    finally:
        set_executor(None)
