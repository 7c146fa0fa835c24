"""``CodecTests``: the conformance suite every codec must pass.

Subclass it in a test module and provide a ``codec`` fixture::

    class TestMyCodec(CodecTests):
        @pytest.fixture
        def codec(self):
            return MyCodec(level=3)

Array -> array and bytes -> bytes codecs are tested inside a minimal chain
(with the ``bytes`` codec), so every codec is checked end to end: array in,
bytes out, the same array back. Class attributes describe what the codec
supports (``dtypes``, ``lossy``, ...).
"""

from __future__ import annotations

import json
import pickle
import threading
import tracemalloc
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
import pytest

from asyncarr._types import ChunkSpec
from asyncarr.abc import ArrayArrayCodec, ArrayBytesCodec, BytesBytesCodec, Codec, NDArray
from asyncarr.codecs import BytesCodec, CodecConfigError, codec_from_metadata, get_codec_class
from asyncarr.errors import CodecError

__all__ = ["CodecTests", "sample_array"]

ALL_DTYPES = (
    "|u1", "|i1", "|b1", "<i2", "<u2", ">i4", "<i4", "<u8", "<f2", "<f4", ">f8", "<f8",
    "<c8", "<c16", "|S3", "<U2", "<M8[s]", "<m8[ms]", "|V4",
)  # fmt: skip
SHAPES: tuple[tuple[int, ...], ...] = ((), (0,), (1,), (17,), (4, 5), (3, 0, 2), (2, 3, 4))


def sample_array(shape: tuple[int, ...], dtype: np.dtype[Any] | str, seed: int = 0) -> NDArray:
    """Deterministic, compressible-but-varied test data of any dtype (``T``: strings,
    ``O``: byte strings)."""
    dtype = np.dtype(dtype)
    rng = np.random.default_rng(seed)
    n = int(np.prod(shape)) if shape else 1
    kind = dtype.kind
    flat: NDArray
    if kind == "b":
        flat = rng.integers(0, 2, n).astype(bool)
    elif kind in "iu":
        info = np.iinfo(dtype)
        walk = np.cumsum(rng.integers(-3, 4, n)) + rng.integers(0, 50)
        flat = np.clip(walk, info.min, info.max).astype(dtype)
    elif kind == "f":
        flat = (np.linspace(-10, 10, n) + rng.normal(0, 0.5, n)).astype(dtype)
    elif kind == "c":
        flat = (rng.normal(size=n) + 1j * rng.normal(size=n)).astype(dtype)
    elif kind in "mM":
        flat = (np.arange(n, dtype=np.int64) * 7 + 1_600_000_000).view(dtype)
    elif kind == "S":
        size = dtype.itemsize
        flat = np.array([bytes([97 + (i % 26)]) * (1 + i % size) for i in range(n)], dtype)
    elif kind == "U":
        flat = np.array([chr(0x41 + i % 50) * (1 + i % 2) for i in range(n)], dtype=dtype)
    elif kind == "T":  # variable-length strings (numpy StringDType)
        flat = np.array(
            ["é" * (i % 5) + chr(0x41 + i % 50) * (i % 3) for i in range(n)], dtype=dtype
        )
    elif kind == "O":  # variable-length byte strings
        flat = np.empty(n, dtype=object)
        for i in range(n):
            flat[i] = rng.bytes(int(rng.integers(0, 12)))
    else:  # void / other fixed-size: random bytes
        flat = np.frombuffer(rng.bytes(n * dtype.itemsize), dtype=dtype).copy()
    return flat.astype(dtype).reshape(shape)


class _Chain:
    """``codec`` in the smallest chain that maps arrays to bytes."""

    def __init__(self, codec: Codec, spec: ChunkSpec) -> None:
        self.spec = spec
        codec = codec.evolve(spec)
        codec.validate(spec)
        self.codec = codec
        if isinstance(codec, ArrayArrayCodec):
            self.inner_spec = codec.resolve_spec(spec)
            self.serializer: ArrayBytesCodec = BytesCodec.for_dtype(self.inner_spec.dtype)
        elif isinstance(codec, ArrayBytesCodec):
            self.inner_spec = spec
            self.serializer = codec
        else:
            self.inner_spec = spec
            self.serializer = BytesCodec.for_dtype(spec.dtype)

    def encode(self, array: NDArray) -> bytes:
        codec = self.codec
        if isinstance(codec, ArrayArrayCodec):
            array = codec.encode(array, self.spec)
        data = self.serializer.encode(array, self.inner_spec)
        if isinstance(codec, BytesBytesCodec):
            data = codec.encode(data, self.inner_spec)
        return data

    def decode(self, data: bytes | memoryview) -> NDArray:
        codec = self.codec
        if isinstance(codec, BytesBytesCodec):
            data = codec.decode(data, self.inner_spec, self.inner_spec.nbytes)
        array = self.serializer.decode(data, self.inner_spec)
        if isinstance(codec, ArrayArrayCodec):
            array = codec.decode(array, self.spec)
        return array


