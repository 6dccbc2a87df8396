"""Roles in the planner: per-role budgets inside the Release's, the primary host first for `once` hooks."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kapistrano.api.spec import ReleaseSpec
from kapistrano.plan import ActionKind, HostObservation, max_unavailable, plan
from pydantic import ValidationError

from .planfixtures import make_input, observe, prev_status

ROLES = {"web-1": ["web"], "web-2": ["web"], "job-1": ["worker"], "job-2": ["worker"], "job-3": ["worker", "db"]}


def role_spec(strategy: dict[str, Any] | None = None, **spec: Any) -> ReleaseSpec:
    """Two web hosts and three worker hosts (the last one also db) (pure)."""
    hosts = [{"name": n, "address": f"10.0.0.{i + 1}", "roles": r} for i, (n, r) in enumerate(ROLES.items())]
    hosts = [h | spec.pop(h["name"], {}) for h in hosts]
    body = {"application": "app", "version": "v2", "source": {"path": "/opt/app"}, "hosts": hosts}
    return ReleaseSpec.model_validate(body | {"strategy": strategy or {}} | spec)


def updated(names: list[str]) -> list[HostObservation]:
    """Every host on v1 with the v2 release fetched (pure)."""
    return [observe(n, "v1", has=True) for n in names]


def test_each_role_rolls_within_its_own_budget_and_the_release_budget() -> None:
    strategy = {"maxUnavailable": 3, "roles": {"web": {"maxUnavailable": 1}, "worker": {"maxUnavailable": 2}}}
    result = plan(make_input(role_spec(strategy), updated(list(ROLES))))
    assert [(a.kind, a.host) for a in result.actions] == [
        (ActionKind.PUBLISH, "web-1"),
        (ActionKind.PUBLISH, "job-1"),
        (ActionKind.PUBLISH, "job-2"),
    ]


def test_a_role_budget_counts_the_hosts_of_that_role_already_acted_on() -> None:
    strategy = {"maxUnavailable": "100%", "roles": {"worker": {"maxUnavailable": "50%"}}}
    status = prev_status(hosts={"job-1": {"phase": "Restarting", "version": "v1", "action": "Publish"}})
    result = plan(make_input(role_spec(strategy), updated(list(ROLES)), status, busy=frozenset({"job-1"})))
    assert {a.host for a in result.actions} == {"web-1", "web-2"}, "50% of 3 workers is 1, and job-1 has it"


def test_once_hooks_hold_every_host_but_the_primary_until_it_is_on_the_version() -> None:
    hooks = {"beforePublish": [{"name": "migrate", "run": "rake db:migrate", "once": True, "roles": ["db"]}]}
    spec = role_spec({"maxUnavailable": "100%"}, hooks=hooks)
    assert spec.primary_host == "job-3", "the first host with the hook's roles"
    assert [a.host for a in plan(make_input(spec, updated(list(ROLES)))).actions] == ["job-3"]
    marked = role_spec({"maxUnavailable": "100%"}, hooks=hooks, **{"web-2": {"primary": True, "roles": ["web", "db"]}})
    assert marked.primary_host == "web-2"
    assert [a.host for a in plan(make_input(marked, updated(list(ROLES)))).actions] == ["web-2"]


def test_services_and_hooks_run_on_the_hosts_of_their_roles() -> None:
    services = [
        {"name": "web", "manager": "command", "command": {"start": "a", "stop": "b"}, "roles": ["web"]},
        {"name": "jobs", "manager": "command", "command": {"start": "a", "stop": "b"}, "roles": ["worker"]},
        {"name": "cron", "manager": "command", "command": {"start": "a", "stop": "b"}},
    ]
    hooks = {"afterPublish": [{"name": "warm", "run": "true", "roles": ["web"]}]}
    spec = role_spec(services=services, hooks=hooks)
    assert [s.name for s in spec.services_for("web-1")] == ["web", "cron"]
    assert [s.name for s in spec.services_for("job-3")] == ["jobs", "cron"]
    warm = spec.hooks.after_publish[0]
    assert spec.runs_hook("web-2", warm)
    assert not spec.runs_hook("job-1", warm)


def test_two_primary_hosts_are_refused() -> None:
    with pytest.raises(ValidationError, match="at most one host may be primary"):
        role_spec(**{"web-1": {"primary": True}, "job-1": {"primary": True}})


def test_role_names_in_the_strategy_must_be_dns_labels() -> None:
    with pytest.raises(ValidationError, match="role names must be DNS labels"):
        role_spec({"roles": {"Web_Servers": {"maxUnavailable": 1}}})


budgets = st.one_of(st.integers(1, 3), st.sampled_from(["34%", "50%", "100%"]))


@settings(max_examples=300, deadline=None)
@given(web=budgets, worker=budgets, total=budgets, data=st.data())
def test_no_role_ever_has_more_hosts_acted_on_than_its_budget(
    web: int | str, worker: int | str, total: int | str, data: st.DataObject
) -> None:
    roles = {"web": {"maxUnavailable": web}, "worker": {"maxUnavailable": worker}}
    spec = role_spec({"maxUnavailable": total, "roles": roles})
    names = list(ROLES)
    busy = frozenset(data.draw(st.lists(st.sampled_from(names), max_size=2, unique=True)))
    ready = {n: data.draw(st.booleans()) for n in names}
    observed = [observe(n, "v1", has=True, ready=ready[n]) for n in names]
    recorded = {n: {"phase": "Restarting", "version": "v1", "action": "Publish"} for n in busy}
    acted = {a.host for a in plan(make_input(spec, observed, prev_status(hosts=recorded), busy=busy)).actions}
    for role, value in (("web", web), ("worker", worker)):
        members = {n for n, r in ROLES.items() if role in r}
        if len(busy & members) <= max_unavailable(value, len(members)):
            assert len((acted | busy) & members) <= max_unavailable(value, len(members)), (role, acted, busy)


def test_a_role_given_twice_is_refused_as_the_crd_refuses_it() -> None:
    with pytest.raises(ValidationError, match="worker given more than once"):
        role_spec(**{"job-1": {"roles": ["worker", "worker"]}})
