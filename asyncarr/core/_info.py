"""Readable summaries of arrays and groups (``arr.info``, ``group.info``)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from asyncarr.core._array import AsyncArray
    from asyncarr.core._group import AsyncGroup, Member

__all__ = ["ArrayInfo", "GroupInfo"]


def _human(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.1f} {unit}" if unit != "B" else f"{n} B"
        size /= 1024
    return f"{n} B"  # pragma: no cover


@dataclass(frozen=True)
class ArrayInfo:
    """What ``asyncarr info`` prints; ``str(info)`` is a readable table."""

    name: str
    store: str
    zarr_format: int
    shape: tuple[int, ...]
    dtype: str
    chunks: tuple[int, ...] | None
    """The chunk shape (inner chunks for sharded arrays); ``None`` for a rectilinear grid
    of chunks (see :attr:`chunk_grid`)."""
    shards: tuple[int, ...] | None
    """The shard shape; ``None`` unsharded, or for a rectilinear grid of shards."""
    fill_value: Any
    order: str
    codecs: list[dict[str, Any]]
    dimension_names: tuple[str | None, ...] | None
    nbytes: int
    nchunks: int
    nbytes_stored: int | None = None
    nchunks_initialized: int | None = None
    chunk_grid: dict[str, Any] | None = None
    """The chunk grid as the metadata has it (of shards, for sharded arrays)."""
    sharded: bool = False
    data_type: str | None = None
    """The Zarr data type, for people (``string``, ``numpy.datetime64[10us]``,
    ``struct{a: int32, ...}``); :attr:`dtype` is the numpy dtype reads return."""

    @classmethod
    def from_array(
        cls,
        arr: AsyncArray,
        *,
        nbytes_stored: int | None = None,
        nchunks_initialized: int | None = None,
    ) -> ArrayInfo:
        meta = arr.metadata
        grid = meta.chunk_grid
        sharding = arr._ctx.sharding
        if sharding is not None:
            chunks: tuple[int, ...] | None = sharding.chunk_shape
            shards = grid.chunk_shape if grid.is_regular else None
        else:
            chunks = grid.chunk_shape if grid.is_regular else None
            shards = None
        if meta.zarr_format == 2:
            codecs = [
                *(meta.v2_filters or []),
                *([meta.v2_compressor] if meta.v2_compressor else []),
            ]
        else:
            codecs = [c.to_metadata() for c in meta.codecs]
        return cls(
            name=arr.name,
            store=str(arr.store),
            zarr_format=meta.zarr_format,
            shape=arr.shape,
            dtype=str(arr.dtype),
            chunks=chunks,
            shards=shards,
            fill_value=arr.fill_value,
            order=arr.order,
            codecs=codecs,
            dimension_names=arr.dimension_names,
            nbytes=arr.nbytes,
            nchunks=arr.nchunks,
            nbytes_stored=nbytes_stored,
            nchunks_initialized=nchunks_initialized,
            chunk_grid=grid.to_json(),
            sharded=sharding is not None,
            data_type=meta.data_type.describe(),
        )

    def _grid_label(self) -> str:
        return _grid_label(self.chunk_grid)

    @property
    def compression_ratio(self) -> float | None:
        if not self.nbytes_stored:
            return None
        return self.nbytes / self.nbytes_stored

    def to_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items()}
        out["fill_value"] = _plain(self.fill_value)
        out["compression_ratio"] = self.compression_ratio
        return out

    def __str__(self) -> str:
        rows: list[tuple[str, str]] = [
            ("Name", self.name),
            ("Store", self.store),
            ("Zarr format", str(self.zarr_format)),
            ("Shape", str(self.shape)),
            ("Data type", self.data_type or self.dtype),
            *([("NumPy dtype", self.dtype)] if self.data_type not in (None, self.dtype) else []),
            ("Chunk shape", str(self.chunks) if self.chunks is not None else self._grid_label()),
        ]
        if self.sharded:
            shards = str(self.shards) if self.shards is not None else self._grid_label()
            rows.append(("Shard shape", shards))
        rows += [
            ("Fill value", repr(_plain(self.fill_value))),
            ("Order", self.order),
            ("Codecs", ", ".join(_codec_label(c) for c in self.codecs) or "none"),
        ]
        if self.dimension_names is not None:
            rows.append(("Dimension names", str(list(self.dimension_names))))
        rows.append(("No. bytes", f"{self.nbytes} ({_human(self.nbytes)})"))
        grid_label = "shards" if self.sharded else "chunks"
        if self.nbytes_stored is not None:
            rows.append(
                ("No. bytes stored", f"{self.nbytes_stored} ({_human(self.nbytes_stored)})")
            )
            ratio = self.compression_ratio
            rows.append(("Compression ratio", f"{ratio:.2f}" if ratio else "-"))
        if self.nchunks_initialized is not None:
            rows.append(
                (
                    f"{grid_label.capitalize()} initialized",
                    f"{self.nchunks_initialized}/{self.nchunks}",
                )
            )
        else:
            rows.append((f"No. {grid_label}", str(self.nchunks)))
        width = max(len(k) for k, _ in rows)
        return "\n".join(f"{k:<{width}} : {v}" for k, v in rows)


@dataclass(frozen=True)
class GroupInfo:
    """What ``asyncarr info`` prints for a group; ``str(info)`` is a readable table.

    The member counts (all depths) are ``None`` in :attr:`AsyncGroup.info`, which does no
    I/O, and known in :meth:`AsyncGroup.info_complete`. Arrays and groups that asyncarr
    cannot open are counted with the others and listed in :attr:`unsupported`.
    """

    name: str
    store: str
    zarr_format: int
    read_only: bool
    consolidated: bool
    attributes: dict[str, Any]
    narrays: int | None = None
    ngroups: int | None = None
    unsupported: tuple[tuple[str, str | None, str], ...] | None = None
    """``(path, node type or None, why)`` of each member asyncarr cannot open."""

    @classmethod
    def from_group(
        cls, group: AsyncGroup, members: list[tuple[str, Member]] | None = None
    ) -> GroupInfo:
        from asyncarr.core._unsupported import UnsupportedNode

        counts: dict[str, int | None] = {"array": None, "group": None}
        unsupported = None
        if members is not None:
            kinds = [_node_type(node) for _, node in members]
            counts = {kind: kinds.count(kind) for kind in counts}
            unsupported = tuple(
                (path, node.node_type, node.reason)
                for path, node in members
                if isinstance(node, UnsupportedNode)
            )
        return cls(
            name=group.name,
            store=str(group.store),
            zarr_format=group.zarr_format,
            read_only=group.read_only,
            consolidated=group.metadata.consolidated is not None,
            attributes=dict(group.attrs),
            narrays=counts["array"],
            ngroups=counts["group"],
            unsupported=unsupported,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": "group",
            "name": self.name,
            "store": self.store,
            "zarr_format": self.zarr_format,
            "read_only": self.read_only,
            "consolidated": self.consolidated,
            "attributes": self.attributes,
            "arrays": self.narrays,
            "groups": self.ngroups,
            "unsupported": None
            if self.unsupported is None
            else [
                {"path": path, "node_type": kind, "reason": reason}
                for path, kind, reason in self.unsupported
            ],
        }

    def __str__(self) -> str:
        rows: list[tuple[str, str]] = [
            ("Name", self.name),
            ("Type", "group"),
            ("Store", self.store),
            ("Zarr format", str(self.zarr_format)),
            ("Read-only", str(self.read_only)),
            ("Consolidated", str(self.consolidated)),
            ("Attributes", str(len(self.attributes))),
        ]
        if self.narrays is not None:
            rows.append(("No. arrays", str(self.narrays)))
        if self.ngroups is not None:
            rows.append(("No. groups", str(self.ngroups)))
        for path, kind, reason in self.unsupported or ():
            rows.append(("Unsupported", f"{path} ({kind or 'node'}): {reason}"))
        width = max(len(k) for k, _ in rows)
        return "\n".join(f"{k:<{width}} : {v}" for k, v in rows)


def _node_type(node: Any) -> str | None:
    from asyncarr.core._array import AsyncArray
    from asyncarr.core._group import AsyncGroup

    if isinstance(node, AsyncArray):
        return "array"
    if isinstance(node, AsyncGroup):
        return "group"
    kind: str | None = node.node_type
    return kind


def _grid_label(chunk_grid: dict[str, Any] | None) -> str:
    """A rectilinear grid in one short line: its per-dimension edges, run-length encoded."""
    shapes = ((chunk_grid or {}).get("configuration") or {}).get("chunk_shapes", [])
    text = "rectilinear " + json.dumps(shapes, separators=(",", ":"))
    return text if len(text) <= 120 else text[:117] + "..."


def _codec_label(c: dict[str, Any]) -> str:
    name = c.get("name") or c.get("id") or "?"
    config = c.get("configuration") or {k: v for k, v in c.items() if k != "id"}
    inner = ", ".join(f"{k}={v}" for k, v in config.items() if k not in ("codecs", "index_codecs"))
    label = f"{name}({inner})" if inner else str(name)
    nested = config.get("codecs")
    if isinstance(nested, list) and nested:
        label += " [" + ", ".join(_codec_label(n) for n in nested) + "]"
    return label


def _plain(value: Any) -> Any:
    """A numpy scalar as the Python value it holds (``0``, not ``np.int32(0)``)."""
    return value.item() if isinstance(value, np.generic) else value
