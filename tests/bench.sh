#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# fsync benchmark of both drivers in the same boot: for each driver, 4 KiB
# overwrite + fdatasync on ext4 -o dax from 1, 8 and 16 threads
# (VPMEM_BENCH_SECS seconds each).  Host flushes are counted from the request
# queue's interrupts (one per completed flush) and, for virtio_pmem_rust,
# from its debugfs counters.  Each run is a test: every call must succeed.

. /tests/ktap_helpers.sh
. /tests/pmem_lib.sh

secs=${VPMEM_BENCH_SECS:-3}
for arg in $(cat /proc/cmdline); do
	case "$arg" in vpmem.bench_order=*) VPMEM_BENCH_ORDER=$(echo "${arg#*=}" | tr , " ") ;; esac
done
irqs() {
	awk '/virtio[0-9]+(-flush_queue|-virtqueues)?$/ { for (i = 2; i <= NF; i++) if ($i ~ /^[0-9]+$/) s += $i } END { print s + 0 }' /proc/interrupts
}
stat() {
	cat /sys/kernel/debug/virtio_pmem_rust-*/stats 2>/dev/null | sed -n "s/^$1: //p"
}
# The C driver's module is pinned while its namespace is bound: unbind first.
unload() {
	for d in /sys/bus/virtio/drivers/$1/virtio*; do
		[ -e "$d" ] && echo "${d##*/}" > "/sys/bus/virtio/drivers/$1/unbind"
	done
	rmmod "$1"
	! grep -q "^$1 " /proc/modules
}

ktap_print_header
ktap_set_plan 8
for drv in ${VPMEM_BENCH_ORDER:-c rust}; do
	case $drv in c) mod=virtio_pmem ;; rust) mod=virtio_pmem_rust ;; esac
	modprobe $mod
	wait_pmem
	bound=0
	ls /sys/bus/virtio/drivers/$mod/ 2>/dev/null | grep -q '^virtio' && [ -b /dev/pmem0 ] && bound=1
	ktap_test_result "$drv: $mod drives /dev/pmem0" [ $bound = 1 ]
	mkfs.ext4 -q -F /dev/pmem0 && mount -o dax /dev/pmem0 /mnt
	for t in 1 8 16; do
		before=$(irqs) req0=$(stat requests) hf0=$(stat host_flushes)
		out=$(/tests/pmem_bench /mnt $t "$secs")
		rc=$?
		after=$(irqs) req1=$(stat requests) hf1=$(stat host_flushes)
		ops=$(echo "$out" | sed -n 's/.* ops=\([0-9]*\) .*/\1/p')
		extra=
		[ -n "$hf1" ] && extra=" driver_requests=$((req1 - req0)) driver_host_flushes=$((hf1 - hf0))"
		echo "BENCH driver=$drv $out irqs=$((after - before)) irqs_per_op=$(awk "BEGIN { printf \"%.3f\", ($after - $before) / (${ops:-0} + 1e-9) }")$extra"
		ktap_test_result "$drv: $t threads, every fdatasync succeeded" [ $rc = 0 ]
	done
	umount /mnt
	unload $mod || ktap_print_msg "cannot unload $mod"
done
ktap_print_msg "$(grep -E 'virtio' /proc/interrupts | tr -s ' ' | head -4)"
ktap_finished
