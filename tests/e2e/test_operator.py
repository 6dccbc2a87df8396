"""The operator end to end: `kapistrano run` as a process, an API server, kubectl, real SSH hosts.

Each test starts its own API server (tests/e2e/kube.py), lab hosts and operator process; the
operator is stopped (and every process it left) at the end. Nothing waits a fixed time: every wait
polls with a deadline.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import asyncssh
import pytest
from kapistrano.lab import HostLab

from ..integration.appkit import App
from .kube import Kube

pytestmark = pytest.mark.e2e

SECRET = "deploy-ssh"
T = TypeVar("T")


def wait_until(check: Callable[[], T | None], what: str, timeout: float = 60.0, period: float = 0.1) -> T:
    """Poll `check` until it returns something truthy; fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(period)
    raise AssertionError(f"timed out after {timeout} s waiting for {what} (last: {last!r})")


def condition(release: dict[str, Any], kind: str) -> dict[str, Any] | None:
    """The condition of a type from a Release's status, if any."""
    found = [c for c in (release.get("status") or {}).get("conditions") or [] if c["type"] == kind]
    return found[0] if found else None


def is_ready(release: dict[str, Any]) -> bool:
    """Ready=True for the current generation."""
    ready = condition(release, "Ready")
    generation = release["metadata"].get("generation")
    return bool(ready and ready["status"] == "True" and ready.get("observedGeneration") == generation)


def stalled_reason(release: dict[str, Any]) -> str | None:
    """The reason of Stalled=True, or None."""
    stalled = condition(release, "Stalled")
    return stalled["reason"] if stalled and stalled["status"] == "True" else None


class Operator:
    """`kapistrano run -A` as a child process, with its output in a file."""

    def __init__(self, kube: Kube, workdir: Path, extra: Sequence[str] = ()) -> None:
        self.kube = kube
        self.extra = list(extra)
        self.log = workdir / "operator.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.pids: list[int] = []

    def start(self) -> Operator:
        """Start the operator (starts a process)."""
        command = [sys.executable, "-m", "kapistrano.cli.main", "run", "-A", "--standalone", "--metrics-port", "0"]
        command += self.extra  # later options win
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                command, env=self.kube.operator_env(), stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.pids.append(self.process.pid)
        return self

    def kill(self) -> None:
        """SIGKILL the operator's whole process group, as a node failure would (stops processes)."""
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        """Stop the operator: SIGTERM, then SIGKILL after a deadline (stops processes)."""
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)

    def output(self) -> str:
        """Everything the operator logged so far."""
        return self.log.read_text(errors="replace") if self.log.exists() else ""


class Scene:
    """One test's world: API server, lab hosts, the sample app, a namespace and the operator."""

    def __init__(self, kube: Kube, lab: HostLab, app: App, operator: Operator) -> None:
        self.kube = kube
        self.lab = lab
        self.app = app
        self.operator = operator
        self.ns = kube.namespace()

    def manifest(self, version: str, name: str = "app", **spec: Any) -> dict[str, Any]:
        """The sample app's Release with the Secret reference."""
        doc = self.app.manifest(version, **spec)
        doc["metadata"] = {"name": name, "namespace": self.ns}
        doc["spec"]["ssh"]["secretRef"] = {"name": SECRET}
        return doc

    def apply(self, version: str, name: str = "app", **spec: Any) -> None:
        """kubectl apply of the Release (runs kubectl)."""
        self.kube.apply(self.manifest(version, name, **spec), self.ns)

    def secret(self, known_hosts: bytes | None = None) -> None:
        """Create the SSH Secret from the lab's client key and known_hosts (network I/O)."""
        known = known_hosts if known_hosts is not None else self.lab.known_hosts.read_bytes()
        self.kube.create_secret(
            self.ns, SECRET, {"ssh-privatekey": self.lab.client_key.read_bytes(), "known_hosts": known}
        )

    def get(self, name: str = "app") -> dict[str, Any]:
        """The Release via kubectl get -o json (runs kubectl)."""
        return self.kube.get_release(self.ns, name)

    def wait_ready(self, name: str = "app", timeout: float = 60) -> dict[str, Any]:
        """Poll until Ready=True for the current generation (runs kubectl)."""
        return wait_until(lambda: (r := self.get(name)) and is_ready(r) and r, f"{name} Ready", timeout)

    def wait_stalled(self, reason: str, name: str = "app", timeout: float = 60) -> dict[str, Any]:
        """Poll until Stalled=True with `reason` (runs kubectl)."""
        return wait_until(
            lambda: (r := self.get(name)) and stalled_reason(r) == reason and r, f"Stalled/{reason}", timeout
        )

    def patch(self, spec: dict[str, Any], name: str = "app") -> None:
        """kubectl patch --type merge of the spec (runs kubectl)."""
        self.kube.kubectl("patch", "release", name, "-n", self.ns, "--type", "merge", "-p", json.dumps({"spec": spec}))


