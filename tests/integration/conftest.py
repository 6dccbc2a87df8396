"""Fixtures shared by the integration tests that roll the sample worker across lab hosts."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from kapistrano.lab import HostLab

from .appkit import App, AppFactory


@pytest.fixture
def app_factory(lab_factory: Any) -> Iterator[AppFactory]:
    """Make sample apps on a given lab or on a fresh one of n hosts; each app's directory is removed after the test."""
    made: list[App] = []

    def make(hosts: HostLab | int, *, drain: float = 0.3, boot: float = 0.2) -> App:
        lab = lab_factory(hosts) if isinstance(hosts, int) else hosts
        app = App(lab, drain=drain, boot=boot)
        made.append(app)
        return app

    try:
        yield make
    finally:
        for app in made:
            app.close()


@pytest.fixture
def app(lab: HostLab, app_factory: AppFactory) -> App:
    """The sample worker on three lab hosts (a module may define its own)."""
    return app_factory(lab)


@pytest.fixture
def two_host_app(app_factory: AppFactory) -> App:
    """The sample app on two lab hosts (quick drain and boot)."""
    return app_factory(2)
