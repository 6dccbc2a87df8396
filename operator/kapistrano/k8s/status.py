"""The Release status on the API server: the operator's StatusStore.

Saves are merge patches of the /status subresource with the whole status, so lists (conditions,
hosts) are written whole (Rule 7); the engine's StatusRecorder decides when to save.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

from kubernetes.client.exceptions import ApiException

from kapistrano.api.release import GROUP, PLURAL, VERSION
from kapistrano.api.status import Phase, ReleaseStatus
from kapistrano.k8s import kubeapi
from kapistrano.plan.conditions import merge_conditions, stalled_conditions


class ReleaseGone(Exception):
    """The Release was deleted while its status was being written."""


class ReleaseStatusStore:
    """Loads the status from the Release and saves it with a merge patch of /status."""

    def __init__(self, namespace: str, name: str) -> None:
        self.namespace = namespace
        self.name = name
        self.saves = 0

    async def load(self) -> ReleaseStatus | None:
        """The status as the API server has it now, or None when there is none (network I/O)."""
        body = await asyncio.to_thread(self._get)
        raw = body.get("status")
        if not raw or not raw.get("conditions"):
            return None
        return ReleaseStatus.model_validate(raw)

    async def save(self, status: ReleaseStatus) -> None:
        """Write the whole status (network I/O)."""
        await self.patch(status.wire())

    async def patch(self, status: dict[str, Any]) -> None:
        """Merge-patch /status with `status` (network I/O); raises ReleaseGone on 404."""
        await asyncio.to_thread(self._patch, {"status": status})
        self.saves += 1

    def _get(self) -> dict[str, Any]:
        """GET the Release (blocking network I/O)."""
        try:
            found: dict[str, Any] = kubeapi.custom_objects().get_namespaced_custom_object(
                GROUP, VERSION, self.namespace, PLURAL, self.name
            )
        except ApiException as exc:
            if exc.status == 404:
                raise ReleaseGone(f"{self.namespace}/{self.name}") from None
            raise
        return found

    def _patch(self, body: dict[str, Any]) -> None:
        """PATCH /status as a JSON merge patch (blocking network I/O)."""
        try:
            kubeapi.custom_objects().patch_namespaced_custom_object_status(
                GROUP,
                VERSION,
                self.namespace,
                PLURAL,
                self.name,
                body,
                _content_type="application/merge-patch+json",
            )
        except ApiException as exc:
            if exc.status == 404:
                raise ReleaseGone(f"{self.namespace}/{self.name}") from None
            raise


def stalled_status(
    previous: ReleaseStatus | None, reason: str, message: str, generation: int, now: datetime
) -> ReleaseStatus:
    """The status of a Release that cannot be rolled out until something is fixed: Stalled=True (pure).

    Host entries and history are kept as last observed; only the summary and conditions change.
    """
    base = previous.model_copy(deep=True) if previous is not None else ReleaseStatus()
    base.conditions = merge_conditions(base.conditions, stalled_conditions(reason, message), generation, now)
    base.observed_generation = generation
    base.phase = Phase.FAILED
    base.message = message
    return base
