"""The shape of a fault: what it needs, how it is injected and healed, and what it promises.

A fault is a :class:`Fault` subclass with these attributes (class attributes, or set by ``__init__``
for a family of kinds that are one mechanism with a parameter) and one method:

* ``name`` and ``summary`` (the catalogue's line);
* ``needs``: what the machine must offer (:func:`need_unavailable` says why not);
* ``promise``: a :class:`tests.chaos.model.Promise` (a new term or the same one, and the bounds);
* ``exec_share``: whether the soak may run it on replicas under ``--exec`` (issue 10);
* :meth:`Fault.inject`: one whole episode on a steady election (break, hold, mend), returning an
  :class:`tests.chaos.model.Outcome` with the times and what the fault saw itself. Its ``ctx`` is the
  :class:`tests.chaos.election.Election` under test (what it may use is listed there).

:meth:`Fault.heal` undoes what a failed injection may have left in place (a firewall rule, a held
syscall, a full or read-only disk); it must be idempotent, since the runner calls every fault's heal
after any failure. ZooKeeper and the replicas themselves are healed by the runner's ``recover()``.
"""

from __future__ import annotations

from tests.chaos.election import Election
from tests.chaos.model import Before, Outcome, Promise
from tools.faults.clock import faketime_unavailable
from tools.faults.disk import tmpfs_unavailable
from tools.faults.network import iptables_unavailable
from tools.faults.syscalls import strace_unavailable

NEEDS = ("ensemble", "relays", "tmpfs", "strace", "faketime")


def need_unavailable(need: str, zk_kind: str) -> str | None:
    """Why a fault's need cannot be met here, or None."""
    if need == "ensemble":
        return None if zk_kind == "ensemble" else "needs a ZooKeeper ensemble"
    if need == "relays":
        return iptables_unavailable()
    if need == "tmpfs":
        return tmpfs_unavailable()
    if need == "strace":
        return strace_unavailable()
    if need == "faketime":
        return faketime_unavailable()
    raise ValueError(need)


class Fault:
    """One kind of fault (see the module's docstring)."""

    # Class attributes of a fault kind, or set by __init__ for a family with a parameter.
    name: str
    summary: str
    promise: Promise
    needs: tuple[str, ...] = ()  # "ensemble", "relays" (iptables), "tmpfs", "strace", "faketime"
    exec_share: bool = False

    def unavailable(self, zk_kind: str) -> str | None:
        """Why this fault cannot run here (every unmet need, joined), or None."""
        reasons = [r for need in self.needs if (r := need_unavailable(need, zk_kind))]
        return "; ".join(reasons) or None

    def inject(self, ctx: Election, before: Before) -> Outcome:
        """Break, hold and mend; return when the fault began and was cleared, and what it saw."""
        raise NotImplementedError

    def heal(self, ctx: Election) -> None:
        """Undo whatever a failed :meth:`inject` left in place (idempotent; nothing by default)."""

    def __repr__(self) -> str:
        return f"<fault {self.name}>"
