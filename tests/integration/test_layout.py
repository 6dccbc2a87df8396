"""The Capistrano layout operations against real lab hosts."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from kapistrano.hosts import layout
from kapistrano.hosts.errors import CommandFailed, LinkedFileMissing, LockConflict, NotWritable, UnsafeLinkedPath
from kapistrano.hosts.lock import read_lock
from kapistrano.hosts.ssh import SshConnection
from kapistrano.lab import HostLab, LabHost

from tests.integration.hostkit import target_for, wait_until

APP = "/var/www/app"
NOW = datetime(2026, 11, 28, 2, 1, 2, tzinfo=UTC)


@pytest.fixture
async def conn(lab: HostLab) -> AsyncIterator[SshConnection]:
    """A connection to the lab's first host."""
    connection = SshConnection(target_for(lab, lab.hosts[0]))
    yield connection
    await connection.close()


def host1(lab: HostLab) -> LabHost:
    """The lab's first host."""
    return lab.hosts[0]


async def make_release(conn: SshConnection, name: str, version: str, revision: str = "abc123") -> str:
    """A complete release directory with markers."""
    path = await layout.create_release(conn, APP, name)
    await layout.write_revision(conn, path, revision)
    await layout.mark_complete(conn, path, version)
    return path


async def test_prepare_creates_the_layout_and_is_idempotent(lab: HostLab, conn: SshConnection) -> None:
    host1(lab).exec("mkdir -p /var/www/app/shared/config && echo db > /var/www/app/shared/config/database.yml")
    for _ in range(2):
        await layout.prepare(conn, APP, ["log", "tmp/pids"], ["config/database.yml"])
    root = host1(lab).path(APP)
    for sub in ("releases", "shared/log", "shared/tmp/pids", "shared/config"):
        assert (root / sub).is_dir(), sub
    assert not list(root.glob("**/.kapistrano-write-check*"))


async def test_prepare_refuses_a_missing_linked_file(conn: SshConnection) -> None:
    with pytest.raises(LinkedFileMissing) as caught:
        await layout.prepare(conn, APP, [], ["config/master.key"])
    assert "/var/www/app/shared/config/master.key" in caught.value.message


def make_read_only(host: LabHost, directory: str) -> None:
    """Bind-mount `directory` onto itself read-only inside the host (root ignores file modes)."""
    host.exec(["mkdir", "-p", directory])
    host.exec(["mount", "--bind", directory, directory])
    host.exec(["mount", "-o", "remount,bind,ro", directory])


async def test_a_read_only_deploy_to_is_a_clear_error_naming_the_path(lab: HostLab, conn: SshConnection) -> None:
    make_read_only(host1(lab), "/var/www/ro")
    with pytest.raises(NotWritable) as caught:
        await layout.prepare(conn, "/var/www/ro/app", [], [])
    assert caught.value.path == "/var/www/ro/app"
    assert "Read-only file system" in str(caught.value)


async def test_an_existing_layout_that_became_read_only_is_caught_by_the_write_check(
    lab: HostLab, conn: SshConnection
) -> None:
    host = host1(lab)
    host.exec(["mkdir", "-p", "/var/www/frozen/app/releases", "/var/www/frozen/app/shared"])
    make_read_only(host, "/var/www/frozen")
    with pytest.raises(NotWritable) as caught:
        await layout.prepare(conn, "/var/www/frozen/app", [], [])
    assert caught.value.path == "/var/www/frozen/app"


async def test_link_shared_replaces_what_the_source_put_there(lab: HostLab, conn: SshConnection) -> None:
    host = host1(lab)
    host.exec("mkdir -p /var/www/app/shared/config && echo shared-db > /var/www/app/shared/config/database.yml")
    await layout.prepare(conn, APP, ["log", "tmp/pids"], ["config/database.yml"])
    release = await layout.create_release(conn, APP, "20261128020102")
    host.exec(f"mkdir -p {release}/log {release}/config && echo junk > {release}/log/x")
    host.exec(f"echo repo > {release}/config/database.yml")
    await layout.link_shared(conn, APP, release, ["log", "tmp/pids"], ["config/database.yml"])
    await layout.link_shared(conn, APP, release, ["log", "tmp/pids"], ["config/database.yml"])
    for item in ("log", "tmp/pids", "config/database.yml"):
        assert os.readlink(host.path(f"{release}/{item}")) == f"/var/www/app/shared/{item}"
    assert host.exec(["cat", f"{release}/config/database.yml"]).stdout == "shared-db\n"


