#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# Flush recovery against a host that is slow or hung (tests/host/slow_sync.c,
# preloaded into QEMU, driven by "VPMEM-HOST slow ...").  The driver is loaded
# with flush_timeout_ms=2000.
#  1. One host flush takes 6 s, three times the timeout: the driver resets
#     the device and sends the flush again.  Every fsync returns 0, and the
#     counters show the recovery and the resent flush.  The late answer to the
#     flush that was lost comes after the reset; it must not count.
#  2. The host hangs every flush while 4 threads fsync, and the driver is
#     unbound, then (hung again) its module removed, with the default timeout
#     (60 s): every waiter gets EIO
#     within 10 s (the stated bound while unbinding is 5 s without an answer,
#     plus a check interval and the teardown's grace period), unbind and rmmod
#     return, and releasing the host afterwards harms nothing: the next
#     binding flushes.
#  3. Hibernation (pm_test=devices) with the host hung and waiters blocked:
#     the waiters freeze, the device's freeze fails them with EIO, and after
#     the thaw and the host's release fsync works.
#  4. The guest powers off with the host hung and a waiter blocked, within
#     the stated bound: (max_resets + 1) * flush_timeout_ms.
# The lost flush's request is never given back (quarantined): no kmemleak scan.

. /tests/ktap_helpers.sh
. /tests/pmem_lib.sh

mod=virtio_pmem_rust
drv=/sys/bus/virtio/drivers/$mod
dbg() { ls -d /sys/kernel/debug/$mod-* | head -1; }
stat() { sed -n "s/^$1: //p" "$(dbg)/stats"; }
now_cs() { tr -d . < /proc/uptime | cut -d' ' -f1; }
all_ok='^fsync.ok=[1-9][0-9]*.eio=0.other=0.*slow=0'
all_eio='^fsync.ok=[0-9]*.eio=[1-9][0-9]*.other=0.*slow=0'
# max_ms FILE: the longest fsync fsync_hammer saw.
max_ms() { sed -n 's/.*max_ms=\([0-9]*\).*/\1/p' "$1"; }

ktap_print_header
ktap_set_plan 13

rmmod $mod
modprobe $mod flush_timeout_ms=2000
wait_pmem
dev=$(pmem_virtio_dev)

# 1. A host flush three times longer than the timeout.
echo "VPMEM-HOST slow once 6000"
sleep 1
rec0=$(stat recoveries) res0=$(stat resent)
/tests/fsync_hammer /dev/pmem0 4 9000 > /tmp/hammer.out 2>&1
rec=$(( $(stat recoveries) - rec0 )) res=$(( $(stat resent) - res0 ))
ktap_print_msg "one host flush of 6 s, timeout 2 s: $(cat /tmp/hammer.out)"
ktap_print_msg "recoveries $rec, flushes resent $res; stats: $(tr '\n' ' ' < "$(dbg)/stats")"
ktap_test_result "every fsync succeeds across the reset" grep -q "$all_ok" /tmp/hammer.out
ok=0
[ "$rec" -ge 1 ] && [ "$res" -ge 1 ] && ok=1
ktap_test_result "the device was reset and the flush resent" [ $ok = 1 ]
ktap_test_result "the stall ended at the timeout, not the host (under 5 s)" [ "$(max_ms /tmp/hammer.out)" -lt 5000 ]
sleep 5
/tests/fsync_hammer /dev/pmem0 2 1000 > /tmp/hammer.out 2>&1
ktap_test_result "the device works once the late answer came" grep -q "$all_ok" /tmp/hammer.out

