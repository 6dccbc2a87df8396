"""Service managers' pure parts: command lines built from facts, and parsers of their output."""

from __future__ import annotations

import shlex
import subprocess

import pytest
from hypothesis import given
from hypothesis import strategies as st
from kapistrano.api.spec import GracefulManager, PidfileManager, Service, SystemdManager
from kapistrano.api.types import Signal
from kapistrano.hosts.managers import command, graceful, pidfile, systemd
from kapistrano.hosts.managers.base import (
    InstanceState,
    ServiceContext,
    ServiceEvent,
    ServiceState,
    centis,
    remote_script,
)
from kapistrano.hosts.shell import detached, exec_if_simple, is_simple_command, replaces_shell

CTX = ServiceContext(deploy_to="/var/www/app")
ODD = "/var/www/a b/it's $(rm -rf ~) `x`;|&.pid"
shell_text = st.text(st.characters(exclude_characters="\0", exclude_categories=["Cs"]), min_size=1)


def sh_syntax_ok(command_line: str) -> bool:
    """True when `sh -n` accepts the script inside an `sh -c` command line (runs sh -n, no effects)."""
    argv = shlex.split(command_line)
    assert argv[:2] == ["sh", "-c"]
    return subprocess.run(["sh", "-n", "-c", argv[2]], capture_output=True, check=False).returncode == 0


def script_body(lines: list[str]) -> str:
    """The script an `sh -c` command line built from lines runs (pure)."""
    return shlex.split(remote_script(CTX, lines))[2]


# -- context -------------------------------------------------------------------------------------------


def test_context_paths_follow_capistranos_layout() -> None:
    assert CTX.current == "/var/www/app/current"
    assert CTX.shared == "/var/www/app/shared"
    assert CTX.log_file("sneakers") == "/var/www/app/shared/log/sneakers.log"
    assert ServiceContext("/d", current_dir="/d/releases/1").current == "/d/releases/1"


def test_relative_pid_files_live_under_shared_and_absolute_ones_stay() -> None:
    assert pidfile.pidfile_path(CTX, "tmp/pids/w.{index}.pid", 3) == "/var/www/app/shared/tmp/pids/w.3.pid"
    assert pidfile.pidfile_path(CTX, "/run/w{index}.pid", 0) == "/run/w0.pid"


def test_centiseconds_round_and_never_go_negative() -> None:
    assert centis(30) == 3000
    assert centis(0.054) == 5
    assert centis(-1) == 0


# -- pid files -----------------------------------------------------------------------------------------


def test_start_command_substitutes_index_and_a_quoted_pidfile() -> None:
    line = pidfile.start_command("sidekiq -d -P {pidfile} -e w{index}", 2, "/p/a b.pid")
    assert shlex.split(line) == ["sidekiq", "-d", "-P", "/p/a b.pid", "-e", "w2"]


@given(path=shell_text)
def test_any_pidfile_path_reaches_the_command_as_one_word(path: str) -> None:
    assert shlex.split(pidfile.start_command("run {pidfile}", 0, path)) == ["run", path]


def test_read_lines_quote_the_pid_file_and_are_valid_sh() -> None:
    lines = pidfile.read_lines([ODD, "/x/y.pid"])
    assert shlex.quote(ODD) in "\n".join(lines)
    assert sh_syntax_ok(remote_script(CTX, lines))


def test_parse_pids_reads_pids_and_liveness_and_treats_missing_lines_as_not_running() -> None:
    out = "noise\npid 0 4242 1\npid 2 - 0\npid 9 77 1\npid x 1 1\n"
    assert pidfile.parse_pids(out, 3) == [(4242, True), (None, False), (None, False)]
    assert pidfile.parse_pids("pid 0 13 0\n", 1) == [(13, False)]


def test_stop_sends_quiet_then_stop_signal_then_escalates_after_the_timeout() -> None:
    settings = PidfileManager(path="p", start="w", quiet_signal=Signal.TSTP, stop_timeout_seconds=7)
    body = script_body(pidfile.stop_lines(settings, 4242, ODD))
    tstp, term, kill = body.index("send TSTP"), body.index("send TERM"), body.index("send KILL")
    assert tstp < term < kill
    assert "p=4242;" in body
    assert 'wait_gone "$p" 700 "$pf"' in body
    assert shlex.quote(ODD) in body
    assert "sleep 3" not in body
    assert sh_syntax_ok(remote_script(CTX, pidfile.stop_lines(settings, 4242, ODD)))


