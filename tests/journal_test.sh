#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# ext4 without DAX (page cache, jbd2 journal) on /dev/pmem0: every fsync
# commits the journal with a REQ_PREFLUSH | REQ_FUA write, so the pmem driver
# hands the region's flush callback a bio to complete after the flush (the
# NVDIMM_FLUSH_ASYNC path), besides the synchronous flush of the preflush.
# Files written and fsynced this way read back after a remount. With the Rust
# driver, its counters must show the FUA bios, all answered by host flushes.

. /tests/ktap_helpers.sh
. /tests/pmem_lib.sh

mnt=/mnt/journal
files=${VPMEM_FILES:-24}

# A counter of the Rust driver's debugfs stats.
stat() {
	sed -n "s/^$1: //p" /sys/kernel/debug/virtio_pmem_rust-*/stats | head -1
}

# Checks (ktap_test_result splits its command on spaces, so each is a function).
mounted_no_dax() {
	grep -q "^/dev/pmem0 $mnt ext4 .*dax=never" /proc/mounts
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
	/sbin/e2fsck -f -n /dev/pmem0 > /tmp/fsck.out 2>&1 && return 0
	sed 's/^/# /' /tmp/fsck.out
	return 1
}

plan=5
[ "$VPMEM_DRIVER" = rust ] && plan=7
ktap_print_header
ktap_set_plan $plan

wait_pmem
mkdir -p $mnt
/sbin/mke2fs -q -F -t ext4 /dev/pmem0 > /tmp/mkfs.out 2>&1 || sed 's/^/# /' /tmp/mkfs.out
mount -t ext4 -o dax=never /dev/pmem0 $mnt
ktap_test_result "ext4 with a journal mounts without DAX" mounted_no_dax
mounted_no_dax || ktap_exit_fail_msg "no file system to test"

if [ "$VPMEM_DRIVER" = rust ]; then
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

if [ "$VPMEM_DRIVER" = rust ]; then
	bios=$(($(stat fua_bios) - bios0))
	flushes=$(($(stat host_flushes) - flushes0))
	failures=$(($(stat host_failures) - failures0))
	ktap_print_msg "FUA bios: $bios, host flushes: $flushes, host failures: $failures"
	# Each fsync commits the journal with at least one FUA write.
	ktap_test_result "the journal commits reached the driver as FUA bios" bios_seen
	ktap_test_result "host flushes answered them, none failed" flushes_answered
fi

(cd $mnt && md5sum f*) > /tmp/sums
umount $mnt
ktap_test_result "the file system unmounts" [ "$(grep -c " $mnt " /proc/mounts)" = 0 ]
mount -t ext4 -o dax=never /dev/pmem0 $mnt
ktap_test_result "every file reads back after a remount" read_back
umount $mnt
ktap_test_result "the file system is clean (e2fsck -n)" fs_clean
ktap_finished
