"""The one-script readings and writes of a host, run by the local sh on a directory laid out like a host's.

No SSH: the builders' command lines run through `sh -c` here exactly as sshd would run them, and
the parsers read what they print. Property tests feed values with every kind of shell character.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st
from kapistrano.api.spec import Service
from kapistrano.hosts import facts, layout, lock, records, services, switch
from kapistrano.hosts.managers.base import ServiceContext, remote_script
from kapistrano.hosts.shell import split_sections

WORKER = Service.model_validate(
    {"name": "worker", "instances": 2, "pidfile": {"path": "tmp/pids/w.{index}.pid", "start": "sleep 60"}}
)
#: Version markers and records hold anything printable but newlines.
values = st.text(st.characters(codec="utf-8", exclude_characters="\x00\n\r"), min_size=1, max_size=40)
#: A services record is one line of JSON: no control characters.
json_lines = st.text(st.characters(codec="utf-8", categories=("L", "N", "P", "S", "Zs")), min_size=1, max_size=40)


def sh(line: str) -> str:
    """Run a command line with the local sh; its stdout (fails on a non-zero exit)."""
    return subprocess.run(["sh", "-c", line], capture_output=True, check=True, text=True).stdout


def release(deploy: Path, name: str, version: str | None, revision: str | None = None) -> Path:
    """A release directory with its markers."""
    path = deploy / "releases" / name
    path.mkdir(parents=True, exist_ok=True)
    if version is not None:
        (path / ".kapistrano-version").write_text(version + "\n")
    if revision is not None:
        (path / "REVISION").write_text(revision + "\n")
    return path


def test_one_reading_finds_current_markers_records_and_live_pids(tmp_path: Path) -> None:
    deploy = tmp_path / "app"
    release(deploy, "20260101000000", "v1", "aaa")
    new = release(deploy, "20260102000000", "v2", "bbb")
    (new / records.SERVICES_RECORD).write_text(records.services_record([WORKER]) + "\n")
    (deploy / "current").symlink_to(new)
    ctx = ServiceContext(deploy_to=str(deploy))
    files = services.pidfiles_of(ctx, WORKER)
    Path(files[0]).parent.mkdir(parents=True)
    Path(files[0]).write_text(f"{os.getpid()}\n")
    Path(files[1]).write_text("999999999\n")  # no such process
    found = facts.parse_facts(sh(facts.read_command(ctx, files)), files)
    assert found.current is not None
    assert (found.current.release, found.current.version) == ("20260102000000", "v2")
    assert found.current_dir == str(new.resolve())
    assert [(m.name, m.version, m.revision) for m in found.markers] == [
        ("20260101000000", "v1", "aaa"),
        ("20260102000000", "v2", "bbb"),
    ]
    assert records.parse_services_record(found.records["20260102000000"]) == [WORKER]
    assert found.pids[files[0]] == facts.PidFact(os.getpid(), True, os.getcwd())
    assert found.pids[files[1]] == facts.PidFact(999999999, False, None)
    ticks = int(Path(f"/proc/{os.getpid()}/stat").read_text().rsplit(")", 1)[1].split()[19])
    assert found.pids[files[0]].started == ticks / os.sysconf("SC_CLK_TCK"), "when it started, in s since boot"
    assert found.pids[files[1]].started is None
    state = services.status_from_pids(ctx, WORKER, found.pids)
    assert state is not None
    assert [i.alive for i in state.instances] == [True, False]


def test_a_host_without_a_layout_reads_as_empty(tmp_path: Path) -> None:
    ctx = ServiceContext(deploy_to=str(tmp_path / "nothing"))
    found = facts.parse_facts(sh(facts.read_command(ctx, ["/nonexistent/pid"])), ["/nonexistent/pid"])
    assert (found.current, found.current_dir, found.markers, dict(found.records)) == (None, None, (), {})
    assert found.pids == {"/nonexistent/pid": facts.PidFact(None, False)}


@settings(max_examples=40, deadline=None)
@given(values, json_lines)
def test_the_switch_finds_the_newest_release_of_a_version_and_records_it(version: str, record: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        deploy = Path(tmp) / "app"
        release(deploy, "20260101000000", version, "old")
        release(deploy, "20260102000000", version, "new")
        release(deploy, "20260103000000", version + "x")
        ctx = ServiceContext(deploy_to=str(deploy))
        pid = str(deploy / "shared" / "w.pid")
        out = sh(switch.switch_command(ctx, version, record=record, pidfiles=[pid], suffix="t"))
        found = switch.parse_switch(out, version)
        sections = split_sections(out)
        assert sections["records"] == f"20260102000000\t{record}\n"
        assert facts.parse_pids(sections["pids"], [pid]) == {pid: facts.PidFact(None, False)}
        assert found == layout.ReleaseInfo("20260102000000", version, "new")
        assert os.readlink(deploy / "current") == str(deploy / "releases" / "20260102000000")
        written = (deploy / "releases" / "20260102000000" / records.SERVICES_RECORD).read_text()
        assert written == record + "\n"
        assert switch.parse_switch(sh(switch.switch_command(ctx, "absent", suffix="t")), "absent") is None


def test_the_cleanup_listing_appends_the_log_line_and_lists_in_one_go(tmp_path: Path) -> None:
    deploy = tmp_path / "app"
    for n in range(1, 4):
        release(deploy, f"2026010{n}000000", f"v{n}")
    (deploy / "current").symlink_to(deploy / "releases" / "20260103000000")
    out = sh(layout.cleanup_listing_command(str(deploy), "Branch main (at x) deployed as release 20260103000000 by me"))
    listing = layout.parse_cleanup_listing(out)
    assert listing.releases == ["20260101000000", "20260102000000", "20260103000000"]
    assert listing.current is not None
    assert listing.current.release == "20260103000000"
    assert listing.logged
    assert (deploy / "revisions.log").read_text().endswith("by me\n")
    unlogged = layout.parse_cleanup_listing(sh(layout.cleanup_listing_command(str(tmp_path / "ro/app"), "x")))
    assert (unlogged.releases, unlogged.logged) == ([], False)


@given(st.dictionaries(st.sampled_from(["a", "b", "c d"]), st.lists(values, max_size=3), max_size=3))
def test_sections_split_back_into_what_each_printed(parts: dict[str, list[str]]) -> None:
    output = "".join(f"== {name}\n" + "".join(line + "\n" for line in lines) for name, lines in parts.items())
    assert split_sections(output) == {name: "".join(line + "\n" for line in lines) for name, lines in parts.items()}


def test_processes_run_from_a_release_are_told_apart_from_others() -> None:
    here = "/var/www/app/releases/2"
    assert facts.judge_cwds(here, [here, here]) is True
    assert facts.judge_cwds(here, [here, "/var/www/app/releases/1"]) is False
    assert facts.judge_cwds(here, ["/"]) is None
    assert facts.judge_cwds(None, [here]) is None
    assert facts.judge_cwds(here, [None]) is None


@settings(max_examples=30, deadline=None)
@given(values.filter(lambda v: "\t" not in v))  # a tab is refused (tab-separated answer)
def test_a_held_lock_is_read_back_whole_by_the_next_try(message: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        deploy_to, holder = str(Path(tmp) / "app"), "uid-1"
        sh(lock.acquire_lock_command(deploy_to, holder, 60, "here/1/1", message=message))
        outcome = lock.parse_acquire(
            sh(lock.acquire_lock_command(deploy_to, "uid-other", 60, "there/2/2")), "uid-other"
        )
        assert (outcome.acquired, outcome.holder, outcome.instance) == (False, holder, "here/1/1")
        assert outcome.message == message
        again = lock.parse_acquire(sh(lock.acquire_lock_command(deploy_to, holder, 60, "here/1/1")), holder)
        assert again.acquired
        assert again.previous_owner == holder
        assert "released" in sh(lock.release_lock_command(deploy_to, holder, "here/1/1"))


def counting_path(tmp: Path, **fakes: str) -> dict[str, str]:
    """An environment whose PATH first has a `sleep` that counts its calls in tmp/sleeps, and `fakes`."""
    bin_dir = tmp / "bin"
    bin_dir.mkdir()
    scripts = {"sleep": f'echo x >> {tmp}/sleeps; exec /bin/sleep "$@"', **fakes}
    for name, body in scripts.items():
        (bin_dir / name).write_text(f"#!/bin/sh\n{body}\n")
        (bin_dir / name).chmod(0o755)
    return {"PATH": f"{bin_dir}:{os.environ['PATH']}"}


def wait_for(start: str, centis: int, env: dict[str, str]) -> str:
    """Run `start` (which sets $p to a pid) and wait_gone for $p with a deadline; the shell's answer."""
    lines = [start, f"if wait_gone $p {centis}; then echo gone; else echo left; fi; kill $p $q 2>/dev/null; true"]
    script = remote_script(ServiceContext(deploy_to="/"), lines)
    return subprocess.run(["sh", "-c", script], capture_output=True, check=True, text=True, env=env).stdout.strip()


