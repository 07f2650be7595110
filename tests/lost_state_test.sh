#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# The device loses its state under the guest: the VM is saved and restored
# (scripts/run-tests.sh, "VPMEM-HOST saverestore"), and QEMU 10 migrates no
# virtio-pmem state, so both devices come back reset, their queues gone,
# while the guest still believes them live.  No interrupt says so.  The
# watchdog reads the device status a second after a flush went unanswered,
# and recovers the device in place (PCI config written back, virtio
# re-initialised, flush sent again).
#  - A caller killed while its flush waits must exit within seconds.
#  - A FUA write with no synchronous flush caller behind it (O_DIRECT |
#    O_DSYNC on the raw device) must be answered too, with success, within
#    seconds: the recovery sends the flush again and the host answers it.
#  - Both devices log one recovery each, and flush again afterwards.

. /tests/ktap_helpers.sh
. /tests/pmem_lib.sh

all_ok='^fsync.ok=[1-9][0-9]*.eio=0.other=0'
# alive PID: whether any thread of PID is still alive (not a zombie).
alive() {
	for t in /proc/"$1"/task/*/stat; do
		[ -e "$t" ] && [ "$(cut -d' ' -f3 "$t" 2>/dev/null)" != Z ] && return 0
	done
	return 1
}

# wait_gone PID SECONDS: wait until no thread of PID is alive; prints the tenths of a
# second it took.
wait_gone() {
	i=0
	while alive "$1" && [ $i -lt $(($2 * 10)) ]; do
		sleep 0.1
		i=$((i + 1))
	done
	echo $i
}

ktap_print_header
ktap_set_plan 7

/tests/fsync_hammer /dev/pmem0 1 100 > /tmp/syncs.out 2>&1
/tests/dsync_write /dev/pmem1 > /tmp/dsync.out 2>&1
ktap_print_msg "before: $(cat /tmp/syncs.out); $(cat /tmp/dsync.out)"
ok=0
grep -q "$all_ok" /tmp/syncs.out && grep -q 'rc=4096 ' /tmp/dsync.out && ok=1
ktap_test_result "both devices flush before the save" [ $ok = 1 ]

echo "VPMEM-HOST saverestore"
sleep 3
for d in /sys/bus/virtio/devices/*; do
	ktap_print_msg "after the restore: ${d##*/} status $(cat "$d/status")"
done

# A caller that gets SIGKILL while its flush waits on the lost device.
/tests/fsync_hammer /dev/pmem0 1 30000 > /tmp/syncs.out 2>&1 &
pid=$!
sleep 0.5
kill -9 $pid
t=$(wait_gone $pid 20)
ktap_print_msg "killed caller exited after ${t}00 ms"
ktap_test_result "a killed caller waiting on the lost device exits within 5 s" [ "$t" -lt 50 ]

# A FUA write, with no synchronous flush behind it.
/tests/dsync_write /dev/pmem1 > /tmp/dsync.out 2>&1 &
pid=$!
t=$(wait_gone $pid 20)
ktap_print_msg "FUA write on the lost device: $(cat /tmp/dsync.out) (waited ${t}00 ms)"
ktap_test_result "a FUA write on the lost device is answered within 5 s" [ "$t" -lt 50 ]
ktap_test_result "with success, from the flush sent again" grep -q 'rc=4096 ' /tmp/dsync.out

dmesg | grep 'recovered in' | sed 's/^/# /'
n=$(dmesg | grep -c 'recovered in .* device status read 0x00 (state lost)')
ktap_test_result "both devices were recovered from their lost state ($n)" [ "$n" = 2 ]
/tests/fsync_hammer /dev/pmem0 4 1000 > /tmp/syncs.out 2>&1
/tests/dsync_write /dev/pmem1 > /tmp/dsync.out 2>&1
ktap_print_msg "after the recovery: $(cat /tmp/syncs.out); $(cat /tmp/dsync.out)"
ktap_test_result "pmem0 flushes after the recovery" grep -q "$all_ok" /tmp/syncs.out
ktap_test_result "pmem1 flushes after the recovery" grep -q 'rc=4096 ' /tmp/dsync.out
ktap_finished
