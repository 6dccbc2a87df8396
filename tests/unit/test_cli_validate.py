"""`kapistrano validate -f FILE`, run as a command: a summary per valid Release, a line per problem."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from .crdcheck import EXAMPLE_FILE, ROOT


def validate(*files: Path) -> subprocess.CompletedProcess[str]:
    """Run `kapistrano validate` on files in a subprocess."""
    args = [arg for f in files for arg in ("-f", str(f))]
    return subprocess.run(
        [sys.executable, "-m", "kapistrano.cli.main", "validate", *args],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )


def write_documents(path: Path, *documents: object) -> Path:
    """Write YAML documents to a file and return its path."""
    path.write_text(yaml.safe_dump_all(documents, sort_keys=False))
    return path


def example() -> dict[str, object]:
    """The example Release as a dict."""
    return dict(yaml.safe_load(EXAMPLE_FILE.read_text()))


def test_valid_file_exits_0_with_one_summary_per_release() -> None:
    result = validate(EXAMPLE_FILE)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "release deploy/billing-workers: valid (2 hosts, 3 services, source git)",
        "  sneakers: 2 instances per host, Parallel, StopFirst, then TERM",
    ]
    assert result.stderr == ""


def test_every_release_of_a_multi_document_file_is_summarised(tmp_path: Path) -> None:
    second = example()
    second["metadata"] = {"name": "single"}
    second["spec"] = {
        "application": "single",
        "version": "1",
        "source": {"path": "/opt/build"},
        "hosts": [{"name": "only", "address": "10.0.0.1"}],
    }
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}}
    result = validate(write_documents(tmp_path / "two.yaml", example(), secret, second))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "release deploy/billing-workers: valid (2 hosts, 3 services, source git)",
        "  sneakers: 2 instances per host, Parallel, StopFirst, then TERM",
        "release single: valid (1 host, 0 services, source path)",
    ]


def test_validate_says_how_workers_restart_and_warns_of_a_quiet_phase_without_a_drained_check(
    tmp_path: Path,
) -> None:
    release = example()
    sneakers = release["spec"]["services"][0]["pidfile"]
    sneakers |= {"quietSignal": "TSTP", "quietTimeoutSeconds": 45, "replace": "StartFirst"}
    result = validate(write_documents(tmp_path / "quiet.yaml", release))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[1:] == [
        "  sneakers: 2 instances per host, Parallel, StartFirst, TSTP, for up to 45s, then TERM",
        "  warning: sneakers: quietSignal without a drained check: every stop waits quietTimeoutSeconds (45s)"
        " unless the worker exits by itself",
    ]
    sneakers["drained"] = {"exec": {"command": "sh bin/idle.sh"}}
    result = validate(write_documents(tmp_path / "drained.yaml", release))
    assert result.stdout.splitlines()[1:] == [
        "  sneakers: 2 instances per host, Parallel, StartFirst, TSTP, until drained, then TERM"
    ]


def test_bad_file_exits_1_with_one_line_per_problem_naming_the_field(tmp_path: Path) -> None:
    bad = example()
    spec = bad["spec"]
    assert isinstance(spec, dict)
    spec["version"] = "1.0; rm -rf /"
    spec["hosts"][1]["name"] = "worker 2"
    spec["source"]["path"] = "/opt/builds/billing"
    result = validate(write_documents(tmp_path / "bad.yaml", bad))
    assert result.returncode == 1
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 3, lines
    assert lines[0].startswith("release deploy/billing-workers: spec.version: must be letters, digits")
    assert lines[1].startswith("release deploy/billing-workers: spec.source: exactly one of git, archive or path")
    assert lines[2].startswith("release deploy/billing-workers: spec.hosts[1].name: must be letters, digits")


def test_a_bad_release_does_not_hide_the_good_ones(tmp_path: Path) -> None:
    bad = example()
    bad["metadata"] = {"name": "broken", "namespace": "deploy"}
    bad["spec"] = {**bad["spec"], "keepReleases": -1}  # type: ignore[dict-item]
    result = validate(write_documents(tmp_path / "mixed.yaml", example(), bad))
    assert result.returncode == 1
    assert result.stdout.startswith("release deploy/billing-workers: valid")
    assert result.stderr.startswith("release deploy/broken: spec.keepReleases: Input should be greater than or equal")


def test_unreadable_and_release_less_files_are_problems(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("spec: [unclosed\n")
    empty = write_documents(tmp_path / "secret.yaml", {"apiVersion": "v1", "kind": "Secret"})
    result = validate(broken, empty, tmp_path / "missing.yaml")
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert lines[0] == f"{broken}:2:1: expected ',' or ']', but got '<stream end>'"
    assert lines[-2] == f"{empty}: no document of kind Release"
    assert lines[-1].startswith(f"{tmp_path / 'missing.yaml'}: ")


def test_a_duplicate_key_is_one_problem_naming_its_line(tmp_path: Path) -> None:
    text = EXAMPLE_FILE.read_text().replace("spec:\n", "spec:\n  paused: true\n  paused: false\n", 1)
    path = tmp_path / "dup.yaml"
    path.write_text(text)
    result = validate(path)
    assert result.returncode == 1
    line = text.splitlines().index("  paused: false") + 1
    assert result.stderr.splitlines() == [f"{path}:{line}:3: duplicate key 'paused'"]


def test_a_file_that_is_not_utf8_is_one_problem_without_a_traceback(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(EXAMPLE_FILE.read_bytes().replace(b"billing", b"b\xe9lling", 1))
    result = validate(path)
    assert result.returncode == 1
    offset = EXAMPLE_FILE.read_bytes().index(b"billing") + 1
    assert result.stderr.splitlines() == [f"{path}: not UTF-8 text (byte 0xe9 at offset {offset})"]
    assert "Traceback" not in result.stderr


def test_a_5000_deep_nesting_is_one_problem_without_a_traceback(tmp_path: Path) -> None:
    path = tmp_path / "deep.yaml"
    path.write_text("spec: " + "[" * 5000 + "]" * 5000 + "\n")
    result = validate(path)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [f"{path}:1:70: nested deeper than 64 levels"], result.stderr


def test_skipping_host_key_checks_is_valid_but_warned_about(tmp_path: Path) -> None:
    insecure = example()
    insecure["spec"]["ssh"]["insecureSkipHostKeyCheck"] = True  # type: ignore[index]
    result = validate(write_documents(tmp_path / "insecure.yaml", insecure))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("release deploy/billing-workers: valid")
    assert result.stderr.startswith(
        "release deploy/billing-workers: warning: spec.ssh.insecureSkipHostKeyCheck is true"
    )
    assert len(result.stderr.splitlines()) == 1


def test_apply_reports_an_unreadable_file_in_one_line_before_connecting(tmp_path: Path) -> None:
    path = tmp_path / "deep.yaml"
    path.write_text("spec: " + "[" * 5000 + "]" * 5000 + "\n")
    command = [sys.executable, "-m", "kapistrano.cli.main", "apply", "-f", str(path), "--ssh-key", "/dev/null"]
    result = subprocess.run(command, capture_output=True, text=True, check=False, cwd=ROOT)
    assert result.returncode == 1
    shown = result.stdout + result.stderr
    assert "nested deeper than 64 levels" in " ".join(shown.split())
    assert "Traceback" not in shown
