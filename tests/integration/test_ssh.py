"""SshConnection and SshPool against real lab hosts: multiplexing, reconnects, timeouts and refusals."""

from __future__ import annotations

import asyncio
import logging
import time
import traceback
from collections.abc import Callable
from dataclasses import replace

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from kapistrano.hosts.errors import (
    AuthFailed,
    CommandFailed,
    CommandTimeout,
    HostKeyMismatch,
    TcpConnectFailed,
    Unreachable,
)
from kapistrano.hosts.ssh import SshConnection, SshPool
from kapistrano.lab import HostLab, LabHost
from prometheus_client import REGISTRY

from tests.integration.hostkit import target_for, wait_until

LabFactory = Callable[..., HostLab]


def established_ssh_sessions(host: LabHost) -> list[str]:
    """Established TCP connections to the host's sshd, seen from inside the host."""
    out = host.exec(["ss", "-Htn", "state", "established", "( sport = :22 )"]).stdout
    return [line for line in out.splitlines() if line.strip()]


def fresh_private_key() -> bytes:
    """A new ed25519 private key no host trusts."""
    key = Ed25519PrivateKey.generate()
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    )


async def test_run_returns_exit_status_stdout_and_stderr(lab: HostLab) -> None:
    conn = SshConnection(target_for(lab, lab.hosts[0]))
    try:
        result = await conn.run("hostname; echo oops >&2")
        assert (result.exit_status, result.stdout, result.stderr) == (0, "host1\n", "oops\n")
        failed = await conn.run("echo bad >&2; exit 7", check=False)
        assert (failed.exit_status, failed.ok) == (7, False)
        echoed = await conn.run("cat", stdin="from stdin\n")
        assert echoed.stdout == "from stdin\n"
    finally:
        await conn.close()


async def test_a_failing_command_raises_command_failed_with_status_and_stderr_tail(lab: HostLab) -> None:
    conn = SshConnection(target_for(lab, lab.hosts[0]))
    try:
        with pytest.raises(CommandFailed) as caught:
            await conn.run("echo first >&2; echo the-real-reason >&2; exit 3")
        assert caught.value.exit_status == 3
        assert caught.value.stderr_tail.endswith("the-real-reason")
    finally:
        await conn.close()


async def test_a_slow_command_raises_command_timeout_promptly(lab: HostLab) -> None:
    conn = SshConnection(target_for(lab, lab.hosts[0]))
    try:
        started = time.monotonic()
        with pytest.raises(CommandTimeout):
            await conn.run("sleep 30", timeout=0.5)
        assert time.monotonic() - started < 3
        assert (await conn.run("echo still-usable")).stdout == "still-usable\n"
    finally:
        await conn.close()


def opened(kind: str) -> float:
    """kapistrano_ssh_opened_total{kind} of this process so far (reads the metrics registry)."""
    return REGISTRY.get_sample_value("kapistrano_ssh_opened_total", {"kind": kind}) or 0.0


async def test_many_commands_share_one_tcp_connection(lab: HostLab) -> None:
    host = lab.hosts[0]
    conn = SshConnection(target_for(lab, host, max_sessions=8))
    before = {kind: opened(kind) for kind in ("exec", "connect")}
    try:
        for i in range(10):
            assert (await conn.run(f"echo {i}")).stdout == f"{i}\n"
        assert {kind: opened(kind) - before[kind] for kind in before} == {"exec": 10, "connect": 1}
        first = conn.connection
        results = await asyncio.gather(*(conn.run(f"sleep 0.2; echo {i}") for i in range(40)))
        assert [r.stdout for r in results] == [f"{i}\n" for i in range(40)]
        assert conn.connection is first
        assert conn.connects == 1
        assert len(established_ssh_sessions(host)) == 1
    finally:
        await conn.close()


async def test_aes_gcm_is_negotiated_with_openssh_first(lab: HostLab) -> None:
    conn = SshConnection(target_for(lab, lab.hosts[0]))
    try:
        opened = await conn.connect()
        assert opened.get_extra_info("send_cipher") == "aes128-gcm@openssh.com"
        assert opened.get_extra_info("recv_cipher") == "aes128-gcm@openssh.com"
    finally:
        await conn.close()


