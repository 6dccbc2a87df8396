"""kstatus conditions: built whole each time, with lastTransitionTime kept while status is unchanged (pure)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from kapistrano.api.status import Condition, ConditionStatus, ConditionType, Reason, format_time

TRUE, FALSE, UNKNOWN = ConditionStatus.TRUE, ConditionStatus.FALSE, ConditionStatus.UNKNOWN

#: Reasons that stop the rollout until the spec (or a Secret) changes.
TERMINAL_REASONS = frozenset(
    {
        Reason.HOST_FAILED,
        Reason.INVALID_SPEC,
        Reason.HOST_KEY_MISMATCH,
        Reason.AUTH_FAILED,
        Reason.CREDENTIALS_INVALID,
        Reason.INTERNAL_ERROR,
        Reason.ABORTED,
    }
)
#: What HostKeysVerified=False says; also the warning of `kapistrano validate` and the Event.
INSECURE_HOST_KEYS_MESSAGE = (
    "spec.ssh.insecureSkipHostKeyCheck is true: host keys are not verified, so anyone on the network path "
    "can pose as a host and receive the deploy key's sessions; add known_hosts to the Secret instead"
)


@dataclass(frozen=True)
class Wanted:
    """A condition as the planner wants it, before times are filled in."""

    type: str
    status: ConditionStatus
    reason: str
    message: str = ""


def host_keys_condition(insecure: bool) -> Wanted:
    """HostKeysVerified: False while spec.ssh.insecureSkipHostKeyCheck is set (pure)."""
    if insecure:
        return Wanted(
            ConditionType.HOST_KEYS_VERIFIED, FALSE, Reason.INSECURE_SKIP_HOST_KEY_CHECK, INSECURE_HOST_KEYS_MESSAGE
        )
    verified = "host keys are checked against known_hosts"
    return Wanted(ConditionType.HOST_KEYS_VERIFIED, TRUE, Reason.KNOWN_HOSTS, verified)


def merge_conditions(
    previous: list[Condition], wanted: list[Wanted], generation: int, now: datetime
) -> list[Condition]:
    """Conditions to write: lastTransitionTime changes only when a condition's status flips (pure)."""
    before = {c.type: c for c in previous}
    out = []
    for w in wanted:
        old = before.get(w.type)
        flipped = old is None or old.status != w.status
        out.append(
            Condition(
                type=w.type,
                status=w.status,
                observed_generation=generation,
                last_transition_time=format_time(now) if flipped or old is None else old.last_transition_time,
                reason=w.reason,
                message=w.message,
            )
        )
    return out


def first_sight(generation: int, now: datetime) -> list[Condition]:
    """Ready=Unknown and Reconciling=True, written at once for a new object (kstatus) (pure)."""
    return merge_conditions(
        [],
        [
            Wanted(ConditionType.READY, UNKNOWN, Reason.RECONCILING, "kapistrano is reading the hosts"),
            Wanted(ConditionType.RECONCILING, TRUE, Reason.RECONCILING, "kapistrano is reading the hosts"),
            Wanted(ConditionType.STALLED, FALSE, Reason.AS_EXPECTED),
        ],
        generation,
        now,
    )


def stalled_conditions(reason: str, message: str) -> list[Wanted]:
    """Conditions for a rollout that cannot go on by itself (pure)."""
    return [
        Wanted(ConditionType.READY, FALSE, reason, message),
        Wanted(ConditionType.RECONCILING, FALSE, reason, message),
        Wanted(ConditionType.STALLED, TRUE, reason, message),
    ]
