"""manifests/monitoring/: promtool accepts the PrometheusRule; every query names only metrics the operator exports."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from kapistrano.k8s import metrics
from prometheus_client import REGISTRY

MONITORING = Path(__file__).resolve().parents[2] / "manifests" / "monitoring"
METRIC = re.compile(r"\bkapistrano_[a-z_]+\b")
#: The series names each kind of metric family exports.
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",)}


def exported() -> set[str]:
    """Every series name the operator's metrics module registers (counters with _total, histograms' parts)."""
    assert metrics.ROLLOUTS_STARTED is not None  # the module's metrics are registered on import
    names = set()
    for family in REGISTRY.collect():
        if family.name.startswith("kapistrano_"):
            names |= {family.name + suffix for suffix in SUFFIXES[family.type]}
    return names


def rules() -> dict[str, Any]:
    """The PrometheusRule object."""
    loaded: dict[str, Any] = yaml.safe_load((MONITORING / "prometheusrule.yaml").read_text())
    return loaded


def dashboard_queries() -> list[str]:
    """Every PromQL query of the dashboard: panel targets and template variables."""
    board = json.loads((MONITORING / "dashboard.json").read_text())
    queries = [t["expr"] for p in board["panels"] for t in p.get("targets", [])]
    queries += [v["query"]["query"] for v in board["templating"]["list"] if v["type"] == "query"]
    return queries


def test_promtool_accepts_the_rules(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    assert promtool is not None, "promtool is missing: scripts/setup.sh installs Debian's prometheus package"
    obj = rules()
    assert (obj["apiVersion"], obj["kind"]) == ("monitoring.coreos.com/v1", "PrometheusRule")
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump(obj["spec"]))
    checked = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_promtool_refuses_a_broken_rule(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    assert promtool is not None
    spec = rules()["spec"]
    spec["groups"][0]["rules"][0]["expr"] = "max by (namespace (kapistrano_release_condition"
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump(spec))
    assert subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, check=False).returncode != 0


def test_the_alerts_cover_stalls_drift_and_ssh_errors() -> None:
    found = {r["alert"]: r["expr"] for g in rules()["spec"]["groups"] for r in g["rules"]}
    assert set(found) == {"KapistranoRolloutStalled", "KapistranoHostDrifted", "KapistranoSSHErrorsRising"}
    assert 'type="Stalled"' in found["KapistranoRolloutStalled"]
    assert 'type="Drifted"' in found["KapistranoHostDrifted"]
    assert "kapistrano_ssh_errors_total" in found["KapistranoSSHErrorsRising"]


@pytest.mark.parametrize("source", ["rules", "dashboard"])
def test_queries_name_only_metrics_the_operator_exports(source: str) -> None:
    if source == "rules":
        queries = [r["expr"] for g in rules()["spec"]["groups"] for r in g["rules"]]
    else:
        queries = dashboard_queries()
    names = exported()
    for query in queries:
        used = set(METRIC.findall(query))
        assert used, f"no kapistrano metric in {query!r}"
        assert used <= names, f"{sorted(used - names)} are not exported (query {query!r})"


def test_the_name_check_can_fail() -> None:
    assert "kapistrano_rollouts_started_total" in exported()
    assert "kapistrano_rollouts_started" not in exported()
    assert "kapistrano_host_restart_duration_seconds" not in exported()


def test_the_dashboard_uses_the_new_labels_and_metrics() -> None:
    text = " ".join(dashboard_queries())
    for name in ("kapistrano_release_condition", "kapistrano_build_info", "kapistrano_host_ready"):
        assert name in text
    assert "kapistrano_ssh_errors_total" in text


def test_the_drift_alert_fires_for_a_drifted_release_only(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    assert promtool is not None
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(rules()["spec"]))
    drifted = 'kapistrano_release_condition{namespace="deploy", release="%s", type="%s", status="True"}'
    unit = {
        "rule_files": ["rules.yaml"],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [
                    {"series": drifted % ("billing", "Drifted"), "values": "1x20"},
                    {"series": drifted % ("billing", "Stalled"), "values": "1x20"},
                    {"series": drifted % ("search", "Drifted"), "values": "0x20"},
                ],
                "alert_rule_test": [
                    {
                        "eval_time": "15m",
                        "alertname": "KapistranoHostDrifted",
                        "exp_alerts": [
                            {
                                "exp_labels": {"severity": "warning", "namespace": "deploy", "release": "billing"},
                                "exp_annotations": {
                                    "summary": "Release deploy/billing has drifted",
                                    "description": rules()["spec"]["groups"][0]["rules"][1]["annotations"][
                                        "description"
                                    ],
                                },
                            }
                        ],
                    },
                    {"eval_time": "15m", "alertname": "KapistranoRolloutStalled", "exp_alerts": []},
                ],
            }
        ],
    }
    (tmp_path / "test.yaml").write_text(yaml.safe_dump(unit))
    ran = subprocess.run(
        [promtool, "test", "rules", "test.yaml"], cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert ran.returncode == 0, ran.stdout + ran.stderr
