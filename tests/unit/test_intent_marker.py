"""The action marker's commands, run by a local shell: written whole, read back, cleared only by its own action."""

from __future__ import annotations

import subprocess
from dataclasses import replace
from pathlib import Path

import pytest
from kapistrano.hosts import intent, lock
from kapistrano.hosts.intent import ActionMark


def uptime() -> float:
    """This machine's uptime in seconds, as /proc/uptime says (reads /proc)."""
    return float(Path("/proc/uptime").read_text().split()[0])


def sh(command: str) -> str:
    """Run a command line with sh; its stdout (runs a process)."""
    return subprocess.run(["sh", "-c", command], capture_output=True, text=True, check=True).stdout


def test_a_marker_is_read_back_as_written_and_cleared_only_by_the_action_it_names(tmp_path: Path) -> None:
    deploy_to = str(tmp_path / "var www" / "app")
    mark = ActionMark("uid-1", "Publish", "v2", "20261128020102", token="t1")
    before = uptime()
    sh(intent.write_mark_command(deploy_to, mark))
    read = intent.parse_mark(sh(intent.read_mark_command(deploy_to)))
    assert read is not None
    assert read.uptime is not None
    assert before <= read.uptime <= uptime(), "the host's uptime when it was written"
    mark = replace(mark, uptime=read.uptime)
    assert read == mark
    assert mark.started_after(read.uptime + 0.01)
    assert not mark.started_after(read.uptime - 5)
    assert not mark.started_after(None)
    assert not replace(mark, uptime=None).started_after(read.uptime)
    sh(intent.clear_mark_command(deploy_to, "uid-1", "t0"))  # an earlier action of the same owner
    sh(intent.clear_mark_command(deploy_to, "uid-2", "t1"))  # another owner
    assert intent.parse_mark(sh(intent.read_mark_command(deploy_to))) == mark
    sh(intent.clear_mark_command(deploy_to, "uid-1", "t1"))
    assert sh(intent.read_mark_command(deploy_to)) == ""
    sh(intent.clear_mark_command(deploy_to, "uid-1", "t1"))  # clearing again, or where none is, is fine


def test_values_that_are_not_one_line_are_refused() -> None:
    with pytest.raises(ValueError, match="invalid action marker"):
        intent.write_mark_command("/var/www/app", ActionMark("uid\n1", "Publish", "v2"))


@pytest.mark.parametrize("text", ["", "uid-1\n", "uid-1\nPublish\n", "\nPublish\nv2\n"])
def test_a_marker_cut_short_reads_as_none(text: str) -> None:
    assert intent.parse_mark(text) is None


def test_a_marker_of_five_lines_has_no_uptime() -> None:
    old = intent.parse_mark("uid-1\nRestart\nv2\n\nt1\n")
    assert old == ActionMark("uid-1", "Restart", "v2", None, "t1", None)


def test_the_marker_is_written_with_the_lock_only_when_the_lock_is_ours(tmp_path: Path) -> None:
    deploy_to = str(tmp_path / "app")
    mark = ActionMark("uid-1", "Publish", "v2", token="t1")
    write = intent.write_mark_command(deploy_to, mark)
    assert sh(lock.then_command(deploy_to, "uid-2", 60, write)).startswith("acquired")
    assert intent.parse_mark(sh(intent.read_mark_command(deploy_to))) is not None
    sh(intent.clear_mark_command(deploy_to, "uid-1", "t1"))
    refused = sh(lock.then_command(deploy_to, "uid-1", 60, write))  # uid-2 holds it now
    outcome = lock.parse_acquire(refused, "uid-1")
    assert not outcome.acquired
    assert outcome.holder == "uid-2"
    assert sh(intent.read_mark_command(deploy_to)) == "", "no marker where the lock is another's"
