#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# Soak: everything at once, for $VPMEM_ARG seconds (by hand: 600, below). Two
# devices: 4 threads write and fsync the raw /dev/pmem0, 4 threads write and
# fdatasync their files on ext4 -o dax on /dev/pmem1, without a pause, while
# phases of 4 s go round:
#   fail     the host's fsync fails for 1 s (libfiu in QEMU); the error sticks
#            until flush_error is cleared after the phase (ext4's writers
#            pause: a failed journal commit would take their file system
#            read-only, which is ext4's answer, not the driver's);
#   healthy  nothing else;
#   slow     every host flush takes 50 ms more (tests/host/slow_sync.c);
#   unbind   pmem0's device is unbound and bound again under its writers;
#   memory   a memory error is injected in pmem0 (mce-inject), found in its
#            bad blocks, read back as EIO and cleared by an overwrite.
# Checks: no fsync fails outside a fail or unbind phase of its own device;
# in each phase the driver saw at least as many flush requests as there were
# fsyncs on pmem0, and its counters are consistent (see consistent() below);
# nothing leaks (kmemleak); the file system is
# consistent at the end.

. /tests/ktap_helpers.sh
. /tests/pmem_lib.sh

# By hand: vpmem.soak_secs=600 on the kernel command line (VPMEM_CMDLINE).
secs=${VPMEM_ARG:-600}
for arg in $(cat /proc/cmdline); do
	case "$arg" in vpmem.soak_secs=*) secs=${arg#*=} ;; esac
done
mnt=/mnt/soak
drv=/sys/bus/virtio/drivers/virtio_pmem_rust
# mce-inject's software machine checks: inject(), start_of(), MiB.
io=/tests/poison_io
. /tests/badblocks_lib.sh

# The virtio device behind a pmem block device, e.g. virtio0.
virtio_of() {
	basename "$(readlink -f "/sys/block/$1/device/../../..")"
}
stats_of() {
	cat /sys/kernel/debug/virtio_pmem_rust-"$1"/stats 2>/dev/null
}
stat_in() {
	sed -n "s/^$2: //p" "$1"
}

host() {
	echo "VPMEM-HOST $*"
	sleep 0.3
}
host_fail() {
	host fiu "$1" posix/io/sync/fsync
	host fiu "$1" posix/io/sync/fdatasync
}

# consistent FILE: the counters of one stats snapshot add up: a flush is sent only for a
# request waiting for it, or again (resent); a request joins another's flush or not; a
# FUA bio is a request; a host failure answers a flush sent.
consistent() {
	req=$(stat_in "$1" requests) co=$(stat_in "$1" coalesced)
	sent=$(stat_in "$1" host_flushes) re=$(stat_in "$1" resent)
	failed=$(stat_in "$1" host_failures) fua=$(stat_in "$1" fua_bios)
	[ -n "$req" ] && [ "$sent" -le $((req + re)) ] && [ "$co" -le "$req" ] &&
		[ "$fua" -le "$req" ] && [ "$failed" -le "$sent" ]
}

# writers DEV_OR_DIR MS OUT: 4 threads for MS ms, their summary in OUT.
writers() {
	/tests/fsync_hammer "$1" 4 "$2" > "$3" 2>&1
}
field() {
	sed -n "s/.* $1=\([0-9]*\).*/\1/p" "$2" | head -1
}

ktap_print_header
ktap_set_plan 9
modprobe mce-inject
wait_pmem
i=0
while [ ! -b /dev/pmem1 ] && [ $i -lt 100 ]; do
	sleep 0.1
	i=$((i + 1))
done
dev0=$(virtio_of pmem0) dev1=$(virtio_of pmem1)
mkdir -p $mnt
/sbin/mke2fs -q -F -t ext4 -E lazy_itable_init=0,lazy_journal_init=0 /dev/pmem1
mount -t ext4 -o dax /dev/pmem1 $mnt || ktap_exit_fail_msg "no file system on pmem1"
leak_mark

bad=0 phases=0 fsyncs=0 eio_expected=0 counted_bad=0 requests_short=0
n_fail=0 n_healthy=0 n_slow=0 n_unbind=0 n_memory=0 memory_bad=0 unbind_bad=0 fail_bad=0
end=$(($(cut -d. -f1 /proc/uptime) + secs))
set -- fail healthy slow unbind memory
while [ "$(cut -d. -f1 /proc/uptime)" -lt $end ]; do
	phase=$1
	shift
	set -- "$@" "$phase"
	phases=$((phases + 1))
	stats_of "$dev0" > /tmp/s0.before
	[ "$phase" = fail ] && sync
	writers /dev/pmem0 4000 /tmp/w0 &
	w0=$!
	w1=
	echo paused > /tmp/w1
	if [ "$phase" != fail ]; then
		writers $mnt 4000 /tmp/w1 &
		w1=$!
	fi
	sleep 1
	case $phase in
	fail)
		host_fail enable
		sleep 1
		host_fail disable
		n_fail=$((n_fail + 1))
		;;
	healthy)
		n_healthy=$((n_healthy + 1))
		;;
	slow)
		host slow delay 50
		sleep 2
		host slow off
		n_slow=$((n_slow + 1))
		;;
	unbind)
		echo "$dev0" > $drv/unbind
		sleep 0.5
		echo "$dev0" > $drv/bind
		n_unbind=$((n_unbind + 1))
		;;
	memory)
		inject $(($(start_of pmem0) + 16 * MiB))
		sleep 0.3
		ok=1
		grep -qx '32768 8' /sys/block/pmem0/badblocks || ok=0
		/tests/poison_io read /dev/pmem0 $((16 * MiB)) 4096 direct | grep -q 'errno=EIO' ||
			ok=0
		/tests/poison_io write /dev/pmem0 $((16 * MiB)) 4096 direct > /dev/null 2>&1 || ok=0
		[ -z "$(cat /sys/block/pmem0/badblocks)" ] || ok=0
		[ $ok = 1 ] || {
			memory_bad=$((memory_bad + 1))
			ktap_print_msg "phase $phases (memory): bad blocks '$(cat /sys/block/pmem0/badblocks)'"
		}
		n_memory=$((n_memory + 1))
		;;
	esac
	wait $w0
	[ -n "$w1" ] && wait $w1
	stats_of "$dev0" > /tmp/s0.after
	ok0=$(field ok /tmp/w0) eio0=$(field eio /tmp/w0) other0=$(field other /tmp/w0)
	fsyncs=$((fsyncs + ok0 + eio0))
	if [ "$phase" = fail ]; then
		# The error sticks until cleared; the writers saw it.
		[ "$eio0" -gt 0 ] && [ "$(cat /sys/bus/virtio/devices/$dev0/flush_error)" = 1 ] ||
			fail_bad=$((fail_bad + 1))
		echo 0 > /sys/bus/virtio/devices/$dev0/flush_error
		echo 0 > /sys/bus/virtio/devices/$dev1/flush_error
		eio_expected=$((eio_expected + eio0))
	elif [ "$phase" = unbind ]; then
		eio_expected=$((eio_expected + eio0))
		wait_pmem && [ "$(field eio /tmp/w1)" = 0 ] || unbind_bad=$((unbind_bad + 1))
	elif [ "$eio0" != 0 ] || [ "$other0" != 0 ]; then
		bad=$((bad + 1))
		ktap_print_msg "phase $phases ($phase): pmem0: $(cat /tmp/w0)"
	fi
	if [ -n "$w1" ] && { [ "$(field eio /tmp/w1)" != 0 ] || [ "$(field other /tmp/w1)" != 0 ]; }; then
		bad=$((bad + 1))
		ktap_print_msg "phase $phases ($phase): pmem1: $(cat /tmp/w1)"
	fi
	for f in /tmp/s0.before /tmp/s0.after; do
		consistent $f || {
			counted_bad=$((counted_bad + 1))
			ktap_print_msg "phase $phases ($phase): counters do not add up: $(tr '\n' ' ' < $f)"
		}
	done
	# The same binding before and after: every fsync on pmem0 was a flush request.
	if [ "$phase" != unbind ]; then
		d=$(($(stat_in /tmp/s0.after requests) - $(stat_in /tmp/s0.before requests)))
		[ "$d" -ge $((ok0 + eio0)) ] || {
			requests_short=$((requests_short + 1))
			ktap_print_msg "phase $phases ($phase): $((ok0 + eio0)) fsyncs, $d requests"
		}
	fi
	echo "# phase $phases ($phase): pmem0 $(cat /tmp/w0); pmem1 $(cat /tmp/w1)"