def sleeps(tmp: Path) -> int:
    """How many times the counting `sleep` ran."""
    return (tmp / "sleeps").read_text().count("x") if (tmp / "sleeps").exists() else 0


def test_a_wait_for_an_exit_forks_no_sleep_per_poll(tmp_path: Path) -> None:
    assert wait_for("/bin/sleep 0.6 & p=$!", 3000, counting_path(tmp_path)) == "gone"
    assert sleeps(tmp_path) <= 1, f"{sleeps(tmp_path)} sleep commands for one wait of 0.6 s (one per 10 ms poll before)"


def test_a_zombie_left_unreaped_by_its_parent_counts_as_gone(tmp_path: Path) -> None:
    # The child exits after 1 s, during the wait, and its parent leaves it unreaped for 60 s; the wait has 20 s.
    parent = "perl -e '$|=1; my $c = fork(); unless ($c) { sleep 1; exit 0 } print \"$c\\n\"; sleep 60'"
    start = (
        f"{parent} > {tmp_path}/z & q=$!; while [ ! -s {tmp_path}/z ]; do /bin/sleep 0.01; done; p=$(cat {tmp_path}/z)"
    )
    began = time.monotonic()
    assert wait_for(start, 2000, counting_path(tmp_path)) == "gone"
    assert time.monotonic() - began < 10, "seen gone when it exited, not at the deadline (20 s)"


