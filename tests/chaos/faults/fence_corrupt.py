"""``.election-fence`` overwritten with garbage under the running replicas: it is rebuilt under the
lock from the files' highest epoch, and the cluster writes on (within the recovery bound; the audit,
which reads the fence, must be clean afterwards). Issue 9."""

from __future__ import annotations

import time

from tests.chaos.election import Election
from tests.chaos.faults.base import Fault
from tests.chaos.model import Before, Outcome, Promise


class FenceCorrupt(Fault):
    name = "fence_corrupt"
    summary = "`.election-fence` is overwritten with garbage"
    promise = Promise("any")

    def inject(self, ctx: Election, before: Before) -> Outcome:
        t0 = time.time()
        (ctx.file_dir / ".election-fence").write_text("garbage")
        return Outcome(t0, t0)
