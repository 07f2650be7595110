#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# ext4 without DAX (page cache, jbd2 journal) on a virtio-pmem device: every
# fsync commits the journal with a REQ_PREFLUSH | REQ_FUA write, so the pmem
# driver hands the region's flush callback a bio to complete after the flush
# (the NVDIMM_FLUSH_ASYNC path), besides the synchronous flush of the
# preflush.  Files written and fsynced this way read back after a remount, and
# e2fsck finds the file system clean.  With virtio_pmem_rust bound, its
# debugfs counters must show the FUA bios, all answered by host flushes (these
# two checks skip under another driver or without debugfs).
#
# Destroys the data on the device: it makes a new file system there.
# Environment: VPMEM_DEV=/dev/pmemN, the device to test (default: the first
# virtio-pmem device's); VPMEM_FILES, files to write (default 24).

here=$(dirname "$0")
. "$here/../../../kselftest/ktap_helpers.sh"
. "$here/pmem_lib.sh"

mnt=/mnt/journal
files=${VPMEM_FILES:-24}

vpmem_need mke2fs e2fsck md5sum
vpmem_require
dev=/dev/$VPMEM_BLK
stats=/sys/kernel/debug/virtio_pmem_rust-$VPMEM_VDEV/stats

# A counter of the Rust driver's debugfs stats.
stat() {
	sed -n "s/^$1: //p" "$stats" | head -1
}

# Checks (ktap_test_result splits its command on spaces, so each is a function).
mounted_no_dax() {
	grep -q "^$dev $mnt ext4 .*dax=never" /proc/mounts
}
bios_seen() {
	[ "$bios" -ge "$files" ]
}
flushes_answered() {
	[ "$flushes" -ge "$files" ] && [ "$failures" = 0 ]
}
read_back() {
	mounted_no_dax && [ "$(wc -l < /tmp/sums)" = "$files" ] &&
		(cd $mnt && md5sum -c -s /tmp/sums)
}
fs_clean() {
	e2fsck -f -n "$dev" > /tmp/fsck.out 2>&1 && return 0
	sed 's/^/# /' /tmp/fsck.out
	return 1
}

counters=0
[ "$VPMEM_DRV" = virtio_pmem_rust ] && [ -r "$stats" ] && counters=1

ktap_print_header
ktap_set_plan 7
ktap_print_msg "$VPMEM_VDEV, driver $VPMEM_DRV, $dev"

[ -n "$VPMEM_BLK" ] || ktap_exit_fail_msg "no block device on $VPMEM_VDEV"
mkdir -p $mnt
mke2fs -q -F -t ext4 "$dev" > /tmp/mkfs.out 2>&1 || sed 's/^/# /' /tmp/mkfs.out
mount -t ext4 -o dax=never "$dev" $mnt
ktap_test_result "ext4 with a journal mounts without DAX" mounted_no_dax
mounted_no_dax || ktap_exit_fail_msg "no file system to test"

if [ $counters = 1 ]; then
	bios0=$(stat fua_bios) flushes0=$(stat host_flushes) failures0=$(stat host_failures)
fi
# Each file: new data, fsync (a journal commit: the new inode and its blocks).
bad=0
for i in $(seq "$files"); do
	dd if=/dev/urandom of=$mnt/f$i bs=4k count=16 conv=fsync 2>/tmp/dd.out ||
		{ bad=$((bad + 1)); sed 's/^/# /' /tmp/dd.out; }
done
ktap_print_msg "$files files written and fsynced, $bad failed"
ktap_test_result "fsync through the journal succeeds" [ "$bad" = 0 ]

if [ $counters = 1 ]; then
	bios=$(($(stat fua_bios) - bios0))
	flushes=$(($(stat host_flushes) - flushes0))
	failures=$(($(stat host_failures) - failures0))
	ktap_print_msg "FUA bios: $bios, host flushes: $flushes, host failures: $failures"
	# Each fsync commits the journal with at least one FUA write.
	ktap_test_result "the journal commits reached the driver as FUA bios" bios_seen
	ktap_test_result "host flushes answered them, none failed" flushes_answered
else
	why="the counters of virtio_pmem_rust (driver $VPMEM_DRV, $stats)"
	ktap_test_skip "the journal commits reached the driver as FUA bios: needs $why"
	ktap_test_skip "host flushes answered them, none failed: needs $why"
fi

(cd $mnt && md5sum f*) > /tmp/sums
umount $mnt
ktap_test_result "the file system unmounts" [ "$(grep -c " $mnt " /proc/mounts)" = 0 ]
mount -t ext4 -o dax=never "$dev" $mnt
ktap_test_result "every file reads back after a remount" read_back
umount $mnt
ktap_test_result "the file system is clean (e2fsck -n)" fs_clean
ktap_finished
