"""Make this directory's helper modules importable by name, whatever pytest's import mode;
the crash fork server as a fixture.

``_reliability_helpers``, ``_concurrent_worker`` and ``_crash_zygote`` are imported
by the test files, by spawned writer processes (which inherit ``sys.path``) and
by the crash fork server (run as a script from this directory).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

from _reliability_helpers import Zygote  # noqa: E402  (importable from here on)


@pytest.fixture(scope="module")
def zygote() -> Iterator[Zygote]:
    """The crash fork server (``_crash_zygote.py``), one per test module."""
    z = Zygote()
    yield z
    z.close()
