"""Manager `systemd`: units restarted with systemctl, one unit at a time; a glob expands to loaded units.

`systemctl restart` returns once systemd has stopped the old process (its own stop timeout and
kill escalation apply) and the start job finished, so no waiting happens here beyond that call.
"""

from __future__ import annotations

from kapistrano.api.spec import Service, SystemdManager
from kapistrano.hosts.errors import ServiceError
from kapistrano.hosts.managers.base import (
    EventSink,
    InstanceRestart,
    InstanceState,
    ReadyCheck,
    RestartResult,
    ServiceContext,
    ServiceEvent,
    ServiceState,
    ignore_event,
    settings_of,
)
from kapistrano.hosts.runner import Runner
from kapistrano.hosts.shell import cmd, with_env

GLOB_CHARS = frozenset("*?[")
SHOW_PROPERTIES = "Id,MainPID,ActiveState"


def systemctl(ctx: ServiceContext, settings: SystemdManager, *args: str) -> str:
    """A systemctl command line, through `sudo -n` when asked, with ctx.env applied (pure)."""
    argv = ("sudo", "-n", "systemctl", *args) if settings.sudo else ("systemctl", *args)
    return with_env(ctx.env, cmd(*argv))


def is_glob(unit: str) -> bool:
    """True when a unit name is a pattern to expand (pure)."""
    return bool(GLOB_CHARS & set(unit))


def list_units_command(ctx: ServiceContext, settings: SystemdManager) -> str:
    """The command listing every loaded unit matching the unit glob (pure)."""
    return systemctl(ctx, settings, "list-units", "--all", "--plain", "--no-legend", "--no-pager", "--", settings.unit)


def parse_list_units(output: str) -> list[str]:
    """Unit names from `systemctl list-units --plain --no-legend`, in order, deduplicated (pure).

    The first column is the unit; some versions put a status bullet before it.
    """
    units: list[str] = []
    for line in output.splitlines():
        words = [w for w in line.split() if w not in ("●", "*")]
        if words and "." in words[0] and words[0] not in units:
            units.append(words[0])
    return units


def show_command(ctx: ServiceContext, settings: SystemdManager, units: list[str]) -> str:
    """The command printing Id, MainPID and ActiveState of each unit (pure)."""
    return systemctl(ctx, settings, "show", f"--property={SHOW_PROPERTIES}", "--", *units)


def parse_show(output: str) -> list[InstanceState]:
    """One InstanceState per `systemctl show` block; alive means ActiveState=active (pure)."""
    states: list[InstanceState] = []
    for block in output.strip().split("\n\n"):
        props = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
        if "Id" not in props:
            continue
        pid = props.get("MainPID", "")
        states.append(
            InstanceState(
                props["Id"], int(pid) if pid.isdigit() and pid != "0" else None, props.get("ActiveState") == "active"
            )
        )
    return states


async def units(runner: Runner, ctx: ServiceContext, service: Service) -> list[str]:
    """The unit, or the loaded units its glob matches (side effects: none)."""
    settings = settings_of(service, SystemdManager)
    if not is_glob(settings.unit):
        return [settings.unit]
    result = await runner.run(list_units_command(ctx, settings), timeout=ctx.command_timeout)
    return parse_list_units(result.stdout)


async def status(runner: Runner, ctx: ServiceContext, service: Service) -> ServiceState:
    """Each unit's main pid and whether it is active (side effects: none)."""
    names = await units(runner, ctx, service)
    if not names:
        return ServiceState(service.name, ())
    result = await runner.run(
        show_command(ctx, settings_of(service, SystemdManager), names), timeout=ctx.command_timeout
    )
    return ServiceState(service.name, tuple(parse_show(result.stdout)))


async def show_unit(runner: Runner, ctx: ServiceContext, settings: SystemdManager, unit: str) -> InstanceState:
    """One unit's main pid and whether it is active (side effects: none)."""
    result = await runner.run(show_command(ctx, settings, [unit]), timeout=ctx.command_timeout)
    states = parse_show(result.stdout)
    return states[0] if states else InstanceState(unit, None, False)


async def restart(
    runner: Runner,
    ctx: ServiceContext,
    service: Service,
    *,
    on_event: EventSink = ignore_event,
    check_ready: ReadyCheck | None = None,
) -> RestartResult:
    """Restart each unit in turn and require it to be active (side effects: units restarted)."""
    settings, done = settings_of(service, SystemdManager), []
    names = await units(runner, ctx, service)
    if not names:
        raise ServiceError(runner.name, service.name, f"no loaded unit matches {settings.unit}")
    for unit in names:
        before = await show_unit(runner, ctx, settings, unit)
        on_event(ServiceEvent("stopping", service.name, unit, before.pid))
        await runner.run(systemctl(ctx, settings, "restart", "--", unit), timeout=ctx.command_timeout)
        after = await show_unit(runner, ctx, settings, unit)
        if not after.alive:
            raise ServiceError(runner.name, service.name, f"{unit} is not active after restart")
        on_event(ServiceEvent("started", service.name, unit, after.pid))
        done.append(InstanceRestart(unit, before.pid, after.pid))
    if check_ready is not None:
        await check_ready()
    return RestartResult(service.name, tuple(done))
