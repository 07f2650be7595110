#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# System sleep with the driver bound: hibernation (freeze, then thaw) and
# suspend-to-idle (suspend, then resume), VPMEM_CYCLES times each (default 5),
# under /sys/power/pm_test=devices: every device really goes through its
# callbacks, nothing is powered down.  Four threads fsync /dev/pmem0 through
# the cycles; every fsync must return 0 or EIO.  Afterwards flushes must reach
# the host again, and kmemleak must find nothing leaked.

. /tests/ktap_helpers.sh
. /tests/pmem_lib.sh

cycles=${VPMEM_CYCLES:-5}
dbg=$(ls -d /sys/kernel/debug/virtio_pmem_rust-* | head -1)
stat() { sed -n "s/^$1: //p" "$dbg/stats"; }
all_ok='^fsync.ok=[1-9][0-9]*.eio=0.other=0'

ktap_print_header
ktap_set_plan 7

echo devices > /sys/power/pm_test
for m in hibernate suspend; do
	echo 0 > /sys/module/$m/parameters/pm_test_delay
done

leak_mark
before=$(stat host_flushes)
/tests/fsync_hammer /dev/pmem0 4 200 > /tmp/hammer.out 2>&1
ktap_test_result "fsync works before sleeping" grep -q "$all_ok" /tmp/hammer.out

# The threads run across the cycles: they are frozen and thawed with user space.
/tests/fsync_hammer /dev/pmem0 4 $((cycles * 2 * 1000)) > /tmp/hammer.out 2>&1 &
pid=$!
failed=0
for c in $(seq "$cycles"); do
	for state in disk freeze; do
		if ! echo $state > /sys/power/state; then
			ktap_print_msg "cycle $c: echo $state > /sys/power/state failed"
			failed=$((failed + 1))
		fi
	done
done
hammer=0
wait $pid || hammer=1
ktap_print_msg "through $cycles x (hibernate, suspend-to-idle): $(cat /tmp/hammer.out)"
ktap_test_result "every sleep transition succeeded" [ $failed = 0 ]
ktap_test_result "fsync returned 0 or EIO throughout" [ $hammer = 0 ]
restores=$(stat restores)
ktap_test_result "the driver was frozen and restored $((cycles * 2)) times ($restores)" \
	[ "$restores" = $((cycles * 2)) ]

mid=$(stat host_flushes)
/tests/fsync_hammer /dev/pmem0 4 200 > /tmp/hammer.out 2>&1
after=$(stat host_flushes)
ktap_print_msg "after: $(cat /tmp/hammer.out); host flushes $before -> $mid -> $after"
ktap_test_result "fsync works after the last restore" grep -q "$all_ok" /tmp/hammer.out
ktap_test_result "flushes reach the host after the last restore" [ "$after" -gt "$mid" ]

echo none > /sys/power/pm_test
leaks=$(leak_count | tail -1)
ktap_test_result "no memory leaked (kmemleak: $leaks suspects)" [ "$leaks" = 0 ]
ktap_finished
