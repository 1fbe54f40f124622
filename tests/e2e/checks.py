"""Verdicts of the e2e tests on what the leaders left in ``file-dir``.

The kit (``tools.leader_files``) reads the files; what counts as correct is the tests' to say, here
as assertions (the chaos suite judges the same files with ``tests.chaos.evidence.analyse``, which
reports problems instead of failing at the first, since a fault run wants every figure).
"""

from __future__ import annotations

from tools.leader_files import LeaderFile


def check_terms_do_not_interleave(files: list[LeaderFile]) -> dict[int, list[LeaderFile]]:
    """Assert that the terms in ``files`` (sorted by name) follow one another; return them by epoch.

    Epochs never decrease in name order; each term has one writer, numbers its files 0, 1, 2...
    in order, and every file of an older term was written before any file of a newer one.
    """
    assert [f.name for f in files] == sorted(f.name for f in files)
    terms: dict[int, list[LeaderFile]] = {}
    for record in files:
        assert record.name == f"leader-{record.epoch:020d}-{record.sequence:012d}.json", record
        terms.setdefault(record.epoch, []).append(record)
    epochs = [f.epoch for f in files]
    assert epochs == sorted(epochs), f"epochs decrease in write order: {epochs}"
    previous: list[LeaderFile] | None = None
    for epoch, term in terms.items():
        writers = {f.identity for f in term}
        assert len(writers) == 1, f"epoch {epoch} written by {sorted(writers)}"
        times = [f.written_at for f in term]
        assert times == sorted(times), f"epoch {epoch}: files not written in name order"
        if previous is not None:
            assert max(f.written_at for f in previous) < min(times), (
                f"epoch {previous[0].epoch} ({previous[0].identity}) wrote after epoch {epoch} "
                f"({term[0].identity}) began"
            )
        previous = term
    return terms
