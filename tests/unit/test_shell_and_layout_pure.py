"""Pure parts of the host layer: quoting, release names, output parsers, log lines, cleanup choice."""

from __future__ import annotations

import socket
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kapistrano.api.spec import Host, ReleaseSpec
from kapistrano.hosts import fetch, layout, lock
from kapistrano.hosts.errors import LinkedFileMissing, NotWritable, SourceError
from kapistrano.hosts.runner import CommandResult
from kapistrano.hosts.shell import cmd, quote
from kapistrano.hosts.ssh import SshTarget, classify, target_for_host, targets_from_spec

# -- quoting -----------------------------------------------------------------------------------------

shell_text = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=80)


@settings(max_examples=150, deadline=None)
@given(shell_text)
def test_quoted_text_round_trips_through_a_real_shell(text: str) -> None:
    out = subprocess.run(["sh", "-c", f"printf %s {quote(text)}"], capture_output=True, check=True).stdout
    assert out.decode("utf-8", "surrogateescape") == text


@settings(max_examples=60, deadline=None)
@given(st.lists(shell_text, min_size=1, max_size=4))
def test_cmd_passes_each_argument_unchanged(args: list[str]) -> None:
    line = cmd("printf", "%s\\0", *args)
    out = subprocess.run(["sh", "-c", line], capture_output=True, check=True).stdout
    assert out.decode("utf-8", "surrogateescape").split("\0")[:-1] == args


# -- release names -----------------------------------------------------------------------------------


def test_a_release_name_is_the_utc_time_in_capistranos_format() -> None:
    now = datetime(2026, 11, 28, 3, 1, 2, 999, tzinfo=UTC)
    assert layout.new_release_name(now, []) == "20261128030102"
    berlin = now.astimezone(datetime.now().astimezone().tzinfo)
    assert layout.new_release_name(berlin, []) == "20261128030102"


def test_a_clashing_name_is_bumped_by_a_second() -> None:
    now = datetime(2026, 11, 28, 3, 1, 2, tzinfo=UTC)
    assert layout.new_release_name(now, ["20261128030102"]) == "20261128030103"
    assert layout.new_release_name(now, ["20261128030102", "20261128030103"]) == "20261128030104"


def test_a_new_name_sorts_after_releases_from_a_clock_running_ahead() -> None:
    now = datetime(2026, 11, 28, 3, 1, 2, tzinfo=UTC)
    assert layout.new_release_name(now, ["20261128040000", "current-ish"]) == "20261128040001"


@given(
    st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2090, 1, 1), timezones=st.just(UTC)),
    st.lists(st.integers(min_value=-5, max_value=5), max_size=8),
)
def test_new_names_are_unique_and_newest(now: datetime, offsets: list[int]) -> None:
    existing = [(now + timedelta(seconds=o)).strftime(layout.RELEASE_FORMAT) for o in offsets]
    name = layout.new_release_name(now, existing)
    assert name not in existing
    assert all(name > e for e in existing)
    assert layout.RELEASE_NAME.fullmatch(name)


# -- parsers -----------------------------------------------------------------------------------------


def test_parse_current_reads_a_kapistrano_release() -> None:
    out = "target\t/var/www/app/releases/20260101000000\nexists\tyes\nversion\tv1\nrevision\tabc\n"
    assert layout.parse_current(out) == layout.CurrentRelease(
        "20260101000000", "v1", "abc", "/var/www/app/releases/20260101000000", True
    )


def test_parse_current_reads_a_capistrano_release_without_markers_and_relative_links() -> None:
    current = layout.parse_current("target\treleases/20250101000000/\nexists\tyes\n")
    assert current == layout.CurrentRelease("20250101000000", None, None, "releases/20250101000000/", True)


def test_parse_current_without_current_or_with_a_dangling_one() -> None:
    assert layout.parse_current("") is None
    dangling = layout.parse_current("target\t/x/releases/1\n")
    assert dangling is not None
    assert not dangling.exists


def test_release_markers_are_parsed_oldest_first_and_the_newest_match_wins() -> None:
    out = "20260103000000\tv1\tc3\n20260101000000\tv1\tc1\n20260102000000\tv\t2\twith-tab\tc2\nnoise\n"
    infos = layout.parse_release_markers(out)
    assert [i.name for i in infos] == ["20260101000000", "20260102000000", "20260103000000"]
    assert infos[1] == layout.ReleaseInfo("20260102000000", "v\t2\twith-tab", "c2")
    assert layout.pick_release_for_version(infos, "v1") == layout.ReleaseInfo("20260103000000", "v1", "c3")
    assert layout.pick_release_for_version(infos, "v9") is None
    assert layout.parse_release_markers("20260101000000\tv1\t\n")[0].revision is None


def test_prepare_failures_name_the_path() -> None:
    error = layout.parse_prepare_failure("h", 73, "not-writable\t/var/www/app\tRead-only file system\n")
    assert isinstance(error, NotWritable)
    assert error.path == "/var/www/app"
    assert "Read-only file system" in str(error)
    missing = layout.parse_prepare_failure("h", 74, "missing\t/var/www/app/shared/x.yml\n")
    assert isinstance(missing, LinkedFileMissing)
    assert layout.parse_prepare_failure("h", 1, "boom") is None


def test_lock_outputs_are_parsed() -> None:
    held = lock.parse_acquire("held\t1700000000\trelease-a\tbox/7/99\n", "release-b")
    assert (held.acquired, held.holder, held.expires, held.sibling) == (False, "release-a", 1700000000, False)
    sibling = lock.parse_acquire("sibling\t1700000000\trelease-b\tbox/7/99\n", "release-b")
    assert (sibling.acquired, sibling.sibling, sibling.instance) == (False, True, "box/7/99")
    fresh = lock.parse_acquire("acquired\t\t\t\n", "me")
    assert (fresh.acquired, fresh.previous_owner, fresh.taken_over) == (True, None, False)
    taken = lock.parse_acquire("acquired\t5\told\tbox/1/2\n", "me")
    assert taken.taken_over
    with pytest.raises(ValueError, match="unexpected lock output"):
        lock.parse_acquire("", "me")
    assert lock.parse_lock_file("a\n12\nbox/1/2\n7\n") == lock.LockInfo("a", 12, "box/1/2", 7)
    assert lock.parse_lock_file("a\n12\n") == lock.LockInfo("a", 12, "")
    assert lock.parse_lock_file("a\n12\n\n7\nupgrading pg\n5\n") == lock.LockInfo("a", 12, "", 7, "upgrading pg", 5)
    manual = lock.parse_acquire("held\t99\tmanual:ann@box\t\tdb maintenance\n", "release-b")
    assert (manual.holder, manual.message) == ("manual:ann@box", "db maintenance")
    expected = "/d/.kapistrano.lock is held by manual:ann@box until it is released: db maintenance"
    assert lock.conflict_message("/d", manual) == expected
    with pytest.raises(ValueError, match="invalid lock message"):
        lock.acquire_lock_command("/d", "a", 60, message="two\nlines")
    assert lock.parse_lock_file("") is None
    with pytest.raises(ValueError, match="invalid lock owner"):
        lock.acquire_lock_command("/d", "a\nb", 60)


def test_a_process_instance_is_dead_only_when_it_is_ours_and_gone() -> None:
    assert not lock.is_dead_here(lock.INSTANCE), "this very process"
    assert not lock.is_dead_here("another-machine/1/1"), "another machine's process cannot be judged from here"
    child = subprocess.run(["sh", "-c", "echo $$"], capture_output=True, text=True, check=True)
    assert lock.is_dead_here(f"{socket.gethostname()}/{child.stdout.strip()}/1"), "a process that exited"
    assert lock.is_dead_here(lock.INSTANCE.rsplit("/", 1)[0] + "/12345"), "our pid, started at another time"


def test_download_failures_become_source_errors() -> None:
    mismatch = CommandResult(83, "", "sha256-mismatch\tdeadbeef\n")
    error = fetch.parse_download_failure("h", "http://x/a.tgz", "ABC", mismatch)
    assert isinstance(error, SourceError)
    assert "expected abc, got deadbeef" in error.message
    assert isinstance(fetch.parse_download_failure("h", "u", "e", CommandResult(81, "", "404")), SourceError)
    assert fetch.parse_sha("a" * 40 + "\n") == "a" * 40
    assert fetch.parse_sha("fatal: x") is None


def test_release_paths_refuse_names_that_escape_releases() -> None:
    for bad in ("..", "a/b", "", "x\ny"):
        with pytest.raises(ValueError, match="not a release name"):
            layout.Paths("/var/www/app").release(bad)


# -- revision log ------------------------------------------------------------------------------------


def test_revision_log_lines_match_capistrano() -> None:
    line = layout.deploy_log_line("main", "0123abc", "20260101000000", "deploy")
    assert line == "Branch main (at 0123abc) deployed as release 20260101000000 by deploy"
    assert layout.rollback_log_line("deploy", "20251231000000") == "deploy rolled back to release 20251231000000"
    assert layout.parse_revision_log_line(line) == {
        "kind": "deploy",
        "branch": "main",
        "sha": "0123abc",
        "release": "20260101000000",
        "user": "deploy",
    }
    assert layout.parse_revision_log_line("deploy rolled back to release 20251231000000\n") == {
        "kind": "rollback",
        "user": "deploy",
        "release": "20251231000000",
    }
    assert "\n" not in layout.deploy_log_line("a\nb", "s", "r", "u")


# -- cleanup -----------------------------------------------------------------------------------------

names = st.lists(
    st.integers(min_value=0, max_value=10_000).map(lambda n: f"2026{n:010d}"), min_size=0, max_size=30, unique=True
)


def test_cleanup_removes_the_oldest_beyond_keep() -> None:
    releases = [f"2026010{i}000000" for i in range(1, 8)]
    assert layout.select_for_cleanup(releases, 3, releases[-1]) == releases[:4]
    assert layout.select_for_cleanup(releases, 3, releases[1]) == releases[2:4]
    assert layout.select_for_cleanup(["notes", *releases[:2]], 1, None) == releases[:1]


@given(names, st.integers(min_value=1, max_value=10), st.data())
def test_cleanup_never_selects_current_nor_previous(releases: list[str], keep: int, data: st.DataObject) -> None:
    current = data.draw(st.sampled_from(releases)) if releases else None
    doomed = layout.select_for_cleanup(releases, keep, current)
    previous = layout.previous_release(releases, current)
    assert current not in doomed
    assert previous not in doomed
    assert set(doomed) <= set(releases)
    assert doomed == sorted(doomed)
    remaining = sorted(set(releases) - set(doomed))
    newest_keep = sorted(releases)[-keep:]
    assert set(newest_keep) <= set(remaining), "the newest keep releases always survive"
    if current is None or {current, previous} <= set(newest_keep) | {None}:
        assert len(remaining) == min(keep, len(releases))
    assert len(remaining) <= keep + 2


def test_keep_must_be_positive() -> None:
    with pytest.raises(ValueError, match="keep"):
        layout.select_for_cleanup(["20260101000000"], 0, None)


# -- ssh targets and errors --------------------------------------------------------------------------


def spec_with_jump() -> ReleaseSpec:
    """A Release with a jump host and per-host users."""
    return ReleaseSpec.model_validate(
        {
            "application": "billing",
            "version": "v1",
            "source": {"path": "/opt/b"},
            "hosts": [{"name": "w1", "address": "10.0.0.1", "user": "ops"}, {"name": "w2", "address": "10.0.0.2"}],
            "ssh": {"user": "deploy", "connectTimeoutSeconds": 3, "jumpHost": {"address": "bastion.example.com"}},
        }
    )


def test_targets_come_from_the_release_spec() -> None:
    spec = spec_with_jump()
    targets = targets_from_spec(spec, b"KEY", "known")
    assert [(t.name, t.address, t.user, t.connect_timeout) for t in targets] == [
        ("w1", "10.0.0.1", "ops", 3.0),
        ("w2", "10.0.0.2", "deploy", 3.0),
    ]
    assert targets[1].jump is not None
    assert (targets[1].jump.address, targets[1].jump.user) == ("bastion.example.com", "deploy")
    assert target_for_host(spec, Host(name="x", address="10.0.0.9"), Path("/k"), None).client_key == Path("/k")


def test_a_target_repr_hides_the_key() -> None:
    target = SshTarget(name="w1", address="10.0.0.1", client_key=b"SECRET-KEY-BYTES", known_hosts="kh")
    assert "SECRET-KEY-BYTES" not in repr(target)
    assert "SECRET-KEY-BYTES" not in str(target)


def test_os_and_timeout_errors_are_unreachable() -> None:
    target = SshTarget(name="w1", address="10.0.0.1", client_key=b"k", connect_timeout=2)
    assert classify(ConnectionRefusedError(111, "Connection refused"), target).reason == "Unreachable"
    timeout = classify(TimeoutError(), target)
    assert timeout.reason == "Unreachable"
    assert "within 2s" in timeout.message
