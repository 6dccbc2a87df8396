"""Shards, peering inside a shard and host-lock takeover decisions (pure)."""

from __future__ import annotations

import argparse
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta

import kopf
import pytest
from hypothesis import given
from hypothesis import strategies as st
from kapistrano.cli import run_cmd
from kapistrano.hosts import lock, takeover
from kapistrano.k8s.handlers import unlock_instance
from kapistrano.k8s.peers import PeerWatch, judge
from kapistrano.k8s.sharding import (
    SHARD_LABEL,
    Placement,
    hashed_shard,
    ordinal_of,
    placement_of,
    shard_of,
)

NOW = datetime(2026, 12, 5, 16, 0, tzinfo=UTC)


def entry(seen_ago: float, lifetime: int = 10) -> dict[str, object]:
    """A kopf peering entry last seen `seen_ago` s before NOW."""
    return {"priority": 100, "lifetime": lifetime, "lastseen": (NOW - timedelta(seconds=seen_ago)).isoformat()}


def test_a_labelled_release_is_served_by_the_shard_its_label_names() -> None:
    assert shard_of({SHARD_LABEL: "1"}, "uid-a", 3) == 1
    assert shard_of({SHARD_LABEL: "0"}, "uid-a", 3) == 0
    assert Placement(shard=1, shards=3).serves({SHARD_LABEL: "1"}, "uid-a")
    assert not Placement(shard=0, shards=3).serves({SHARD_LABEL: "1"}, "uid-a")


@pytest.mark.parametrize("label", [None, "3", "-1", "one", "", "01x"])
def test_a_release_without_a_valid_shard_label_is_placed_by_the_hash_of_its_uid(label: str | None) -> None:
    labels = {} if label is None else {SHARD_LABEL: label}
    assert shard_of(labels, "uid-a", 3) == hashed_shard("uid-a", 3)


@given(st.uuids(), st.integers(min_value=1, max_value=16))
def test_every_release_is_served_by_exactly_one_shard(uid: uuid.UUID, shards: int) -> None:
    serving = [n for n in range(shards) if Placement(shard=n, shards=shards).serves({}, str(uid))]
    assert len(serving) == 1


def test_unlabelled_releases_spread_over_the_shards_and_stay_where_they_are() -> None:
    uids = [str(uuid.UUID(int=i * 7919 + 1)) for i in range(400)]
    counts = Counter(hashed_shard(u, 4) for u in uids)
    assert set(counts) == {0, 1, 2, 3}
    assert min(counts.values()) > 60
    assert [hashed_shard(u, 4) for u in uids] == [hashed_shard(u, 4) for u in uids]


def test_unsharded_operators_serve_everything_with_the_usual_peering_and_finalizer() -> None:
    alone = Placement()
    assert alone.serves({SHARD_LABEL: "7"}, "any")
    assert alone.peering_name("kapistrano") == "kapistrano"
    assert alone.finalizer == "kapistrano.dev/finalizer"


def test_statefulset_ordinals_fill_every_shard_before_the_standbys() -> None:
    placed = [placement_of(i, 2) for i in range(4)]
    assert [(p.shard, p.rank) for p in placed] == [(0, 0), (1, 0), (0, 1), (1, 1)]
    assert [p.priority for p in placed] == [100, 100, 99, 99]
    assert [p.peering_name("kapistrano") for p in placed] == [f"kapistrano-shard-{n}" for n in (0, 1, 0, 1)]
    assert [p.finalizer for p in placed] == [
        "kapistrano.dev/finalizer",
        "kapistrano.dev/finalizer-shard-1",
        "kapistrano.dev/finalizer",
        "kapistrano.dev/finalizer-shard-1",
    ]


def test_replicas_of_one_shard_never_share_a_priority() -> None:
    priorities = [p.priority for p in (placement_of(i, 3) for i in range(9)) if p.shard == 2]
    assert len(set(priorities)) == len(priorities) == 3


def test_a_pod_name_gives_its_ordinal() -> None:
    assert ordinal_of("kapistrano-3") == 3
    assert ordinal_of("kapistrano") is None


