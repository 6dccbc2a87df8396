"""Manager graceful with Debian's real unicorn on a lab host: USR2 reload, QUIT of the old master.

HTTP traffic runs through the SSH connection (direct-tcpip) to a port unicorn binds on the host's
127.0.0.1 only, during the whole reload; not one request may fail.
"""

from __future__ import annotations

import asyncio
import shutil
from dataclasses import dataclass, field

import pytest
from kapistrano.api.spec import Service
from kapistrano.hosts import services
from kapistrano.hosts.errors import ServiceError
from kapistrano.hosts.runner import Runner

from tests.integration.hostkit import wait_until
from tests.integration.servicekit import DEPLOY_TO, RELEASE, App, app

__all__ = ["app"]

PORT = 8080
PIDFILE = f"{DEPLOY_TO}/shared/tmp/pids/unicorn.pid"
CONFIG_RU = """\
run lambda { |env|
  sleep 5 if env["PATH_INFO"] == "/slow"
  body = "ok #{Process.pid} #{Process.ppid}\\n"
  [200, {"content-type" => "text/plain", "content-length" => body.bytesize.to_s}, [body]]
}
"""
UNICORN_CONF = f"""\
worker_processes 2
listen "127.0.0.1:{PORT}", backlog: 1024
pid "{PIDFILE}"
working_directory "{DEPLOY_TO}/current"
stderr_path "{DEPLOY_TO}/shared/log/unicorn.stderr.log"
timeout 30
"""

pytestmark = pytest.mark.skipif(shutil.which("unicorn") is None, reason="Debian's unicorn is not installed")


def web_service(**graceful: object) -> Service:
    """A unicorn service with an httpGet readiness probe on its 127.0.0.1 port (pure)."""
    block = {"pidFile": "tmp/pids/unicorn.pid", "start": f"unicorn -D -c {RELEASE}/unicorn.conf.rb", **graceful}
    probe = {"httpGet": {"path": "/", "port": PORT}, "periodSeconds": 1, "failureThreshold": 20}
    return Service.model_validate({"name": "web", "manager": "graceful", "graceful": block, "readiness": probe})


def install_unicorn_app(app: App) -> None:
    """Put config.ru and the unicorn config into the release (side effect: host files)."""
    app.write(f"{RELEASE}/config.ru", CONFIG_RU)
    app.write(f"{RELEASE}/unicorn.conf.rb", UNICORN_CONF)


async def get(runner: Runner, path: str = "/") -> tuple[int, int]:
    """GET a path through the SSH connection; (worker pid, master pid) from the body (side effect: a request)."""
    reader, writer = await runner.open_tcp("127.0.0.1", PORT)
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
        await writer.drain()
        response = await reader.read()
    finally:
        writer.close()
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    _, worker, master = body.decode().split()
    return int(worker), int(master)


@dataclass
class Load:
    """Requests sent back to back until stopped, recording which master answered and every failure."""

    runner: Runner
    masters: list[int] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    progress: asyncio.Condition = field(default_factory=asyncio.Condition)

    async def answered(self, count: int) -> None:
        """Return once `count` requests were answered (side effects: none)."""
        async with self.progress:
            await self.progress.wait_for(lambda: len(self.masters) >= count)

    async def run(self, limit: int = 5000) -> None:
        """Send up to `limit` requests until stop is set (side effect: requests)."""
        for _ in range(limit):
            if self.stop.is_set():
                return
            try:
                self.masters.append((await get(self.runner))[1])
            except (AssertionError, OSError, ValueError, EOFError) as exc:
                self.failures.append(repr(exc))
            async with self.progress:
                self.progress.notify_all()


async def start_master(app: App, service: Service) -> int:
    """Start unicorn through the manager and wait for readiness; its master pid (side effects)."""
    check = services.readiness(app.runner, app.ctx, service)
    result = await services.restart(app.runner, app.ctx, service, check_ready=check)
    pid = result.instances[0].new_pid
    assert pid is not None
    return pid


async def test_unicorn_starts_when_no_master_runs_and_writes_its_own_pid_file(app: App) -> None:
    install_unicorn_app(app)
    service = web_service()
    master = await start_master(app, service)
    assert app.host.path(PIDFILE).read_text().strip() == str(master)
    assert (await get(app.runner))[1] == master
    state = await services.status(app.runner, app.ctx, service)
    assert state.pids == (master,)


async def test_a_reload_under_load_swaps_masters_without_one_failed_request(app: App) -> None:
    install_unicorn_app(app)
    service = web_service()
    old = await start_master(app, service)
    load = Load(app.runner)
    traffic = [asyncio.create_task(load.run()) for _ in range(3)]

    check = services.readiness(app.runner, app.ctx, service)
    result = await services.restart(app.runner, app.ctx, service, on_event=app.record, check_ready=check)
    new = result.instances[0].new_pid
    assert new is not None
    during = len(load.masters)
    await asyncio.wait_for(load.answered(during + 20), 30)
    load.stop.set()
    await asyncio.gather(*traffic)

    assert load.failures == []
    assert during >= 20, "too little traffic during the reload to prove anything"
    print(f"{during} requests answered during the reload, {len(load.masters)} in all")
    assert new != old
    assert old in load.masters
    assert new in load.masters
    assert load.masters[-1] == new
    assert [k for k, _ in app.kinds()] == ["reloading", "new-master", "quitting", "exited"]
    assert not app.alive(old)
    assert app.host.path(PIDFILE).read_text().strip() == str(new)
    assert not app.host.path(PIDFILE + ".oldbin").exists()


