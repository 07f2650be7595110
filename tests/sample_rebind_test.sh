#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# The virtio sample driver (samples/rust/rust_driver_virtio.rs) binds to the
# virtio-rng device and asks it for random bytes once; unbind and bind it 10
# times.  The runner's device gives 32 bytes every 2 s, one request's worth,
# and the bus waits up to 1 s at unbind for requests in flight: some requests
# are answered, the others are still queued at unbind and reclaimed.  Each
# binding's request must be answered or reclaimed, exactly once.

. /tests/ktap_helpers.sh
. /tests/pmem_lib.sh

cycles=10
mod=rust_driver_virtio
drv=/sys/bus/virtio/drivers/$mod
# The virtio entropy device (virtio device 4).
dev=$(grep -l '^0x0004$' /sys/bus/virtio/devices/*/device 2>/dev/null | head -1)
dev=$(basename "$(dirname "$dev")")
log() { dmesg -s 4194304 | grep -c "$1"; }

ktap_print_header
ktap_set_plan 6
leak_mark
modprobe $mod
bound=0
[ -e "$drv/$dev" ] && bound=1
ktap_test_result "the sample binds to the entropy device ($dev)" [ $bound = 1 ]
for c in $(seq $cycles); do
	echo "$dev" > "$drv/unbind"
	echo "$dev" > "$drv/bind"
done
echo "$dev" > "$drv/unbind"
rmmod $mod

probes=$(log "$mod $dev: probing virtio device 4 ")
answered=$(log "$mod $dev: received [1-9][0-9]* random bytes")
reclaimed=$(log 'request reclaimed at unbind')
ktap_print_msg "probes=$probes answered=$answered reclaimed=$reclaimed"
ktap_test_result "bound $((cycles + 1)) times" [ "$probes" = $((cycles + 1)) ]
ktap_test_result "every request answered or reclaimed once" \
	[ $((answered + reclaimed)) = "$probes" ]
ktap_test_result "the device answered with random bytes" [ "$answered" -gt 0 ]
ktap_test_result "requests still queued at unbind were reclaimed" [ "$reclaimed" -gt 0 ]
leaks=$(leak_count | tail -1)
ktap_test_result "no memory leaked (kmemleak: $leaks suspects)" [ "$leaks" = 0 ]
ktap_finished
