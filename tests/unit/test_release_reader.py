"""The operator reads a Release from kopf's live body again only when it changed."""

from __future__ import annotations

from typing import Any

import pytest
from kapistrano.k8s.handlers import ReleaseReader, SpecInvalid, read_release


def body(generation: int = 1, hosts: int = 3, **annotations: str) -> dict[str, Any]:
    """A Release body as kopf holds it, with a status as big as its hosts."""
    spec = {
        "application": "billing",
        "version": f"v{generation}",
        "source": {"path": "/opt/billing"},
        "hosts": [{"name": f"h{i}", "address": f"10.0.0.{i + 1}"} for i in range(hosts)],
    }
    meta = {"name": "billing", "namespace": "apps", "uid": "u-1", "generation": generation, "annotations": annotations}
    status = {"hosts": [{"name": f"h{i}", "phase": "Ready"} for i in range(hosts)]}
    return {
        "apiVersion": "kapistrano.dev/v1alpha1",
        "kind": "Release",
        "metadata": meta,
        "spec": spec,
        "status": status,
    }


def test_an_unchanged_body_gives_the_same_release_and_a_change_a_new_one() -> None:
    live = body()
    read = ReleaseReader()
    first = read(live)
    live["status"]["hosts"][0]["phase"] = "Restarting"  # our own status writes change nothing read
    assert read(live) is first
    assert first == read_release(live)
    live["metadata"]["annotations"]["kapistrano.dev/restart"] = "now"
    again = read(live)
    assert again is not first
    assert again.metadata.annotations == {"kapistrano.dev/restart": "now"}
    live["spec"]["version"], live["metadata"]["generation"] = "v2", 2
    assert read(live).spec.version == "v2"
    assert read_release(live).status is None, "the status is never read into the Release"


def test_an_invalid_spec_is_reported_at_every_read() -> None:
    live = body()
    read = ReleaseReader()
    read(live)
    live["spec"]["hosts"], live["metadata"]["generation"] = [], 2
    for _ in range(2):
        with pytest.raises(SpecInvalid):
            read(live)
