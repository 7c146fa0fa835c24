"""A write or read that fails has stopped all of its chunk operations when it raises:
none lands later, over the caller's next write (found with a remote store whose one
refused upload left the others of the batch running)."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

import asyncarr
from asyncarr.errors import PermissionDeniedError
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

    async def get(self, key: str, byte_range: object = None) -> bytes | None:  # type: ignore[override]
        if self.armed and key == "c/0/0":
            raise PermissionDeniedError("refused", store=self, key=key)
        if self.armed and key.startswith("c/"):
            await asyncio.sleep(0.3)
        return await super().get(key, byte_range)  # type: ignore[arg-type]


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
