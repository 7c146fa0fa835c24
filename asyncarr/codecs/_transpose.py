"""The Zarr v3 ``transpose`` codec (an array -> array permutation of axes)."""

from __future__ import annotations

from typing import Any, ClassVar, Self

import numpy as np

from asyncarr._types import ChunkSpec
from asyncarr.abc import ArrayArrayCodec, NDArray
from asyncarr.codecs._base import CodecConfigError, codec_error

__all__ = ["TransposeCodec"]


class TransposeCodec(ArrayArrayCodec):
    """Permute the axes of a chunk: encoded axis ``i`` is decoded axis ``order[i]``.

    Encode and decode return views (no copy); the ``bytes`` codec that
    follows lays the permuted array out in C order.
    """

    codec_name: ClassVar[str] = "transpose"
    releases_gil: ClassVar[bool] = True

    def __init__(self, *, order: Any) -> None:
        if isinstance(order, str | bytes) or not hasattr(order, "__iter__"):
            raise CodecConfigError(f"transpose order must be a list of integers, got {order!r}")
        items = tuple(order)
        if not all(isinstance(a, int) and not isinstance(a, bool) for a in items):
            raise CodecConfigError(f"transpose order must be a list of integers, got {order!r}")
        if sorted(items) != list(range(len(items))):
            raise CodecConfigError(
                f"transpose order must be a permutation of 0..{len(items) - 1}, got {list(items)}"
            )
        self.order: tuple[int, ...] = items
        self._inverse = tuple(int(i) for i in np.argsort(items))

    @classmethod
    def from_config(cls, configuration: dict[str, Any]) -> Self:
        """``{"order": [int, ...]}``."""
        unknown = set(configuration) - {"order"}
        if unknown:
            raise CodecConfigError(f"unknown transpose configuration keys: {sorted(unknown)}")
        if "order" not in configuration:
            raise CodecConfigError("the transpose codec needs an 'order' configuration")
        return cls(order=configuration["order"])

    def to_config(self) -> dict[str, Any]:
        return {"order": list(self.order)}

    def validate(self, spec: ChunkSpec) -> None:
        if len(self.order) != len(spec.shape):
            raise CodecConfigError(
                f"transpose order {list(self.order)} has {len(self.order)} axes, "
                f"the chunk has {len(spec.shape)}"
            )

    def resolve_spec(self, spec: ChunkSpec) -> ChunkSpec:
        self.validate(spec)
        return spec.with_(shape=tuple(spec.shape[a] for a in self.order))

    def encode(self, chunk: NDArray, spec: ChunkSpec) -> NDArray:
        if chunk.shape != spec.shape:
            raise codec_error(f"chunk has shape {chunk.shape}, expected {spec.shape}", codec=self)
        return chunk.transpose(self.order)

    def decode(self, chunk: NDArray, spec: ChunkSpec) -> NDArray:
        expected = tuple(spec.shape[a] for a in self.order)
        if chunk.shape != expected:
            raise codec_error(f"chunk has shape {chunk.shape}, expected {expected}", codec=self)
        return chunk.transpose(self._inverse)
