"""Readiness probes against real lab hosts over SSH: exec, httpGet and tcpSocket, with thresholds.

httpGet and tcpSocket reach a server bound to 127.0.0.1 INSIDE the host, which the test machine
itself cannot reach: only the SSH connection's direct-tcpip channel can.
"""

from __future__ import annotations

import asyncio
import itertools
import socket
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
import pytest_asyncio
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from cryptography.x509.oid import NameOID
from kapistrano.api.spec import Probe
from kapistrano.hosts.errors import NotReady
from kapistrano.hosts.probes import Attempt, LoopClock, ProbeOutcome, Verdict, wait_ready

from tests.integration.servicekit import PYTHON, RELEASE, App, app

__all__ = ["app"]

PORT = 8081


class RecordingClock(LoopClock):
    """The loop clock, remembering every deadline wait_ready sleeps until."""

    def __init__(self) -> None:
        self.deadlines: list[float] = []

    async def sleep_until(self, deadline: float) -> None:
        """Record the deadline, then wait for it (side effects: none)."""
        self.deadlines.append(deadline)
        await super().sleep_until(deadline)


def probe(**fields: object) -> Probe:
    """A Probe from camelCase fields (pure)."""
    return Probe.model_validate(fields)


async def run(app: App, spec: Probe, clock: LoopClock | None = None) -> tuple[ProbeOutcome, list[Attempt]]:
    """wait_ready on the app's host, keeping every attempt (side effects: the probe's)."""
    seen: list[Attempt] = []

    def keep(number: int, attempt: Attempt, verdict: Verdict) -> None:
        seen.append(attempt)

    outcome = await wait_ready(app.runner, app.ctx, spec, clock=clock, on_attempt=keep)
    return outcome, seen


async def failing(app: App, spec: Probe) -> tuple[NotReady, list[Attempt]]:
    """wait_ready that must end in NotReady; the error and the attempts (side effects: the probe's)."""
    seen: list[Attempt] = []

    def keep(number: int, attempt: Attempt, verdict: Verdict) -> None:
        seen.append(attempt)

    with pytest.raises(NotReady) as caught:
        await wait_ready(app.runner, app.ctx, spec, on_attempt=keep)
    return caught.value, seen


@pytest_asyncio.fixture
async def web(app: App) -> AsyncIterator[App]:
    """An HTTP server bound to 127.0.0.1:PORT inside the host, stopped by pid afterwards."""
    app.write(f"{RELEASE}/health", "ok\n")
    pid = await serve(app, f"-m http.server {PORT} --bind 127.0.0.1", PORT)
    yield app
    app.host.exec(["kill", str(pid)], check=False)


async def serve(app: App, arguments: str, port: int) -> int:
    """Start `python3 <arguments>` detached in the release directory and wait for its port; its pid (a process)."""
    started = app.host.exec(f"cd {RELEASE} && setsid {PYTHON} {arguments} </dev/null >/dev/null 2>&1 & echo $!")
    pid = int(started.stdout.strip())
    await wait_ready(app.runner, app.ctx, probe(tcpSocket={"port": port}, failureThreshold=30))
    return pid


async def test_exec_succeeds_in_the_current_release(app: App) -> None:
    app.write(f"{RELEASE}/ready.flag", "")
    outcome, seen = await run(app, probe(exec={"command": "test -f ready.flag"}))
    assert outcome.ready
    assert outcome.attempts == 1
    assert seen[0].ok


async def test_exec_fails_after_failure_threshold_attempts_one_period_apart(app: App) -> None:
    error, seen = await failing(app, probe(exec={"command": "test -f ready.flag"}, failureThreshold=3))
    assert len(seen) == 3
    assert not any(a.ok for a in seen)
    assert "3 failed attempts in a row" in str(error)
    assert isinstance(error.outcome, ProbeOutcome)
    assert 1.9 <= error.outcome.elapsed < 3.0


