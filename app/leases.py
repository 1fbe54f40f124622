"""The lease arithmetic, in one place: how long a confirmation of leadership may be acted on, and
how the user's command (``--exec``) is stopped inside it.

* A confirmation sent at ``c`` is valid until ``c + L``, with ``L = LEASE_FRACTION x S`` and ``S``
  the session timeout the server *granted*: the server cannot expire our session before then,
  because that request reset its timer (kazoo itself declares the connection suspended after 2/3
  of ``S`` without an answer).
* With ``--exec`` the leader confirms every ``P = L / EXEC_CONFIRMS_PER_LEASE`` and each
  confirmation moves the command's deadline to its own ``c + L``. The command's dead-man (a thread
  of its own, not the state machine's) sends SIGTERM to the whole process group at
  ``deadline - G - K`` and SIGKILL at ``deadline - K`` (``G`` the stop grace, ``K`` = KILL_MARGIN for
  the kernel to deliver it and for us to see the group gone). A healthy leader renews every ``P``;
  the SIGTERM must not come while two renewals could still arrive, so ``L - G - K >= 2P``, i.e.
  ``G <= L - 2P - K = (2/3) L - K = (4/9) S - K``: 4.19 s at ``S = 10 s``.
* On any doubt the group gets SIGTERM at once and SIGKILL at ``min(now + G, deadline - K)``.
So the command's group is dead by ``c + L - K``, before the server could have expired the session
and a successor could have started its own command.
"""

from __future__ import annotations

LEASE_FRACTION = 2.0 / 3.0
EXEC_CONFIRMS_PER_LEASE = 6
KILL_MARGIN = 0.25


def lease_of(session_timeout: float) -> float:
    """The lease of one confirmation under a granted ``session_timeout``."""
    return session_timeout * LEASE_FRACTION


def exec_confirm_period(lease: float) -> float:
    """How often a leader running a command confirms its leadership."""
    return lease / EXEC_CONFIRMS_PER_LEASE


def exec_grace_bound(lease: float) -> float:
    """The longest stop grace (SIGTERM -> SIGKILL) that fits ``lease``: ``L - 2P - K`` (may be <= 0)."""
    return lease - 2.0 * exec_confirm_period(lease) - KILL_MARGIN
