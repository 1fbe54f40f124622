"""The skeleton of a scenario: launch the fleets, run the rounds, shape the result and the report.

A scenario module keeps the interface of :mod:`bench.scenarios` (``NAME``, ``TITLE``, ``run(ctx)``,
``report(result)``, ``plot(result, directory)``); the command line (``bench/cli.py``) prints the
report, writes the JSON and draws the plots. What every ``run`` repeats lives here:

* **flavours and fleets**: :func:`fleets` makes one :class:`~bench.fleet.Group` per flavour (the app
  and its baselines, measured in the same run on the same server) under ``/bench/<name>/<flavour>``;
  :func:`launched` starts groups and stops every one of them on the way out, whatever happened, so
  no replica outlives its scenario;
* **rounds**: :func:`schedule` says in which order the flavours (or methods, modes) take their turn
  in each round, :data:`ROTATE` (round ``r`` starts at item ``r mod k``: each is first equally
  often), :data:`ALTERNATE` (forwards, then backwards: every pair back to back) or :data:`IN_TURN`
  (always the same order); every item has exactly one turn per round. :func:`measure` runs the
  measured step in that order and tags each row with its round, which is what :func:`paired` pairs
  on;
* **samples and the result**: :func:`per` summarises one figure per flavour; :func:`paired` is the
  round-by-round ratio of two flavours over the rounds both measured; :func:`make_result` makes the
  JSON every scenario writes (``config``, ``summary``, ``load``, ``rounds``);
* **report**: :func:`spread` (a distribution's cells for a table row) under :func:`spread_header`,
  :func:`verdict`
  (``met``/``MISSED``), :func:`fraction` (``k/n``); **plots**: :func:`series_ms`, :func:`no_plots`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from bench.common import ms, paired_ratio_summary, summary
from bench.fleet import Flavour, Group
from bench.scenarios import RunContext

T = TypeVar("T")
Order = Callable[[Sequence[T], int], list[T]]

#: The timing flags :mod:`bench.fleet` gives every app replica unless a scenario says otherwise, as
#: the JSON's ``config.app_flags`` records them.
APP_FLAGS = {"attempter-timeout": "10s", "leader-timeout": "1s", "zk-session-timeout": "4s"}


def fleet_config(rounds: int, **more: Any) -> dict[str, Any]:
    """The ``config`` of a scenario whose replicas run with the fleet's defaults (:data:`APP_FLAGS`)
    on a server of :meth:`RunContext.zookeeper`'s default tick (200 ms): its ``rounds`` and ``more``."""
    return {"rounds": rounds, "app_flags": APP_FLAGS, "zk_tick_ms": 200, **more}


# --------------------------------------------------------------------------
# flavours and fleets
# --------------------------------------------------------------------------


def fleets(
    ctx: RunContext,
    zk_address: str,
    name: str,
    flavours: Iterable[Flavour],
    size: int,
    **options: Any,
) -> list[Group]:
    """One group of ``size`` contenders per flavour on ``zk_address``, each under its own election
    path ``/bench/<name>/<flavour>`` and scratch directory; ``options`` go to every
    :class:`~bench.fleet.Group` (session timeout, extra flags, relays). Nothing is started yet."""
    return [
        Group(
            f,
            size,
            zk_address,
            f"/bench/{name}/{f.name}",
            ctx.workdir / name / f.name,
            ctx.app_src,
            **options,
        )
        for f in flavours
    ]


@contextlib.contextmanager
def launched(
    *groups: Group, start: Callable[[Group], object] | None = Group.start, stop_timeout: float = 20.0
) -> Iterator[tuple[Group, ...]]:
    """Start ``groups`` in order (``start``: how, by default :meth:`Group.start`; None: the body
    starts them) and yield them; on the way out, normal or not, every group is stopped (SIGTERM,
    then SIGKILL after ``stop_timeout``), the ones that never started included."""
    try:
        for group in groups:
            if start is not None:
                start(group)
        yield groups
    finally:
        for group in groups:
            group.stop(timeout=stop_timeout)


# --------------------------------------------------------------------------
# rounds
# --------------------------------------------------------------------------


def rotate(items: Sequence[T], r: int) -> list[T]:
    """Round ``r``'s order: the items starting at ``r mod len(items)``, so that over ``len(items)``
    rounds each has been first (and in every other place) once."""
    if not items:
        return []
    k = r % len(items)
    return [*items[k:], *items[:k]]


def alternate(items: Sequence[T], r: int) -> list[T]:
    """Round ``r``'s order: forwards in even rounds, backwards in odd ones (A B, B A, ...), so a pair
    measured in one round is back to back with the same pair in the next."""
    return list(items) if r % 2 == 0 else list(items)[::-1]


