"""`kubectl kapistrano status RELEASE --role ROLE`: the status report narrowed to the hosts of one role.

`kubectl get releases` cannot filter the hosts of a Release (they are a list inside one object's
status, and printer columns show one value per object), so the plugin does it, from
status.hosts[].roles.
"""

from __future__ import annotations

from typing import Any

Obj = dict[str, Any]


class NoSuchRole(ValueError):
    """No host of the Release has the role asked for."""


def with_role(obj: Obj, role: str) -> Obj:
    """A copy of the Release whose status lists only the hosts with `role`; raises NoSuchRole (pure).

    A Release without a status yet is returned as it is: there are no hosts to narrow.
    """
    status = obj.get("status")
    if not isinstance(status, dict) or not status.get("hosts"):
        return obj
    hosts = [h for h in status["hosts"] if isinstance(h, dict) and role in (h.get("roles") or [])]
    if not hosts:
        known = sorted({r for h in status["hosts"] if isinstance(h, dict) for r in h.get("roles") or []})
        raise NoSuchRole(f"no host of the Release has the role {role!r} (roles: {', '.join(known) or 'none'})")
    return {**obj, "status": {**status, "hosts": hosts}}
