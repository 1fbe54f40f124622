"""The README's tables say what the code does: flags, env vars, defaults, metrics."""

from __future__ import annotations

import json
import re
from pathlib import Path

import click
from prometheus_client import CollectorRegistry

from app.adapters.prometheus_metrics import PrometheusMetrics
from app.cli import cli
from app.http import Endpoints
from app.machine import StateName

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def _table_rows(first_cell_prefix: str) -> dict[str, list[str]]:
    rows = {}
    for line in README.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0].startswith(first_cell_prefix):
            rows[cells[0].strip("`")] = cells
    return rows


def test_every_run_option_is_in_the_readme_with_its_variable_and_default() -> None:
    run = cli.commands["run"]
    rows = _table_rows("`--")
    for param in run.params:
        if not isinstance(param, click.Option) or param.name == "help":
            continue
        flag = max(param.opts, key=len)
        assert flag in rows, f"{flag} missing from the README's configuration table"
        _flag, var, default, _meaning = rows[flag]
        assert var == f"`{param.envvar}`"
        if param.default is not None:
            assert default == f"`{param.default}`", f"{flag}: README says {default}, code {param.default!r}"
    documented = set(rows)
    real = {max(p.opts, key=len) for p in run.params if isinstance(p, click.Option)}
    assert documented <= real, f"README documents flags that do not exist: {documented - real}"


def test_every_exposed_metric_is_in_the_readme_and_nothing_else() -> None:
    registry = CollectorRegistry()
    PrometheusMetrics(registry, lambda: 0.0, [str(s) for s in StateName])
    exposed = {f.name + "_total" if f.type == "counter" else f.name for f in registry.collect()}
    documented = {re.sub(r"\{.*\}", "", name) for name in _table_rows("`election_")}
    assert exposed == documented


def test_every_path_the_router_serves_is_in_the_readme() -> None:
    def probe() -> tuple[bool, str]:
        return True, ""

    app = Endpoints(CollectorRegistry(), dict, probe, probe, probe)
    body = b"".join(app({"PATH_INFO": "/no-such-path"}, lambda _status, _headers: None))
    paths = json.loads(body)["paths"]  # the 404 lists what the router serves
    assert "/leader" in paths
    assert sorted(paths) == sorted(_table_rows("`/"))


def test_the_switchover_section_documents_every_flag_and_outcome_of_the_command() -> None:
    from app import switchover  # noqa: PLC0415

    section = README.split("## Planned switchover", 1)[1].split("\n## ", 1)[0]
    for param in cli.commands["switchover"].params:
        flag = max(param.opts, key=len)
        if isinstance(param, click.Option) and param.name != "help":
            assert f"`{flag}" in section or flag.startswith("--zk-tls-"), flag  # those: "`--zk-tls*`"
    outcomes = {v for k, v in vars(switchover).items() if k.isupper() and isinstance(v, str)}
    for outcome in outcomes:
        assert f"`{outcome}`" in section, outcome
