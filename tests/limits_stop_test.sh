#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# No notification while the bus stops the queue: the limits test module
# (tests/modules), loaded with stop_probe=1, keeps its flush going at unbind;
# once the bus refuses the request (stopping), it tries to notify the device
# anyway.  The bus must refuse that too (drivers/virtio/virtio.c: no
# notifications during reset).

. /tests/ktap_helpers.sh
. /tests/pmem_lib.sh

mod=rust_virtio_limits
drv=/sys/bus/virtio/drivers/$mod
dev=$(pmem_virtio_dev)

ktap_print_header
ktap_set_plan 2

modprobe $mod stop_probe=1
for c in $(seq 10); do
	echo "$dev" > "$drv/unbind"
	echo "$dev" > "$drv/bind"
done
rmmod $mod
refused=$(dmesg | grep -c 'notify while stopping (add: -19): refused')
allowed=$(dmesg | grep -c 'notify while stopping (add: -19): allowed')
ktap_print_msg "notifications tried while stopping: refused=$refused allowed=$allowed"
ktap_test_result "the test reached the stopping window" [ $((refused + allowed)) -gt 0 ]
ktap_test_result "no notification while stopping" [ "$allowed" = 0 ]
ktap_finished
