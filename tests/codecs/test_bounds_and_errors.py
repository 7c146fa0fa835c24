"""Format-specific edge cases: frames without sizes, multi-frame data, lying
headers, decompression bombs, error types and messages."""

from __future__ import annotations

import bz2
import gzip
import lzma
import struct
import tracemalloc
import zlib
from collections.abc import Callable
from typing import Any

import numcodecs
import numpy as np
import pytest
import zstandard

from asyncarr._types import ChunkSpec
from asyncarr.codecs import (
    BloscCodec,
    BytesCodec,
    CodecConfigError,
    Crc32cCodec,
    GzipCodec,
    ZstdCodec,
    decode_bytes_into,
    numcodecs_adapter,
    with_key,
)
from asyncarr.errors import CodecError, MetadataError

RAW = (np.arange(50_000, dtype="<i4") % 1000).tobytes()
SPEC = ChunkSpec(shape=(50_000,), dtype=np.dtype("<i4"), fill_value=0)
BOMB = bytes(32 << 20)  # 32 MiB of zeros


def _peak(fn: Callable[[], Any]) -> int:
    tracemalloc.start()
    try:
        with pytest.raises(CodecError):
            fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


# -- zstd --------------------------------------------------------------------------------------


def test_zstd_frame_without_content_size() -> None:
    frame = zstandard.ZstdCompressor(write_content_size=False).compress(RAW)
    assert zstandard.frame_content_size(frame) == -1
    codec = ZstdCodec()
    assert bytes(codec.decode(frame, SPEC, len(RAW))) == RAW
    assert bytes(codec.decode(frame, SPEC, len(RAW) + 100)) == RAW
    assert bytes(codec.decode(frame, SPEC)) == RAW
    out = bytearray(len(RAW))
    codec.decode_into(frame, out, SPEC)
    assert bytes(out) == RAW


def test_zstd_bomb_without_content_size_is_bounded() -> None:
    frame = zstandard.ZstdCompressor(write_content_size=False).compress(BOMB)
    peak = _peak(lambda: ZstdCodec().decode(frame, SPEC, 1 << 16))
    assert peak < 4 << 20


def test_zstd_bomb_with_content_size_is_refused_before_decoding() -> None:
    frame = ZstdCodec().encode(BOMB, SPEC)
    peak = _peak(lambda: ZstdCodec().decode(frame, SPEC, 1 << 16))
    assert peak < 1 << 20
    with pytest.raises(CodecError, match="would be at least"):
        ZstdCodec().decode_into(frame, bytearray(1 << 16), SPEC)


def test_zstd_concatenated_frames() -> None:
    half = len(RAW) // 2
    a, b = RAW[:half], RAW[half:]
    frames = ZstdCodec().encode(a, SPEC) + zstandard.ZstdCompressor(
        write_content_size=False
    ).compress(b)
    codec = ZstdCodec()
    assert bytes(codec.decode(frames, SPEC)) == RAW
    assert bytes(codec.decode(frames, SPEC, len(RAW))) == RAW
    out = np.empty(len(RAW), np.uint8)
    codec.decode_into(frames, out, SPEC)
    assert out.tobytes() == RAW
    with pytest.raises(CodecError):
        codec.decode(frames, SPEC, len(RAW) - 1)


def test_zstd_truncated_and_garbage() -> None:
    frame = ZstdCodec(level=5).encode(RAW, SPEC)
    codec = ZstdCodec()
    for bad in (frame[:-3], frame[:10], b"", b"not zstd at all"):
        with pytest.raises(CodecError):
            codec.decode(bad, SPEC)
        with pytest.raises(CodecError):
            codec.decode(bad, SPEC, len(RAW))
        with pytest.raises(CodecError):
            codec.decode_into(bad, bytearray(len(RAW)), SPEC)
    for max_size in (None, len(RAW), len(RAW) + 100):
        with pytest.raises(CodecError):
            codec.decode(frame + b"junk", SPEC, max_size)
    with pytest.raises(CodecError):
        codec.decode_into(frame + b"junk", bytearray(len(RAW)), SPEC)


def test_zstd_reads_numcodecs_frames_and_vice_versa() -> None:
    theirs = numcodecs.Zstd(level=7, checksum=True).encode(RAW)
    assert bytes(ZstdCodec().decode(theirs, SPEC, len(RAW))) == RAW
    ours = ZstdCodec(level=7, checksum=True).encode(RAW, SPEC)
    assert bytes(numcodecs.Zstd().decode(ours)) == RAW


