"""LocalStore: the conformance suite plus filesystem-specific guarantees."""

from __future__ import annotations

import asyncio
import errno
import fcntl
import multiprocessing
import os
import shutil
import stat
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from asyncarr._types import ByteRange
from asyncarr.abc import Store
from asyncarr.config import StoreLimits
from asyncarr.errors import (
    ConfigError,
    InvalidKeyError,
    PermissionDeniedError,
    PreconditionFailedError,
    StoreError,
)
from asyncarr.stores import _local, store_from_url
from asyncarr.stores._local import LocalStore, local_store_from_url
from asyncarr.testing import StoreTests
from asyncarr.testing._procs import StoreLocation


class TestLocalStore(StoreTests):
    @pytest.fixture
    async def store(self, tmp_path: Path) -> AsyncIterator[Store]:
        s = LocalStore(tmp_path / "root")
        yield s
        await s.aclose()

    @pytest.fixture
    async def read_only_store(self, store: LocalStore) -> Store:
        return store.with_read_only()


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


async def test_plugin_fixtures(local_store: LocalStore, local_location: StoreLocation) -> None:
    await local_store.set("a/b", b"x")
    assert [k async for k in local_store.list_prefix("")] == ["a/b"]
    other = store_from_url(local_location.url, storage_options=local_location.storage_options)
    assert isinstance(other, LocalStore)
    assert [k async for k in other.list_prefix("")] == []


async def test_files_on_disk_and_local_path(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "r")
    await store.set("g/c/0/1", b"chunk")
    assert (tmp_path / "r" / "g" / "c" / "0" / "1").read_bytes() == b"chunk"
    assert store.supports_local_files
    path = store.local_path("g/c/0/1")
    assert os.path.isabs(path)
    assert Path(path).read_bytes() == b"chunk"
    assert store.local_path("not/yet") == str(tmp_path / "r" / "not" / "yet")
    assert _files(tmp_path / "r") == ["g/c/0/1"]  # no temp or lock files left behind


