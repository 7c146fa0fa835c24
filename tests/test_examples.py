"""The programs in ``examples/`` run for real against the test servers.

- ``serve_s3_slices.py``: its aiohttp app is started on a free 127.0.0.1
  port (aiohttp's ``TestServer``) in front of an array on the S3 test servers
  (moto and SeaweedFS); slices come back as JSON and ``.npy`` and are
  compared with numpy, and bad requests get the documented status codes; the
  script itself is also started as a process on a free port and stopped with
  SIGINT (clean shutdown, no secret in its output).
- ``read_from_gcs.py``: run as a subprocess against fake-gcs-server, with
  the endpoint given as an option and through ``STORAGE_EMULATOR_HOST``.
- ``xarray_s3_distributed.py``: run as a subprocess on a dataset written to moto; it
  starts its own cluster of two worker processes, and its reductions are compared with
  xarray's on the dataset in memory.
"""

from __future__ import annotations

import asyncio
import importlib.util
import io
import json
import os
import re
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from types import ModuleType
from typing import Any

import aiohttp
import numpy as np
import pytest
import pytest_asyncio
from aiohttp.test_utils import TestClient, TestServer

import asyncarr
from asyncarr.testing._fixtures_s3 import S3_SERVERS
from asyncarr.testing._procs import StoreLocation, free_port
from asyncarr.testing._servers_s3 import S3TestServer

pytestmark = pytest.mark.servers

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


