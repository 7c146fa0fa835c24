"""The optional native batch kernel (``asyncarr.kernel._ckernel``).

Everything else about the package lives in ``pyproject.toml``. The extension links
the system's codec libraries (Debian: ``libzstd-dev libblosc-dev liblz4-dev
zlib1g-dev``; ``scripts/install-native-deps.sh`` installs them where it can). Where
they or a C compiler are missing, the build leaves the extension out with a warning
and asyncarr runs its pure-Python path.
"""

import os

from setuptools import Extension, setup

_SOURCES = ["module.c", "batch.c", "codecs.c", "files.c", "layout.c"]
_CSRC = os.path.join("asyncarr", "kernel", "csrc")

kernel = Extension(
    "asyncarr.kernel._ckernel",
    sources=[os.path.join(_CSRC, name) for name in _SOURCES],
    depends=[os.path.join(_CSRC, name) for name in ("kernel.h", "batch.h")],
    libraries=["zstd", "blosc", "lz4", "z"],
    extra_compile_args=["-O2", "-std=gnu11", "-Wall", "-Wextra", "-Wno-unused-parameter"],
    extra_link_args=["-pthread"],
    optional=os.environ.get("ASYNCARR_BUILD_KERNEL", "auto") != "required",
)

setup(ext_modules=[kernel] if os.environ.get("ASYNCARR_BUILD_KERNEL") != "off" else [])
