"""Reusable test helpers: conformance suites and real-server fixtures.

Never imported by the library itself.
"""

from asyncarr.testing._store_tests import StoreTests

__all__ = ["StoreTests"]