done
host slow off
host_fail disable

ktap_print_msg "$phases phases in $secs s: $n_fail fail, $n_healthy healthy, $n_slow slow, $n_unbind unbind, $n_memory memory; $fsyncs fsyncs on pmem0, $eio_expected EIO where expected"
ktap_print_msg "pmem0 counters (this binding): $(stats_of "$dev0" | tr '\n' ' ')"
ktap_print_msg "pmem1 counters: $(stats_of "$dev1" | tr '\n' ' ')"
all_ran() {
	[ $n_fail -gt 0 ] && [ $n_healthy -gt 0 ] && [ $n_slow -gt 0 ] && [ $n_unbind -gt 0 ] &&
		[ $n_memory -gt 0 ]
}
t "every phase kind ran" all_ran
t "no fsync failed outside a host failure or unbind of its device" [ $bad = 0 ]
t "host failures became EIO, sticky until cleared" [ $fail_bad = 0 ]
t "unbinding pmem0 did not disturb pmem1, and pmem0 came back" [ $unbind_bad = 0 ]
t "memory errors were recorded, read as EIO and cleared" [ $memory_bad = 0 ]
t "every fsync on pmem0 reached the driver as a flush request" [ $requests_short = 0 ]
t "the counters add up in every snapshot" [ $counted_bad = 0 ]
umount $mnt
t "ext4 on pmem1 is consistent (e2fsck)" /sbin/e2fsck -f -n /dev/pmem1
leaks=$(leak_count)
ktap_print_msg "kmemleak: $leaks unreferenced objects"
t "kmemleak: nothing leaked" [ "$leaks" = 0 ]
ktap_finished
