"""Shared pytest configuration.

Real-server fixtures live in ``asyncarr.testing._fixtures_*`` modules and are
loaded as plugins, so every test module (and users' own suites) can use them.
"""

from __future__ import annotations

import importlib.util

_FIXTURE_MODULES = [
    "asyncarr.testing._fixtures_s3",
    "asyncarr.testing._fixtures_gcs",
    "asyncarr.testing._fixtures_azure",
    "asyncarr.testing._fixtures_mongodb",
    "asyncarr.testing._fixtures_http",
    "asyncarr.testing._fixtures_local",
]

pytest_plugins = [m for m in _FIXTURE_MODULES if importlib.util.find_spec(m) is not None]
