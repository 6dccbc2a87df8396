"""The operator's rights on a real API server: from the audit log of its requests, it uses every
right manifests/clusterrole.yaml grants (but those of options the test does not use) and is refused none."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kapistrano.lab import HostLab
from kapistrano.lab.kubeserver import OPERATOR_USER

from .kube import REPO, Kube, kube_for, local_server
from .test_operator import running_scene

pytestmark = pytest.mark.e2e


@pytest.fixture
def audited_kube() -> Iterator[Kube]:
    """An API server of this test alone that writes an audit log of every request (starts and stops a process)."""
    with local_server(audit=True) as server, kube_for(server.kubeconfig, server.operator_kubeconfig, server) as kube:
        yield kube


#: Rights the ClusterRole grants for what this test does not exercise: --peering (several replicas),
#: --namespace globs (kopf then follows namespaces), and kopf reading one CRD by name.
UNEXERCISED = {
    ("get", "kopf.dev", "clusterkopfpeerings"),
    ("list", "kopf.dev", "clusterkopfpeerings"),
    ("watch", "kopf.dev", "clusterkopfpeerings"),
    ("patch", "kopf.dev", "clusterkopfpeerings"),
    ("list", "", "namespaces"),
    ("watch", "", "namespaces"),
    ("get", "apiextensions.k8s.io", "customresourcedefinitions"),
}


def granted_rights() -> set[tuple[str, str, str]]:
    """(verb, apiGroup, resource) of every right manifests/clusterrole.yaml grants (reads the file)."""
    role = yaml.safe_load((REPO / "manifests" / "clusterrole.yaml").read_text())
    return {
        (verb, group, resource)
        for rule in role["rules"]
        for verb in rule["verbs"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
    }


def operator_requests(audit_log: Path) -> list[dict[str, Any]]:
    """The audit events of the operator's requests, one per request (reads the log)."""
    events = [json.loads(line) for line in audit_log.read_text().splitlines() if line.strip()]
    return [e for e in events if e["user"]["username"] == OPERATOR_USER and e["stage"] == "ResponseComplete"]


def right_of(event: dict[str, Any]) -> tuple[str, str, str] | None:
    """(verb, apiGroup, resource[/subresource]) of an audited resource request, None for discovery (pure)."""
    ref = event.get("objectRef")
    if not ref:
        return None
    resource = ref["resource"] + (f"/{ref['subresource']}" if ref.get("subresource") else "")
    return event["verb"], ref.get("apiGroup", ""), resource


def test_the_operator_uses_every_right_the_clusterrole_grants_and_no_other(audited_kube: Kube, lab: HostLab) -> None:
    server = audited_kube.server
    assert server is not None
    with running_scene(audited_kube, lab) as scene:
        scene.secret()
        scene.apply("v1")
        scene.wait_ready()
        scene.kube.kubectl("delete", "release", "app", "-n", scene.ns, "--wait=true", "--timeout=90s", timeout=120)
    requests = operator_requests(server.audit_log)
    refused = [e["requestURI"] for e in requests if e["responseStatus"]["code"] == 403]
    assert refused == [], f"the operator was refused: {refused}"
    used = {right for e in requests if (right := right_of(e)) is not None}
    assert used <= granted_rights()
    unused = granted_rights() - used - UNEXERCISED
    assert unused == set(), f"the ClusterRole grants rights the operator never used: {sorted(unused)}"
