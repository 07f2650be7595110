#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# A host that stays slow: every fsync of the backing file takes 200 ms more
# (tests/host/slow_sync.c, preloaded into QEMU, on "VPMEM-HOST slow delay
# 200").  16 threads fsync for 5 s: every fsync must succeed, and group
# commit must answer them with far fewer host flushes than fsyncs: each host
# flush is held back until the callers the one before answered are back, so
# all 16 share one flush instead of taking turns in two groups (one flush per
# 8 fsyncs, 12%, without the hold).

. /tests/ktap_helpers.sh
. /tests/pmem_lib.sh

dbg=$(ls -d /sys/kernel/debug/virtio_pmem_rust-* | head -1)
stat() { sed -n "s/^$1: //p" "$dbg/stats"; }
all_ok='^fsync.ok=[1-9][0-9]*.eio=0.other=0.*slow=0'

ktap_print_header
ktap_set_plan 5

echo "VPMEM-HOST slow delay 200"
sleep 1
req0=$(stat requests) host0=$(stat host_flushes) held0=$(stat held)
/tests/fsync_hammer /dev/pmem0 16 5000 > /tmp/hammer.out 2>&1
req=$(( $(stat requests) - req0 )) host=$(( $(stat host_flushes) - host0 ))
held=$(( $(stat held) - held0 ))
max=$(stat max_latency_us)
echo "VPMEM-HOST slow off"
sleep 1
ktap_print_msg "16 threads, host flush +200 ms: $(cat /tmp/hammer.out)"
ktap_print_msg "flush requests $req, host flushes $host ($((host * 100 / (req + 1)))%), longest host flush ${max} us, flushes held $held"
ktap_test_result "every fsync succeeds on a slow host" grep -q "$all_ok" /tmp/hammer.out
ktap_test_result "the host really was slow (longest flush over 200 ms)" [ "$max" -ge 200000 ]
ktap_test_result "host flushes are under a fifth of the requests" [ $((host * 5)) -lt "$req" ]
ktap_test_result "all 16 callers share each flush (host flushes under a tenth of the requests, flushes held)" \
	[ $((host * 10)) -lt "$req" -a "$held" -gt 0 ]
/tests/fsync_hammer /dev/pmem0 1 200 > /tmp/hammer.out 2>&1
ktap_test_result "fsync works once the host is fast again" grep -q '^fsync.ok=[1-9][0-9]*.eio=0.other=0' /tmp/hammer.out
ktap_finished
