"""The lab's pure helpers: address allocation, names, host paths, generated text."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest
from kapistrano.lab import LabError, keys, network
from kapistrano.lab.machine import LabHost
from kapistrano.lab.sshd import holder_script, sshd_config

BLOCK = ipaddress.IPv4Network("10.213.0.0/16")
IP_ADDR = """\
1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever preferred_lft forever
4: eth0    inet 192.0.2.2/24 brd 192.0.2.255 scope global eth0\\       valid_lft forever
7: kap1ar0    inet 10.213.0.1/30 scope global kap1ar0\\       valid_lft forever preferred_lft forever
9: kap1ar2    inet 10.213.0.9/30 scope global kap1ar2\\       valid_lft forever preferred_lft forever
"""


def test_used_networks_are_the_slots_holding_a_root_address_inside_the_block() -> None:
    used = network.used_networks(IP_ADDR, BLOCK)
    assert used == {ipaddress.IPv4Network("10.213.0.0/30"), ipaddress.IPv4Network("10.213.0.8/30")}


def test_free_slots_skip_used_ones_and_give_gateway_then_address() -> None:
    slots = network.free_slots(BLOCK, network.used_networks(IP_ADDR, BLOCK), 3)
    assert [(s.gateway, s.address) for s in slots] == [
        ("10.213.0.5", "10.213.0.6"),
        ("10.213.0.13", "10.213.0.14"),
        ("10.213.0.17", "10.213.0.18"),
    ]


def test_an_exhausted_block_is_an_error() -> None:
    small = ipaddress.IPv4Network("10.213.0.0/29")
    with pytest.raises(LabError, match="only 1 free"):
        network.free_slots(small, {ipaddress.IPv4Network("10.213.0.0/30")}, 2)


def test_a_prefix_is_chosen_that_no_existing_name_starts_with() -> None:
    first = network.choose_prefix([], None, 3)
    second = network.choose_prefix([network.netns_name(first, 0)], None, 3)
    assert first != second
    assert len(network.link_name(second, 99)) <= network.IFNAMSIZ
    with pytest.raises(LabError, match="too long"):
        network.choose_prefix([], "averyverylongprefix", 3)


def test_known_hosts_lines_use_brackets_for_other_ports() -> None:
    public = "ssh-ed25519 AAAAC3Nza root@host1"
    assert keys.known_hosts_line("10.213.0.2", 22, public) == "10.213.0.2 ssh-ed25519 AAAAC3Nza"
    assert keys.known_hosts_line("10.213.0.2", 2222, public) == "[10.213.0.2]:2222 ssh-ed25519 AAAAC3Nza"


def test_host_paths_map_private_directories_into_the_host_root() -> None:
    slot = network.Slot(ipaddress.IPv4Network("10.213.0.4/30"))
    host = LabHost("web1", slot.address, slot.gateway, "kap1an1", "kap1ar1", Path("/lab/web1"), slot)
    assert host.path("/var/www/app/current") == Path("/lab/web1/www/app/current")
    assert host.path("/var/run/app.pid") == Path("/lab/web1/run/app.pid")
    assert host.path("/run") == Path("/lab/web1/run")
    assert host.path("/etc/hosts") == Path("/etc/hosts")
    with pytest.raises(ValueError, match="absolute"):
        host.path("var/www")


def test_sshd_config_allows_root_by_key_only_and_tcp_forwarding() -> None:
    config = sshd_config("10.213.0.2", 22, Path("/lab/key"), Path("/lab/authorized_keys")).splitlines()
    for line in ("ListenAddress 10.213.0.2", "PasswordAuthentication no", "AllowTcpForwarding yes", "UsePAM no"):
        assert line in config


def test_the_holder_mounts_parents_before_children_and_reports_ready_last() -> None:
    script = holder_script(
        {"/var/www/app": Path("/l/app"), "/run": Path("/l/run"), "/var/www": Path("/l/www")}, Path("/l/net"), "web1"
    ).splitlines()
    mounts = [line.split()[-1] for line in script if "mount -n --bind" in line]
    assert mounts == ["/run", "/var/www", "/var/www/app"]
    assert script[-2:] == ["echo ready", "exec sleep infinity </dev/null >/dev/null 2>&1"]
