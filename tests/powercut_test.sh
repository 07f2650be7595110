#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# One segment of a power-cut run (scripts/powercut.py runs the segments, one
# QEMU each, and cuts the power during all but the last).
#
# Segment 0 makes the file systems: ext4 -o dax on /dev/pmem0 and ext4 with a
# journal, without DAX, on /dev/pmem1. Every later segment boots on the
# host's copy of the backing files as they stood after the last host flush
# before the cut, and checks, after the kernel's journal replay, that every
# record the previous segment acknowledged ("PC-ACK", printed only after its
# fsync, fdatasync or msync returned 0) is present and intact, and that
# e2fsck finds both file systems consistent. Then, except in the last
# segment, it prints "PC-GO" and writes records until the power is cut.
#
# $VPMEM_ARG: the segment number. Kernel command line: vpmem.pc_cuts=N (the
# last segment's number), vpmem.pc_acked=STREAM:N,... (the last record of
# each stream acknowledged before the cut).
#
# The upstream driver is held to the same checks, but a record it lost is a
# finding about it, not a failure of the run: its failures are reported as
# "XFAIL" (the runner counts them apart).

. /tests/ktap_helpers.sh
. /tests/pmem_lib.sh

seg=${VPMEM_ARG:-0}
cuts=0 acked=
for arg in $(cat /proc/cmdline); do
	case "$arg" in
	vpmem.pc_cuts=*) cuts=${arg#*=} ;;
	vpmem.pc_acked=*) acked=${arg#*=} ;;
	esac
done
dax=/mnt/dax journal=/mnt/journal
mkdir -p $dax $journal

mount_both() {
	mount -t ext4 -o dax /dev/pmem0 $dax && mount -t ext4 -o dax=never /dev/pmem1 $journal
}

# fs_clean DEV: e2fsck finds nothing to repair.
fs_clean() {
	/sbin/e2fsck -f -n "$1" > /tmp/fsck.out 2>&1 && return 0
	sed 's/^/# /' /tmp/fsck.out
	return 1
}

# intact STREAM: every acknowledged record of STREAM in the previous segment.
intact() {
	n=$(echo ",$acked," | sed -n "s/.*,$1:\([0-9]*\),.*/\1/p")
	dir=$dax
	[ "$1" = j ] && dir=$journal
	/tests/powercut verify $((seg - 1)) "$1" $dir "${n:--1}"
}

# The upstream driver's losses are findings (KTAP "XFAIL": an expected failure).
check() {
	desc=$1
	shift
	if "$@"; then
		ktap_test_pass "$desc"
	elif [ "$VPMEM_DRIVER" = c ]; then
		ktap_test_xfail "$desc (finding: fails under the upstream driver)"
	else
		ktap_test_fail "$desc"
	fi
}

ktap_print_header
wait_pmem
i=0
while [ ! -b /dev/pmem1 ] && [ $i -lt 100 ]; do
	sleep 0.1
	i=$((i + 1))
done
if [ "$seg" = 0 ]; then
	ktap_set_plan 2
	t "segment 0: ext4 made on both devices" sh -c \
		'/sbin/mke2fs -q -F -t ext4 /dev/pmem0 && /sbin/mke2fs -q -F -t ext4 /dev/pmem1'
	t "segment 0: both mounted (DAX, journal)" mount_both
else
	ktap_set_plan 9
	t "segment $seg: both file systems mount after the cut (journal replayed)" mount_both
	for s in a0 a1 b m j; do
		check "segment $seg: stream $s: every acknowledged record intact" intact $s
	done
	umount $dax
	umount $journal
	check "segment $seg: DAX file system consistent (e2fsck)" fs_clean /dev/pmem0
	check "segment $seg: journal file system consistent (e2fsck)" fs_clean /dev/pmem1
	t "segment $seg: both mount again, old records removed" sh -c \
		"mount -t ext4 -o dax /dev/pmem0 $dax && mount -t ext4 -o dax=never /dev/pmem1 $journal && rm -f $dax/seg* $journal/seg* && sync"
fi
if [ "$seg" -lt "$cuts" ]; then
	echo "PC-GO $seg"
	# Killed by the host before it stops by itself (30 s).
	/tests/powercut run "$seg" $dax $journal 30
	echo "PC-NOT-CUT $seg"
fi
umount $dax
umount $journal
ktap_finished
