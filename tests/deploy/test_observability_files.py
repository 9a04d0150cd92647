"""The Prometheus and Grafana files name metrics that exist, and the README documents
every metric there is (nothing runs Prometheus or Grafana here: this is what keeps the
files from drifting from the code)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from pipelinejobs.adapters.bus.stub import StubBus
from pipelinejobs.adapters.store.memory import MemoryStore
from pipelinejobs.observability.collectors import SystemCollector
from pipelinejobs.observability.metrics import Metrics

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
ACTORS = ["jobs-manager", "jobs-indexer"]


def families() -> dict[str, str]:
    """Every metric family the system exposes: name -> type."""
    found = {f.name: f.type for f in Metrics().registry.collect()}
    collector = SystemCollector(MemoryStore(), StubBus(), ACTORS, ttl=0)
    found |= {f.name: f.type for f in collector.collect()}
    return found


def exposed() -> set[str]:
    """Every sample name a scrape can hold (counters end in _total, histograms in
    _bucket, _count and _sum)."""
    names: set[str] = set()
    for name, kind in families().items():
        if kind == "counter":
            names.add(name + "_total")
        elif kind == "histogram":
            names |= {name + suffix for suffix in ("_bucket", "_count", "_sum")}
        else:
            names.add(name)
    return names


def metric_names(expr: str) -> set[str]:
    return set(re.findall(r"\bpipelinejobs_[a-z_]+\b", expr))


def dashboard() -> dict:
    loaded = json.loads((DEPLOY / "grafana" / "pipelinejobs-dashboard.json").read_text())
    assert isinstance(loaded, dict)
    return loaded


def test_the_dashboard_is_importable_and_uses_only_metrics_that_exist() -> None:
    board = dashboard()
    assert board["title"] and board["uid"] and board["schemaVersion"] >= 36
    assert [i["name"] for i in board["__inputs"]] == ["DS_PROMETHEUS"]
    used: set[str] = set()
    graphs = [p for p in board["panels"] if p["type"] != "row"]
    assert len(graphs) >= 12
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    for panel in graphs:
        assert panel["datasource"]["uid"] == "${DS_PROMETHEUS}", panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            names = metric_names(target["expr"])
            assert names, target["expr"]
            used |= names
    assert used <= exposed(), used - exposed()
    # Every metric family has a place on the dashboard.
    assert {re.sub(r"_(total|bucket|count|sum)$", "", n) for n in used} >= set(families())


def test_the_prometheus_files_parse_and_use_only_metrics_that_exist() -> None:
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert jobs["pipelinejobs-gateway"]["metrics_path"] == "/metrics"
    assert config["rule_files"] == ["alerts.yml"]
    rules = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    exprs = [rule["expr"] for group in rules["groups"] for rule in group["rules"]]
    assert len(exprs) >= 5
    for expr in exprs:
        assert metric_names(expr) and metric_names(expr) <= exposed(), expr


def test_the_readme_documents_every_metric() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("\n## Metrics") :]
    section = section[: section.index("\n## ", 1)]
    for name, kind in families().items():
        shown = name + "_total" if kind == "counter" else name
        assert f"`{shown}`" in section, shown
    for expr in re.findall(r"`([^`]*\(pipelinejobs_[^`]*)`", section):
        assert metric_names(expr) <= exposed(), expr