def test_a_wait_for_an_exit_polls_with_sleep_where_perl_lacks(tmp_path: Path) -> None:
    env = counting_path(tmp_path, perl="exit 127")
    assert wait_for("/bin/sleep 0.3 & p=$!", 3000, env) == "gone"
    assert sleeps(tmp_path) >= 2, "the fallback polls"


def test_a_wait_for_an_exit_ends_at_its_deadline_when_the_process_stays(tmp_path: Path) -> None:
    assert wait_for("/bin/sleep 30 & p=$!", 30, counting_path(tmp_path)) == "left"


def test_a_reading_makes_the_readiness_attempts_of_running_instances_in_their_release(tmp_path: Path) -> None:
    deploy = tmp_path / "app"
    new = release(deploy, "20260102000000", "v2", "bbb")
    (deploy / "current").symlink_to(new)
    ctx = ServiceContext(deploy_to=str(deploy))
    files = services.pidfiles_of(ctx, WORKER)
    Path(files[0]).parent.mkdir(parents=True)
    Path(files[0]).write_text(f"{os.getpid()}\n")
    Path(files[1]).write_text("999999999\n")  # not running: no attempt
    passes = 'test "$KAPISTRANO_PID" = "$PPID_WANTED" && test -f REVISION && test "$KAPISTRANO_INSTANCE" = 0'
    passes = passes.replace("$PPID_WANTED", str(os.getpid()))
    probes = [
        facts.FoldedProbe(files[0], 0, passes, 1),
        facts.FoldedProbe(files[0], 0, "exit 3", 1),
        facts.FoldedProbe(files[0], 0, "no-such-command-here", 1),  # 127: left to an attempt of its own
        facts.FoldedProbe(files[1], 1, "true", 1),
    ]
    script = remote_script(ctx, facts.read_lines(str(deploy), files, probes))
    found = facts.parse_facts(sh(script), files, probes)
    assert found.probed == {(files[0], passes, os.getpid()): True, (files[0], "exit 3", os.getpid()): False}
