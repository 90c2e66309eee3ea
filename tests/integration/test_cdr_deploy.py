"""The CDR parts of deploy/: the alert rules pass `promtool check rules` and fire on the
situations they name (`promtool test rules` on synthetic series); every CDR metric the rules
and the Grafana dashboard use is one the writer exports; the dashboard is well-formed."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from billing import default_tariffs
from switch.cdr_writer import CdrWriter
from tests.peers import need

from .harness import REPO

pytestmark = pytest.mark.integration

RULES = REPO / "deploy" / "prometheus" / "softswitch-alerts.yml"
DASHBOARD = REPO / "deploy" / "grafana" / "softswitch-dashboard.json"
PROMTOOL = shutil.which("promtool")

# promtool unit tests (https://prometheus.io/docs/prometheus/latest/configuration/unit_testing_rules/)
RULE_TESTS = """
rule_files:
  - {rules}
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      # the database refuses writes from minute 2 on; the spool grows 100 records a minute
      - series: 'cdr_write_failures_total{{instance="sw1",job="softswitch",reason="unavailable"}}'
        values: '0 0 0+2x40'
      - series: 'cdr_spool_records{{instance="sw1",job="softswitch"}}'
        values: '0 0 0+100x40'
      # a healthy node: nothing spooled, nothing failing
      - series: 'cdr_write_failures_total{{instance="sw2",job="softswitch",reason="unavailable"}}'
        values: '0x40'
      - series: 'cdr_spool_records{{instance="sw2",job="softswitch"}}'
        values: '0x40'
      - series: 'cdr_unsaved_records{{instance="sw2",job="softswitch"}}'
        values: '5x40'
      - series: 'cdr_rejected_total{{instance="sw2",job="softswitch"}}'
        values: '0x20 1x20'
    alert_rule_test:
      - eval_time: 1m
        alertname: SoftswitchCdrWritesFailing
        exp_alerts: []
      - eval_time: 6m
        alertname: SoftswitchCdrWritesFailing
        exp_alerts:
          - exp_labels: {{severity: critical, instance: sw1}}
            exp_annotations:
              summary: "CDR writes to the database failing on sw1; CDRs spool locally"
      - eval_time: 3m
        alertname: SoftswitchCdrSpoolGrowing
        exp_alerts: []
      - eval_time: 10m
        alertname: SoftswitchCdrSpoolGrowing
        exp_alerts:
          - exp_labels: {{severity: warning, instance: sw1, job: softswitch}}
            exp_annotations:
              summary: "CDR spool on sw1 growing (800 records in it)"
      - eval_time: 20m
        alertname: SoftswitchCdrSpoolNotDraining
        exp_alerts: []
      - eval_time: 35m
        alertname: SoftswitchCdrSpoolNotDraining
        exp_alerts:
          - exp_labels: {{severity: critical, instance: sw1, job: softswitch}}
            exp_annotations:
              summary: "CDR spool on sw1 not replayed for 30 minutes"
      - eval_time: 10m
        alertname: SoftswitchCdrBacklog
        exp_alerts: []
      - eval_time: 25m
        alertname: SoftswitchCdrRejected
        exp_alerts:
          - exp_labels: {{severity: warning, instance: sw2}}
            exp_annotations:
              summary: "CDRs set aside on sw2 (see cdr-spool.jsonl.rejected)"
"""


@pytest.fixture(scope="module")
def promtool() -> str:
    need(PROMTOOL is not None, "promtool (Debian package prometheus)")
    assert PROMTOOL is not None
    return PROMTOOL


def test_promtool_checks_the_rules(promtool: str) -> None:
    out = subprocess.run(
        [promtool, "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout


def test_the_cdr_alerts_fire_when_they_should(promtool: str, tmp_path: Path) -> None:
    tests = tmp_path / "cdr-alerts-test.yml"
    tests.write_text(RULE_TESTS.format(rules=RULES))
    out = subprocess.run(
        [promtool, "test", "rules", str(tests)], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stdout + out.stderr


def exported_metric_names(tmp_path: Path) -> set[str]:
    registry = CollectorRegistry()
    CdrWriter(
        _NoSink(),
        spool_path=tmp_path / "spool.jsonl",
        tariffs=default_tariffs(),
        timezone=lambda _t: "Asia/Tokyo",
        registry=registry,
    )
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count")}
    return {m.name + s for m in registry.collect() for s in suffixes.get(m.type, ("",))}


class _NoSink:
    async def insert(self, records: object, *, now: object) -> int:
        raise AssertionError("never written")


def test_every_cdr_metric_used_in_deploy_is_exported(tmp_path: Path) -> None:
    exported = exported_metric_names(tmp_path)
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    rules = "\n".join(re.findall(r"expr: (.*)", RULES.read_text()))
    used = set(re.findall(r"\bcdr_[a-z_]+", rules + "\n" + "\n".join(exprs)))
    assert used, "the deploy files use no CDR metric"
    # counters are exported as <name>_total; histograms as _bucket/_sum/_count
    missing = sorted(m for m in used if m not in exported)
    assert not missing, f"not exported by switch/cdr_writer.py: {missing}"
    for needed in ("cdr_calls_total", "cdr_call_duration_seconds_sum", "cdr_spool_records"):
        assert needed in used


def test_the_dashboard_is_well_formed() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    panels = dashboard["panels"]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    cells: set[tuple[int, int]] = set()
    for p in panels:
        g = p["gridPos"]
        assert g["x"] + g["w"] <= 24
        mine = {
            (x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])
        }
        assert not cells & mine, f"panel {p['id']} overlaps another"
        cells |= mine
    asr = next(p for p in panels if p["title"] == "Answer-seizure ratio")
    assert 'outcome="answered"' in asr["targets"][0]["expr"] and "PromQL" in asr["description"]