def shared_bytes(host: LabHost) -> dict[str, bytes]:
    """Every regular file under the lab host's shared/, with its content."""
    root = host.path(f"{APP}/shared")
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file() and not p.is_symlink()}


@pytest.mark.parametrize(
    ("linked_dirs", "linked_files"),
    [
        pytest.param(["public", "public/uploads"], [], id="dir-inside-dir"),
        pytest.param(["config"], ["config/database.yml"], id="file-inside-dir"),
    ],
)
async def test_nested_linked_paths_are_refused_and_lose_no_byte_of_shared_data(
    lab: HostLab, conn: SshConnection, linked_dirs: list[str], linked_files: list[str]
) -> None:
    host = host1(lab)
    host.exec(
        "mkdir -p /var/www/app/shared/public/uploads /var/www/app/shared/config"
        " && echo photo > /var/www/app/shared/public/uploads/a.jpg"
        " && echo secret-db > /var/www/app/shared/config/database.yml"
    )
    await layout.prepare(conn, APP, linked_dirs, linked_files)
    before = shared_bytes(host)
    for name in ("20261128020102", "20261128020103"):  # the second deploy must find the data still there
        release = await layout.create_release(conn, APP, name)
        host.exec(f"mkdir -p {release}/public/uploads {release}/config && echo repo > {release}/config/database.yml")
        with pytest.raises(UnsafeLinkedPath, match="is a symlink"):
            await layout.link_shared(conn, APP, release, linked_dirs, linked_files)
    assert shared_bytes(host) == before


async def test_a_symlinked_folder_in_the_release_never_replaces_a_file_outside_it(
    lab: HostLab, conn: SshConnection
) -> None:
    host = host1(lab)
    host.exec("mkdir -p /var/www/app/shared/config /var/www/outside && echo keep > /var/www/outside/database.yml")
    host.exec("echo db > /var/www/app/shared/config/database.yml")
    await layout.prepare(conn, APP, [], ["config/database.yml"])
    release = await layout.create_release(conn, APP, "20261128020102")
    host.exec(f"ln -s /var/www/outside {release}/config")  # shipped by the source (git, archive or path)
    with pytest.raises(UnsafeLinkedPath, match="config is a symlink"):
        await layout.link_shared(conn, APP, release, [], ["config/database.yml"])
    assert host.exec(["cat", "/var/www/outside/database.yml"]).stdout == "keep\n"
    assert not host.path("/var/www/outside/database.yml").is_symlink()


async def test_a_release_dir_reached_through_a_symlinked_deploy_to_still_links(
    lab: HostLab, conn: SshConnection
) -> None:
    host = host1(lab)
    host.exec("mkdir -p /var/www/data/app/shared/config && echo db > /var/www/data/app/shared/config/database.yml")
    host.exec("ln -s /var/www/data/app /var/www/linked")
    await layout.prepare(conn, "/var/www/linked", ["log"], ["config/database.yml"])
    release = await layout.create_release(conn, "/var/www/linked", "20261128020102")
    await layout.link_shared(conn, "/var/www/linked", release, ["log"], ["config/database.yml"])
    assert host.exec(["cat", f"{release}/config/database.yml"]).stdout == "db\n"


async def test_markers_find_the_newest_release_of_a_version_in_one_command(lab: HostLab, conn: SshConnection) -> None:
    await layout.prepare(conn, APP, [], [])
    await make_release(conn, "20260101000000", "v1", "sha-old")
    await make_release(conn, "20260102000000", "v2", "sha-two")
    await make_release(conn, "20260103000000", "v1", "sha-new")
    await layout.create_release(conn, APP, "20260104000000")  # half-made: no markers
    found = await layout.find_release_for_version(conn, APP, "v1")
    assert found == layout.ReleaseInfo("20260103000000", "v1", "sha-new")
    assert await layout.find_release_for_version(conn, APP, "v3") is None
    assert await layout.list_releases(conn, APP) == [
        "20260101000000",
        "20260102000000",
        "20260103000000",
        "20260104000000",
    ]
    assert host1(lab).path(f"{APP}/releases/20260102000000/REVISION").read_text() == "sha-two\n"


