"""Benchmarks of ``election`` on real ZooKeeper servers and real processes (issue 5).

Not a test suite: it measures and reports, and asserts nothing about absolute times. Every scenario
compares the app with a baseline run on the same machine in the same run (kazoo's ``Election``
recipe, a naive poller, a write-then-sleep loop, a rescan-per-tick retention), because the machines
it runs on are shared and noisy: read ratios and distributions, not single absolute times.

    python -m bench [all|graceful|crash|isolation|scale|footprint|cadence|retention] [--quick]

See ``bench/README.md``.
"""