async def test_consecutive_counts_ready_when_enough_successes_follow_failures(app: App) -> None:
    counter = "n=$(cat attempts 2>/dev/null || echo 0); n=$((n + 1)); echo $n > attempts; [ $n -ge 3 ]"
    outcome, seen = await run(app, probe(exec={"command": counter}, successThreshold=2, failureThreshold=3))
    assert outcome.ready
    assert [a.ok for a in seen] == [False, False, True, True]


async def test_fewer_failures_allowed_than_needed_is_not_ready(app: App) -> None:
    counter = "n=$(cat attempts 2>/dev/null || echo 0); n=$((n + 1)); echo $n > attempts; [ $n -ge 3 ]"
    _, seen = await failing(app, probe(exec={"command": counter}, failureThreshold=2))
    assert [a.ok for a in seen] == [False, False]


async def test_attempts_are_scheduled_on_the_period_grid_however_long_they_take(app: App) -> None:
    clock = RecordingClock()
    slow_failure = "sleep 0.4; false"
    spec = probe(exec={"command": slow_failure}, initialDelaySeconds=1, failureThreshold=3, periodSeconds=1)
    with pytest.raises(NotReady):
        await run(app, spec, clock)
    first = clock.deadlines[0]
    assert [round(d - first, 9) for d in clock.deadlines] == [0.0, 1.0, 2.0]


async def test_the_first_attempt_waits_for_initial_delay_seconds(app: App) -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    outcome, seen = await run(app, probe(exec={"command": "true"}, initialDelaySeconds=1))
    assert outcome.ready
    assert len(seen) == 1
    assert 1.0 <= loop.time() - started < 2.0, "the probe did not wait for initialDelaySeconds, or far longer"


async def test_an_attempt_is_bounded_by_timeout_seconds(app: App) -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    _, seen = await failing(app, probe(exec={"command": "sleep 30"}, timeoutSeconds=1, failureThreshold=1))
    assert loop.time() - started < 5
    assert "timed out" in seen[0].message


async def test_http_get_reaches_a_port_bound_to_the_hosts_loopback_through_ssh(web: App) -> None:
    with pytest.raises(ConnectionRefusedError), socket.create_connection((web.host.address, PORT), timeout=2):
        pass  # not reachable from here: the probe below can only have gone through SSH
    outcome, seen = await run(web, probe(httpGet={"path": "/health", "port": PORT}))
    assert outcome.ready
    assert seen[0].message == "HTTP 200"


async def test_http_get_counts_a_404_as_a_failure(web: App) -> None:
    _, seen = await failing(web, probe(httpGet={"path": "/missing", "port": PORT}, failureThreshold=2))
    assert [a.message for a in seen] == ["HTTP 404", "HTTP 404"]


async def test_tcp_socket_succeeds_on_an_open_port_and_fails_on_a_closed_one(web: App) -> None:
    outcome, _ = await run(web, probe(tcpSocket={"port": PORT}))
    assert outcome.ready
    _, seen = await failing(web, probe(tcpSocket={"port": PORT + 1}, failureThreshold=2))
    assert len(seen) == 2
    assert "TcpConnectFailed" in seen[0].message


TLS_PORT = 8443
TOKEN = "s3cret-token"
TLS_SERVER = """
import http.server, ssl, sys
port, token = int(sys.argv[1]), sys.argv[2]
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.headers.get("X-Probe-Token") == token else 403)
        self.send_header("Content-Length", "0")
        self.end_headers()
    def log_message(self, *args):
        pass
server = http.server.HTTPServer(("127.0.0.1", port), Handler)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain("cert.pem", "key.pem")
server.socket = context.wrap_socket(server.socket, server_side=True)
server.serve_forever()
"""


