"""How long a host's reading stays fresh: the hosts the plan may act on next often, the rest seldom."""

from __future__ import annotations

from kapistrano.engine.freshness import (
    FULL_OBSERVE_SECONDS,
    RETRY_OBSERVE_SECONDS,
    SETTLED_OBSERVE_SECONDS,
    SETTLED_READS_PER_SECOND,
    Fleet,
    reading_period,
    settled_period,
    soon_hosts,
)
from kapistrano.plan import ActionKind, HostObservation
from kapistrano.plan.model import Underway

from .planfixtures import make_spec, observe


def test_the_next_hosts_in_order_are_kept_fresh_and_the_rest_read_seldom() -> None:
    spec = make_spec(20, strategy={"maxUnavailable": 2})
    seen = {h.name: observe(h.name, "v2" if i < 5 else "v1") for i, h in enumerate(spec.hosts)}
    soon = soon_hosts(spec, seen)
    names = [h.name for h in spec.hosts]
    assert soon == frozenset(names[5:11]), "twice maxUnavailable + maxSurge, the first hosts not done, in order"
    assert reading_period(seen[names[5]], spec, soon=True) == FULL_OBSERVE_SECONDS
    assert reading_period(seen[names[15]], spec, soon=False) == SETTLED_OBSERVE_SECONDS
    assert reading_period(seen[names[0]], spec, soon=True) == SETTLED_OBSERVE_SECONDS, "done: read seldom"


def test_a_done_host_that_breaks_or_is_mid_action_counts_as_not_done() -> None:
    spec = make_spec(8, strategy={"maxUnavailable": 1})
    names = [h.name for h in spec.hosts]
    seen = {
        names[0]: observe(names[0], "v2", ready=False),
        names[1]: observe(names[1], "v2", underway=Underway(ActionKind.PUBLISH, "v2")),
        names[2]: observe(names[2], "v2"),
        **{name: observe(name, "v1") for name in names[3:]},
    }
    assert soon_hosts(spec, seen) == frozenset([names[0], names[1], names[3], names[4]])
    assert reading_period(seen[names[0]], spec) == FULL_OBSERVE_SECONDS


def test_a_failed_reading_is_retried_soon_and_role_budgets_keep_every_pending_host_fresh() -> None:
    spec = make_spec(3, strategy={"maxUnavailable": 1, "roles": {"web": {"maxUnavailable": 1}}})
    down = HostObservation(name=spec.hosts[0].name, reachable=False)
    assert reading_period(down, spec, soon=False) == RETRY_OBSERVE_SECONDS
    seen = {h.name: observe(h.name, "v1") for h in spec.hosts}
    assert soon_hosts(spec, seen) == frozenset(h.name for h in spec.hosts)


def test_a_large_release_reads_its_settled_hosts_at_a_bounded_rate() -> None:
    for total in (10, 150, 500, 1000):
        spec = make_spec(total, strategy={"maxUnavailable": "10%"})
        done = observe(spec.hosts[0].name, "v2")
        period = reading_period(done, spec, soon=False)
        assert period >= SETTLED_OBSERVE_SECONDS
        assert total / period <= SETTLED_READS_PER_SECOND + 1e-9, f"{total} hosts: {total / period:.1f} reads/s"
        pending = observe(spec.hosts[1].name, "v1")
        assert reading_period(pending, spec, soon=True) == FULL_OBSERVE_SECONDS, "the next hosts stay fresh"
    assert settled_period(500) == 50.0


def test_the_settled_hosts_of_every_rollout_of_the_process_share_one_rate() -> None:
    spec = make_spec(10, strategy={"maxUnavailable": 1})
    done = observe(spec.hosts[0].name, "v2")
    fleet = Fleet()
    rollouts = [object() for _ in range(50)]
    for rollout in rollouts:
        fleet.join(rollout, 10)
    assert fleet.hosts == 500
    assert reading_period(done, spec, soon=False, fleet=fleet.hosts) == settled_period(500) == 50.0
    fleet.join(rollouts[0], 20)  # a spec change counts the rollout once, with its new hosts
    assert fleet.hosts == 510
    for rollout in rollouts[1:]:
        fleet.leave(rollout)
    fleet.leave(object())
    assert fleet.hosts == 20
    assert reading_period(done, spec, soon=False, fleet=fleet.hosts) == SETTLED_OBSERVE_SECONDS
