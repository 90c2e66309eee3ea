"""The overload parts of deploy/: the event-loop lag and overload alerts fire on the
situations they name (`promtool test rules` on synthetic series), and every sip_event_loop /
sip_overload / sip_udp metric the rules and the Grafana dashboard use is one the switch
exports (switch/metrics.py)."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

from switch.metrics import Metrics

from .test_cdr_deploy import DASHBOARD, RULES, promtool  # noqa: F401 - the fixture

RULE_TESTS = """
rule_files:
  - {rules}
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      # sw1: its loop runs 200 ms late from minute 2 on (every probe in the 0.5 s bucket)
      - series: 'sip_event_loop_lag_seconds_bucket{{instance="sw1",job="softswitch",le="0.005"}}'
        values: '0 1200 1200x20'
      - series: 'sip_event_loop_lag_seconds_bucket{{instance="sw1",job="softswitch",le="0.2"}}'
        values: '0 1200 1200x20'
      - series: 'sip_event_loop_lag_seconds_bucket{{instance="sw1",job="softswitch",le="0.5"}}'
        values: '0 1200 2400+1200x20'
      - series: 'sip_event_loop_lag_seconds_bucket{{instance="sw1",job="softswitch",le="+Inf"}}'
        values: '0 1200 2400+1200x20'
      # sw2: 1 ms lag all along
      - series: 'sip_event_loop_lag_seconds_bucket{{instance="sw2",job="softswitch",le="0.005"}}'
        values: '0+1200x22'
      - series: 'sip_event_loop_lag_seconds_bucket{{instance="sw2",job="softswitch",le="+Inf"}}'
        values: '0+1200x22'
      # sw1 refuses 100 new INVITEs a minute for load from minute 3 on; sw2 never
      - series: 'sip_overload_rejected_total{{instance="sw1",job="softswitch",reason="load"}}'
        values: '0 0 0 0+100x20'
      - series: 'sip_overload_rejected_total{{instance="sw2",job="softswitch",reason="load"}}'
        values: '0x22'
    alert_rule_test:
      - eval_time: 2m
        alertname: SoftswitchEventLoopLag
        exp_alerts: []
      - eval_time: 10m
        alertname: SoftswitchEventLoopLag
        exp_alerts:
          - exp_labels: {{severity: warning, instance: sw1}}
            exp_annotations:
              summary: "event-loop lag p99 497ms on sw1"
      - eval_time: 4m
        alertname: SoftswitchOverloaded
        exp_alerts: []
      - eval_time: 8m
        alertname: SoftswitchOverloaded
        exp_alerts:
          - exp_labels: {{severity: critical, instance: sw1, reason: load}}
            exp_annotations:
              summary: "sw1 refuses new calls for overload (load)"
"""


def test_the_overload_alerts_fire_when_they_should(promtool: str, tmp_path: Path) -> None:  # noqa: F811
    tests = tmp_path / "overload-alerts-test.yml"
    tests.write_text(RULE_TESTS.format(rules=RULES))
    out = subprocess.run(
        [promtool, "test", "rules", str(tests)], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_every_overload_metric_used_in_deploy_is_exported() -> None:
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count")}
    registry = Metrics().registry
    exported = {m.name + s for m in registry.collect() for s in suffixes.get(m.type, ("",))}
    panels = json.loads(DASHBOARD.read_text())["panels"]
    exprs = "\n".join(t["expr"] for p in panels for t in p.get("targets", []))
    rules = "\n".join(re.findall(r"expr: (.*)", RULES.read_text()))
    rules += "\n" + RULES.read_text()  # multi-line expressions
    used = set(re.findall(r"\bsip_(?:event_loop|overload|udp)_[a-z_]+", rules + "\n" + exprs))
    assert {"sip_event_loop_lag_seconds_bucket", "sip_overload_rejected_total"} <= used
    assert sorted(used - exported) == []
