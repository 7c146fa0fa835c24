"""Reusable test helpers: conformance suites and real-server fixtures.

Never imported by the library itself. ``StoreTests``, ``CodecTests`` and
``DataTypeTests`` are conformance suites to subclass for your own stores, codecs and
data types; the
``asyncarr.testing._fixtures_*`` modules are pytest plugins that start real
servers on 127.0.0.1 (S3 via moto and SeaweedFS, GCS, Azure, MongoDB, HTTP).
"""

from asyncarr.testing._codec_tests import CodecTests, sample_array
from asyncarr.testing._dtype_tests import DataTypeTests, assert_same_values, sample_values
from asyncarr.testing._proxy import FaultProxy, fault_proxy
from asyncarr.testing._store_tests import StoreTests

__all__ = [
    "CodecTests",
    "DataTypeTests",
    "FaultProxy",
    "StoreTests",
    "assert_same_values",
    "fault_proxy",
    "sample_array",
    "sample_values",
]
