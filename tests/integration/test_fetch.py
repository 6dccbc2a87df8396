"""Fetching releases (git, archive, path) and the parallel updating phase against real lab hosts."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from kapistrano.api.spec import ArchiveSource, GitSource, ReleaseSpec, Source
from kapistrano.hosts import fetch, layout
from kapistrano.hosts.errors import SourceError
from kapistrano.hosts.ssh import SshConnection
from kapistrano.lab import HostLab

from tests.integration.hostkit import GitServer, HttpServer, connections, git_server, http_server

APP = "/var/www/app"


@pytest.fixture
def gitsrv() -> Iterator[GitServer]:
    """A git daemon serving app.git with tags v1 and v2."""
    with git_server() as server:
        server.commit_release("v1", {"app.rb": "puts 1\n", "log/.keep": ""})
        server.commit_release("v2", {"app.rb": "puts 2\n"})
        yield server


@pytest.fixture
def httpsrv() -> Iterator[HttpServer]:
    """An HTTP file server."""
    with http_server() as server:
        yield server


@pytest.fixture
async def conns(lab: HostLab) -> AsyncIterator[list[SshConnection]]:
    """One connection per lab host."""
    opened = connections(lab)
    yield opened
    await asyncio.gather(*(c.close() for c in opened))


def git_inputs(url: str, version: str, ref: str | None = None, **extra: Any) -> fetch.UpdateInputs:
    """UpdateInputs for a git source."""
    return fetch.UpdateInputs(APP, version, Source(git=GitSource(url=url, ref=ref)), git_ref=ref or version, **extra)


async def test_git_release_is_exported_at_the_tagged_commit(
    lab: HostLab, gitsrv: GitServer, conns: list[SshConnection]
) -> None:
    host, conn = lab.hosts[0], conns[0]
    result = await fetch.update_host(conn, git_inputs(gitsrv.url(host), "v1", linked_dirs=("log",)))
    assert result.revision == gitsrv.tags["v1"]
    assert result.release is not None
    assert not result.reused
    release = host.path(f"{APP}/releases/{result.release}")
    assert (release / "app.rb").read_text() == "puts 1\n"
    assert (release / "log").is_symlink()
    assert (release / "REVISION").read_text() == gitsrv.tags["v1"] + "\n"
    assert (release / ".kapistrano-version").read_text() == "v1\n"
    assert host.path(f"{APP}/repo/HEAD").is_file(), "the mirror lives in deployTo/repo like Capistrano's"


async def test_the_mirror_is_updated_for_later_commits_and_versions_are_reused(
    lab: HostLab, gitsrv: GitServer, conns: list[SshConnection]
) -> None:
    host, conn = lab.hosts[0], conns[0]
    first = await fetch.update_host(conn, git_inputs(gitsrv.url(host), "v1"))
    sha3 = gitsrv.commit_release("v3", {"app.rb": "puts 3\n"})
    third = await fetch.update_host(conn, git_inputs(gitsrv.url(host), "v3"))
    assert third.revision == sha3
    again = await fetch.update_host(conn, git_inputs(gitsrv.url(host), "v1"))
    assert again.reused
    assert again.release == first.release
    assert again.revision == gitsrv.tags["v1"]
    assert len(await layout.list_releases(conn, APP)) == 2


async def test_a_branch_ref_and_a_missing_ref(lab: HostLab, gitsrv: GitServer, conns: list[SshConnection]) -> None:
    host, conn = lab.hosts[0], conns[0]
    on_main = await fetch.update_host(conn, git_inputs(gitsrv.url(host), "build-7", ref="main"))
    assert on_main.revision == gitsrv.tags["v2"]
    with pytest.raises(SourceError) as caught:
        await fetch.update_host(conn, git_inputs(gitsrv.url(host), "v9"))
    assert "git ref 'v9' does not exist" in caught.value.message
    assert await layout.list_releases(conn, APP) == [on_main.release], "no half-made release is left"


async def test_an_unreachable_repository_is_a_source_error(lab: HostLab, conns: list[SshConnection]) -> None:
    host = lab.hosts[0]
    with pytest.raises(SourceError) as caught:
        await fetch.update_host(conns[0], git_inputs(f"git://{host.gateway}:1/none.git", "v1"))
    assert "cannot fetch" in caught.value.message
    assert await layout.list_releases(conns[0], APP) == []


async def test_an_archive_is_verified_then_unpacked(
    lab: HostLab, httpsrv: HttpServer, conns: list[SshConnection]
) -> None:
    host = lab.hosts[0]
    sha = httpsrv.add_archive("app-1.tar.gz", {"app.rb": "puts :archive\n"}, prefix="app-1")
    source = Source(archive=ArchiveSource(url=httpsrv.url(host, "app-1.tar.gz"), sha256=sha, strip_components=1))
    result = await fetch.update_host(conns[0], fetch.UpdateInputs(APP, "1.0", source))
    assert result.revision == sha
    assert host.path(f"{APP}/releases/{result.release}/app.rb").read_text() == "puts :archive\n"
    assert not list(host.path(APP).glob(".kapistrano-download.*")), "the temp file is removed"


async def test_a_sha256_mismatch_is_refused_before_unpacking_and_leaves_no_release(
    lab: HostLab, httpsrv: HttpServer, conns: list[SshConnection]
) -> None:
    host = lab.hosts[0]
    actual = httpsrv.add_archive("app-1.tar.gz", {"app.rb": "puts :evil\n"})
    expected = "0" * 64
    source = Source(archive=ArchiveSource(url=httpsrv.url(host, "app-1.tar.gz"), sha256=expected))
    with pytest.raises(SourceError) as caught:
        await fetch.update_host(conns[0], fetch.UpdateInputs(APP, "1.0", source))
    assert f"expected {expected}, got {actual}" in caught.value.message
    assert list(host.path(f"{APP}/releases").iterdir()) == []
    assert not list(host.path(APP).glob(".kapistrano-download.*"))


async def test_a_missing_archive_is_a_source_error(
    lab: HostLab, httpsrv: HttpServer, conns: list[SshConnection]
) -> None:
    source = Source(archive=ArchiveSource(url=httpsrv.url(lab.hosts[0], "nope.tar.gz"), sha256="0" * 64))
    with pytest.raises(SourceError) as caught:
        await fetch.update_host(conns[0], fetch.UpdateInputs(APP, "1.0", source))
    assert "download of" in caught.value.message


async def test_a_path_source_is_copied_and_a_missing_one_is_a_clear_error(
    lab: HostLab, conns: list[SshConnection]
) -> None:
    host = lab.hosts[0]
    run = "/var/www/builds/app-5/bin/run"
    host.exec(f"mkdir -p /var/www/builds/app-5/bin && echo run > {run} && chmod 755 {run}")
    result = await fetch.update_host(conns[0], fetch.UpdateInputs(APP, "5", Source(path="/var/www/builds/app-5")))
    copied = host.path(f"{APP}/releases/{result.release}/bin/run")
    assert copied.read_text() == "run\n"
    assert copied.stat().st_mode & 0o777 == 0o755
    with pytest.raises(SourceError) as caught:
        await fetch.update_host(conns[0], fetch.UpdateInputs(APP, "6", Source(path="/var/www/builds/app-6")))
    assert "/var/www/builds/app-6 does not exist" in caught.value.message


async def test_shell_metacharacters_in_an_unvalidated_version_run_nothing(
    lab: HostLab, gitsrv: GitServer, conns: list[SshConnection]
) -> None:
    host = lab.hosts[0]
    evil = "v1$(touch /var/www/pwned1);touch /var/www/pwned2;`touch /var/www/pwned3`'\"\n|touch /var/www/pwned4"
    spec = ReleaseSpec.model_construct(
        application="app",
        version=evil,
        source=Source(git=GitSource.model_construct(url=gitsrv.url(host), ref=None)),
        deploy_to=APP,
        linked_dirs=[],
        linked_files=[],
        hosts=[],
    )
    with pytest.raises(SourceError):
        await fetch.update_host(conns[0], fetch.UpdateInputs.from_spec(spec))
    await layout.append_revision_log(conns[0], APP, layout.deploy_log_line(evil, "x", "y", "z"))
    for n in range(1, 5):
        assert not host.path(f"/var/www/pwned{n}").exists()
    assert host.path(f"{APP}/revisions.log").read_text().count("\n") == 1


async def test_update_hosts_runs_in_parallel_and_captures_errors_per_host(
    lab: HostLab, gitsrv: GitServer, conns: list[SshConnection]
) -> None:
    bad = lab.hosts[2]
    bad.exec("mkdir -p /var/www/app && touch /var/www/app/releases")  # a file where releases/ should be
    inputs = git_inputs(gitsrv.url(lab.hosts[0]), "v2")
    results = await fetch.update_hosts(conns, inputs, concurrency=2)
    assert sorted(results) == ["host1", "host2", "host3"]
    assert results["host1"].ok
    assert results["host2"].ok
    assert results["host1"].revision == gitsrv.tags["v2"]
    assert not results["host3"].ok
    assert results["host3"].error is not None
    again = await fetch.update_hosts(conns[:2], inputs)
    assert all(r.reused for r in again.values())


def test_a_git_url_is_passed_to_git_as_a_value_never_as_an_option(tmp_path: Any) -> None:
    """Every user value reaches git after `--`: even a URL that looks like an option is stored as the URL."""
    subprocess.run(["git", "init", "--quiet", "--bare", str(tmp_path / "repo")], check=True)
    repo = str(tmp_path / "repo")
    subprocess.run(["git", "-C", repo, "remote", "add", "origin", "https://example.invalid/a"], check=True)
    subprocess.run(["sh", "-c", fetch.mirror_command(str(tmp_path), "--push")], capture_output=True, check=False)
    url = subprocess.run(["git", "-C", repo, "config", "remote.origin.url"], capture_output=True, text=True, check=True)
    assert url.stdout.strip() == "--push"