async def test_parallel_commands_really_run_concurrently(lab: HostLab) -> None:
    conn = SshConnection(target_for(lab, lab.hosts[0]))
    try:
        await conn.run("true")
        started = time.monotonic()
        await asyncio.gather(*(conn.run("sleep 1") for _ in range(8)))
        assert time.monotonic() - started < 4, "8 one-second commands should overlap on one connection"
    finally:
        await conn.close()


async def test_an_unknown_host_key_is_refused_before_any_command_runs(lab: HostLab) -> None:
    host, other = lab.hosts[0], lab.hosts[1]
    only_others = "".join(line + "\n" for line in lab.known_hosts.read_text().splitlines() if other.address in line)
    conn = SshConnection(target_for(lab, host, known_hosts=only_others))
    with pytest.raises(HostKeyMismatch):
        await conn.run("touch /var/www/ran-anyway")
    assert not host.path("/var/www/ran-anyway").exists()
    assert not conn.is_open


async def test_a_changed_host_key_is_refused_before_any_command_runs(lab: HostLab) -> None:
    host, other = lab.hosts[0], lab.hosts[1]
    other_line = next(line for line in lab.known_hosts.read_text().splitlines() if other.address in line)
    swapped = other_line.replace(other.address, host.address) + "\n"
    conn = SshConnection(target_for(lab, host, known_hosts=swapped))
    with pytest.raises(HostKeyMismatch) as caught:
        await conn.run("touch /var/www/ran-anyway")
    assert caught.value.reason == "HostKeyMismatch"
    assert not host.path("/var/www/ran-anyway").exists()


async def test_a_missing_known_hosts_is_refused_unless_the_check_is_explicitly_skipped(
    lab: HostLab, caplog: pytest.LogCaptureFixture
) -> None:
    host = lab.hosts[0]
    with pytest.raises(HostKeyMismatch):
        await SshConnection(target_for(lab, host, known_hosts=None)).run("true")
    insecure = SshConnection(target_for(lab, host, known_hosts=None, insecure_skip_host_key_check=True))
    with caplog.at_level(logging.WARNING, logger="kapistrano.hosts.ssh"):
        assert (await insecure.run("echo ok")).stdout == "ok\n"
    await insecure.close()
    assert "host key check DISABLED for host1" in caplog.text


async def test_a_wrong_client_key_is_auth_failed(lab: HostLab) -> None:
    host = lab.hosts[0]
    conn = SshConnection(target_for(lab, host, client_key=fresh_private_key()))
    with pytest.raises(AuthFailed):
        await conn.run("touch /var/www/ran-anyway")
    assert not host.path("/var/www/ran-anyway").exists()


async def test_an_unreachable_host_fails_within_the_connect_timeout(lab: HostLab) -> None:
    host = lab.hosts[0]
    host.cut_link()
    try:
        conn = SshConnection(target_for(lab, host, connect_timeout=2.0))
        started = time.monotonic()
        with pytest.raises(Unreachable) as caught:
            await conn.run("true")
        elapsed = time.monotonic() - started
        assert elapsed <= 2.0 + 1.0
        assert caught.value.transient
    finally:
        host.restore_link()


async def test_a_dropped_connection_is_reopened_by_the_next_run(lab: HostLab) -> None:
    host = lab.hosts[0]
    conn = SshConnection(target_for(lab, host))
    try:
        assert (await conn.run("echo before")).stdout == "before\n"
        host.stop_sshd()
        for pid in host.pids_of(r"^sshd: root"):  # the session process serving our connection
            host.exec(["kill", str(pid)])

        async def closed() -> bool:
            return not conn.is_open

        await wait_until(closed)
        host.start_sshd()
        assert (await conn.run("echo after")).stdout == "after\n"
        assert conn.connects == 2
    finally:
        await conn.close()


