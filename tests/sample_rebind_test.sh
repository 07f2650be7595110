#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# The virtio sample driver (samples/rust/rust_driver_virtio.rs) binds to the
# virtio-pmem device and sends one flush; unbind and bind it 20 times, half
# of them at once, so that some requests are still queued at unbind.  Each
# binding's request must be answered or reclaimed, exactly once.

. /tests/ktap_helpers.sh
. /tests/pmem_lib.sh

cycles=20
drv=/sys/bus/virtio/drivers/rust_driver_virtio
dev=$(pmem_virtio_dev)

ktap_print_header
ktap_set_plan 4
leak_mark
for c in $(seq $cycles); do
	[ $((c % 2)) = 0 ] && sleep 0.2
	echo "$dev" > "$drv/unbind"
	echo "$dev" > "$drv/bind"
done
sleep 0.5
echo "$dev" > "$drv/unbind"

probes=$(dmesg -s 4194304 | grep -c 'rust_driver_virtio.*virtio device 27')
answered=$(dmesg -s 4194304 | grep -c 'flush answered: 4 bytes used, ret Some(0)')
reclaimed=$(dmesg -s 4194304 | grep -c 'request reclaimed at unbind')
ktap_print_msg "probes=$probes answered=$answered reclaimed=$reclaimed"
ktap_test_result "bound $((cycles + 1)) times" [ "$probes" = $((cycles + 1)) ]
ktap_test_result "every request answered or reclaimed once" \
	[ $((answered + reclaimed)) = "$probes" ]
ktap_test_result "the host answered flushes with success" [ "$answered" -gt 0 ]
leaks=$(leak_count | tail -1)
ktap_test_result "no memory leaked (kmemleak: $leaks suspects)" [ "$leaks" = 0 ]
ktap_finished