def self_signed() -> tuple[str, str]:
    """A self-signed certificate for localhost and its key, as PEM text (pure apart from randomness)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    pem_key = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    return cert.public_bytes(Encoding.PEM).decode(), pem_key.decode()


@pytest_asyncio.fixture
async def tls_web(app: App) -> AsyncIterator[App]:
    """An HTTPS server with a self-signed certificate on 127.0.0.1:TLS_PORT inside the host that answers 200
    only with the header X-Probe-Token; stopped by pid afterwards."""
    cert, key = self_signed()
    app.write(f"{RELEASE}/cert.pem", cert)
    app.write(f"{RELEASE}/key.pem", key)
    app.write(f"{RELEASE}/tls_server.py", TLS_SERVER)
    pid = await serve(app, f"tls_server.py {TLS_PORT} {TOKEN}", TLS_PORT)
    yield app
    app.host.exec(["kill", str(pid)], check=False)


def https(*headers: tuple[str, str], **fields: object) -> Probe:
    """An HTTPS httpGet probe of TLS_PORT with request headers (pure)."""
    action = {"port": TLS_PORT, "scheme": "HTTPS", "httpHeaders": [{"name": n, "value": v} for n, v in headers]}
    return probe(httpGet=action, **fields)


async def test_https_get_with_a_required_header_passes_despite_a_self_signed_certificate(tls_web: App) -> None:
    outcome, seen = await run(tls_web, https(("X-Probe-Token", TOKEN)))
    assert outcome.ready
    assert seen[0].message == "HTTP 200"


async def test_https_get_without_the_required_header_is_refused(tls_web: App) -> None:
    _, seen = await failing(tls_web, https(("X-Probe-Token", "wrong"), failureThreshold=2))
    assert [a.message for a in seen] == ["HTTP 403", "HTTP 403"]


async def test_plain_http_to_a_tls_port_fails(tls_web: App) -> None:
    action = {"port": TLS_PORT, "httpHeaders": [{"name": "X-Probe-Token", "value": TOKEN}]}
    _, seen = await failing(tls_web, probe(httpGet=action, failureThreshold=1))
    assert not seen[0].ok
    assert "HTTP 200" not in seen[0].message


async def test_an_exec_probe_waits_in_one_session_and_says_what_each_attempt_said(app: App) -> None:
    counter = "n=$(cat attempts 2>/dev/null || echo 0); n=$((n + 1)); echo $n > attempts; echo try $n >&2; [ $n -ge 3 ]"
    before = app.runner.exec_channels
    outcome, seen = await run(app, probe(exec={"command": counter}, periodSeconds=0.2, failureThreshold=5))
    assert outcome.ready
    assert app.runner.exec_channels - before == 1, "every attempt ran in the one looping session"
    assert [a.message for a in seen] == ["exit 1: try 1", "exit 1: try 2", "exit 0: try 3"]
    error, failed = await failing(app, probe(exec={"command": "exit 3"}, periodSeconds=0.2, failureThreshold=2))
    assert [a.message for a in failed] == ["exit 3", "exit 3"]
    assert "2 failed attempts in a row: exit 3" in str(error)


async def test_the_looping_probe_keeps_to_the_period_grid_and_skips_the_slots_an_attempt_overran(app: App) -> None:
    slow = "read -r up _ < /proc/uptime; echo $up >> starts; sleep 1.3; false"
    await failing(app, probe(exec={"command": slow}, periodSeconds=1, timeoutSeconds=5, failureThreshold=3))
    starts = [float(x) for x in app.host.path(f"{RELEASE}/starts").read_text().split()]
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert len(starts) == 3
    assert all(gap >= 1.3 for gap in gaps), gaps
    assert all(abs(gap - round(gap)) <= 0.3 for gap in gaps), f"attempts off the 1 s grid: {gaps}"


async def test_a_host_without_timeout_is_probed_one_command_per_attempt(app: App) -> None:
    tools = f"{RELEASE}/bin"
    app.host.exec(f"mkdir -p {tools} && for t in sh sleep cat tail tr; do ln -s $(command -v $t) {tools}/$t; done")
    app.write(f"{RELEASE}/ready.flag", "")
    plain = replace(app.ctx, env={**app.ctx.env, "PATH": tools})
    before = app.runner.exec_channels
    outcome = await wait_ready(app.runner, plain, probe(exec={"command": "test -f ready.flag"}))
    assert outcome.ready
    assert app.runner.exec_channels - before == 2, "the loop gave up at once, then one attempt ran on its own"
