#!/usr/bin/env python3
"""Soak: real queue workers rolled out N times in a row under load; nothing may be lost.

Three configurations on three lab hosts, each with its own server and `kapistrano apply`
(maxUnavailable 1) of a new version per round while work is produced:

- sidekiq-quiet: sidekiq 6.4.1 (Debian ruby-sidekiq) + redis-server, quietSignal TSTP, then TERM once
  the `drained` check (tests/workloads/apps/sidekiq/drained.sh) says the process is quiet and idle;
- sidekiq-term: the same app, TERM alone (sidekiq 6 quiets, waits `:timeout:` and requeues);
- rabbitmq: the bunny consumer (two instances per host, prefetch 1, ack after the work) + RabbitMQ.

Per round: jobs/messages sent during the rollout, done (ran to the end at least once), lost (never
done once the queue drained; for sidekiq not in the queue, retry, schedule or dead set either),
duplicated (ran to the end more than once: sidekiq's `done` log lines per jid, the consumer's
processed log per message), and the fewest live workers seen (every 100 ms). The script exits 1
if anything was lost. Not part of CI: about 20-40 s per round (as root, from the repository root):

    .venv/bin/python -m benchmarks.soak_workers --rounds 20
    .venv/bin/python -m benchmarks.soak_workers --rounds 3 --configs sidekiq-quiet rabbitmq
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import re
import secrets
import shutil
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kapistrano.lab import HostLab

from benchmarks.multi import started_lab
from tests.workloads.kit import Loop, Sampler, Workload, running
from tests.workloads.servers import RABBITMQ_SERVER, rabbit_server, redis_server, wait_until

CONFIGS = ("sidekiq-quiet", "sidekiq-term", "rabbitmq")
HOSTS = 3
SETTLE_SECONDS = 90.0  # after a round, how long done work may take to catch up (sidekiq retries after ~20 s)
DONE_LINE = re.compile(r"\bjid=([0-9a-f]+)\b.*\bINFO: done$")


@dataclass(frozen=True)
class Round:
    """What one rollout under load did to the work."""

    number: int
    version: str
    seconds: float
    sent: int
    done: int
    lost: int
    duplicated: int
    pending: int  # still queued or waiting for a retry when the settle time ran out (not lost)
    fewest_live: int

    def line(self, config: str) -> str:
        """One table row (pure)."""
        cells = (config, self.number, self.version, f"{self.seconds:.1f}", self.sent, self.done, self.lost)
        return "| " + " | ".join(map(str, (*cells, self.duplicated, self.pending, self.fewest_live))) + " |"


HEAD = "| config | round | version | rollout s | sent | done | lost | duplicated | pending | fewest live |"


# -- sidekiq ----------------------------------------------------------------------------------------------


def sidekiq_done_counts(work: Workload, lab: HostLab) -> Counter[str]:
    """How many times each jid logged `done`, over every host's sidekiq log (reads host files)."""
    seen: Counter[str] = Counter()
    for host in lab.hosts:
        path = work.shared(host.name, "log/sidekiq.log")
        if path.exists():
            seen.update(
                m.group(1) for line in path.read_text(errors="replace").splitlines() if (m := DONE_LINE.search(line))
            )
    return seen


def sidekiq_parked(client: Any) -> set[str]:
    """Job ids still queued, scheduled or waiting for a retry: late, not lost (network I/O)."""
    parked: set[str] = set()
    payloads = list(client.call("LRANGE", "queue:default", 0, -1) or [])
    for key in ("retry", "schedule"):
        payloads += list(client.call("ZRANGE", key, 0, -1) or [])
    for raw in payloads:
        with contextlib.suppress(ValueError, KeyError, TypeError, IndexError):
            parked.add(str(json.loads(raw)["args"][0]))
    return parked


def soak_sidekiq(lab: HostLab, rounds: int, *, quiet: bool, load_period: float) -> list[Round]:
    """Roll sidekiq `rounds` times under load; one Round each (processes)."""
    from tests.workloads.test_sidekiq import Jobs, live_processes, sidekiq_service  # noqa: PLC0415

    out = []
    with redis_server() as redis:
        work = Workload(lab, "sidekiq", application="jobs")
        watch = redis.client()
        try:
            service = [sidekiq_service(redis, lab, quiet=quiet)]
            work.apply_cli(work.manifest("v1", service, strategy={"maxUnavailable": "100%"}), timeout=300)
            wait_until(lambda: live_processes(watch) == HOSTS, "every sidekiq live", 60)
            for number in range(1, rounds + 1):
                version = f"v{number + 1}"
                jobs = Jobs(redis)
                sampler_client = redis.client()
                sampler = Sampler(functools.partial(live_processes, sampler_client), period=0.1, limit=6000)
                producer = Loop(jobs.enqueue, period=load_period, limit=6000)
                try:
                    seconds = roll_under_load(work, service, version, sampler, producer)
                finally:
                    sampler_client.close()
                    jobs.client.close()
                settle(functools.partial(all_done, jobs, watch))
                missing = set(jobs.missing(watch))
                parked = sidekiq_parked(watch) & missing
                runs = sidekiq_done_counts(work, lab)
                duplicated = sum(1 for jid in jobs.jids if runs[jid] > 1)
                if sum(1 for jid in jobs.jids if runs[jid]) < len(jobs.ids) - len(missing):
                    print(f"  {version}: fewer `done` lines in the sidekiq logs than done jobs", flush=True)
                sent = len(jobs.ids)
                lost = len(missing - parked)
                fewest = min(sampler.values(), default=-1)
                out.append(
                    Round(number, version, seconds, sent, sent - len(missing), lost, duplicated, len(parked), fewest)
                )
                print(out[-1].line("sidekiq-quiet" if quiet else "sidekiq-term"), flush=True)
        finally:
            watch.close()
            work.close()
    return out


