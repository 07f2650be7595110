#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# A device that stops answering because it needs a reset.  debugfs
# inject_malformed makes the driver send its next flush without the
# device-readable part: QEMU rejects it (virtio_error), sets NEEDS_RESET and
# never answers the request.
#  - While bound, the configuration interrupt reports it: the driver resets
#    the device in place and sends the flush again (a flush is idempotent),
#    so fsync succeeds, at once, and the counters show the recovery.
#  - During unbind configuration interrupts are off and no recovery can run
#    (unbind holds the device lock): the last flush of the pmem device must
#    end, with EIO, within a few seconds (the device status is checked while
#    a flush waits), not after the full host flush timeout.
# The rejected request is never given back (quarantined): no kmemleak scan.

. /tests/ktap_helpers.sh
. /tests/pmem_lib.sh

drv=/sys/bus/virtio/drivers/virtio_pmem_rust
dev=$(pmem_virtio_dev)
dbg() { ls -d /sys/kernel/debug/virtio_pmem_rust-* | head -1; }
inject() { echo 1 > "$(dbg)/inject_malformed"; }
stat() { sed -n "s/^$1: //p" "$(dbg)/stats"; }
# Centiseconds since boot.
now_cs() { tr -d . < /proc/uptime | cut -d' ' -f1; }
all_ok='^fsync.ok=[1-9][0-9]*.eio=0.other=0'
all_eio='^fsync.ok=0.eio=[1-9][0-9]*.other=0'

ktap_print_header
ktap_set_plan 6

inject
t0=$(now_cs)
/tests/fsync_hammer /dev/pmem0 1 100 > /tmp/syncs.out 2>&1
t=$(( $(now_cs) - t0 ))
ktap_print_msg "after a malformed flush: $(cat /tmp/syncs.out) in ${t}0 ms"
ktap_print_msg "$(dmesg | grep 'recovered in' | tail -1)"
ktap_test_result "a device that needs a reset is recovered and fsync succeeds" grep -q "$all_ok" /tmp/syncs.out
ktap_test_result "at once (under 5 s)" [ "$t" -lt 500 ]
ktap_test_result "the counters show the recovery" [ "$(stat recoveries)" = 1 ]

echo "$dev" > "$drv/unbind"
echo "$dev" > "$drv/bind"
wait_pmem
/tests/fsync_hammer /dev/pmem0 1 100 > /tmp/syncs.out 2>&1
ktap_test_result "a new binding resets the device and flushes work" grep -q "$all_ok" /tmp/syncs.out

inject
t0=$(now_cs)
echo "$dev" > "$drv/unbind"
t=$(( $(now_cs) - t0 ))
ktap_print_msg "unbind with the last flush rejected took ${t}0 ms"
ktap_test_result "NEEDS_RESET during unbind ends the last flush within 10 s" [ "$t" -lt 1000 ]
dmesg | grep 'does not answer while unbinding' | sed 's/^/# /'
echo "$dev" > "$drv/bind"
wait_pmem
/tests/fsync_hammer /dev/pmem0 1 100 > /tmp/syncs.out 2>&1
ktap_test_result "the device works after the next binding" grep -q "$all_ok" /tmp/syncs.out
ktap_finished
