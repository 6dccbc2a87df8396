"""A retry request: a failed version is rolled out again once per request, counted in the status."""

from __future__ import annotations

from dataclasses import replace

from kapistrano.plan import plan

from .planfixtures import make_input, make_spec, observe, prev_status

H1, H2 = "host-1", "host-2"
SPEC = make_spec(2)
FAILED_UPDATE = prev_status(
    failed_version="v2",
    hosts={
        H1: {"phase": "Failed", "version": "v1", "failedVersion": "v2"},
        H2: {"phase": "Failed", "version": "v1", "failedVersion": "v2"},
    },
)
ON_V1 = [observe(H1, "v1"), observe(H2, "v1")]


def test_without_a_retry_request_a_failed_version_stays_failed() -> None:
    result = plan(make_input(SPEC, ON_V1, FAILED_UPDATE))
    assert result.actions == []
    assert result.status.failed_version == "v2"
    assert result.status.retries == 0


def test_a_retry_request_fetches_the_failed_version_again_and_is_counted() -> None:
    inp = replace(make_input(SPEC, ON_V1, FAILED_UPDATE), retry_token="t1")
    result = plan(inp)
    assert [(a.kind.value, a.host) for a in result.actions] == [("Update", H1), ("Update", H2)]
    assert result.status.failed_version is None
    assert all(h.failed_version is None for h in result.status.hosts)
    assert (result.status.retries, result.status.retried_for) == (1, "t1")


def test_a_retry_request_is_acted_on_once() -> None:
    failed_again = FAILED_UPDATE.model_copy(update={"retries": 1, "retried_for": "t1"})
    result = plan(replace(make_input(SPEC, ON_V1, failed_again), retry_token="t1"))
    assert result.actions == []
    assert result.status.failed_version == "v2"
    assert (result.status.retries, result.status.retried_for) == (1, "t1")


def test_a_rolled_back_host_is_published_again_on_retry() -> None:
    rolled_back = prev_status(
        failed_version="v2", hosts={H1: {"phase": "RolledBack", "version": "v1", "failedVersion": "v2"}}
    )
    observed = [observe(H1, "v1", has=True), observe(H2, "v1", has=True)]
    result = plan(replace(make_input(SPEC, observed, rolled_back), retry_token="t2"))
    assert [(a.kind.value, a.host) for a in result.actions] == [("Publish", H1)]
    assert result.status.retries == 1


def test_a_retry_request_with_nothing_failed_is_recorded_but_not_counted() -> None:
    done = [observe(H1, "v2"), observe(H2, "v2")]
    result = plan(replace(make_input(SPEC, done, prev_status()), retry_token="t3"))
    assert result.complete
    assert (result.status.retries, result.status.retried_for) == (0, "t3")
