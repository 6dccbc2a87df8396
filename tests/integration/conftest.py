"""Fixtures shared by the integration tests that roll the sample worker across three lab hosts."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from kapistrano.lab import HostLab

from .appkit import App


@pytest.fixture
def app(lab: HostLab) -> Iterator[App]:
    """The sample worker on three lab hosts (a module may define its own); its directory is removed after the test."""
    made = App(lab, drain=0.3, boot=0.2)
    yield made
    made.close()


@pytest.fixture
def two_host_app(lab_factory: object) -> Iterator[App]:
    """The sample app on two lab hosts (quick drain and boot); its directory is removed afterwards."""
    lab: HostLab = lab_factory(2)  # type: ignore[operator]
    made = App(lab, drain=0.3, boot=0.2)
    yield made
    made.close()
