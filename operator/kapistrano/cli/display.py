"""Live per-host progress for the terminal (rich), or one line per event when output is not a terminal."""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from kapistrano.api.status import ReleaseStatus
from kapistrano.engine.events import HostEvent

PHASE_STYLE = {
    "Ready": "green",
    "RolledBack": "yellow",
    "Failed": "bold red",
    "Unreachable": "red",
    "Conflict": "red",
    "Restarting": "bold cyan",
    "Publishing": "cyan",
    "WaitingReady": "cyan",
    "Updating": "blue",
    "Updated": "blue",
}


def status_table(status: ReleaseStatus, title: str) -> Group:
    """A renderable of the Release status: a header line and one row per host (pure)."""
    header = Text.assemble(
        (title, "bold"),
        f"  version {status.version or '-'}  ready {status.ready}  ",
        (status.phase, PHASE_STYLE.get(str(status.phase), "")),
    )
    table = Table(expand=False, show_edge=False, pad_edge=False)
    for column in ("HOST", "PHASE", "VERSION", "RELEASE", "READY", "MESSAGE"):
        table.add_column(column, no_wrap=column != "MESSAGE")
    for host in status.hosts:
        table.add_row(
            host.name,
            Text(str(host.phase), style=PHASE_STYLE.get(str(host.phase), "")),
            host.version or "-",
            host.release or "-",
            "yes" if host.ready else "no",
            "; ".join([host.message, *(f"not in the spec: {o}" for o in host.orphans)]).strip("; "),
        )
    judged = probe_lines([(h.name, h.probe) for h in status.hosts])
    return Group(header, table, judged, Text(status.message, style="dim"))


def probe_lines(probes: list[tuple[str, str | None]]) -> Text:
    """Which readiness probes judged which hosts, one line per distinct set of probes (pure)."""
    groups: dict[str, list[str]] = {}
    for host, probe in probes:
        if probe:
            groups.setdefault(probe, []).append(host)
    return Text("\n".join(f"judged by {probe}: {', '.join(hosts)}" for probe, hosts in groups.items()), style="dim")


class ProgressView:
    """Shows progress while a rollout runs; call `on_event` for each host event."""

    def __init__(self, console: Console, status: Callable[[], ReleaseStatus | None], title: str) -> None:
        self.console = console
        self.status = status
        self.title = title
        self.live: Live | None = None

    def __enter__(self) -> ProgressView:
        if self.console.is_terminal:
            self.live = Live(console=self.console, refresh_per_second=8, transient=False)
            self.live.__enter__()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self.live is not None:
            self.refresh()
            self.live.__exit__(kind, exc, tb)
            self.live = None

    def refresh(self) -> None:
        """Redraw the table from the current status (writes to the terminal)."""
        status = self.status()
        if self.live is not None and status is not None:
            self.live.update(status_table(status, self.title))

    def on_event(self, event: HostEvent) -> None:
        """Show one event: redraw the live table, or print a line (writes to the terminal).

        A line of a hook's output is printed as it comes, prefixed by host and hook (above the live table).
        """
        if event.hook is not None:
            console = self.live.console if self.live is not None else self.console
            console.print(f"{event.host} {event.hook}| {event.message}", markup=False, highlight=False)
            return
        if self.live is not None:
            self.refresh()
            return
        phase = f"{event.phase}" if event.phase else ""
        style = "red" if event.warning else ""
        self.console.print(f"{event.host:<14} {phase:<13} {event.message}", style=style, highlight=False)
