"""Hook output: where it is kept, what of it a failed hook reports, how the terminal shows it."""

from __future__ import annotations

import io

from kapistrano.cli.display import ProgressView
from kapistrano.engine.events import HostEvent
from kapistrano.hosts.errors import HookFailed
from kapistrano.hosts.hooks import TAIL_CHARS, log_path, tail_of
from kapistrano.k8s.events import describe
from rich.console import Console


def test_the_log_is_named_after_the_release_and_the_hook() -> None:
    path = log_path("/var/www/app/", "/var/www/app/releases/20261128020102", "migrate")
    assert path == "/var/www/app/shared/log/hooks/20261128020102-migrate.log"


def test_the_tail_is_redacted_and_bounded() -> None:
    lines = [f"line {n}" for n in range(500)] + ["DB_PASSWORD=hunter2"]
    tail = tail_of(lines)
    assert tail.endswith("line 499\nDB_PASSWORD=[redacted]")
    assert len(tail) <= TAIL_CHARS + 3


def test_a_failed_hook_becomes_a_warning_event_with_its_last_lines() -> None:
    error = HookFailed("web-1", "migrate", 2, "rake aborted!", "/x/shared/log/hooks/1-migrate.log")
    found = describe(HostEvent("web-1", error.message, reason=error.reason, warning=True))
    assert found is not None
    assert found[:2] == ("Warning", "HookFailed")
    assert found[2].endswith("last lines:\nrake aborted!")


def test_hook_lines_are_printed_with_host_and_hook() -> None:
    out = io.StringIO()
    view = ProgressView(Console(file=out, force_terminal=False), lambda: None, "release app")
    with view:
        view.on_event(HostEvent("web-1", "== 2 CreateUsers: migrating [x]", hook="migrate"))
    assert out.getvalue() == "web-1 migrate| == 2 CreateUsers: migrating [x]\n"
