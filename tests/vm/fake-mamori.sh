#!/bin/sh
# Stand-in for `mamori capture --json --output FILE`, used only to self-test
# the vm-test plumbing (initramfs, boot, markers, timeouts) without the real
# sensor: `MAMORI_VM_BINARY=tests/vm/fake-mamori.sh MAMORI_VM_REQUIRE=exec cargo xtask vm-test`.
# It does not use eBPF: it polls /proc for the probe's command line and writes
# a look-alike execve event for it. A PASS with it proves nothing about mamori.
out=/dev/stdout
while [ $# -gt 0 ]; do
    case "$1" in
        --output) out=$2; shift ;;
    esac
    shift
done
: >"$out"
stop=0
trap 'stop=1' INT TERM
echo "fake-mamori: attached (stand-in polling /proc, no eBPF)" >&2
while [ "$stop" = 0 ]; do
    for f in $(grep -l vmprobe- /proc/[0-9]*/cmdline 2>/dev/null); do
        argv=$(tr '\0' '\n' <"$f" 2>/dev/null | sed 's/.*/"&"/' | paste -s -d, -)
        case "$argv" in "" | *grep*) continue ;; esac
        grep -qF "$argv" "$out" ||
            echo "{\"ts\":0,\"type\":\"execve\",\"res\":0,\"fake\":true,\"proc\":{\"argv\":[$argv]}}" >>"$out"
    done
    sleep 0.1
done
echo "fake-mamori: stopping" >&2
exit 0
