"""What arrays and groups have in common: a store, a path, ownership and mode."""

from __future__ import annotations

from types import TracebackType
from typing import ClassVar, Self

from asyncarr.abc import Store
from asyncarr.core._nodes import join_path
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

    def _check_writable(self) -> None:
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
