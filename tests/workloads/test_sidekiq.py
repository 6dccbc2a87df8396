"""sidekiq (Debian ruby-sidekiq) with redis-server on three lab hosts: a rolling restart keeps a live process.

Each host runs `sidekiq -r ./app.rb -C config/sidekiq.yml` in the foreground (manager pidfile,
quietSignal TSTP, stopSignal TERM); readiness is the process's own heartbeat in Redis. While v1 -> v2
-> v1 rolls out, the test enqueues SlowJobs and samples the live sidekiq processes in Redis every
100 ms. One host at a time: never zero, and every job completes. All hosts at once (what `cap deploy`
does: one `kapistrano apply` per host, all in parallel): the samples show a moment without any sidekiq.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator
from typing import Any

import pytest
from kapistrano.lab import HostLab

from .kit import Loop, Sampler, Workload, report, running
from .servers import RedisServer, Resp, wait_until

pytestmark = pytest.mark.workloads

FRESH_SECONDS = 20.0  # sidekiq beats every 5 s; a process that died without cleaning up goes stale
BOOT_SECONDS = 1  # the app's load time (a Rails app takes seconds), the same in every test


def sidekiq_service(redis: RedisServer, lab: HostLab, *, quiet: bool = True) -> dict[str, Any]:
    """The sidekiq service of the Release: foreground process, heartbeat readiness (pure).

    With `quiet`, TSTP first and TERM once the heartbeat says the process is quiet and idle (the
    `drained` check); without, TERM alone, which sidekiq 6 already takes as "finish or requeue".
    """
    url = redis.url(lab.service_address)
    stop: dict[str, Any] = {"stopSignal": "TERM", "stopTimeoutSeconds": 25}
    if quiet:
        stop |= {"quietSignal": "TSTP", "drained": {"exec": {"command": f"sh drained.sh {url}"}}}
    return {
        "name": "sidekiq",
        "manager": "pidfile",
        "instances": 1,
        "pidfile": {
            "path": "tmp/pids/sidekiq.{index}.pid",
            "start": f"exec env REDIS_URL={url} BOOT_SECONDS={BOOT_SECONDS} sidekiq -r ./app.rb -C config/sidekiq.yml",
            **stop,
        },
        "readiness": {
            "exec": {"command": f"sh ready.sh {url} tmp/pids/sidekiq.0.pid"},
            "periodSeconds": 0.2,
            "timeoutSeconds": 5,
            "failureThreshold": 100,
        },
    }


def live_processes(client: Resp) -> int:
    """sidekiq processes registered in Redis with a fresh heartbeat and not quiet (network I/O)."""
    members = client.call("SMEMBERS", "processes")
    assert isinstance(members, list)
    if not members:
        return 0
    replies = client.pipeline(*[("HMGET", m, "beat", "quiet") for m in members if isinstance(m, bytes)])
    now = time.time()
    alive = 0
    for reply in replies:
        assert isinstance(reply, list)
        beat, quiet = reply
        if isinstance(beat, bytes) and now - float(beat) < FRESH_SECONDS and quiet != b"true":
            alive += 1
    return alive


class Jobs:
    """Enqueues SlowJobs straight into sidekiq's Redis list, as Sidekiq::Client does (one connection)."""

    def __init__(self, redis: RedisServer) -> None:
        self.client = redis.client()
        self.ids: list[str] = []
        self.jids: dict[str, str] = {}  # sidekiq's jid -> our job id, to find a job in sidekiq's log
        self.prefix = secrets.token_hex(3)

    def enqueue(self, i: int) -> None:
        """Push job number `i` (network I/O)."""
        job_id = f"{self.prefix}-{i}"
        now = time.time()
        payload = {"class": "SlowJob", "args": [job_id], "queue": "default", "retry": 5}
        payload |= {"jid": secrets.token_hex(12), "created_at": now, "enqueued_at": now}
        self.client.pipeline(("SADD", "queues", "default"), ("LPUSH", "queue:default", json.dumps(payload)))
        self.ids.append(job_id)
        self.jids[str(payload["jid"])] = job_id

    def missing(self, client: Resp) -> list[str]:
        """Enqueued job ids not in the "done" set yet (network I/O)."""
        done = client.call("SMEMBERS", "done")
        assert isinstance(done, list)
        seen = {d.decode() for d in done if isinstance(d, bytes)}
        return [i for i in self.ids if i not in seen]

    def versions(self, client: Resp) -> set[str]:
        """The app versions that ran this producer's jobs (network I/O)."""
        found = client.call("HVALS", "done_by")
        assert isinstance(found, list)
        return {v.decode().split()[-1] for v in found if isinstance(v, bytes)}


