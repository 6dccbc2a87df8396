"""The scale benchmark's floors, budgets and API-server counters (benchmarks/scale_measure.py)."""

from __future__ import annotations

from benchmarks import scale_measure as measure


def test_the_wave_floor_is_whole_waves_of_the_slowest_host() -> None:
    assert measure.wave_floor([5.0, 5.0, 5.0, 1.0], slots=2) == 10.0
    assert measure.wave_floor([7.0] * 500, slots=50) == 70.0


def test_the_sliding_floor_starts_the_next_host_when_any_slot_frees() -> None:
    assert measure.sliding_floor([5.0, 1.0, 1.0, 1.0, 5.0], slots=2) == 8.0
    assert measure.sliding_floor([3.0, 4.0, 5.0], slots=1) == 12.0  # one slot: the plain sum
    steps = [4.0 + (i % 7) * 0.5 for i in range(500)]
    assert measure.sliding_floor(steps, slots=50) <= measure.wave_floor(steps, slots=50)


def test_a_percent_budget_is_rounded_down_but_at_least_one_host() -> None:
    assert [measure.budget_hosts("10%", n) for n in (5, 10, 500)] == [1, 1, 50]
    assert measure.budget_hosts(3, 500) == 3


def test_status_writes_are_counted_across_response_codes_and_timed_by_the_server() -> None:
    labels = 'group="kapistrano.dev",resource="releases",subresource="status",verb="PATCH",version="v1alpha1"'
    text = "\n".join([
        f'apiserver_request_total{{code="200",{labels}}} 3',
        f'apiserver_request_total{{code="409",{labels}}} 2',
        'apiserver_request_total{code="201",resource="events",verb="POST"} 7',
        f"apiserver_request_duration_seconds_sum{{{labels}}} 1.5",
        "# HELP apiserver_request_total Counter of apiserver requests",
    ])  # fmt: skip
    assert measure.request_counts(text) == {"PATCH releases/status": 5, "POST events": 7}
    assert measure.request_seconds(text) == {"PATCH releases/status": 1.5}


def test_a_rollout_summary_counts_hosts_down_between_term_and_successor_ready() -> None:
    rows = [
        (0.0, "a", "v1", "draining"), (3.0, "a", "v1", "exit"), (3.1, "a", "v2", "start"), (4.1, "a", "v2", "ready"),
        (1.0, "b", "v1", "draining"), (5.0, "b", "v1", "exit"), (5.1, "b", "v2", "start"), (6.1, "b", "v2", "ready"),
    ]  # fmt: skip
    events = [measure.Event(t, host, 100, version, event) for t, host, version, event in rows]
    summary = measure.rolled(events, "v1", "v2", {"a", "b"})
    assert (summary.hosts_restarted, summary.most_down, summary.last_ready) == (2, 2, 6.1)
    assert round(summary.drain_measured, 2) == 3.5
    assert round(summary.mean_down, 2) == round((4.1 + 5.1) / 6.1, 2)
