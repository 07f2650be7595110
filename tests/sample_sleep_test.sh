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
dev=$(pmem_virtio_dev)
answered() { dmesg | grep -c 'flush answered: 4 bytes used, ret Some(0)'; }

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
sleep 1
after=$(answered)
ktap_print_msg "flushes answered: $before before the rebind, $after after"
ktap_test_result "the device answers after the restore" [ "$after" -gt "$before" ]
rmmod $mod
ktap_finished
