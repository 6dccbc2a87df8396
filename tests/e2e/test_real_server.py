"""What only a real API server can show: the shipped manifests install, the schema refuses bad Releases,
RBAC holds the operator to manifests/clusterrole.yaml, and the README's kubectl commands work."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from ..unit.crdcheck import load_crd, walk
from ..unit.test_argocd_lua import ARGOCD, run
from ..unit.test_release_validation import BAD_RELEASES, example, mutated
from .kube import Kube

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]


def as_release(doc: dict[str, Any], namespace: str) -> str:
    """A Release document as YAML in `namespace` (pure)."""
    return yaml.safe_dump({**doc, "metadata": {**doc["metadata"], "namespace": namespace}})


def test_kubectl_apply_k_manifests_is_accepted_by_the_server(kube: Kube) -> None:
    done = kube.kubectl("apply", "-k", str(REPO / "manifests"), "--dry-run=server")
    assert "customresourcedefinition.apiextensions.k8s.io/releases.kapistrano.dev" in done.stdout
    assert "deployment.apps/kapistrano" in done.stdout
    assert "clusterrolebinding.rbac.authorization.k8s.io/kapistrano" in done.stdout


def test_the_server_keeps_every_cel_rule_and_the_crd_is_established(kube: Kube) -> None:
    served = json.loads(kube.kubectl("get", "crd", "releases.kapistrano.dev", "-o", "json").stdout)
    conditions = {c["type"]: c["status"] for c in served["status"]["conditions"]}
    assert conditions["Established"] == "True"
    assert conditions["NamesAccepted"] == "True"
    assert conditions.get("NonStructuralSchema", "False") == "False"

    def rules(crd: dict[str, Any]) -> list[str]:
        (version,) = crd["spec"]["versions"]
        schema = version["schema"]["openAPIV3Schema"]
        return sorted(r["rule"] for _, node in walk(schema) for r in node.get("x-kubernetes-validations", []))

    assert len(rules(load_crd())) >= 5
    assert rules(served) == rules(load_crd())


def test_the_example_release_applies_with_strict_field_validation(kube: Kube) -> None:
    ns = kube.namespace()
    done = kube.kubectl("apply", "--validate=strict", "-f", "-", input=as_release(example(), ns))
    assert "release.kapistrano.dev/billing-workers created" in done.stdout
    unknown = mutated({"spec.hostz": []})
    refused = kube.kubectl("apply", "--validate=strict", "-f", "-", input=as_release(unknown, ns), check=False)
    assert refused.returncode != 0
    assert 'unknown field "spec.hostz"' in refused.stderr


def test_kubectl_explain_describes_the_strategy(kube: Kube) -> None:
    out = kube.kubectl("explain", "release.spec.strategy").stdout
    assert "KIND:" in out
    assert "Release" in out
    assert "maxUnavailable" in out
    assert "DESCRIPTION:" in out


@pytest.mark.parametrize(("changes", "field", "crd_layer"), BAD_RELEASES)
def test_a_bad_release_of_the_unit_corpus_is_refused_by_the_server_or_named_as_the_operators_check(
    kube: Kube, changes: dict[str, Any], field: str, crd_layer: str | None
) -> None:
    ns = kube.namespace()
    document = as_release(mutated(changes), ns)
    done = kube.kubectl("apply", "--dry-run=server", "-f", "-", input=document, check=False)
    if crd_layer is None:
        # Only the operator's models catch this one (e.g. 999.1.1.1 matches a DNS-name pattern);
        # test_operator.py shows such a Release stalling with InvalidSpec and the field named.
        assert done.returncode == 0, done.stderr
        return
    assert done.returncode != 0, f"the server accepted a Release with a bad {field}"
    if "RequestEntityTooLarge" in done.stderr:
        return  # refused before the schema: larger than any request the API server takes (3 MiB)
    assert field in done.stderr, done.stderr


def test_the_operator_identity_has_exactly_the_rights_of_the_clusterrole(kube: Kube) -> None:
    ns = kube.namespace()
    granted = [
        ("list", "releases.kapistrano.dev"),
        ("watch", "releases.kapistrano.dev"),
        ("patch", "releases.kapistrano.dev"),
        ("patch", "releases.kapistrano.dev/status"),
        ("list", "namespaces"),
        ("get", "secrets"),
        ("create", "events"),
        ("list", "customresourcedefinitions.apiextensions.k8s.io"),
    ]
    refused = [
        ("create", "releases.kapistrano.dev"),
        ("delete", "releases.kapistrano.dev"),
        ("update", "releases.kapistrano.dev"),
        ("list", "secrets"),
        ("create", "secrets"),
        ("delete", "events"),
        ("create", "pods"),
        ("update", "releases.kapistrano.dev/status"),
        ("patch", "events"),
    ]
    for verb, resource in granted + refused:
        answer = kube.as_operator("auth", "can-i", verb, resource, "-n", ns, check=False).stdout.strip()
        assert answer == ("yes" if (verb, resource) in granted else "no"), f"{verb} {resource}: {answer}"
    kube.apply(example() | {"metadata": {"name": "billing-workers"}}, ns)
    deleted = kube.as_operator("delete", "release", "billing-workers", "-n", ns, check=False)
    assert deleted.returncode != 0
    assert "forbidden" in deleted.stderr.lower()
    assert 'cannot delete resource "releases"' in deleted.stderr
    assert kube.get_release(ns, "billing-workers")["metadata"]["name"] == "billing-workers"


def argocd_result(result: Any, live: Any) -> Any:
    """The action's result as Argo CD writes it: an empty Lua table is an empty list where the live object had one."""
    if isinstance(result, dict) and isinstance(live, dict):
        return {key: argocd_result(value, live.get(key)) for key, value in result.items()}
    if result == {} and isinstance(live, list):
        return []
    return result


def merge_patch(old: Any, new: Any) -> Any:
    """The JSON merge patch from `old` to `new`, as Argo CD computes it for an action (pure)."""
    if not (isinstance(old, dict) and isinstance(new, dict)):
        return new
    patch = {key: None for key in old if key not in new}
    for key, value in new.items():
        if key not in old or old[key] != value:
            patch[key] = merge_patch(old.get(key), value)
    return patch


@pytest.mark.parametrize("action", ["pause", "resume", "promote", "abort", "restart"])
def test_an_argocd_action_result_is_accepted_by_the_server(kube: Kube, action: str) -> None:
    """Argo CD runs the action's Lua on the live object and merge-patches the difference; the server takes it."""
    ns = kube.namespace()
    kube.apply(example() | {"metadata": {"name": "billing-workers"}}, ns)
    if action == "resume":
        annotate = {"metadata": {"annotations": {"kapistrano.dev/pause": "2026-11-28T02:01:09Z"}}}
        kube.kubectl("patch", "release", "billing-workers", "-n", ns, "--type", "merge", "-p", json.dumps(annotate))
    live = kube.get_release(ns, "billing-workers")
    changed = argocd_result(run(ARGOCD / "actions" / action / "action.lua", live), live)
    patch = merge_patch(live, changed)
    assert patch, "the action changed nothing"
    assert "spec" not in patch, "an action is a request, never a spec edit"
    kube.kubectl("patch", "release", "billing-workers", "-n", ns, "--type", "merge", "-p", json.dumps(patch))
    annotations = kube.get_release(ns, "billing-workers")["metadata"].get("annotations") or {}
    key = {"restart": "kapistrano.dev/restartedAt"}.get(action, f"kapistrano.dev/{action}")
    if action == "resume":
        assert "kapistrano.dev/pause" not in annotations
    else:
        assert key in annotations