async def test_nothing_is_found_before_the_first_deploy(conn: SshConnection) -> None:
    assert await layout.list_releases(conn, APP) == []
    assert await layout.find_release_for_version(conn, APP, "v1") is None
    assert await layout.read_current(conn, APP) is None


async def test_publish_switches_current_atomically_and_read_current_reports_it(
    lab: HostLab, conn: SshConnection
) -> None:
    host = host1(lab)
    await layout.prepare(conn, APP, [], [])
    await make_release(conn, "20260101000000", "v1", "sha-1")
    await make_release(conn, "20260102000000", "v2", "sha-2")
    await layout.publish(conn, APP, "20260101000000")
    assert await layout.read_current(conn, APP) == layout.CurrentRelease(
        "20260101000000", "v1", "sha-1", "/var/www/app/releases/20260101000000", True
    )
    await layout.publish(conn, APP, "20260102000000")
    current = await layout.read_current(conn, APP)
    assert current is not None
    assert (current.release, current.version, current.revision) == ("20260102000000", "v2", "sha-2")
    assert sorted(p.name for p in host.path(APP).iterdir()) == ["current", "releases", "shared"]


async def test_publishing_a_missing_release_fails_and_leaves_current_alone(conn: SshConnection) -> None:
    await layout.prepare(conn, APP, [], [])
    await make_release(conn, "20260101000000", "v1")
    await layout.publish(conn, APP, "20260101000000")
    with pytest.raises(CommandFailed) as caught:
        await layout.publish(conn, APP, "20991231000000")
    assert "no such release" in caught.value.stderr_tail
    current = await layout.read_current(conn, APP)
    assert current is not None
    assert current.release == "20260101000000"


async def test_revisions_log_lines_are_appended_in_capistranos_format(lab: HostLab, conn: SshConnection) -> None:
    await layout.prepare(conn, APP, [], [])
    deploy = layout.deploy_log_line("main", "0123abc", "20260101000000", "kapistrano")
    await layout.append_revision_log(conn, APP, deploy)
    await layout.append_revision_log(conn, APP, layout.rollback_log_line("kapistrano", "20251231000000"))
    assert host1(lab).path(f"{APP}/revisions.log").read_text() == (
        "Branch main (at 0123abc) deployed as release 20260101000000 by kapistrano\n"
        "kapistrano rolled back to release 20251231000000\n"
    )


async def test_cleanup_keeps_the_newest_and_never_current_or_previous(lab: HostLab, conn: SshConnection) -> None:
    await layout.prepare(conn, APP, [], [])
    names = [f"2026010{i}000000" for i in range(1, 8)]
    for name in names:
        await make_release(conn, name, f"v{name[7]}")
    await layout.publish(conn, APP, names[1])  # rolled back far: current is the 2nd oldest
    hooks = host1(lab).path(f"{APP}/shared/log/hooks")
    hooks.mkdir(parents=True)
    for name in names:
        (hooks / f"{name}-migrate.log").write_text("migrated\n")
    removed = await layout.cleanup(conn, APP, keep=3)
    assert removed == [names[2], names[3]]
    assert await layout.list_releases(conn, APP) == [names[0], names[1], *names[4:]]
    assert sorted(p.name for p in hooks.iterdir()) == [f"{n}-migrate.log" for n in [names[0], names[1], *names[4:]]]
    assert await layout.cleanup(conn, APP, keep=3) == []


async def host_time(conn: SshConnection) -> int:
    """The host's clock, in Unix seconds."""
    return int((await conn.run("date +%s")).stdout)


async def wait_past(conn: SshConnection, epoch: int) -> None:
    """Wait until the host's clock has passed `epoch` (polls the host)."""
    await wait_until(lambda: _after(conn, epoch), timeout=30)


async def _after(conn: SshConnection, epoch: int) -> bool:
    """Whether the host's clock is past `epoch` (reads the host)."""
    return await host_time(conn) > epoch


