"""The sharded install (manifests/sharded/): two replicas per shard that peer per shard, with the cluster-wide RBAC."""

from __future__ import annotations

import argparse
import subprocess
from typing import Any

import kubernetes_validate
import pytest
import yaml
from kapistrano.cli import run_cmd
from kapistrano.k8s.sharding import Placement

from .crdcheck import ROOT
from .test_manifests import K8S_VERSION, NAMESPACE, one, tool


def render(folder: str) -> list[dict[str, Any]]:
    """The objects `kubectl kustomize manifests/<folder>` renders."""
    done = subprocess.run(
        [tool("kubectl"), "kustomize", str(ROOT / "manifests" / folder)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    return [d for d in yaml.safe_load_all(done.stdout) if d]


@pytest.fixture(scope="module")
def sharded() -> list[dict[str, Any]]:
    """The sharded install as kustomize renders it."""
    return render("sharded")


def operator_args(sharded: list[dict[str, Any]], ordinal: int) -> argparse.Namespace:
    """`kapistrano run` arguments of the StatefulSet's pod `ordinal`, as the kubelet expands them."""
    (container,) = one(sharded, "StatefulSet")["spec"]["template"]["spec"]["containers"]
    args = [a.replace("$(POD_NAME)", f"kapistrano-{ordinal}") for a in container["args"]]
    parser = argparse.ArgumentParser()
    run_cmd.register(parser.add_subparsers())
    return parser.parse_args(args)


def test_the_sharded_install_renders_a_statefulset_peerings_and_the_cluster_wide_rbac(
    sharded: list[dict[str, Any]],
) -> None:
    kinds = sorted((o["kind"], o["metadata"]["name"]) for o in sharded)
    assert kinds == [
        ("ClusterKopfPeering", "kapistrano-shard-0"),
        ("ClusterKopfPeering", "kapistrano-shard-1"),
        ("ClusterRole", "kapistrano"),
        ("ClusterRoleBinding", "kapistrano"),
        ("CustomResourceDefinition", "clusterkopfpeerings.kopf.dev"),
        ("CustomResourceDefinition", "releases.kapistrano.dev"),
        ("Namespace", NAMESPACE),
        ("ServiceAccount", "kapistrano"),
        ("StatefulSet", "kapistrano"),
    ]
    for kind in ("StatefulSet", "ClusterRole", "ClusterRoleBinding", "Namespace", "ServiceAccount"):
        kubernetes_validate.validate(one(sharded, kind), K8S_VERSION, strict=True)


def test_the_sharded_install_has_the_same_rbac_namespace_and_pod_as_the_cluster_wide_one(
    sharded: list[dict[str, Any]],
) -> None:
    plain = render(".")
    for kind in ("Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding"):
        assert one(sharded, kind) == one(plain, kind), f"manifests/sharded/ has another {kind}"
    pod = one(sharded, "StatefulSet")["spec"]["template"]["spec"]
    single = one(plain, "Deployment")["spec"]["template"]["spec"]
    (container,), (alone,) = pod["containers"], single["containers"]
    for key in ("securityContext", "livenessProbe", "readinessProbe", "resources", "ports", "image"):
        assert container[key] == alone[key], key
    assert pod["securityContext"] == single["securityContext"]


def test_every_shard_has_an_active_replica_a_standby_and_its_peering_object(sharded: list[dict[str, Any]]) -> None:
    replicas = one(sharded, "StatefulSet")["spec"]["replicas"]
    placements = [run_cmd.placement_from(operator_args(sharded, i)) for i in range(replicas)]
    shards = placements[0].shards
    assert replicas == 2 * shards
    assert sorted((p.shard, p.rank) for p in placements) == [(n, r) for n in range(shards) for r in (0, 1)]
    peerings = {o["metadata"]["name"] for o in sharded if o["kind"] == "ClusterKopfPeering"}
    names = {p.peering_name(operator_args(sharded, 0).peering) for p in placements}
    assert names == peerings
    assert Placement(shard=0, shards=shards).priority > Placement(shard=0, shards=shards, rank=1).priority
