"""Keeping S3 session tokens out of botocore's own DEBUG log records.

With DEBUG logging on, botocore logs every request it sends (``Sending http request:
<AWSPreparedRequest ... headers={'X-Amz-Security-Token': b'...'}>``) and the canonical
request it signs (``x-amz-security-token:...``): a temporary credential's session token
ends up in the log. (The secret key never does: only signatures derived from it.)

:func:`mask_session_tokens` adds one :class:`logging.Filter` to the loggers of botocore
and aiobotocore, when asyncarr creates an S3 client (never on import): it rewrites a
record's message with the token masked, before any handler sees it. It changes no level
and no handler; records of other libraries are untouched, and with DEBUG off (botocore
checks the level first) the filter never runs.
"""

from __future__ import annotations

import logging
import re
import threading

__all__ = ["SessionTokenFilter", "mask_session_tokens"]

_TOKEN = re.compile(
    r"(?i)(x-amz-security-token['\"]?\s*[:=]\s*b?['\"]?)([^'\"\s,&}\n]+)",
)
_NAMESPACES = ("botocore", "aiobotocore")


class SessionTokenFilter(logging.Filter):
    """Masks ``X-Amz-Security-Token`` values (headers, canonical requests, query strings)
    and the session tokens given to it in every record it sees."""

    def __init__(self) -> None:
        super().__init__()
        self._secrets: set[str] = set()

    def add_secret(self, secret: str | None) -> None:
        if secret and len(secret) >= 8:
            self._secrets.add(secret)

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a record that cannot be formatted: leave it to logging
            return True
        masked = _TOKEN.sub(r"\1***", message)
        for secret in self._secrets:
            masked = masked.replace(secret, "***")
        if masked != message:
            record.msg, record.args = masked, None
        return True


_filter = SessionTokenFilter()
_lock = threading.Lock()


def mask_session_tokens(session_token: str | None = None) -> SessionTokenFilter:
    """Make sure every botocore and aiobotocore logger has the filter (loggers created
    since the last call included) and remember ``session_token`` to mask it anywhere in
    their records. Idempotent and cheap; called whenever an S3 client is created."""
    with _lock:
        _filter.add_secret(session_token)
        names = [
            name
            for name in list(logging.root.manager.loggerDict)
            if name.split(".", 1)[0] in _NAMESPACES
        ]
        for name in {*_NAMESPACES, *names}:
            logger = logging.getLogger(name)
            if _filter not in logger.filters:
                logger.addFilter(_filter)
    return _filter
