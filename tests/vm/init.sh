#!/bin/busybox sh
# /init of the vm-test initramfs (packed by xtask/src/vm/initramfs.rs; see tests/vm/README.md).
#
# Runs as pid 1 inside a throw-away qemu VM on the kernel under test:
# mounts the pseudo file systems mamori needs, starts `/mamori capture`,
# execs a uniquely named probe, stops mamori with SIGINT and checks that the
# probe's execve is in the event stream. Everything is bounded in time; the
# host decides pass/fail from the MAMORI-VM-* markers printed here, and also
# kills qemu when it takes too long.
#
# Kernel command line knobs (read from /proc/cmdline, set by the host):
#   mamori.cgroup=v1|v2     cgroup layout to mount (v1: like EKS AL2, v2: like AL2023)
#   mamori.ready_timeout=N  seconds to wait for mamori's `attached` line (default 120)
#   mamori.require=LIST     checks that must pass, of exec,open,connect,symlink (default: all);
#                           the others are still run and reported as MAMORI-VM-CHECK

/bin/busybox mkdir -p /bin /sbin /usr/bin /usr/sbin
/bin/busybox --install -s
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
export LD_LIBRARY_PATH=/lib/x86_64-linux-gnu:/usr/lib/x86_64-linux-gnu:/lib64:/lib:/usr/lib

mkdir -p /proc /sys /dev /tmp /run
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /run
mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
mount -t tracefs tracefs /sys/kernel/tracing 2>/dev/null
mkdir -p /sys/fs/bpf
mount -t bpf bpf /sys/fs/bpf 2>/dev/null
# Loopback only: the VM has no network device at all.
ip link set lo up 2>/dev/null

echo "MAMORI-VM-INIT: uptime $(cut -d' ' -f1 /proc/uptime)s"

cmdline_param() {
    for word in $(cat /proc/cmdline); do
        case "$word" in
            "$1="*) echo "${word#*=}"; return ;;
        esac
    done
}

CGROUP=$(cmdline_param mamori.cgroup)
READY_TIMEOUT=$(cmdline_param mamori.ready_timeout)
[ -n "$READY_TIMEOUT" ] || READY_TIMEOUT=120
REQUIRE=$(cmdline_param mamori.require)
[ -n "$REQUIRE" ] || REQUIRE=exec,open,connect,symlink

if [ "$CGROUP" = v1 ]; then
    # Like EKS AL2: named v1 hierarchies under a tmpfs, no unified hierarchy.
    mount -t tmpfs -o mode=755 cgroup /sys/fs/cgroup
    for ctrl in cpu,cpuacct memory pids blkio devices freezer; do
        mkdir -p "/sys/fs/cgroup/$ctrl"
        mount -t cgroup -o "$ctrl" cgroup "/sys/fs/cgroup/$ctrl" 2>/dev/null ||
            rmdir "/sys/fs/cgroup/$ctrl"
    done
    mkdir -p /sys/fs/cgroup/systemd
    mount -t cgroup -o none,name=systemd cgroup /sys/fs/cgroup/systemd 2>/dev/null
else
    CGROUP=v2
    mount -t cgroup2 cgroup2 /sys/fs/cgroup 2>/dev/null
fi

finish() {
    echo "MAMORI-VM-RESULT: $1"
    sync
    poweroff -f
    # poweroff -f should not return; make sure pid 1 never exits (kernel panic).
    while :; do sleep 60; done
}

echo "MAMORI-VM-KERNEL: $(uname -r)"
echo "MAMORI-VM-CGROUP: $CGROUP ($(awk '$3 ~ /^cgroup/ {printf "%s:%s ", $3, $2}' /proc/mounts))"
if [ -r /sys/kernel/btf/vmlinux ]; then
    echo "MAMORI-VM-BTF: yes ($(wc -c </sys/kernel/btf/vmlinux) bytes)"
else
    echo "MAMORI-VM-BTF: no"
fi

if [ ! -x /mamori ]; then
    finish "FAIL /mamori missing from the initramfs"
fi

count_events() {
    if [ -f /events.jsonl ]; then wc -l </events.jsonl; else echo 0; fi
}

