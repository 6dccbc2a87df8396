"""The test-host lab itself: real sshd hosts, private /var/www, link cuts, clean teardown."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from kapistrano.lab import HostLab, LabCommandError, LabError, LabHost, procs, registry
from kapistrano.lab import hosts as hosts_module

pytestmark = pytest.mark.hosts
LabFactory = Callable[..., HostLab]


def ssh(lab: HostLab, host: LabHost, command: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """Run `command` on `host` with the OpenSSH client, strict host key checking on."""
    return subprocess.run(lab.ssh_argv(host, command), capture_output=True, text=True, timeout=timeout, check=False)


def names_in_root() -> set[str]:
    """Network namespaces and root-namespace interfaces that exist now."""
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True).stdout
    return {line.split()[0] for line in netns.splitlines() if line.strip()} | {
        line.split(":")[1].strip().split("@")[0] for line in links.splitlines()
    }


def wait_for(condition: Callable[[], object], timeout: float = 10.0) -> None:
    """Poll `condition` until it returns something true."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


@pytest.fixture
def root_server() -> Iterator[int]:
    """A TCP server in the root namespace on 0.0.0.0:<free port> that answers every client with `hello`."""
    server = socket.create_server(("0.0.0.0", 0))
    server.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                client, _ = server.accept()
            except TimeoutError:
                continue
            with client:
                client.sendall(b"hello\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join()
    server.close()


def test_every_host_answers_ssh_with_its_own_address_and_a_verified_host_key(lab: HostLab) -> None:
    addresses = [host.address for host in lab.hosts]
    assert len(set(addresses)) == len(addresses)
    for host in lab.hosts:
        result = ssh(lab, host, "hostname; hostname -I; id -u")
        assert result.returncode == 0, result.stderr
        assert result.stdout.split() == [host.name, host.address, "0"]
    assert lab.release_yaml_hosts()[0] == {"name": "host1", "address": addresses[0], "port": 22, "user": "root"}


def test_a_wrong_host_key_is_refused(lab: HostLab, tmp_path: Path) -> None:
    first, second = lab.hosts[0], lab.hosts[1]
    second_key = next(line for line in lab.known_hosts.read_text().splitlines() if line.startswith(second.address))
    forged = tmp_path / "known_hosts"
    forged.write_text(second_key.replace(second.address, first.address, 1) + "\n")
    argv = [arg.replace(str(lab.known_hosts), str(forged)) for arg in lab.ssh_argv(first, "true")]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 255
    assert "HOST IDENTIFICATION HAS CHANGED" in result.stderr


def test_var_www_and_run_are_private_to_each_host(lab: HostLab) -> None:
    first, second, _ = lab.hosts
    written = ssh(lab, first, "mkdir -p /var/www/app && echo first > /var/www/app/marker && touch /run/first")
    assert written.returncode == 0, written.stderr
    assert first.path("/var/www/app/marker").read_text() == "first\n"
    assert first.exec(["cat", "/var/www/app/marker"]).stdout == "first\n"
    assert ssh(lab, second, "ls -A /var/www; ls /run").stdout.split() == ["sshd", "sshd.pid"]
    assert not second.path("/var/www/app").exists()
    assert not Path("/var/www/app/marker").exists()
    assert not Path("/run/first").exists()
    assert first.path("/run/first").exists()
    assert first.path("/var/run/first") == first.path("/run/first")
    assert first.path("/etc/hostname") == Path("/etc/hostname")


def test_a_host_reaches_a_root_namespace_service_on_its_gateway(lab: HostLab, root_server: int) -> None:
    read = "import socket,sys; print(socket.create_connection((sys.argv[1], int(sys.argv[2])), 5).recv(6).decode())"
    for host in lab.hosts:
        for address in (lab.gateway_for(host), lab.service_address):
            result = ssh(lab, host, f"python3 -c '{read}' {address} {root_server}")
            assert result.returncode == 0, result.stderr
            assert result.stdout == "hello\n\n"


def test_exec_runs_inside_the_host_and_reports_failures_with_stderr(lab: HostLab) -> None:
    host = lab.hosts[1]
    assert host.exec("hostname -I").stdout.split() == [host.address]
    assert host.exec("cat", input="piped").stdout == "piped"
    assert host.exec("exit 3", check=False).returncode == 3
    with pytest.raises(LabCommandError, match="no-such-file"):
        host.exec(["ls", "/var/www/no-such-file"])
    host.exec("setsid nohup sleep 1000 > /dev/null 2>&1 &")
    wait_for(lambda: len(host.pids_of(r"^sleep 1000$")) == 1)
    assert lab.hosts[0].pids_of(r"^sleep 1000$") == []
    assert host.sshd_pid in host.processes()


def test_stopped_sshd_refuses_connections_and_restarts_with_var_www_intact(lab: HostLab) -> None:
    host = lab.hosts[0]
    host.exec("echo kept > /var/www/state")
    old_pid = host.sshd_pid
    assert old_pid is not None
    host.stop_sshd()
    assert host.sshd_pid is None
    assert not procs.is_alive(old_pid)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((host.address, 22), timeout=5)
    assert ssh(lab, host, "true").returncode == 255
    host.start_sshd()
    assert host.sshd_pid not in (None, old_pid)
    result = ssh(lab, host, "cat /var/www/state")
    assert (result.returncode, result.stdout) == (0, "kept\n")


def test_a_cut_link_times_out_and_a_restored_link_works_again(lab: HostLab, root_server: int) -> None:
    host = lab.hosts[2]
    established = subprocess.Popen(
        lab.ssh_argv(host, "cat"),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert established.stdin is not None
    assert established.stdout is not None
    established.stdin.write("before\n")
    established.stdin.flush()
    assert established.stdout.readline() == "before\n"

    host.cut_link()
    assert host.link_cut
    with pytest.raises(TimeoutError):
        socket.create_connection((host.address, 22), timeout=1)
    from_host = host.exec(
        f"python3 -c 'import socket; socket.create_connection((\"{host.gateway}\", {root_server}), 1)'", check=False
    )
    assert "timed out" in from_host.stderr
    assert ssh(lab, lab.hosts[0], "true").returncode == 0  # other hosts are unaffected
    established.stdin.write("during\n")
    established.stdin.flush()

    host.restore_link()
    assert not host.link_cut
    assert established.stdout.readline() == "during\n"  # the stalled connection resumes
    established.stdin.close()
    assert established.wait(30) == 0
    assert ssh(lab, host, "true").returncode == 0


def test_close_leaves_no_namespace_link_process_or_directory(lab_factory: LabFactory) -> None:
    lab = lab_factory(2)
    daemon = ssh(lab, lab.hosts[0], "setsid nohup sleep 1000 > /dev/null 2>&1 < /dev/null & echo $!")
    assert daemon.returncode == 0, daemon.stderr
    worker = lab.hosts[1].exec("nohup sleep 1000 > /dev/null 2>&1 & echo $!").stdout
    session = subprocess.Popen(lab.ssh_argv(lab.hosts[1], "sleep 1001"), stdout=subprocess.DEVNULL)
    wait_for(lambda: lab.hosts[1].pids_of(r"^sleep 1001$"))
    started = [int(daemon.stdout), int(worker), *lab.hosts[1].pids_of(r"^sleep 1001$")]
    started += [pid for host in lab.hosts for pid in (host.sshd_pid, host.holder_pid) if pid is not None]
    ids = set().union(*(host.namespace_ids for host in lab.hosts))
    ours = {name for host in lab.hosts for name in (host.netns, host.link)}
    assert ours <= names_in_root()

    lab.close()
    lab.close()  # idempotent

    assert session.wait(30) != 0
    assert not ours & names_in_root()
    assert [pid for pid in started if procs.is_alive(pid)] == []
    assert procs.pids_in(ids) == []
    assert not lab.workdir.exists()


def test_two_labs_at_once_get_disjoint_names_and_addresses(lab_factory: LabFactory) -> None:
    first, second = lab_factory(2), lab_factory(3)
    assert first.prefix != second.prefix
    assert {h.address for h in first.hosts}.isdisjoint({h.address for h in second.hosts})
    assert {h.gateway for h in first.hosts}.isdisjoint({h.gateway for h in second.hosts})
    for lab in (first, second):
        for host in lab.hosts:
            assert ssh(lab, host, "hostname -I").stdout.split() == [host.address]


LAB_IN_CHILD = """
import json, sys
from kapistrano.lab import HostLab
lab = HostLab(int(sys.argv[1])).start()
print(json.dumps({"prefix": lab.prefix, "addresses": [h.address for h in lab.hosts],
                  "workdir": str(lab.workdir), "holders": [h.holder_pid for h in lab.hosts]}), flush=True)
sys.stdin.read()
lab.close()
"""


def start_lab_in_child(count: int) -> tuple[subprocess.Popen[str], dict[str, object]]:
    """Start a lab in another Python process; returns the process and what it reported."""
    child = subprocess.Popen(
        [sys.executable, "-c", LAB_IN_CHILD, str(count)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert child.stdout is not None
    line = child.stdout.readline()
    assert line, "the child process failed to start its lab"
    return child, json.loads(line)


def test_labs_in_concurrent_processes_get_disjoint_addresses() -> None:
    children = [
        subprocess.Popen(
            [sys.executable, "-c", LAB_IN_CHILD, "5"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        for _ in range(3)
    ]
    try:
        reports = [json.loads(child.stdout.readline()) for child in children if child.stdout is not None]
    finally:
        for child in children:
            assert child.stdin is not None
            child.stdin.close()
    assert [child.wait(30) for child in children] == [0, 0, 0]
    addresses = [address for report in reports for address in report["addresses"]]
    assert len(addresses) == 15
    assert len(set(addresses)) == 15
    assert len({report["prefix"] for report in reports}) == 3


def test_a_lab_left_behind_by_a_killed_process_is_reaped_by_the_next_lab(lab_factory: LabFactory) -> None:
    child, report = start_lab_in_child(2)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    assert child.stdin is not None
    child.stdin.close()
    prefix = str(report["prefix"])
    assert any(name.startswith(prefix) for name in names_in_root())

    lab_factory(1)

    assert not any(name.startswith(prefix) for name in names_in_root())
    assert not Path(str(report["workdir"])).exists()
    holders = report["holders"]
    assert isinstance(holders, list)
    assert [pid for pid in holders if procs.is_alive(pid)] == []


def test_a_failed_start_cleans_up_everything_it_created(
    lab_factory: LabFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(hosts_module, "sshd_config", lambda *args: "NoSuchOption yes\n")
    lab = HostLab(2)
    with pytest.raises(LabError, match=r"sshd is not running.*NoSuchOption"):
        lab.start()
    assert lab.hosts
    assert not {name for h in lab.hosts for name in (h.netns, h.link)} & names_in_root()
    assert not lab.workdir.exists()
    assert [h.holder_pid for h in lab.hosts if h.holder_pid and procs.is_alive(h.holder_pid)] == []
    lab.close()  # still idempotent


def test_extra_private_directories_are_private_too(lab_factory: LabFactory) -> None:
    lab = lab_factory(2, private_dirs=["/tmp"])
    first, second = lab.hosts
    assert not lab.workdir.is_relative_to("/tmp")
    first.exec("echo mine > /tmp/pidfile")
    assert first.path("/tmp/pidfile").read_text() == "mine\n"
    assert second.exec("ls -A /tmp").stdout == ""
    assert ssh(lab, second, "true").returncode == 0
    with pytest.raises(ValueError, match="hidden"):
        HostLab(1, private_dirs=["/srv"], workdir=Path("/srv/lab"))


def test_five_hosts_start_quickly(lab_factory: LabFactory) -> None:
    started = time.monotonic()
    lab_factory(5)
    assert time.monotonic() - started < 5.0  # typically ~0.1 s; generous for loaded CI machines


#: A lab ten times the usual size (the benchmarks start 500; the suite stays quick).
LARGE = 80


def test_a_large_lab_gives_every_host_its_own_address_and_namespaces_and_leaves_nothing_behind() -> None:
    lab = HostLab(LARGE)
    try:
        lab.start(timeout=120)
        for host in lab.hosts:
            host.path("/var/www").joinpath("marker").write_text(host.name + "\n")
        command = "hostname; hostname -I; readlink /proc/self/ns/mnt /proc/self/ns/net; cat /var/www/marker"
        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(lambda host: ssh(lab, host, command, timeout=60), lab.hosts))
        seen = []
        for host, result in zip(lab.hosts, results, strict=True):
            assert result.returncode == 0, f"{host.name}: {result.stderr}"
            name, address, mnt, net, marker = result.stdout.split()
            assert (name, address, marker) == (host.name, host.address, host.name)
            assert {mnt, net} <= host.namespace_ids
            seen += [mnt, net]
        assert len(set(seen)) == 2 * LARGE  # no two hosts share a mount or network namespace
        started = [pid for host in lab.hosts for pid in (host.sshd_pid, host.holder_pid) if pid is not None]
        ids = set().union(*(host.namespace_ids for host in lab.hosts))
        ours = {name for host in lab.hosts for name in (host.netns, host.link)}
        assert len(started) == 2 * LARGE
        assert ours <= names_in_root()
    finally:
        lab.close()
    assert not ours & names_in_root()
    assert [pid for pid in started if procs.is_alive(pid)] == []
    assert procs.pids_in(ids) == []
    assert not lab.workdir.exists()
    assert not (registry.REGISTRY_DIR / f"{lab.prefix}.json").exists()