async def test_symlink_escape_refused(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_bytes(b"secret")
    root = tmp_path / "root"
    store = LocalStore(root)
    await store.set("inner/value", b"inside")
    (root / "dirlink").symlink_to(outside)
    (root / "filelink").symlink_to(outside / "secret")
    (root / "oklink").symlink_to(root / "inner")
    for key in ("dirlink/secret", "filelink"):
        with pytest.raises(InvalidKeyError, match="outside the store root"):
            await store.get(key)
        with pytest.raises(InvalidKeyError):
            await store.get(key, ByteRange(0, 2))
        with pytest.raises(InvalidKeyError):
            await store.exists(key)
        with pytest.raises(InvalidKeyError):
            store.local_path(key)
        with pytest.raises(InvalidKeyError, match="outside the store root"):
            store.read_local(key)  # the codec workers' fast path checks the same
        with pytest.raises(InvalidKeyError, match="outside the store root"):
            store.read_local_ranges(key, [ByteRange(0, 2)])  # so do the ranged ones
        with pytest.raises(InvalidKeyError, match="outside the store root"):
            store.read_local_into(key, memoryview(bytearray(64)))
    with pytest.raises(InvalidKeyError):
        await store.set("dirlink/new", b"x")
    with pytest.raises(InvalidKeyError):
        await store.set("dirlink/deeper/new", b"x")
    with pytest.raises(InvalidKeyError):
        await store.list_dir("dirlink")
    assert sorted(p.name for p in outside.iterdir()) == ["secret"]  # nothing written outside
    # links that stay inside the root are fine; escaping ones are never listed
    assert await store.get("oklink/value") == b"inside"
    assert sorted([k async for k in store.list_prefix("")]) == ["inner/value", "oklink/value"]
    assert await store.list_dir("") == ["inner", "oklink"]
    (root / "inner" / "filelink").symlink_to(root / "inner" / "value")
    for read in (store.read_local, store.get):  # a file link that stays inside is followed
        got = read("inner/filelink")
        assert (await got if asyncio.iscoroutine(got) else got) == b"inside"
    assert store.read_local_ranges("inner/filelink", [ByteRange(1, 3)]) == [b"ns"]
    assert store.read_local_into("inner/filelink", memoryview(bytearray(64))) == b"inside"


async def test_reserved_names_never_listed(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "r")
    await store.set("a/k", b"v")
    (tmp_path / "r" / "a" / ".k.0123456789abcdef0123456789abcdef.asyncarr.tmp").write_bytes(b"x")
    (tmp_path / "r" / "a" / ".k.asyncarr.lock").write_bytes(b"")
    assert [k async for k in store.list_prefix("")] == ["a/k"]
    assert await store.list_dir("a") == ["k"]
    for bad in ("x.asyncarr.tmp", "d.asyncarr.lock/k"):
        with pytest.raises(InvalidKeyError, match="reserved"):
            await store.set(bad, b"x")
    # a crashed writer's temp file does not block or disturb later writes
    await store.set("a/k", b"new")
    assert await store.get("a/k") == b"new"


async def test_atomic_replace_under_concurrency(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "r")
    size = 1 << 20
    values = [bytes([i]) * size for i in range(4)]
    await store.set("hot", values[0])
    seen: set[bytes] = set()

    async def writer(i: int) -> None:
        for _ in range(15):
            await store.set("hot", values[i])

    async def reader() -> None:
        for _ in range(40):
            got = await store.get("hot")
            assert got in values, "a reader saw a partial or mixed file"
            seen.add(got[:1])
            part = await store.get("hot", ByteRange(size - 10, size))
            assert part is not None
            assert len(part) == 10
            assert len(set(part)) == 1

    await asyncio.gather(*(writer(i) for i in range(4)), *(reader() for _ in range(4)))
    assert _files(tmp_path / "r") == ["hot"]


async def test_mutations_wait_for_the_directory_lock(tmp_path: Path) -> None:
    """Another process's lock on the key's directory holds back every mutation in it."""
    store = LocalStore(tmp_path / "r")
    await store.set("d/k", b"old")
    await store.set("d/gone", b"x")
    dfd = os.open(tmp_path / "r" / "d", os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(dfd, fcntl.LOCK_EX)  # a separate open file description: it conflicts
        version = (await store.get_versioned("d/k")).version  # type: ignore[union-attr]
        pending = [
            asyncio.ensure_future(store.set("d/k", b"new")),
            asyncio.ensure_future(store.set_if_not_exists("d/fresh", b"f")),
            asyncio.ensure_future(store.delete("d/gone")),
            asyncio.ensure_future(asyncio.to_thread(store.write_local_many, [("d/m", b"m")])),
        ]
        await asyncio.sleep(0.3)
        assert not any(t.done() for t in pending)
        assert await store.get("d/k") == b"old"  # reads never wait
        assert await store.get("d/fresh") is None
        assert await store.get("d/gone") == b"x"
    finally:
        os.close(dfd)  # releases the lock
    await asyncio.wait_for(asyncio.gather(*pending), 10)
    assert await store.get("d/k") == b"new"
    assert await store.get("d/fresh") == b"f"
    assert await store.get("d/gone") is None
    assert await store.get("d/m") == b"m"
    with pytest.raises(PreconditionFailedError):
        await store.set_if_version("d/k", b"stale", version)
    assert not await store.set_if_not_exists("d/k", b"again")
    assert _files(tmp_path / "r") == ["d/fresh", "d/k", "d/m"]  # no lock or temp files


def _anonymous_files_open() -> int:
    """This process's open ``O_TMPFILE`` files (never linked: ``/proc`` shows them deleted)."""
    n = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            n += os.readlink(f"/proc/self/fd/{fd}").endswith(" (deleted)")
        except OSError:
            pass
    return n


@pytest.mark.parametrize("anonymous", [True, False], ids=["O_TMPFILE", "named temps"])
def test_write_local_many_stages_each_value_then_commits_per_directory(
    tmp_path: Path, anonymous: bool
) -> None:
    """Each value is in a temporary file before the next one is asked for (a worker
    encodes and writes alternately); none is visible until the batch commits."""
    store = LocalStore(tmp_path / "r")
    if anonymous and not store._anonymous_temps:
        pytest.skip("no O_TMPFILE here")
    store._anonymous_temps = anonymous
    listed: list[list[str]] = []
    staged: list[int] = []
    before = _anonymous_files_open() if _local._PROC_FD else 0

    def items() -> Iterator[tuple[str, bytes | None]]:
        for i in range(3):
            listed.append(sorted(os.listdir(tmp_path / "r" / "d")) if i else [])
            if _local._PROC_FD:
                staged.append(_anonymous_files_open() - before)
            yield f"d/{i}", bytes([i]) * 10

    store.write_local_many(items())
    if anonymous:
        assert listed == [[], [], []]  # unnamed until linked in at the commit
        assert staged == [0, 1, 2]
    else:
        assert [len(names) for names in listed] == [0, 1, 2]
        assert all(n.endswith(".asyncarr.tmp") for names in listed for n in names)
    assert _files(tmp_path / "r") == ["d/0", "d/1", "d/2"]
    assert [store.read_local(f"d/{i}") for i in range(3)] == [bytes([i]) * 10 for i in range(3)]
    if _local._PROC_FD:
        assert _anonymous_files_open() == before  # every descriptor closed


def test_write_local_many_commits_long_batches_in_groups_of_anonymous_files(
    tmp_path: Path,
) -> None:
    """A batch longer than the open anonymous files allowed commits as it goes: every
    value is staged anonymously (no named temporary file, whose rename costs more) and
    at most ``_MAX_ANONYMOUS`` descriptors are open at once."""
    store = LocalStore(tmp_path / "r")
    if not store._anonymous_temps or not _local._PROC_FD:
        pytest.skip("no O_TMPFILE here")
    n = 2 * _local._MAX_ANONYMOUS + 5
    before = _anonymous_files_open()
    most_open = 0
    named: list[str] = []

    def items() -> Iterator[tuple[str, bytes | None]]:
        nonlocal most_open
        for i in range(n):
            most_open = max(most_open, _anonymous_files_open() - before)
            named.extend(x for x in os.listdir(tmp_path / "r" / "d") if x.endswith(".tmp"))
            if i == _local._MAX_ANONYMOUS + 1:  # the first group is in place already
                assert store.read_local("d/0") == b"0"
            yield f"d/{i}", b"%d" % i

    os.makedirs(tmp_path / "r" / "d")
    store.write_local_many(items())
    assert most_open == _local._MAX_ANONYMOUS - 1  # (counted before the next is staged)
    assert named == []
    assert [store.read_local(f"d/{i}") for i in range(n)] == [b"%d" % i for i in range(n)]
    assert _anonymous_files_open() == before


def test_write_local_many_failure_names_the_key_and_leaves_no_temporary_files(
    tmp_path: Path,
) -> None:
    store = LocalStore(tmp_path / "r")
    store.write_local("d/sub/x", b"x")  # so "d/sub" is a directory holding a key
    with pytest.raises(StoreError) as info:
        store.write_local_many([("d/a", b"a"), ("d/sub", b"not a directory"), ("d/z", b"z")])
    assert info.value.key == "d/sub"
    assert store.read_local("d/a") == b"a"  # committed before the failing one
    assert store.read_local("d/z") is None
    assert store.read_local("d/sub/x") == b"x"
    assert _files(tmp_path / "r") == ["d/a", "d/sub/x"]  # no temporary files left


async def _increment(store: LocalStore, key: str) -> int:
    """Add one to the counter at ``key`` by compare-and-swap; returns the conflicts seen."""
    conflicts = 0
    while True:
        cur = await store.get_versioned(key)
        assert cur is not None
        try:
            await store.set_if_version(key, b"%d" % (int(cur.data) + 1), cur.version)
            return conflicts
        except PreconditionFailedError:
            conflicts += 1


def _increment_worker(root: str, times: int) -> int:
    async def run() -> int:
        store = LocalStore(root)
        return sum([await _increment(store, "counter") for _ in range(times)])

    return asyncio.run(run())


async def test_set_if_version_across_processes(tmp_path: Path) -> None:
    root = str(tmp_path / "r")
    store = LocalStore(root)
    await store.set("counter", b"0")
    ctx = multiprocessing.get_context("spawn")
    loop = asyncio.get_running_loop()
    with ctx.Pool(4) as pool:
        results = [pool.apply_async(_increment_worker, (root, 40)) for _ in range(4)]
        await loop.run_in_executor(None, lambda: [r.get(timeout=120) for r in results])
    assert await store.get("counter") == b"160"
    assert _files(tmp_path / "r") == ["counter"]


async def test_versions(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "r")
    await store.set("k", b"same")
    a = await store.get_versioned("k")
    b = await store.get_versioned("k")
    assert a is not None
    assert b is not None
    assert a.version == b.version
    await store.set("k", b"same")
    c = await store.get_versioned("k")
    assert c is not None
    assert c.version != a.version
    with pytest.raises(PreconditionFailedError):
        await store.set_if_version("missing", b"x", a.version)
    await store.set_if_version("k", b"next", c.version)
    assert await store.get("k") == b"next"


async def test_delete_prunes_empty_directories(tmp_path: Path) -> None:
    root = tmp_path / "r"
    store = LocalStore(root)
    await store.set("a/b/c/d", b"1")
    await store.set("a/x", b"2")
    await store.delete("a/b/c/d")
    assert not (root / "a" / "b").exists()
    assert (root / "a" / "x").exists()
    await store.delete_prefix("")
    assert root.is_dir()
    assert list(root.iterdir()) == []
    await store.delete("a/b/c/d")  # missing: no-op, creates nothing
    assert list(root.iterdir()) == []


async def test_key_directory_conflicts(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "r")
    await store.set("a/b", b"value")
    with pytest.raises(StoreError, match="parent key is a value"):
        await store.set("a/b/c", b"x")
    assert await store.get("a/b/c") is None
    assert not await store.exists("a/b/c")
    await store.set("d/e", b"x")
    with pytest.raises(StoreError, match="directory holding other keys"):
        await store.set("d", b"x")
    assert await store.get("d") is None
    assert await store.get("d/e") == b"x"
    await store.delete("d")  # a directory is not a value: no-op
    assert await store.get("d/e") == b"x"


async def test_missing_root_and_auto_mkdir(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "nope", auto_mkdir=False)
    assert await store.get("k") is None
    assert [k async for k in store.list_prefix("")] == []
    assert await store.list_dir("") == []
    with pytest.raises(StoreError, match="auto_mkdir=False"):
        await store.set("k", b"v")
    made = LocalStore(tmp_path / "deep" / "new" / "root")
    await made.set("k", b"v")
    assert (tmp_path / "deep" / "new" / "root" / "k").read_bytes() == b"v"


async def test_fsync_option(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "r", fsync=True)
    await store.set("a/k", b"durable")
    assert await store.set_if_not_exists("a/j", b"new")
    assert await store.get("a/k") == b"durable"


def _write_as_unprivileged(root: str) -> list[str]:
    """In a child process: drop root privileges if any, then try to write and read."""
    if os.geteuid() == 0:
        os.setgid(65534)
        os.setuid(65534)

    async def run() -> list[str]:
        store = LocalStore(root)
        outcomes = []
        ops = (store.get("open/k"), store.set("locked/other", b"v"), store.get("locked/secret"))
        for op in ops:
            try:
                await op
                outcomes.append("ok")
            except Exception as exc:
                outcomes.append(type(exc).__name__)
        return outcomes

    return asyncio.run(run())


async def test_permission_denied() -> None:
    base = Path(tempfile.mkdtemp(prefix="asyncarr-perm-"))  # outside pytest's 0o700 tmp dirs
    try:
        base.chmod(0o755)
        root = base / "r"
        store = LocalStore(root)
        await store.set("open/k", b"v")
        await store.set("locked/secret", b"v")
        (root / "locked").chmod(0o555)
        (root / "locked" / "secret").chmod(0o000)
        with multiprocessing.get_context("spawn").Pool(1) as pool:
            result = pool.apply_async(_write_as_unprivileged, (str(root),))
            outcomes = await asyncio.get_running_loop().run_in_executor(None, result.get, 60)
        denied = PermissionDeniedError.__name__
        assert outcomes == ["ok", denied, denied]
    finally:
        (base / "r" / "locked").chmod(0o755)
        shutil.rmtree(base)


async def test_url_forms(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    cases = {
        f"file://{tmp_path}/abs": tmp_path / "abs",
        f"file://localhost{tmp_path}/host": tmp_path / "host",
        f"FILE://{tmp_path}/my%20dir": tmp_path / "my dir",
        f"file:{tmp_path}/single": tmp_path / "single",
        "file://rel/path": tmp_path / "rel" / "path",
        str(tmp_path / "plain%20kept"): tmp_path / "plain%20kept",
        "relative": tmp_path / "relative",
        "~/data": tmp_path / "home" / "data",
        "file://~/url": tmp_path / "home" / "url",
    }
    for url, expected in cases.items():
        store = store_from_url(url)
        assert isinstance(store, LocalStore), url
        assert store.root == str(expected), url
    assert store_from_url(str(tmp_path), read_only=True).read_only
    opened = local_store_from_url(
        str(tmp_path),
        read_only=False,
        storage_options={"fsync": True, "auto_mkdir": False, "limits": {"max_concurrency": 3}},
    )
    assert opened.limits == StoreLimits(max_concurrency=3)
    with pytest.raises(ConfigError, match="unknown storage_options"):
        store_from_url(str(tmp_path), storage_options={"anon": True})
    with pytest.raises(ConfigError, match="fsync"):
        store_from_url(str(tmp_path), storage_options={"fsync": "yes"})
    with pytest.raises(ConfigError):
        store_from_url("file://")


async def test_identity(tmp_path: Path) -> None:
    a = LocalStore(tmp_path / "a")
    b = LocalStore(tmp_path / "b" / "not" / "yet")
    assert a.endpoint_key == b.endpoint_key
    assert a.endpoint_key.startswith("file:dev=")
    assert "LocalStore(" in repr(a)
    assert str(tmp_path) in repr(a)
    assert "read-only" in repr(a.with_read_only())


async def test_pruning_races_with_writers(tmp_path: Path) -> None:
    """Deletes prune empty directories while other writers create keys in them."""
    store = LocalStore(tmp_path / "r")

    async def churn(i: int) -> None:
        for j in range(30):
            await store.set(f"d/x/{i}", b"%d" % j)
            await store.delete(f"d/x/{i}")

    await asyncio.gather(*(churn(i) for i in range(8)))
    assert [k async for k in store.list_prefix("")] == []
    assert list((tmp_path / "r").iterdir()) == []  # fully pruned, nothing left behind


@pytest.mark.parametrize("exchange", [True, False], ids=["renameat2-exchange", "plain-rename"])
async def test_overwrite_paths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, exchange: bool
) -> None:
    """Both ways of replacing a value: an exchange plus unlink (Linux), or a plain rename."""
    if not exchange:
        monkeypatch.setattr(_local, "_renameat2", None)
    elif _local._renameat2 is None:
        pytest.skip("no renameat2 on this platform")
    store = LocalStore(tmp_path / "r")
    await store.set("a/k", b"one")
    first = await store.get_versioned("a/k")
    await store.set("a/k", b"two")  # over a regular file: the exchange, where available
    assert await store.get("a/k") == b"two"
    assert first is not None
    with pytest.raises(PreconditionFailedError):
        await store.set_if_version("a/k", b"stale", first.version)
    current = await store.get_versioned("a/k")
    assert current is not None
    await store.set_if_version("a/k", b"three", current.version)
    assert await store.get("a/k") == b"three"
    (tmp_path / "r" / "a" / "d").mkdir()  # an empty leftover directory where a key goes
    await store.set("a/d", b"file")
    assert await store.get("a/d") == b"file"
    (tmp_path / "r" / "a" / "link").symlink_to("k")  # a symlink is replaced, not followed
    await store.set("a/link", b"own")
    assert await store.get("a/k") == b"three"
    assert await store.get("a/link") == b"own"
    assert _files(tmp_path / "r") == ["a/d", "a/k", "a/link"]


@pytest.mark.parametrize("hint", [None, 0, 1, 99, 100, 101, 4096])
async def test_read_local_reads_whole_values_whatever_the_size_hint(
    tmp_path: Path, hint: int | None
) -> None:
    store = LocalStore(tmp_path / "r")
    value = bytes(range(100))
    await store.set("a/k", value)
    assert store.read_local("a/k", hint) == value
    await store.set("a/empty", b"")
    assert store.read_local("a/empty", hint) == b""
    assert store.read_local("a/missing", hint) is None
    assert store.read_local("a", hint) is None  # a directory is no value


async def test_directory_lock_falls_back_to_a_lock_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where a directory descriptor cannot be flock()ed (NFS), a per-directory lock file is."""
    real_flock = fcntl.flock

    def flock(fd: int, op: int) -> None:
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            raise OSError(errno.ENOLCK, "no locks available")
        real_flock(fd, op)

    monkeypatch.setattr(_local.fcntl, "flock", flock)
    store = LocalStore(tmp_path / "r")
    await store.set("d/counter", b"0")

    await asyncio.gather(*(_increment(store, "d/counter") for _ in range(40)))
    assert await store.get("d/counter") == b"40"
    assert (tmp_path / "r" / "d" / ".asyncarr.lock").exists()
    assert [k async for k in store.list_prefix("")] == ["d/counter"]  # the lock file is hidden
    await store.delete("d/counter")
    assert [k async for k in store.list_prefix("")] == []


@pytest.mark.parametrize("anonymous", [True, False], ids=["O_TMPFILE", "named temps"])
def test_batch_survives_its_directory_being_pruned_before_the_first_temporary_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, anonymous: bool
) -> None:
    """A concurrent delete may prune an empty directory after the batch opened it: the batch
    makes it again, keeping what it had staged there (here a removal)."""
    store = LocalStore(tmp_path / "r")
    store._anonymous_temps &= anonymous
    (tmp_path / "r" / "d").mkdir(parents=True)
    real_write_temp = LocalStore._write_temp
    pruned: list[bool] = []

    def write_temp_after_a_prune(
        self: LocalStore, dfd: int, name: str, value: bytes, *, anonymous: bool
    ) -> _local._Temp:
        if not pruned:
            pruned.append(True)
            os.rmdir(tmp_path / "r" / "d")  # what another process's delete would do
        return real_write_temp(self, dfd, name, value, anonymous=anonymous)

    monkeypatch.setattr(LocalStore, "_write_temp", write_temp_after_a_prune)
    with _local._DirectoryBatch[None](store) as batch:
        assert batch.stage("d/x", store._remove, None, create=False)
        assert batch.stage("d/y", store._replace, b"y", create=True)
        assert len(batch.commit()) == 2  # the removal of d/x was not dropped
    assert pruned
    assert _files(tmp_path / "r") == ["d/y"]
    assert store.read_local("d/y") == b"y"


def test_anonymous_values_survive_their_directory_being_pruned_before_the_commit(
    tmp_path: Path,
) -> None:
    """A value staged in an anonymous file leaves its directory empty, so a concurrent
    delete may prune it before the commit: the commit makes the directory again and
    links the value there."""
    store = LocalStore(tmp_path / "r")
    if not store._anonymous_temps:
        pytest.skip("no O_TMPFILE here")
    (tmp_path / "r" / "d").mkdir(parents=True)
    with _local._DirectoryBatch[None](store) as batch:
        assert batch.stage("d/x", store._remove, None, create=False)
        assert batch.stage("d/y", store._replace, b"y", create=True)
        assert batch.stage("d/z", store._replace, b"z", create=True)
        os.rmdir(tmp_path / "r" / "d")  # what another process's delete would do
        assert len(batch.commit()) == 3
    assert _files(tmp_path / "r") == ["d/y", "d/z"]
    assert [store.read_local("d/y"), store.read_local("d/z")] == [b"y", b"z"]


async def test_overwrites_switch_to_named_temporary_files(tmp_path: Path) -> None:
    """After an overwrite the next values are staged in named files (no wasted link
    attempt per chunk when a whole array is rewritten), after a new key anonymous ones
    again; both ways give the same values."""
    store = LocalStore(tmp_path / "r")
    if not store._anonymous_temps:
        pytest.skip("no O_TMPFILE here")
    store.write_local_many([("d/a", b"1"), ("d/b", b"1")])
    assert store._expect_new
    store.write_local_many([("d/a", b"2"), ("d/b", b"2")])  # the first one finds a taken name
    assert not store._expect_new
    store.write_local_many([("d/a", b"3"), ("d/c", b"3")])
    assert store._expect_new  # the latest key written was new
    assert [store.read_local(f"d/{k}") for k in "abc"] == [b"3", b"2", b"3"]
    assert await store.set_if_not_exists("d/d", b"4")
    assert not await store.set_if_not_exists("d/d", b"5")
    assert store.read_local("d/d") == b"4"
    assert _files(tmp_path / "r") == ["d/a", "d/b", "d/c", "d/d"]


@pytest.mark.parametrize("op", ["new key", "overwrite", "set_if_not_exists"])
async def test_filesystems_that_cannot_link_anonymous_files_get_named_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, op: str
) -> None:
    """Where linking an ``O_TMPFILE`` file in fails (EPERM: no such links on this
    filesystem), the staged value is copied to a named temporary file and the store
    stages named files from then on."""
    store = LocalStore(tmp_path / "r")
    if not store._anonymous_temps:
        pytest.skip("no O_TMPFILE here")
    if op == "overwrite":
        store._anonymous_temps = False
        await store.set("d/k", b"old")
        store._anonymous_temps = True

    def refuse(self: _local._Temp, dfd: int, name: str) -> None:
        raise OSError(errno.EPERM, "Operation not permitted", name)

    monkeypatch.setattr(_local._Temp, "link", refuse)
    value = os.urandom(3 * _local.WRITE_PIECE // 2)
    if op == "set_if_not_exists":
        assert await store.set_if_not_exists("d/k", value)
    else:
        store.write_local("d/k", value)
    assert not store._anonymous_temps
    assert store.read_local("d/k") == value
    store.write_local("d/k2", b"next")  # staged named from the start
    assert _files(tmp_path / "r") == ["d/k", "d/k2"]


async def test_values_larger_than_one_write_call_are_stored_whole(tmp_path: Path) -> None:
    """Values are written in pieces of at most WRITE_PIECE bytes; every piece lands."""
    store = LocalStore(tmp_path / "r")
    value = os.urandom(2 * _local.WRITE_PIECE + 12_345)
    await store.set("a/big", value)
    store.write_local("a/big2", value)
    store.write_local_many([("b/big", value[::-1])])
    assert await store.get("a/big") == value
    assert store.read_local("a/big2") == value
    assert store.read_local("b/big") == value[::-1]
    assert (tmp_path / "r" / "a" / "big").stat().st_size == len(value)


_FIFO_SCRIPT = """
import asyncio, os, sys
import numpy as np, asyncarr
from asyncarr.errors import CodecError, NodeNotFoundError

async def main(root, mode):
    asyncarr.set_executor(asyncarr.ExecutorConfig(mode=mode, max_workers=2))
    arr = await asyncarr.create_array(root, shape=(20,), chunks=(10,), dtype="i4")
    await arr.write(np.arange(20, dtype="i4"))
    os.remove(f"{root}/c/1")
    os.mkfifo(f"{root}/c/1")
    store = arr.store
    assert await store.get("c/1") is None  # not a regular file: no value
    assert not store.read_local("c/1")
    try:
        await arr.read()
    except CodecError:
        pass  # the lean read finds nothing to decode there
    os.remove(f"{root}/zarr.json")
    os.mkfifo(f"{root}/zarr.json")
    try:
        await asyncarr.open_array(root)
    except NodeNotFoundError:
        print("ok")

if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


@pytest.mark.parametrize("mode", ["inline", "threads", "processes"])
def test_a_fifo_in_place_of_a_value_never_blocks(tmp_path: Path, mode: str) -> None:
    """Opening a FIFO blocks until a writer comes: a FIFO where a chunk or the metadata
    should be hung reads forever, beyond any timeout (run in a child, so that a hang
    fails this test instead of the whole run)."""
    import subprocess
    import sys

    script = tmp_path / "fifo.py"
    script.write_text(_FIFO_SCRIPT)
    done = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "a.zarr"), mode],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr
