"""The compose monitoring stack: the file parses, Prometheus scrapes what compose runs, and every
metric the Grafana dashboard queries is one that recadmin (or TorchServe) exports."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from recadmin.core.observability.metrics import metrics_registry, scrape_gauges

ROOT = Path(__file__).resolve().parents[2]
MONITORING = ROOT / "recadmin" / "deploy" / "monitoring"
DASHBOARD = MONITORING / "grafana" / "dashboards" / "recadmin.json"
PROMQL_WORDS = {
    "sum",
    "by",
    "rate",
    "histogram_quantile",
    "le",
    "without",
    "avg",
    "max",
    "min",
    "count",
    "irate",
    "increase",
}


def _exported_names() -> set[str]:
    names: set[str] = set()
    for family in metrics_registry().collect():
        names.add(family.name)
        if family.type == "counter":
            names.add(family.name + "_total")
        if family.type == "histogram":
            names.update(family.name + suffix for suffix in ("_bucket", "_count", "_sum"))
    for gauge in scrape_gauges().values():
        names.add(gauge.name)
        if gauge.histogram:
            names.update(gauge.name + suffix for suffix in ("_bucket", "_count", "_sum"))
    return names


def _torchserve_names() -> set[str]:
    import ts

    config = yaml.safe_load((Path(ts.__file__).parent / "configs" / "metrics.yaml").read_text())
    names = set()
    for group in ("ts_metrics", "model_metrics"):
        for kind in config.get(group, {}).values():
            names.update(entry["name"] for entry in kind)
    return names


def _dashboard_metrics() -> set[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    found: set[str] = set()
    for panel in dashboard["panels"]:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            expr = re.sub(r'\{[^}]*\}|"[^"]*"|\[[^\]]*\]', " ", target["expr"])  # drop matchers, ranges
            words = set(re.findall(r"[A-Za-z_:][A-Za-z0-9_:]*", expr)) - PROMQL_WORDS
            labels = {
                "route",
                "scene",
                "source",
                "status",
                "reason",
                "operation",
                "error",
                "type",
                "field",
                "cache",
                "task",
                "outcome",
                "model_name",
                "name",
                "kind",
            }
            found |= words - labels
    return found


@pytest.mark.django_db
def test_every_metric_on_the_dashboard_is_exported() -> None:
    wanted = _dashboard_metrics()
    ours = {name for name in wanted if name.startswith("recadmin_")}
    theirs = wanted - ours
    assert len(ours) >= 15
    assert ours <= _exported_names(), sorted(ours - _exported_names())
    assert theirs <= _torchserve_names(), sorted(theirs - _torchserve_names())


def test_the_dashboard_shows_what_the_issue_asks_for() -> None:
    text = DASHBOARD.read_text()
    for needed in (
        "recadmin_http_request_duration_seconds_bucket",
        "recadmin_fallbacks_total",
        "recadmin_torchserve_call_duration_seconds_bucket",
        "recadmin_torchserve_errors_total",
        "recadmin_events_ingested_total",
        "recadmin_events_rejected_total",
        "recadmin_served_log_backlog",
        "recadmin_served_log_oldest_age_seconds",
        "recadmin_rollup_lag_seconds",
        "recadmin_training_runs",
        "recadmin_training_run_duration_seconds_bucket",
        "recadmin_default_model_version",
        "recadmin_default_model_age_seconds",
        "recadmin_cache_requests_total",
        "ts_inference_requests_total",
    ):
        assert needed in text, needed


def test_every_scrape_gauge_has_a_source_the_rollup_lag_from_metrics() -> None:
    """Declared for the dashboard in core; the owning apps register the sources (the rollup lag: metrics)."""
    from recadmin.metrics.selectors import rollup_lag_seconds

    assert [g.name for g in scrape_gauges().values() if g.source is None] == []
    assert scrape_gauges()["recadmin_rollup_lag_seconds"].source is rollup_lag_seconds


def test_prometheus_scrapes_the_compose_services_and_grafana_is_provisioned() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    prometheus = yaml.safe_load((MONITORING / "prometheus.yml").read_text())
    targets = {t for job in prometheus["scrape_configs"] for c in job["static_configs"] for t in c["targets"]}
    assert targets == {"web:8000", "torchserve:8082"}
    assert {"prometheus", "grafana", "web", "torchserve"} <= set(services)
    assert any("gunicorn_conf" in part for part in services["web"]["command"])
    # /metrics admits the compose network, whose subnet compose fixes.
    subnet = compose["networks"]["default"]["ipam"]["config"][0]["subnet"]
    assert services["web"]["environment"]["METRICS_ALLOWED_NETWORKS"] == subnet
    grafana_mounts = " ".join(services["grafana"]["volumes"])
    assert "monitoring/grafana/dashboards:/var/lib/grafana/dashboards" in grafana_mounts
    provider = yaml.safe_load((MONITORING / "grafana" / "provisioning" / "dashboards" / "recadmin.yml").read_text())
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"


def test_docker_compose_config_passes() -> None:
    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.skip("docker-compose is not installed (apt-get install docker-compose; .ci/run does)")
    result = subprocess.run(
        [binary, "-f", str(ROOT / "docker-compose.yml"), "config", "-q"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
