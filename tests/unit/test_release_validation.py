"""The example Release passes both the models and the CRD; bad Releases are rejected with the field named."""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest
import yaml
from kapistrano.api.release import Release, ReleaseFileError, parse_release
from kapistrano.api.status import ReleaseStatus

from .crdcheck import EXAMPLE_FILE, crd_errors, openapi_schema, prune_and_default

DELETE = object()


def example() -> dict[str, Any]:
    """The example Release from manifests/examples/release.yaml, as a fresh dict."""
    return dict(yaml.safe_load(EXAMPLE_FILE.read_text()))


def _steps(path: str) -> list[str | int]:
    """'spec.hosts[1].name' -> ['spec', 'hosts', 1, 'name']."""
    return [int(p) if p.isdigit() else p for p in re.findall(r"[^.\[\]]+", path)]


def mutated(changes: dict[str, Any]) -> dict[str, Any]:
    """The example with each path set to its value (DELETE removes the key)."""
    doc = example()
    for path, value in changes.items():
        *parents, last = _steps(path)
        target: Any = doc
        for step in parents:
            target = target[step]
        if value is DELETE:
            del target[last]
        else:
            target[last] = copy.deepcopy(value)
    return doc


def model_problems(doc: dict[str, Any]) -> list[str]:
    """The models' problem lines for a document (empty when valid)."""
    try:
        parse_release(doc)
    except ReleaseFileError as exc:
        return exc.problems
    return []


def test_example_release_is_valid_for_the_models() -> None:
    release = parse_release(example())
    assert release.spec.application == "billing"
    assert [h.name for h in release.spec.hosts] == ["worker-1", "worker-2"]
    assert [s.name for s in release.spec.services] == ["sneakers", "web", "sidekiq"]


def test_example_release_is_valid_for_the_crd_schema_and_its_cel_rules() -> None:
    assert crd_errors(example()) == {"openapi": [], "listmap": [], "cel": []}


def test_a_release_written_back_by_the_models_is_valid_for_the_crd() -> None:
    release = parse_release(example())
    wire = release.model_dump(mode="json", by_alias=True)
    assert crd_errors(wire) == {"openapi": [], "listmap": [], "cel": []}
    assert Release.model_validate(wire) == release


def test_a_status_written_by_the_models_is_valid_for_the_crd() -> None:
    status = ReleaseStatus.model_validate(
        {
            "observedGeneration": 7,
            "phase": "Progressing",
            "version": "v2.4.1",
            "currentVersion": "v2.4.0",
            "hostsTotal": 2,
            "hostsUpdated": 1,
            "ready": "1/2",
            "hosts": [{"name": "worker-1", "phase": "Ready", "version": "v2.4.1", "ready": True}],
            "conditions": [
                {
                    "type": "Ready",
                    "status": "False",
                    "reason": "RollingOut",
                    "lastTransitionTime": "2026-11-28T02:01:09Z",
                }
            ],
            "history": [{"version": "v2.4.0", "completedAt": "2026-11-27T10:00:00Z"}],
        }
    )
    doc = {**example(), "status": status.wire()}
    assert crd_errors(doc) == {"openapi": [], "listmap": [], "cel": []}


def test_the_crd_defaults_match_the_model_defaults() -> None:
    minimal = {
        "apiVersion": "kapistrano.dev/v1alpha1",
        "kind": "Release",
        "metadata": {"name": "minimal"},
        "spec": {
            "application": "billing",
            "version": "v1",
            "source": {"git": {"url": "https://git.example.com/b.git"}},
            "hosts": [{"name": "h", "address": "10.0.0.1"}],
            "ssh": {"jumpHost": {"address": "bastion"}},
            "hooks": {"afterUpdate": [{"name": "x", "run": "true"}]},
            "services": [
                {"name": "w", "pidfile": {"path": "w.pid", "start": "w"}, "readiness": {"exec": {"command": "t"}}}
            ],
            "strategy": {},
        },
    }
    defaulted = prune_and_default(minimal, openapi_schema())
    spec = defaulted["spec"]
    assert spec["strategy"]["maxUnavailable"] == 1
    assert spec["services"][0]["manager"] == "pidfile"
    assert spec["services"][0]["pidfile"]["stopSignal"] == "TERM"
    assert spec["ssh"]["user"] == "deploy"
    assert parse_release(defaulted) == parse_release(minimal)


