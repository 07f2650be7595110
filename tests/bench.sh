#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# fsync benchmark of both drivers in the same boot: for each driver, 4 KiB
# overwrite + fdatasync on ext4 -o dax from 1, 8 and 16 threads
# (VPMEM_BENCH_SECS seconds each).  Host flushes are counted from the request
# queue's interrupts.  Each run is a test: every call must succeed.

. /tests/ktap_helpers.sh

secs=${VPMEM_BENCH_SECS:-3}
flush_irqs() {
	awk '/flush_queue/ { for (i = 2; i <= NF; i++) if ($i ~ /^[0-9]+$/) s += $i } END { print s + 0 }' /proc/interrupts
}

ktap_print_header
ktap_set_plan 6
for drv in c rust; do
	case $drv in c) mod=virtio_pmem ;; rust) mod=virtio_pmem_rust ;; esac
	modprobe $mod
	i=0
	while [ ! -b /dev/pmem0 ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i + 1)); done
	mkfs.ext4 -q -F /dev/pmem0 && mount -o dax /dev/pmem0 /mnt
	for t in 1 8 16; do
		before=$(flush_irqs)
		out=$(/tests/pmem_bench /mnt $t "$secs")
		rc=$?
		after=$(flush_irqs)
		ops=$(echo "$out" | sed -n 's/.* ops=\([0-9]*\) .*/\1/p')
		echo "BENCH driver=$drv $out host_flushes=$((after - before)) flushes_per_op=$(awk "BEGIN { printf \"%.3f\", ($after - $before) / (${ops:-0} + 1e-9) }")"
		ktap_test_result "$drv: $t threads, every fdatasync succeeded" [ $rc = 0 ]
	done
	umount /mnt
	rmmod $mod
done
ktap_finished
