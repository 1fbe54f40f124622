"""Faults to inject into a running system, one module per kind; every one is undone by its own method.

- :mod:`tools.faults.network`: TCP paths cut by firewall rules on the loopback (root);
- :mod:`tools.faults.disk`: a file-dir on a tmpfs that fills up or turns read-only (root);
- :mod:`tools.faults.clock`: a process whose wall clock is skewed (libfaketime);
- :mod:`tools.faults.syscalls`: a process held inside one system call (strace);
- :mod:`tools.faults.locks`: a foreign process holding a POSIX lock.

Each kind says why it cannot run here through a ``*_unavailable()`` probe (None when it can), so a
test can fail or skip with the reason instead of a traceback. Callers undo a fault in a ``finally``
(``remove``, ``unmount``, ``stop``, ``release``); network cuts a killed run left behind are found by
their comment and deleted by :func:`tools.faults.network.remove_stale_cuts`.
"""
