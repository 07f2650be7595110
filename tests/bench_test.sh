#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# The benchmark matrix of `make bench` (scripts/bench.sh), run in one boot
# against one backing file: both drivers, from the same kernel build, in
# turn, for vpmem.bench_reps repetitions; the driver that goes first
# alternates between repetitions, so that drift of the machine cancels.
#
# For each driver and repetition, every workload at every thread count
# (vpmem.bench_threads, default 1,2,4,8,16) for vpmem.bench_secs seconds:
#   dax         pmem_bench: 4 KiB overwrite + fdatasync on ext4 -o dax;
#   fio-psync   fio, the same with --ioengine=psync --fdatasync=1;
#   fio-mmap    fio, --ioengine=mmap --fdatasync=1 (its sync is msync);
#   msync       pmem_bench: dirty a page of a DAX mapping, msync(MS_SYNC);
#   raw         pmem_bench: O_DIRECT 4 KiB write + fdatasync on /dev/pmem0;
#   journal     pmem_bench: 4 KiB append + fdatasync on ext4 without DAX,
#               which commits the journal with a FUA write.
# Each point is framed by "VPMEM-HOST mark" lines, at which the host counts
# its flushes of the backing file (scripts/bench_host.py), and printed as a
# BENCHPT line (fio's points also as BENCHFIO with fio's JSON report); for
# our driver with its counters' changes (requests, host flushes, and the
# callers woken by an answer with their total time from answer to running).
# Then, per driver and repetition, the cost of the driver:
#   BENCHALLOC  slab allocations (SLUB statistics) per flush of the raw
#               device, less those of an idle period of the same length;
#   BENCHMEM    memory taken by binding one device: slab objects, vmalloc
#               and per-CPU memory, between unbound and bound.
# Every run must succeed: each is a KTAP test.

. /tests/ktap_helpers.sh
. /tests/pmem_lib.sh

reps=3 secs=3 threads="1 2 4 8 16" backing=file
workloads="dax fio-psync fio-mmap msync raw journal"
for arg in $(cat /proc/cmdline); do
	case "$arg" in
	vpmem.bench_reps=*) reps=${arg#*=} ;;
	vpmem.bench_secs=*) secs=${arg#*=} ;;
	vpmem.bench_threads=*) threads=$(echo "${arg#*=}" | tr , " ") ;;
	vpmem.bench_workloads=*) workloads=$(echo "${arg#*=}" | tr , " ") ;;
	vpmem.bench_backing=*) backing=${arg#*=} ;;
	esac
done

# Interrupts of virtio devices so far.
irqs() {
	awk '/virtio[0-9]+(-[a-z_]+)?$/ { for (i = 2; i <= NF; i++) if ($i ~ /^[0-9]+$/) s += $i } END { print s + 0 }' /proc/interrupts
}

# Busy and total jiffies of all CPUs so far.
cpu() {
	awk '$1 == "cpu" { print $2 + $3 + $4 + $7 + $8 + $9, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9 }' /proc/stat
}

# Counter $1 of our driver's debugfs statistics (empty for the C driver).
stat() {
	cat /sys/kernel/debug/virtio_pmem_rust-*/stats 2>/dev/null | sed -n "s/^$1: //p"
}

# Whether the slab allocator keeps statistics (CONFIG_SLUB_STATS: the bench kernel).
slab_stats() {
	[ -e /sys/kernel/slab/kmalloc-64/alloc_fastpath ]
}

# Bytes in slab objects now (allocated less freed, times the object size), over all
# caches (aliases counted once).
slab_bytes() {
	bytes=0
	for d in /sys/kernel/slab/*; do
		[ -L "$d" ] && continue
		read -r a _ < "$d/alloc_fastpath"
		read -r b _ < "$d/alloc_slowpath"
		read -r c _ < "$d/free_fastpath"
		read -r e _ < "$d/free_slowpath"
		read -r o < "$d/object_size"
		bytes=$((bytes + (a + b - c - e) * o))
	done
	echo "$bytes"
}

# Each cache's allocations so far, "name count" per line.
slab_snapshot() {
	for d in /sys/kernel/slab/*; do
		[ -L "$d" ] && continue
		read -r a _ < "$d/alloc_fastpath"
		read -r b _ < "$d/alloc_slowpath"
		echo "${d##*/} $((a + b))"
	done
}

# slab_delta OLD NEW: the allocations between two snapshots.
slab_delta() {
	awk 'NR == FNR { a[$1] = $2; next } { s += $2 - a[$1] } END { print s }' "$1" "$2"
}

# slab_busy OLD NEW N: the caches with at least N/2 allocations between two snapshots.
slab_busy() {
	awk -v n="$3" 'NR == FNR { a[$1] = $2; next }
		$2 - a[$1] >= n / 2 { printf "%s%s:%d", sep, $1, $2 - a[$1]; sep = "," }' "$1" "$2"
}

# Bytes of vmalloc and per-CPU memory now.
other_bytes() {
	awk '$1 == "VmallocUsed:" || $1 == "Percpu:" { s += $2 * 1024 } END { print s }' /proc/meminfo
}

mark() {
	echo "VPMEM-HOST mark $1"
	sleep 0.3
}

# The C driver's module is pinned while its namespace is bound: unbind first.
unload() {
	for d in /sys/bus/virtio/drivers/$1/virtio*; do
		[ -e "$d" ] && echo "${d##*/}" > "/sys/bus/virtio/drivers/$1/unbind"
	done
	rmmod "$1"
	! grep -q "^$1 " /proc/modules
}

