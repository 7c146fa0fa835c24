"""Loading the compiled kernel, and deciding whether to use it."""

from __future__ import annotations

import threading
from types import ModuleType

from asyncarr.config import KernelMode, kernel_mode
from asyncarr.errors import ConfigError

__all__ = [
    "kernel_available",
    "kernel_enabled",
    "kernel_unavailable_reason",
    "kernel_versions",
    "native",
]

_lock = threading.Lock()
_loaded: tuple[ModuleType | None, str | None] | None = None


def _load() -> tuple[ModuleType | None, str | None]:
    global _loaded
    if _loaded is None:
        with _lock:
            if _loaded is None:
                try:
                    from asyncarr.kernel import _ckernel  # type: ignore[attr-defined]

                    _loaded = (_ckernel, None)
                except ImportError as exc:
                    _loaded = (
                        None,
                        f"asyncarr.kernel._ckernel was not built or does not load ({exc}); "
                        "build it with the codec libraries' headers installed "
                        "(scripts/install-native-deps.sh, then pip install again)",
                    )
    return _loaded


def native() -> ModuleType:
    """The compiled kernel module; :class:`ImportError` (saying why) where it is missing."""
    module, reason = _load()
    if module is None:
        raise ImportError(reason)
    return module


def kernel_available() -> bool:
    """Whether the compiled kernel is built and loads."""
    return _load()[0] is not None


def kernel_unavailable_reason() -> str | None:
    """Why the kernel is not available (``None`` where it is)."""
    return _load()[1]


def kernel_enabled(mode: KernelMode | None = None) -> bool:
    """Whether to use the kernel under ``mode`` (``None``: ``$ASYNCARR_KERNEL`` or ``auto``).

    ``on`` where the kernel is not available raises :class:`ConfigError` saying why.
    """
    resolved = kernel_mode(mode)
    if resolved == "off":
        return False
    module, reason = _load()
    if module is None and resolved == "on":
        raise ConfigError(f"the native kernel is required (kernel='on') but {reason}")
    return module is not None


def kernel_versions() -> dict[str, object]:
    """The versions of the codec libraries the kernel is linked with (empty where it is
    not available), and whether ``openat2`` resolves keys."""
    module = _load()[0]
    return {} if module is None else dict(module.versions())