show_diagnostics() {
    echo "----- mamori stderr (full) -----"
    cat /mamori.err 2>/dev/null
    echo "----- first events (/events.jsonl, $(count_events) lines) -----"
    head -n 20 /events.jsonl 2>/dev/null
    echo "----- events mentioning the probe -----"
    grep -F "$MARK" /events.jsonl 2>/dev/null | head -n 5
    echo "----- dmesg (tail) -----"
    dmesg | tail -n 30
    echo "----- end of diagnostics -----"
}

MARK="vmprobe-$(cut -c1-8 /proc/sys/kernel/random/uuid)"
PORT=$((0x${MARK#vmprobe-} % 40000 + 20000))
echo "MAMORI-VM-MARK: $MARK (closed port $PORT)"

# The selectors read the events on stdin (schema: `mamori capture --json`).
sel_exec() { grep -F '"type":"execve"' | grep -F "\"$MARK\""; }
sel_open() { grep -E '"type":"(open|openat|openat2|creat)"' | grep -F "\"name\":\"/tmp/$MARK.open\""; }
sel_connect() { grep -F '"type":"connect"' | grep -F "\"rport\":$PORT" | grep -F '"rip":"127.0.0.1"'; }
# A table-driven syscall record (sysrec.rs): its two user-string parts.
sel_symlink() { grep -E '"type":"symlink(at)?"' | grep -F "\"linkpath\":\"/tmp/$MARK.link\"" | grep -F "\"target\":\"/tmp/$MARK\""; }
required_seen() {
    for c in exec open connect symlink; do
        case ",$REQUIRE," in
            *",$c,"*) "sel_$c" 2>/dev/null </events.jsonl | grep -q . || return 1 ;;
        esac
    done
}

start=$(cut -d. -f1 /proc/uptime)
# flow and dns are opt-in kinds: asked for here so their programs (and the
# syscall-exit byte counting these kernels need) go through this verifier.
/mamori capture --json --events exec,fork,exit,open,connect,net,fds,identity,inject,fileop,chdir,flow,dns \
    --output /events.jsonl </dev/null >/mamori.out 2>/mamori.err &
MAMORI_PID=$!

# Wait (bounded) for mamori to say its programs are attached.
ready=no
while :; do
    # (mamori may warn "optional probe ... not attached" before its ready line)
    if grep -v 'not attached' /mamori.err 2>/dev/null | grep -q attached; then ready=yes; break; fi
    if ! kill -0 "$MAMORI_PID" 2>/dev/null; then break; fi
    now=$(cut -d. -f1 /proc/uptime)
    [ $((now - start)) -ge "$READY_TIMEOUT" ] && break
    sleep 0.2
done
now=$(cut -d. -f1 /proc/uptime)
if [ "$ready" != yes ]; then
    if kill -0 "$MAMORI_PID" 2>/dev/null; then
        why="mamori printed no 'attached' line within ${READY_TIMEOUT}s"
        kill -KILL "$MAMORI_PID" 2>/dev/null
    else
        wait "$MAMORI_PID"
        why="mamori exited with status $? before attaching (verifier/load error?)"
    fi
    show_diagnostics
    finish "FAIL $why"
fi
echo "MAMORI-VM-ATTACHED: after $((now - start))s"
programs=$(grep -v 'not attached' /mamori.err | grep -m1 attached)
echo "MAMORI-VM-PROGRAMS: $programs"
case "$programs" in
    *fake-mamori*) ;;
    *mamori_sock_set_state*mamori_tcp_destroy_sock*) ;;
    *)
        show_diagnostics
        finish "FAIL the flow programs (mamori_sock_set_state, mamori_tcp_destroy_sock) did not attach"
        ;;
esac

# The probe: an execve whose filename and argv both carry the marker. It
# lives for a second so that even a /proc-polling stand-in can see it.
printf '#!/bin/sh\nsleep 1\n' >"/tmp/$MARK"
chmod 755 "/tmp/$MARK"
# It runs in a child cgroup of its own, so the event's cgroup id can be told
# from the root's (informational: under v2 the id is the directory's inode).
if [ "$CGROUP" = v2 ]; then PROBE_CG=/sys/fs/cgroup/vmprobe; else PROBE_CG=/sys/fs/cgroup/pids/vmprobe; fi
if mkdir -p "$PROBE_CG" 2>/dev/null; then
    echo "MAMORI-VM-PROBE-CGROUP: $PROBE_CG (inode $(stat -c %i "$PROBE_CG"))"
