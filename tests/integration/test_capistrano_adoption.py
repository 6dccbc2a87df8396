"""Hosts laid out by Debian's real `cap` 3.17 are adopted by kapistrano as they are, and back."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from kapistrano.api.spec import GitSource, Source
from kapistrano.hosts import fetch, layout
from kapistrano.lab import HostLab

from tests.integration.hostkit import GitServer, connections, git_server

APP = "/var/www/app"

CAPFILE = """\
require "capistrano/setup"
require "capistrano/deploy"
require "capistrano/scm/git"
install_plugin Capistrano::SCM::Git
"""

DEPLOY_RB = """\
set :application, "app"
set :repo_url, ENV.fetch("KAPISTRANO_TEST_REPO")
set :branch, ENV.fetch("KAPISTRANO_TEST_BRANCH")
set :deploy_to, "/var/www/app"
set :keep_releases, 5
set :linked_dirs, ["log"]
set :local_user, "capuser"
set :format, :airbrussh
set :ssh_options, {
  user: "root",
  keys: [ENV.fetch("KAPISTRANO_TEST_KEY")],
  keys_only: true,
  auth_methods: ["publickey"],
  user_known_hosts_file: ENV.fetch("KAPISTRANO_TEST_KNOWN_HOSTS"),
  global_known_hosts_file: "/dev/null",
  verify_host_key: :always,
  non_interactive: true,
}
"""


@pytest.fixture
def gitsrv() -> Iterator[GitServer]:
    """A git daemon serving the tiny app with tags v1 (deployed by cap) and v2 (by kapistrano)."""
    with git_server() as server:
        server.commit_release("v1", {"app.rb": "puts 1\n"})
        server.commit_release("v2", {"app.rb": "puts 2\n"})
        yield server


def cap_deploy(lab: HostLab, repo_url: str, branch: str) -> subprocess.CompletedProcess[str]:
    """Run `cap production deploy` against every lab host from a fresh project directory."""
    project = Path(tempfile.mkdtemp(prefix="kapistrano-cap-"))
    try:
        (project / "config" / "deploy").mkdir(parents=True)
        (project / "Capfile").write_text(CAPFILE)
        (project / "config" / "deploy.rb").write_text(DEPLOY_RB)
        servers = "".join(f'server "{h.address}", user: "root", roles: %w[app]\n' for h in lab.hosts)
        (project / "config" / "deploy" / "production.rb").write_text(servers)
        env = {
            **os.environ,
            "KAPISTRANO_TEST_REPO": repo_url,
            "KAPISTRANO_TEST_BRANCH": branch,
            "KAPISTRANO_TEST_KEY": str(lab.client_key),
            "KAPISTRANO_TEST_KNOWN_HOSTS": str(lab.known_hosts),
        }
        return subprocess.run(
            ["cap", "production", "deploy"],
            cwd=project,
            env=env,
            capture_output=True,
            text=True,
            timeout=240,
            check=False,
        )
    finally:
        shutil.rmtree(project, ignore_errors=True)


async def test_capistrano_hosts_are_adopted_and_can_switch_back(lab_factory: object, gitsrv: GitServer) -> None:
    lab = lab_factory(2)  # type: ignore[operator]
    assert isinstance(lab, HostLab)
    if shutil.which("cap") is None:
        pytest.skip("capistrano is not installed")
    repo_url = gitsrv.url(lab.hosts[0])  # every host reaches the root namespace at any of its addresses
    deployed = cap_deploy(lab, repo_url, "v1")
    assert deployed.returncode == 0, deployed.stdout[-3000:] + deployed.stderr[-3000:]

    conns = connections(lab)
    try:
        cap_current = await asyncio.gather(*(layout.read_current(c, APP) for c in conns))
        for current in cap_current:
            assert current is not None
            assert (current.version, current.revision) == (None, gitsrv.tags["v1"])
        source = Source(git=GitSource(url=repo_url))
        inputs = fetch.UpdateInputs(APP, "v2", source, git_ref="v2", linked_dirs=("log",))
        results = await fetch.update_hosts(conns, inputs)
        for conn, host, before in zip(conns, lab.hosts, cap_current, strict=True):
            result = results[conn.name]
            assert result.ok, result.error
            assert before is not None
            assert result.release is not None
            assert result.release > before.release
            await layout.publish(conn, APP, result.release)
            await layout.append_revision_log(
                conn, APP, layout.deploy_log_line("v2", result.revision or "", result.release, "kapistrano")
            )
            now = await layout.read_current(conn, APP)
            assert now is not None
            assert (now.release, now.version) == (result.release, "v2")
            assert host.exec(["cat", f"{APP}/current/app.rb"]).stdout == "puts 2\n"
            assert host.exec(["readlink", "-f", f"{APP}/current/log"]).stdout == f"{APP}/shared/log\n"

            await layout.publish(conn, APP, before.release)
            back = await layout.read_current(conn, APP)
            assert back is not None
            assert (back.release, back.version, back.revision) == (before.release, None, gitsrv.tags["v1"])
            assert host.exec(["cat", f"{APP}/current/app.rb"]).stdout == "puts 1\n"
            log_lines = host.path(f"{APP}/revisions.log").read_text().splitlines()
            assert layout.parse_revision_log_line(log_lines[0]) == {
                "kind": "deploy",
                "branch": "v1",
                "sha": gitsrv.tags["v1"],
                "release": before.release,
                "user": "capuser",
            }
            assert (
                log_lines[1] == f"Branch v2 (at {gitsrv.tags['v2']}) deployed as release {result.release} by kapistrano"
            )
    finally:
        await asyncio.gather(*(c.close() for c in conns))
