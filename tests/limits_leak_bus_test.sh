#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# A leaked nvdimm bus handle must not outlive the binding: the limits test
# module (tests/modules), loaded with leak_bus=1, registers a bus with a
# region over the device's memory and forgets the handle (mem::forget, which
# safe code may do).  Unloading the module must still remove the bus and its
# region, or the region's flush callback would point into the unloaded module:
# a flush then (sysfs deep_flush) would run freed code.

. /tests/ktap_helpers.sh
. /tests/pmem_lib.sh

mod=rust_virtio_limits
buses() { ls /sys/bus/nd/devices/ 2>/dev/null | grep -c '^ndbus'; }

ktap_print_header
ktap_set_plan 4

modprobe $mod leak_bus=1
wait_pmem
n=$(buses)
ktap_test_result "the module registered a bus ($n) with a pmem device" \
	[ "$n" = 1 ] && [ -b /dev/pmem0 ]
rmmod $mod
gone=0
grep -q "^$mod " /proc/modules || gone=1
ktap_test_result "the module unloads" [ $gone = 1 ]
n=$(buses)
ktap_test_result "the leaked bus went away with the binding ($n left)" [ "$n" = 0 ]
# Where the bus survived, this runs the flush callback of the unloaded module.
for r in /sys/bus/nd/devices/region*/deep_flush; do
	[ -e "$r" ] && echo 1 > "$r"
done
ktap_test_result "no flush reaches the unloaded module" [ ! -b /dev/pmem0 ]
ktap_finished
