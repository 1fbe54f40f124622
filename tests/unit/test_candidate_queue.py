"""The queue's two decisions, apart from ZooKeeper: which node is ours, and which one we watch."""

from __future__ import annotations

from app.adapters.kazoo_coordinator import adopted_candidate, candidates_ahead

# Names as ZooKeeper makes them: "c-<session, 16 hex digits>-" plus a 10-digit sequence.
OLD_SESSION_LATE = "c-ffffffffffffff01-0000000007"
NEW_SESSION_EARLY = "c-0000000000000a02-0000000003"
MINE = "c-0000000000000b03-0000000009"


def test_queue_order_is_the_sequence_not_the_name() -> None:
    # By name, the 0a02 node (sequence 3) and ours would come before ff01 (sequence 7); by
    # sequence, both others are ahead of us and the one just ahead is sequence 7.
    assert candidates_ahead([MINE, OLD_SESSION_LATE, NEW_SESSION_EARLY], MINE) == (2, OLD_SESSION_LATE)
    assert candidates_ahead([MINE, OLD_SESSION_LATE, NEW_SESSION_EARLY], NEW_SESSION_EARLY) == (0, None)
    assert candidates_ahead([MINE, OLD_SESSION_LATE, NEW_SESSION_EARLY], OLD_SESSION_LATE) == (
        1,
        NEW_SESSION_EARLY,
    )


def test_the_head_watches_nobody_in_the_queue() -> None:
    assert candidates_ahead([MINE], MINE) == (0, None)


def test_a_lost_create_reply_is_adopted_oldest_first() -> None:
    orphan_newer = "c-0000000000000b03-0000000012"
    children = [orphan_newer, OLD_SESSION_LATE, MINE]
    assert adopted_candidate(children, "c-0000000000000b03-") == MINE
    assert adopted_candidate(children, "c-0000000000000c04-") is None