# -- RabbitMQ ---------------------------------------------------------------------------------------------


def soak_rabbitmq(lab: HostLab, rounds: int, *, load_period: float) -> list[Round]:
    """Roll the bunny consumer `rounds` times under load; one Round each (processes)."""
    from tests.workloads.test_rabbitmq import Publisher, channel, consumer_service, processed  # noqa: PLC0415

    out = []
    with rabbit_server() as rabbit:
        work = Workload(lab, "consumer", application="consumer")
        queue = f"soak-{secrets.token_hex(4)}"
        watch = channel(rabbit)
        watch.queue_declare(queue=queue, durable=True)
        try:
            service = [consumer_service(rabbit, lab, queue)]
            per_host = service[0]["instances"]
            work.apply_cli(work.manifest("v1", service, strategy={"maxUnavailable": "100%"}), timeout=300)

            def consumers() -> int:
                count: int = watch.queue_declare(queue=queue, passive=True).method.consumer_count
                return count

            wait_until(lambda: consumers() == HOSTS * per_host, "every consumer subscribed", 60)
            for number in range(1, rounds + 1):
                version = f"v{number + 1}"
                sampler = Sampler(consumers, period=0.1, limit=6000)
                publisher = Publisher(rabbit, queue)
                producer = Loop(publisher.publish, period=load_period, limit=6000)
                try:
                    seconds = roll_under_load(work, service, version, sampler, producer)
                finally:
                    publisher.close()
                ids = publisher.ids
                settle(functools.partial(all_processed, ids, work, lab, processed))
                seen = processed(work, lab)
                done = sum(1 for i in ids if seen[i] > 0)
                duplicated = sum(1 for i in ids if seen[i] > 1)
                fewest = min(sampler.values(), default=-1)
                out.append(Round(number, version, seconds, len(ids), done, len(ids) - done, duplicated, 0, fewest))
                print(out[-1].line("rabbitmq"), flush=True)
        finally:
            with contextlib.suppress(Exception):
                watch.queue_delete(queue=queue)
                watch.connection.close()
            work.close()
    return out


# -- the run ----------------------------------------------------------------------------------------------


def roll_under_load(
    work: Workload, service: list[dict[str, Any]], version: str, sampler: Sampler, producer: Loop
) -> float:
    """`kapistrano apply` of `version` (maxUnavailable 1) while sampler and producer run; seconds (processes)."""
    started = time.monotonic()
    with running(sampler, producer):
        work.apply_cli(work.manifest(version, service, strategy={"maxUnavailable": 1}), timeout=600)
    for what, errors in (("sampler", sampler.errors), ("producer", producer.errors)):
        if errors:
            print(f"  {version}: {len(errors)} {what} errors, first: {errors[0]}", flush=True)
    return time.monotonic() - started


def all_done(jobs: Any, client: Any) -> bool:
    """Whether every job of `jobs` is in sidekiq's done set (network I/O)."""
    return not jobs.missing(client)


def all_processed(ids: list[str], work: Workload, lab: HostLab, count: Callable[..., Counter[str]]) -> bool:
    """Whether every id appears in the consumers' processed logs (reads host files)."""
    return set(ids) <= set(count(work, lab))


def settle(done: Callable[[], bool]) -> None:
    """Wait until `done()` or SETTLE_SECONDS (reads)."""
    deadline = time.monotonic() + SETTLE_SECONDS
    while time.monotonic() < deadline and not done():
        time.sleep(0.2)


def missing_tools(config: str) -> str | None:
    """Why a configuration cannot run here, or None (reads PATH)."""
    if config.startswith("sidekiq") and (shutil.which("redis-server") is None or shutil.which("sidekiq") is None):
        return "redis-server or sidekiq (Debian ruby-sidekiq) is not installed"
    if config == "rabbitmq" and not RABBITMQ_SERVER.exists():
        return "rabbitmq-server is not installed"
    return None


def main() -> None:
    """Run every chosen configuration; print one row per round and a summary; exit 1 if anything was lost."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--configs", nargs="+", choices=CONFIGS, default=list(CONFIGS))
    parser.add_argument("--load-period", type=float, default=0.1, help="seconds between two jobs/messages")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("the SSH test hosts need root")
    summary: dict[str, list[Round]] = {}
    print(HEAD)
    print("|" + "---|" * HEAD.count(" | ") + "---|", flush=True)
    for config in args.configs:
        if why := missing_tools(config):
            print(f"skipping {config}: {why}")
            continue
        with started_lab(HOSTS) as lab:
            if config == "rabbitmq":
                summary[config] = soak_rabbitmq(lab, args.rounds, load_period=args.load_period)
            else:
                quiet = config == "sidekiq-quiet"
                summary[config] = soak_sidekiq(lab, args.rounds, quiet=quiet, load_period=args.load_period)
    print()
    lost = 0
    for config, rows in summary.items():
        if not rows:
            continue
        clean = sum(r.lost == 0 for r in rows)
        lost += sum(r.lost for r in rows)
        print(
            f"{config}: {clean}/{len(rows)} rounds without loss; sent {sum(r.sent for r in rows)}, "
            f"done {sum(r.done for r in rows)}, lost {sum(r.lost for r in rows)}, "
            f"duplicated {sum(r.duplicated for r in rows)}, fewest live {min(r.fewest_live for r in rows)}"
        )
    sys.exit(1 if lost else 0)


if __name__ == "__main__":
    main()
