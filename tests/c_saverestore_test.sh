#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# The upstream C driver under the save/restore of saverestore_test.sh, to record
# what it does, bounded in time: 8 threads write and fdatasync their own files
# on ext4 -o dax; the VM is saved and restored ("VPMEM-HOST saverestore"); QEMU
# 10 carries no virtio-pmem state.  The C driver waits for a host answer that
# never comes, uninterruptibly and without a timeout, so its fsyncs hang for
# good (known, and the reason for this project's recovery).  The test asserts
# that characterisation: fsyncs completed before the save, none completes in
# the 12 s after the restore, and the threads are still blocked.  A change of
# behaviour (a fixed QEMU, a fixed C driver) makes it fail and must be looked at.
# The blocked tasks would also block the final sync, and trip the hung-task
# detector after 20 s, and the guest cannot power off (device shutdown waits on
# the lost device): the test asks for no final sync, and the runner stops QEMU
# once the guest printed VPMEM-DONE (vpmem.stop_at_done=1).

. /tests/ktap_helpers.sh
. /tests/pmem_lib.sh

ktap_print_header
ktap_set_plan 3

mkfs.ext4 -q -F /dev/pmem0
mount -o dax /dev/pmem0 /mnt
/tests/fsync_hammer /mnt 8 1000 > /tmp/before.out 2>&1
ktap_print_msg "before the save: $(cat /tmp/before.out)"
ktap_test_result "C: fsyncs complete before the save" \
	grep -q '^fsync.ok=[1-9][0-9]*.eio=0.other=0' /tmp/before.out
/tests/fsync_hammer /mnt 8 4000 > /tmp/hammer.out 2>&1 &
pid=$!
sleep 1
echo "VPMEM-HOST saverestore"
sleep 6
blocked=0
for t in /proc/"$pid"/task/*/stat; do
	[ "$(cut -d' ' -f3 "$t" 2>/dev/null)" = D ] && blocked=$((blocked + 1))
done
ktap_print_msg "C: 6 s after the restore, $blocked of 8 threads blocked in D state; fsync_hammer finished: $([ -s /tmp/hammer.out ] && echo yes || echo no)"
ktap_test_result "C: no fsync returns after the restore (hammer still running)" [ ! -s /tmp/hammer.out ]
ktap_test_result "C: its threads are blocked ($blocked)" [ "$blocked" -ge 1 ]
touch /tmp/vpmem-nosync
ktap_finished
