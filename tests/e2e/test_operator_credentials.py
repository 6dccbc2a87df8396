"""The operator uses only Secrets that opt in to holding its SSH credentials."""

from __future__ import annotations

import base64

import pytest
from kapistrano.lab import HostLab

from .kube import Kube
from .test_operator import SECRET, Scene, condition, running_scene, wait_until
from .test_operator_metrics import fetch, free_port, samples, value

pytestmark = pytest.mark.e2e


def unlabelled_secret(scene: Scene) -> dict[str, object]:
    """The SSH Secret of the scene without the opt-in label."""
    keys = {"ssh-privatekey": scene.lab.client_key.read_bytes(), "known_hosts": scene.lab.known_hosts.read_bytes()}
    data = {key: base64.b64encode(value).decode() for key, value in keys.items()}
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": SECRET}, "type": "Opaque", "data": data}


def test_an_unlabelled_secret_is_refused_until_it_opts_in(kube: Kube, lab: HostLab) -> None:
    with running_scene(kube, lab) as scene:
        scene.kube.apply(unlabelled_secret(scene), scene.ns)
        scene.apply("v1")
        stalled = scene.wait_stalled("SecretNotOptedIn")
        message = condition(stalled, "Stalled")["message"]  # type: ignore[index]
        assert f"{scene.ns}/{SECRET}" in message
        assert 'kapistrano.dev/ssh-credentials="true"' in message
        assert not any(h.path("/var/www/app").exists() for h in scene.lab.hosts), "a host was touched"
        scene.kube.kubectl("label", "secret", SECRET, "-n", scene.ns, "kapistrano.dev/ssh-credentials=true")
        assert scene.wait_ready()["status"]["ready"] == "3/3"


def test_skipping_host_key_checks_is_an_event_a_condition_a_status_field_and_a_metric(kube: Kube, lab: HostLab) -> None:
    port = free_port()
    with running_scene(kube, lab, ["--metrics-port", str(port)]) as scene:
        scene.secret(known_hosts=b"")
        scene.apply("v1", ssh={"user": "root", "connectTimeoutSeconds": 3, "insecureSkipHostKeyCheck": True})
        ready = scene.wait_ready()
        verified = condition(ready, "HostKeysVerified")
        assert verified is not None
        assert (verified["status"], verified["reason"]) == ("False", "InsecureSkipHostKeyCheck")
        assert ready["status"]["hostKeysVerified"] is False
        warnings = [e for e in scene.kube.events(scene.ns) if e.get("reason") == "InsecureHostKeys"]
        assert warnings, "no InsecureHostKeys Event"
        assert warnings[0]["type"] == "Warning"
        ours = {"namespace": scene.ns, "release": "app"}
        found = wait_until(
            lambda: (answer := fetch(f"http://127.0.0.1:{port}/metrics")) and samples(answer[1]), "metrics", 30
        )
        assert value(found, "kapistrano_insecure_host_keys", **ours) == 1


def test_an_operator_that_forbids_insecure_host_keys_stalls_such_a_release(kube: Kube, lab: HostLab) -> None:
    with running_scene(kube, lab, ["--forbid-insecure-host-keys"]) as scene:
        scene.secret()
        scene.apply("v1", ssh={"user": "root", "connectTimeoutSeconds": 3, "insecureSkipHostKeyCheck": True})
        stalled = scene.wait_stalled("InsecureHostKeysForbidden")
        assert "--forbid-insecure-host-keys" in condition(stalled, "Stalled")["message"]  # type: ignore[index]
        assert not any(h.path("/var/www/app").exists() for h in scene.lab.hosts), "a host was touched"
