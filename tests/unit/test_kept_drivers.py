"""The operator keeps a Release's host drivers (and their connections) from one engine run to the next."""

from __future__ import annotations

import asyncio

from kapistrano.api.spec import Host, ReleaseSpec
from kapistrano.engine.driver import HostDriver
from kapistrano.engine.kept import KeptDrivers

from tests.unit.planfixtures import make_spec


class Closing:
    """A driver stand-in that only records whether it was closed."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.closed = False

    async def close(self) -> None:
        self.closed = True


def run(kept: KeptDrivers, spec: ReleaseSpec, credentials: str, made: list[Closing]) -> dict[str, HostDriver]:
    """One engine run's drivers: every host of the spec asked for once, then the unused closed."""

    def make(spec_: ReleaseSpec, host: Host) -> HostDriver:
        made.append(Closing(host.name))
        return made[-1]  # type: ignore[return-value]

    get = kept.factory(make, credentials)
    drivers = {h.name: get(spec, h) for h in spec.hosts}
    asyncio.run(kept.close_unused())
    return drivers


def test_the_next_run_gets_the_same_drivers_and_a_changed_host_or_secret_a_new_one() -> None:
    kept, made = KeptDrivers(), list[Closing]()
    spec = make_spec(3)
    first = run(kept, spec, "secret-1", made)
    again = run(kept, spec.model_copy(update={"version": "v9"}), "secret-1", made)
    assert again == first, "a new version reuses the drivers, and their connections"
    assert len(made) == 3
    moved = spec.hosts[0].model_copy(update={"address": "10.9.9.9"})
    fewer = spec.model_copy(update={"hosts": [moved, spec.hosts[1]]})
    third = run(kept, fewer, "secret-1", made)
    assert third[spec.hosts[1].name] is first[spec.hosts[1].name]
    assert third[moved.name] is not first[moved.name], "a new address gets a new connection"
    assert [d.closed for d in made[:3]] == [True, False, True], "the old address and the host gone are closed"
    fourth = run(kept, fewer, "secret-2", made)
    assert all(fourth[n] is not third[n] for n in fourth), "new credentials, new connections"
    assert len(kept) == 2
    asyncio.run(kept.close())
    assert all(d.closed for d in made)
    assert len(kept) == 0