async def test_no_new_master_within_the_timeout_leaves_the_old_one_serving(app: App) -> None:
    install_unicorn_app(app)
    old = await start_master(app, web_service())
    service = web_service(reloadSignal="HUP", timeoutSeconds=1)  # HUP reloads in place: no new master

    with pytest.raises(ServiceError, match="no new master within 1s"):
        await services.restart(app.runner, app.ctx, service, on_event=app.record)

    assert app.alive(old)
    assert (await get(app.runner))[1] == old
    assert app.host.path(PIDFILE).read_text().strip() == str(old)


async def test_a_new_master_that_is_not_ready_is_quit_and_the_old_one_keeps_serving(app: App) -> None:
    install_unicorn_app(app)
    service = web_service()
    old = await start_master(app, service)

    async def never_ready() -> None:
        raise ServiceError(app.runner.name, "web", "not ready")

    with pytest.raises(ServiceError, match="not ready"):
        await services.restart(app.runner, app.ctx, service, on_event=app.record, check_ready=never_ready)

    kinds = [k for k, _ in app.kinds()]
    assert kinds[:3] == ["reloading", "new-master", "rolling-back"]
    new = next(e.pid for e in app.seen if e.kind == "new-master")
    assert new is not None
    assert not app.alive(new)
    assert app.alive(old)
    assert (await get(app.runner))[1] == old
    assert app.host.path(PIDFILE).read_text().strip() == str(old)


async def test_a_reload_cut_short_before_its_quit_is_undone_and_done_again(app: App) -> None:
    """A kapistrano killed between USR2 and QUIT leaves two masters; the next restart must still work."""
    install_unicorn_app(app)
    service = web_service(timeoutSeconds=10)
    first = await start_master(app, service)
    app.host.exec(["kill", "-USR2", str(first)])

    async def two_masters() -> bool:
        named = app.host.path(PIDFILE).read_text().strip() if app.host.path(PIDFILE).exists() else ""
        oldbin = app.host.path(PIDFILE + ".oldbin")
        return named.isdigit() and int(named) != first and oldbin.exists() and oldbin.read_text().strip() == str(first)

    await wait_until(two_masters, timeout=15)
    interrupted = int(app.host.path(PIDFILE).read_text())
    await wait_until(lambda: _answers(app, interrupted), timeout=15)

    check = services.readiness(app.runner, app.ctx, service)
    result = await services.restart(app.runner, app.ctx, service, on_event=app.record, check_ready=check)

    newest = result.instances[0].new_pid
    assert newest is not None
    assert newest not in (first, interrupted)
    assert [k for k, _ in app.kinds()][:2] == ["rolling-back", "quitting"]
    assert not app.alive(first)
    assert not app.alive(interrupted)
    assert (await get(app.runner))[1] == newest
    assert app.host.path(PIDFILE).read_text().strip() == str(newest)
    assert not app.host.path(PIDFILE + ".oldbin").exists()


async def _answers(app: App, master: int) -> bool:
    """Whether a request is answered by `master`'s workers (side effect: a request)."""
    try:
        return (await get(app.runner))[1] == master
    except (AssertionError, OSError, ValueError, EOFError):
        return False


async def test_an_old_master_still_finishing_requests_is_not_taken_for_an_unfinished_reload(app: App) -> None:
    """QUIT sent, the old master lingers past timeoutSeconds with a slow request: the next restart reloads
    the proven new master and lets the old one finish, instead of bringing the old one back."""
    install_unicorn_app(app)
    service = web_service(timeoutSeconds=2)
    first = await start_master(app, service)
    slow = asyncio.create_task(get(app.runner, "/slow"))  # 5 s in a worker of the first master

    check = services.readiness(app.runner, app.ctx, service)
    second = (await services.restart(app.runner, app.ctx, service, on_event=app.record, check_ready=check)).instances
    assert any(kind == "lingering" for kind, _ in app.kinds()), app.kinds()
    assert app.alive(first), "the slow request did not keep the first master busy: nothing is tested"
    app.seen.clear()
    third = (await services.restart(app.runner, app.ctx, service, on_event=app.record, check_ready=check)).instances

    assert [k for k, _ in app.kinds()][:2] == ["reloading", "new-master"], "the proven master was rolled back"
    assert not app.alive(second[0].new_pid or 0)
    assert (await get(app.runner))[1] == third[0].new_pid
    await asyncio.wait_for(slow, 10)  # answered 200: the first master's worker finished its request

    async def first_gone() -> bool:
        return not app.alive(first)

    await wait_until(first_gone, timeout=10)


async def test_a_stale_oldbin_naming_a_stranger_is_forgotten_and_the_stranger_left_alone(app: App) -> None:
    """A crash left `.oldbin` behind and its pid now belongs to another process: the reload goes on as usual."""
    install_unicorn_app(app)
    service = web_service(timeoutSeconds=10)
    master = await start_master(app, service)
    stranger = int(app.host.exec("setsid sleep 60 </dev/null >/dev/null 2>&1 & echo $!").stdout)
    try:
        app.write(PIDFILE + ".oldbin", f"{stranger}\n")
        check = services.readiness(app.runner, app.ctx, service)
        result = await services.restart(app.runner, app.ctx, service, on_event=app.record, check_ready=check)
        new = result.instances[0].new_pid
        assert [k for k, _ in app.kinds()] == ["reloading", "new-master", "quitting", "exited"]
        assert new not in (None, master, stranger)
        assert app.alive(stranger), "the stranger was signalled"
        assert (await get(app.runner))[1] == new
        assert not app.alive(master)
    finally:
        app.host.exec(["kill", str(stranger)], check=False)