# prepare WORKLOAD: the file system (or none) the workload runs on.
prepare() {
	case $1 in
	raw) return 0 ;;
	journal) mkfs.ext4 -q -F /dev/pmem0 && mount /dev/pmem0 /mnt ;;
	*) mkfs.ext4 -q -F /dev/pmem0 && mount -o dax /dev/pmem0 /mnt ;;
	esac
}

# run WORKLOAD THREADS ID: one point; prints its result line, returns its status.
run() {
	case $1 in
	fio-*)
		engine=${1#fio-}
		fio --name="$1" --directory=/mnt --ioengine="$engine" --rw=write --bs=4k \
			--filesize=4k --fallocate=none --fdatasync=1 --numjobs="$2" \
			--time_based --runtime="$secs" --group_reporting \
			--output-format=json --output=/tmp/fio.json > /tmp/fio.err 2>&1
		rc=$?
		[ -s /tmp/fio.err ] && sed 's/^/# fio: /' /tmp/fio.err | head -5
		echo "BENCHFIO id=$3 $(tr -d '\n' < /tmp/fio.json)"
		return $rc ;;
	dax) /tests/pmem_bench -m file /mnt "$2" "$secs" ;;
	msync) /tests/pmem_bench -m msync /mnt "$2" "$secs" ;;
	raw) /tests/pmem_bench -m raw /dev/pmem0 "$2" "$secs" ;;
	journal) /tests/pmem_bench -m append /mnt "$2" "$secs" ;;
	*) echo "# unknown workload $1"; return 2 ;;
	esac
}

npoints=$(( $(echo $workloads | wc -w) * $(echo $threads | wc -w) ))
ktap_print_header
ktap_set_plan $((reps * 2 * (npoints + 3)))
for rep in $(seq "$reps"); do
	order="c rust"
	[ $((rep % 2)) = 0 ] && order="rust c"
	for drv in $order; do
		case $drv in c) mod=virtio_pmem ;; rust) mod=virtio_pmem_rust ;; esac
		modprobe $mod && wait_pmem
		t "r$rep $drv: $mod drives /dev/pmem0" wait_pmem
		for wl in $workloads; do
			prepare "$wl" || ktap_print_msg "cannot prepare $wl"
			for n in $threads; do
				id=r$rep.$drv.$wl.$n
				i0=$(irqs) req0=$(stat requests) hf0=$(stat host_flushes)
				w0=$(stat wakeups) wu0=$(stat wake_us_total)
				mark "$id.start"
				c0=$(cpu)
				out=$(run "$wl" "$n" "$id")
				rc=$?
				c1=$(cpu)
				mark "$id.end"
				i1=$(irqs) req1=$(stat requests) hf1=$(stat host_flushes)
				w1=$(stat wakeups) wu1=$(stat wake_us_total)
				[ "$wl" = "${wl#fio-}" ] || { echo "$out"; out=; }
				busy=$(echo "$c0 $c1" | awk '{ printf "%.1f", 100 * ($3 - $1) / ($4 - $2 + 1e-9) }')
				extra=
				[ -n "$hf1" ] && extra=" drv_requests=$((req1 - req0)) drv_host_flushes=$((hf1 - hf0)) drv_wakeups=$((w1 - w0)) drv_wake_us=$((wu1 - wu0))"
				echo "BENCHPT id=$id backing=$backing workload=$wl driver=$drv threads=$n rep=$rep $out irqs=$((i1 - i0)) cpu_busy=$busy$extra"
				t "r$rep $drv: $wl, $n threads, every call succeeded" [ $rc = 0 ]
			done
			[ "$wl" = raw ] || umount /mnt
		done

		# Allocations per flush: the raw device's flushes against an idle period.
		# Without slab statistics (the debug kernel of make test) they are not counted.
		# The caches that allocate about once a flush or more are named.
		slab_stats && slab_snapshot > /tmp/slab0
		sleep "$secs"
		slab_stats && slab_snapshot > /tmp/slab1
		out=$(/tests/pmem_bench -m flush /dev/pmem0 1 "$secs")
		rc=$?
		ops=$(echo "$out" | sed -n 's/.* ops=\([0-9]*\) .*/\1/p')
		if slab_stats; then
			slab_snapshot > /tmp/slab2
			echo "BENCHALLOC backing=$backing driver=$drv rep=$rep flushes=$ops allocs=$(slab_delta /tmp/slab1 /tmp/slab2) idle_allocs=$(slab_delta /tmp/slab0 /tmp/slab1) caches=$(slab_busy /tmp/slab1 /tmp/slab2 "${ops:-0}")"
		else
			ktap_print_msg "no slab statistics (CONFIG_SLUB_STATS): allocations not counted"
		fi
		t "r$rep $drv: $ops flushes of the raw device succeeded" [ $rc = 0 ]

		# Memory per device: unbound, then bound again.
		dev=$(pmem_virtio_dev)
		echo "$dev" > /sys/bus/virtio/drivers/$mod/unbind
		sleep 1
		slab_stats && m0=$(($(slab_bytes) + $(other_bytes)))
		echo "$dev" > /sys/bus/virtio/drivers/$mod/bind
		wait_pmem
		sleep 1
		slab_stats && m1=$(($(slab_bytes) + $(other_bytes))) &&
			echo "BENCHMEM backing=$backing driver=$drv rep=$rep bytes=$((m1 - m0))"
		unload $mod
		t "r$rep $drv: unbound and unloaded" [ $? = 0 ]
	done
done
ktap_finished
