"""What a suite of real processes adds to pytest's report: sections on failure, a line at the end.

The e2e and chaos conftests import the two hooks below (a conftest's hooks apply to the tests under
its directory only, so each suite gets them once) and register what to show:

- :func:`on_failure` ``(node, describe)``: when a phase of that test fails, ``describe()`` is called
  and its ``(title, text)`` sections (replicas' command lines and log tails, server logs) are
  attached to the failure's report; nothing is read from disk for a test that passes;
- :func:`summary_line` ``(config, line)``: ``line`` is written at the end of the terminal summary
  (once per call, in order), so that a session's figures are seen even with output captured.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterable
from typing import Any

import pytest

Sections = Callable[[], Iterable[tuple[str, str]]]

_ON_FAILURE = pytest.StashKey[list[Sections]]()
_SUMMARY = pytest.StashKey[list[str]]()


def on_failure(node: pytest.Item, describe: Sections) -> None:
    """Attach ``describe()``'s sections to the report of any failed phase of ``node``."""
    node.stash.setdefault(_ON_FAILURE, []).append(describe)


def summary_line(config: pytest.Config, line: str) -> None:
    """Write ``line`` in the terminal summary of this session."""
    config.stash.setdefault(_SUMMARY, []).append(line)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Generator[None, Any, Any]:
    report = yield
    if report.failed:
        for describe in item.stash.get(_ON_FAILURE, []):
            report.sections.extend(describe())
    return report


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    # Every conftest that imports this hook runs it: the first one writes the lines and takes them.
    lines = terminalreporter.config.stash.get(_SUMMARY, [])
    terminalreporter.config.stash[_SUMMARY] = []
    for line in lines:
        terminalreporter.write_line(line)
