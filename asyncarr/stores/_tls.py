"""Telling a refused certificate apart from a network fault.

A certificate that fails verification (self-signed, expired, for another host, an
unknown CA) is a configuration problem: retrying cannot fix it, so every store raises a
plain :class:`~asyncarr.errors.StoreError` for it, never a
:class:`~asyncarr.errors.TransientStoreError`. SDKs wrap the :mod:`ssl` error in their
own connection errors (aiohttp's ``ClientConnectorCertificateError``, azure-core's
``ServiceRequestError``) or only keep its text (pymongo's server-selection timeout), so
the whole chain of causes and messages is searched.
"""

from __future__ import annotations

import ssl

__all__ = ["certificate_failure"]

_MARKERS = ("CERTIFICATE_VERIFY_FAILED", "certificate verify failed")
_LINKS = ("__cause__", "__context__", "inner_exception", "certificate_error", "os_error")


def certificate_failure(exc: BaseException) -> str | None:
    """Why ``exc`` (or anything it wraps) is a certificate-verification failure, or
    ``None`` when it is not one."""
    seen: set[int] = set()
    todo: list[object] = [exc]
    while todo:
        item = todo.pop()
        if not isinstance(item, BaseException) or id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, ssl.SSLCertVerificationError):
            return str(getattr(item, "verify_message", None) or item)
        text = str(item)
        if any(marker in text for marker in _MARKERS):
            return text
        details = getattr(item, "details", None)  # pymongo: the topology's server errors
        if details is not None and any(marker in str(details) for marker in _MARKERS):
            return str(details)
        todo.extend(getattr(item, link, None) for link in _LINKS)
    return None