def _load(name: str) -> ModuleType:
    """Import ``examples/<name>.py`` as a module (the folder is not a package)."""
    spec = importlib.util.spec_from_file_location(f"_example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


serve = _load("serve_s3_slices")
read_from_gcs = _load("read_from_gcs")


def _child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for running an example: this checkout importable, no stray emulator."""
    env = {k: v for k, v in os.environ.items() if k != "STORAGE_EMULATOR_HOST"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.update(extra or {})
    return env


def _data() -> np.ndarray[Any, Any]:
    rng = np.random.default_rng(42)
    data = rng.standard_normal((60, 45)).astype("float32")
    data[3, 4] = np.nan
    return data


# -- serve_s3_slices.py ---------------------------------------------------------------------


@pytest_asyncio.fixture(scope="module", loop_scope="session", params=S3_SERVERS)
async def s3_array(request: pytest.FixtureRequest) -> AsyncIterator[tuple[StoreLocation, Any]]:
    """A v3 float32 array with a NaN, on a fresh bucket of each S3 test server.

    Built once per server for the whole module (like ``s3_location``, but
    shared, so the read-only tests do not each pay for a bucket and a write).
    """
    server: S3TestServer = request.getfixturevalue(f"{request.param}_s3_server")
    bucket = server.create_bucket()
    location = StoreLocation(url=f"s3://{bucket}/root", storage_options=server.storage_options())
    data = _data()
    try:
        arr = await asyncarr.create_array(
            location.url,
            shape=data.shape,
            chunks=(16, 16),
            dtype="float32",
            dimension_names=["y", "x"],
            storage_options=location.storage_options,
        )
        async with arr:
            await arr.write(data)
        yield location, data
    finally:
        server.delete_bucket(bucket)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def client(s3_array: tuple[StoreLocation, Any]) -> AsyncIterator[TestClient[Any, Any]]:
    """The example app serving ``s3_array``, on a free 127.0.0.1 port."""
    location, _ = s3_array
    app = serve.create_app(location.url, storage_options=location.storage_options)
    async with TestClient(TestServer(app, host="127.0.0.1")) as test_client:
        yield test_client


async def _json(client: TestClient[Any, Any], path: str, status: int = 200, **kw: Any) -> Any:
    resp = await client.get(path, **kw)
    assert resp.status == status, await resp.text()
    assert resp.content_type == "application/json"
    return await resp.json()


async def test_info_describes_the_array(client: TestClient[Any, Any]) -> None:
    info = await _json(client, "/info")
    assert info["shape"] == [60, 45]
    assert info["dtype"] == "float32"
    assert info["chunks"] == [16, 16]
    assert info["zarr_format"] == 3
    assert info["dimension_names"] == ["y", "x"]
    assert info["fill_value"] == 0.0
    assert info["codecs"][-1]["name"] == "zstd"
    assert info["url"].startswith("s3://")
    assert "secret" not in json.dumps(info).lower()


@pytest.mark.parametrize(
    ("sel", "expected"),
    [
        ("0:10,0:10", np.s_[0:10, 0:10]),
        ("5:50:7,::-3", np.s_[5:50:7, ::-3]),
        ("-5:,...", np.s_[-5:, ...]),
        ("7", np.s_[7]),
        ("...,-1", np.s_[..., -1]),
        ("2,3", np.s_[2, 3]),
    ],
)
async def test_json_slices_match_numpy(
    client: TestClient[Any, Any], s3_array: tuple[StoreLocation, Any], sel: str, expected: Any
) -> None:
    data = s3_array[1]
    body = await _json(client, "/slice", params={"sel": sel})
    want = data[expected]
    assert body["shape"] == list(np.shape(want))
    assert body["dtype"] == "float32"
    got = np.array(body["data"], dtype=object)
    got = np.where(got == None, np.nan, got).astype("float32")  # noqa: E711 - elementwise
    np.testing.assert_array_equal(got, want)


async def test_nan_becomes_null_in_json(client: TestClient[Any, Any]) -> None:
    body = await _json(client, "/slice", params={"sel": "3,4"})
    assert body == {"shape": [], "dtype": "float32", "data": None}


@pytest.mark.parametrize(
    ("query", "headers"),
    [
        ({"format": "npy"}, {}),
        ({}, {"Accept": "application/x-npy"}),
        ({}, {"Accept": "text/html;q=0.9, application/octet-stream"}),
    ],
)
async def test_npy_by_format_or_content_negotiation(
    client: TestClient[Any, Any],
    s3_array: tuple[StoreLocation, Any],
    query: dict[str, str],
    headers: dict[str, str],
) -> None:
    data = s3_array[1]
    resp = await client.get("/slice", params={"sel": "10:40,::2", **query}, headers=headers)
    assert resp.status == 200, await resp.text()
    assert resp.content_type == "application/x-npy"
    block = np.load(io.BytesIO(await resp.read()), allow_pickle=False)
    assert block.dtype == np.float32
    np.testing.assert_array_equal(block, data[10:40, ::2])


async def test_whole_array_without_sel(
    client: TestClient[Any, Any], s3_array: tuple[StoreLocation, Any]
) -> None:
    resp = await client.get("/slice", params={"format": "npy"})
    assert resp.status == 200
    block = np.load(io.BytesIO(await resp.read()), allow_pickle=False)
    np.testing.assert_array_equal(block, s3_array[1])


async def test_json_is_the_default_for_browsers(client: TestClient[Any, Any]) -> None:
    body = await _json(client, "/slice", params={"sel": "0,0:3"}, headers={"Accept": "*/*"})
    assert body["shape"] == [3]


@pytest.mark.parametrize(
    ("sel", "fragment"),
    [
        ("0:a", "integer"),
        ("1:2:3:4", "start:stop:step"),
        ("0:10:0", "zero"),
        ("...,...", "once"),
        ("0,,1", "empty"),
        ("60", "out of bounds"),
        ("0,0,0", "too many indices"),
    ],
)
async def test_bad_selections_are_400(
    client: TestClient[Any, Any], sel: str, fragment: str
) -> None:
    body = await _json(client, "/slice", status=400, params={"sel": sel})
    assert fragment in body["error"]


async def test_unknown_format_is_406(client: TestClient[Any, Any]) -> None:
    body = await _json(client, "/slice", status=406, params={"format": "csv"})
    assert "format" in body["error"]


async def test_too_large_selection_is_413(s3_array: tuple[StoreLocation, Any]) -> None:
    location, _ = s3_array
    app = serve.create_app(location.url, storage_options=location.storage_options, max_elements=100)
    async with TestClient(TestServer(app, host="127.0.0.1")) as small:
        body = await _json(small, "/slice", status=413, params={"sel": "0:11,0:10"})
        assert "110 elements" in body["error"]
        ok = await _json(small, "/slice", params={"sel": "0:10,0:10"})
        assert ok["shape"] == [10, 10]


async def test_missing_array_is_404_until_it_exists(s3_location: StoreLocation) -> None:
    url = s3_location.url + "/later"
    app = serve.create_app(url, storage_options=s3_location.storage_options)
    async with TestClient(TestServer(app, host="127.0.0.1")) as test_client:
        for path in ("/info", "/slice"):
            body = await _json(test_client, path, status=404)
            assert "no array" in body["error"]
        arr = await asyncarr.create_array(
            url,
            shape=(4,),
            dtype="int16",
            fill_value=7,
            storage_options=s3_location.storage_options,
        )
        await arr.aclose()
        body = await _json(test_client, "/slice")
        assert body == {"shape": [4], "dtype": "int16", "data": [7, 7, 7, 7]}


async def test_store_is_closed_on_shutdown(s3_array: tuple[StoreLocation, Any]) -> None:
    location, _ = s3_array
    app = serve.create_app(location.url, storage_options=location.storage_options)
    service = app[serve.SERVICE]
    async with TestClient(TestServer(app, host="127.0.0.1")) as test_client:
        await _json(test_client, "/info")
        assert service.array is not None
    assert service.array is None  # on_cleanup ran aclose()


async def test_script_runs_as_a_server_process(s3_array: tuple[StoreLocation, Any]) -> None:
    """``python examples/serve_s3_slices.py --url ... --endpoint-url ... --port N``, then Ctrl-C."""
    location, data = s3_array
    opts = location.storage_options
    port = free_port()
    env = _child_env(
        {
            "AWS_ACCESS_KEY_ID": str(opts["aws_access_key_id"]),
            "AWS_SECRET_ACCESS_KEY": str(opts["aws_secret_access_key"]),
        }
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(EXAMPLES / "serve_s3_slices.py"),
        "--url",
        location.url,
        "--endpoint-url",
        str(opts["endpoint_url"]),
        "--region",
        str(opts["region_name"]),
        "--path-style",
        "-o",
        f"verify_dir_prefixes={json.dumps(opts['verify_dir_prefixes'])}",
        "--port",
        str(port),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=env,
        cwd=str(ROOT),
    )
    try:
        async with aiohttp.ClientSession() as session:
            body = None
            for _ in range(600):  # up to a minute for the interpreter to start
                try:
                    async with session.get(
                        f"http://127.0.0.1:{port}/slice", params={"sel": "1:3,0:2"}
                    ) as resp:
                        assert resp.status == 200
                        body = await resp.json()
                        break
                except aiohttp.ClientConnectionError:
                    assert proc.returncode is None, "the example server exited early"
                    await asyncio.sleep(0.1)
            assert body is not None, "the example server never answered"
            np.testing.assert_array_equal(np.array(body["data"], dtype="float32"), data[1:3, 0:2])
        proc.send_signal(signal.SIGINT)
        out, _ = await asyncio.wait_for(proc.communicate(), timeout=60)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, out.decode()
    assert str(opts["aws_secret_access_key"]) not in out.decode()


def test_parse_selection_forms() -> None:
    parse = serve.parse_selection
    assert parse(None) == (Ellipsis,)
    assert parse("") == (Ellipsis,)
    assert parse(" 1 , 2:5 , ::-1, ...") == (1, slice(2, 5), slice(None, None, -1), Ellipsis)
    assert parse(":") == (slice(None),)
    assert serve.selection_size(parse("0:10,..."), (60, 45)) == 450
    assert serve.selection_size(parse("...,3"), (60, 45)) == 60


def test_command_line_options() -> None:
    args = serve._parse_args(
        [
            "--url",
            "s3://bucket/arr",
            "--endpoint-url",
            "http://127.0.0.1:9000",
            "--path-style",
            "-o",
            "read_timeout=5",
            "-o",
            "profile=dev",
        ]
    )
    assert args.port == 8080
    assert serve.storage_options_from_args(args) == {
        "endpoint_url": "http://127.0.0.1:9000",
        "addressing_style": "path",
        "read_timeout": 5,
        "profile": "dev",
    }


# -- read_from_gcs.py -----------------------------------------------------------------------


async def _run_script(
    *args: str, env: dict[str, str] | None = None, script: str = "read_from_gcs.py"
) -> tuple[int, str, str]:
    full_env = _child_env(env)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(EXAMPLES / script),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=full_env,
        cwd=str(ROOT),
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=120)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@pytest_asyncio.fixture
async def gcs_array(gcs_location: StoreLocation) -> AsyncIterator[tuple[StoreLocation, Any]]:
    data = _data()
    arr = await asyncarr.create_array(
        gcs_location.url,
        shape=data.shape,
        chunks=(20, 15),
        dtype="float32",
        zarr_format=2,
        compressor="blosc",
        storage_options=gcs_location.storage_options,
    )
    async with arr:
        await arr.write(data)
    yield gcs_location, data


def _check_summary(summary: dict[str, Any], block: np.ndarray[Any, Any]) -> None:
    assert summary["shape"] == list(block.shape)
    assert summary["dtype"] == "float32"
    assert summary["nan_count"] == int(np.isnan(block).sum())
    assert summary["min"] == pytest.approx(float(np.nanmin(block)))
    assert summary["max"] == pytest.approx(float(np.nanmax(block)))
    assert summary["mean"] == pytest.approx(float(np.nanmean(block.astype("f8"))))
    assert summary["sum"] == pytest.approx(float(np.nansum(block.astype("f8"))))


async def test_gcs_script_json_with_endpoint_option(gcs_array: tuple[StoreLocation, Any]) -> None:
    location, data = gcs_array
    endpoint = str(location.storage_options["endpoint"])
    code, out, err = await _run_script(
        location.url, "--endpoint", endpoint, "--anon", "--slice", "0:50:2,-10:", "--json"
    )
    assert code == 0, err
    result = json.loads(out)
    assert result["info"]["shape"] == [60, 45]
    assert result["info"]["zarr_format"] == 2
    assert result["info"]["codecs"][0]["id"] == "blosc"
    _check_summary(result["slice"], data[0:50:2, -10:])


async def test_gcs_script_text_via_emulator_env(gcs_array: tuple[StoreLocation, Any]) -> None:
    location, data = gcs_array
    host = str(location.storage_options["endpoint"]).removeprefix("http://")
    code, out, err = await _run_script(location.url, env={"STORAGE_EMULATOR_HOST": host})
    assert code == 0, err
    assert re.search(r"^Shape +: \(60, 45\)$", out, re.MULTILINE)
    assert re.search(r"^Zarr format +: 2$", out, re.MULTILINE)
    assert "GCSStore(gs://" in out
    assert "slice first chunk:" in out
    first = data[:20, :15]
    assert f"shape     : {list(first.shape)}" in out
    assert f"nan_count : {int(np.isnan(first).sum())}" in out


async def test_gcs_script_missing_array_and_bad_slice(gcs_location: StoreLocation) -> None:
    endpoint = str(gcs_location.storage_options["endpoint"])
    code, out, err = await _run_script(gcs_location.url + "/nothing", "--endpoint", endpoint)
    assert code == 1
    assert "no array at" in err
    assert out == ""
    code, _, err = await _run_script(gcs_location.url, "--endpoint", endpoint, "--slice", "a:b")
    assert code == 2
    assert "bad --slice" in err


# -- xarray_s3_distributed.py ----------------------------------------------------------------


def _xr_dataset() -> Any:
    import pandas as pd
    import xarray as xr

    rng = np.random.default_rng(3)
    temp = rng.standard_normal((10, 4, 6)).astype("float32")
    temp[2, 1, 1] = np.nan
    return xr.Dataset(
        {
            "temp": (("time", "y", "x"), temp),
            "count": (("y", "x"), np.arange(24, dtype="int32").reshape(4, 6)),
        },
        coords={"time": pd.date_range("2020-01-01", periods=10), "x": np.arange(6)},
    )


async def test_xarray_distributed_script_reduces_what_xarray_reduces(
    moto_s3_server: S3TestServer,
) -> None:
    from asyncarr.xarray import to_zarr

    ds = _xr_dataset()
    bucket = moto_s3_server.create_bucket()
    try:
        opts = moto_s3_server.storage_options()
        url = f"s3://{bucket}/data.zarr"
        chunked = ds.chunk({"time": 3, "x": 2})
        await asyncio.to_thread(to_zarr, chunked, url, storage_options=opts)
        env = {
            "AWS_ACCESS_KEY_ID": str(opts["aws_access_key_id"]),
            "AWS_SECRET_ACCESS_KEY": str(opts["aws_secret_access_key"]),
        }
        endpoint = ["--endpoint-url", str(opts["endpoint_url"]), "--region", "us-east-1"]
        code, out, err = await _run_script(
            url, *endpoint, "--path-style", "--dim", "time", "--json",
            env=env, script="xarray_s3_distributed.py",
        )  # fmt: skip
        assert code == 0, err
        result = json.loads(out)
        assert result["workers"] == 2 and result["over"] == ["time"]
        assert result["dataset"]["dims"] == {"time": 10, "y": 4, "x": 6}
        for name in ("temp", "count"):
            for stat in ("mean", "min", "max"):
                want = getattr(ds[["temp", "count"]], stat)("time")[name].values.astype("f8")
                got = np.array(result["results"][name][stat], dtype="f8")  # None -> NaN
                np.testing.assert_allclose(got, want, rtol=1e-6)
        assert str(opts["aws_secret_access_key"]) not in out + err

        # in this process (no cluster is started for a dataset that does not open)
        script = _load("xarray_s3_distributed")
        missing = [f"s3://{bucket}/missing.zarr", *endpoint, "--path-style"]
        for key, value in opts.items():
            if key not in ("endpoint_url", "region_name", "addressing_style"):
                missing += ["-o", f"{key}={json.dumps(value)}"]
        assert await asyncio.to_thread(script.main, missing) == 1
    finally:
        moto_s3_server.delete_bucket(bucket)