else
    PROBE_CG=
fi
(
    [ -n "$PROBE_CG" ] && echo 0 >"$PROBE_CG/cgroup.procs"
    exec "/tmp/$MARK" "$MARK" --vm-probe
)
# A second, plain one straight from busybox (argv carries the marker).
/bin/busybox true "$MARK"
# File opens: one created for writing, one missing (ENOENT).
/bin/busybox touch "/tmp/$MARK.open"
/bin/busybox cat "/tmp/$MARK.missing" 2>/dev/null
# A loopback connect to a closed port derived from the marker (ECONNREFUSED).
/bin/busybox nc -w 1 127.0.0.1 "$PORT" </dev/null >/dev/null 2>&1
# A symlink (symlink or symlinkat, as busybox makes it).
/bin/busybox ln -s "/tmp/$MARK" "/tmp/$MARK.link"
# Let the reader drain the ring buffer before we stop it: wait (at most 5 s)
# until the required events are in the file, which mamori flushes often.
i=0
while [ $i -lt 25 ] && ! required_seen; do
    sleep 0.2
    i=$((i + 1))
done

# Stop it: SIGINT first (what Ctrl-C sends). A background job of a
# non-interactive shell starts with SIGINT ignored unless the program installs
# its own handler, so escalate to SIGTERM (what systemd/kubelet send) and only
# then give up.
wait_exit() {
    i=0
    while [ $i -lt $(($1 * 5)) ]; do
        kill -0 "$MAMORI_PID" 2>/dev/null || return 0
        sleep 0.2
        i=$((i + 1))
    done
    return 1
}
stopped_by=SIGINT
kill -INT "$MAMORI_PID"
if ! wait_exit 10; then
    echo "MAMORI-VM-WARN: mamori still running 10s after SIGINT; sending SIGTERM"
    stopped_by=SIGTERM
    kill -TERM "$MAMORI_PID"
    if ! wait_exit 10; then
        kill -KILL "$MAMORI_PID" 2>/dev/null
        show_diagnostics
        finish "FAIL mamori did not exit within 10s of SIGINT nor of SIGTERM"
    fi
fi
wait "$MAMORI_PID"
status=$?
echo "MAMORI-VM-EXIT: mamori exited with status $status after $stopped_by"
echo "MAMORI-VM-EVENTS: $(count_events) lines"
echo "----- mamori stderr (first 40 lines) -----"
head -n 40 /mamori.err
echo "-----"

echo "MAMORI-VM-TYPES: $(sed -n 's/^{"ts":[0-9]*,"type":"\([a-z0-9_]*\)".*/\1/p' /events.jsonl 2>/dev/null |
    sort | uniq -c | awk '{printf "%s=%s ", $2, $1}')"

# The checks. Each prints MAMORI-VM-CHECK: <name> seen|missing and its event.
# type, result, the process's own argv and the fd object, for the log.
brief() {
    echo "$(echo "$1" | sed -n 's/^{"ts":[0-9]*,\("type":"[^"]*","res":-*[0-9]*\).*/\1/p')" \
        "$(echo "$1" | grep -o '"argv":\[[^]]*\]' | head -n 1)" \
        "$(echo "$1" | grep -o '"fd":{[^}]*}' | head -n 1)"
}
failed=
check() {
    line=$("sel_$1" 2>/dev/null </events.jsonl | head -n 1)
    if [ -n "$line" ]; then
        echo "MAMORI-VM-CHECK: $1 seen: $(brief "$line")"
    else
        case ",$REQUIRE," in
            *",$1,"*)
                echo "MAMORI-VM-CHECK: $1 MISSING (required)"
                failed="$failed $1"
                ;;
            *) echo "MAMORI-VM-CHECK: $1 missing (not required)" ;;
        esac
    fi
}
check exec
check open
check connect
check symlink

if [ -n "$failed" ]; then
    show_diagnostics
    finish "FAIL required event(s) not seen:$failed (marker $MARK, port $PORT)"
fi
if [ "$status" -ne 0 ] && [ "$status" -ne 130 ] && [ "$status" -ne 143 ]; then
    show_diagnostics
    finish "FAIL mamori saw the events but exited with status $status on $stopped_by"
fi
finish "PASS"
