"""``asyncarr info|tree|copy|demo|layers|compact|gc|pack``: inspect, copy and try out Zarr
data, and keep layered containers, from a shell."""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
from collections.abc import Sequence

from asyncarr import __version__
from asyncarr.cli._common import json_text as _json
from asyncarr.cli._common import storage_options as _storage_options
from asyncarr.cli._layered import add_layered_commands
from asyncarr.errors import AsyncarrError

__all__ = ["main"]


async def _info(args: argparse.Namespace) -> int:
    from asyncarr.core import AsyncArray
    from asyncarr.core import open as open_node

    node = await open_node(args.url, storage_options=_storage_options(args.storage_option))
    try:
        if isinstance(node, AsyncArray):
            info = await node.info_complete()
            if args.json:
                print(_json(info.to_dict()))
            else:
                print(info)
        else:
            group_info = await node.info_complete()
            if args.json:
                print(_json(group_info.to_dict()))
            else:
                print(group_info)
    finally:
        await node.aclose()
    return 0


async def _tree(args: argparse.Namespace) -> int:
    from asyncarr.core import AsyncArray
    from asyncarr.core import open as open_node

    node = await open_node(args.url, storage_options=_storage_options(args.storage_option))
    try:
        if isinstance(node, AsyncArray):
            print(f"{node.name} {node.shape} {node.metadata.data_type.describe()}")
        else:
            print(await node.tree())
    finally:
        await node.aclose()
    return 0


async def _copy(args: argparse.Namespace) -> int:
    from asyncarr.ingest import copy_array

    try:
        report = await copy_array(
            args.source,
            args.dest,
            source_options=_storage_options(args.source_option),
            dest_options=_storage_options(args.dest_option),
            zarr_format=args.zarr_format,
            compressor=args.compressor,
            overwrite=args.overwrite,
        )
    except asyncio.CancelledError as exc:  # Ctrl-C: say what was left behind
        _print_notes(exc, "copy")
        raise
    print(report)
    return 0


def _print_notes(exc: BaseException, command: str = "") -> None:
    for note in getattr(exc, "__notes__", ()):
        print(f"asyncarr: {_cli_spelling(str(note), command)}", file=sys.stderr)


_KEYWORDS_AS_FLAGS = (
    (re.compile(r"\boverwrite=True\b"), "--overwrite"),
    (re.compile(r"\bzarr_format=(\d)\b"), r"--zarr-format \1"),
    (re.compile(r"\bcompressor=(?=[\s,.;)]|$)"), "--compressor"),
)
"""Python keyword arguments named in library messages, and the flags that set them."""
_OPTION_FLAGS = {"copy": "--source-option/--dest-option KEY=VALUE"}


def _cli_spelling(message: str, command: str) -> str:
    """A library message as the command line says it: its flags instead of the Python
    keywords (``--overwrite``, not ``overwrite=True``)."""
    for pattern, flag in _KEYWORDS_AS_FLAGS:
        message = pattern.sub(flag, message)
    options = _OPTION_FLAGS.get(command, "-o/--storage-option KEY=VALUE")
    return re.sub(r"\bstorage_options\b", f"storage options ({options})", message)


async def _demo(args: argparse.Namespace) -> int:
    from asyncarr.ingest import run_demo

    print(await run_demo(args.path, size=args.size))
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="asyncarr", description="Inspect and move Zarr v2/v3 data."
    )
    parser.add_argument("--version", action="version", version=f"asyncarr {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    def add_url(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "url",
            help="a URL (file://, s3://, gs://, az://, mongodb://, http(s)://, zip://) or a path",
        )
        p.add_argument(
            "-o",
            "--storage-option",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="storage option (value parsed as JSON when possible); repeatable",
        )

    p = sub.add_parser(
        "info", help="format, shape, dtype, chunks, codecs, stored size, compression ratio"
    )
    add_url(p)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_info)

    p = sub.add_parser("tree", help="print the hierarchy below a group")
    add_url(p)
    p.set_defaults(func=_tree)

    p = sub.add_parser("copy", help="copy an array between any two stores (bulk ingest)")
    p.add_argument("source")
    p.add_argument("dest")
    p.add_argument("--source-option", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--dest-option", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--zarr-format", type=int, choices=(2, 3), default=None)
    p.add_argument(
        "--compressor",
        default=None,
        help="e.g. zstd, blosc, gzip, none (default: keep the source's)",
    )
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=_copy)

    p = sub.add_parser(
        "demo", help="write, read and verify an array on the local disk and report speed"
    )
    p.add_argument("--path", default=".cache/demo", help="where to put the demo data")
    p.add_argument("--size", type=int, default=4096, help="edge length of the square float32 array")
    p.set_defaults(func=_demo)
    add_layered_commands(sub, add_url)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``asyncarr`` console script."""
    args = _parser().parse_args(argv)
    try:
        code: int = asyncio.run(args.func(args))
        return code
    except (AsyncarrError, OSError) as exc:  # (OSError: local paths the CLI itself touches)
        print(f"asyncarr: error: {_cli_spelling(str(exc), args.command)}", file=sys.stderr)
        _print_notes(exc, args.command)
        return 1
    except KeyboardInterrupt:
        print("asyncarr: interrupted", file=sys.stderr)
        return 130
