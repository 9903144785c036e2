#!/bin/sh
# The false-positive measurement of rules/README.md: record workload.sh
# (root; loads the eBPF programs, so take the e2e lock on shared machines)
# with `mamori capture --json --pid`, its container part inside a fake pod
# container (a cgroup named as kubelet + containerd name one), then replay
# the recording against the shipped rules. Prints the events recorded and
# every alert: each is a false positive.
# The workload's scratch directory is outside /tmp, as an image's files are
# (/srv/mamori-fp-work by default, removed at the end).
#   usage: rules/benign/measure.sh MAMORI_BINARY [OUT_DIR [WORK_DIR]]
set -eu
MAMORI=$1
OUT=${2:-/tmp/mamori-fp}
WORK=${3:-/srv/mamori-fp-work}
HERE=$(cd "$(dirname "$0")" && pwd)
rm -rf "$OUT" "$WORK" && mkdir -p "$OUT" "$WORK"

# A fake pod container, as tests/common/container.rs makes one.
ID=$(printf 'f0f0%060d' 0 | tr 0 e)
UID_=f0f0f0f0_eeee_4fff_8aaa_bbbbbbbbbbbb
if [ -f /sys/fs/cgroup/unified/cgroup.controllers ]; then V2=/sys/fs/cgroup/unified
elif [ -f /sys/fs/cgroup/cgroup.controllers ]; then V2=/sys/fs/cgroup; else V2=; fi
PROCS=
DIRS=
if [ -n "$V2" ]; then
    D="$V2/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod$UID_.slice/cri-containerd-$ID.scope"
    mkdir -p "$D"; DIRS="$D"; PROCS="$D/cgroup.procs"
fi
if [ -f /sys/fs/cgroup/pids/cgroup.procs ] && [ "$V2" != /sys/fs/cgroup ]; then
    D="/sys/fs/cgroup/pids/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod$UID_.slice/cri-containerd-$ID.scope"
    mkdir -p "$D"; DIRS="$DIRS $D"; PROCS="$D/cgroup.procs $PROCS"
fi

# The workload waits on a fifo until the capture is attached.
mkfifo "$OUT/go"
sh -c 'read _ < "$0"; exec sh "$1" "$2" "$3"' "$OUT/go" "$HERE/workload.sh" "$WORK" "$PROCS" &
WPID=$!
"$MAMORI" capture --json --pid "$WPID" -o "$OUT/events.jsonl" 2> "$OUT/capture.log" &
CPID=$!
until grep -qi attached "$OUT/capture.log" 2>/dev/null; do sleep 0.2; done
START=$(date +%s)
echo go > "$OUT/go"
wait "$WPID" || true
sleep 2
kill -INT "$CPID"; wait "$CPID" || true
echo "workload: $(( $(date +%s) - START )) s, $(wc -l < "$OUT/events.jsonl") events; $(tail -1 "$OUT/capture.log")"
rm -rf "$WORK"
for d in $DIRS; do rmdir "$d" "$(dirname "$d")" "$(dirname "$(dirname "$d")")" "$(dirname "$(dirname "$(dirname "$d")")")" 2>/dev/null || true; done
"$MAMORI" replay "$OUT/events.jsonl" --rules "$HERE/.." > "$OUT/alerts.jsonl"
echo "alerts: $(wc -l < "$OUT/alerts.jsonl")"
python3 -c 'import json,sys,collections
c=collections.Counter(json.loads(l)["rule"] for l in open(sys.argv[1]))
[print(f"  {n:4d}  {r}") for r,n in c.most_common()]' "$OUT/alerts.jsonl"