def test_stop_without_quiet_signal_sends_none() -> None:
    body = script_body(pidfile.stop_lines(PidfileManager(path="p", start="w"), 1234, "/p.pid"))
    assert "TSTP" not in body
    assert "send TERM" in body


@pytest.mark.parametrize(
    ("output", "how", "seconds"),
    [
        ("stop gone\n", "gone", None),
        ("stop exited 512\n", "exited", 5.12),
        ("x\nstop killed 3010\n", "killed", 30.1),
        ("stop stuck 4000\n", "stuck", 40.0),
    ],
)
def test_parse_stop(output: str, how: str, seconds: float | None) -> None:
    outcome = pidfile.parse_stop(output)
    assert outcome == pidfile.StopOutcome(how, seconds)


def test_parse_stop_without_a_report_is_none() -> None:
    assert pidfile.parse_stop("sh: 1: syntax error\n") is None


def test_launch_runs_detached_in_current_with_quoted_environment_and_log() -> None:
    env = pidfile.launch_env(ServiceContext("/d", env={"PATH": "/o p:/bin"}), 1, ODD)
    lines = pidfile.launch_lines(CTX, "python3 w.py", ODD, "/l/a b.log", env)
    body = script_body(lines)
    assert "cd /var/www/app/current || exit 1" in body
    assert "setsid sh -c 'exec python3 w.py' </dev/null >>'/l/a b.log' 2>&1 &" in body
    assert f"KAPISTRANO_PIDFILE={shlex.quote(ODD)}" in body
    assert "KAPISTRANO_INSTANCE=1" in body
    assert "PATH='/o p:/bin'" in body
    assert sh_syntax_ok(remote_script(CTX, lines))


def test_launch_only_writes_the_pid_file_when_asked() -> None:
    ctx = ServiceContext("/d", start_grace=0.5)
    writes = script_body(pidfile.launch_lines(ctx, "w", "/p", "/l", {}))
    never = script_body(pidfile.launch_lines(ctx, "w", "/p", "/l", {}, write_pid=False))
    assert "grace=$(( $(now) + 50 ))" in writes
    assert "grace=;" in never


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        ("start own 77\n", pidfile.StartOutcome("own", 77)),
        ("start written 78\n", pidfile.StartOutcome("written", 78)),
        (
            "start failed 127\n---\nsh: 1: nope: not found\n",
            pidfile.StartOutcome("failed", None, 127, "sh: 1: nope: not found"),
        ),
        ("start failed -\n---\n", pidfile.StartOutcome("failed", None, None, "")),
    ],
)
def test_parse_start(output: str, expected: pidfile.StartOutcome) -> None:
    assert pidfile.parse_start(output) == expected


def test_a_log_line_that_looks_like_a_report_is_not_taken_for_one() -> None:
    assert pidfile.parse_start("start failed 1\n---\nstart own 5\n") == pidfile.StartOutcome(
        "failed", None, 1, "start own 5"
    )


# -- the launcher shell --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "simple"),
    [
        ("python3 worker.py --queue 'a;b'", True),
        ("bundle exec sneakers work Worker --require app.rb", True),
        ("sidekiq -d -P /p.pid", True),
        ("a && b", False),
        ("cd sub; worker", False),
        ("a | b", False),
        ("worker > out.log", False),
        ("FOO=1 worker", False),
        ("exec worker", False),
        ("worker $(date)", False),
        ("worker\nother", False),
        ("worker 'unbalanced", False),
        ("", False),
    ],
)
def test_simple_commands_are_recognised_conservatively(command: str, simple: bool) -> None:
    assert is_simple_command(command) is simple


