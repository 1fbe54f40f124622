"""Command line of the benchmark: run scenarios, print their tables, write JSON and plots."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

from bench.common import REPO_ROOT, LoadMonitor, clean_nan, machine_info, write_json
from bench.etcd import etcd_available
from bench.scenarios import IN_ALL, RunContext, all_scenarios
from tools.zookeeper import java_available


def _sizes(text: str) -> list[int]:
    try:
        sizes = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of sizes: {text!r}") from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"sizes must be positive: {text!r}")
    return sizes


def build_parser(names: list[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmarks of election against kazoo's Election recipe and naive baselines, "
        "on real ZooKeeper servers and real processes.",
    )
    parser.add_argument(
        "scenarios",
        nargs="*",
        default=["all"],
        metavar="SCENARIO",
        help=f"all (default: {', '.join(IN_ALL)}) or any of: {', '.join(names)}",
    )
    parser.add_argument(
        "--rounds", type=int, help="rounds (or ticks/samples) per scenario, overriding defaults"
    )
    parser.add_argument(
        "--out", type=Path, default=REPO_ROOT / "bench" / "results", help="JSON and plots go here"
    )
    parser.add_argument(
        "--quick", action="store_true", help="a CI-sized smoke run (under two minutes in all)"
    )
    parser.add_argument(
        "--sizes",
        type=_sizes,
        help="group sizes N of the scenarios that sweep N (graceful, scale), e.g. 3,10 (default 3,10,50,100)",
    )
    parser.add_argument("--plots-dir", type=Path, help="where PNGs go (default: OUT/plots)")
    parser.add_argument("--no-plots", action="store_true", help="skip the PNGs")
    parser.add_argument(
        "--app-src",
        type=Path,
        default=REPO_ROOT,
        help="directory holding the app package to measure (default: this repository)",
    )
    parser.add_argument(
        "--app-ref",
        metavar="GIT-REF",
        help="measure the app as committed at GIT-REF (exported into the scratch directory), e.g. HEAD, "
        "so that edits made while a long run goes on do not mix into it",
    )
    parser.add_argument(
        "--compare-app-ref",
        metavar="GIT-REF",
        help="also run the app as committed at GIT-REF, next to the one under test and in the same "
        "run, in the scenarios that support it (graceful, cadence, cadence-ensemble), e.g. 4ff5fb0 "
        "(the leader's confirmation before sync)",
    )
    parser.add_argument("--workdir", type=Path, help="scratch directory (default: a new temporary one)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory (logs, files)")
    parser.add_argument("--seed", type=int, default=5, help="seed of the random phases")
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="run nothing: print the tables of the JSON already in OUT and redraw its plots",
    )
    return parser


def report_only(scenarios: dict[str, Any], wanted: list[str], out: Path, plots_dir: Path | None) -> int:
    missing = 0
    for name in wanted:
        path = out / f"{name}.json"
        if not path.is_file():
            print(f"bench: no {path}", file=sys.stderr)
            missing += 1
            continue
        result = json.loads(path.read_text())
        module = scenarios[name]
        print(f"\n== {module.TITLE}")
        print(module.report(result))
        if plots_dir is not None:
            module.plot(result, plots_dir)
    return 1 if missing else 0


def run_one(
    name: str,
    module: Any,
    ctx: RunContext,
    machine: dict[str, Any],
    *,
    quick: bool,
    out: Path,
    plots_dir: Path | None,
) -> dict[str, Any]:
    """Run one scenario, print its heading, its report and the load it ran under, draw its plots
    (into ``plots_dir``, if given) and write ``out/<name>.json``. A scenario that raises is reported
    (traceback on stderr) and returned as ``{"error": ..., "seconds": ...}``, with no JSON written,
    so that the others still run; a failed plot is one line on stderr."""
    print(f"\n== {module.TITLE}", flush=True)
    started = time.time()
    try:
        result: dict[str, Any] = module.run(ctx)
    except Exception as exc:
        traceback.print_exc()
        return {"error": f"{type(exc).__name__}: {exc}", "seconds": time.time() - started}
    result["seconds"] = round(time.time() - started, 1)
    result["load"] = result.get("load") or ctx.note_window(started)
    result["machine"] = machine
    result["quick"] = quick
    print(module.report(result))
    load = result["load"]
    print(
        f"({result['seconds']:.0f} s; load1 mean {load.get('load1_mean')}, CPUs busy "
        f"{load.get('busy_cores_mean')} of which others {load.get('others_cores_mean')} "
        f"(max {load.get('others_cores_max')}))",
        flush=True,
    )
    if plots_dir is not None:
        try:
            result["plots"] = [str(p) for p in module.plot(result, plots_dir)]
        except Exception as exc:
            print(f"bench: plot of {name} failed: {exc}", file=sys.stderr)
    write_json(out / f"{name}.json", clean_nan(result))
    return result


def export_app(repo: Path, ref: str, target: Path) -> Path:
    """``git archive REF app`` into ``target``; the commit is written to ``target/.commit``."""
    commit = subprocess.run(
        ["git", "-C", str(repo), "rev-parse", ref], capture_output=True, text=True, check=True
    ).stdout.strip()
    target.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(
        ["git", "-C", str(repo), "archive", commit, "app"], capture_output=True, check=True
    )
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive.stdout, check=True)
    (target / ".commit").write_text(commit + "\n")
    return target


def main(argv: list[str] | None = None) -> int:  # noqa: PLR0912, PLR0915 - one straight script
    scenarios = all_scenarios()
    names = list(scenarios)
    args = build_parser(names).parse_args(argv)
    wanted = list(IN_ALL) if "all" in args.scenarios else args.scenarios
    unknown = [n for n in wanted if n not in scenarios]
    if unknown:
        print(f"bench: unknown scenario(s) {unknown}; choose from all, {', '.join(names)}", file=sys.stderr)
        return 2
    needs_zk = [n for n in wanted if n != "retention"]
    reason = java_available()
    if needs_zk and reason is not None:
        print(f"bench: {reason} (scripts/bootstrap.sh installs it)", file=sys.stderr)
        return 2
    no_etcd = etcd_available() if "exec" in wanted else None
    if no_etcd is not None:
        print(f"bench: the exec scenario's anchor needs etcd: {no_etcd}", file=sys.stderr)
        return 2
    plots_dir = args.plots_dir or args.out / "plots"
    make_plots = not args.no_plots
    if make_plots:
        try:
            import matplotlib  # noqa: F401, PLC0415 - only to know whether plots can be drawn
        except ImportError:
            print("bench: matplotlib is not installed; no plots (pip install matplotlib)", file=sys.stderr)
            make_plots = False

    if args.report_only:
        return report_only(scenarios, wanted, args.out, plots_dir if make_plots else None)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="election-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    app_src = args.app_src.resolve()
    compare_app_src = None
    try:
        if args.app_ref:
            app_src = export_app(app_src, args.app_ref, workdir / "app-src")
        if args.compare_app_ref:
            compare_app_src = export_app(
                args.app_src.resolve(), args.compare_app_ref, workdir / "compare-app-src"
            )
    except subprocess.CalledProcessError as exc:
        err = exc.stderr or ""
        detail = (err.decode(errors="replace") if isinstance(err, bytes) else err).strip().splitlines()
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
        print(f"bench: cannot export the app: {detail[0] if detail else exc}", file=sys.stderr)
        return 2
    # In-process scenarios (retention) import the app too: the same one the processes run.
    sys.path.insert(0, str(app_src))
    monitor = LoadMonitor()
    monitor.start()
    machine = machine_info(app_src)
    ctx = RunContext(
        workdir=workdir,
        app_src=app_src,
        quick=args.quick,
        rounds=args.rounds,
        monitor=monitor,
        seed=args.seed,
        compare_app_src=compare_app_src,
        sizes=args.sizes,
    )
    print(
        f"election bench: {', '.join(wanted)}{' (quick)' if args.quick else ''}; "
        f"{machine['cpus']} CPUs ({machine['cpu_model']}), {machine['memory_bytes'] / 2**30:.1f} GiB, "
        f"Python {machine['python']}, kazoo {machine['packages']['kazoo']}; app {machine['app_commit']}"
        f"{' (modified)' if machine['app_dirty'] else ''} from {app_src}"
        f"{f'; compared with app {args.compare_app_ref}' if compare_app_src else ''}; "
        f"load {' '.join(f'{x:.2f}' for x in machine['load_at_start'])}; scratch {workdir}",
        flush=True,
    )
    overall = time.time()
    results: dict[str, Any] = {}
    failures = 0
    try:
        for name in wanted:
            result = run_one(
                name,
                scenarios[name],
                ctx,
                machine,
                quick=args.quick,
                out=args.out,
                plots_dir=plots_dir if make_plots else None,
            )
            if "error" in result:
                failures += 1
            results[name] = result
    finally:
        monitor.stop()
        if not args.keep and args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    total = time.time() - overall
    # summary.json for a run of everything; a partial run does not overwrite it.
    summary_name = "summary.json" if set(IN_ALL) <= set(wanted) else f"summary-{'-'.join(wanted)}.json"
    write_json(
        args.out / summary_name,
        clean_nan(
            {
                "machine": machine,
                "quick": args.quick,
                "scenarios": wanted,
                "seconds": round(total, 1),
                "load": monitor.window(overall, time.time()),
                "summaries": {n: r.get("summary", r.get("error")) for n, r in results.items()},
            }
        ),
    )
    print(
        f"\nbench: {len(wanted)} scenario(s) in {total:.0f} s; JSON in {args.out}"
        + (f", plots in {plots_dir}" if make_plots else "")
        + (f"; scratch kept in {workdir}" if args.keep else "")
    )
    if os.environ.get("BENCH_DEBUG"):
        print(f"scratch: {workdir}")
    return 1 if failures else 0