@pytest.fixture
def scene(kube: Kube, lab: HostLab) -> Iterator[Scene]:
    """A Scene with the operator running; everything is stopped afterwards."""
    with running_scene(kube, lab) as made:
        yield made


@contextlib.contextmanager
def running_scene(kube: Kube, lab: HostLab, operator_args: Sequence[str] = ()) -> Iterator[Scene]:
    """A Scene whose operator runs with `operator_args` added; everything is stopped afterwards."""
    app = App(lab, drain=0.5, boot=0.2)
    workdir = Path(tempfile.mkdtemp(prefix="kapop-"))
    operator = Operator(kube, workdir, operator_args)
    made = Scene(kube, lab, app, operator)
    operator.start()
    try:
        yield made
    finally:
        operator.stop()
        if made.operator.process is not None and made.operator.process.poll() is None:
            made.operator.process.kill()
        sys.stdout.write(operator.output()[-4000:])
        app.close()
        shutil.rmtree(workdir, ignore_errors=True)


def key_lines(lab: HostLab) -> list[str]:
    """The base64 body lines of the lab's private key (what must never leak)."""
    text = lab.client_key.read_text()
    return [line for line in text.splitlines() if line and not line.startswith("-----")]


def assert_no_key_material(scene: Scene) -> None:
    """Neither the operator's log, the Events nor the status hold any line of the private key."""
    lines = key_lines(scene.lab)
    encoded = base64.b64encode(scene.lab.client_key.read_bytes()).decode()
    places = {
        "operator log": scene.operator.output(),
        "events": json.dumps(scene.kube.events(scene.ns)),
        "status": json.dumps(scene.get().get("status")),
    }
    for where, text in places.items():
        for line in lines:
            assert line not in text, f"a line of the private key is in the {where}"
        assert encoded[:40] not in text, f"the base64 Secret value is in the {where}"


