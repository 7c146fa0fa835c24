"""A loopback HTTP proxy that adds latency and S3-style faults, for tests and benchmarks.

``fault_proxy`` starts an aiohttp server on ``127.0.0.1`` (a free port) in a
background thread with its own event loop, and forwards every request to an
upstream server on ``127.0.0.1``, byte for byte (the ``Host`` header too, so
signed requests and path-style S3 addressing work unchanged)::

    with fault_proxy(moto_port, delay=0.002, error_rate=0.2, seed=1) as proxy:
        store = S3Store(bucket, endpoint_url=proxy.url, ...)
        ...
        print(proxy.requests, proxy.throttled)

Faults, each drawn per request from one generator seeded with ``seed``:

- ``delay``: seconds to wait before handling each request (a number, or a
  ``(min, max)`` pair for a uniform random wait);
- ``error_rate``: the share of requests answered ``503 SlowDown`` with an
  S3 error document (as S3 does when a prefix is over its request rate),
  without reaching the upstream;
- ``truncate_rate``: the share of successful ``GET`` responses whose body is
  cut off halfway: the full ``Content-Length`` is announced, half the body is
  sent, then the connection is dropped.

Hostile answers (:mod:`asyncarr.testing._hostile`: endless, huge ``Content-Length``,
gzip bomb, trickle, cut bodies with a lying ``Content-Range``, flipped bits in answers
or uploads) replace the upstream's honest answer for the requests a rule matches::

    proxy.hostile("gzip_bomb", path="*/c/*", times=1)   # the next chunk GET only
    proxy.hostile("flip_request", method="PUT")          # every upload damaged
    proxy.clear_hostile()

The settings are plain attributes and may be changed while the proxy runs;
the counters (:attr:`FaultProxy.requests` and friends) are updated by the
proxy's thread and safe to read from any thread. An upstream that cannot be
reached is answered ``502 Bad Gateway``.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import random
import socket
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from asyncarr.testing._hostile import HOSTILE_SHAPES, flip_bit, write_hostile

__all__ = ["FaultProxy", "fault_proxy"]

LOOPBACK = "127.0.0.1"

_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
        "expect",
        "content-length",
    }
)
_NO_BODY_STATUSES = frozenset({204, 304})

SLOW_DOWN_XML = (
    '<?xml version="1.0" encoding="UTF-8"?>\n'
    "<Error><Code>SlowDown</Code>"
    "<Message>Please reduce your request rate.</Message>"
    "<Resource>{resource}</Resource><RequestId>{request_id}</RequestId></Error>"
)
"""The body of an injected ``503 SlowDown`` answer (``str.format`` template)."""

Delay = float | tuple[float, float]


def _check_rate(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise ValueError(f"{name} must be a number in [0, 1], got {value!r}")
    return float(value)


def _check_delay(value: Delay) -> Delay:
    if isinstance(value, tuple):
        if len(value) != 2 or not 0 <= value[0] <= value[1]:
            raise ValueError(f"delay must be >= 0 or a (min, max) pair, got {value!r}")
        return (float(value[0]), float(value[1]))
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ValueError(f"delay must be >= 0 or a (min, max) pair, got {value!r}")
    return float(value)


@dataclass
class _HostileRule:
    shape: str
    method: str
    path: str
    times: int | None

    def matches(self, method: str, path: str) -> bool:
        return (
            (self.times is None or self.times > 0)
            and self.method in ("*", method)
            and fnmatch.fnmatchcase(path, self.path)
        )


class FaultProxy:
    """A running fault-injecting proxy in front of ``127.0.0.1:upstream_port``.

    Use :func:`fault_proxy` (or ``with FaultProxy(...) as proxy:``). The
    attributes :attr:`delay`, :attr:`error_rate` and :attr:`truncate_rate`
    may be changed at any time; they apply to requests that arrive later.
    """

    def __init__(
        self,
        upstream_port: int,
        *,
        delay: Delay = 0.0,
        error_rate: float = 0.0,
        truncate_rate: float = 0.0,
        seed: int | None = 0,
    ) -> None:
        if isinstance(upstream_port, bool) or not isinstance(upstream_port, int):
            raise ValueError(f"upstream_port must be an int, got {upstream_port!r}")
        if not 0 < upstream_port < 65536:
            raise ValueError(f"upstream_port must be in 1..65535, got {upstream_port!r}")
        self.upstream_port = upstream_port
        self.delay: Delay = _check_delay(delay)
        self.error_rate = _check_rate("error_rate", error_rate)
        self.truncate_rate = _check_rate("truncate_rate", truncate_rate)
        self._rng = random.Random(seed)
        self._port: int | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: Any = None
        self._session: Any = None
        self.requests = 0
        """Requests received."""
        self.forwarded = 0
        """Requests passed on to the upstream (whatever it answered)."""
        self.throttled = 0
        """Requests answered with an injected ``503 SlowDown``."""
        self.truncated = 0
        """Responses whose body was cut off."""
        self.upstream_errors = 0
        """Requests answered ``502`` because the upstream could not be reached."""
        self.hostile_answers = 0
        """Requests given a hostile answer (or a damaged upload) by a :meth:`hostile` rule."""
        self._hostile: list[_HostileRule] = []

    def hostile(
        self, shape: str, *, method: str = "GET", path: str = "*", times: int | None = None
    ) -> None:
        """Answer requests of ``method`` (``"*"``: any) whose path matches the glob
        ``path`` with the hostile ``shape`` (one of
        :data:`~asyncarr.testing._hostile.HOSTILE_SHAPES`), at most ``times`` times
        (``None``: always). The first matching rule applies."""
        if shape not in HOSTILE_SHAPES:
            raise ValueError(f"unknown hostile shape {shape!r}; expected one of {HOSTILE_SHAPES}")
        if times is not None and times < 0:
            raise ValueError(f"times must be >= 0, got {times!r}")
        self._hostile.append(_HostileRule(shape, method.upper(), path, times))

    def clear_hostile(self) -> None:
        """Remove every :meth:`hostile` rule."""
        self._hostile.clear()

    def _hostile_rule(self, method: str, path: str) -> _HostileRule | None:
        for rule in self._hostile:
            if rule.matches(method, path):
                if rule.times is not None:
                    rule.times -= 1
                self.hostile_answers += 1
                return rule
        return None

    # -- where it listens ------------------------------------------------------------------
    @property
    def port(self) -> int:
        """The proxy's port on 127.0.0.1."""
        if self._port is None:
            raise RuntimeError("the proxy is not running")
        return self._port

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``: use it as the service endpoint."""
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def upstream_url(self) -> str:
        return f"http://{LOOPBACK}:{self.upstream_port}"

    def reset_counters(self) -> None:
        """Set every counter back to zero."""
        self.requests = self.forwarded = self.throttled = self.truncated = 0
        self.upstream_errors = self.hostile_answers = 0

    def __repr__(self) -> str:
        where = f"{LOOPBACK}:{self._port}" if self._port is not None else "stopped"
        return (
            f"FaultProxy({where} -> {LOOPBACK}:{self.upstream_port}, delay={self.delay!r}, "
            f"error_rate={self.error_rate}, truncate_rate={self.truncate_rate})"
        )

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> FaultProxy:
        """Start serving (returns when the port accepts connections)."""
        if self._thread is not None:
            raise RuntimeError("the proxy is already running")
        import aiohttp  # noqa: F401  (fail here, not in the thread, when it is missing)

        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((LOOPBACK, 0))
        self._port = sock.getsockname()[1]
        loop = asyncio.new_event_loop()
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self._serve(sock))
            except BaseException as exc:
                sock.close()
                failure.append(exc)
                loop.close()
                ready.set()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

        self._loop = loop
        self._thread = threading.Thread(target=run, name=f"fault-proxy-{self._port}", daemon=True)
        self._thread.start()
        if not ready.wait(timeout=30) or failure:
            self._thread.join(timeout=5)
            self._loop = self._thread = self._port = None
            if failure:
                raise failure[0]
            raise RuntimeError("the fault proxy did not start within 30 s")
        return self

    def stop(self) -> None:
        """Stop serving and release the port. Idempotent."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        try:
            if loop.is_running():
                asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(timeout=30)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=30)
            self._loop = None
            self._thread = None
            self._port = None

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- inside the proxy's thread --------------------------------------------------------
    async def _serve(self, sock: socket.socket) -> None:
        from aiohttp import ClientSession, ClientTimeout, TCPConnector, web

        app = web.Application(client_max_size=1 << 31)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        self._session = ClientSession(
            connector=TCPConnector(limit=0),
            auto_decompress=False,
            timeout=ClientTimeout(total=None, sock_connect=10),
            skip_auto_headers=("Accept-Encoding", "User-Agent", "Content-Type"),
        )
        await web.SockSite(self._runner, sock).start()

    async def _shutdown(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _draw(self, rate: float) -> bool:
        return rate > 0 and self._rng.random() < rate

    async def _handle(self, request: Any) -> Any:
        import yarl
        from aiohttp import ClientError, web

        self.requests += 1
        body = await request.read()
        delay = self.delay
        wait = self._rng.uniform(*delay) if isinstance(delay, tuple) else delay
        throttle = self._draw(self.error_rate)
        if wait > 0:
            await asyncio.sleep(wait)
        if throttle:
            self.throttled += 1
            return self._slow_down(request)
        rule = self._hostile_rule(request.method, request.path)
        if rule is not None and rule.shape == "flip_request":
            body, rule = flip_bit(body), None
        headers = [(k, v) for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP]
        target = yarl.URL(self.upstream_url + request.raw_path, encoded=True)
        try:
            async with self._session.request(
                request.method,
                target,
                headers=headers,
                data=body if body or request.method not in ("GET", "HEAD") else None,
                allow_redirects=False,
            ) as upstream:
                data = await upstream.read()
                status = upstream.status
                out_headers = [
                    (k, v) for k, v in upstream.headers.items() if k.lower() not in _HOP_BY_HOP
                ]
                announced = upstream.headers.get("Content-Length")
        except (TimeoutError, ClientError, OSError):
            self.upstream_errors += 1
            return web.Response(status=502, text="upstream unreachable")
        self.forwarded += 1
        if rule is not None and request.method != "HEAD":
            return await write_hostile(rule.shape, request, status, out_headers, data)
        response = web.StreamResponse(status=status)
        for k, v in out_headers:
            response.headers.add(k, v)
        if request.method == "HEAD":
            if announced is not None:
                response.headers["Content-Length"] = announced
            await response.prepare(request)
            return response
        if status in _NO_BODY_STATUSES:
            await response.prepare(request)
            return response
        response.headers["Content-Length"] = str(len(data))
        cut = (
            request.method == "GET"
            and status in (200, 206)
            and len(data) > 1
            and self._draw(self.truncate_rate)
        )
        await response.prepare(request)
        if cut:
            self.truncated += 1
            await response.write(data[: len(data) // 2])
            transport = request.transport
            if transport is not None:
                transport.abort()
            return response
        await response.write(data)
        await response.write_eof()
        return response

    def _slow_down(self, request: Any) -> Any:
        from aiohttp import web

        text = SLOW_DOWN_XML.format(resource=_xml_escape(request.path), request_id=uuid.uuid4().hex)
        return web.Response(
            status=503,
            body=text.encode(),
            content_type="application/xml",
            headers={"Retry-After": "1"},
        )


def _xml_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


@contextlib.contextmanager
def fault_proxy(
    upstream_port: int,
    *,
    delay: Delay = 0.0,
    error_rate: float = 0.0,
    truncate_rate: float = 0.0,
    seed: int | None = 0,
) -> Iterator[FaultProxy]:
    """Run a :class:`FaultProxy` in front of ``127.0.0.1:upstream_port`` for the ``with`` block.

    Yields the proxy (``.port``, ``.url``, counters ``.requests``,
    ``.forwarded``, ``.throttled``, ``.truncated``, ``.upstream_errors``).
    Works from synchronous and asynchronous code alike: the proxy has its
    own thread and event loop.
    """
    proxy = FaultProxy(
        upstream_port,
        delay=delay,
        error_rate=error_rate,
        truncate_rate=truncate_rate,
        seed=seed,
    )
    with proxy:
        yield proxy
