"""The shape of a fault: what it needs, how it is injected and healed, and what it promises.

A fault is a :class:`Fault` subclass with four class attributes and one method:

* ``name`` and ``summary`` (the catalogue's line);
* ``needs``: what the machine must offer (:func:`need_unavailable` says why not);
* ``promise``: a :class:`tests.chaos.model.Promise` (a new term or the same one, and the bounds);
* ``exec_share``: whether the soak may run it on replicas under ``--exec`` (issue 10);
* :meth:`Fault.inject`: one whole episode on a steady election (break, hold, mend), returning an
  :class:`tests.chaos.model.Outcome` with the times and what the fault saw itself.

:meth:`Fault.heal` undoes what a failed injection may have left in place (a firewall rule, a held
syscall, a full or read-only disk); it must be idempotent, since the runner calls every fault's heal
after any failure. ZooKeeper and the replicas themselves are healed by the runner's ``recover()``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from tests.chaos.infra import (
    faketime_unavailable,
    iptables_unavailable,
    strace_unavailable,
    tmpfs_unavailable,
)
from tests.chaos.model import Before, Outcome, Promise

if TYPE_CHECKING:
    from tests.chaos.runner import Chaos

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

    name: ClassVar[str]
    summary: ClassVar[str]
    promise: ClassVar[Promise]
    needs: ClassVar[tuple[str, ...]] = ()  # "ensemble", "relays" (iptables), "tmpfs", "strace", "faketime"
    exec_share: ClassVar[bool] = False

    def unavailable(self, zk_kind: str) -> str | None:
        """Why this fault cannot run here (every unmet need, joined), or None."""
        reasons = [r for need in self.needs if (r := need_unavailable(need, zk_kind))]
        return "; ".join(reasons) or None

    def inject(self, ctx: Chaos, before: Before) -> Outcome:
        """Break, hold and mend; return when the fault began and was cleared, and what it saw."""
        raise NotImplementedError

    def heal(self, ctx: Chaos) -> None:
        """Undo whatever a failed :meth:`inject` left in place (idempotent; nothing by default)."""

    def __repr__(self) -> str:
        return f"<fault {self.name}>"
