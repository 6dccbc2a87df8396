"""Host locks during real rollouts: kept fresh by a heartbeat through long actions; removed by hand with unlock."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from kapistrano.engine.rollout import Result
from kapistrano.hosts import lock
from kapistrano.hosts.errors import LockConflict
from kapistrano.hosts.ssh import SshConnection
from kapistrano.lab import HostLab

from .appkit import App, AppFactory
from .hostkit import target_for, wait_until

DEPLOY_TO = "/var/www/app"


@pytest.fixture
def app(lab: HostLab, app_factory: AppFactory) -> App:
    return app_factory(lab, drain=0.2, boot=0.1)


@pytest.fixture
async def conn(lab: HostLab) -> AsyncIterator[SshConnection]:
    """A connection to the lab's first host."""
    connection = SshConnection(target_for(lab, lab.hosts[0]))
    yield connection
    await connection.close()


async def host_time(conn: SshConnection) -> int:
    """The host's clock, in Unix seconds."""
    return int((await conn.run("date +%s")).stdout)


async def lock_held(conn: SshConnection) -> bool:
    """Whether the host's deployTo is locked now."""
    return await lock.read_lock(conn, DEPLOY_TO) is not None


def gated(gate: Path) -> str:
    """A hook that runs until `gate` exists (two minutes at most)."""
    return f"i=0; while [ ! -e {gate} ] && [ $i -lt 2400 ]; do sleep 0.05; i=$((i + 1)); done; [ -e {gate} ]"


async def test_a_lock_outlives_a_long_action_and_a_second_owner_gets_conflict(app: App, conn: SshConnection) -> None:
    gate = app.root / "gate"
    spec = app.release("v1", hooks={"afterUpdate": [{"name": "slow", "run": gated(gate)}]}).spec
    rollout = app.rollout(spec)
    rollout.lock_ttl_seconds = 6  # refreshed every 2 s while an action runs
    running = asyncio.create_task(rollout.run())
    try:
        await wait_until(lambda: lock_held(conn), timeout=30)
        first = await lock.read_lock(conn, DEPLOY_TO)
        assert first is not None
        assert first.expires is not None
        # Past the expiry of the lock as first taken, the hook still runs: only the heartbeat holds the lock.
        await wait_until(lambda: _after(conn, first.expires + 1), timeout=60, period=0.2)  # type: ignore[operator]
        with pytest.raises(LockConflict):
            await lock.acquire_lock(conn, DEPLOY_TO, "another-release", 60)
        now = await lock.read_lock(conn, DEPLOY_TO)
        assert now is not None
        assert now.owner == first.owner
        assert now.expires is not None
        assert now.expires > first.expires
    finally:
        gate.touch()
        outcome = await running
        await rollout.close()
    assert outcome.result == Result.READY, outcome.message


async def _after(conn: SshConnection, epoch: int) -> bool:
    """Whether the host's clock is past `epoch` (reads the host)."""
    return await host_time(conn) > epoch


def unlock(app: App, release: Path, *extra: str, answer: str = "") -> subprocess.CompletedProcess[str]:
    """Run `kapistrano unlock` on the app's Release as a user would, answering the question."""
    ssh = ["--ssh-key", str(app.lab.client_key), "--known-hosts", str(app.lab.known_hosts)]
    command = [sys.executable, "-m", "kapistrano.cli.main", "unlock", "-f", str(release), *ssh, *extra]
    return subprocess.run(command, input=answer, capture_output=True, text=True, timeout=120, check=False)


async def test_unlock_shows_the_holders_and_removes_their_locks_only_once_confirmed(
    app: App, conn: SshConnection
) -> None:
    release = app.write("v1")
    await lock.acquire_lock(conn, DEPLOY_TO, "gone-release", 600, instance="old-box/77/1")
    declined = unlock(app, release, answer="n\n")
    assert declined.returncode == 1
    assert "host1: locked by gone-release from old-box/77/1 until" in declined.stdout
    assert "host2: not locked" in declined.stdout
    assert await lock_held(conn), "a declined unlock removed the lock"
    confirmed = unlock(app, release, answer="y\n")
    assert confirmed.returncode == 0, confirmed.stderr
    assert "removed 1 lock(s)" in confirmed.stdout
    assert not await lock_held(conn)
    await lock.acquire_lock(conn, DEPLOY_TO, "gone-release", 600)
    assert unlock(app, release, "--yes", "--host", "host1").returncode == 0
    assert not await lock_held(conn)
