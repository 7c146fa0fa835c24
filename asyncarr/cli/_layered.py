"""``asyncarr layers|compact|gc|pack``: keep layered containers from a shell."""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable
from typing import Any

from asyncarr.cli._common import json_text, storage_options
from asyncarr.errors import ConfigError

__all__ = ["add_layered_commands", "parse_duration"]

_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*")


def parse_duration(text: str) -> float:
    """``"90s"``, ``"30m"``, ``"12h"``, ``"7d"``, ``"2w"`` or plain seconds, in seconds."""
    m = _DURATION.fullmatch(text)
    if m is None:
        raise argparse.ArgumentTypeError(
            f"invalid duration {text!r}: a number with an optional unit s, m, h, d or w (7d)"
        )
    return float(m.group(1)) * _UNITS[m.group(2)]


def _layered(url: str, options: dict[str, Any], *, read_only: bool = False) -> Any:
    """The layered store at ``url`` (``layered::`` is implied)."""
    from asyncarr.stores import LayeredStore, store_from_url

    if not url.lower().startswith("layered::"):
        url = f"layered::{url}"
    store = store_from_url(url, read_only=read_only, storage_options=options)
    if not isinstance(store, LayeredStore):  # pragma: no cover - the scheme's factory
        raise ConfigError(f"{url} is not a layered container")
    return store


async def _layers(args: argparse.Namespace) -> int:
    store = _layered(args.url, storage_options(args.storage_option), read_only=True)
    try:
        history = await store.history()
    finally:
        await store.aclose()
    rows = [{**m.summary(), "added": list(m.added)} for m in history]
    if args.json:
        print(json_text(rows))
        return 0
    if not rows:
        print("(empty container: no generation yet)")
    for row in rows:
        print(
            f"{row['generation']:>6}  {row['timestamp']}  {row['kind']:<7}  "
            f"{row['layers']:>4} layer{'s' if row['layers'] != 1 else ' '}  "
            f"{row['bytes']:>12} B  {row['message']}"
        )
    return 0


async def _compact(args: argparse.Namespace) -> int:
    store = _layered(args.url, storage_options(args.storage_option))
    try:
        manifest = await store.compact(args.oldest, message=args.message)
    finally:
        await store.aclose()
    if manifest is None:
        print("nothing to compact")
    else:
        n = len(manifest.layers)
        print(
            f"generation {manifest.generation}: {n} layer{'s' if n != 1 else ''} ({len(manifest.added)} written)"
        )
    return 0


async def _gc(args: argparse.Namespace) -> int:
    store = _layered(args.url, storage_options(args.storage_option))
    try:
        report = await store.gc(keep=args.keep, older_than=args.older_than, grace=args.grace)
    finally:
        await store.aclose()
    print(report)
    return 0


async def _pack(args: argparse.Namespace) -> int:
    from asyncarr.stores import store_from_url
    from asyncarr.stores._layered import build_pack, split_object_url

    source = store_from_url(
        args.url, read_only=True, storage_options=storage_options(args.storage_option)
    )
    parent, name = split_object_url(args.dest)
    if not name:
        raise ConfigError(f"the destination must name the pack object, got {args.dest!r}")
    try:
        data = await build_pack(source, message=args.message or f"pack of {args.url}")
    finally:
        await source.aclose()
    dest = store_from_url(parent, storage_options=storage_options(args.dest_option))
    try:
        await dest.set(name, data)
    finally:
        await dest.aclose()
    print(f"{args.dest}: {len(data)} bytes")
    return 0


def add_layered_commands(sub: Any, add_url: Callable[[argparse.ArgumentParser], None]) -> None:
    """Register ``layers``, ``compact``, ``gc`` and ``pack`` on the command parser."""
    p = sub.add_parser(
        "layers", help="a layered container's generations, newest first (layered:: implied)"
    )
    add_url(p)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_layers)

    p = sub.add_parser("compact", help="merge a layered container's layers into one")
    add_url(p)
    p.add_argument("--oldest", type=int, default=None, metavar="N", help="only the oldest N")
    p.add_argument("--message", default="compact", help="the new generation's message")
    p.set_defaults(func=_compact)

    p = sub.add_parser(
        "gc", help="delete old generations of a layered container and the layers they alone use"
    )
    add_url(p)
    p.add_argument("--keep", type=int, default=1, help="the newest generations kept (1)")
    p.add_argument(
        "--older-than",
        type=parse_duration,
        required=True,
        metavar="DURATION",
        help="generations younger than this are kept too (7d, 12h, 30m, 0)",
    )
    p.add_argument(
        "--grace",
        type=parse_duration,
        default=3600.0,
        metavar="DURATION",
        help="unreferenced layers younger than this are kept: commits in progress (1h)",
    )
    p.set_defaults(func=_gc)

    p = sub.add_parser(
        "pack", help="everything at a store URL as one object, readable in place (layered::X.pack)"
    )
    add_url(p)
    p.add_argument("dest", help="where to put the pack (a path or URL ending in .pack)")
    p.add_argument("--dest-option", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--message", default=None, help="recorded in the pack's manifest")
    p.set_defaults(func=_pack)
