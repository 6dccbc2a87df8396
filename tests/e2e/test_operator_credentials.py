"""The operator uses only Secrets that opt in to holding its SSH credentials."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import pytest
from kapistrano.lab import HostLab

from .kube import Kube
from .test_operator import SECRET, Scene, condition, running_scene

pytestmark = pytest.mark.e2e


@pytest.fixture
def scene(kube: Kube, lab: HostLab) -> Iterator[Scene]:
    """A Scene with the operator running; everything is stopped afterwards."""
    with running_scene(kube, lab) as made:
        yield made


def test_an_unlabelled_secret_is_refused_until_it_opts_in(scene: Scene) -> None:
    keys = {"ssh-privatekey": scene.lab.client_key.read_bytes(), "known_hosts": scene.lab.known_hosts.read_bytes()}
    data = {key: base64.b64encode(value).decode() for key, value in keys.items()}
    unlabelled = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": SECRET}, "type": "Opaque", "data": data}
    scene.kube.apply(unlabelled, scene.ns)
    scene.apply("v1")
    stalled = scene.wait_stalled("SecretNotOptedIn")
    message = condition(stalled, "Stalled")["message"]  # type: ignore[index]
    assert f"{scene.ns}/{SECRET}" in message
    assert 'kapistrano.dev/ssh-credentials="true"' in message
    assert not any(h.path("/var/www/app").exists() for h in scene.lab.hosts), "a host was touched"
    scene.kube.kubectl("label", "secret", SECRET, "-n", scene.ns, "kapistrano.dev/ssh-credentials=true")
    assert scene.wait_ready()["status"]["ready"] == "3/3"
