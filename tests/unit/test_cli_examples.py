"""The command-line example: a Release whose hosts are ssh_config aliases, and that ssh_config."""

from __future__ import annotations

from pathlib import Path

import yaml
from asyncssh.config import SSHClientConfig
from kapistrano.api.release import load_releases, parse_release
from kapistrano.hosts.ssh import target_for_host
from kapistrano.hosts.ssh_options import LocalSsh

EXAMPLES = Path(__file__).resolve().parents[2] / "manifests" / "examples"


def test_the_release_leaves_user_and_port_to_the_ssh_config() -> None:
    (release,) = load_releases(EXAMPLES / "cli-release.yaml")
    local = LocalSsh(config_paths=(str(EXAMPLES / "ssh_config"),))
    target = target_for_host(release.spec, release.spec.hosts[1], None, None, local)
    assert target.local is not None
    assert (target.local.user_from_config, target.local.port_from_config) == (True, True)
    assert target.endpoint == "shop-app-2"


def test_the_ssh_config_sends_every_app_host_through_the_bastion() -> None:
    config = SSHClientConfig.load(None, [str(EXAMPLES / "ssh_config")], False, False, False, "me", (), "shop-app-2", ())
    found = [config.get(name) for name in ("Hostname", "Port", "User", "ProxyJump")]
    assert found == ["10.0.1.12", 2222, "deploy", "bastion"]


def test_a_user_named_in_the_release_wins_over_the_ssh_config() -> None:
    document = yaml.safe_load((EXAMPLES / "cli-release.yaml").read_text())
    document["spec"]["ssh"] = {"user": "ops"}
    spec = parse_release(document).spec
    target = target_for_host(spec, spec.hosts[0], None, None, LocalSsh())
    assert target.local is not None
    assert not target.local.user_from_config
    assert target.endpoint == "ops@shop-app-1"
