"""Readiness probes' pure parts: the threshold state machine, the drift-free schedule, HTTP framing."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st
from kapistrano.api.spec import HttpGetAction
from kapistrano.hosts.httpget import request_headers, server_name
from kapistrano.hosts.probes import ProbeTracker, Verdict, http_ok, next_index
from pydantic import ValidationError

thresholds = st.integers(min_value=1, max_value=6)
results = st.lists(st.booleans(), max_size=60)


def reference_verdict(success: int, failure: int, history: list[bool]) -> tuple[Verdict, int]:
    """The first run of `success` Trues or `failure` Falses decides, and how many results it took (pure)."""
    run_value, run_length = None, 0
    for n, ok in enumerate(history, start=1):
        run_length = run_length + 1 if ok == run_value else 1
        run_value = ok
        if ok and run_length >= success:
            return Verdict.READY, n
        if not ok and run_length >= failure:
            return Verdict.FAILED, n
    return Verdict.CONTINUE, len(history)


@given(success=thresholds, failure=thresholds, history=results)
def test_tracker_agrees_with_the_consecutive_run_definition(success: int, failure: int, history: list[bool]) -> None:
    tracker = ProbeTracker(success, failure)
    verdicts = [tracker.feed(ok) for ok in history]
    expected, used = reference_verdict(success, failure, history)
    assert tracker.verdict is expected
    assert tracker.attempts == used
    if history:
        assert verdicts[-1] is expected


@given(success=thresholds, failure=thresholds, history=results, extra=results)
def test_a_decided_tracker_never_changes_its_mind(
    success: int, failure: int, history: list[bool], extra: list[bool]
) -> None:
    tracker = ProbeTracker(success, failure)
    for ok in history:
        tracker.feed(ok)
    decided, attempts = tracker.verdict, tracker.attempts
    if decided is Verdict.CONTINUE:
        return
    for ok in extra:
        assert tracker.feed(ok) is decided
    assert tracker.attempts == attempts


@given(success=thresholds, failure=thresholds, history=results)
def test_counters_stay_below_their_thresholds_until_decided(success: int, failure: int, history: list[bool]) -> None:
    tracker = ProbeTracker(success, failure)
    for ok in history:
        if tracker.feed(ok) is not Verdict.CONTINUE:
            break
        assert 0 <= tracker.successes < success
        assert 0 <= tracker.failures < failure
        assert tracker.successes == 0 or tracker.failures == 0


def test_one_failure_resets_the_success_run() -> None:
    tracker = ProbeTracker(success_threshold=2, failure_threshold=3)
    assert [tracker.feed(ok) for ok in (True, False, True)] == [Verdict.CONTINUE] * 3
    assert tracker.feed(True) is Verdict.READY


def test_thresholds_below_one_are_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        ProbeTracker(0, 1)


@given(
    first=st.floats(min_value=0, max_value=1e6),
    period=st.integers(min_value=1, max_value=3600),
    attempt=st.integers(min_value=0, max_value=1000),
    late=st.floats(min_value=-5000, max_value=50000),
)
def test_next_slot_is_on_the_grid_in_the_future_and_the_earliest_such(
    first: float, period: int, attempt: int, late: float
) -> None:
    now = first + attempt * period + late
    k = next_index(first, period, attempt, now)
    assert k > attempt
    assert first + k * period >= now
    assert k == attempt + 1 or first + (k - 1) * period < now


def test_a_fast_attempt_waits_for_the_next_slot_and_a_slow_one_skips_missed_slots() -> None:
    assert next_index(100.0, 2, 0, 100.3) == 1
    assert next_index(100.0, 2, 0, 105.1) == 3
    assert next_index(100.0, 2, 4, 108.0) == 5


def test_schedule_from_any_attempt_times_has_no_drift() -> None:
    first, period, k = 10.0, 1, 0
    slots = []
    for duration in (0.2, 0.9, 0.05, 2.5, 0.3):
        now = first + k * period + duration
        k = next_index(first, period, k, now)
        slots.append(first + k * period)
    assert all(math.isclose(s - first, round(s - first)) for s in slots)
    assert slots == [11.0, 12.0, 13.0, 16.0, 17.0]


def test_http_request_headers_are_kubelet_like_and_close_the_connection() -> None:
    assert request_headers(HttpGetAction(port=8080)) == [
        ("Host", "127.0.0.1:8080"),
        ("User-Agent", "kapistrano-probe/1"),
        ("Accept", "*/*"),
        ("Connection", "close"),
    ]
    assert ("Host", "10.0.0.5:81") in request_headers(HttpGetAction(port=81, host="10.0.0.5"))
    assert ("Host", "[::1]:81") in request_headers(HttpGetAction(port=81, host="::1"))


def test_a_given_header_replaces_the_default_of_the_same_name_and_others_are_added() -> None:
    action = HttpGetAction.model_validate(
        {"port": 80, "httpHeaders": [{"name": "host", "value": "app.example"}, {"name": "X-Token", "value": "t"}]}
    )
    assert request_headers(action) == [
        ("User-Agent", "kapistrano-probe/1"),
        ("Accept", "*/*"),
        ("Connection", "close"),
        ("host", "app.example"),
        ("X-Token", "t"),
    ]


@pytest.mark.parametrize("header", [{"name": "X Bad", "value": "v"}, {"name": "X-Ok", "value": "a\r\nInjected: 1"}])
def test_header_names_must_be_tokens_and_values_single_lines(header: dict[str, str]) -> None:
    with pytest.raises(ValidationError):
        HttpGetAction.model_validate({"port": 80, "httpHeaders": [header]})


def test_scheme_defaults_to_http() -> None:
    assert HttpGetAction(port=80).scheme == "HTTP"
    assert HttpGetAction.model_validate({"port": 443, "scheme": "HTTPS"}).scheme == "HTTPS"
    with pytest.raises(ValidationError):
        HttpGetAction.model_validate({"port": 443, "scheme": "https"})


@pytest.mark.parametrize(
    ("host", "name"), [("127.0.0.1", None), ("::1", None), ("[::1]", None), ("app.local", "app.local")]
)
def test_tls_server_name_is_sent_for_names_only(host: str, name: str | None) -> None:
    assert server_name(host) == name


@pytest.mark.parametrize(("code", "ok"), [(199, False), (200, True), (399, True), (400, False), (None, False)])
def test_success_is_200_to_399(code: int | None, ok: bool) -> None:
    assert http_ok(code) is ok
