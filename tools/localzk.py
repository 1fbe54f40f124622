# transitional re-export: removed at merge (issue 12)
"""Moved: servers to :mod:`tools.zookeeper`, quorums to :mod:`tools.ensemble`, ports to :mod:`tools.ports`."""

from tools.ensemble import EnsembleMember, LocalEnsemble
from tools.ports import free_ports as _free_ports
from tools.zookeeper import (
    DEFAULT_JAR_DIR,
    LocalZooKeeper,
    four_letter_word,
    java_available,
    zookeeper_classpath,
)

__all__ = [
    "DEFAULT_JAR_DIR",
    "EnsembleMember",
    "LocalEnsemble",
    "LocalZooKeeper",
    "_free_ports",  # tests/integration/test_zk_tls.py
    "four_letter_word",
    "java_available",
    "zookeeper_classpath",
]
