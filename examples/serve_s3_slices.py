"""Serve slices of one Zarr array over HTTP with aiohttp and asyncarr's async API.

Run it against any S3-compatible service (MinIO from docker-compose, AWS, ...)::

    AWS_ACCESS_KEY_ID=minioadmin AWS_SECRET_ACCESS_KEY=minioadmin \\
    python examples/serve_s3_slices.py --url s3://bucket/arr \\
        --endpoint-url http://127.0.0.1:9000 --port 8080

Endpoints:

``GET /info``
    The array's metadata (shape, dtype, chunks, codecs, ...) as JSON.
``GET /slice?sel=0:100,0:100``
    The selected block. ``sel`` is one item per dimension, comma-separated:
    an integer (``5``, ``-1``), a slice (``10:20``, ``::2``, ``::-1``, ``:``)
    or ``...`` once; trailing dimensions default to ``:``; no ``sel`` means
    the whole array. The body is JSON (``{"shape", "dtype", "data"}``) or the
    ``.npy`` bytes, chosen by ``?format=json|npy`` or else by the ``Accept``
    header (``application/x-npy`` or ``application/octet-stream`` give
    ``.npy``).

Errors are JSON ``{"error": ...}``: 400 for a malformed or out-of-bounds
selection, 404 when no array exists at the URL, 406 for an unknown format,
413 when the selection holds more than ``--max-elements`` elements, 403 when
the store refuses access, 503 when the store stays unavailable after the
library's retries.

The array is opened once at startup and shared by all requests (asyncarr
arrays are safe to use from concurrent tasks). If there is no array at the
URL yet, the server still starts, answers 404 and tries to open it again on
the next request. The store is closed when the application shuts down.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import logging
import math
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from aiohttp import web

import asyncarr
from asyncarr.errors import (
    AsyncarrError,
    ConfigError,
    NodeNotFoundError,
    PermissionDeniedError,
    SelectionError,
    TransientStoreError,
)

__all__ = ["SERVICE", "SliceService", "create_app", "main", "parse_selection"]

logger = logging.getLogger("serve_s3_slices")

NPY_TYPES = ("application/x-npy", "application/octet-stream")
DEFAULT_MAX_ELEMENTS = 16 * 1024 * 1024


class BadSelection(ValueError):
    """The ``sel`` query parameter cannot be parsed."""


def _int(text: str, what: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise BadSelection(f"{what} must be an integer, got {text!r}") from None


def parse_selection(text: str | None) -> tuple[Any, ...]:
    """Turn ``"0:100,::2,5,..."`` into a tuple of ints, slices and ``Ellipsis``."""
    if text is None or text.strip() == "":
        return (Ellipsis,)
    out: list[Any] = []
    for raw in text.split(","):
        item = raw.strip()
        if item == "...":
            out.append(Ellipsis)
        elif ":" in item:
            parts = item.split(":")
            if len(parts) > 3:
                raise BadSelection(f"a slice has at most start:stop:step, got {item!r}")
            start, stop, step = (
                _int(p.strip(), "a slice bound") if p.strip() else None for p in (*parts, "")[:3]
            )
            if step == 0:
                raise BadSelection(f"slice step cannot be zero: {item!r}")
            out.append(slice(start, stop, step))
        elif item:
            out.append(_int(item, "an index"))
        else:
            raise BadSelection(f"empty selection item in {text!r}")
    if out.count(Ellipsis) > 1:
        raise BadSelection("'...' may appear only once")
    return tuple(out)


def selection_size(selection: tuple[Any, ...], shape: Sequence[int]) -> int:
    """How many elements ``selection`` picks from an array of ``shape`` (bounds unchecked)."""
    items = list(selection)
    if Ellipsis in items:
        i = items.index(Ellipsis)
        items[i : i + 1] = [slice(None)] * max(0, len(shape) - len(items) + 1)
    items += [slice(None)] * max(0, len(shape) - len(items))
    sizes = [
        len(range(*item.indices(n))) if isinstance(item, slice) else 1
        for item, n in zip(items, shape, strict=False)
    ]
    return math.prod(sizes)


def _json_data(block: np.ndarray[Any, Any]) -> Any:
    """Nested lists for JSON: complex as ``[re, im]``, NaN and infinities as ``null``."""
    if block.dtype.kind == "c":
        block = np.stack([block.real, block.imag], axis=-1)
    if block.dtype.kind == "f" and not np.isfinite(block).all():
        obj = block.astype(object)
        obj[~np.isfinite(block)] = None
        return obj.tolist()
    return block.tolist()


def _json_scalar(value: Any) -> Any:
    """A fill value as JSON (as Zarr writes it): NaN/infinities as strings, complex as a pair."""
    if value is None:
        return None
    item = np.asarray(value).item()
    if isinstance(item, complex):
        return [_json_scalar(item.real), _json_scalar(item.imag)]
    if isinstance(item, float) and not math.isfinite(item):
        return "NaN" if math.isnan(item) else ("Infinity" if item > 0 else "-Infinity")
    return item


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def _wants_npy(request: web.Request) -> bool | None:
    """``True``/``False`` for npy/JSON, ``None`` for an unknown ``format``."""
    fmt = request.query.get("format")
    if fmt is not None:
        return {"npy": True, "json": False}.get(fmt.lower())
    accept = request.headers.get("Accept", "")
    ranked = []
    for part in accept.split(","):
        mime, _, params = part.strip().partition(";")
        q = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        ranked.append((q, mime.strip().lower()))
    for q, mime in sorted(ranked, key=lambda r: -r[0]):
        if q <= 0:
            continue
        if mime in NPY_TYPES:
            return True
        if mime in ("application/json", "*/*", "application/*"):
            return False
    return False


class SliceService:
    """Holds the open array and answers ``/info`` and ``/slice``."""

    def __init__(
        self,
        url: str,
        *,
        storage_options: Mapping[str, Any] | None = None,
        max_elements: int = DEFAULT_MAX_ELEMENTS,
    ) -> None:
        self.url = url
        self.storage_options = dict(storage_options or {})
        self.max_elements = max_elements
        self.array: asyncarr.AsyncArray | None = None
        self._opening = asyncio.Lock()

    async def open(self) -> asyncarr.AsyncArray | None:
        """The array, opened read-only on first success; ``None`` while there is none."""
        if self.array is not None:
            return self.array
        async with self._opening:
            if self.array is None:
                try:
                    self.array = await asyncarr.open_array(
                        self.url, mode="r", storage_options=self.storage_options
                    )
                except NodeNotFoundError:
                    logger.warning("no array at %s (yet)", self.url)
                    return None
                logger.info("serving %r", self.array)
        return self.array

    async def close(self) -> None:
        if self.array is not None:
            await self.array.aclose()
            self.array = None

    async def _array_or_error(self) -> asyncarr.AsyncArray | web.Response:
        try:
            arr = await self.open()
        except AsyncarrError as exc:
            return _store_error(exc)
        if arr is None:
            return _error(404, f"no array at {self.url}")
        return arr

    async def info(self, request: web.Request) -> web.Response:
        arr = await self._array_or_error()
        if isinstance(arr, web.Response):
            return arr
        body = {
            k: v
            for k, v in arr.info.to_dict().items()
            if k not in ("nbytes_stored", "nchunks_initialized", "compression_ratio")
        }
        body["fill_value"] = _json_scalar(arr.fill_value)
        body["url"] = self.url
        return web.json_response(body, dumps=lambda obj: json.dumps(obj, default=str))

    async def slice(self, request: web.Request) -> web.Response:
        arr = await self._array_or_error()
        if isinstance(arr, web.Response):
            return arr
        wants_npy = _wants_npy(request)
        if wants_npy is None:
            return _error(406, "format must be 'json' or 'npy'")
        try:
            selection = parse_selection(request.query.get("sel"))
        except BadSelection as exc:
            return _error(400, f"bad selection: {exc}")
        if len([s for s in selection if s is not Ellipsis]) > arr.ndim:
            return _error(400, f"too many indices for an array with {arr.ndim} dimensions")
        size = selection_size(selection, arr.shape)
        if size > self.max_elements:
            return _error(413, f"selection has {size} elements; the limit is {self.max_elements}")
        try:
            block = await arr.read(selection)
        except SelectionError as exc:
            return _error(400, f"bad selection: {exc}")
        except AsyncarrError as exc:
            return _store_error(exc)
        if wants_npy:
            buf = io.BytesIO()
            np.save(buf, block, allow_pickle=False)
            return web.Response(body=buf.getvalue(), content_type=NPY_TYPES[0])
        return web.json_response(
            {"shape": list(block.shape), "dtype": str(block.dtype), "data": _json_data(block)}
        )


SERVICE = web.AppKey("service", SliceService)
"""Where :func:`create_app` keeps the :class:`SliceService` (``app[SERVICE]``)."""


def _store_error(exc: AsyncarrError) -> web.Response:
    if isinstance(exc, NodeNotFoundError):
        return _error(404, str(exc))
    if isinstance(exc, PermissionDeniedError):
        return _error(403, str(exc))
    if isinstance(exc, TransientStoreError):
        return _error(503, f"store unavailable: {exc}")
    logger.error("request failed: %s", exc)
    return _error(500, str(exc))


def create_app(
    url: str,
    *,
    storage_options: Mapping[str, Any] | None = None,
    max_elements: int = DEFAULT_MAX_ELEMENTS,
) -> web.Application:
    """The aiohttp application serving the array at ``url``.

    The array is opened when the application starts and its store closed
    when it shuts down; a bad URL or bad ``storage_options`` fail the start.
    """
    service = SliceService(url, storage_options=storage_options, max_elements=max_elements)
    app = web.Application()
    app[SERVICE] = service

    async def on_startup(_app: web.Application) -> None:
        await service.open()

    async def on_cleanup(_app: web.Application) -> None:
        await service.close()

    app.on_startup.append(on_startup)
    app.on_cleanup.append(on_cleanup)
    app.router.add_get("/info", service.info)
    app.router.add_get("/slice", service.slice)
    return app


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Serve slices of a Zarr array over HTTP.")
    parser.add_argument("--url", required=True, help="the array, e.g. s3://bucket/arr")
    parser.add_argument("--endpoint-url", help="S3-compatible endpoint, e.g. http://127.0.0.1:9000")
    parser.add_argument("--region", help="S3 region (default: AWS_REGION / AWS_DEFAULT_REGION)")
    parser.add_argument("--anon", action="store_true", help="unsigned requests (public buckets)")
    parser.add_argument(
        "--path-style", action="store_true", help="path-style addressing (MinIO, SeaweedFS)"
    )
    parser.add_argument(
        "-o",
        "--storage-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any other storage option (value parsed as JSON when possible); repeatable",
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument(
        "--max-elements",
        type=int,
        default=DEFAULT_MAX_ELEMENTS,
        help="largest selection served (elements)",
    )
    return parser.parse_args(argv)


def storage_options_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """``storage_options`` built from the command line (credentials come from the environment)."""
    options: dict[str, Any] = {}
    if args.endpoint_url:
        options["endpoint_url"] = args.endpoint_url
    if args.region:
        options["region_name"] = args.region
    if args.anon:
        options["anon"] = True
    if args.path_style:
        options["addressing_style"] = "path"
    for pair in args.storage_option:
        key, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"--storage-option needs KEY=VALUE, got {pair!r}")
        try:
            options[key] = json.loads(value)
        except ValueError:
            options[key] = value
    return options


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    app = create_app(
        args.url, storage_options=storage_options_from_args(args), max_elements=args.max_elements
    )
    try:
        web.run_app(app, host=args.host, port=args.port)
    except (ConfigError, PermissionDeniedError) as exc:
        print(f"serve_s3_slices: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