# 2. A hung host, then unbind or rmmod under the waiters, with the default timeout
# (60 s): while unbinding, the driver waits 5 s at most.
rmmod $mod
modprobe $mod
wait_pmem
# hung_teardown WHAT: hangs the host, starts 4 fsync threads, runs WHAT (unbind or
# rmmod) and checks that the waiters and WHAT end within 10 s; then releases the
# host and binds again.
hung_teardown() {
	echo "VPMEM-HOST slow hang"
	sleep 1
	/tests/fsync_hammer /dev/pmem0 4 3000 > /tmp/hammer.out 2>&1 &
	pid=$!
	sleep 1
	t0=$(now_cs)
	if [ "$1" = rmmod ]; then
		rmmod $mod
	else
		echo "$dev" > "$drv/unbind"
	fi
	t1=$(( $(now_cs) - t0 ))
	wait $pid
	t2=$(( $(now_cs) - t0 ))
	ktap_print_msg "$1 with the host hung: took ${t1}0 ms, waiters done after ${t2}0 ms: $(cat /tmp/hammer.out)"
	ktap_test_result "$1 with a hung host: every waiter gets EIO" grep -q "$all_eio" /tmp/hammer.out
	ktap_test_result "$1 with a hung host: done within 10 s" [ "$t2" -lt 1000 ]
	echo "VPMEM-HOST slow off"
	sleep 2
	if [ "$1" = rmmod ]; then
		modprobe $mod
	else
		echo "$dev" > "$drv/bind"
	fi
	wait_pmem
	/tests/fsync_hammer /dev/pmem0 2 1000 > /tmp/hammer.out 2>&1
	ktap_print_msg "after the host was released and $1 undone: $(cat /tmp/hammer.out)"
	ktap_print_msg "stats: $(tr '\n' ' ' < "$(dbg)/stats")"
	ktap_test_result "$1: releasing the host harms nothing, the next binding flushes" \
		grep -q "$all_ok" /tmp/hammer.out
}
hung_teardown unbind
hung_teardown rmmod

# 3. Hibernation (freeze and thaw of every device, pm_test=devices) with the host
# hung and 4 threads waiting: the waiters must not keep the freezer from
# freezing them; the device's freeze quiesces its queue and fails them with EIO.
echo devices > /sys/power/pm_test
echo 0 > /sys/module/hibernate/parameters/pm_test_delay
echo "VPMEM-HOST slow hang"
sleep 1
/tests/fsync_hammer /dev/pmem0 4 2000 > /tmp/hammer.out 2>&1 &
pid=$!
sleep 1
t0=$(now_cs)
ok=0
echo disk > /sys/power/state && ok=1
t=$(( $(now_cs) - t0 ))
echo none > /sys/power/pm_test
# Threads still running after the thaw would fsync again on the hung host.
echo "VPMEM-HOST slow off"
wait $pid
eio=$(sed -n 's/.*eio=\([0-9]*\).*/\1/p' /tmp/hammer.out)
ktap_print_msg "hibernation with the host hung: ok=$ok, done after ${t}0 ms; $(cat /tmp/hammer.out)"
[ "$t" -lt 1000 ] || ok=0
ktap_test_result "freeze with a hung host: the system froze and thawed within 10 s" [ $ok = 1 ]
ktap_test_result "freeze with a hung host: each of the 4 waiters got EIO ($eio)" [ "${eio:-0}" -ge 4 ]
sleep 2
/tests/fsync_hammer /dev/pmem0 2 1000 > /tmp/hammer.out 2>&1
ktap_test_result "after the thaw and the host's release, fsync works" grep -q "$all_ok" /tmp/hammer.out

# 4. Power off with the host hung and a waiter blocked: the guest must power off
# (the runner releases the host once it has; the boot's clean end and its
# duration are judged by the runner). Power off syncs first, which waits for the
# hung host like any flush: up to (max_resets + 1) * flush_timeout_ms, then EIO.
# With 2 resets of 2 s here, about 10 s.
rmmod $mod
modprobe $mod flush_timeout_ms=2000 max_resets=2
wait_pmem
echo "VPMEM-HOST slow hang"
sleep 1
/tests/fsync_hammer /dev/pmem0 2 2000 > /dev/null 2>&1 &
sleep 1
ktap_finished
