#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# The Rust driver built into the kernel (the "builtin" variant): it is no
# module, it bound the device during boot, and the C driver, still a module,
# loads beside it without taking the device.

. /tests/ktap_helpers.sh
. /tests/pmem_lib.sh

dev=$(pmem_virtio_dev)
builtin=/lib/modules/$(uname -r)/modules.builtin

ktap_print_header
ktap_set_plan 4

ktap_test_result "virtio_pmem_rust is listed in modules.builtin" \
	grep -q '/virtio_pmem_rust.ko$' "$builtin"
loaded=0
grep -q '^virtio_pmem_rust ' /proc/modules && loaded=1
ktap_test_result "virtio_pmem_rust is not a loaded module" [ $loaded = 0 ]
ktap_test_result "$dev was bound to virtio_pmem_rust at boot" \
	[ -e "/sys/bus/virtio/drivers/virtio_pmem_rust/$dev" ]
modprobe virtio_pmem
bound=$(basename "$(readlink "/sys/bus/virtio/devices/$dev/driver")")
ktap_print_msg "after modprobe virtio_pmem, $dev is bound to $bound"
ktap_test_result "the C module loads and leaves the device to the built-in driver" \
	[ "$bound" = virtio_pmem_rust ]
ktap_finished
