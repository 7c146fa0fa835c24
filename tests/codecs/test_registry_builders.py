"""The codec registry, metadata parsing, and the create_array builders."""

from __future__ import annotations

from importlib.metadata import EntryPoint
from typing import Any, ClassVar, Self

import numcodecs
import numpy as np
import pytest

from asyncarr._types import ChunkSpec
from asyncarr.abc import BytesBytesCodec
from asyncarr.codecs import (
    BloscCodec,
    BytesCodec,
    CodecConfigError,
    Crc32cCodec,
    GzipCodec,
    NumcodecsArrayArrayCodec,
    NumcodecsBytesBytesCodec,
    TransposeCodec,
    ZstdCodec,
    _registry,
    codec_from_metadata,
    codecs_from_compressor,
    filters_from_spec,
    get_codec_class,
    numcodecs_adapter,
    numcodecs_kind,
    register_codec,
    registered_codecs,
    unregister_codec,
    v2_codecs,
)
from asyncarr.errors import CodecError, ConfigError, MetadataError, UnknownCodecError


class Reverse(BytesBytesCodec):
    """A toy codec for registration tests."""

    codec_name: ClassVar[str] = "test.reverse"

    @classmethod
    def from_config(cls, configuration: dict[str, Any]) -> Self:
        return cls()

    def to_config(self) -> dict[str, Any]:
        return {}

    def encode(self, data: bytes | memoryview, spec: ChunkSpec) -> bytes:
        return bytes(data)[::-1]

    def decode(
        self, data: bytes | memoryview, spec: ChunkSpec, max_size: int | None = None
    ) -> bytes:
        return bytes(data)[::-1]


# -- registry ---------------------------------------------------------------------------------


def test_builtins_are_registered() -> None:
    names = registered_codecs()
    for name in ("bytes", "transpose", "gzip", "zstd", "blosc", "crc32c"):
        assert name in names
    assert get_codec_class("zstd") is ZstdCodec
    assert get_codec_class("bytes") is BytesCodec


def test_register_replace_and_unregister() -> None:
    register_codec("test.reverse", Reverse)
    try:
        assert get_codec_class("test.reverse") is Reverse
        assert isinstance(codec_from_metadata({"name": "test.reverse"}), Reverse)
        with pytest.raises(ConfigError, match="already registered"):
            register_codec("test.reverse", Reverse)
        register_codec("test.reverse", Reverse, replace=True)
    finally:
        unregister_codec("test.reverse")
    with pytest.raises(UnknownCodecError):
        get_codec_class("test.reverse")
    register_codec("gzip", Reverse, replace=True)
    try:
        assert get_codec_class("gzip") is Reverse
    finally:
        unregister_codec("gzip")
    assert get_codec_class("gzip") is GzipCodec
    with pytest.raises(ConfigError):
        register_codec("x", int)  # type: ignore[arg-type]


def test_entry_points_are_loaded_lazily(monkeypatch: pytest.MonkeyPatch) -> None:
    ep = EntryPoint(
        name="test.ep-crc", value="asyncarr.codecs._crc32c:Crc32cCodec", group="asyncarr.codecs"
    )
    calls: list[str] = []

    def fake_entry_points(*, group: str) -> list[EntryPoint]:
        calls.append(group)
        return [ep]

    monkeypatch.setattr(_registry, "entry_points", fake_entry_points)
    monkeypatch.setattr(_registry, "_entry_points_loaded", False)
    try:
        assert get_codec_class("zstd") is ZstdCodec
        assert calls == []  # hits do not scan entry points
        assert get_codec_class("test.ep-crc") is Crc32cCodec
        assert calls == ["asyncarr.codecs"]
        with pytest.raises(UnknownCodecError):
            get_codec_class("test.still-missing")
        assert calls == ["asyncarr.codecs"]  # scanned once
    finally:
        unregister_codec("test.ep-crc")


