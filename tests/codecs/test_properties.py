"""Property tests (hypothesis): round trips on arbitrary data, and arbitrary
input never escapes as anything but CodecError."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from asyncarr._types import ChunkSpec
from asyncarr.abc import BytesBytesCodec
from asyncarr.codecs import (
    BloscCodec,
    BytesCodec,
    Crc32cCodec,
    GzipCodec,
    TransposeCodec,
    ZstdCodec,
    numcodecs_adapter,
)
from asyncarr.errors import CodecError

BYTES_CODECS: list[BytesBytesCodec] = [
    ZstdCodec(level=1),
    ZstdCodec(level=3, checksum=True),
    GzipCodec(level=1),
    BloscCodec(cname="lz4", typesize=4, shuffle="shuffle"),
    BloscCodec(cname="zstd", typesize=1, shuffle="bitshuffle"),
    Crc32cCodec(),
    *(
        numcodecs_adapter(i)  # type: ignore[misc]
        for i in ("zlib", "bz2", "lzma", "lz4", "crc32", "adler32", "jenkins_lookup3")
    ),
]
SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SPEC = ChunkSpec(shape=(0,), dtype=np.dtype("u1"), fill_value=0)


@pytest.mark.parametrize("codec", BYTES_CODECS, ids=repr)
@SETTINGS
@given(data=st.binary(min_size=1, max_size=5000))
def test_bytes_round_trip(codec: BytesBytesCodec, data: bytes) -> None:
    encoded = codec.encode(data, SPEC)
    assert bytes(codec.decode(encoded, SPEC, len(data))) == data
    assert bytes(codec.decode(encoded, SPEC)) == data
    if len(data) > 1:
        with pytest.raises(CodecError):
            codec.decode(encoded, SPEC, len(data) - 1)


@pytest.mark.parametrize("codec", BYTES_CODECS, ids=repr)
@SETTINGS
@given(junk=st.binary(max_size=300), max_size=st.integers(0, 4096))
def test_arbitrary_input_only_raises_codec_error(
    codec: BytesBytesCodec, junk: bytes, max_size: int
) -> None:
    try:
        out = codec.decode(junk, SPEC, max_size)
    except CodecError:
        return
    assert len(bytes(out)) <= max_size


DTYPES = st.sampled_from(["u1", "<i2", ">i4", "<u8", "<f4", ">f8", "<c8", "?", "S2", "<U1"])


@SETTINGS
@given(
    arr=DTYPES.flatmap(
        lambda dt: hnp.arrays(
            dtype=np.dtype(dt),
            shape=hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=5),
        )
    ),
    endian=st.sampled_from(["little", "big"]),
    order=st.sampled_from(["C", "F"]),
)
def test_bytes_codec_round_trip(arr: np.ndarray, endian: str, order: str) -> None:  # type: ignore[type-arg]
    spec = ChunkSpec(shape=arr.shape, dtype=arr.dtype, fill_value=0, order=order)
    codec = BytesCodec.for_dtype(arr.dtype, endian)  # type: ignore[arg-type]
    encoded = codec.encode(arr, spec)
    assert len(encoded) == arr.nbytes
    out = codec.decode(encoded, spec)
    assert out.dtype == arr.dtype
    np.testing.assert_array_equal(out, arr)
    target = np.empty_like(arr)
    codec.decode_into(encoded, target, spec)
    np.testing.assert_array_equal(target, arr)


@SETTINGS
@given(
    arr=hnp.arrays(
        dtype=np.dtype("<i4"), shape=hnp.array_shapes(min_dims=1, max_dims=4, max_side=4)
    ),
    data=st.data(),
)
def test_transpose_round_trip(arr: np.ndarray, data: st.DataObject) -> None:  # type: ignore[type-arg]
    order = data.draw(st.permutations(range(arr.ndim)))
    codec = TransposeCodec(order=order)
    spec = ChunkSpec(shape=arr.shape, dtype=arr.dtype, fill_value=0)
    inner = codec.resolve_spec(spec)
    encoded = codec.encode(arr, spec)
    assert encoded.shape == inner.shape
    raw = BytesCodec().encode(encoded, inner)
    np.testing.assert_array_equal(codec.decode(BytesCodec().decode(raw, inner), spec), arr)
    np.testing.assert_array_equal(
        np.frombuffer(raw, "<i4"), np.ascontiguousarray(np.transpose(arr, order)).ravel()
    )
