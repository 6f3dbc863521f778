"""deploy/monitoring: the scrape config, the alert rules and their unit tests,
checked by Prometheus's own promtool, and the Grafana dashboard, whose queries
must parse and name only metrics the app serves."""

from __future__ import annotations

import json
import re
import subprocess

import pytest
from prometheus_client.parser import text_string_to_metric_families

from .deploy_site import DEPLOY, tool

MONITORING = DEPLOY / "monitoring"
RULES = MONITORING / "alerts.yml"
RULE_TESTS = MONITORING / "alerts.test.yml"
DASHBOARD = MONITORING / "grafana-dashboard.json"
# Series Prometheus makes itself, and blackbox_exporter's answer for /readyz.
NOT_FROM_THE_APP = {"up", "probe_success"}
# What a metric of each type is called on the wire.
SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "gauge": ("",),
}
PROMQL_WORDS = {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left",
                "group_right", "bool", "offset", "inf", "nan"}  # fmt: skip


@pytest.fixture(scope="module")
def promtool() -> str:
    return tool("promtool")


def run_promtool(promtool: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [promtool, *args], cwd=MONITORING, capture_output=True, text=True, timeout=60, check=False
    )


def rule_expressions() -> dict[str, str]:
    """alert name → expr, read from alerts.yml (one-line or folded ``expr: >`` blocks)."""
    rules, name, lines = {}, None, RULES.read_text().splitlines()
    for number, line in enumerate(lines):
        if match := re.match(r"\s*- alert: (\S+)", line):
            name = match.group(1)
        elif match := re.match(r"(\s*)expr: (.*)", line):
            indent, expr = len(match.group(1)), match.group(2)
            if expr.strip() == ">":
                block = []
                for following in lines[number + 1 :]:
                    if following.strip() and len(following) - len(following.lstrip()) <= indent:
                        break
                    block.append(following.strip())
                expr = " ".join(block)
            rules[name] = expr.strip()
    return rules


def dashboard_expressions() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [
        target["expr"]
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
        if target.get("expr")
    ]


def metric_names(expr: str) -> set[str]:
    """The series an expression reads: identifiers that are neither functions,
    keywords, label names, durations nor strings."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)  # label values
    expr = re.sub(r"\{[^}]*\}", "", expr)  # matchers
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # ranges
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    return {
        name
        for name in re.findall(r"(?<![\w.$])([a-zA-Z_:][\w:]*)(?![\w:]|\s*\()", expr)
        if name not in PROMQL_WORDS
    }


@pytest.fixture(scope="module")
def served_names() -> set[str]:
    """Every series name a scrape of the app can hold, families without samples included."""
    from pulseboard import create_app

    app = create_app({"APP_ENV": "test", "DATABASE_URL": "sqlite://", "BROKER_URL": "memory://"})
    scrape = app.test_client().get("/metrics")
    assert scrape.status_code == 200
    return {
        family.name + suffix
        for family in text_string_to_metric_families(scrape.get_data(as_text=True))
        for suffix in SUFFIXES.get(family.type, ("",))
    }


def test_the_scrape_config_and_the_rules_it_loads_are_valid(promtool):
    result = run_promtool(promtool, "check", "config", "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 rule files found" in result.stdout


def test_the_alert_rules_are_valid(promtool):
    result = run_promtool(promtool, "check", "rules", "alerts.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(rule_expressions())} rules found" in result.stdout


def test_every_alert_fires_and_stays_quiet_in_the_rule_unit_tests(promtool):
    result = run_promtool(promtool, "test", "rules", "alerts.test.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    # Each alertname check, and whether it expects the alert or silence.
    checks = re.findall(
        r"- alertname: (\S+)\n(?:\s+eval_time: .*\n)\s+exp_alerts:( \[\])?", RULE_TESTS.read_text()
    )
    fires = {name for name, quiet in checks if not quiet}
    stays_quiet = {name for name, quiet in checks if quiet}
    assert fires == stays_quiet == set(rule_expressions())


def test_every_dashboard_query_is_valid_promql(promtool, tmp_path):
    """promtool parses each query as the expression of a recording rule."""
    rules = ["groups:", "  - name: dashboard", "    rules:"]
    for number, expr in enumerate(dashboard_expressions()):
        # Grafana's own variable, filled in before Prometheus sees the query.
        expr = expr.replace("$__rate_interval", "5m")
        rules += [f"      - record: dashboard:query_{number}", f"        expr: {json.dumps(expr)}"]
    (tmp_path / "dashboard-rules.yml").write_text("\n".join(rules) + "\n")
    result = run_promtool(promtool, "check", "rules", str(tmp_path / "dashboard-rules.yml"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_rules_and_dashboard_name_only_metrics_the_app_serves(served_names):
    used = {
        name
        for expr in [*rule_expressions().values(), *dashboard_expressions()]
        for name in metric_names(expr)
    }
    assert "pulseboard_consumer_lag_seconds_bucket" in used  # the extraction finds names
    assert used - served_names - NOT_FROM_THE_APP == set()


def test_the_scrape_config_keeps_a_metric_the_app_serves(served_names):
    kept = re.findall(r"regex: (\w+)", (MONITORING / "prometheus.yml").read_text())
    assert kept and set(kept) <= served_names


def test_the_scrape_config_reaches_the_ports_the_units_use():
    config = (MONITORING / "prometheus.yml").read_text()
    consumer_unit = (DEPLOY / "templates" / "systemd" / "consumer.service").read_text()
    port = re.search(r"^Environment=CONSUMER_METRICS_PORT=(\d+)$", consumer_unit, re.M).group(1)
    assert f'targets: ["127.0.0.1:{port}"]' in config
    # setup.sh's defaults: two web instances from port 8000.
    assert 'targets: ["127.0.0.1:8000", "127.0.0.1:8001"]' in config


def test_metric_names_are_found_in_promql():
    expr = (
        'histogram_quantile(0.95, sum by (le) (rate(a_bucket{job="x", le=~"1.."}[5m]))) > 30'
        ' or absent(up{job="c"}) and on (instance) b_total offset 5m / c'
    )
    assert metric_names(expr) == {"a_bucket", "up", "b_total", "c"}
