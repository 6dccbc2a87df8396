"""Builders for planner tests: specs, observations and previous statuses in a few words."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from kapistrano.api.spec import ReleaseSpec
from kapistrano.api.status import HostStatus, ReleaseStatus, format_time
from kapistrano.plan import HostObservation, PlanInput

NOW = datetime(2026, 11, 28, 2, 0, 0, tzinfo=UTC)


def ago(seconds: float) -> str:
    """An RFC 3339 time `seconds` before NOW."""
    return format_time(NOW - timedelta(seconds=seconds))


def make_spec(n: int = 3, version: str = "v2", names: list[str] | None = None, **spec: Any) -> ReleaseSpec:
    """A valid spec with n hosts named host-1..host-n (or `names`), plus overrides."""
    strategy = spec.pop("strategy", {})
    hosts = [
        {"name": name, "address": f"10.0.{i // 250}.{i % 250 + 1}"}
        for i, name in enumerate(names or [f"host-{i + 1}" for i in range(n)])
    ]
    return ReleaseSpec.model_validate(
        {
            "application": "app",
            "version": version,
            "source": {"path": "/opt/app"},
            "hosts": hosts,
            "strategy": strategy,
            **spec,
        }
    )


def observe(
    name: str, version: str | None = "v1", *, ready: bool | None = True, has: bool = False, **kw: Any
) -> HostObservation:
    """An observation of a host on `version`; `has` = the release for spec.version exists."""
    return HostObservation(name=name, version=version, release=None if version is None else f"rel-{version}",
                           ready=ready, has_desired_release=has or False, **kw)  # fmt: skip


def prev_status(version: str = "v2", hosts: dict[str, dict[str, Any]] | None = None, **kw: Any) -> ReleaseStatus:
    """A previous status for the rollout of `version`, with per-host entries."""
    entries = [HostStatus(name=name, **fields) for name, fields in (hosts or {}).items()]
    return ReleaseStatus(version=version, observed_generation=kw.pop("observed_generation", 1), hosts=entries,
                         last_progress_time=kw.pop("last_progress_time", format_time(NOW)), **kw)  # fmt: skip


def make_input(spec: ReleaseSpec, observations: list[HostObservation], status: ReleaseStatus | None = None,
               *, generation: int = 1, now: datetime = NOW, token: str | None = None,
               busy: frozenset[str] = frozenset()) -> PlanInput:  # fmt: skip
    """A PlanInput from its parts."""
    return PlanInput(spec=spec, generation=generation, status=status or prev_status(), now=now,
                     observations={o.name: o for o in observations}, restart_token=token, busy=busy)  # fmt: skip
