#!/usr/bin/env python3
"""What one rollout costs the Kubernetes API server: the operator's requests, from the audit log.

A real kube-apiserver (tests/kube, audit logging on), N lab hosts, the operator as the ServiceAccount
user of manifests/. v1 is rolled to Ready, then spec.version is patched to v2 and the benchmark
counts every request the operator's user made from the patch until v2 is Ready, by verb and resource,
and the status writes (PATCH releases/status) per minute of rollout.

    python -m benchmarks.bench_api [--hosts 3 10] [--drain 1] [--boot 0.5]   (as root)
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from kapistrano.api.release import GROUP, PLURAL, VERSION
from kapistrano.cli.demo_operator import NAME, NAMESPACE, SECRET, OperatorProcess, Releases, is_ready, ssh_secret
from kapistrano.lab import HostLab
from kapistrano.lab.kubeserver import OPERATOR_USER, KubeServer, free_port, install

from benchmarks.bench_rolling import make_versions, manifest


def wait_ready(releases: Releases, timeout: float = 600) -> None:
    """Poll the Release until Ready for its generation (network I/O)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if is_ready(releases.get()):
            return
        time.sleep(0.2)
    raise SystemExit(f"not Ready within {timeout} s")


def operator_requests(audit_log: Path, since: datetime, until: datetime) -> Counter[str]:
    """The operator user's requests received in [since, until], as 'VERB resource[/sub]' counts (reads the log)."""
    counts: Counter[str] = Counter()
    for line in audit_log.read_text().splitlines():
        event = json.loads(line)
        if event.get("user", {}).get("username") != OPERATOR_USER or event.get("stage") != "ResponseComplete":
            continue
        received = datetime.fromisoformat(event["requestReceivedTimestamp"].replace("Z", "+00:00"))
        if since <= received <= until:
            ref = event.get("objectRef") or {}
            resource = ref.get("resource", event.get("requestURI", "?"))
            resource += f"/{ref['subresource']}" if ref.get("subresource") else ""
            counts[f"{event['verb']} {resource}"] += 1
    return counts


def bench(hosts: int, drain: float, boot: float) -> dict[str, Any]:
    """One rollout v1 -> v2 on `hosts` hosts through the operator; its API figures (starts everything)."""
    root = Path(tempfile.mkdtemp(prefix="kapbench-api-"))
    kubectl = shutil.which("kubectl") or str(Path(sys.executable).parent / "kubectl")
    try:
        with KubeServer(root / "kube", namespace=NAMESPACE, audit=True) as server, HostLab(hosts) as lab:
            install(kubectl, server.kubeconfig)
            sources = make_versions(root / "src", ["v1", "v2"])
            releases = Releases(server.kubeconfig)
            releases.create_namespace()
            releases.create_secret(ssh_secret(lab))
            operator = OperatorProcess(server.operator_kubeconfig, root / "operator.log", free_port()).start()
            try:
                doc = manifest(lab, sources["v1"], "v1", drain=drain, boot=boot, budget=1)
                doc["metadata"] = {"name": NAME, "namespace": NAMESPACE}
                doc["spec"]["ssh"]["secretRef"] = {"name": SECRET}
                releases.create(doc)
                wait_ready(releases)
                since = datetime.now(UTC)
                started = time.monotonic()
                patch = {"spec": {"version": "v2", "source": {"path": sources["v2"]}}}
                releases.custom.patch_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, NAME, patch)
                wait_ready(releases)
                seconds = time.monotonic() - started
                until = datetime.now(UTC)
            finally:
                operator.stop()
                releases.close()
            counts = operator_requests(server.audit_log, since, until)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    writes = counts.get("patch releases/status", 0)
    return {
        "hosts": hosts,
        "seconds": seconds,
        "requests": sum(counts.values()),
        "status_writes": writes,
        "writes_per_minute": writes / seconds * 60,
        "by_kind": dict(counts.most_common()),
    }


def main() -> None:
    """Run the benchmark for each host count and print a Markdown table (starts everything)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hosts", type=int, nargs="+", default=[3, 10])
    parser.add_argument("--drain", type=float, default=1.0)
    parser.add_argument("--boot", type=float, default=0.5)
    args = parser.parse_args()
    rows = [bench(n, args.drain, args.boot) for n in args.hosts]
    print("| hosts | rollout s | operator requests | status writes | status writes / min | by kind |")
    print("|------:|----------:|------------------:|--------------:|--------------------:|---|")
    for row in rows:
        kinds = ", ".join(f"{k} {v}" for k, v in row["by_kind"].items())
        print(
            f"| {row['hosts']} | {row['seconds']:.1f} | {row['requests']} | {row['status_writes']} "
            f"| {row['writes_per_minute']:.0f} | {kinds} |"
        )
    print(yaml.safe_dump(rows, sort_keys=False), file=sys.stderr)


if __name__ == "__main__":
    main()
