"""Open an xarray dataset on S3 with asyncarr's engine and reduce it on a dask.distributed
cluster.

    python examples/xarray_s3_distributed.py s3://bucket/path/data.zarr --dim time

The dataset is opened lazily (``xarray.open_dataset(url, engine="asyncarr", chunks={})``:
one dask task per stored chunk), then a cluster of worker processes computes, for each
data variable, its mean, minimum and maximum over ``--dim`` (repeatable; default: every
dimension). Each worker reads its chunks from S3 itself, through asyncarr: the arrays
travel to the workers pickled (URL, options and metadata; no data, and no credentials
where they come from the environment, which the workers inherit).

By default a local cluster of ``--workers`` processes (2) is started on 127.0.0.1 and
stopped at the end; ``--scheduler tcp://host:8786`` uses a running one instead.
Credentials come from the environment or ``~/.aws``; ``--endpoint-url``, ``--region``,
``--anon``, ``--path-style`` and ``-o KEY=VALUE`` give the other storage options (as for
``serve_s3_slices.py``). ``--var`` (repeatable) limits the variables reduced. ``--json``
prints one JSON object (NaN as ``null``) instead of text.

Exit status: 0 on success, 1 when the dataset cannot be opened or read, 2 for bad
arguments.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from typing import Any

import dask
import numpy as np
import xarray as xr
from dask.distributed import Client, LocalCluster

from asyncarr.errors import AsyncarrError

__all__ = ["main", "reduce_dataset"]

FLAG_OPTIONS = {"endpoint_url": "endpoint_url", "region": "region_name"}
"""Command-line options that are storage options, by their ``storage_options`` names."""


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Reduce an xarray dataset on S3 with dask.distributed."
    )
    parser.add_argument("url", help="the dataset's group, e.g. s3://bucket/data.zarr")
    parser.add_argument("--group", help="a group below the URL")
    parser.add_argument("--var", action="append", default=[], help="a variable (repeatable)")
    parser.add_argument("--dim", action="append", default=[], help="reduce over (repeatable)")
    parser.add_argument("--workers", type=int, default=2, help="local worker processes")
    parser.add_argument("--scheduler", help="address of a running scheduler")
    parser.add_argument("--endpoint-url", help="S3-compatible endpoint")
    parser.add_argument("--region", help="S3 region")
    parser.add_argument("--anon", action="store_true", help="unsigned requests")
    parser.add_argument("--path-style", action="store_true", help="path-style addressing")
    parser.add_argument("-o", "--storage-option", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error("--workers must be at least 1")
    return args


def _storage_options(args: argparse.Namespace) -> dict[str, Any]:
    options: dict[str, Any] = {
        name: getattr(args, flag) for flag, name in FLAG_OPTIONS.items() if getattr(args, flag)
    }
    if args.anon:
        options["anon"] = True
    if args.path_style:
        options["addressing_style"] = "path"
    for pair in args.storage_option:
        key, sep, text = pair.partition("=")
        if not sep:
            raise SystemExit(f"-o needs KEY=VALUE, got {pair!r}")
        try:
            options[key] = json.loads(text)
        except ValueError:
            options[key] = text
    return options


def reduce_dataset(
    ds: xr.Dataset, variables: Sequence[str], dims: Sequence[str]
) -> dict[str, xr.Dataset]:
    """Mean, min and max of ``variables`` over ``dims`` (all where empty; a variable
    without one of them is reduced over those it has, as ``Dataset.mean`` does), computed
    in one pass of the current dask scheduler."""
    subset = ds[list(variables)]
    over = list(dims) or None
    lazy = {"mean": subset.mean(over), "min": subset.min(over), "max": subset.max(over)}
    (computed,) = dask.compute(lazy)
    result: dict[str, xr.Dataset] = computed
    return result


def _plain(value: xr.DataArray) -> Any:
    """A computed reduction as JSON: nested lists, NaN as ``None``."""
    data = np.asarray(value.values, dtype=np.float64)
    as_list = data.tolist()

    def clean(item: Any) -> Any:
        if isinstance(item, list):
            return [clean(i) for i in item]
        return None if math.isnan(item) else item

    return clean(as_list)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    options = _storage_options(args)
    try:
        ds = xr.open_dataset(
            args.url, engine="asyncarr", chunks={}, group=args.group, storage_options=options
        )
    except AsyncarrError as exc:
        print(f"xarray_s3_distributed: cannot open {args.url}: {exc}", file=sys.stderr)
        return 1
    with ds:
        variables = args.var or [str(n) for n, v in ds.data_vars.items() if v.dtype.kind in "biuf"]
        unknown = [n for n in [*variables, *args.dim] if n not in ds.variables and n not in ds.dims]
        if unknown:
            print(f"xarray_s3_distributed: not in the dataset: {unknown}", file=sys.stderr)
            return 2
        try:
            if args.scheduler:
                with Client(args.scheduler) as client:
                    workers = len(client.scheduler_info()["workers"])
                    results = reduce_dataset(ds, variables, args.dim)
            else:
                with (
                    LocalCluster(
                        n_workers=args.workers,
                        threads_per_worker=1,
                        processes=True,
                        host="127.0.0.1",
                        dashboard_address=None,
                    ) as cluster,
                    Client(cluster),
                ):
                    workers = args.workers
                    results = reduce_dataset(ds, variables, args.dim)
        except AsyncarrError as exc:
            print(f"xarray_s3_distributed: {exc}", file=sys.stderr)
            return 1
        if args.json:
            out = {
                "dataset": {"dims": dict(ds.sizes), "variables": [str(v) for v in ds.variables]},
                "over": args.dim or [str(d) for d in ds.dims],
                "workers": workers,
                "results": {
                    name: {stat: _plain(reduced[name]) for stat, reduced in results.items()}
                    for name in variables
                },
            }
            print(json.dumps(out))
            return 0
        print(ds)
        print(f"\nover {args.dim or 'all dimensions'}, on {workers} worker(s):")
        for name in variables:
            for stat, reduced in results.items():
                print(f"\n{name} {stat}:\n{reduced[name].values}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