def test_a_release_becomes_ready_and_a_new_version_rolls_one_host_at_a_time(scene: Scene) -> None:
    scene.secret()
    watcher = subprocess.Popen(
        [
            scene.kube.binary,
            "--kubeconfig",
            str(scene.kube.kubeconfig),
            "get",
            "releases",
            "-n",
            scene.ns,
            "-w",
            "-o",
            "json",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        scene.apply("v1", strategy={"maxUnavailable": 1})
        first = scene.wait_ready()
    finally:
        watcher.terminate()
        seen, _ = watcher.communicate(timeout=30)
    assert first["status"]["ready"] == "3/3"
    assert first["status"]["currentVersion"] == "v1"
    versions = list(parse_stream(seen))
    firsts = [condition(v, "Ready") for v in versions if condition(v, "Ready")]
    assert firsts, "no status was seen by the watcher"
    assert firsts[0]["status"] == "Unknown", "first sight must be Ready=Unknown"
    reconciling = condition(next(v for v in versions if condition(v, "Ready")), "Reconciling")
    assert reconciling is not None
    assert reconciling["status"] == "True"

    done = scene.kube.kubectl("wait", "-n", scene.ns, "--for=condition=Ready", "release/app", "--timeout=30s")
    assert "condition met" in done.stdout

    before = len(scene.app.read_events())
    scene.patch({"version": "v2", "source": {"path": scene.app.version("v2")}})
    second = scene.wait_ready()
    assert second["metadata"]["generation"] == 2
    assert second["status"]["currentVersion"] == "v2"
    assert [h["version"] for h in second["status"]["hosts"]] == ["v2", "v2", "v2"]
    events = scene.app.read_events()[before:]
    names = [h.name for h in scene.lab.hosts]
    starts = [e["host"] for e in events if e["event"] == "start" and e["version"] == "v2"]
    assert starts == names, "one host after the other, in spec order"
    exits = {e["host"]: e for e in events if e["event"] == "exit" and e["version"] == "v1"}
    readies = {e["host"]: e for e in events if e["event"] == "ready" and e["version"] == "v2"}
    for previous, following in itertools.pairwise(names):
        assert readies[previous]["time"] <= exits[following]["time"], f"{following} stopped before {previous} was ready"

    reasons = {e["reason"] for e in scene.kube.events(scene.ns)}
    assert {"HostRestarting", "HostReady", "RolloutComplete"} <= reasons
    assert_no_key_material(scene)
    assert "forbidden" not in scene.operator.output().lower(), "the operator needed a right manifests/ does not give"


def parse_stream(text: str) -> Iterator[dict[str, Any]]:
    """The JSON objects of `kubectl get -w -o json` output, in order."""
    decoder = json.JSONDecoder()
    index = 0
    while True:
        while index < len(text) and text[index].isspace():
            index += 1
        if index >= len(text):
            return
        try:
            found, index = decoder.raw_decode(text, index)
        except json.JSONDecodeError:
            return
        yield found


def test_a_missing_secret_stalls_the_release_until_it_is_created(scene: Scene) -> None:
    scene.apply("v1")
    stalled = scene.wait_stalled("SecretNotFound")
    assert SECRET in condition(stalled, "Stalled")["message"]  # type: ignore[index]
    assert condition(stalled, "Ready")["status"] == "False"  # type: ignore[index]
    scene.secret()
    ready = scene.wait_ready()
    assert ready["status"]["ready"] == "3/3"
    assert stalled_reason(ready) is None


def wrong_known_hosts(lab: HostLab) -> bytes:
    """The lab's known_hosts with every host key replaced by a key no host has."""
    other = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode().split()
    lines = []
    for line in lab.known_hosts.read_text().splitlines():
        if line.strip():
            lines.append(f"{line.split()[0]} {other[0]} {other[1]}")
    return ("\n".join(lines) + "\n").encode()


def test_a_wrong_host_key_stalls_before_any_command_runs(scene: Scene) -> None:
    marker = scene.app.root / "hook-ran"
    scene.secret(known_hosts=wrong_known_hosts(scene.lab))
    scene.apply("v1", hooks={"afterUpdate": [{"name": "mark", "run": f"touch {marker}"}]})
    stalled = scene.wait_stalled("HostKeyMismatch")
    assert condition(stalled, "Ready")["status"] == "False"  # type: ignore[index]
    assert not marker.exists(), "a command ran on a host whose key is not trusted"
    assert scene.app.read_events() == []
    assert any(e["type"] == "Warning" and e["reason"] == "HostKeyMismatch" for e in scene.kube.events(scene.ns))
    assert_no_key_material(scene)


def current_version(host: Any) -> str:
    """The version marker of the release `current` points at on a lab host."""
    target = os.readlink(host.path("/var/www/app/current"))
    return str(host.path(f"{target}/.kapistrano-version").read_text().strip())


def test_a_failing_version_rolls_back_and_reverting_makes_the_release_ready(scene: Scene) -> None:
    scene.secret()
    scene.apply("v1", strategy={"maxUnavailable": "100%"})
    scene.wait_ready()
    scene.apply("v2", healthy=False, readiness={"failureThreshold": 5})
    failed = scene.wait_stalled("HostFailed")
    assert failed["status"]["failedVersion"] == "v2"
    on_hosts = [current_version(h) for h in scene.lab.hosts]
    assert on_hosts == ["v1", "v1", "v1"], f"the failed host rolled back: {failed['status']['hosts']}"
    scene.apply("v1", strategy={"maxUnavailable": "100%"})
    ready = scene.wait_ready()
    assert ready["status"]["currentVersion"] == "v1"
    assert stalled_reason(ready) is None


def test_an_operator_killed_mid_rollout_finishes_without_restarting_a_host_twice(scene: Scene) -> None:
    """Only a host the killed operator was restarting may start twice (the engine resumes it); no other."""
    scene.secret()
    scene.apply("v1", strategy={"maxUnavailable": "100%"})
    scene.wait_ready()
    before = len(scene.app.read_events())
    scene.apply("v2")
    wait_until(
        lambda: any(e["event"] == "ready" and e["version"] == "v2" for e in scene.app.read_events()[before:]),
        "the first host ready on v2",
    )
    scene.operator.kill()
    partial = scene.get()["status"]
    assert partial.get("currentVersion") == "v1", "killed before the rollout finished"
    interrupted = {h["name"] for h in partial["hosts"] if h.get("action")}
    scene.operator.start()
    done = scene.wait_ready()
    assert [h["version"] for h in done["status"]["hosts"]] == ["v2", "v2", "v2"]
    starts = Counter(
        e["host"] for e in scene.app.read_events()[before:] if e["event"] == "start" and e["version"] == "v2"
    )
    assert set(starts) == {h.name for h in scene.lab.hosts}
    twice = {host for host, count in starts.items() if count > 1}
    assert twice <= interrupted, f"{twice} restarted twice, but the killed operator was acting on {interrupted}"
    assert len(twice) <= 1


def test_an_invalid_spec_that_reaches_the_operator_stalls_with_the_problems(scene: Scene) -> None:
    """999.1.1.1 passes the CRD's DNS-name pattern (the server accepts it); only the operator's models refuse it."""
    scene.secret()
    doc = scene.manifest("v1")
    doc["spec"]["hosts"][0]["address"] = "999.1.1.1"
    scene.kube.apply(doc, scene.ns)
    stalled = scene.wait_stalled("InvalidSpec")
    assert "spec.hosts[0].address" in condition(stalled, "Stalled")["message"]  # type: ignore[index]
    assert scene.app.read_events() == [], "nothing ran on a host"
