"""Fixtures of the integration tests that drive the kapistrano command."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from kapistrano.lab import HostLab

from .appkit import App


@pytest.fixture
def app(lab_factory: object) -> Iterator[App]:
    """The sample app on two lab hosts (quick drain and boot); its directory is removed afterwards."""
    lab: HostLab = lab_factory(2)  # type: ignore[operator]
    made = App(lab, drain=0.3, boot=0.2)
    yield made
    made.close()
