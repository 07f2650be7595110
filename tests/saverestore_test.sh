#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# Save/restore as a user does it (QEMU monitor: stop, migrate to a file, quit,
# new QEMU with -incoming, cont; scripts/run-tests.sh "VPMEM-HOST
# saverestore"), VPMEM_ROUNDS times (default 10) while 8 threads write and
# fdatasync their own files on ext4 -o dax over /dev/pmem0, then once with
# the guest idle at the save.  QEMU 10 carries no virtio-pmem state, so the
# device comes back reset each time and the driver recovers it in place.
#  - every fsync returns 0 and none stalls for long (the stall is bounded by
#    the watchdog's check interval, 1 s, plus the recovery; reported);
#  - the file system stays read-write, and what was written and synced
#    before each save reads back unchanged at the end;
#  - the driver recovered once per round.
# With VPMEM_ARG=cpr, each round is a QEMU live update instead (cpr-transfer:
# the new QEMU process takes the guest's memory in place; "VPMEM-HOST cpr"),
# 5 rounds by default, none idle.

. /tests/ktap_helpers.sh
. /tests/pmem_lib.sh

mode=${VPMEM_ARG:-saverestore}
if [ "$mode" = cpr ]; then
	rounds=${VPMEM_ROUNDS:-5} idle= want=$rounds
else
	rounds=${VPMEM_ROUNDS:-10} idle=idle want=$((rounds + 1))
fi
dbg=$(ls -d /sys/kernel/debug/virtio_pmem_rust-* | head -1)
stat() { sed -n "s/^$1: //p" "$dbg/stats"; }
max_ms() { sed -n 's/.*max_ms=\([0-9]*\).*/\1/p' "$1"; }
all_ok='^fsync.ok=[1-9][0-9]*.eio=0.other=0.*slow=0'

ktap_print_header
ktap_set_plan 6

mkfs.ext4 -q -F /dev/pmem0
mount -o dax /dev/pmem0 /mnt
rec0=$(stat recoveries)
bad=0 worst=0 : > /tmp/sums
for r in $(seq "$rounds") $idle; do
	dd if=/dev/urandom of=/mnt/data.$r bs=64k count=16 conv=fsync 2>/dev/null
	md5sum /mnt/data.$r >> /tmp/sums
	if [ "$r" = idle ]; then
		sync
		sleep 1
		echo "VPMEM-HOST $mode"
		sleep 3
		/tests/fsync_hammer /mnt 8 2000 > /tmp/hammer.out 2>&1
	else
		/tests/fsync_hammer /mnt 8 6000 > /tmp/hammer.out 2>&1 &
		pid=$!
		sleep 2
		echo "VPMEM-HOST $mode"
		wait $pid
	fi
	m=$(max_ms /tmp/hammer.out)
	[ "${m:-0}" -gt "$worst" ] && worst=$m
	ktap_print_msg "round $r: $(cat /tmp/hammer.out)"
	grep -q "$all_ok" /tmp/hammer.out || bad=$((bad + 1))
done
rec=$(( $(stat recoveries) - rec0 ))
ktap_print_msg "$mode: $rounds rounds under load${idle:+ and one idle}: recoveries $rec, longest fsync ${worst} ms"
ktap_test_result "every fsync of every round returned 0" [ "$bad" = 0 ]
ktap_test_result "the longest fsync stall stayed under 5 s (${worst} ms)" [ "$worst" -lt 5000 ]
ktap_test_result "one recovery per round ($rec)" [ "$rec" = "$want" ]
ktap_test_result "the file system is still read-write" grep -q ' /mnt ext4 rw' /proc/mounts
echo 3 > /proc/sys/vm/drop_caches
ktap_test_result "data synced before each save reads back" md5sum -c -s /tmp/sums
umount /mnt
ktap_test_result "ext4 is clean after the rounds" e2fsck -f -n /dev/pmem0
ktap_finished
