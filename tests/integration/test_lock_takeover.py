"""Takeover of a host lock between two processes of the same Release, on a real sshd host.

The lock is taken at once from an instance the peering names gone once no action can be running
under it; a lock refreshed by a live instance's action is never taken, whatever the peering says;
and a holder whose lock was taken after all (it was cut off and its refreshes failed) stops acting.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import pytest
from kapistrano.hosts import lock, takeover
from kapistrano.hosts.errors import LockConflict, Unreachable
from kapistrano.hosts.shell import cmd
from kapistrano.hosts.ssh import SshConnection
from kapistrano.lab import HostLab

from .hostkit import target_for, wait_until

DEPLOY_TO = "/var/www/app"
OWNER = "release-uid-1"
OLD = "old-pod/1/100"
NEW = "new-pod/1/200"


@pytest.fixture
async def conn(lab_factory: object) -> AsyncIterator[SshConnection]:
    """A connection to a one-host lab."""
    lab: HostLab = lab_factory(1)  # type: ignore[operator]
    connection = SshConnection(target_for(lab, lab.hosts[0]))
    yield connection
    await connection.close()


@pytest.fixture(autouse=True)
def departures() -> Iterator[takeover.Departures]:
    """The process-wide departures, emptied after the test."""
    yield takeover.DEPARTED
    takeover.DEPARTED.clear()


async def write_lock(conn: SshConnection, instance: str, refreshed_ago: int) -> None:
    """Write a lock of OWNER held by `instance`, last refreshed `refreshed_ago` s ago by the host's clock."""
    body = 'now=$(date +%s); printf "%s\\n%s\\n%s\\n%s\\n\\n%s\\n" "$1" $((now + 600)) "$2" $((now - $3)) $now > "$4"'
    script = cmd("sh", "-c", body, "sh", OWNER, instance, refreshed_ago, lock.lock_path(DEPLOY_TO))
    await conn.run(f"{cmd('mkdir', '-p', DEPLOY_TO)} && {script}")


async def holder(conn: SshConnection) -> str:
    """The instance holding the lock now."""
    found = await lock.read_lock(conn, DEPLOY_TO)
    assert found is not None
    return found.instance


async def test_a_lock_of_an_instance_the_peering_names_gone_is_taken_at_once(
    conn: SshConnection, departures: takeover.Departures
) -> None:
    await write_lock(conn, OLD, refreshed_ago=takeover.TAKEOVER_GRACE_SECONDS + 5)
    with pytest.raises(LockConflict, match="this Release in another process"):
        await lock.acquire_lock(conn, DEPLOY_TO, OWNER, 600, instance=NEW)
    departures.update({OLD}, set())
    loop = asyncio.get_running_loop()
    began = loop.time()
    outcome = await lock.acquire_lock(conn, DEPLOY_TO, OWNER, 600, instance=NEW)
    assert outcome.acquired
    assert outcome.instance == OLD
    assert loop.time() - began < takeover.TAKEOVER_GRACE_SECONDS, "the takeover waited for a grace already run"
    assert await holder(conn) == NEW


async def test_a_gone_instances_lock_refreshed_lately_is_taken_once_its_grace_has_run(
    conn: SshConnection, departures: takeover.Departures
) -> None:
    written = int((await conn.run("date +%s")).stdout)
    await write_lock(conn, OLD, refreshed_ago=0)
    departures.update({OLD}, set())
    outcome = await lock.acquire_lock(conn, DEPLOY_TO, OWNER, 600, instance=NEW)
    assert outcome.acquired
    info = await lock.read_lock(conn, DEPLOY_TO)
    assert info is not None
    assert info.instance == NEW
    assert info.refreshed is not None
    assert info.refreshed >= written + takeover.TAKEOVER_GRACE_SECONDS, "taken while an action may have run"


async def test_a_lock_refreshed_by_a_live_acting_instance_is_never_taken(
    conn: SshConnection, departures: takeover.Departures
) -> None:
    departures.update({OLD}, set())  # the peering lost the old instance, but it still acts on the host
    refreshes = 0

    async def refresh() -> None:
        nonlocal refreshes
        await lock.acquire_lock(conn, DEPLOY_TO, OWNER, 600, instance=OLD)
        refreshes += 1

    started, finished = asyncio.Event(), asyncio.Event()

    async def act() -> None:
        started.set()  # the holder confirmed its lock: only now may the other instance try
        await finished.wait()

    acting = asyncio.create_task(lock.hold(refresh, takeover.ACTION_HEARTBEAT_SECONDS, act))
    try:
        await started.wait()
        with pytest.raises(LockConflict, match=OLD):
            await lock.acquire_lock(conn, DEPLOY_TO, OWNER, 600, instance=NEW)
        assert not acting.done(), "the acting holder was stopped"
        assert await holder(conn) == OLD
        assert refreshes > 1, "the action ran without refreshing its lock"
    finally:
        finished.set()
        await acting


async def test_a_holder_whose_lock_was_taken_over_stops_acting_at_its_next_refresh(
    conn: SshConnection, departures: takeover.Departures
) -> None:
    cut = asyncio.Event()  # the old instance cut off: its refreshes fail, as a partition makes them

    async def refresh() -> None:
        if cut.is_set():
            raise Unreachable("host1", "connection lost")
        await lock.acquire_lock(conn, DEPLOY_TO, OWNER, 600, instance=OLD)

    stopped = asyncio.Event()

    async def act() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            stopped.set()

    acting = asyncio.create_task(lock.hold(refresh, 0.5, act))
    await wait_until(lambda: _held_by(conn, OLD), timeout=30)
    cut.set()
    departures.update({OLD}, set())
    await lock.acquire_lock(conn, DEPLOY_TO, OWNER, 600, instance=NEW)  # after the grace: the old one is silent
    cut.clear()  # the partition heals: its next refresh finds the lock taken
    with pytest.raises(lock.LockLost, match=NEW):
        await asyncio.wait_for(acting, timeout=30)
    assert stopped.is_set()
    assert await holder(conn) == NEW


async def test_an_action_does_not_start_on_a_lock_that_is_not_ours(conn: SshConnection) -> None:
    await lock.acquire_lock(conn, DEPLOY_TO, OWNER, 600, instance=NEW)
    started = False

    async def act() -> None:
        nonlocal started
        started = True

    with pytest.raises(LockConflict):
        await lock.hold(lambda: lock.acquire_lock(conn, DEPLOY_TO, OWNER, 600, instance=OLD), 1.0, act)
    assert not started


async def _held_by(conn: SshConnection, instance: str) -> bool:
    """Whether `instance` holds the lock now (reads the host)."""
    found = await lock.read_lock(conn, DEPLOY_TO)
    return found is not None and found.instance == instance