async def test_the_lock_is_exclusive_refreshable_and_taken_over_when_expired(conn: SshConnection) -> None:
    await layout.prepare(conn, APP, [], [])
    first = await layout.acquire_lock(conn, APP, "release-a", 60)
    assert (first.acquired, first.previous_owner) == (True, None)
    before = await host_time(conn)
    refreshed = await layout.acquire_lock(conn, APP, "release-a", 60)
    assert refreshed.acquired
    held = await read_lock(conn, APP)
    assert held is not None
    assert held.owner == "release-a"
    assert held.expires is not None
    assert before + 60 <= held.expires <= await host_time(conn) + 60, "the expiry is the host's time plus the TTL"
    with pytest.raises(LockConflict) as caught:
        await layout.acquire_lock(conn, APP, "release-b", 60)
    assert "release-a" in caught.value.message
    assert not await layout.release_lock(conn, APP, "release-b")
    short = await layout.acquire_lock(conn, APP, "release-a", 1)
    assert short.acquired
    expiring = await read_lock(conn, APP)
    assert expiring is not None
    assert expiring.expires is not None
    await wait_past(conn, expiring.expires)
    taken = await layout.acquire_lock(conn, APP, "release-b", 60)
    assert taken.taken_over
    assert taken.previous_owner == "release-a"
    assert not await layout.release_lock(conn, APP, "release-a")
    assert await layout.release_lock(conn, APP, "release-b")
    assert await read_lock(conn, APP) is None


async def test_the_same_release_run_by_two_processes_is_locked_out_of_the_second(conn: SshConnection) -> None:
    await layout.prepare(conn, APP, [], [])
    await layout.acquire_lock(conn, APP, "uid-1", 60, instance="laptop-a/4242/1")
    with pytest.raises(LockConflict) as caught:
        await layout.acquire_lock(conn, APP, "uid-1", 60, instance="laptop-b/4242/1")
    assert "this Release in another process (laptop-a/4242/1)" in caught.value.message
    assert not await layout.release_lock(conn, APP, "uid-1", instance="laptop-b/4242/1")
    # A process of this machine that is gone (an operator restarted in place) is taken over at once.
    gone = f"{socket.gethostname()}/{os.getpid()}/1"
    await layout.release_lock(conn, APP, "uid-1", instance="")
    await layout.acquire_lock(conn, APP, "uid-1", 60, instance=gone)
    taken = await layout.acquire_lock(conn, APP, "uid-1", 60)
    assert (taken.acquired, taken.instance) == (True, gone)
    # A process elsewhere that stopped refreshing its lock (an operator pod replaced) is taken over after a while.
    assert await layout.release_lock(conn, APP, "uid-1")
    await layout.acquire_lock(conn, APP, "uid-1", 60, instance="old-pod/1/1")
    with pytest.raises(LockConflict):
        await layout.acquire_lock(conn, APP, "uid-1", 60, instance="new-pod/1/1", stale_seconds=3600)
    stale = await read_lock(conn, APP)
    assert stale is not None
    assert stale.refreshed is not None
    await wait_past(conn, stale.refreshed + 1)
    replaced = await layout.acquire_lock(conn, APP, "uid-1", 60, instance="new-pod/1/1", stale_seconds=1)
    assert (replaced.acquired, replaced.instance) == (True, "old-pod/1/1")
    # Releasing for a deleted Release removes its lock whichever process took it.
    assert await layout.release_lock(conn, APP, "uid-1", instance="")
    assert await read_lock(conn, APP) is None


async def test_only_one_of_many_racing_owners_gets_the_lock(lab: HostLab) -> None:
    conns = [SshConnection(target_for(lab, lab.hosts[0])) for _ in range(6)]
    try:
        await layout.prepare(conns[0], APP, [], [])

        async def attempt(i: int) -> bool:
            try:
                await layout.acquire_lock(conns[i], APP, f"owner-{i}", 60)
            except LockConflict:
                return False
            return True

        wins = await asyncio.gather(*(attempt(i) for i in range(len(conns))))
        assert sum(wins) == 1
        holder = await read_lock(conns[0], APP)
        assert holder is not None
        assert holder.owner == f"owner-{wins.index(True)}"
    finally:
        await asyncio.gather(*(c.close() for c in conns))
