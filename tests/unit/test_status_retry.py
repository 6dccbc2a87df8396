"""Which API failures the operator's status store waits out, and that it does wait them out."""

from __future__ import annotations

import pytest
import urllib3
from kapistrano.k8s import status
from kapistrano.k8s.status import retried, transient
from kubernetes.client.exceptions import ApiException


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (ApiException(status=409), True),
        (ApiException(status=429), True),
        (ApiException(status=503), True),
        (ApiException(status=500), True),
        (ApiException(status=403), True),
        (ApiException(status=401), True),
        (ApiException(status=404), False),
        (ApiException(status=422), False),
        (ApiException(status=400), False),
        (urllib3.exceptions.MaxRetryError(None, "/status"), True),  # type: ignore[arg-type]
        (urllib3.exceptions.ProtocolError("connection reset"), True),
        (ConnectionRefusedError(), True),
        (ValueError("bad"), False),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, BaseException) else str(value),
)
def test_transient_errors_are_told_apart(error: BaseException, expected: bool) -> None:
    assert transient(error) is expected


async def test_a_conflict_is_tried_again_until_the_write_goes_through(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(status, "FIRST_DELAY", 0.001)
    answers: list[BaseException | str] = [ApiException(status=409), ApiException(status=503), "written"]
    calls = []

    def write() -> str:
        calls.append(1)
        answer = answers.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return answer

    assert await retried(write, "writing a status") == "written"
    assert len(calls) == 3


async def test_a_refusal_that_will_not_clear_is_raised_at_once() -> None:
    calls = []

    def write() -> None:
        calls.append(1)
        raise ApiException(status=422)

    with pytest.raises(ApiException):
        await retried(write, "writing a status")
    assert len(calls) == 1
