"""``normalize_selection``: the fast path for unit-step slices agrees with the general one."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from asyncarr.core._indexing import normalize_selection
from asyncarr.errors import SelectionError

bound = st.one_of(st.none(), st.integers(-15, 15), st.integers(-15, 15).map(np.int64))
unit_slice = st.builds(slice, bound, bound, st.sampled_from([None, 1, np.int32(1)]))


@settings(max_examples=300, deadline=None)
@given(shape=st.lists(st.integers(0, 12), min_size=1, max_size=3), data=st.data())
def test_unit_slices_match_the_general_path(shape: list[int], data: st.DataObject) -> None:
    sel = tuple(data.draw(unit_slice) for _ in shape)
    fast = normalize_selection(sel, tuple(shape))
    general = normalize_selection((*sel, Ellipsis), tuple(shape))  # not the fast path's shape
    assert fast == general
    assert fast.out_shape == np.empty(shape)[sel].shape


@pytest.mark.parametrize(
    ("sel", "message"),
    [
        ((slice("a", 3), slice(None)), "invalid slice"),
        ((slice(0, 3, 0), slice(None)), "invalid slice"),
        ((slice(0, 3), 7), "out of bounds"),
    ],
)
def test_bad_selections_still_raise(sel: Any, message: str) -> None:
    with pytest.raises(SelectionError, match=message):
        normalize_selection(sel, (4, 4))