async def test_a_connection_lost_just_before_a_command_is_retried_once(lab: HostLab) -> None:
    host = lab.hosts[0]
    conn = SshConnection(target_for(lab, host))
    try:
        await conn.run("true")
        # The session dies while the client has not yet noticed: the next run must still succeed.
        for pid in host.pids_of(r"^sshd: root"):  # the session process serving our connection
            host.exec(["kill", "-9", str(pid)])
        assert (await conn.run("echo again")).stdout == "again\n"
        assert conn.connects == 2
    finally:
        await conn.close()


async def test_an_sshd_restart_keeps_established_sessions_working(lab: HostLab) -> None:
    host = lab.hosts[0]
    conn = SshConnection(target_for(lab, host))
    try:
        await conn.run("true")
        host.stop_sshd()
        host.start_sshd()
        assert (await conn.run("echo same")).stdout == "same\n"
        assert conn.connects == 1
    finally:
        await conn.close()


async def test_open_tcp_reaches_ports_as_seen_from_the_host(lab: HostLab) -> None:
    host = lab.hosts[0]
    conn = SshConnection(target_for(lab, host))
    try:
        reader, writer = await conn.open_tcp(host.address, 22)
        banner = await asyncio.wait_for(reader.readline(), 5)
        assert banner.startswith(b"SSH-2.0-OpenSSH")
        writer.close()
        with pytest.raises(TcpConnectFailed) as caught:
            await conn.open_tcp("127.0.0.1", 1)
        assert isinstance(caught.value, ConnectionRefusedError)
        assert conn.connects == 1
    finally:
        await conn.close()


async def test_a_jump_host_tunnels_the_connection(lab: HostLab) -> None:
    host = lab.hosts[0]
    jump = target_for(lab, host, name="bastion")
    conn = SshConnection(target_for(lab, host, jump=jump))
    try:
        out = (await conn.run("echo $SSH_CONNECTION")).stdout.split()
        assert out[0] == host.address, "the tunnelled connection comes from the jump host itself"
        assert len(established_ssh_sessions(host)) == 2
    finally:
        await conn.close()


async def test_the_pool_connects_once_per_host_under_concurrency(lab: HostLab) -> None:
    pool = SshPool()
    targets = [target_for(lab, host) for host in lab.hosts]
    try:
        got = await asyncio.gather(*(pool.get(t) for t in targets * 5))
        for target in targets:
            same = {id(c) for c in got if c.name == target.name}
            assert len(same) == 1
        assert all(c.connects == 1 for c in got)
        assert sorted(pool.names()) == ["host1", "host2", "host3"]
        changed = await pool.get(replace(targets[0], command_timeout=5.0))
        assert changed is not got[0]
        assert not got[0].is_open
    finally:
        await pool.close()
    assert all(not c.is_open for c in got)


async def test_private_key_material_never_shows_in_repr_errors_or_logs(
    lab: HostLab, caplog: pytest.LogCaptureFixture
) -> None:
    host = lab.hosts[0]
    key = lab.client_key.read_bytes()
    body = [line for line in key.decode().splitlines() if line and not line.startswith("-----")]
    wrong = fresh_private_key()
    garbage = b"-----BEGIN OPENSSH PRIVATE KEY-----\nTOPSECRETNOTAKEY\n-----END OPENSSH PRIVATE KEY-----\n"
    texts: list[str] = []
    with caplog.at_level(logging.DEBUG):
        good = SshConnection(target_for(lab, host))
        await good.run("echo hi")
        texts += [repr(good), repr(good.target), str(good.target)]
        await good.close()
        for bad_key in (wrong, garbage):
            target = target_for(lab, host, client_key=bad_key)
            with pytest.raises(AuthFailed) as caught:
                await SshConnection(target).run("true")
            texts += [repr(target), "".join(traceback.format_exception(caught.value))]
    texts.append(caplog.text)
    blob = "\n".join(texts)
    assert "TOPSECRETNOTAKEY" not in blob
    for line in body + [ln for ln in wrong.decode().splitlines() if not ln.startswith("-----")]:
        assert line not in blob
