#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# The host's flush fails (libfiu makes QEMU's fsync fail, see
# scripts/run-tests.sh): fsync must fail with EIO, and keep failing after the
# host recovers, until the administrator clears the error in sysfs
# (/sys/bus/virtio/devices/<dev>/flush_error).

. /tests/ktap_helpers.sh
. /tests/pmem_lib.sh

attr=/sys/bus/virtio/devices/$(pmem_virtio_dev)/flush_error
dbg=$(ls -d /sys/kernel/debug/virtio_pmem_rust-* | head -1)
host() {
	echo "VPMEM-HOST fiu $1 posix/io/sync/fsync"
	echo "VPMEM-HOST fiu $1 posix/io/sync/fdatasync"
	sleep 1
}
# One thread writing and fsyncing /dev/pmem0 for 100 ms; results in /tmp/syncs.out.
# (ktap_test_result splits its command on spaces: patterns use '.' for them.)
syncs() {
	/tests/fsync_hammer /dev/pmem0 1 100 > /tmp/syncs.out 2>&1
	cat /tmp/syncs.out
}
all_ok='^fsync.ok=[1-9][0-9]*.eio=0.other=0'
all_eio='^fsync.ok=0.eio=[1-9][0-9]*.other=0'


ktap_print_header
ktap_set_plan 9

r=$(syncs); ktap_print_msg "healthy host: $r"
ktap_test_result "fsync succeeds while the host is healthy" grep -q "$all_ok" /tmp/syncs.out

host enable
r=$(syncs); ktap_print_msg "failing host: $r"
ktap_test_result "a host flush failure becomes EIO" grep -q "$all_eio" /tmp/syncs.out

host disable
r=$(syncs); ktap_print_msg "recovered host: $r"
ktap_test_result "the failure sticks after the host recovers" grep -q "$all_eio" /tmp/syncs.out

cat "$dbg/stats" > /tmp/stats
ktap_print_msg "stats: $(tr '\n' ' ' < /tmp/stats)"
counted=0
grep -q '^host_failures:.[1-9]' /tmp/stats && grep -q '^sticky_error:.1' /tmp/stats && counted=1
ktap_test_result "debugfs counts the host failure and shows the sticky state" [ $counted = 1 ]
ktap_test_result "sysfs flush_error reads 1 while the failure sticks" grep -qx 1 "$attr"

refused=0
echo 2 > "$attr" 2>/dev/null || refused=1
grep -qx 1 "$attr" || refused=0
ktap_test_result "flush_error refuses other values, and the failure still sticks" [ $refused = 1 ]

echo 0 > "$attr"
r=$(syncs); ktap_print_msg "after clearing flush_error: $r"
ktap_test_result "clearing flush_error lets flushes through again" grep -q "$all_ok" /tmp/syncs.out

ktap_test_result "flush_error reads 0 once cleared" grep -qx 0 "$attr"
ktap_test_result "sticky state cleared in debugfs" grep -q '^sticky_error:.0' "$dbg/stats"
ktap_finished
