"""``asyncarr.transaction``: many changes to a layered container as one commit."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping
from typing import Any

from asyncarr.abc import Store
from asyncarr.core._api import resolve_store
from asyncarr.errors import ConfigError, StoreError
from asyncarr.stores import LayeredStore

__all__ = ["transaction"]


@contextlib.asynccontextmanager
async def transaction(
    store: str | Store,
    *,
    message: str,
    storage_options: Mapping[str, Any] | None = None,
) -> AsyncIterator[Store]:
    """A transaction on a layered container (``layered::`` URL or a
    :class:`~asyncarr.stores.LayeredStore`)::

        async with asyncarr.transaction("layered::s3://bucket/ds", message="day 12") as st:
            temp = await asyncarr.create_array(st, path="temp", shape=..., dtype="f4")
            await temp.write(data)
            root = await asyncarr.open_group(st, mode="r+")
            await root.update_attributes({"last_day": 12})

    The block gets a store in which every array and group is created, opened, read and
    written as usual; its changes are seen there alone. Leaving the block commits them
    all as one generation (readers see all of them or none); an exception discards them.
    :class:`~asyncarr.errors.ConflictError` is raised on leaving when a commit made since
    the block began changed some of the same keys (then nothing of the block lands).
    Nodes opened in the block read what the block saw after it ends and refuse writes.
    """
    st, owns = resolve_store(store, read_only=False, storage_options=storage_options)
    try:
        if not isinstance(st, LayeredStore):
            raise ConfigError(
                f"transactions need a layered container (a layered:: URL or a LayeredStore), "
                f"got {st}"
            )
        view = await st.begin(message=message)
        try:
            yield view
        except BaseException:
            if not isinstance(view, LayeredStore):  # pragma: no cover - begin() returns one
                raise
            with contextlib.suppress(StoreError, asyncio.CancelledError):
                await view.discard()
            raise
        await view.commit()
    finally:
        if owns:
            await st.aclose()
