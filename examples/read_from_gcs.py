"""Open a Zarr array on Google Cloud Storage with the blocking API and summarise a slice.

Against real GCS (credentials from ``GOOGLE_APPLICATION_CREDENTIALS`` or the
default Google credentials chain)::

    python examples/read_from_gcs.py gs://bucket/path/to/array --slice 0:100,0:100

Against the fake-gcs-server emulator of docker-compose (anonymous)::

    python examples/read_from_gcs.py gs://bucket/arr --endpoint http://127.0.0.1:4443
    STORAGE_EMULATOR_HOST=127.0.0.1:4443 python examples/read_from_gcs.py gs://bucket/arr

It prints the array's info and a summary (shape, dtype, min, max, mean, sum,
count of NaNs) of the selected block; ``--json`` prints both as one JSON
object instead. Without ``--slice`` the first chunk is summarised.
Exit status: 0 on success, 1 when the array cannot be opened or read, 2 for
bad arguments.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np

import asyncarr.sync as az
from asyncarr.errors import AsyncarrError, NodeNotFoundError

__all__ = ["main", "parse_selection", "summarize"]


def parse_selection(text: str) -> tuple[Any, ...]:
    """``"0:10,5,::2,..."`` -> a tuple of slices, ints and ``Ellipsis``."""
    out: list[Any] = []
    for raw in text.split(","):
        item = raw.strip()
        if item == "...":
            out.append(Ellipsis)
        elif ":" in item:
            parts = [p.strip() for p in item.split(":")]
            if len(parts) > 3:
                raise ValueError(f"a slice has at most start:stop:step, got {item!r}")
            start, stop, step = (int(p) if p else None for p in (*parts, "")[:3])
            out.append(slice(start, stop, step))
        else:
            out.append(int(item))
    return tuple(out)


def summarize(block: np.ndarray[Any, Any]) -> dict[str, Any]:
    """Shape, dtype and statistics of ``block`` (NaNs ignored by min/max/mean/sum)."""
    summary: dict[str, Any] = {"shape": list(block.shape), "dtype": str(block.dtype)}
    summary["size"] = int(block.size)
    if block.size == 0 or block.dtype.kind not in "biuf":
        return summary
    values = block.astype(np.float64)
    nan = np.isnan(values)
    summary["nan_count"] = int(nan.sum())
    if nan.all():
        return summary
    summary.update(
        min=float(np.nanmin(values)),
        max=float(np.nanmax(values)),
        mean=float(np.nanmean(values)),
        sum=float(np.nansum(values)),
    )
    return summary


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Summarise a slice of a Zarr array on GCS.")
    parser.add_argument("url", help="gs://bucket/path/to/array")
    parser.add_argument(
        "--endpoint",
        help="JSON API root of an emulator, e.g. http://127.0.0.1:4443 "
        "(default: STORAGE_EMULATOR_HOST, else Google)",
    )
    parser.add_argument("--anon", action="store_true", help="anonymous requests (public buckets)")
    parser.add_argument("--credentials", help="a service-account JSON key file")
    parser.add_argument("--project", help="the Google Cloud project")
    parser.add_argument("--slice", help="e.g. 0:100,0:100 (default: the first chunk)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    options: dict[str, Any] = {}
    if args.endpoint:
        options["endpoint"] = args.endpoint
    if args.anon:
        options["anon"] = True
    if args.credentials:
        options["service_account_file"] = args.credentials
    if args.project:
        options["project"] = args.project
    try:
        selection = parse_selection(args.slice) if args.slice else None
    except ValueError as exc:
        parser.error(f"bad --slice: {exc}")
    try:
        with az.open_array(args.url, storage_options=options) as arr:
            if selection is None:
                selection = tuple(slice(0, c) for c in arr.chunks)
            block = arr.read(selection)
            info = arr.info
    except NodeNotFoundError:
        print(f"read_from_gcs: no array at {args.url}", file=sys.stderr)
        return 1
    except AsyncarrError as exc:
        print(f"read_from_gcs: {exc}", file=sys.stderr)
        return 1
    summary = summarize(block)
    if args.json:
        print(json.dumps({"info": info.to_dict(), "slice": summary}, default=str))
    else:
        print(info)
        print()
        print(f"slice {args.slice or 'first chunk'}:")
        for name, value in summary.items():
            print(f"  {name:<9} : {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
