"""``.election-fence`` overwritten with garbage under the running replicas: it is rebuilt under the
lock from the files' highest epoch, and the cluster writes on (within the recovery bound; the audit,
which reads the fence, must be clean afterwards). Issue 9."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from tests.chaos.faults.base import Fault
from tests.chaos.model import Before, Outcome, Promise

if TYPE_CHECKING:
    from tests.chaos.runner import Chaos


class FenceCorrupt(Fault):
    name = "fence_corrupt"
    summary = "`.election-fence` is overwritten with garbage"
    promise = Promise("any")

    def inject(self, ctx: Chaos, before: Before) -> Outcome:
        t0 = time.time()
        (ctx.file_dir / ".election-fence").write_text("garbage")
        return Outcome(t0, t0)
