"""The blocking API: same names and signatures as the async one, numpy conveniences, loops."""

from __future__ import annotations

import asyncio
import inspect
import threading
from pathlib import Path

import numpy as np
import pytest

import asyncarr
import asyncarr.sync as az
from asyncarr.errors import SelectionError

FUNCTIONS = [
    "create_array",
    "create_group",
    "open",
    "open_array",
    "open_group",
    "consolidate_metadata",
    "transaction",
]


def _public(cls: type) -> dict[str, object]:
    return {n: getattr(cls, n) for n in dir(cls) if not n.startswith("_")}


@pytest.mark.parametrize("name", FUNCTIONS)
def test_function_twins_have_identical_signatures(name: str) -> None:
    a = inspect.signature(getattr(asyncarr, name))
    s = inspect.signature(getattr(az, name))
    assert list(a.parameters.values()) == list(s.parameters.values()), name


@pytest.mark.parametrize(
    ("async_cls", "sync_cls"), [(asyncarr.AsyncArray, az.Array), (asyncarr.AsyncGroup, az.Group)]
)
def test_class_twins_have_identical_members(async_cls: type, sync_cls: type) -> None:
    a, s = _public(async_cls), _public(sync_cls)
    renamed = {"aclose": "close"}
    for name, member in a.items():
        twin = renamed.get(name, name)
        assert twin in s, f"{sync_cls.__name__} lacks {twin}"
        if isinstance(member, property):
            assert isinstance(s[twin], property), f"{twin} should be a property on both"
            continue
        if callable(member) and name not in renamed:
            a_sig = inspect.signature(member)
            s_sig = inspect.signature(s[twin])  # type: ignore[arg-type]
            assert list(a_sig.parameters) == list(s_sig.parameters), name
            for p_a, p_s in zip(a_sig.parameters.values(), s_sig.parameters.values(), strict=True):
                assert (p_a.kind, p_a.default) == (p_s.kind, p_s.default), f"{name}.{p_a.name}"


PROTOCOL_TWINS = {
    az.Array: {
        "__getitem__": "read",
        "__setitem__": "write",
        "__array__": "read",
        "__len__": "shape",
    },
    az.Group: {
        "__getitem__": "__getitem__",
        "__contains__": "contains",
        "__iter__": "__aiter__",
        "__len__": "nmembers",
    },
}
"""Python protocols of the blocking classes, and the awaitable form each has in the async
class (a protocol such as ``len`` or ``in`` cannot wait for I/O)."""


@pytest.mark.parametrize(
    ("async_cls", "sync_cls"), [(asyncarr.AsyncArray, az.Array), (asyncarr.AsyncGroup, az.Group)]
)
def test_every_blocking_protocol_has_an_async_form(async_cls: type, sync_cls: type) -> None:
    plumbing = {"__init__", "__repr__", "__enter__", "__exit__"}
    protocols = {
        n
        for n in vars(sync_cls)
        if n.startswith("__") and n.endswith("__") and callable(getattr(sync_cls, n))
    } - plumbing
    assert protocols == set(PROTOCOL_TWINS[sync_cls]), "list the new protocol in PROTOCOL_TWINS"
    for protocol, twin in PROTOCOL_TWINS[sync_cls].items():
        assert hasattr(async_cls, twin), f"{async_cls.__name__} lacks {twin} (for {protocol})"


def test_numpy_style_use(tmp_path: Path) -> None:
    url = str(tmp_path / "s.zarr")
    data = np.arange(100, dtype="f8").reshape(10, 10)
    with az.create_array(url, shape=(10, 10), chunks=(3, 4), dtype="f8") as arr:
        arr[...] = data
        arr[0, :] = -1
        data[0, :] = -1
        assert arr[2, 3] == data[2, 3]
        np.testing.assert_array_equal(arr[1:5, ::2], data[1:5, ::2])
        np.testing.assert_array_equal(np.asarray(arr), data)
        np.testing.assert_array_equal(arr.oindex[[0, 9], [1, 2]], data[[0, 9]][:, [1, 2]])
        np.testing.assert_array_equal(arr[[0, 9], 1:3], data[[0, 9], 1:3])
        arr.oindex[[1, 2], [0]] = 5
        data[np.ix_([1, 2], [0])] = 5
        np.testing.assert_array_equal(arr[:], data)
        with pytest.raises(SelectionError, match="oindex"):
            arr[[0, 1], [0, 1]]
        arr.attrs["units"] = "m"
        assert az.open_array(url).attrs["units"] == "m"
        del arr.attrs["units"]
        assert "units" not in az.open_array(url).attrs
        assert len(arr) == 10


def test_sync_groups(tmp_path: Path) -> None:
    url = str(tmp_path / "g.zarr")
    with az.create_group(url, zarr_format=2) as g:
        sub = g.create_group("sub")
        sub.create_array("x", shape=(3,), chunks=(3,), dtype="i4")[:] = [1, 2, 3]
        assert "sub" in g and "nope" not in g
        assert g.group_keys() == ["sub"]
        x = g["sub/x"]
        assert isinstance(x, az.Array)
        np.testing.assert_array_equal(x[:], [1, 2, 3])
        assert "x" in g.tree()


def test_sync_inside_running_loop_in_another_thread(tmp_path: Path) -> None:
    """A Jupyter-style caller: the sync API used from a thread running its own loop."""
    url = str(tmp_path / "j.zarr")
    result: list[np.ndarray] = []

    async def notebook_cell() -> None:
        arr = az.create_array(url, shape=(4,), chunks=(2,), dtype="i2")
        arr[:] = [1, 2, 3, 4]
        result.append(arr[:])

    t = threading.Thread(target=lambda: asyncio.run(notebook_cell()))
    t.start()
    t.join(timeout=60)
    assert not t.is_alive()
    np.testing.assert_array_equal(result[0], [1, 2, 3, 4])


async def test_sync_called_from_running_event_loop_works(tmp_path: Path) -> None:
    url = str(tmp_path / "loop.zarr")
    arr = az.create_array(url, shape=(4,), chunks=(2,), dtype="i2")
    arr[:] = 7
    assert (arr[:] == 7).all()
