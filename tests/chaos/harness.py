# transitional re-export: removed at merge (issue 12)
"""The chaos harness now lives in parts: :mod:`tests.chaos.runner` (the :class:`Chaos` context and
:func:`plan`), :mod:`tests.chaos.faults` (one module per fault, and the catalogue),
:mod:`tests.chaos.invariants` and :mod:`tests.chaos.model` (settings, bounds, records). This module
only re-exports them for importers owned elsewhere (``tests/chaos/conftest.py``)."""

from tests.chaos.faults import EXEC_FAULTS, FAULTS, Fault
from tests.chaos.faults.base import need_unavailable as unavailable
from tests.chaos.model import Before, FaultResult, Outcome
from tests.chaos.runner import Chaos, plan

__all__ = [
    "EXEC_FAULTS",
    "FAULTS",
    "Before",
    "Chaos",
    "Fault",
    "FaultResult",
    "Outcome",
    "plan",
    "unavailable",
]
