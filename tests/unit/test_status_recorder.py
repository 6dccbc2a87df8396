"""The status recorder saves what changed and nothing else."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from kapistrano.api.status import HostPhase, HostStatus, ReleaseStatus
from kapistrano.engine.events import HostEvent
from kapistrano.engine.store import FileStatusStore, StatusRecorder


def clock() -> datetime:
    return datetime(2026, 11, 28, 2, 0, tzinfo=UTC)


async def test_a_status_that_did_not_change_is_not_saved_again(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    recorder = StatusRecorder(FileStatusStore(path), ReleaseStatus(hosts=[HostStatus(name="h1")]), clock)
    await recorder.flush()
    path.unlink()  # a second save would write the file again
    await recorder.flush()
    await recorder.replace(ReleaseStatus(hosts=[HostStatus(name="h1")]))  # equal, though another object
    assert (recorder.saves, recorder.skipped) == (1, 2)
    assert not path.exists()

    recorder.apply(HostEvent("h1", "switching current", HostPhase.PUBLISHING))
    await recorder.flush()
    assert recorder.saves == 2
    assert json.loads(path.read_text())["hosts"][0]["phase"] == "Publishing"