def test_exec_if_simple_lets_the_shells_pid_become_the_programs() -> None:
    assert exec_if_simple("worker -v") == "exec worker -v"
    assert exec_if_simple("a && b") == "a && b"
    assert exec_if_simple("RAILS_ENV=production Q='a b' bundle exec sidekiq") == (
        "exec env RAILS_ENV=production Q='a b' bundle exec sidekiq"
    )
    assert exec_if_simple("FOO=1") == "FOO=1"
    assert exec_if_simple("FOO=1 cd x") == "FOO=1 cd x"
    assert exec_if_simple("FOO=1 a | b") == "FOO=1 a | b"
    for expanded in ("JAVA_OPTS=$OPTS java", "STAMP=`date` w", "GEM_HOME=~/gems w", "X=a* w"):
        assert exec_if_simple(expanded) == expanded, expanded


@pytest.mark.parametrize(
    ("command", "replaced"),
    [
        ("worker -v", True),
        ("RAILS_ENV=production bundle exec sidekiq", True),
        ("exec worker -v", True),
        ("exec env A=1 python3 w.py", True),
        ("exec worker | cat", False),
        ("worker | logger", False),
        ("true && worker", False),
        ("cd sub; exec worker", False),
    ],
)
def test_commands_whose_program_takes_the_shells_pid_are_told_apart(command: str, replaced: bool) -> None:
    assert replaces_shell(command) is replaced


def test_only_a_start_command_that_keeps_its_shell_is_marked_as_a_process_group() -> None:
    env = pidfile.launch_env(CTX, 0, ODD)
    assert "m=group" not in script_body(pidfile.launch_lines(CTX, "exec env A=1 worker", ODD, "/l.log", env))
    assert "m=group" in script_body(pidfile.launch_lines(CTX, "worker | logger", ODD, "/l.log", env))


def test_an_exec_with_assignments_runs_the_program_in_the_shells_place() -> None:
    """Run by the real sh: the program gets the variables and the shell's pid."""
    script = "echo $$; " + exec_if_simple('GREETING="hello there" sh -c \'echo $$ "$GREETING"\'')
    out = subprocess.run(["sh", "-c", script], capture_output=True, text=True, check=True).stdout.split("\n")
    assert out[0] == out[1].split()[0], out
    assert out[1].split(maxsplit=1)[1] == "hello there"


def test_detached_quotes_the_command_as_one_argument() -> None:
    line = detached("a && b", {"K": "v w"}, "/l.log")
    assert line == "env K='v w' setsid sh -c 'a && b' </dev/null >>/l.log 2>&1 &"


# -- graceful ------------------------------------------------------------------------------------------


def test_reload_signals_the_old_master_and_polls_for_a_new_one() -> None:
    settings = GracefulManager(pid_file="tmp/pids/unicorn.pid", timeout_seconds=9)
    lines = graceful.reload_lines(settings, 500, ODD)
    body = script_body(lines)
    assert "kill -s USR2 500" in body
    assert shlex.quote(ODD + ".oldbin") in body
    assert "+ 900 ))" in body
    assert sh_syntax_ok(remote_script(CTX, lines))


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        ("reload new 601 500\n", graceful.ReloadOutcome("new", 601)),
        ("reload new 601 -\n", graceful.ReloadOutcome("new", 601)),
        ("reload timeout\n", graceful.ReloadOutcome("timeout")),
        ("reload old-died\n", graceful.ReloadOutcome("old-died")),
        ("garbage\n", None),
    ],
)
def test_parse_reload(output: str, expected: graceful.ReloadOutcome | None) -> None:
    assert graceful.parse_reload(output) == expected


def test_retire_restores_the_pid_file_only_when_asked() -> None:
    plain = graceful.retire_lines("QUIT", 500, 60, ODD)
    restoring = graceful.retire_lines("QUIT", 601, 60, ODD, restore=500)
    assert "kill -s QUIT 500" in script_body(plain)
    assert "r=500" not in script_body(plain)
    assert "r=500" in script_body(restoring)
    assert sh_syntax_ok(remote_script(CTX, restoring))
    assert sh_syntax_ok(remote_script(CTX, plain))


def test_retiring_the_old_master_forgets_its_oldbin_before_signalling_it() -> None:
    plain = script_body(graceful.retire_lines("QUIT", 500, 60, ODD))
    assert 'rm -f "$ob"' in plain
    assert plain.index('rm -f "$ob"') < plain.index("kill -s QUIT 500")
    assert 'rm -f "$ob"' not in script_body(graceful.retire_lines("QUIT", 601, 60, ODD, restore=500))