# Which layer of the CRD rejects a bad value at `kubectl apply`:
#   openapi  - patterns, bounds, enums, required fields and strict field validation
#   listmap  - x-kubernetes-list-type: map keys must be unique
#   cel      - x-kubernetes-validations rules
#   None     - only the operator's models (e.g. 999.1.1.1 looks like a DNS name to a pattern)
ARCHIVE = {"url": "https://artifacts.example.com/b.tar.gz", "sha256": "a" * 64}
BAD_RELEASES = [
    pytest.param({"spec.version": "1.0; rm -rf /"}, "spec.version", "openapi", id="version-with-semicolon-command"),
    pytest.param({"spec.version": "$(reboot)"}, "spec.version", "openapi", id="version-with-command-substitution"),
    pytest.param({"spec.version": "`reboot`"}, "spec.version", "openapi", id="version-with-backticks"),
    pytest.param({"spec.version": "1.0\nreboot"}, "spec.version", "openapi", id="version-with-newline"),
    pytest.param({"spec.version": "1.0\n"}, "spec.version", "openapi", id="version-with-trailing-newline"),
    pytest.param({"spec.version": "-rf"}, "spec.version", "openapi", id="version-starting-with-dash"),
    pytest.param({"spec.version": ""}, "spec.version", "openapi", id="version-empty"),
    pytest.param({"spec.version": DELETE}, "spec.version", "openapi", id="version-missing"),
    pytest.param({"spec.source.git.ref": "v1/../../etc"}, "spec.source.git.ref", "cel", id="ref-with-dotdot"),
    pytest.param({"spec.source.git.ref": "main branch"}, "spec.source.git.ref", "openapi", id="ref-with-space"),
    pytest.param({"spec.source.git.ref": "--upload-pack=x"}, "spec.source.git.ref", "openapi", id="ref-as-option"),
    pytest.param(
        {"spec.source.git.url": "https://x.example/'$(id)'"}, "spec.source.git.url", "openapi", id="url-with-quotes"
    ),
    pytest.param({"spec.linkedDirs": ["log", "../secrets"]}, "spec.linkedDirs[1]", "openapi", id="linked-dir-dotdot"),
    pytest.param({"spec.linkedDirs": ["/var/log"]}, "spec.linkedDirs[0]", "openapi", id="linked-dir-absolute"),
    pytest.param(
        {"spec.linkedFiles": ["config/../../etc/passwd"]}, "spec.linkedFiles[0]", "openapi", id="linked-file-dotdot"
    ),
    pytest.param(
        {"spec.services[0].pidfile.path": "../../etc/x.pid"},
        "spec.services[0].pidfile.path",
        "openapi",
        id="pidfile-path-dotdot",
    ),
    pytest.param({"spec.deployTo": "var/www/billing"}, "spec.deployTo", "openapi", id="deploy-to-relative"),
    pytest.param({"spec.deployTo": "/var/www/../etc"}, "spec.deployTo", "openapi", id="deploy-to-dotdot"),
    pytest.param({"spec.hosts[1].name": "worker-1"}, "spec.hosts", "listmap", id="duplicate-host-names"),
    pytest.param({"spec.services[1].name": "sneakers"}, "spec.services", "listmap", id="duplicate-service-names"),
    pytest.param({"spec.source.path": "/opt/builds/billing"}, "spec.source", "cel", id="two-sources"),
    pytest.param({"spec.source": {}}, "spec.source", "cel", id="no-source"),
    pytest.param(
        {"spec.source.archive": ARCHIVE, "spec.source.git": DELETE, "spec.source.path": "/opt/b"},
        "spec.source",
        "cel",
        id="archive-and-path",
    ),
    pytest.param({"spec.hosts": []}, "spec.hosts", "openapi", id="zero-hosts"),
    pytest.param(
        {"spec.hosts": [{"name": f"h-{i}", "address": "10.0.0.1"} for i in range(1001)]},
        "spec.hosts",
        "openapi",
        id="1001-hosts",
    ),
    pytest.param({"spec.strategy.maxUnavailable": "0%"}, "spec.strategy.maxUnavailable", "cel", id="percent-0"),
    pytest.param({"spec.strategy.maxUnavailable": "101%"}, "spec.strategy.maxUnavailable", "cel", id="percent-101"),
    pytest.param({"spec.strategy.maxUnavailable": "abc"}, "spec.strategy.maxUnavailable", "cel", id="percent-abc"),
    pytest.param({"spec.strategy.maxUnavailable": 0}, "spec.strategy.maxUnavailable", "cel", id="max-unavailable-0"),
    pytest.param({"spec.strategy.maxUnavailable": -2}, "spec.strategy.maxUnavailable", "cel", id="max-unavailable-neg"),
    pytest.param(
        {"spec.services[0].pidfile.stopSignal": "TERMINATE"},
        "spec.services[0].pidfile.stopSignal",
        "openapi",
        id="unknown-signal",
    ),
    pytest.param(
        {"spec.services[0].pidfile.quietSignal": "SIGTSTP"},
        "spec.services[0].pidfile.quietSignal",
        "openapi",
        id="signal-with-sig-prefix",
    ),
    pytest.param(
        {"spec.source.git": DELETE, "spec.source.archive": {**ARCHIVE, "sha256": "a" * 63}},
        "spec.source.archive.sha256",
        "openapi",
        id="sha256-63-chars",
    ),
    pytest.param(
        {"spec.source.git": DELETE, "spec.source.archive": {**ARCHIVE, "sha256": "g" * 64}},
        "spec.source.archive.sha256",
        "openapi",
        id="sha256-not-hex",
    ),
    pytest.param({"spec.hosts[0].port": 0}, "spec.hosts[0].port", "openapi", id="port-0"),
    pytest.param({"spec.hosts[0].port": 70000}, "spec.hosts[0].port", "openapi", id="port-70000"),
    pytest.param({"spec.hosts[0].address": "999.1.1.1"}, "spec.hosts[0].address", None, id="address-999"),
    pytest.param({"spec.hosts[0].address": "10.0.0.1; id"}, "spec.hosts[0].address", "openapi", id="address-shell"),
    pytest.param({"spec.hosts[0].user": "root;id"}, "spec.hosts[0].user", "openapi", id="user-shell"),
    pytest.param({"spec.ssh.jumpHost.address": "bad host"}, "spec.ssh.jumpHost.address", "openapi", id="jump-host"),
    pytest.param({"spec.application": "Billing_App"}, "spec.application", "openapi", id="application-not-dns"),
    pytest.param({"spec.hostz": []}, "spec.hostz", "openapi", id="unknown-field"),
    pytest.param({"spec.hosts[0].zone": "a"}, "spec.hosts[0].zone", "openapi", id="unknown-host-field"),
    pytest.param({"spec.services[2].systemd": DELETE}, "spec.services[2]", "cel", id="manager-without-block"),
    pytest.param({"spec.services[0].manager": "supervisor"}, "spec.services[0].manager", "openapi", id="bad-manager"),
    pytest.param(
        {"spec.services[0].readiness.tcpSocket": {"port": 5672}},
        "spec.services[0].readiness",
        "cel",
        id="probe-with-two-actions",
    ),
    pytest.param(
        {"spec.services[0].readiness.exec": DELETE}, "spec.services[0].readiness", "cel", id="probe-without-action"
    ),
    pytest.param(
        {"spec.services[1].readiness.httpGet.path": "health"},
        "spec.services[1].readiness.httpGet.path",
        "openapi",
        id="http-path-relative",
    ),
    pytest.param({"spec.services[0].instances": 0}, "spec.services[0].instances", "openapi", id="instances-0"),
    pytest.param(
        {"spec.services[2].systemd.unit": "sidekiq; reboot"},
        "spec.services[2].systemd.unit",
        "openapi",
        id="systemd-unit-shell",
    ),
    pytest.param({"spec.keepReleases": -1}, "spec.keepReleases", "openapi", id="keep-releases-negative"),
    pytest.param(
        {"spec.hooks.afterUpdate[0].name": "Bundle!"}, "spec.hooks.afterUpdate[0].name", "openapi", id="hook-name"
    ),
    pytest.param({"spec.hooks.afterUpdate[0].run": ""}, "spec.hooks.afterUpdate[0].run", "openapi", id="hook-empty"),
    pytest.param({"spec.driftPolicy": "Ignore"}, "spec.driftPolicy", "openapi", id="drift-policy"),
    pytest.param({"spec.strategy.onFailure": "Retry"}, "spec.strategy.onFailure", "openapi", id="on-failure"),
    pytest.param({"spec.progressDeadlineSeconds": 0}, "spec.progressDeadlineSeconds", "openapi", id="deadline-0"),
    pytest.param({"spec.paused": "yes please"}, "spec.paused", "openapi", id="paused-not-bool"),
    pytest.param({"spec.linkedDirs": ["public", "public/uploads"]}, "spec", "cel", id="linked-dirs-nested"),
    pytest.param({"spec.linkedDirs": ["public/uploads", "public"]}, "spec", "cel", id="linked-dirs-nested-reversed"),
    pytest.param({"spec.linkedDirs": ["log", "log"]}, "spec", "openapi", id="linked-dirs-repeated"),
    pytest.param(
        {"spec.linkedDirs": ["config"], "spec.linkedFiles": ["config/database.yml"]},
        "spec",
        "cel",
        id="linked-file-inside-linked-dir",
    ),
    pytest.param(
        {"spec.linkedDirs": ["config/x"], "spec.linkedFiles": ["config"]}, "spec", "cel", id="linked-dir-inside-file"
    ),
    pytest.param({"spec.linkedDirs": ["log"], "spec.linkedFiles": ["log"]}, "spec", "cel", id="linked-dir-and-file"),
    pytest.param({"spec.linkedFiles": ["a", "a/b"]}, "spec", "cel", id="linked-files-nested"),
    pytest.param(
        {"spec.services[1].readiness.httpGet.path": "/health/\u2713"},
        "spec.services[1].readiness.httpGet.path",
        "openapi",
        id="http-path-not-ascii",
    ),
    pytest.param(
        {"spec.services[1].readiness.httpGet.path": "/health\x00"},
        "spec.services[1].readiness.httpGet.path",
        "openapi",
        id="http-path-control-character",
    ),
    pytest.param(
        {"spec.source.git.url": "https://git.example.com/b\u00e9.git"},
        "spec.source.git.url",
        "openapi",
        id="url-not-ascii",
    ),
    pytest.param(
        {"spec.source.git.url": "-oProxyCommand@host:x"}, "spec.source.git.url", "openapi", id="url-leading-dash"
    ),
    pytest.param(
        {"spec.hooks.afterUpdate[0].run": "bundle\x00install"},
        "spec.hooks.afterUpdate[0].run",
        "openapi",
        id="hook-with-nul",
    ),
    pytest.param(
        {"spec.services[2].systemd.unit": "--all"}, "spec.services[2].systemd.unit", "openapi", id="unit-leading-dash"
    ),
    pytest.param({"spec.hosts[0].port": "22"}, "spec.hosts[0].port", "openapi", id="port-as-string"),
    pytest.param({"spec.hosts[0].port": 22.0}, "spec.hosts[0].port", None, id="port-as-float"),
    pytest.param({"spec.paused": "yes"}, "spec.paused", "openapi", id="paused-yes-string"),
    pytest.param({"spec.paused": "on"}, "spec.paused", "openapi", id="paused-on-string"),
    pytest.param({"spec.paused": 1}, "spec.paused", "openapi", id="paused-as-int"),
    pytest.param({"spec.keepReleases": "5"}, "spec.keepReleases", "openapi", id="keep-releases-string"),
    pytest.param(
        {"spec.strategy.maxUnavailable": True}, "spec.strategy.maxUnavailable", "openapi", id="max-unavailable-true"
    ),
    pytest.param({"spec.strategy.maxUnavailable": "2"}, "spec.strategy.maxUnavailable", "cel", id="max-unavailable-2"),
    pytest.param({"spec.hosts[0].labels": {"zone": "a" * 64}}, "spec.hosts[0].labels.zone", "openapi", id="label-64"),
    pytest.param(
        {"spec.hosts[0].labels": {"zone": "x" * 10_000_000}}, "spec.hosts[0].labels.zone", "openapi", id="label-10mb"
    ),
    pytest.param({"spec.hosts[0].labels": {"zone": "a b"}}, "spec.hosts[0].labels.zone", "openapi", id="label-space"),
    pytest.param({"spec.hosts[0].labels": {"bad key": "a"}}, "spec.hosts[0].labels", None, id="label-key-space"),
    pytest.param({"spec.hosts[0].labels": {"k" * 318: "a"}}, "spec.hosts[0].labels", "cel", id="label-key-318"),
    pytest.param(
        {"spec.hosts[0].labels": {f"l{i}": "a" for i in range(65)}}, "spec.hosts[0].labels", "openapi", id="65-labels"
    ),
    pytest.param({"spec.linkedDirs": ["a" * 129]}, "spec.linkedDirs[0]", "openapi", id="linked-dir-too-long"),
]