@pytest.fixture
def watch(redis: RedisServer) -> Iterator[Resp]:
    """A Redis connection for checks; the job bookkeeping keys are reset first."""
    client = redis.client()
    client.call("DEL", "done", "done_by", "queue:default")
    yield client
    client.close()


def rolling(
    lab: HostLab, redis: RedisServer, watch: Resp, *, at_once: bool = False, quiet: bool = True
) -> tuple[Sampler, Jobs]:
    """Deploy v1, then v2 and v1 again under load; the sampler and the jobs (processes).

    One host at a time (maxUnavailable 1) unless `at_once`: then every host at the same time.
    """
    work = Workload(lab, "sidekiq", application="jobs")
    try:
        service = [sidekiq_service(redis, lab, quiet=quiet)]
        work.apply_cli(work.manifest("v1", service, strategy={"maxUnavailable": "100%"}))
        wait_until(lambda: live_processes(watch) == 3, "three live sidekiq processes", 30)
        sampler_client = redis.client()
        sampler = Sampler(lambda: live_processes(sampler_client), period=0.1)
        jobs = Jobs(redis)
        producer = Loop(jobs.enqueue, period=0.1, limit=1500)
        try:
            with running(sampler, producer):
                for version in ("v2", "v1"):
                    if at_once:
                        strategy = {"maxUnavailable": "100%"}
                        work.apply_cli_every_host_at_once(work.manifest(version, service, strategy=strategy))
                    else:
                        work.apply_cli(work.manifest(version, service, strategy={"maxUnavailable": 1}))
        finally:
            sampler_client.close()
            jobs.client.close()
        assert sampler.errors == []
        assert producer.errors == []
        for host in lab.hosts:
            assert work.current_version(host.name) == "v1", host.name
        return sampler, jobs
    finally:
        work.close()


@pytest.mark.parametrize("quiet", [True, False], ids=["tstp-then-term-once-drained", "term-only"])
def test_one_host_at_a_time_keeps_a_live_sidekiq_and_every_job_completes(
    lab: HostLab, redis: RedisServer, watch: Resp, quiet: bool
) -> None:
    sampler, jobs = rolling(lab, redis, watch, quiet=quiet)

    values = sampler.values()
    assert len(values) >= 50, "too few samples to prove anything"
    assert sampler.max_gap() < 0.5, "the sampler stalled"
    assert min(values) >= 1, f"no live sidekiq at some sample: {values}"
    wait_until(lambda: not jobs.missing(watch), "every enqueued job to complete", 60, 0.2)
    assert {"v1", "v2"} <= jobs.versions(watch)
    report(
        "sidekiq one at a time",
        samples=len(values),
        min_live=min(values),
        max_live=max(values),
        jobs=len(jobs.ids),
        completed=len(jobs.ids) - len(jobs.missing(watch)),
    )


def test_all_hosts_at_once_leaves_no_live_sidekiq_for_a_while(lab: HostLab, redis: RedisServer, watch: Resp) -> None:
    sampler, jobs = rolling(lab, redis, watch, at_once=True)

    values = sampler.values()
    assert sampler.max_gap() < 0.5, "the sampler stalled"
    assert min(values) == 0, f"all-at-once never left the queue without sidekiq: {values}"
    wait_until(lambda: not jobs.missing(watch), "every enqueued job to complete", 60, 0.2)
    report(
        "sidekiq all at once",
        samples=len(values),
        min_live=min(values),
        zero_samples=values.count(0),
        seconds_without_sidekiq=round(sampler.zero_seconds(), 2),
        jobs=len(jobs.ids),
    )
