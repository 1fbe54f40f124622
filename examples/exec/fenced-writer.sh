#!/bin/sh
# A leader's command that fences its own resource with ELECTION_EPOCH: every second it appends one
# line to "$FENCED_DIR/journal.txt", each append under `election fence`, so that once a newer leader
# has written there, this (older) one cannot, even if it was frozen past its session and woke up
# still running. See README.md here.
#
#   election run --zk-servers=... -- examples/exec/fenced-writer.sh
#
# Settings (environment):
#   FENCED_DIR       the shared directory (required; it must exist)
#   ELECTION_EPOCH   this term's fencing token (election run --exec sets it)
#   ELECTION_BIN     the election command (default: election on PATH)
#   FENCED_INTERVAL  seconds between writes (default 1)
#   FENCED_COUNT     stop after this many writes, 0: never (default 0)
#
# Exit status: 0 (stopped by SIGTERM or done), 3 (fenced out: a newer epoch has written; election
# run then resigns, which is right: this replica is no longer the one that should write), else the
# status of `election fence` (1: the fence could not be taken, 2: bad settings).
set -eu

dir=${FENCED_DIR:?set FENCED_DIR to the shared directory to write into}
epoch=${ELECTION_EPOCH:?run me with election run --exec, which sets ELECTION_EPOCH}
election=${ELECTION_BIN:-election}
interval=${FENCED_INTERVAL:-1}
count=${FENCED_COUNT:-0}

# SIGTERM reaches the whole process group (election run stops the group), so a `sleep` in progress
# ends too and the trap runs at once.
trap 'echo "fenced-writer: epoch $epoch stopped"; exit 0' TERM INT

n=0
while :; do
    n=$((n + 1))
    line="epoch $epoch write $n by ${ELECTION_IDENTITY:-unknown} (pid $$)"
    # The command form: the append runs while the fence lock is held, so no newer epoch's writer can
    # interleave with it; `election fence ... && append` would leave a gap between check and write.
    status=0
    "$election" fence --dir "$dir" --epoch "$epoch" -- \
        sh -c 'printf "%s\n" "$1" >>"$2/journal.txt"' sh "$line" "$dir" || status=$?
    case $status in
        0) echo "fenced-writer: $line" ;;
        3) echo "fenced-writer: epoch $epoch is fenced out of $dir: a newer leader has written" >&2
           exit 3 ;;
        *) exit "$status" ;;
    esac
    if [ "$count" -gt 0 ] && [ "$n" -ge "$count" ]; then
        exit 0
    fi
    sleep "$interval"
done
