#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# A bound Rust virtio driver without PM callbacks (the sample) must not block
# system sleep: hibernation and suspend-to-idle under pm_test=devices go
# ahead, as the virtio core does for C drivers, and the device works after
# the restore.

. /tests/ktap_helpers.sh
. /tests/pmem_lib.sh

mod=rust_driver_virtio
drv=/sys/bus/virtio/drivers/$mod
# The virtio entropy device (virtio device 4), which the sample binds.
dev=$(grep -l '^0x0004$' /sys/bus/virtio/devices/*/device 2>/dev/null | head -1)
dev=$(basename "$(dirname "$dev")")
answered() { dmesg -s 4194304 | grep -c "$mod $dev: received [1-9][0-9]* random bytes"; }

ktap_print_header
ktap_set_plan 3

modprobe $mod
echo devices > /sys/power/pm_test
for m in hibernate suspend; do
	echo 0 > /sys/module/$m/parameters/pm_test_delay
done
ok=0
echo disk > /sys/power/state && ok=1
ktap_test_result "hibernation goes ahead with the sample bound" [ $ok = 1 ]
ok=0
echo freeze > /sys/power/state && ok=1
ktap_test_result "suspend-to-idle goes ahead with the sample bound" [ $ok = 1 ]
echo none > /sys/power/pm_test

before=$(answered)
echo "$dev" > "$drv/unbind"
echo "$dev" > "$drv/bind"
# The runner's device gives one request's worth of bytes every 2 s.
for i in $(seq 50); do
	[ "$(answered)" -gt "$before" ] && break
	sleep 0.1
done
after=$(answered)
ktap_print_msg "requests answered: $before before the rebind, $after after"
ktap_test_result "the device answers after the restore" [ "$after" -gt "$before" ]
rmmod $mod
ktap_finished
