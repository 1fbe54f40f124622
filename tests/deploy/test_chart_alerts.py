"""The PrometheusRule's alerts, unit-tested with promtool: each fires when it should and stays quiet
when it should.

The rules file is the rendered PrometheusRule's ``spec`` (release ``election`` in namespace
``election``: the series carry ``job="election-metrics"`` and ``namespace="election"``, as the
ServiceMonitor's scrapes would). Series are sampled every minute. A chart with ``exec.command``
renders ElectionWorkNotRunning in place of ElectionNoWorkPublished (its leader writes no files): that
alert is tested on the rules of the monitoring scenario plus ``ci/exec-values.yaml``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.chart import (
    MONITORING,
    alert_rules,
    debian_tool,
    leadership_change_reasons,
    prometheus_rule_groups,
    render,
    run,
)

pytestmark = pytest.mark.deploy

JOB = {"job": "election-metrics", "namespace": "election"}
EXEC_MONITORING = (*MONITORING, "ci/exec-values.yaml")
EXEC_ONLY = {"ElectionWorkNotRunning"}  # and ElectionNoWorkPublished only without a command


def _scenario(alert: str) -> tuple[str, ...]:
    return EXEC_MONITORING if alert in EXEC_ONLY else MONITORING


def _series(metric: str, values: str, **labels: str) -> dict[str, str]:
    selector = ", ".join(f'{k}="{v}"' for k, v in ({**JOB, **labels}).items())
    return {"series": f"{metric}{{{selector}}}", "values": values}


def _annotations(alert: str, **values: str) -> dict[str, str]:
    """The rule's annotations with Prometheus's templates filled in by hand."""
    rendered = {}
    for key, template in alert_rules(render(_scenario(alert)))[alert]["annotations"].items():
        text = template
        for placeholder, value in values.items():
            text = text.replace("{{ " + placeholder + " }}", value)
        assert "{{" not in text, f"fill in {text!r}"
        rendered[key] = text
    return rendered


def _fires(at: str, alert: str, labels: dict[str, str], **template_values: str) -> dict[str, Any]:
    return {
        "eval_time": at,
        "alertname": alert,
        "exp_alerts": [{"exp_labels": labels, "exp_annotations": _annotations(alert, **template_values)}],
    }


def _fires_for_pod(
    at: str, alert: str, pod: str, labels: dict[str, str] | None = None, **template_values: str
) -> dict[str, Any]:
    """A warning about one pod: its labels carry the pod (and ``labels``), its text names it."""
    return _fires(
        at,
        alert,
        {**(labels or {}), "pod": pod, "severity": "warning"},
        **{"$labels.pod": pod},
        **template_values,
    )


def _critical(at: str, alert: str, **template_values: str) -> dict[str, Any]:
    return _fires(at, alert, {"severity": "critical"}, **template_values)


def _warning(at: str, alert: str, **template_values: str) -> dict[str, Any]:
    return _fires(at, alert, {"severity": "warning"}, **template_values)


def _nothing_scraped(values: str, *tests: dict[str, Any]) -> dict[str, Any]:
    """A case where no election replica is scraped at all (something else is: ``up`` exists)."""
    return {
        "input_series": [{"series": 'up{job="something-else"}', "values": values}],
        "alert_rule_test": list(tests),
    }


def _quiet(at: str, alert: str) -> dict[str, Any]:
    return {"eval_time": at, "alertname": alert, "exp_alerts": []}


def _leaders(*values: str) -> list[dict[str, str]]:
    return [_series("election_is_leader", v, pod=f"election-{i}") for i, v in enumerate(values)]


def _changes(values: str, *, pod: str, reason: str) -> dict[str, str]:
    """New terms on ``pod`` by how the previous term ended (the counter lives on the new leader)."""
    return _series("election_leadership_changes_total", values, pod=pod, reason=reason)


def _running(*values: str) -> list[dict[str, str]]:
    return [_series("election_work_running", v, pod=f"election-{i}") for i, v in enumerate(values)]


CASES: dict[str, list[dict[str, Any]]] = {
    "ElectionNoLeader": [
        {  # fires: three replicas, none leads for 5 minutes
            "input_series": _leaders("0x5", "0x5", "0x5"),
            "alert_rule_test": [
                _quiet("30s", "ElectionNoLeader"),  # pending, not yet firing
                _critical("3m", "ElectionNoLeader"),
            ],
        },
        # fires: nothing scraped at all
        _nothing_scraped("1x5", _critical("3m", "ElectionNoLeader")),
        {  # quiet: one replica leads
            "input_series": _leaders("1x5", "0x5", "0x5"),
            "alert_rule_test": [_quiet("3m", "ElectionNoLeader")],
        },
        {  # quiet: a hand-over leaves nobody leading for less than the `for` (one sample)
            "input_series": _leaders("1 1 0 0 0 0", "0 0 0 1 1 1", "0x5"),
            "alert_rule_test": [_quiet("3m", "ElectionNoLeader"), _quiet("5m", "ElectionNoLeader")],
        },
    ],
    "ElectionMultipleLeaders": [
        {  # fires: two replicas report leading for minutes
            "input_series": _leaders("1x5", "1x5", "0x5"),
            "alert_rule_test": [_critical("3m", "ElectionMultipleLeaders", **{"$value": "2"})],
        },
        {  # quiet: the old leader's last scrape overlaps the new one's first (one sample)
            "input_series": _leaders("1 1 1 0 0 0", "0 0 1 1 1 1", "0x5"),
            "alert_rule_test": [
                _quiet("2m", "ElectionMultipleLeaders"),
                _quiet("4m", "ElectionMultipleLeaders"),
            ],
        },
    ],
    "ElectionLeadershipFlapping": [
        {  # fires: five terms begin within 15 minutes after session expiries and a fenced write
            "input_series": [
                _changes("0 1 1 2 2 3+0x10", pod="election-0", reason="expired"),
                _changes("0 0 1 1 1 1+0x10", pod="election-1", reason="expired"),
                _changes("0 0 0 0 1 1+0x10", pod="election-1", reason="fenced"),
            ],
            "alert_rule_test": [_warning("15m", "ElectionLeadershipFlapping", **{"$value | humanize": "5"})],
        },
        {  # fires: the unplanned ones are counted beside planned ones, which are left out of the count
            "input_series": [
                _changes("0 2 4 6 8 10+0x10", pod="election-0", reason="switchover"),
                _changes("0 1 2 2 3 4+0x10", pod="election-1", reason="resigned"),
                _changes("0 0 1 1 1 1+0x10", pod="election-2", reason="work_exited"),
            ],
            "alert_rule_test": [_warning("15m", "ElectionLeadershipFlapping", **{"$value | humanize": "5"})],
        },
        {  # quiet: a rollout and a series of switchovers hand over thirteen times, all of them planned
            "input_series": [
                _changes("0 1 2 3 3 3+0x10", pod="election-0", reason="graceful"),
                _changes("0 1 3 5 7 9+0x10", pod="election-1", reason="switchover"),
                _changes("0 1 1 1 1 1+0x10", pod="election-2", reason="graceful"),
            ],
            "alert_rule_test": [
                _quiet("5m", "ElectionLeadershipFlapping"),
                _quiet("15m", "ElectionLeadershipFlapping"),
            ],
        },
        {  # quiet: one session expiry among the planned hand-overs
            "input_series": [
                _changes("0 0 0 1+0x12", pod="election-1", reason="expired"),
                _changes("0 1 2 3 4 5+0x10", pod="election-0", reason="graceful"),
            ],
            "alert_rule_test": [_quiet("15m", "ElectionLeadershipFlapping")],
        },
    ],
    "ElectionReplicaStuckInFailover": [
        {  # fires: a replica has been in Failover for the whole window
            "input_series": [
                _series("election_state", "1x15", pod="election-1", state="Failover"),
                _series("election_state", "0x15", pod="election-0", state="Failover"),
            ],
            "alert_rule_test": [
                _fires_for_pod(
                    "12m", "ElectionReplicaStuckInFailover", "election-1", {**JOB, "state": "Failover"}
                )
            ],
        },
        {  # quiet: a short Failover that healed
            "input_series": [_series("election_state", "0 1 1 1 0+0x11", pod="election-1", state="Failover")],
            "alert_rule_test": [_quiet("12m", "ElectionReplicaStuckInFailover")],
        },
    ],
    "ElectionWriteErrors": [
        {  # fires: the leader failed two writes
            "input_series": [
                _series("election_write_errors_total", "0 0 0 1 2 2 2", pod="election-0"),
                _series("election_write_errors_total", "0x6", pod="election-1"),
            ],
            "alert_rule_test": [
                _fires_for_pod("5m", "ElectionWriteErrors", "election-0", **{"$value | humanize": "2"})
            ],
        },
        {  # quiet: no error
            "input_series": [_series("election_write_errors_total", "0x10", pod="election-0")],
            "alert_rule_test": [_quiet("5m", "ElectionWriteErrors"), _quiet("10m", "ElectionWriteErrors")],
        },
    ],
    "ElectionFencedWrites": [
        {  # fires: a frozen leader woke up, tried to write, was fenced, resigned
            "input_series": [
                _series("election_fenced_writes_total", "0 0 0 1 1 1 1", pod="election-2"),
                _series("election_fenced_writes_total", "0x6", pod="election-0"),
            ],
            "alert_rule_test": [_fires_for_pod("5m", "ElectionFencedWrites", "election-2")],
        },
        {  # quiet: never fenced
            "input_series": [_series("election_fenced_writes_total", "0x30", pod="election-0")],
            "alert_rule_test": [_quiet("5m", "ElectionFencedWrites"), _quiet("30m", "ElectionFencedWrites")],
        },
        {  # quiet again once the fenced write is older than the window (15m)
            "input_series": [_series("election_fenced_writes_total", "0 1+0x30", pod="election-1")],
            "alert_rule_test": [_quiet("30m", "ElectionFencedWrites")],
        },
    ],
    "ElectionWorkOnSeveralReplicas": [
        {  # fires: the work runs on two replicas for minutes
            "input_series": _running("1x5", "1x5", "0x5"),
            "alert_rule_test": [
                _quiet("30s", "ElectionWorkOnSeveralReplicas"),
                _critical("3m", "ElectionWorkOnSeveralReplicas", **{"$value": "2"}),
            ],
        },
        {  # quiet: hand-overs, the old replica's last scrape overlapping the new one's first (one sample)
            "input_series": _running("1 1 1 0 0 0 0 0", "0 0 1 1 1 0 0 0", "0 0 0 0 1 1 1 1"),
            "alert_rule_test": [
                _quiet("3m", "ElectionWorkOnSeveralReplicas"),
                _quiet("6m", "ElectionWorkOnSeveralReplicas"),
            ],
        },
        {  # quiet: one replica's file writer (the gauge counts it too), the others standing by
            "input_series": _running("1x5", "0x5", "0x5"),
            "alert_rule_test": [_quiet("4m", "ElectionWorkOnSeveralReplicas")],
        },
    ],
    "ElectionWorkNotRunning": [
        {  # fires: replicas up, the command nowhere for ten minutes (a command that keeps crashing)
            "input_series": _running("0x10", "0x10", "0x10"),
            "alert_rule_test": [
                _quiet("4m", "ElectionWorkNotRunning"),  # pending, not yet firing
                _critical("6m", "ElectionWorkNotRunning"),
            ],
        },
        # fires: nothing scraped at all
        _nothing_scraped("1x10", _critical("6m", "ElectionWorkNotRunning")),
        {  # quiet: the command runs on one replica, then moves with a hand-over (a two-minute gap)
            "input_series": _running("1 1 1 0 0 0 0 0 0 0 0", "0 0 0 0 0 1 1 1 1 1 1", "0x10"),
            "alert_rule_test": [
                _quiet("4m", "ElectionWorkNotRunning"),
                _quiet("10m", "ElectionWorkNotRunning"),
            ],
        },
    ],
    "ElectionNoWorkPublished": [
        {  # fires: two replicas up, a leader among them, and no file for ten minutes
            "input_series": [
                _series("election_files_written_total", "40+0x12", pod="election-0"),
                _series("election_files_written_total", "3+0x12", pod="election-1"),
                _series("election_build_info", "1x12", pod="election-0", version="0", python="3"),
                _series("election_build_info", "1x12", pod="election-1", version="0", python="3"),
            ],
            "alert_rule_test": [_critical("10m", "ElectionNoWorkPublished")],
        },
        {  # quiet: the leader publishes a file every minute
            "input_series": [
                _series("election_files_written_total", "0+1x12", pod="election-0"),
                _series("election_build_info", "1x12", pod="election-0", version="0", python="3"),
            ],
            "alert_rule_test": [_quiet("10m", "ElectionNoWorkPublished")],
        },
        # quiet: nothing scraped at all (ElectionNoLeader covers that)
        _nothing_scraped("1x12", _quiet("10m", "ElectionNoWorkPublished")),
        {  # quiet: a deployment seconds old (one sample, no increase yet), then a working one
            "input_series": [_series("election_files_written_total", "_ 0 60 120 180", pod="election-0")],
            "alert_rule_test": [
                _quiet("1m", "ElectionNoWorkPublished"),
                _quiet("4m", "ElectionNoWorkPublished"),
            ],
        },
        {  # a window full of nothing (from 5m on), but not yet for the `for` (2m): pending only
            "input_series": [_series("election_files_written_total", "7+0x12", pod="election-0")],
            "alert_rule_test": [_quiet("6m", "ElectionNoWorkPublished")],
        },
    ],
}


def _rules_file(directory: Path, values: tuple[str, ...]) -> Path:
    path = directory / ("exec-rules.yaml" if values == EXEC_MONITORING else "rules.yaml")
    path.write_text(yaml.safe_dump(prometheus_rule_groups(render(values)), sort_keys=False))
    return path


@pytest.mark.parametrize("values", [MONITORING, EXEC_MONITORING], ids=["files", "exec"])
def test_promtool_check_rules_accepts_the_rendered_rules(values: tuple[str, ...], tmp_path: Path) -> None:
    proc = run([debian_tool("promtool"), "check", "rules", str(_rules_file(tmp_path, values))])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS: 8 rules found" in proc.stdout


def test_every_alert_has_a_unit_test() -> None:
    assert set(CASES) == set(alert_rules(render(MONITORING))) | set(alert_rules(render(EXEC_MONITORING)))


def test_the_flapping_cases_use_only_reasons_the_app_counts() -> None:
    used = {
        match
        for case in CASES["ElectionLeadershipFlapping"]
        for series in case["input_series"]
        for match in re.findall(r'reason="([^"]+)"', series["series"])
    }
    assert used == set(leadership_change_reasons())


def test_with_a_command_the_work_is_watched_through_the_command_not_the_files() -> None:
    files, command = set(alert_rules(render(MONITORING))), set(alert_rules(render(EXEC_MONITORING)))
    assert files - command == {"ElectionNoWorkPublished"}
    assert command - files == {"ElectionWorkNotRunning"}


@pytest.mark.parametrize("alert", CASES)
def test_alert_fires_when_it_should_and_stays_quiet_otherwise(alert: str, tmp_path: Path) -> None:
    rules_file = _rules_file(tmp_path, _scenario(alert))
    tests = {
        "rule_files": [rules_file.name],
        "evaluation_interval": "30s",
        "tests": [{"interval": "1m", **case} for case in CASES[alert]],
    }
    test_file = rules_file.parent / f"{alert}.test.yaml"
    test_file.write_text(yaml.safe_dump(tests, sort_keys=False))
    proc = run([debian_tool("promtool"), "test", "rules", str(test_file)], cwd=rules_file.parent)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout
