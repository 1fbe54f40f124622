"""``python -m app`` as a real process, for the tests of the command line (unit and integration).

Exit statuses, one-line errors and the absence of a traceback are properties of a process, not of a
function call, so these tests run the command as a user's shell would. The child sees the test's
environment without any ``ELECTION_*`` variable (a developer's shell may export some), plus what a
test passes in ``env``; it runs from the repository's root, where ``app`` is importable.
"""

from __future__ import annotations

import subprocess

from tools import replicas
from tools.replicas import REPO_ROOT as REPO
from tools.replicas import app_command, clean_env

__all__ = ["REPO", "app_command", "app_env", "one_line", "run_app"]


def app_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The kit's child environment (no ``ELECTION_*`` variables), then ``extra`` on top."""
    return {**clean_env(), **(extra or {})}


def run_app(
    *args: str, env: dict[str, str] | None = None, timeout: float = 20.0
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m app ARGS`` to its end (``timeout`` s at most) with :func:`app_env` of ``env``."""
    return replicas.run_app(*args, env=app_env(env), timeout=timeout)


def one_line(result: subprocess.CompletedProcess[str], status: int, *says: str) -> str:
    """Assert the command exited ``status`` with one line on stderr holding each of ``says``, and no
    traceback; return that line."""
    assert result.returncode == status, result
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got:\n{result.stderr}"
    for text in says:
        assert text in lines[0], f"{text!r} not in {lines[0]!r}"
    return lines[0]
