"""The API server does what kopf, kubectl and the operator rely on (generation, status subresource, conflicts)."""

from __future__ import annotations

import json
import subprocess

import pytest

from ..unit.test_release_validation import example
from .kube import Kube

pytestmark = pytest.mark.e2e

RELEASE = {**example(), "metadata": {"name": "demo"}}
RELEASE["spec"] |= {"version": "v1"}


def test_created_objects_get_uid_generation_and_resource_version(kube: Kube) -> None:
    ns = kube.namespace()
    kube.apply(RELEASE, ns)
    meta = kube.get_release(ns, "demo")["metadata"]
    assert meta["generation"] == 1
    assert meta["uid"]
    assert meta["creationTimestamp"]
    assert int(meta["resourceVersion"]) > 0


def test_generation_follows_spec_changes_but_not_metadata_or_status(kube: Kube) -> None:
    ns = kube.namespace()
    kube.apply(RELEASE, ns)
    kube.kubectl("annotate", "release", "demo", "-n", ns, "example.com/x=1")
    after_annotation = kube.get_release(ns, "demo")["metadata"]
    assert after_annotation["generation"] == 1
    kube.kubectl("patch", "release", "demo", "-n", ns, "--type", "merge", "-p", '{"spec": {"version": "v2"}}')
    assert kube.get_release(ns, "demo")["metadata"]["generation"] == 2
    status = {"status": {"phase": "Ready"}}
    kube.kubectl(
        "patch", "release", "demo", "-n", ns, "--subresource", "status", "--type", "merge", "-p", json.dumps(status)
    )
    got = kube.get_release(ns, "demo")
    assert got["metadata"]["generation"] == 2
    assert got["status"]["phase"] == "Ready"
    assert int(got["metadata"]["resourceVersion"]) > int(after_annotation["resourceVersion"])


def test_status_changes_only_through_the_status_subresource(kube: Kube) -> None:
    ns = kube.namespace()
    kube.apply({**RELEASE, "status": {"phase": "Failed"}}, ns)
    assert "status" not in kube.get_release(ns, "demo")
    kube.kubectl("patch", "release", "demo", "-n", ns, "--type", "merge", "-p", '{"status": {"phase": "Failed"}}')
    assert "status" not in kube.get_release(ns, "demo")
    patch = '{"spec": {"version": "v9"}, "status": {"phase": "Ready"}}'
    kube.kubectl("patch", "release", "demo", "-n", ns, "--subresource", "status", "--type", "merge", "-p", patch)
    got = kube.get_release(ns, "demo")
    assert got["spec"]["version"] == "v1"
    assert got["status"]["phase"] == "Ready"


def test_kubectl_lists_releases_with_printer_columns(kube: Kube) -> None:
    ns = kube.namespace()
    kube.apply(RELEASE, ns)
    kube.apply({**RELEASE, "metadata": {"name": "other"}}, ns)
    listed = json.loads(kube.kubectl("get", "releases", "-n", ns, "-o", "json").stdout)
    assert listed["kind"] == "List" or listed["kind"].endswith("List")
    assert sorted(i["metadata"]["name"] for i in listed["items"]) == ["demo", "other"]
    names = kube.kubectl("get", "rel", "-n", ns, "-o", "name").stdout.split()
    assert sorted(names) == ["release.kapistrano.dev/demo", "release.kapistrano.dev/other"]


def test_kubectl_wait_returns_when_the_condition_is_written(kube: Kube) -> None:
    ns = kube.namespace()
    kube.apply(RELEASE, ns)
    command = [kube.binary, "--kubeconfig", str(kube.kubeconfig), "wait", "-n", ns, "--for=condition=Ready"]
    waiter = subprocess.Popen([*command, "release/demo", "--timeout=30s"], stdout=subprocess.PIPE, text=True)
    try:
        condition = {
            "type": "Ready",
            "status": "True",
            "reason": "Done",
            "message": "",
            "lastTransitionTime": "2026-01-01T00:00:00Z",
            "observedGeneration": 1,
        }
        status = {"status": {"observedGeneration": 1, "conditions": [condition]}}
        kube.kubectl(
            "patch", "release", "demo", "-n", ns, "--subresource", "status", "--type", "merge", "-p", json.dumps(status)
        )
        out, _ = waiter.communicate(timeout=40)
    finally:
        if waiter.poll() is None:
            waiter.kill()
            waiter.wait()
    assert waiter.returncode == 0
    assert "condition met" in out


def test_secrets_are_created_as_json_and_read_back(kube: Kube) -> None:
    ns = kube.namespace()
    kube.create_secret(ns, "creds", {"ssh-privatekey": b"k", "known_hosts": "h"})
    got = json.loads(kube.kubectl("get", "secret", "creds", "-n", ns, "-o", "json").stdout)
    assert got["data"] == {"ssh-privatekey": "aw==", "known_hosts": "aA=="}
    kube.create_secret(ns, "creds", {"known_hosts": "x"})
    got = json.loads(kube.kubectl("get", "secret", "creds", "-n", ns, "-o", "json").stdout)
    assert got["data"]["known_hosts"] == "eA=="


def test_a_missing_release_is_not_found(kube: Kube) -> None:
    ns = kube.namespace()
    done = kube.kubectl("get", "release", "nope", "-n", ns, check=False)
    assert done.returncode != 0
    assert "NotFound" in done.stderr or "not found" in done.stderr


def test_a_write_naming_a_stale_resource_version_conflicts(kube: Kube) -> None:
    ns = kube.namespace()
    kube.apply(RELEASE, ns)
    kube.kubectl("patch", "release", "demo", "-n", ns, "--type", "merge", "-p", '{"spec": {"version": "v2"}}')
    patch = json.dumps({"metadata": {"resourceVersion": "1"}, "spec": {"version": "v3"}})
    done = kube.kubectl("patch", "release", "demo", "-n", ns, "--type", "merge", "-p", patch, check=False)
    assert done.returncode != 0
    assert kube.get_release(ns, "demo")["spec"]["version"] == "v2"


def test_kubectl_get_prints_the_release_printer_columns(kube: Kube) -> None:
    ns = kube.namespace()
    kube.apply(RELEASE, ns)
    header, row = kube.kubectl("get", "releases", "-n", ns).stdout.splitlines()
    assert header.split() == ["NAME", "VERSION", "READY", "PHASE", "AGE"]
    assert row.split()[:2] == ["demo", "v1"]
    wide = kube.kubectl("get", "release", "demo", "-n", ns, "-o", "wide").stdout
    assert "MESSAGE" in wide.splitlines()[0]