def test_unknown_codec_error_lists_known_codecs() -> None:
    with pytest.raises(UnknownCodecError) as info:
        get_codec_class("lzo9000")
    err = info.value
    assert isinstance(err, MetadataError)
    assert isinstance(err, CodecError)
    assert "lzo9000" in str(err)
    assert "zstd" in str(err)
    with pytest.raises(UnknownCodecError, match="numcodecs has no codec 'nope'"):
        get_codec_class("numcodecs.nope")


def test_numcodecs_names_resolve_with_zarr_python_kinds() -> None:
    expected = {
        "delta": "array_to_array",
        "fixedscaleoffset": "array_to_array",
        "quantize": "array_to_array",
        "astype": "array_to_array",
        "packbits": "array_to_array",
        "bitround": "array_to_array",
        "categorize": "array_to_array",
        "zlib": "bytes_to_bytes",
        "gzip": "bytes_to_bytes",
        "bz2": "bytes_to_bytes",
        "lzma": "bytes_to_bytes",
        "lz4": "bytes_to_bytes",
        "zstd": "bytes_to_bytes",
        "blosc": "bytes_to_bytes",
        "shuffle": "bytes_to_bytes",
        "crc32": "bytes_to_bytes",
        "crc32c": "bytes_to_bytes",
        "adler32": "bytes_to_bytes",
        "fletcher32": "bytes_to_bytes",
        "jenkins_lookup3": "bytes_to_bytes",
        "pcodec": "array_to_bytes",
        "zfpy": "array_to_bytes",
    }
    for codec_id, kind in expected.items():
        assert numcodecs_kind(codec_id) == kind
        if codec_id in ("pcodec", "zfpy"):
            continue  # optional packages
        cls = get_codec_class(f"numcodecs.{codec_id}")
        assert cls.kind == kind
        assert cls.codec_name == f"numcodecs.{codec_id}"
        assert get_codec_class(f"numcodecs.{codec_id}") is cls
    assert issubclass(get_codec_class("numcodecs.delta"), NumcodecsArrayArrayCodec)
    assert issubclass(get_codec_class("numcodecs.zlib"), NumcodecsBytesBytesCodec)


@pytest.mark.parametrize(
    "entry",
    [
        5,
        None,
        {"configuration": {}},
        {"name": ""},
        {"name": "zstd", "configuration": [1]},
        {"name": "zstd", "extra": 1},
    ],
)
def test_malformed_entries_raise_metadata_error(entry: Any) -> None:
    with pytest.raises(MetadataError):
        codec_from_metadata(entry)


def test_bad_configuration_is_codec_config_error() -> None:
    for entry in (
        {"name": "zstd", "configuration": {"level": "high"}},
        {"name": "gzip", "configuration": {"level": 11}},
        {"name": "transpose", "configuration": {"order": [0, 0]}},
        {"name": "transpose"},
        {"name": "bytes", "configuration": {"endian": "middle"}},
        {"name": "crc32c", "configuration": {"x": 1}},
        {"name": "numcodecs.zlib", "configuration": {"nope": 1}},
    ):
        with pytest.raises(CodecConfigError):
            codec_from_metadata(entry)


def test_metadata_forms() -> None:
    assert codec_from_metadata("bytes") == BytesCodec(endian=None)
    assert codec_from_metadata({"name": "bytes", "must_understand": False}) == BytesCodec(
        endian=None
    )
    assert codec_from_metadata({"name": "zstd", "configuration": None}) == ZstdCodec()
    t = codec_from_metadata({"name": "transpose", "configuration": {"order": [2, 0, 1]}})
    assert isinstance(t, TransposeCodec)
    assert t.to_metadata() == {"name": "transpose", "configuration": {"order": [2, 0, 1]}}


# -- builders ---------------------------------------------------------------------------------