@pytest.mark.parametrize("checksum", [False, True])
def test_zstd_large_chunks_encode_as_zarr_python_does(checksum: bool) -> None:
    """From 128 KiB on, chunks are compressed by numcodecs (faster there): the same frame
    zarr-python writes, content size included; smaller ones by a reused zstandard context."""
    big = (np.arange(64 * 1024, dtype="<f4") % 977 / 3).tobytes()  # 256 KiB
    codec = ZstdCodec(level=3, checksum=checksum)
    for data in (big, big[: 32 * 1024]):
        ours = codec.encode(data, SPEC)
        assert zstandard.frame_content_size(ours) == len(data)
        assert bytes(numcodecs.Zstd().decode(ours)) == data
    assert codec.encode(big, SPEC) == numcodecs.Zstd(level=3, checksum=checksum).encode(big)


def test_zstd_level_validation() -> None:
    for bad in (23, "3", 1.5, True):
        with pytest.raises(CodecConfigError):
            ZstdCodec(level=bad)  # type: ignore[arg-type]
    with pytest.raises(CodecConfigError):
        ZstdCodec(checksum=1)  # type: ignore[arg-type]


# -- gzip / zlib / bz2 / lzma -------------------------------------------------------------------


def test_gzip_multi_member_and_padding() -> None:
    half = len(RAW) // 2
    data = gzip.compress(RAW[:half]) + gzip.compress(RAW[half:]) + b"\x00" * 8
    assert bytes(GzipCodec().decode(data, SPEC, len(RAW))) == RAW
    with pytest.raises(CodecError, match="trailing garbage"):
        GzipCodec().decode(gzip.compress(RAW) + b"garbage", SPEC)
    with pytest.raises(CodecError):
        GzipCodec().decode(data, SPEC, len(RAW) - 1)


def test_gzip_encoding_is_deterministic_and_readable_by_stdlib() -> None:
    a = GzipCodec(level=9).encode(RAW, SPEC)
    assert a == GzipCodec(level=9).encode(RAW, SPEC)
    assert gzip.decompress(a) == RAW
    assert numcodecs.GZip().decode(a) == RAW


def test_gzip_level_validation() -> None:
    for bad in (-1, 10, "5"):
        with pytest.raises(CodecConfigError):
            GzipCodec(level=bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("codec_id", "compress"),
    [
        ("zlib", lambda b: zlib.compress(b, 6)),
        ("gzip", lambda b: gzip.compress(b, 1)),
        ("bz2", lambda b: bz2.compress(b, 1)),
        ("lzma", lambda b: lzma.compress(b, preset=1)),
    ],
)
def test_stdlib_bombs_are_bounded(codec_id: str, compress: Callable[[bytes], bytes]) -> None:
    codec = numcodecs_adapter(codec_id)
    small = compress(RAW)
    assert bytes(codec.decode(small, SPEC, len(RAW))) == RAW
    bomb = compress(BOMB)
    peak = _peak(lambda: codec.decode(bomb, SPEC, 1 << 16))
    assert peak < 4 << 20, peak


def test_bz2_and_lzma_multi_stream() -> None:
    half = len(RAW) // 2
    two_bz2 = bz2.compress(RAW[:half]) + bz2.compress(RAW[half:])
    assert bytes(numcodecs_adapter("bz2").decode(two_bz2, SPEC, len(RAW))) == RAW
    two_xz = lzma.compress(RAW[:half]) + lzma.compress(RAW[half:])
    assert bytes(numcodecs_adapter("lzma").decode(two_xz, SPEC, len(RAW))) == RAW


