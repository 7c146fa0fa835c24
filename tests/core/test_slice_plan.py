"""``SlicePlan``: the compact description of an all-slice read that workers expand
themselves, batch by batch, must list exactly the chunks (keys, slices, flags, shapes)
that the general projection does, in the same order, for any span of it, on regular and
rectilinear grids."""

from __future__ import annotations

import pickle
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from asyncarr.core._chunk_grid import DimChunking, EdgesDim
from asyncarr.core._indexing import normalize_selection, project
from asyncarr.core._slice_plan import SlicePlan

Chunking = tuple[DimChunking, ...]


def _plan(shape: tuple[int, ...], chunks: Chunking, sel: Any, v2: bool) -> Any:
    selection = normalize_selection(sel, shape)
    bounds = tuple((d.start, d.stop, d.step) for d in selection.dims)
    head = "p/" if v2 else "p/c/"
    varying = any(isinstance(c, EdgesDim) for c in chunks)
    plan = SlicePlan(bounds, shape, chunks, head, ".", "p/0" if v2 else "p/c", varying)
    return selection, plan


def _expected(selection: Any, chunks: Chunking, v2: bool) -> list[Any]:
    sep = "."
    head = "p/" if v2 else "p/c/"
    varying = any(isinstance(c, EdgesDim) for c in chunks)
    rows = []
    for p in project(selection, chunks):
        key = (head + sep.join(map(str, p.coords))) if p.coords else ("p/0" if v2 else "p/c")
        edges = tuple(
            c if isinstance(c, int) else c.edge(k) for c, k in zip(chunks, p.coords, strict=True)
        )
        assert p.shape == edges
        whole = p.is_complete and all(
            s.start == 0 and s.stop == c and s.step == 1
            for s, c in zip(p.chunk_sel, edges, strict=True)
        )
        rows.append((key, p.chunk_sel, p.out_sel, p.is_complete, whole, edges if varying else None))
    return rows


@st.composite
def edges_dim(draw: st.DrawFn, n: int) -> EdgesDim:
    """Random edges covering ``n`` (the last may overhang it, and more may follow)."""
    edges: list[int] = []
    while sum(edges) < n or not edges or draw(st.booleans()):
        edges.append(draw(st.integers(1, 7)))
        if sum(edges) >= n and len(edges) > 12:
            break
    return EdgesDim([(e, 1) for e in edges], n)


@st.composite
def slab(draw: st.DrawFn) -> tuple[tuple[int, ...], Chunking, tuple[slice, ...]]:
    ndim = draw(st.integers(1, 3))
    shape = tuple(draw(st.integers(0, 20)) for _ in range(ndim))
    chunks = tuple(
        draw(st.integers(1, 7) | edges_dim(n))
        for n in shape  # regular or rectilinear axes
    )
    sel = []
    for n in shape:
        start = draw(st.integers(0, n))
        stop = draw(st.integers(start, n))
        sel.append(slice(start, stop, draw(st.sampled_from([1, 1, 2, 3]))))
    return shape, chunks, tuple(sel)


@settings(max_examples=400, deadline=None)
@given(slab(), st.booleans(), st.data())
def test_any_span_of_the_plan_is_that_span_of_the_projection(
    case: tuple[tuple[int, ...], Chunking, tuple[slice, ...]],
    v2: bool,
    data: st.DataObject,
) -> None:
    shape, chunks, sel = case
    selection, plan = _plan(shape, chunks, sel, v2)
    expected = _expected(selection, chunks, v2)
    assert len(plan) == len(expected)
    assert list(plan.chunks()) == expected
    # a random read's shortcut: the one chunk of unit-step slices, or None
    only = plan.only_chunk()
    if only is not None:
        assert [only] == expected
    if len(expected) == 1 and shape and all(d.step == 1 for d in selection.dims):
        assert only is not None
    start = data.draw(st.integers(0, len(expected)))
    stop = data.draw(st.integers(start, len(expected) + 2))
    assert list(plan.chunks(start, stop)) == expected[start:stop]
    # it travels to worker processes: small, and the same after a round trip
    assert list(pickle.loads(pickle.dumps(plan)).chunks(start, stop)) == expected[start:stop]


def test_a_zero_d_array_has_one_chunk() -> None:
    plan = SlicePlan((), (), (), "c", "/", "c")
    assert len(plan) == 1
    assert list(plan.chunks()) == [("c", (), (), True, True, None)]
    assert list(plan.chunks(1)) == []


def test_a_plan_pickles_without_its_per_chunk_work() -> None:
    plan = SlicePlan(((0, 8192, 1), (0, 8192, 1)), (8192, 8192), (64, 64), "c/", "/", "c")
    assert len(plan) == 128 * 128
    assert len(pickle.dumps(plan)) < 300  # not 16,384 keys and slices
