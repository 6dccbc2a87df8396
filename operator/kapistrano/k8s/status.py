"""The Release status on the API server: the operator's StatusStore.

Saves are merge patches of the /status subresource with the whole status, so lists (conditions,
hosts) are written whole (Rule 7); the engine's StatusRecorder decides when to save.

A load or save that meets the API server down, restarting, throttling or answering 409 is retried
with backoff until it goes through: the rollout on the hosts waits at that step and resumes, rather
than ending with an error and starting over from a status that no longer says what the hosts did.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

import urllib3
from kubernetes.client.exceptions import ApiException

from kapistrano.api.release import GROUP, PLURAL, VERSION
from kapistrano.api.status import Phase, ReleaseStatus
from kapistrano.k8s import kubeapi
from kapistrano.plan.conditions import merge_conditions, stalled_conditions

T = TypeVar("T")
#: Answers that may clear by themselves: conflict, throttling, the server (re)starting or overloaded.
#: 401 and 403 are among them: a restarted API server answers them until its token and RBAC caches
#: are filled, and rights granted later let the rollout resume where it waits (logged meanwhile).
RETRIED_STATUSES = frozenset({401, 403, 409, 429, 500, 502, 503, 504})
FIRST_DELAY, MAX_DELAY = 0.2, 5.0
log = logging.getLogger(__name__)


class ReleaseGone(Exception):
    """The Release was deleted while its status was being written."""


def transient(error: BaseException) -> bool:
    """Whether an API call that raised `error` may succeed if tried again (pure)."""
    if isinstance(error, ApiException):
        return error.status in RETRIED_STATUSES
    return isinstance(error, urllib3.exceptions.HTTPError | OSError)


async def retried(call: Callable[[], T], what: str) -> T:
    """Run a blocking API call in a thread until it does not fail transiently (network I/O, waits)."""
    delay = FIRST_DELAY
    while True:
        try:
            return await asyncio.to_thread(call)
        except Exception as error:
            if not transient(error):
                raise
            log.warning("%s failed (%s); trying again in %.1f s", what, type(error).__name__, delay)
        await asyncio.sleep(delay)
        delay = min(delay * 2, MAX_DELAY)


class ReleaseStatusStore:
    """Loads the status from the Release and saves it with a merge patch of /status."""

    def __init__(self, namespace: str, name: str) -> None:
        self.namespace = namespace
        self.name = name
        self.saves = 0

    async def load(self) -> ReleaseStatus | None:
        """The status as the API server has it now, or None when there is none (network I/O)."""
        body = await retried(self._get, f"reading {self.namespace}/{self.name}")
        raw = body.get("status")
        if not raw or not raw.get("conditions"):
            return None
        return ReleaseStatus.model_validate(raw)

    async def save(self, status: ReleaseStatus) -> None:
        """Write the whole status (network I/O)."""
        await self.patch(status.wire())

    async def patch(self, status: dict[str, Any]) -> None:
        """Merge-patch /status with `status` (network I/O); raises ReleaseGone on 404."""
        await retried(lambda: self._patch({"status": status}), f"writing the status of {self.namespace}/{self.name}")
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
