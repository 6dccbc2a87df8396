"""Shared pytest fixtures. Each group of fixtures lives in its own marked section."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from kapistrano.lab import HostLab, LabError, require_lab_support

# ------------------------------------------------------------------------------------------------
# Test-host lab (kapistrano.lab): real sshd hosts in network + mount namespaces.
# Tests that use `lab` or `lab_factory` get the `hosts` marker automatically and are skipped only
# when the machine cannot run the lab (require_lab_support() gives the reason).
# ------------------------------------------------------------------------------------------------

LAB_FIXTURES = {"lab", "lab_factory"}
LabFactory = Callable[..., HostLab]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that uses a lab fixture with `hosts`."""
    for item in items:
        if LAB_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.hosts)


@pytest.fixture
def lab_factory() -> Iterator[LabFactory]:
    """Start labs on demand: `lab_factory(count, **HostLab kwargs)`; all are closed after the test."""
    reason = require_lab_support()
    if reason is not None:
        pytest.skip(reason)
    labs: list[HostLab] = []

    def start(count: int = 3, **kwargs: object) -> HostLab:
        lab = HostLab(count, **kwargs)  # type: ignore[arg-type]
        labs.append(lab)
        return lab.start()

    yield start
    errors = []
    for lab in reversed(labs):
        try:
            lab.close()
        except LabError as error:  # close every lab before reporting
            errors.append(error)
    if errors:
        raise errors[0]


@pytest.fixture
def lab(lab_factory: LabFactory) -> HostLab:
    """A started lab of three hosts (host1..host3), closed after the test."""
    return lab_factory(3)


# ------------------------------------------------------------------------------------------------


# ------------------------------------------------------------------------------------------------
# Kubernetes API server (tests/e2e/kube.py): one real kube-apiserver per session, or the cluster of
# KAPISTRANO_E2E_KUBECONFIG; `kube` gives each test fresh namespaces on it.
# ------------------------------------------------------------------------------------------------

from .e2e.kube import kube, kube_access  # noqa: E402

__all__ = ["kube", "kube_access"]