def test_parse_retire() -> None:
    assert graceful.parse_retire("retire exited 120\n") == (True, 1.2)
    assert graceful.parse_retire("retire lingering 6000\n") == (False, 60.0)
    assert graceful.parse_retire("") == (False, None)


def test_graceful_pid_file_is_relative_to_shared() -> None:
    service = Service(name="web", manager="graceful", graceful={"pidFile": "tmp/pids/unicorn.pid"})
    assert graceful.master_pidfile(CTX, service) == "/var/www/app/shared/tmp/pids/unicorn.pid"


# -- systemd -------------------------------------------------------------------------------------------


def test_systemctl_goes_through_sudo_n_when_asked_and_keeps_the_environment_override() -> None:
    ctx = ServiceContext("/d", env={"PATH": "/x y"})
    line = systemd.systemctl(ctx, SystemdManager(unit="a.service", sudo=True), "restart", "--", "a b.service")
    assert line == "env PATH='/x y' sudo -n systemctl restart -- 'a b.service'"
    assert systemd.systemctl(CTX, SystemdManager(unit="a.service"), "is-active", "a.service") == (
        "systemctl is-active a.service"
    )


def test_globs_are_expanded_with_list_units() -> None:
    settings = SystemdManager(unit="sidekiq@*.service")
    assert systemd.is_glob(settings.unit)
    assert not systemd.is_glob("sidekiq.service")
    assert systemd.list_units_command(CTX, settings) == (
        "systemctl list-units --all --plain --no-legend --no-pager -- 'sidekiq@*.service'"
    )


def test_parse_list_units_takes_the_first_column_and_skips_bullets() -> None:
    out = (
        "sidekiq@1.service loaded active running Sidekiq 1\n"
        "● sidekiq@2.service loaded failed failed Sidekiq 2\n"
        "\n"
        "sidekiq@1.service loaded active running dup\n"
    )
    assert systemd.parse_list_units(out) == ["sidekiq@1.service", "sidekiq@2.service"]


def test_parse_show_reads_blocks() -> None:
    out = "Id=a.service\nMainPID=42\nActiveState=active\n\nId=b.service\nMainPID=0\nActiveState=failed\n"
    assert systemd.parse_show(out) == [
        InstanceState("a.service", 42, True),
        InstanceState("b.service", None, False),
    ]


# -- command -------------------------------------------------------------------------------------------


def test_user_commands_run_in_current_with_output_in_the_log() -> None:
    line = command.logged_command(CTX, "svc", "bin/stop && echo 'done'")
    assert "cd /var/www/app/current && sh -c 'bin/stop && echo '\"'\"'done'\"'\"''" in line
    assert ">>/var/www/app/shared/log/svc.log 2>&1" in line
    assert "</dev/null" in line
    assert subprocess.run(["sh", "-n", "-c", line], check=False).returncode == 0


def test_status_command_discards_output() -> None:
    assert command.status_command(CTX, "pgrep x").endswith("</dev/null >/dev/null 2>&1")


# -- results -------------------------------------------------------------------------------------------


def test_events_read_as_status_messages() -> None:
    assert str(ServiceEvent("stopping", "sneakers", "0", 4242)) == "sneakers[0] stopping (pid 4242)"
    assert str(ServiceEvent("exited", "sneakers", "1", 4242, 5.123)) == "sneakers[1] exited (pid 4242) after 5.12s"


def test_a_service_runs_when_every_instance_is_alive() -> None:
    up, down = InstanceState("0", 1, True), InstanceState("1", None, False)
    assert ServiceState("s", (up, up)).running is True
    assert ServiceState("s", (up, down)).running is False
    assert ServiceState("s", ()).running is False
    assert ServiceState("s", (up, InstanceState("c", None, None))).running is None
    assert ServiceState("s", (up, down)).pids == (1,)


@given(poll=st.floats(min_value=0.001, max_value=5), lines=st.lists(shell_text, max_size=4))
def test_remote_scripts_are_one_quoted_sh_argument(poll: float, lines: list[str]) -> None:
    argv = shlex.split(remote_script(ServiceContext("/d", poll_interval=poll), lines))
    assert argv[:2] == ["sh", "-c"]
    assert len(argv) == 3
    assert argv[2].endswith("\n".join(lines))
