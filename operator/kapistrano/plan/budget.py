"""The unavailability budget: how many hosts may be down at once (pure)."""

from __future__ import annotations

import math

from kapistrano.api.spec import Manager, ReleaseSpec, ReplacePolicy


def max_unavailable(value: int | str, total: int) -> int:
    """maxUnavailable as a host count: percent rounded down, never below 1 nor above total (pure)."""
    count = math.floor(total * int(value.rstrip("%")) / 100) if isinstance(value, str) else value
    return max(1, min(count, max(total, 1)))


def available_required(value: int | str, total: int) -> int:
    """Hosts that must stay available for the Available condition (pure)."""
    return max(0, total - max_unavailable(value, total))


def surges(spec: ReleaseSpec) -> bool:
    """Every service replaces its instances StartFirst: a host being published keeps serving (pure)."""
    return bool(spec.services) and all(
        s.manager == Manager.PIDFILE and s.pidfile is not None and s.pidfile.replace == ReplacePolicy.START_FIRST
        for s in spec.services
    )
