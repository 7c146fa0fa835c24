"""What arrays and groups have in common: a store, a path, ownership and mode."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType, TracebackType
from typing import Any, ClassVar, Self

from asyncarr.abc import Store
from asyncarr.core._metadata import plain_attributes
from asyncarr.core._nodes import join_path
from asyncarr.core._operation import store_operation
from asyncarr.errors import ReadOnlyStoreError

__all__ = ["NodeBase"]


class NodeBase:
    """Shared plumbing of :class:`AsyncArray` and :class:`AsyncGroup`."""

    _kind: ClassVar[str] = "node"

    def __init__(self, store: Store, path: str, *, owns_store: bool, read_only: bool) -> None:
        self._store = store
        self._path = join_path(path)
        self._owns_store = owns_store
        self._read_only = read_only

    @property
    def store(self) -> Store:
        return self._store

    @property
    def path(self) -> str:
        return self._path

    @property
    def name(self) -> str:
        return "/" + self._path

    @property
    def basename(self) -> str:
        return self._path.rsplit("/", 1)[-1]

    @property
    def read_only(self) -> bool:
        """Opened with ``mode="r"``, or on a read-only store."""
        return self._read_only or self._store.read_only

    @property
    def zarr_format(self) -> int:
        fmt: int = self._attributes_owner().zarr_format
        return fmt

    @property
    def attrs(self) -> Mapping[str, Any]:
        """The attributes (a read-only view; change them with :meth:`update_attributes`)."""
        return MappingProxyType(self._attributes_owner().attributes)

    @store_operation("update attributes of", write=True)
    async def update_attributes(self, new: Mapping[str, Any]) -> None:
        """Merge ``new`` into the attributes and persist them."""
        await self.set_attributes({**self.attrs, **dict(new)})

    @store_operation("set attributes of", write=True)
    async def set_attributes(self, attributes: Mapping[str, Any]) -> None:
        """Replace all attributes and persist them."""
        self._check_writable()
        await self._save_attributes(plain_attributes(attributes))

    def _attributes_owner(self) -> Any:
        """The metadata object holding ``zarr_format`` and ``attributes``."""
        raise NotImplementedError

    async def _save_attributes(self, attrs: dict[str, Any]) -> None:
        """Persist new attributes and adopt the metadata that holds them."""
        raise NotImplementedError

    def _check_writable(self) -> None:
        if not self._read_only:
            self._store._check_writable(self._path or None)  # the store says why, if it is
        if self.read_only:
            raise ReadOnlyStoreError(
                f"{self._kind} is opened read-only", store=self._store, key=self._path or None
            )

    async def aclose(self) -> None:
        """Release the store if this node opened it. Idempotent."""
        if self._owns_store:
            await self._store.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