def test_compressor_names_v3() -> None:
    assert codecs_from_compressor(None, zarr_format=3, dtype="f4") == []
    assert codecs_from_compressor("none", zarr_format=3, dtype="f4") == []
    assert codecs_from_compressor("zstd", zarr_format=3, dtype="f4") == [ZstdCodec(level=3)]
    assert codecs_from_compressor("auto", zarr_format=3, dtype="f4") == [ZstdCodec(level=3)]
    assert codecs_from_compressor("gzip", zarr_format=3, dtype="f4") == [GzipCodec(level=5)]
    (blosc,) = codecs_from_compressor("blosc", zarr_format=3, dtype="f4")
    assert blosc == BloscCodec(cname="zstd", clevel=5, shuffle="shuffle", typesize=4)
    (blosc1,) = codecs_from_compressor("blosc", zarr_format=3, dtype="u1")
    assert blosc1.to_config()["shuffle"] == "bitshuffle"
    for name in ("zlib", "lz4", "bz2", "lzma"):
        (c,) = codecs_from_compressor(name, zarr_format=3, dtype="f4")
        assert c.codec_name == f"numcodecs.{name}"
    assert codecs_from_compressor(["zstd", "crc32c"], zarr_format=3, dtype="i2") == [
        ZstdCodec(level=3),
        Crc32cCodec(),
    ]


def test_compressor_objects_and_dicts_v3() -> None:
    (b,) = codecs_from_compressor(
        {"id": "blosc", "cname": "lz4", "clevel": 5, "shuffle": 1}, zarr_format=3, dtype="<f8"
    )
    assert b == BloscCodec(cname="lz4", clevel=5, shuffle="shuffle", typesize=8)
    (z,) = codecs_from_compressor(numcodecs.Zstd(level=5), zarr_format=3, dtype="f4")
    assert z == ZstdCodec(level=5)
    (g,) = codecs_from_compressor(numcodecs.GZip(level=2), zarr_format=3, dtype="f4")
    assert g == GzipCodec(level=2)
    (lz,) = codecs_from_compressor(numcodecs.LZ4(), zarr_format=3, dtype="f4")
    assert lz.to_metadata() == {"name": "numcodecs.lz4", "configuration": {"acceleration": 1}}
    (v3,) = codecs_from_compressor(
        {"name": "zstd", "configuration": {"level": 9}}, zarr_format=3, dtype="f4"
    )
    assert v3 == ZstdCodec(level=9)
    assert codecs_from_compressor(GzipCodec(level=1), zarr_format=3, dtype="f4") == [
        GzipCodec(level=1)
    ]


def test_compressor_v2() -> None:
    (z,) = codecs_from_compressor("zstd", zarr_format=2, dtype="f4")
    assert z.to_v2_config() == {"id": "zstd", "level": 3}  # type: ignore[attr-defined]
    (b,) = codecs_from_compressor("blosc", zarr_format=2, dtype="u1")
    assert b.to_v2_config() == {  # type: ignore[attr-defined]
        "id": "blosc",
        "cname": "zstd",
        "clevel": 5,
        "shuffle": 2,
        "blocksize": 0,
    }
    (nc,) = codecs_from_compressor(numcodecs.Blosc("lz4", 3, 1), zarr_format=2, dtype="f4")
    assert nc.to_v2_config() == numcodecs.Blosc("lz4", 3, 1).get_config()  # type: ignore[attr-defined]
    (fromv3,) = codecs_from_compressor(BloscCodec(cname="lz4"), zarr_format=2, dtype="<i4")
    assert fromv3.to_v2_config()["shuffle"] == 1  # type: ignore[attr-defined]
    (gz,) = codecs_from_compressor(GzipCodec(level=4), zarr_format=2, dtype="f4")
    assert gz.to_v2_config() == {"id": "gzip", "level": 4}  # type: ignore[attr-defined]
    assert codecs_from_compressor(None, zarr_format=2, dtype="f4") == []


def test_compressor_errors() -> None:
    with pytest.raises(ConfigError, match="one compressor"):
        codecs_from_compressor(["zstd", "gzip"], zarr_format=2, dtype="f4")
    with pytest.raises(ConfigError, match="zarr_format"):
        codecs_from_compressor("zstd", zarr_format=4, dtype="f4")
    with pytest.raises(ConfigError, match="filter"):
        codecs_from_compressor({"id": "delta", "dtype": "<f4"}, zarr_format=3, dtype="f4")
    with pytest.raises(UnknownCodecError):
        codecs_from_compressor("snappy9", zarr_format=3, dtype="f4")
    with pytest.raises(ConfigError):
        codecs_from_compressor(3.5, zarr_format=3, dtype="f4")
    with pytest.raises(ConfigError, match="v2"):
        codecs_from_compressor(Crc32cCodec(), zarr_format=2, dtype="f4")