class CodecTests:
    """Conformance tests for :class:`asyncarr.abc.Codec` implementations."""

    dtypes: ClassVar[tuple[str, ...]] = ALL_DTYPES
    """Dtypes the codec must round-trip."""
    shapes: ClassVar[tuple[tuple[int, ...], ...]] = SHAPES
    lossy: ClassVar[bool] = False
    """Lossy codecs are checked for closeness (``rtol``/``atol``) and idempotence."""
    rtol: ClassVar[float] = 1e-2
    atol: ClassVar[float] = 1e-2
    detects_corruption: ClassVar[bool] = False
    """Whether flipped bytes must always raise (checksums)."""
    bounded_decode: ClassVar[bool] = True
    """bytes -> bytes only: decode(max_size) refuses bombs before allocating."""
    fortran_order: ClassVar[bool] = True
    """Whether to test chunks with ``ChunkSpec.order == "F"`` (Zarr v2)."""
    bomb_size: ClassVar[int] = 8 << 20
    threads: ClassVar[int] = 4
    ndim: ClassVar[int | None] = None
    """Set for codecs that only work on chunks of one dimensionality (transpose)."""

    # -- helpers -------------------------------------------------------------------------
    def shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """``shape`` adapted to :attr:`ndim` (trailing axes merged or padded with 1)."""
        if self.ndim is None or len(shape) == self.ndim:
            return shape
        if len(shape) < self.ndim:
            return shape + (1,) * (self.ndim - len(shape))
        head = shape[: self.ndim - 1]
        return (*head, int(np.prod(shape[self.ndim - 1 :])))

    def spec(self, shape: tuple[int, ...], dtype: str, order: str = "C") -> ChunkSpec:
        return ChunkSpec(shape=shape, dtype=np.dtype(dtype), fill_value=0, order=order)

    def check_equal(self, got: NDArray, expected: NDArray) -> None:
        assert got.shape == expected.shape
        assert got.dtype == expected.dtype
        if self.lossy and expected.dtype.kind in "fc":
            np.testing.assert_allclose(got, expected, rtol=self.rtol, atol=self.atol)
        else:
            np.testing.assert_array_equal(got, expected)

    def main_dtype(self) -> str:
        return next((d for d in self.dtypes if np.dtype(d).itemsize > 1), self.dtypes[0])

    # -- round trips ---------------------------------------------------------------------
    def test_round_trip_dtypes(self, codec: Codec) -> None:
        for dtype in self.dtypes:
            shape = self.shape((6, 5))
            chain = _Chain(codec, self.spec(shape, dtype))
            data = sample_array(shape, dtype)
            self.check_equal(chain.decode(chain.encode(data)), data)

    def test_round_trip_shapes(self, codec: Codec) -> None:
        dtype = self.main_dtype()
        for shape in dict.fromkeys(self.shape(s) for s in self.shapes):
            chain = _Chain(codec, self.spec(shape, dtype))
            data = sample_array(shape, dtype, seed=len(shape))
            encoded = chain.encode(data)
            assert isinstance(encoded, bytes)
            self.check_equal(chain.decode(encoded), data)

    def test_round_trip_non_contiguous_input(self, codec: Codec) -> None:
        dtype = self.main_dtype()
        base = sample_array(self.shape((8, 10)), dtype)
        view = base[::2, 1::3] if base.ndim == 2 else base[::2]
        chain = _Chain(codec, self.spec(view.shape, dtype))
        self.check_equal(chain.decode(chain.encode(view)), np.ascontiguousarray(view))

    def test_round_trip_fortran_order(self, codec: Codec) -> None:
        if not self.fortran_order:
            pytest.skip("codec does not support F-order chunks")
        dtype = self.main_dtype()
        data = sample_array(self.shape((5, 7, 3)), dtype)
        chain = _Chain(codec, self.spec(data.shape, dtype, order="F"))
        self.check_equal(chain.decode(chain.encode(data)), data)

    def test_lossy_is_idempotent(self, codec: Codec) -> None:
        if not self.lossy:
            pytest.skip("lossless codec")
        dtype = self.main_dtype()
        shape = self.shape((40,))
        chain = _Chain(codec, self.spec(shape, dtype))
        once = chain.decode(chain.encode(sample_array(shape, dtype)))
        np.testing.assert_array_equal(chain.decode(chain.encode(once)), once)

    def test_decode_accepts_any_buffer(self, codec: Codec) -> None:
        dtype = self.main_dtype()
        shape = self.shape((33,))
        data = sample_array(shape, dtype)
        chain = _Chain(codec, self.spec(shape, dtype))
        encoded = chain.encode(data)
        for buf in (memoryview(encoded), memoryview(bytearray(encoded))):
            self.check_equal(chain.decode(buf), data)

    # -- metadata ------------------------------------------------------------------------
    def test_config_round_trip(self, codec: Codec) -> None:
        evolved = codec.evolve(self.spec(self.shape((4,)), self.main_dtype()))
        for c in (codec, evolved):
            again = type(c).from_config(c.to_config())
            assert again == c
            assert hash(again) == hash(c)

    def test_metadata_is_json_and_registered(self, codec: Codec) -> None:
        evolved = codec.evolve(self.spec(self.shape((4,)), self.main_dtype()))
        for c in (codec, evolved):
            meta = c.to_metadata()
            assert meta["name"] == c.codec_name
            text = json.dumps(meta)
            assert codec_from_metadata(json.loads(text)) == c
        assert get_codec_class(codec.codec_name) is type(codec)

    def test_unknown_configuration_key_is_rejected(self, codec: Codec) -> None:
        with pytest.raises(CodecConfigError):
            type(codec).from_config({**codec.to_config(), "no_such_option_xyz": 1})

    def test_class_attributes(self, codec: Codec) -> None:
        assert isinstance(type(codec).releases_gil, bool)
        assert codec.kind in ("array_to_array", "array_to_bytes", "bytes_to_bytes")
        assert repr(codec)

    def test_pickle(self, codec: Codec) -> None:
        dtype = self.main_dtype()
        spec = self.spec(self.shape((12,)), dtype)
        for c in (codec, codec.evolve(spec)):
            clone = pickle.loads(pickle.dumps(c))
            assert clone == c
            assert type(clone) is type(c)
            data = sample_array(spec.shape, dtype)
            chain, chain2 = _Chain(c, spec), _Chain(clone, spec)
            self.check_equal(chain2.decode(chain.encode(data)), data)

    # -- bad input -----------------------------------------------------------------------
    def _encoded(self, codec: Codec) -> tuple[_Chain, bytes]:
        dtype = self.main_dtype()
        shape = self.shape((64,))
        chain = _Chain(codec, self.spec(shape, dtype))
        return chain, chain.encode(sample_array(shape, dtype, seed=3))

    def test_truncated_input_raises_codec_error(self, codec: Codec) -> None:
        chain, encoded = self._encoded(codec)
        for cut in sorted({0, 1, len(encoded) // 2, len(encoded) - 1}):
            with pytest.raises(CodecError):
                chain.decode(encoded[:cut])

    def test_garbage_input_never_raises_raw_errors(self, codec: Codec) -> None:
        chain, encoded = self._encoded(codec)
        rng = np.random.default_rng(7)
        candidates = [rng.bytes(len(encoded)), rng.bytes(len(encoded) + 13), b"\x00" * 40]
        for i in range(8):
            flipped = bytearray(encoded)
            pos = int(rng.integers(0, len(flipped)))
            flipped[pos] ^= 1 << (i % 8)
            candidates.append(bytes(flipped))
        for bad in candidates:
            try:
                out = chain.decode(bad)
            except CodecError:
                continue
            assert out.shape == chain.spec.shape
            assert out.dtype == chain.spec.dtype

    def test_flipped_bytes_detected(self, codec: Codec) -> None:
        if not self.detects_corruption:
            pytest.skip("codec has no integrity check")
        chain, encoded = self._encoded(codec)
        for pos in (0, len(encoded) // 2, len(encoded) - 1):
            flipped = bytearray(encoded)
            flipped[pos] ^= 0x10
            with pytest.raises(CodecError):
                chain.decode(bytes(flipped))

    def test_incompressible_chunks_fit_the_read_bound(self, codec: Codec) -> None:
        """Reads ask stores for at most a pipeline's ``encoded_bound`` bytes: no chunk this
        codec writes may be larger, however badly its data compresses."""
        from asyncarr.core._pipeline import CodecPipeline

        rng = np.random.default_rng(5)
        dtype = "|u1" if "|u1" in self.dtypes else self.dtypes[0]
        for shape in ((1,), (17,), (64, 1024)):
            spec = self.spec(self.shape(shape), dtype)
            chain = _Chain(codec, spec)
            codecs: list[Codec] = [codec]
            if isinstance(codec, ArrayArrayCodec):
                codecs = [codec, chain.serializer]
            elif isinstance(codec, BytesBytesCodec):
                codecs = [chain.serializer, codec]
            bound = CodecPipeline(codecs, spec).encoded_bound
            data = (
                rng.integers(0, 256, spec.shape, dtype=np.uint8)  # incompressible
                if dtype == "|u1"
                else sample_array(spec.shape, dtype)
            )
            encoded = chain.encode(data)
            assert bound is not None and len(encoded) <= bound, (shape, len(encoded), bound)

    def test_max_size_bounds_decode(self, codec: Codec) -> None:
        if not isinstance(codec, BytesBytesCodec):
            pytest.skip("only bytes->bytes codecs take max_size")
        spec = self.spec((self.bomb_size,), "|u1")
        c = codec.evolve(spec)
        payload = np.zeros(self.bomb_size, dtype=np.uint8).tobytes()
        encoded = c.encode(payload, spec)
        assert bytes(c.decode(encoded, spec, len(payload))) == payload
        limit = 64 << 10
        tracemalloc.start()
        try:
            with pytest.raises(CodecError):
                c.decode(encoded, spec, limit)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        if self.bounded_decode:
            # slack: the decoder's own state (e.g. lzma's 1 MiB dictionary), never the output
            allowed = limit + 2 * len(encoded) + (2 << 20)
            assert peak < allowed, f"decode allocated {peak} bytes, allowed {allowed}"

    # -- concurrency ---------------------------------------------------------------------
    def test_thread_safety(self, codec: Codec) -> None:
        dtype = self.main_dtype()
        spec = self.spec(self.shape((64, 33)), dtype)
        chain = _Chain(codec, spec)
        inputs = [sample_array(spec.shape, dtype, seed=s) for s in range(self.threads)]
        encoded = [chain.encode(a) for a in inputs]
        expected = [chain.decode(e) for e in encoded]
        errors: list[BaseException] = []
        barrier = threading.Barrier(self.threads)

        def work(i: int) -> None:
            try:
                barrier.wait()
                for r in range(20):
                    j = (i + r) % self.threads
                    np.testing.assert_array_equal(chain.decode(encoded[j]), expected[j])
                    assert chain.decode(chain.encode(inputs[j])).shape == inputs[j].shape
            except BaseException as exc:
                errors.append(exc)

        _run_threads(work, self.threads)
        assert not errors, errors[0]

    # -- fast path -----------------------------------------------------------------------
    def test_decode_into(self, codec: Codec) -> None:
        if not getattr(codec, "supports_decode_into", False):
            pytest.skip("codec has no decode_into fast path")
        dtype = self.main_dtype()
        spec = self.spec(self.shape((16, 9)), dtype)
        chain = _Chain(codec, spec)
        data = sample_array(spec.shape, dtype)
        encoded = chain.encode(data)
        c: Any = chain.codec
        if chain.codec.kind == "bytes_to_bytes":
            raw = chain.serializer.encode(data, spec)
            for out in (bytearray(len(raw)), np.empty(len(raw), np.uint8)):
                c.decode_into(encoded, out, spec)
                assert bytes(out) == raw
            with pytest.raises(CodecError):
                c.decode_into(encoded, bytearray(len(raw) - 1), spec)
        else:
            target = np.zeros(tuple(n + 3 for n in spec.shape), np.dtype(dtype).newbyteorder("="))
            view = target[tuple(slice(2, 2 + n) for n in spec.shape)]
            c.decode_into(encoded, view, spec)
            np.testing.assert_array_equal(view, data)
            assert not target[0].any()  # nothing written outside the view
            with pytest.raises(CodecError):
                c.decode_into(encoded[:-1], view, spec)


def _run_threads(work: Callable[[int], None], n: int) -> None:
    threads = [threading.Thread(target=work, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