@pytest.mark.parametrize(("changes", "field", "crd_layer"), BAD_RELEASES)
def test_bad_release_is_rejected_by_the_models_naming_the_field(
    changes: dict[str, Any], field: str, crd_layer: str | None
) -> None:
    problems = model_problems(mutated(changes))
    assert problems, "the models accepted a bad Release"
    assert any(line.startswith(f"{field}:") for line in problems), problems


@pytest.mark.parametrize(("changes", "field", "crd_layer"), BAD_RELEASES)
def test_bad_release_is_rejected_by_the_crd_where_the_schema_can_tell(
    changes: dict[str, Any], field: str, crd_layer: str | None
) -> None:
    errors = crd_errors(mutated(changes))
    if crd_layer is None:
        assert errors == {"openapi": [], "listmap": [], "cel": []}, "the CRD now catches this: update the table"
        return
    assert any(line.startswith(field) for line in errors[crd_layer]), errors


def test_the_table_covers_at_least_thirty_bad_releases() -> None:
    assert len(BAD_RELEASES) >= 30
    assert len({p.id for p in BAD_RELEASES}) == len(BAD_RELEASES)


def test_linked_paths_that_only_share_a_prefix_are_accepted_by_the_models_and_the_crd() -> None:
    doc = mutated({"spec.linkedDirs": ["public", "public-assets", "tmp/pids"], "spec.linkedFiles": ["tmp/pid"]})
    assert model_problems(doc) == []
    assert crd_errors(doc) == {"openapi": [], "listmap": [], "cel": []}


def test_a_once_hook_whose_roles_the_primary_host_lacks_is_refused_naming_the_hook() -> None:
    # The example's primary worker-1 is the db host that migrates; worker-2 has role worker only.
    marked = mutated({"spec.hosts[0].primary": DELETE, "spec.hosts[1].primary": True})
    nowhere = mutated({"spec.hosts[0].primary": DELETE, "spec.hosts[0].roles": ["worker"]})
    for doc in (marked, nowhere):
        problems = model_problems(doc)
        assert any("once hook 'migrate'" in line and "primary" in line for line in problems), problems
    moved = {"spec.hosts[0].primary": DELETE, "spec.hosts[1].primary": True, "spec.hosts[1].roles": ["db"]}
    assert model_problems(mutated(moved)) == []


def test_a_once_hook_runs_on_the_marked_primary_else_on_the_first_host_with_its_roles() -> None:
    moved = mutated({"spec.hosts[0].primary": DELETE, "spec.hosts[0].roles": ["worker"], "spec.hosts[1].roles": ["db"]})
    assert parse_release(moved).spec.primary_host == "worker-2"
    assert parse_release(example()).spec.primary_host == "worker-1"
