# transitional re-export: removed at merge (issue 12)
"""Moved to :mod:`tools.relay` (the one relay of the kit, with the same cut and heal)."""

from tools.relay import Relay

__all__ = ["Relay"]