def in_turn(items: Sequence[T], r: int) -> list[T]:
    """Round ``r``'s order: always the same (a sequence of steps, say, rather than rivals)."""
    del r
    return list(items)


ROTATE: Order[Any] = rotate
ALTERNATE: Order[Any] = alternate
IN_TURN: Order[Any] = in_turn


def schedule(items: Sequence[T], rounds: int, order: Order[T] = rotate) -> Iterator[tuple[int, T]]:
    """``(round, item)`` for ``rounds`` rounds: every item exactly once per round, in ``order``."""
    for r in range(rounds):
        for item in order(items, r):
            yield r, item


def measure(
    items: Sequence[T],
    rounds: int,
    step: Callable[[T, int], dict[str, Any]],
    order: Order[T] = rotate,
) -> list[dict[str, Any]]:
    """Run the measured ``step(item, round)`` for every turn of :func:`schedule`; each row it
    returns gets ``"round"`` (what :func:`paired` pairs on). Rows come back in the order measured."""
    rows = []
    for r, item in schedule(items, rounds, order):
        row = step(item, r)
        row["round"] = r
        rows.append(row)
    return rows


# --------------------------------------------------------------------------
# samples and the result
# --------------------------------------------------------------------------


def values(rows: Iterable[Mapping[str, Any]], key: str) -> list[Any]:
    """``row[key]`` of the rows that have it (not None), in order."""
    return [r[key] for r in rows if r.get(key) is not None]


def per(
    rows: Sequence[Mapping[str, Any]], key: str, names: Iterable[str], by: str = "flavour"
) -> dict[str, dict[str, float]]:
    """For each of ``names``: the summary of ``key`` over the rows whose ``by`` is that name (rows
    without the figure left out)."""
    return {name: summary(values((r for r in rows if r[by] == name), key)) for name in names}


def paired(
    a: Sequence[Mapping[str, Any]], b: Sequence[Mapping[str, Any]], key_a: str, key_b: str | None = None
) -> dict[str, float]:
    """Round-by-round ratio ``a[key_a] / b[key_b]`` over the rounds both measured (rows matched by
    their ``round``, not their position: a round one side lost does not shift the others)."""
    left = {r["round"]: r[key_a] for r in a if r.get(key_a) is not None}
    right = {r["round"]: r[key_b or key_a] for r in b if r.get(key_b or key_a) is not None}
    common = sorted(set(left) & set(right))
    return paired_ratio_summary([left[r] for r in common], [right[r] for r in common])


def make_result(
    ctx: RunContext,
    started: float,
    *,
    config: dict[str, Any],
    summary: dict[str, Any],
    rounds: list[Any],
    **extra: Any,
) -> dict[str, Any]:
    """A scenario's JSON: its ``config``, ``summary`` and ``rounds``, any ``extra`` top-level keys,
    and the machine's ``load`` from ``started`` (wall time) until now."""
    return {"config": config, "summary": summary, **extra, "load": ctx.note_window(started), "rounds": rounds}


# --------------------------------------------------------------------------
# report and plots
# --------------------------------------------------------------------------


def spread(
    stats: Mapping[str, float],
    quantiles: Sequence[str] = ("min", "p50", "p95", "max"),
    fmt: Callable[[float], str] = ms,
) -> list[str]:
    """The cells of a distribution in a table row: ``fmt`` of each of ``quantiles``, in order."""
    return [fmt(stats[q]) for q in quantiles]


def spread_header(quantiles: Sequence[str] = ("min", "p50", "p95", "max"), unit: str = "ms") -> list[str]:
    """The column titles over :func:`spread`'s cells (``"p50 ms"``...), in the same order."""
    return [f"{q} {unit}" for q in quantiles]


def verdict(met: bool) -> str:
    """How a report says whether a target was met."""
    return "met" if met else "MISSED"


def fraction(count: int, total: int) -> str:
    """``count/total``, as the reports print "k of n rounds"."""
    return f"{count}/{total}"


def series_ms(
    rows: Iterable[Mapping[str, Any]], key: str, labels: Mapping[str, str], by: str = "flavour"
) -> dict[str, list[float]]:
    """For a distribution plot: per label, ``key`` in milliseconds of the rows whose ``by`` is the
    label's name (``labels``: name -> label), in the order measured."""
    picked = list(rows)
    return {label: [r[key] * 1000 for r in picked if r[by] == name] for name, label in labels.items()}


def no_plots(result: dict[str, Any], directory: Path) -> list[Path]:
    """The ``plot`` of a scenario that draws none."""
    del result, directory
    return []
