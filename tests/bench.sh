#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# fsync benchmark of both drivers in the same boot: for each driver, 4 KiB
# overwrite + fdatasync on ext4 -o dax from 1, 8 and 16 threads
# (VPMEM_BENCH_SECS seconds each).  Host flushes are counted from the request
# queue's interrupts (one per completed flush) and, for virtio_pmem_rust,
# from its debugfs counters.  Each run is a test: every call must succeed.
#
# One thread is noisy under TCG (a single run of each driver differed by up to
# 35% either way), so a second phase alternates the drivers for
# VPMEM_BENCH_ROUNDS rounds (default 5) of one thread and reports each driver's
# median (BENCH1 lines).

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
rounds=${VPMEM_BENCH_ROUNDS:-5}
ktap_set_plan 10
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

# One thread, the drivers alternating, $rounds rounds.
: > /tmp/bench1
bad=0
for r in $(seq "$rounds"); do
	for drv in ${VPMEM_BENCH_ORDER:-c rust}; do
		case $drv in c) mod=virtio_pmem ;; rust) mod=virtio_pmem_rust ;; esac
		modprobe $mod && wait_pmem || bad=1
		mkfs.ext4 -q -F /dev/pmem0 && mount -o dax /dev/pmem0 /mnt || bad=1
		out=$(/tests/pmem_bench /mnt 1 "$secs") || bad=1
		echo "BENCH1 driver=$drv round=$r $out"
		echo "$drv $(echo "$out" | sed -n 's/.*ops_per_s=\([0-9]*\) p50_us=\([0-9]*\) p99_us=\([0-9]*\).*/\1 \2 \3/p')" >> /tmp/bench1
		umount /mnt
		unload $mod || bad=1
	done
done
# The median of column $2 for driver $1.
median() {
	awk -v d="$1" -v c="$2" '$1 == d { print $c }' /tmp/bench1 | sort -n |
		awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : int((v[NR / 2] + v[NR / 2 + 1]) / 2) }'
}
for drv in c rust; do
	echo "BENCH1 driver=$drv rounds=$rounds median_ops_per_s=$(median $drv 2) median_p50_us=$(median $drv 3) median_p99_us=$(median $drv 4)"
done
ktap_test_result "1 thread: $rounds alternating rounds, every fdatasync succeeded" [ $bad = 0 ]
n=$(wc -l < /tmp/bench1)
ktap_test_result "1 thread: $((rounds * 2)) results ($n)" [ "$n" = $((rounds * 2)) ]
ktap_print_msg "$(grep -E 'virtio' /proc/interrupts | tr -s ' ' | head -4)"
ktap_finished