@pytest.mark.parametrize(("shard", "shards"), [(2, 2), (-1, 2), (0, 0)])
def test_a_shard_out_of_range_is_refused(shard: int, shards: int) -> None:
    with pytest.raises(ValueError, match="no shard"):
        Placement(shard=shard, shards=shards)


def parse_run(*argv: str) -> argparse.Namespace:
    """`kapistrano run ARGV` parsed."""
    parser = argparse.ArgumentParser()
    run_cmd.register(parser.add_subparsers())
    return parser.parse_args(["run", *argv])


def test_run_takes_the_shard_from_the_ordinal_or_from_shard_and_rank() -> None:
    assert run_cmd.placement_from(parse_run("--shards", "2", "--ordinal", "3")) == Placement(1, 2, 1)
    assert run_cmd.placement_from(parse_run("--shards", "3", "--shard", "2", "--rank", "1")) == Placement(2, 3, 1)
    assert run_cmd.placement_from(parse_run()) == Placement()
    assert run_cmd.placement_from(parse_run("--shards", "2", "--ordinal", "kapistrano-2")) == Placement(0, 2, 1)
    for bad in (("--shard", "1", "--ordinal", "1"), ("--ordinal", "kapistrano")):
        with pytest.raises(SystemExit):
            parse_run(*bad)


def test_takeover_is_at_once_for_a_dead_local_process_after_a_grace_for_a_departed_peer() -> None:
    assert takeover.takeover_grace(dead_here=True, departed=False) == 0
    assert takeover.takeover_grace(dead_here=False, departed=True) == takeover.TAKEOVER_GRACE_SECONDS
    assert takeover.takeover_grace(dead_here=False, departed=False) is None


def test_an_acting_holder_refreshes_its_lock_well_within_the_grace() -> None:
    assert takeover.ACTION_HEARTBEAT_SECONDS * 3 <= takeover.TAKEOVER_GRACE_SECONDS
    assert takeover.grace_wait_limit(10) > 10
    assert takeover.TAKEOVER_GRACE_SECONDS < lock.STALE_SECONDS


def test_peering_entries_are_alive_until_their_lifetime_has_run() -> None:
    status = {"a/1/1": entry(3), "b/2/2": entry(11), "c/3/3": entry(50, lifetime=60), "junk": "x"}
    assert judge(status, NOW) == ({"a/1/1", "c/3/3"}, {"b/2/2"})


def test_a_peer_seen_alive_then_expired_or_vanished_is_gone_and_back_when_alive_again() -> None:
    watch = PeerWatch(own="me/1/1")
    assert watch.read({"me/1/1": entry(0), "old/1/1": entry(1)}, NOW) == (set(), {"me/1/1", "old/1/1"})
    assert watch.read({"me/1/1": entry(0), "old/1/1": entry(12)}, NOW) == ({"old/1/1"}, {"me/1/1"})
    assert watch.read({"me/1/1": entry(0)}, NOW) == (set(), {"me/1/1"})
    watch.read({"me/1/1": entry(0), "old/1/1": entry(0)}, NOW)
    assert watch.read({"me/1/1": entry(0)}, NOW) == ({"old/1/1"}, {"me/1/1"})
    assert watch.read({"me/1/1": entry(30)}, NOW)[0] == set(), "never itself"


def test_departures_are_forgotten_when_the_peer_is_alive_again() -> None:
    gone = takeover.Departures()
    gone.update({"old/1/1"}, set())
    assert "old/1/1" in gone
    gone.update(set(), {"old/1/1"})
    assert "old/1/1" not in gone


def test_a_daemon_releases_any_lock_when_deleted_and_its_own_on_a_handover_only() -> None:
    reason = kopf.DaemonStoppingReason
    assert unlock_instance(reason.RESOURCE_DELETED | reason.OPERATOR_EXITING) == ""
    assert unlock_instance(reason.FILTERS_MISMATCH) == lock.INSTANCE
    assert unlock_instance(reason.OPERATOR_PAUSING) == lock.INSTANCE
    assert unlock_instance(reason.OPERATOR_EXITING) is None
    assert unlock_instance(None) is None
