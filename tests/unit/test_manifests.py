"""The install manifests render with kustomize, are valid, least-privilege and locked down; the Dockerfile lints."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from .crdcheck import ROOT, load_crd

K8S_VERSION = "1.33"
NAMESPACE = "kapistrano-system"


def tool(name: str) -> str:
    """A command-line tool installed in the virtualenv (next to the interpreter), else on PATH."""
    found = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    assert found, f"{name} is not installed (pip install -e .[test])"
    return found


@pytest.fixture(scope="module")
def rendered() -> list[dict[str, Any]]:
    """The objects `kubectl kustomize manifests/` renders."""
    result = subprocess.run(
        [tool("kubectl"), "kustomize", str(ROOT / "manifests")], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    return [d for d in yaml.safe_load_all(result.stdout) if d]


def one(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    """The only rendered object of a kind."""
    (found,) = [o for o in objects if o["kind"] == kind]
    return found


def test_kustomize_renders_exactly_the_operator_objects(rendered: list[dict[str, Any]]) -> None:
    kinds = sorted((o["kind"], o["metadata"]["name"]) for o in rendered)
    assert kinds == [
        ("ClusterRole", "kapistrano"),
        ("ClusterRoleBinding", "kapistrano"),
        ("CustomResourceDefinition", "releases.kapistrano.dev"),
        ("Deployment", "kapistrano"),
        ("Namespace", NAMESPACE),
        ("ServiceAccount", "kapistrano"),
    ]


def test_rendered_crd_is_the_generated_one(rendered: list[dict[str, Any]]) -> None:
    crd = one(rendered, "CustomResourceDefinition")
    assert crd["spec"] == load_crd()["spec"]


@pytest.mark.parametrize("kind", ["Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Deployment"])
def test_rendered_objects_are_valid_kubernetes(rendered: list[dict[str, Any]], kind: str) -> None:
    kubernetes_validate.validate(one(rendered, kind), K8S_VERSION, strict=True)


def test_cluster_role_grants_exactly_what_the_operator_needs(rendered: list[dict[str, Any]]) -> None:
    rules = {
        (tuple(r["apiGroups"]), tuple(r["resources"]), tuple(sorted(r["verbs"])))
        for r in one(rendered, "ClusterRole")["rules"]
    }
    assert rules == {
        (("kapistrano.dev",), ("releases",), ("get", "list", "patch", "watch")),
        (("kapistrano.dev",), ("releases/status",), ("patch",)),
        (("",), ("events",), ("create",)),
        (("",), ("secrets",), ("get",)),
        (("kopf.dev",), ("clusterkopfpeerings",), ("get", "list", "patch", "watch")),
        (("apiextensions.k8s.io",), ("customresourcedefinitions",), ("get", "list", "watch")),
        (("",), ("namespaces",), ("list", "watch")),
    }
    assert all("*" not in r["verbs"] and "*" not in r["resources"] for r in one(rendered, "ClusterRole")["rules"])


def test_binding_gives_the_role_to_the_operator_service_account(rendered: list[dict[str, Any]]) -> None:
    binding = one(rendered, "ClusterRoleBinding")
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "kapistrano"}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "kapistrano", "namespace": NAMESPACE}]
    assert one(rendered, "ServiceAccount")["metadata"]["namespace"] == NAMESPACE


def test_deployment_runs_the_operator_locked_down(rendered: list[dict[str, Any]]) -> None:
    deployment = one(rendered, "Deployment")
    assert deployment["metadata"]["namespace"] == NAMESPACE
    pod = deployment["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "kapistrano"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 65532
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (container,) = pod["containers"]
    assert container["image"] == "ghcr.io/kapistrano/kapistrano:0.1.0"
    assert [*container["command"], *container["args"]] == [
        "kapistrano",
        "run",
        "--all-namespaces",
        "--liveness",
        "http://0.0.0.0:8080/healthz",
    ]
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}


def test_deployment_has_probes_ports_and_resources(rendered: list[dict[str, Any]]) -> None:
    (container,) = one(rendered, "Deployment")["spec"]["template"]["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"health": 8080, "metrics": 9090}
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "health"}
    for kind in ("requests", "limits"):
        assert set(container["resources"][kind]) == {"cpu", "memory"}
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert mounts == {"/tmp"}, "a read-only root file system still needs a writable /tmp"


def test_namespace_enforces_the_restricted_pod_security_standard(rendered: list[dict[str, Any]]) -> None:
    labels = one(rendered, "Namespace")["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"


def test_example_secret_has_only_placeholder_ssh_keys() -> None:
    secret = yaml.safe_load((ROOT / "manifests" / "examples" / "secret.yaml").read_text())
    kubernetes_validate.validate(secret, K8S_VERSION, strict=True)
    assert secret["type"] == "Opaque"
    assert set(secret["stringData"]) == {"ssh-privatekey", "known_hosts"}
    assert all(value.startswith("REPLACE-ME") for value in secret["stringData"].values())
    assert "BEGIN" not in secret["stringData"]["ssh-privatekey"]


def test_dockerfile_passes_hadolint() -> None:
    result = subprocess.run(
        [tool("hadolint"), str(ROOT / "Dockerfile")], capture_output=True, text=True, check=False, cwd=ROOT
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_runs_as_non_root_from_a_build_stage() -> None:
    lines = [line.strip() for line in (ROOT / "Dockerfile").read_text().splitlines()]
    stages = [line for line in lines if line.startswith("FROM ")]
    assert stages == ["FROM python:3.11-slim AS builder", "FROM python:3.11-slim"]
    final = lines[lines.index(stages[-1]) :]
    assert "USER 65532:65532" in final
    assert 'ENTRYPOINT ["kapistrano"]' in final
    assert not any("apt-get" in line or "gcc" in line for line in final)


@pytest.fixture(scope="module")
def namespaced() -> list[dict[str, Any]]:
    """The objects `kubectl kustomize manifests/namespaced/` renders."""
    result = subprocess.run(
        [tool("kubectl"), "kustomize", str(ROOT / "manifests" / "namespaced")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return [d for d in yaml.safe_load_all(result.stdout) if d]


def test_the_namespaced_install_grants_no_cluster_role(namespaced: list[dict[str, Any]]) -> None:
    kinds = sorted((o["kind"], o["metadata"]["name"], o["metadata"].get("namespace")) for o in namespaced)
    assert kinds == [
        ("CustomResourceDefinition", "releases.kapistrano.dev", None),
        ("Deployment", "kapistrano", NAMESPACE),
        ("Namespace", NAMESPACE, None),
        ("Role", "kapistrano", "deploy"),
        ("RoleBinding", "kapistrano", "deploy"),
        ("ServiceAccount", "kapistrano", NAMESPACE),
    ]
    for kind in ("Role", "RoleBinding", "Deployment"):
        kubernetes_validate.validate(one(namespaced, kind), K8S_VERSION, strict=True)


def test_the_namespaced_role_holds_the_cluster_roles_namespaced_rules(
    rendered: list[dict[str, Any]], namespaced: list[dict[str, Any]]
) -> None:
    cluster_scoped = {"clusterkopfpeerings", "customresourcedefinitions", "namespaces"}
    wanted = [r for r in one(rendered, "ClusterRole")["rules"] if not cluster_scoped & set(r["resources"])]
    assert one(namespaced, "Role")["rules"] == wanted
    binding = one(namespaced, "RoleBinding")
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "kapistrano"}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "kapistrano", "namespace": NAMESPACE}]


def test_the_namespaced_operator_serves_only_its_namespace(
    rendered: list[dict[str, Any]], namespaced: list[dict[str, Any]]
) -> None:
    (container,) = one(namespaced, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert container["args"] == ["run", "--namespace", "deploy", "--liveness", "http://0.0.0.0:8080/healthz"]
    for kind in ("Namespace", "ServiceAccount"):
        assert one(namespaced, kind) == one(rendered, kind), f"manifests/namespaced/ has another {kind}"