def test_truncated_stdlib_streams() -> None:
    for codec_id, data in (
        ("zlib", zlib.compress(RAW)),
        ("bz2", bz2.compress(RAW)),
        ("lzma", lzma.compress(RAW)),
        ("gzip", gzip.compress(RAW)),
    ):
        with pytest.raises(CodecError, match=r"truncated|corrupt"):
            numcodecs_adapter(codec_id).decode(data[: len(data) // 2], SPEC)


# -- blosc / lz4 ------------------------------------------------------------------------------------


def _set_u32(data: bytes, offset: int, value: int) -> bytes:
    return data[:offset] + struct.pack("<I", value) + data[offset + 4 :]


def test_blosc_header_checks() -> None:
    codec = BloscCodec(cname="lz4").evolve(SPEC)
    frame = codec.encode(RAW, SPEC)
    huge = _set_u32(frame, 4, 2**31 - 100)  # nbytes lies
    peak = _peak(lambda: codec.decode(huge, SPEC, len(RAW)))
    assert peak < 1 << 20
    with pytest.raises(CodecError, match="truncated blosc"):
        codec.decode(frame[:-1], SPEC)
    with pytest.raises(CodecError, match="shorter than the 16-byte header"):
        codec.decode(frame[:10], SPEC)
    with pytest.raises(CodecError):
        codec.decode(_set_u32(frame, 12, 3), SPEC)  # cbytes smaller than a header
    stored = BloscCodec(clevel=0).evolve(SPEC).encode(RAW, SPEC)
    with pytest.raises(CodecError, match="stored uncompressed"):
        codec.decode(_set_u32(stored, 4, len(RAW) * 2), SPEC)
    # trailing bytes after the frame are ignored, like c-blosc does
    assert bytes(codec.decode(frame + b"xyz", SPEC, len(RAW))) == RAW


def test_blosc_decode_into_and_wrong_size() -> None:
    codec = BloscCodec().evolve(SPEC)
    frame = codec.encode(RAW, SPEC)
    out = np.empty(len(RAW), np.uint8)
    codec.decode_into(frame, out, SPEC)
    assert out.tobytes() == RAW
    with pytest.raises(CodecError, match="expected"):
        codec.decode_into(frame, np.empty(len(RAW) + 4, np.uint8), SPEC)
    with pytest.raises(CodecError, match="writable"):
        codec.decode_into(frame, RAW, SPEC)
    with pytest.raises(CodecError, match="writable C-contiguous"):
        codec.decode_into(frame, np.empty(2 * len(RAW), np.uint8)[::2], SPEC)


def test_blosc_evolve_matches_zarr_python_defaults() -> None:
    one = BloscCodec().evolve(ChunkSpec((4,), np.dtype("u1"), 0))
    assert (one.typesize, one.shuffle) == (1, "bitshuffle")
    eight = BloscCodec().evolve(ChunkSpec((4,), np.dtype("f8"), 0))
    assert (eight.typesize, eight.shuffle) == (8, "shuffle")
    fixed = BloscCodec(typesize=2, shuffle="noshuffle").evolve(ChunkSpec((4,), np.dtype("f8"), 0))
    assert (fixed.typesize, fixed.shuffle) == (2, "noshuffle")
    assert BloscCodec().to_config() == {
        "typesize": 1,
        "cname": "zstd",
        "clevel": 5,
        "shuffle": "bitshuffle",
        "blocksize": 0,
    }
    for bad in ({"cname": "lzo"}, {"clevel": 10}, {"shuffle": 1}, {"typesize": 0}):
        with pytest.raises(CodecConfigError):
            BloscCodec.from_config(bad)


def test_lz4_header_checks() -> None:
    codec = numcodecs_adapter("lz4")
    frame = codec.encode(RAW, SPEC)
    with pytest.raises(CodecError, match="would be at least"):
        codec.decode(frame, SPEC, 100)
    with pytest.raises(CodecError, match="corrupt lz4 header"):
        codec.decode(_set_u32(frame, 0, 2**31), SPEC)
    with pytest.raises(CodecError):
        codec.decode(b"ab", SPEC)


# -- bytes / crc32c / errors -------------------------------------------------------------------------


def test_bytes_codec_wrong_size_names_expected_and_got() -> None:
    with pytest.raises(CodecError, match=r"expected 200000 bytes, got 199999"):
        BytesCodec().decode(RAW[:-1], SPEC)
    with pytest.raises(CodecError, match="shape"):
        BytesCodec().encode(np.zeros(3, "<i4"), SPEC)
    with pytest.raises(CodecError, match="dtype"):
        BytesCodec().encode(np.zeros(50_000, "<f4"), SPEC)


def test_bytes_codec_endian_rules() -> None:
    f8 = ChunkSpec((2,), np.dtype("<f8"), 0)
    with pytest.raises(CodecConfigError, match="endian"):
        BytesCodec(endian=None).validate(f8)
    with pytest.raises(CodecConfigError):
        BytesCodec(endian="middle")  # type: ignore[arg-type]
    assert BytesCodec.for_dtype("u1").to_metadata() == {"name": "bytes"}
    assert BytesCodec.for_dtype("S7").to_metadata() == {"name": "bytes"}
    assert BytesCodec.for_dtype("<U2").to_config() == {"endian": "little"}
    struct_dtype = np.dtype([("a", "<i4"), ("b", "u1")])
    spec = ChunkSpec((2,), struct_dtype, None)
    assert BytesCodec(endian=None).evolve(spec).endian == "little"
    big = BytesCodec(endian="big")
    data = np.array([1.5, -2.0], "<f8")
    encoded = big.encode(data, f8)
    assert encoded == data.astype(">f8").tobytes()
    decoded = big.decode(encoded, f8)
    assert decoded.dtype == np.dtype("<f8")
    np.testing.assert_array_equal(decoded, data)


def test_crc32c_mismatch_and_with_key() -> None:
    codec = Crc32cCodec()
    data = bytearray(codec.encode(RAW, SPEC))
    data[5] ^= 0xFF
    with pytest.raises(CodecError, match="crc32c checksum mismatch") as info:
        codec.decode(bytes(data), SPEC)
    keyed = with_key(info.value, "arr/c/0/1")
    assert type(keyed) is type(info.value)
    assert keyed.key == "arr/c/0/1"
    assert "arr/c/0/1" in str(keyed)
    assert "mismatch" in str(keyed)
    assert str(keyed).count("codec=") == 1
    with pytest.raises(CodecError, match="too short"):
        codec.decode(b"abc", SPEC)


def test_with_key_on_foreign_errors_and_config_errors() -> None:
    plain = CodecError("boom")
    assert "k1" in str(with_key(plain, "k1"))
    cfg = CodecConfigError("bad level")
    keyed = with_key(cfg, "zarr.json")
    assert isinstance(keyed, CodecConfigError)
    assert isinstance(keyed, MetadataError)
    assert "zarr.json" in str(keyed)


def test_decode_bytes_into_falls_back_to_copy() -> None:
    codec = GzipCodec()
    out = bytearray(len(RAW))
    decode_bytes_into(codec, codec.encode(RAW, SPEC), out, SPEC)
    assert bytes(out) == RAW
    with pytest.raises(CodecError):
        decode_bytes_into(codec, codec.encode(RAW, SPEC), bytearray(10), SPEC)


def test_numcodecs_errors_are_translated() -> None:
    with pytest.raises(CodecError):
        numcodecs_adapter("crc32").decode(b"\x00\x01", SPEC)
    with pytest.raises(CodecConfigError):
        numcodecs_adapter("zlib", {"level": 1, "bogus": 2})
    with pytest.raises(CodecConfigError, match="arbitrary code"):
        numcodecs_adapter("pickle")
    with pytest.raises(CodecConfigError, match="not supported"):
        numcodecs_adapter("vlen-utf8")
    delta = numcodecs_adapter("delta")
    with pytest.raises(CodecConfigError, match="evolve"):
        delta.encode(np.zeros(3, "<i4"), ChunkSpec((3,), np.dtype("<i4"), 0))
    with pytest.raises(CodecConfigError, match="bool"):
        numcodecs_adapter("packbits").validate(ChunkSpec((3,), np.dtype("<i4"), 0))


def test_zstd_large_frames_use_the_one_shot_path() -> None:
    big = (np.arange(400_000, dtype="<i4") % 977).tobytes()  # 1.6 MB: above the 256 KiB switch
    spec = ChunkSpec(shape=(400_000,), dtype=np.dtype("<i4"), fill_value=0)
    codec = ZstdCodec(level=1)
    frame = codec.encode(big, spec)
    assert bytes(codec.decode(frame, spec, len(big) + 10)) == big
    out = np.empty(len(big), np.uint8)
    codec.decode_into(frame, out, spec)
    assert out.tobytes() == big
    for bad in (frame[:-2], frame + b"\x00\x01"):
        with pytest.raises(CodecError):
            codec.decode(bad, spec, len(big))
        with pytest.raises(CodecError):
            codec.decode_into(bad, out, spec)
    two = frame + codec.encode(big[:1000], spec)
    assert bytes(codec.decode(two, spec)) == big + big[:1000]


def test_zstd_batch_decode_is_exact_or_declines() -> None:
    codec = ZstdCodec()
    size = 16_384
    chunks = [bytes([i]) * size for i in range(5)]
    frames = [codec.encode(c, SPEC) for c in chunks]
    got = codec.decode_exact_many(frames, size)
    assert got is not None and [bytes(g) for g in got] == chunks
    # a corrupt frame, a frame of another size, an oversized frame: decline (the caller
    # then decodes chunk by chunk and names the bad key)
    assert codec.decode_exact_many([*frames[:2], frames[2][:-3]], size) is None
    short = codec.encode(bytes(size - 8), SPEC)
    assert codec.decode_exact_many([frames[0], short], size) is None
    assert codec.decode_exact_many([frames[0], codec.encode(bytes(size + 8), SPEC)], size) is None
    assert codec.decode_exact_many([], size) is None


def test_pipeline_batch_decode_names_the_bad_key() -> None:
    from asyncarr.core._pipeline import CodecPipeline

    spec = ChunkSpec(shape=(64, 64), dtype=np.dtype("<f4"), fill_value=0)
    pipe = CodecPipeline([BytesCodec(), ZstdCodec()], spec)
    data = [np.full((64, 64), i, "<f4") for i in range(4)]
    frames = [pipe.encode(d) for d in data]
    out = np.zeros((64, 256), "<f4")
    places = [out[:, i * 64 : (i + 1) * 64] for i in range(4)]
    pipe.decode_many_into(frames, places, ["c/0/0", "c/0/1", "c/0/2", "c/0/3"])
    np.testing.assert_array_equal(out, np.hstack(data))
    frames[2] = frames[2][:-5]
    with pytest.raises(CodecError, match="c/0/2"):
        pipe.decode_many_into(frames, places, ["c/0/0", "c/0/1", "c/0/2", "c/0/3"])
