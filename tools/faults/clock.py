"""A wall clock behind (or ahead of) the others, for one process: a pod on a node whose clock drifted.

The process is started with libfaketime preloaded: its ``time()``/``CLOCK_REALTIME`` is moved by a fixed
offset while its monotonic clock is left alone, so timers and leases that rightly use the monotonic
clock are untouched and only what reads the wall clock (timestamps written to files, logs) is off.
Undone by starting the process again without the environment.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["faketime_unavailable", "skewed_clock_env"]


def _faketime_library() -> Path | None:
    found = sorted(Path("/usr/lib").glob("*/faketime/libfaketime.so.1"))
    return found[0] if found else None


def faketime_unavailable() -> str | None:
    """Why a clock cannot be skewed here, or None."""
    if _faketime_library() is None:
        return "libfaketime is not installed (apt-get install faketime): it skews one replica's clock"
    return None


def skewed_clock_env(offset: str) -> dict[str, str]:
    """Environment variables that run a process with its wall clock moved by ``offset`` (e.g.
    ``"-2s"``: 2 s behind) and its monotonic clock untouched: a pod on a node whose clock drifted."""
    library = _faketime_library()
    if library is None:
        raise RuntimeError(faketime_unavailable())
    return {"LD_PRELOAD": str(library), "FAKETIME": offset, "FAKETIME_DONT_FAKE_MONOTONIC": "1"}
