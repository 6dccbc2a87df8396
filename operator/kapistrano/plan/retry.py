"""A retry request: a failed spec.version is tried again once per request, without a version change (pure)."""

from __future__ import annotations

from dataclasses import replace

from kapistrano.api.status import HostStatus, ReleaseStatus
from kapistrano.plan.model import PlanInput


def retry_due(status: ReleaseStatus, version: str, token: str | None) -> bool:
    """A retry request not acted on yet, while `version` is the failed one (pure)."""
    if token is None or token == status.retried_for:
        return False
    return status.failed_version == version or any(h.failed_version == version for h in status.hosts)


def with_retry(inp: PlanInput) -> PlanInput:
    """The input with a new retry request acted on: failure forgotten, retry counted (pure).

    A request that finds nothing failed is only recorded, so it is never acted on later.
    """
    token, status = inp.retry_token, inp.status
    if token is None or token == status.retried_for:
        return inp
    if not retry_due(status, inp.spec.version, token):
        return replace(inp, status=status.model_copy(update={"retried_for": token}))
    hosts = [_cleared(h) for h in status.hosts]
    update = {"failed_version": None, "retried_for": token, "retries": status.retries + 1, "hosts": hosts}
    return replace(inp, status=status.model_copy(update=update))


def _cleared(host: HostStatus) -> HostStatus:
    """A host's entry without its failure, so that the planner acts on it again (pure)."""
    if host.failed_version is None and not host.rollback_failed:
        return host
    return host.model_copy(update={"failed_version": None, "rollback_failed": False})