def test_filters() -> None:
    assert filters_from_spec(None, zarr_format=3, dtype="f4") == []
    (d,) = filters_from_spec(["delta"], zarr_format=3, dtype="<i4")
    assert d.to_metadata() == {"name": "numcodecs.delta", "configuration": {"dtype": "int32"}}
    chain = filters_from_spec(
        [
            numcodecs.FixedScaleOffset(0, 10, "<f8", "<i2"),
            {"name": "transpose", "configuration": {"order": [1, 0]}},
        ],
        zarr_format=3,
        dtype="<f8",
    )
    assert [c.codec_name for c in chain] == ["numcodecs.fixedscaleoffset", "transpose"]
    with pytest.raises(ConfigError, match="compressors"):
        filters_from_spec([numcodecs.Shuffle(4)], zarr_format=3, dtype="f4")
    v2 = filters_from_spec(
        [numcodecs.Delta("<i4"), numcodecs.Shuffle(4)], zarr_format=2, dtype="<i4"
    )
    assert [c.to_v2_config()["id"] for c in v2] == ["delta", "shuffle"]  # type: ignore[attr-defined]
    with pytest.raises(CodecConfigError, match="bool"):
        filters_from_spec(["packbits"], zarr_format=3, dtype="<i4")


def test_v2_codecs_chain() -> None:
    chain = v2_codecs(
        compressor={"id": "zlib", "level": 1},
        filters=[
            {"id": "delta", "dtype": ">i4", "astype": ">i2"},
            {"id": "shuffle", "elementsize": 2},
        ],
        dtype=">i4",
    )
    assert [c.codec_name for c in chain] == [
        "numcodecs.delta",
        "bytes",
        "numcodecs.shuffle",
        "numcodecs.zlib",
    ]
    assert chain[1] == BytesCodec(endian="big")
    assert v2_codecs(compressor=None, filters=None, dtype="|u1") == [BytesCodec(endian=None)]
    with pytest.raises(CodecConfigError, match="order is not supported"):
        v2_codecs(
            compressor=None,
            filters=[{"id": "shuffle", "elementsize": 4}, {"id": "delta", "dtype": "<i4"}],
            dtype="<i4",
        )
    with pytest.raises(UnknownCodecError):
        v2_codecs(compressor={"id": "nope"}, filters=None, dtype="<i4")
    with pytest.raises(CodecConfigError):
        v2_codecs(compressor={"level": 1}, filters=None, dtype="<i4")  # no id


def test_v2_blosc_uses_item_size_like_zarr_v2() -> None:
    data = np.arange(1000, dtype="<f8")
    spec = ChunkSpec(shape=(1000,), dtype=np.dtype("<f8"), fill_value=0)
    chain = v2_codecs(
        compressor={"id": "blosc", "cname": "lz4", "clevel": 5, "shuffle": 1},
        filters=None,
        dtype="<f8",
    )
    raw = chain[0].encode(data, spec)  # type: ignore[attr-defined]
    ours = chain[1].encode(raw, spec)  # type: ignore[attr-defined]
    assert ours == numcodecs.Blosc("lz4", 5, 1).encode(data)


def test_adapters_pickle_with_v2_flag() -> None:
    import pickle

    (b,) = codecs_from_compressor("blosc", zarr_format=2, dtype="f8")
    clone = pickle.loads(pickle.dumps(b))
    assert clone.typed_input  # type: ignore[attr-defined]
    assert clone == b
    plain = numcodecs_adapter("blosc")
    assert not pickle.loads(pickle.dumps(plain)).typed_input  # type: ignore[attr-defined]
