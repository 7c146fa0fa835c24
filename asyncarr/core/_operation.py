"""Top-level calls of the array API as store operations (:meth:`Store.operation`).

Each public call that reads or changes a node runs inside one operation of the node's
store, named after what it does and where (``"write /temp"``). Plain stores ignore it;
a layered container reads one snapshot for a reading call and commits a writing call's
changes as one generation when the call returns (none if it raises). Calls made inside
another (``append`` resizes, then writes) are part of the outer one.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast

__all__ = ["store_operation"]

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])


def store_operation(verb: str, *, write: bool) -> Callable[[F], F]:
    """Run the decorated node method (of an array or group: ``self.store``,
    ``self.name``) as one operation of the node's store."""

    def decorate(fn: F) -> F:
        @functools.wraps(fn)
        async def run(self: Any, /, *args: Any, **kwargs: Any) -> Any:
            async with self.store.operation(f"{verb} {self.name}", write=write):
                return await fn(self, *args, **kwargs)

        return cast(F, run)

    return decorate
