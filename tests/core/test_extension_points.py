"""Users extend asyncarr with their own codecs and URL schemes at run time."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Self

import numpy as np
import pytest

import asyncarr
from asyncarr.errors import ConfigError, UnknownCodecError
from asyncarr.stores import MemoryStore


class XorCodec(asyncarr.BytesBytesCodec):
    """A toy bytes->bytes codec: XOR every byte with a key."""

    codec_name: ClassVar[str] = "example.xor"

    def __init__(self, key: int = 0x5A) -> None:
        self.key = key

    @classmethod
    def from_config(cls, configuration: dict[str, Any]) -> Self:
        return cls(int(configuration.get("key", 0x5A)))

    def to_config(self) -> dict[str, Any]:
        return {"key": self.key}

    def encode(self, data: bytes | memoryview, spec: asyncarr.ChunkSpec) -> bytes:
        return (np.frombuffer(data, dtype="u1") ^ self.key).tobytes()

    def decode(
        self, data: bytes | memoryview, spec: asyncarr.ChunkSpec, max_size: int | None = None
    ) -> bytes:
        return (np.frombuffer(data, dtype="u1") ^ self.key).tobytes()


async def test_custom_codec_round_trip_and_unregister() -> None:
    store = MemoryStore()
    asyncarr.register_codec("example.xor", XorCodec)
    try:
        arr = await asyncarr.create_array(
            store,
            shape=(10,),
            chunks=(5,),
            dtype="u2",
            codecs=[
                {"name": "bytes", "configuration": {"endian": "little"}},
                {"name": "example.xor", "configuration": {"key": 7}},
            ],
        )
        await arr.write(np.arange(10))
        raw = await store.get("c/0")
        assert raw is not None and raw != np.arange(5, dtype="<u2").tobytes()
        np.testing.assert_array_equal(
            await (await asyncarr.open_array(store)).read(), np.arange(10)
        )
        assert "example.xor" in asyncarr.registered_codecs()
    finally:
        asyncarr.unregister_codec("example.xor")
    with pytest.raises(UnknownCodecError, match=r"example\.xor"):
        await asyncarr.open_array(store)


async def test_custom_url_scheme() -> None:
    backing = MemoryStore()

    def factory(url: str, *, read_only: bool, storage_options: Mapping[str, Any]) -> asyncarr.Store:
        return backing.with_read_only(read_only)

    asyncarr.register_store("mystore", factory)
    try:
        with pytest.raises(ConfigError):
            asyncarr.register_store("mystore", factory)
        arr = await asyncarr.create_array("mystore://anything", shape=(3,), chunks=(3,), dtype="i1")
        await arr.write([1, 2, 3])
        assert await backing.exists("zarr.json")
        back = await asyncarr.open_array("mystore://anything")
        np.testing.assert_array_equal(await back.read(), [1, 2, 3])
    finally:
        asyncarr.unregister_store("mystore")
    with pytest.raises(ConfigError, match="mystore"):
        await asyncarr.open_array("mystore://anything")
